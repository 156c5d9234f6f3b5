//! `fairlead run`: one cluster source, the BGP speaker, its gRPC API and the controllers, until SIGTERM.
//!
//! Order: logs -> cluster source (API server or `--objects-from`) -> first sync of the watched kinds -> the local
//! Node's routing state -> speaker (+ API on loopback) -> route controller -> service proxy -> firewall -> health
//! and metrics servers. A proxy or firewall that cannot start is logged and left out; the daemon exits only when
//! no enabled controller runs (see `run`). Shutdown (SIGTERM/SIGINT): the
//! controllers stop first (kernel routes and the conflist stay, a restart reads them back), then the speaker
//! closes its sessions with a Cease NOTIFICATION.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use bgpd::api::{ApiServer, SpeakerBackend};
use bgpd::speaker::Speaker;
use cluster::{Change, ClusterSource, ClusterStores, DirSource, Kind, KubeSource};
use firewall::controller::FirewallController;
use firewall::dataplane::{Dataplane as FirewallDataplane, NftTarget};
use firewall::model::Options as FirewallOptions;
use ipnet::IpNet;
use proxy::controller::{ClusterObjects, ProxyConfig, ProxyController};
use proxy::dataplane::{DataplaneConfig, DataplaneError as ProxyDataplaneError};
use proxy::ipvs::IpvsError;
use proxy::model::{NodeContext, NodePortAddresses};
use routecontroller::controller::{
    ControllerConfig, ControllerError, RouteController, SpeakerIdentity, desired_from_stores,
};
use routecontroller::model::ModelError;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::flags::{LogFormat, RunArgs, SourceArgs};
use crate::health::{Health, Reporter};

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

    // Service proxy and firewall: each in its own task, stopped by `shutdown_rx`, reading `stores`.
    // Start-failure rule: a controller that cannot start is logged with its cause and left out; the daemon
    // only exits when no enabled controller is left running (the router, once started, counts). The router
    // itself keeps its older rule: its start failures are fatal, since its speaker identity is required.
    let health = Health::default();
    let mut running = usize::from(speaker.is_some());
    let mut start_errors: Vec<anyhow::Error> = Vec::new();
    if args.controllers.service_proxy {
        match start_proxy(&args, &stores, &health, shutdown_rx.clone()).await {
            Ok(task) => {
                running += 1;
                tasks.spawn(task);
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "service proxy not started");
                start_errors.push(e);
            }
        }
    }
    if args.controllers.firewall {
        let task = start_firewall(&stores, &health, shutdown_rx.clone());
        running += 1;
        tasks.spawn(task);
    }
    if running == 0 {
        let e = start_errors
            .pop()
            .unwrap_or_else(|| anyhow!("no controller is enabled"));
        source_task.abort();
        return Err(e.context("no enabled controller could start"));
    }

    // Health and metrics on every address (kubelet probes the node's address; Prometheus scrapes it).
    // A port that cannot be bound is fatal: the probes would fail anyway, and say less.
    for (port, what, router) in [
        (
            args.health_port,
            "health",
            crate::health::router(health.clone()),
        ),
        (
            args.metrics_port,
            "metrics",
            crate::metrics::router(speaker.clone()),
        ),
    ] {
        let Some(port) = port else { continue };
        let listener = crate::health::bind_all(port)
            .await
            .with_context(|| format!("binding the {what} port {port}"))?;
        info!(port, "{what} server listening");
        let mut stop = shutdown_rx.clone();
        tasks.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .with_context(|| format!("{what} server"))?;
            Ok(if what == "health" {
                "health server"
            } else {
                "metrics server"
            })
        });
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

/// How often the service proxy resyncs without a change (kube-proxy's `--ipvs-sync-period` default).
const PROXY_RESYNC: Duration = Duration::from_secs(30);
/// Name of the service proxy loop in health reports and metrics.
pub const PROXY: &str = "service_proxy";
/// Name of the firewall loop in health reports and metrics.
pub const FIREWALL: &str = "firewall";

