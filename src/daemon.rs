//! `fairlead run`: one cluster source, the BGP speaker, its gRPC API and the controllers, until SIGTERM.
//!
//! Order: logs -> cluster source (API server or `--objects-from`) -> first sync of the watched kinds -> the local
//! Node's routing state -> speaker (+ API on loopback) -> route controller. Shutdown (SIGTERM/SIGINT): the
//! controllers stop first (kernel routes and the conflist stay, a restart reads them back), then the speaker
//! closes its sessions with a Cease NOTIFICATION.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use bgpd::api::{ApiServer, SpeakerBackend};
use bgpd::speaker::Speaker;
use cluster::{ClusterSource, ClusterStores, DirSource, KubeSource};
use routecontroller::controller::{
    ControllerConfig, ControllerError, RouteController, SpeakerIdentity, desired_from_stores,
};
use routecontroller::model::ModelError;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::flags::{LogFormat, RunArgs, SourceArgs};

/// How long the first sync of the cluster objects may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the local Node may be missing after the first sync before the daemon gives up.
const LOCAL_NODE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the controllers and the API get to stop after SIGTERM (well inside a pod's grace period).
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Sets up `tracing` (`RUST_LOG`, default `info`) in the chosen format.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The system's host name (the last fallback for the node's name).
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn termination() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Runs the daemon until a signal (Ok) or a fatal error.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    info!(node = %args.node_name, controllers = ?args.controllers, "fairlead starting");
    let (stores, writers) = ClusterStores::new();
    // Subscribe before the first sync so no change between it and the first computation is lost.
    let changes = stores.changes();
    let kinds = args.watched_kinds();
    let mut tasks: JoinSet<anyhow::Result<&'static str>> = JoinSet::new();
    // The source has no shutdown of its own (it runs until dropped): it is aborted last.
    let mut source_task = match &args.source {
        SourceArgs::Dir(dir) => {
            let source = DirSource::new(dir.clone())?;
            tokio::spawn(async move { source.run(writers).await })
        }
        SourceArgs::Kube { kubeconfig } => {
            let client = KubeSource::client(kubeconfig.as_deref()).await?;
            let source = KubeSource::new(client).kinds(&kinds);
            tokio::spawn(async move { source.run(writers).await })
        }
    };
    let signal = termination();
    tokio::pin!(signal);
    tokio::select! {
        ready = stores.wait_until_ready(&kinds, SYNC_TIMEOUT) => ready?,
        done = &mut source_task => return Err(match done {
            Ok(Ok(())) => anyhow!("the cluster source stopped before the first sync"),
            Ok(Err(e)) => anyhow::Error::new(e).context("cluster source"),
            Err(e) => anyhow!("the cluster source panicked: {e}"),
        }),
        sig = &mut signal => { info!(signal = sig?, "stopping before the first sync"); return Ok(()); }
    }
    info!(kinds = ?kinds, "cluster objects synced");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut speaker: Option<Speaker> = None;

    if let (true, Some(routing)) = (args.controllers.router, args.routing.clone()) {
        // The speaker's identity comes from the local Node (its ASN annotation, its address as router-id).
        let desired = tokio::select! {
            d = wait_for_local_node(&stores, &args.node_name, &routing) => d?,
            sig = &mut signal => { info!(signal = sig?, "stopping before the local Node appeared"); return Ok(()); }
        };
        let identity = SpeakerIdentity::of(&desired);
        let speaker_config = identity.speaker_config();
        let (bgp, _speaker_task) = Speaker::start(speaker_config.clone())
            .with_context(|| format!("starting the BGP speaker ({identity:?})"))?;
        info!(asn = identity.asn, router_id = %identity.router_id, source = ?desired.router_id_source, port = identity.listen_port, "BGP speaker started");
        speaker = Some(bgp.clone());

        match ApiServer::bind(args.grpc_port).await {
            Ok(Some(api)) => {
                let backend = Arc::new(SpeakerBackend::new(bgp.clone(), speaker_config));
                let mut stop = shutdown_rx.clone();
                tasks.spawn(async move {
                    api.serve(backend, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await?;
                    Ok("gRPC API")
                });
            }
            Ok(None) => info!("gRPC API disabled"),
            // The API is for people and the CLI; routing goes on without it.
            Err(e) => warn!(error = %e, "gRPC API not started"),
        }

        let mut controller_config =
            ControllerConfig::new(args.node_name.clone(), routing, args.cni_conf_file.clone());
        controller_config.ndp_proxy_interface = args.ndp_proxy_interface.clone();
        let controller = RouteController::new(controller_config, stores.clone(), bgp, identity)
            .await
            .context("starting the route controller")?;
        let stop = shutdown_rx.clone();
        tasks.spawn(async move {
            controller.run(changes, stop).await.map_err(|e| match e {
                ControllerError::IdentityChanged { .. } => anyhow!("{e}"),
                other => anyhow::Error::new(other).context("route controller"),
            })?;
            Ok("route controller")
        });
    } else {
        drop(changes);
    }

    // Service proxy and firewall controllers are wired here, each a task in `tasks` stopped by `shutdown_rx`
    // and reading `stores`.
    if args.controllers.service_proxy {
        warn!("--run-service-proxy: the service proxy is not wired into `fairlead run` yet");
    }
    if args.controllers.firewall {
        warn!("--run-firewall: the firewall is not wired into `fairlead run` yet");
    }

    // Run until a signal or until a task ends (every task is meant to run until shutdown).
    let outcome: anyhow::Result<()> = tokio::select! {
        sig = &mut signal => { info!(signal = sig?, "shutting down"); Ok(()) }
        Some(done) = tasks.join_next() => match done {
            Ok(Ok(what)) => Err(anyhow!("{what} stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow!("a task panicked: {e}")),
        },
        done = &mut source_task => match done {
            Ok(Ok(())) => Err(anyhow!("the cluster source stopped unexpectedly")),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("cluster source")),
            Err(e) => Err(anyhow!("the cluster source panicked: {e}")),
        },
    };
    let _ = shutdown_tx.send(true);
    // Give the controllers and the API a bounded time to finish what they are doing.
    let drain = async {
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                warn!(error = %e, "while stopping");
            }
        }
    };
    if tokio::time::timeout(STOP_TIMEOUT, drain).await.is_err() {
        warn!("tasks did not stop within {STOP_TIMEOUT:?}; aborting them");
        tasks.abort_all();
    }
    source_task.abort();
    if let Some(bgp) = speaker
        && let Err(e) = bgp.shutdown().await
    {
        warn!(error = %e, "speaker shutdown");
    }
    match &outcome {
        Ok(()) => info!("fairlead stopped"),
        Err(e) => error!(error = %format!("{e:#}"), "fairlead stopped"),
    }
    outcome
}

/// The local Node's routing state, waiting (bounded) for the Node to appear in the store.
async fn wait_for_local_node(
    stores: &ClusterStores,
    node_name: &str,
    routing: &routecontroller::model::Config,
) -> anyhow::Result<routecontroller::model::DesiredRouting> {
    let mut changes = stores.changes();
    let deadline = tokio::time::Instant::now() + LOCAL_NODE_TIMEOUT;
    let mut warned = false;
    loop {
        match desired_from_stores(stores, node_name, routing) {
            Ok(d) => return Ok(d),
            Err(ModelError::LocalNodeNotFound(_)) => {
                if !warned {
                    warn!(node = %node_name, "waiting for this node's Node object");
                    warned = true;
                }
            }
        }
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(anyhow!("the cluster source stopped")),
            Err(_) => {
                return Err(anyhow!(
                    "Node {node_name} not found within {LOCAL_NODE_TIMEOUT:?} (--hostname-override / $NODE_NAME)"
                ));
            }
        }
    }
}
