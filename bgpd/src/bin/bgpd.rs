//! `bgpd --config FILE`: the standalone BGP speaker (route reflector, lab peer, benchmark DUT).
//! SIGHUP re-reads the file and applies only the difference; SIGTERM/SIGINT close every session with a
//! Cease NOTIFICATION; SIGUSR1 writes the neighbour states and the Loc-RIB as JSON to `--state-file`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bgpd::api::{ApiServer, SpeakerBackend};
use bgpd::config::{Config, GlobalConfig, LogFormat};
use bgpd::packet::{Afi, AsPathSegment, PathAttributes, Safi};
use bgpd::rib::{PathSource, PeerId};
use bgpd::speaker::{Neighbor, Speaker};
use clap::Parser;
use ipnet::IpNet;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "bgpd",
    about = "fairlead's BGP speaker, driven by a TOML config file"
)]
struct Args {
    /// The config file (see bgpd/README.md); re-read on SIGHUP.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Where SIGUSR1 writes the neighbour states and the Loc-RIB as JSON (replaced atomically).
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Only parse and validate the config, then exit (0 when valid).
    #[arg(long)]
    check: bool,
}

/// Why a config could not be applied as a whole (the running one stays).
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(
        "[global] changed (asn, router_id, listen_addresses, listen_port, cluster_id or grpc_port): restart bgpd to apply it"
    )]
    GlobalChanged,
    #[error("neighbor {0}: interface {1:?} not found")]
    NoInterface(String, String),
}

/// What bgpd has applied to the speaker: the config it came from, the neighbours and the originations.
struct Running {
    config: Config,
    neighbors: HashMap<PeerId, Neighbor>,
    originated: HashMap<IpNet, PathAttributes>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bgpd: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    init_logs(config.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args, config))
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(args: Args, config: Config) -> ExitCode {
    let (speaker, task) = match Speaker::start(config.speaker_config()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot start the speaker");
            return ExitCode::FAILURE;
        }
    };
    // The GoBGP-compatible API on loopback (DESIGN: never elsewhere); stopped with the speaker.
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut api_task = None;
    if let Some(port) = config.global.grpc_port {
        match ApiServer::bind(port).await {
            Ok(Some(api)) => {
                let backend = Arc::new(SpeakerBackend::new(
                    speaker.clone(),
                    config.speaker_config(),
                ));
                api_task = Some(tokio::spawn(async move {
                    if let Err(e) = api
                        .serve(backend, async move {
                            let _ = api_stopped.await;
                        })
                        .await
                    {
                        error!(error = %e, "gRPC API stopped");
                    }
                }));
            }
            Ok(None) => info!("gRPC API disabled (port 0)"),
            // Routing goes on without the API; it is for people and the CLI.
            Err(e) => error!(port, error = %e, "gRPC API not started"),
        }
    }
    let mut running = Running {
        config: Config {
            neighbors: Vec::new(),
            originate: Vec::new(),
            ..config.clone()
        },
        neighbors: HashMap::new(),
        originated: HashMap::new(),
    };
    if let Err(e) = apply(&speaker, &mut running, config).await {
        error!(error = %e, "cannot apply the config");
        let _ = speaker.shutdown().await;
        return ExitCode::FAILURE;
    }
    info!(config = %args.config.display(), "bgpd running");
    let (mut hup, mut term, mut int, mut usr1) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        _ => {
            error!("cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let mut generation: u64 = 0;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&speaker, &mut running, &args.config).await,
            _ = usr1.recv() => {
                generation += 1;
                if let Some(path) = &args.state_file
                    && let Err(e) = dump_state(&speaker, path, generation).await
                {
                    warn!(path = %path.display(), error = %e, "state dump failed");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("shutting down: Cease to every neighbor");
    let _ = api_stop.send(());
    if let Some(t) = api_task {
        let _ = t.await;
    }
    if let Err(e) = speaker.shutdown().await {
        warn!(error = %e, "speaker shutdown");
    }
    let _ = task.await;
    ExitCode::SUCCESS
}

async fn reload(speaker: &Speaker, running: &mut Running, path: &Path) {
    info!(config = %path.display(), "SIGHUP: reloading");
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!(config = %path.display(), error = %e, "reload refused: the running config stays");
            return;
        }
    };
    if let Err(e) = apply(speaker, running, config).await {
        error!(error = %e, "reload refused: the running config stays");
    }
}

/// Everything but the log format must be equal for a reload.
fn same_global(a: &GlobalConfig, b: &GlobalConfig) -> bool {
    GlobalConfig {
        log_format: a.log_format,
        ..b.clone()
    } == *a
}

/// Applies `config` over what runs: neighbours added, removed or updated (the speaker restarts a session only
/// when a session setting changed), originations diffed. Unchanged neighbours are not touched.
async fn apply(speaker: &Speaker, running: &mut Running, config: Config) -> Result<(), ApplyError> {
    if !same_global(&running.config.global, &config.global) {
        return Err(ApplyError::GlobalChanged);
    }
    let speaker_config = running.config.speaker_config();
    let mut desired: HashMap<PeerId, Neighbor> = HashMap::new();
    for n in &config.neighbors {
        let scope_id = match &n.address.interface {
            Some(ifname) => Some(
                nix::net::if_::if_nametoindex(ifname.as_str())
                    .map_err(|_| ApplyError::NoInterface(n.address.to_string(), ifname.clone()))?,
            ),
            None => None,
        };
        let neighbor = n.to_neighbor(&speaker_config, scope_id);
        desired.insert(neighbor.id(), neighbor);
    }
    let removed: Vec<PeerId> = running
        .neighbors
        .keys()
        .filter(|id| !desired.contains_key(id))
        .copied()
        .collect();
    for id in removed {
        match speaker.remove_peer(id).await {
            Ok(()) => info!(peer = %id, "neighbor removed"),
            Err(e) => warn!(peer = %id, error = %e, "removing neighbor"),
        }
        running.neighbors.remove(&id);
    }
    for (id, neighbor) in desired {
        match running.neighbors.get(&id) {
            Some(old) if *old == neighbor => {}
            Some(_) => match speaker.update_peer(neighbor.clone()).await {
                Ok(()) => {
                    info!(peer = %id, "neighbor updated");
                    running.neighbors.insert(id, neighbor);
                }
                Err(e) => warn!(peer = %id, error = %e, "updating neighbor"),
            },
            None => match speaker.add_peer(neighbor.clone()).await {
                Ok(()) => {
                    running.neighbors.insert(id, neighbor);
                }
                Err(e) => warn!(peer = %id, error = %e, "adding neighbor"),
            },
        }
    }
    let wanted: HashMap<IpNet, PathAttributes> = config
        .originate
        .iter()
        .map(|o| (o.prefix, o.attributes()))
        .collect();
    let gone: Vec<IpNet> = running
        .originated
        .keys()
        .filter(|p| !wanted.contains_key(p))
        .copied()
        .collect();
    for prefix in gone {
        if speaker.withdraw(prefix).await.is_ok() {
            info!(%prefix, "origination withdrawn");
            running.originated.remove(&prefix);
        }
    }
    for (prefix, attrs) in wanted {
        if running.originated.get(&prefix) == Some(&attrs) {
            continue;
        }
        if speaker.originate(prefix, attrs.clone()).await.is_ok() {
            info!(%prefix, "originated");
            running.originated.insert(prefix, attrs);
        }
    }
    running.config = config;
    Ok(())
}

fn family_name(afi: Afi) -> &'static str {
    match afi {
        Afi::Ipv4 => "ipv4-unicast",
        Afi::Ipv6 => "ipv6-unicast",
    }
}