type ControllerTask = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<&'static str>> + Send>>;

/// This node's addresses for NodePort virtual servers and the firewall's always-allowed sources: global and
/// unique-local unicast addresses of every interface but loopback and the proxy's own VIP interface.
pub(crate) fn node_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        warn!("cannot list this node's interface addresses");
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = addrs
        .filter(|a| a.interface_name != proxy::dataplane::VIP_INTERFACE)
        .filter_map(|a| {
            let sa = a.address?;
            if let Some(v4) = sa.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        // Link-local addresses need a zone and are never NodePort targets.
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The Services, EndpointSlices and Nodes' pod CIDRs as they are in the stores now.
fn proxy_objects(stores: &ClusterStores) -> ClusterObjects {
    ClusterObjects {
        services: stores
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect(),
        slices: stores
            .endpoint_slices
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect(),
    }
}

/// Cluster pod CIDRs for the proxy's masquerade rule: `--cluster-cidr` when given, else every Node's podCIDRs.
fn cluster_cidrs(args: &RunArgs, stores: &ClusterStores) -> Vec<IpNet> {
    if let Some(routing) = &args.routing
        && !routing.cluster_cidrs.is_empty()
    {
        return routing.cluster_cidrs.clone();
    }
    let mut cidrs: Vec<IpNet> = Vec::new();
    for node in stores.nodes.state() {
        let name = node.metadata.name.clone().unwrap_or_default();
        for cidr in node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidrs.clone())
            .unwrap_or_default()
        {
            match cidr.parse::<IpNet>() {
                Ok(net) => cidrs.push(net.trunc()),
                Err(e) => warn!(node = %name, %cidr, error = %e, "invalid podCIDR skipped"),
            }
        }
    }
    cidrs.sort();
    cidrs.dedup();
    cidrs
}

/// Starts the service proxy on its own thread (its dataplane is blocking netlink with its own runtime) and
/// returns the task that feeds it the stores' content on every relevant change until shutdown.
async fn start_proxy(
    args: &RunArgs,
    stores: &ClusterStores,
    health: &Health,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<ControllerTask> {
    let zone = stores
        .nodes
        .state()
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(args.node_name.as_str()))
        .and_then(|n| {
            n.metadata
                .labels
                .as_ref()?
                .get("topology.kubernetes.io/zone")
                .cloned()
        });
    let config = ProxyConfig {
        node: NodeContext {
            name: args.node_name.clone(),
            zone,
            addresses: node_addresses(),
            node_port_addresses: NodePortAddresses::all(),
        },
        cluster_cidrs: cluster_cidrs(args, stores),
        dataplane: DataplaneConfig::default(),
        resync_period: PROXY_RESYNC,
    };
    // Subscribe before the first snapshot so no change between the two is lost.
    let mut changes = stores.changes();
    let (updates_tx, updates_rx) = std::sync::mpsc::channel::<ClusterObjects>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
    let reporter = health.register(PROXY, PROXY_RESYNC);
    crate::metrics::declare_controller(PROXY);
    let thread = std::thread::Builder::new()
        .name("service-proxy".into())
        .spawn(move || proxy_loop(config, updates_rx, started_tx, reporter))
        .context("spawning the service proxy thread")?;
    match started_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            health.unregister(PROXY);
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            health.unregister(PROXY);
            return Err(anyhow!("the service proxy thread ended while starting"));
        }
    }
    info!("service proxy started");
    updates_tx
        .send(proxy_objects(stores))
        .map_err(|_| anyhow!("the service proxy stopped before its first sync"))?;
    let stores = stores.clone();
    Ok(Box::pin(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                change = changes.recv() => {
                    let Some(change) = change else { break };
                    let mut relevant = proxy_relevant(&change);
                    // Coalesce what is already queued into one snapshot.
                    while let Some(more) = changes.try_recv() {
                        relevant |= proxy_relevant(&more);
                    }
                    if relevant && updates_tx.send(proxy_objects(&stores)).is_err() {
                        return Err(anyhow!("service proxy: its loop ended"));
                    }
                }
            }
        }
        // Dropping the sender ends the proxy loop; the thread is left to finish its current sync.
        drop(updates_tx);
        Ok(PROXY)
    }))
}

