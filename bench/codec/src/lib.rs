//! Decision 0001's survey: BGP codec candidates decode the same messages as bgpd's own codec.
//! Standalone crate (not in the fairlead workspace) so the GPL-3.0 candidate never links into fairlead.
//! `cargo run --release` prints the tables; `cargo bench` measures decode throughput.

pub mod cand;
pub mod cases;
pub mod stream;
