//! The `fairlead global` / `fairlead neighbor` commands: GoBGP's tables over the daemon's v3 API.
//!
//! Talks to `fairlead run` or `bgpd` over the GoBGP-compatible API with `bgpd::api::client` and prints with
//! `bgpd::api::table` (GoBGP's layouts) or, with `-j`, JSON shaped like `gobgp -j`.

mod json;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use bgpd::api::client::{ApiClient, ClientError};
use bgpd::api::table::{self, RibView};
use bgpd::api::{PrefixMatch, TableKind, afi_of};
use bgpd::packet::Afi;

/// How long the CLI waits to connect and for each call.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Options every CLI command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CliOptions {
    /// Address of fairlead's gRPC API (GoBGP-compatible), `host:port`.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:50051",
        env = "FAIRLEAD_API_ADDRESS"
    )]
    pub api_address: String,
    /// Print JSON instead of tables.
    #[arg(short = 'j', long, global = true)]
    pub json: bool,
}

/// Address family of a table (`-a ipv4|ipv6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FamilyArg {
    Ipv4,
    Ipv6,
}

impl From<FamilyArg> for Afi {
    fn from(f: FamilyArg) -> Afi {
        match f {
            FamilyArg::Ipv4 => Afi::Ipv4,
            FamilyArg::Ipv6 => Afi::Ipv6,
        }
    }
}

// The BGP commands; the binary flattens them into its own subcommands (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CliCommand {
    /// Show the BGP speaker's global settings, or its RIB (`global rib`).
    Global(GlobalArgs),
    /// List BGP neighbours, show one, or show its Adj-RIB-In/-Out.
    Neighbor(NeighborArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    #[command(flatten)]
    pub opts: CliOptions,
    #[command(subcommand)]
    pub sub: Option<GlobalSub>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum GlobalSub {
    /// Show the Loc-RIB of one family (best paths marked `*>`).
    Rib(RibArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RibArgs {
    /// Address family.
    #[arg(
        short = 'a',
        long = "address-family",
        value_enum,
        default_value = "ipv4"
    )]
    pub family: FamilyArg,
    /// Show only this prefix (or the longest prefix covering this address).
    pub prefix: Option<String>,
}

/// Which table of a neighbour to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NeighborTable {
    /// Paths received from the neighbour.
    AdjIn,
    /// Paths advertised to the neighbour.
    AdjOut,
}

#[derive(Debug, Clone, clap::Args)]
pub struct NeighborArgs {
    #[command(flatten)]
    pub opts: CliOptions,
    /// Neighbour address; without it, the summary table of all neighbours.
    pub address: Option<IpAddr>,
    /// Show this table of the neighbour.
    #[arg(value_enum, requires = "address")]
    pub table: Option<NeighborTable>,
    /// Address family of the table (default: the neighbour's address family).
    #[arg(short = 'a', long = "address-family", value_enum)]
    pub family: Option<FamilyArg>,
    /// Show only this prefix of the table.
    #[arg(requires = "table")]
    pub prefix: Option<String>,
}

/// Runs a CLI command, printing its result to stdout.
pub async fn run(cmd: CliCommand) -> anyhow::Result<()> {
    let out = render(cmd, SystemTime::now()).await?;
    print!("{out}");
    Ok(())
}

