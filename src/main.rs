//! fairlead: the per-node daemon and its CLI.

mod cleanup;
mod cli;
mod daemon;
mod flags;
mod health;
mod metrics;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Per-node Kubernetes networking: BGP pod routing, IPVS service proxy, nftables NetworkPolicy.
#[derive(Debug, Parser)]
#[command(name = "fairlead", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Subcommands (the BGP CLI commands are added beside these).
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon on this node.
    Run(Box<flags::RunFlags>),
    /// Print the version.
    Version,
    /// Remove the routes, IPVS services, interface, nftables tables, NDP proxy entries and conflist fairlead made.
    Cleanup(cleanup::CleanupFlags),
    /// Inspect BGP state over the daemon's GoBGP-compatible API (`global`, `neighbor`).
    #[command(flatten)]
    Bgp(cli::CliCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("fairlead {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Run(flags) => run(*flags),
        Command::Bgp(cmd) => inspect(cmd),
        Command::Cleanup(flags) => cleanup(flags),
    }
}

/// The read-only BGP commands: one request to the local daemon, printed as GoBGP prints it.
fn inspect(cmd: cli::CliCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fairlead: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fairlead: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(flags: flags::RunFlags) -> ExitCode {
    let args = match flags::RunArgs::from_low_args(flags, daemon::host_name(), |p| {
        std::fs::read_to_string(p)
    }) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("fairlead run: {e}");
            return ExitCode::from(2);
        }
    };
    daemon::init_logging(args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fairlead run: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fairlead run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cleanup(flags: cleanup::CleanupFlags) -> ExitCode {
    daemon::init_logging(flags::LogFormat::Text);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fairlead cleanup: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cleanup::run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fairlead cleanup: {e:#}");
            ExitCode::FAILURE
        }
    }
}
