//! fairlead: the per-node daemon and its CLI.

fn main() {
    println!("fairlead {}", env!("CARGO_PKG_VERSION"));
}