/// Runs a CLI command and returns what it prints.
pub async fn render(cmd: CliCommand, now: SystemTime) -> anyhow::Result<String> {
    match cmd {
        CliCommand::Global(g) => {
            let mut c = connect(&g.opts).await?;
            match g.sub {
                None => {
                    let global = c.global().await.map_err(|e| call_error(&g.opts, e))?;
                    Ok(if g.opts.json {
                        json::global(&global)
                    } else {
                        table::global_summary(&global)
                    })
                }
                Some(GlobalSub::Rib(r)) => {
                    let afi = Afi::from(r.family);
                    let filter = prefix_filter(r.prefix.as_deref(), afi)?;
                    let dests = c
                        .paths(TableKind::Global, afi, filter)
                        .await
                        .map_err(|e| call_error(&g.opts, e))?;
                    Ok(if g.opts.json {
                        json::rib(&dests)
                    } else {
                        table::rib_table(&dests, RibView::GLOBAL, now)
                    })
                }
            }
        }
        CliCommand::Neighbor(n) => {
            let mut c = connect(&n.opts).await?;
            let family = n.family.map(Afi::from);
            match (n.address, n.table) {
                (None, _) => {
                    let peers = c.peers(None).await.map_err(|e| call_error(&n.opts, e))?;
                    Ok(if n.opts.json {
                        json::peers(&peers)
                    } else {
                        table::neighbors_table(&peers, family, now)
                    })
                }
                (Some(addr), None) => {
                    let peers = c
                        .peers(Some(addr))
                        .await
                        .map_err(|e| call_error(&n.opts, e))?;
                    let p = &peers[0];
                    Ok(if n.opts.json {
                        json::peer(p)
                    } else {
                        table::neighbor_detail(p, family, now)
                    })
                }
                (Some(addr), Some(t)) => {
                    // Like gobgp: the family defaults to the neighbour address's own.
                    let afi = family.unwrap_or_else(|| afi_of(addr));
                    let (kind, view) = match t {
                        NeighborTable::AdjIn => (TableKind::AdjIn(addr), RibView::ADJ_IN),
                        NeighborTable::AdjOut => (TableKind::AdjOut(addr), RibView::ADJ_OUT),
                    };
                    let filter = prefix_filter(n.prefix.as_deref(), afi)?;
                    let dests = c
                        .paths(kind, afi, filter)
                        .await
                        .map_err(|e| call_error(&n.opts, e))?;
                    if dests.is_empty() && !n.opts.json {
                        // gobgp explains an empty table of a neighbour that is not up.
                        let peers = c
                            .peers(Some(addr))
                            .await
                            .map_err(|e| call_error(&n.opts, e))?;
                        if peers[0].session_state != bgpd::api::SessionState::Established {
                            return Err(anyhow!(
                                "neighbor {addr}'s BGP session is not established"
                            ));
                        }
                    }
                    Ok(if n.opts.json {
                        json::rib(&dests)
                    } else {
                        table::rib_table(&dests, view, now)
                    })
                }
            }
        }
    }
}

/// Validates a prefix argument against the family before asking the daemon.
fn prefix_filter(prefix: Option<&str>, afi: Afi) -> anyhow::Result<Option<(&str, PrefixMatch)>> {
    let Some(p) = prefix else { return Ok(None) };
    let addr: IpAddr = match p.parse::<ipnet::IpNet>() {
        Ok(n) => n.addr(),
        Err(_) => p
            .parse()
            .map_err(|_| anyhow!("invalid prefix or address {p:?}"))?,
    };
    if afi_of(addr) != afi {
        let fam = if afi == Afi::Ipv4 { "ipv4" } else { "ipv6" };
        return Err(anyhow!(
            "{p} is not an {fam} prefix (use -a to pick the family)"
        ));
    }
    Ok(Some((p, PrefixMatch::Exact)))
}

async fn connect(opts: &CliOptions) -> anyhow::Result<ApiClient> {
    ApiClient::connect(&opts.api_address, API_TIMEOUT)
        .await
        .map_err(|e| call_error(opts, e))
}

/// Words a client error for an operator: an unreachable daemon says what to start.
fn call_error(opts: &CliOptions, e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Unreachable { reason, .. } => anyhow!(
            "cannot reach fairlead's API at {}: {reason} — is `fairlead run` or `bgpd` running?",
            opts.api_address
        ),
        ClientError::Status(s) if s.code() == tonic_code_unavailable() => anyhow!(
            "cannot reach fairlead's API at {}: {} — is `fairlead run` or `bgpd` running?",
            opts.api_address,
            s.message()
        ),
        ClientError::Status(s) => anyhow!("{}", s.message()),
        e @ ClientError::NeighborNotFound(_) => anyhow!("{e}"),
        other => anyhow!("{other} (fairlead's API at {})", opts.api_address),
    }
}

fn tonic_code_unavailable() -> bgpd::api::client::Code {
    bgpd::api::client::Code::Unavailable
}