fn proxy_relevant(change: &Change) -> bool {
    matches!(
        change.kind(),
        None | Some(Kind::Service | Kind::EndpointSlice | Kind::Node)
    )
}

/// The proxy thread: opens the dataplane (reporting the outcome), then syncs on every update and resyncs
/// every period, until the sender is dropped.
fn proxy_loop(
    config: ProxyConfig,
    updates: std::sync::mpsc::Receiver<ClusterObjects>,
    started: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
    reporter: Reporter,
) {
    let period = config.resync_period;
    let mut controller = match ProxyController::new(config) {
        Ok(c) => {
            let _ = started.send(Ok(()));
            c
        }
        Err(e) => {
            let cause = match &e {
                // The error's own chain repeats its message; one clear sentence names the cause and the fix.
                ProxyDataplaneError::Ipvs(IpvsError::FamilyNotFound) => anyhow!(
                    "starting the service proxy: IPVS is not available in this kernel (generic netlink \
                     family \"IPVS\" not registered; load the ip_vs module)"
                ),
                _ => anyhow::Error::new(e).context("starting the service proxy"),
            };
            let _ = started.send(Err(cause));
            return;
        }
    };
    loop {
        match updates.recv_timeout(period) {
            Ok(mut objects) => {
                // Only the newest snapshot matters.
                while let Ok(newer) = updates.try_recv() {
                    objects = newer;
                }
                let outcome = controller.sync(&objects.services, &objects.slices);
                crate::metrics::observe_sync(PROXY, outcome.duration);
                observe_proxy_result(&outcome);
                reporter.synced();
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(outcome) = controller.resync() {
                    crate::metrics::observe_sync(PROXY, outcome.duration);
                    observe_proxy_result(&outcome);
                    reporter.synced();
                } else {
                    reporter.alive();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn observe_proxy_result(outcome: &proxy::controller::SyncOutcome) {
    let kinds: Vec<&'static str> = outcome
        .report
        .errors
        .iter()
        .map(|e| e.metric_label())
        .collect();
    crate::metrics::observe_result(PROXY, &kinds);
}

/// Starts the firewall controller on its own change subscription; a watcher turns its metrics into
/// health progress and sync-duration observations.
fn start_firewall(
    stores: &ClusterStores,
    health: &Health,
    mut stop: watch::Receiver<bool>,
) -> ControllerTask {
    let options = FirewallOptions {
        node_addresses: node_addresses(),
        ..FirewallOptions::default()
    };
    let dataplane = FirewallDataplane::new(NftTarget::Current, options.table.clone());
    let controller = FirewallController::new(stores.clone(), options, dataplane);
    let metrics = controller.metrics();
    let changes = stores.changes();
    let reporter = health.register(FIREWALL, firewall::controller::DEFAULT_RESYNC);
    crate::metrics::declare_controller(FIREWALL);
    info!("firewall started");
    Box::pin(async move {
        let run = controller.run(changes);
        tokio::pin!(run);
        let mut seen = 0u64;
        let mut seen_errors = 0u64;
        let mut poll = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = &mut run => return Err(anyhow!("firewall: the change stream ended")),
                _ = stop.wait_for(|s| *s) => return Ok(FIREWALL),
                _ = poll.tick() => {
                    let m = metrics.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let passes = m.full_syncs + m.element_syncs + m.unchanged_syncs + m.errors;
                    if passes != seen {
                        seen = passes;
                        if let Some(d) = m.last_sync_duration {
                            crate::metrics::observe_sync(FIREWALL, d);
                        }
                        // The firewall's failures are nft transactions (its only dataplane).
                        let failed = m.errors != seen_errors;
                        seen_errors = m.errors;
                        crate::metrics::observe_result(FIREWALL, if failed { &["nftables"] } else { &[] });
                        reporter.synced();
                    }
                }
            }
        }
    })
}