fn as_path(attrs: &PathAttributes) -> Vec<u32> {
    attrs
        .as_path
        .iter()
        .flat_map(|s| match s {
            AsPathSegment::Sequence(v) | AsPathSegment::Set(v) => v.clone(),
            #[allow(unreachable_patterns)]
            _ => Vec::new(),
        })
        .collect()
}

/// Neighbour states and Loc-RIB of both families as one JSON document, replaced atomically.
async fn dump_state(
    speaker: &Speaker,
    path: &Path,
    generation: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let neighbors: Vec<serde_json::Value> = speaker
        .neighbors()
        .await?
        .into_iter()
        .map(|n| {
            serde_json::json!({
                "address": n.id.addr,
                "scope_id": n.id.scope_id,
                "remote_asn": n.remote_asn,
                "state": n.state.to_string(),
                "established_secs": n.established_since.map(|t| t.elapsed().as_secs_f64()),
                "flaps": n.flaps,
                "accepted": n.accepted.iter().map(|(f, c)| (family_name(f.0).to_string(), *c)).collect::<HashMap<_, _>>(),
            })
        })
        .collect();
    let mut rib = serde_json::Map::new();
    for afi in [Afi::Ipv6, Afi::Ipv4] {
        let routes: Vec<serde_json::Value> = speaker
            .loc_rib((afi, Safi::Unicast))
            .await?
            .into_iter()
            .flat_map(|(prefix, best)| {
                best.into_iter().map(move |r| {
                    let from: Option<IpAddr> = match r.source {
                        PathSource::Local => None,
                        PathSource::Peer(id) => Some(id.addr),
                    };
                    serde_json::json!({
                        "prefix": prefix,
                        "next_hop": r.attrs.next_hop,
                        "as_path": as_path(&r.attrs),
                        "from": from,
                    })
                })
            })
            .collect();
        rib.insert(family_name(afi).into(), routes.into());
    }
    let doc = serde_json::json!({ "generation": generation, "neighbors": neighbors, "rib": rib });
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?).await?;
    tokio::fs::rename(&tmp, path).await?;
    Ok(())
}
