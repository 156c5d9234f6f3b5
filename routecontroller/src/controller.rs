//! The route controller loop: Node changes -> speaker peers and originations; best paths -> kernel routes; the CNI
//! conflist and the pod egress table.
//!
//! Brief overview: [`RouteController::new`] reads back the kernel routes a previous run left (graceful restart:
//! they stay until the peers have re-sent their routes or [`ControllerConfig::restart_hold`] ends);
//! [`RouteController::run`] then reacts to three inputs, each in its own handler:
//! - a Node [`Change`] -> [`desired_routing`] -> only the peers that differ are added, updated or removed
//!   ([`diff_peers`]), originations follow the announcements, the conflist is rewritten when the pod CIDRs change;
//! - a best-path change from the speaker -> [`desired_kernel_routes`] -> the route dataplane (read back + diff);
//! - a periodic resync that does both from scratch.
//!
//! Problems in the cluster's data are logged (once, with the node's name) and never stop the loop; only a change
//! of the speaker's identity (ASN, router-id, cluster id, port) ends it, since that needs a new speaker.

mod nexthop;
mod peers;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use bgpd::fsm::State;
use bgpd::packet::PathAttributes;
use bgpd::rib::{BestChange, PathSource, PeerId};
use bgpd::speaker::{Neighbor, Speaker, SpeakerError};
use cluster::{Change, Changes, ClusterStores, Kind};
use futures::TryStreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::cni::write_atomic;
use crate::dataplane::{
    EgressConfig, NdpError, NdpProxy, PodEgress, RouteDataplane, RouteDataplaneConfig,
    RouteDataplaneError, rtnetlink_handle,
};
use crate::model::{
    BestPath, Config, ConflistParams, DesiredRouting, KernelNextHop, KernelRoute, ModelError,
    cni_conflist, desired_kernel_routes, desired_routing, merge_conflist, render_conflist,
};

pub use nexthop::{KernelView, read_kernel_view, resolve};
pub use peers::{
    GRACEFUL_RESTART_TIME, PeerDiff, PeerMapError, SpeakerIdentity, diff_peers, export_policy,
    import_policy, local_next_hops, neighbor_for, origination_attributes, with_graceful_restart,
};

/// The CNI network name (host-local keeps its leases under a directory of this name).
pub const CNI_NETWORK_NAME: &str = "fairlead";
/// The pods' Linux bridge.
pub const CNI_BRIDGE: &str = "kube-bridge";

/// The controller's settings.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// This node's name (its Node object).
    pub node_name: String,
    /// The validated routing flags.
    pub routing: Config,
    /// Where the CNI conflist goes (`--cni-conf-file`).
    pub cni_conf_file: PathBuf,
    /// Full recomputation period.
    pub resync_interval: Duration,
    /// Graceful restart: routes read back at start are kept at most this long.
    pub restart_hold: Duration,
    /// ...or until every peer has been Established this long (it has re-sent its routes by then).
    pub restart_settle: Duration,
    /// Kernel route table and metric.
    pub routes: RouteDataplaneConfig,
    /// `--ndp-proxy-interface`: answer neighbour solicitations there for this node's pods' IPv6 addresses.
    pub ndp_proxy_interface: Option<String>,
}

impl ControllerConfig {
    /// Defaults: resync every 60 s, restart hold 120 s (bgpd's default restart time), settle 5 s.
    pub fn new(node_name: String, routing: Config, cni_conf_file: PathBuf) -> Self {
        ControllerConfig {
            node_name,
            routing,
            cni_conf_file,
            resync_interval: Duration::from_secs(60),
            restart_hold: Duration::from_secs(120),
            restart_settle: Duration::from_secs(5),
            routes: RouteDataplaneConfig::default(),
            ndp_proxy_interface: None,
        }
    }
}

/// Errors that stop the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The routing state cannot be computed at all.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The speaker was started for another identity.
    #[error("BGP identity changed from {old:?} to {new:?}: fairlead must restart to apply it")]
    IdentityChanged {
        old: SpeakerIdentity,
        new: SpeakerIdentity,
    },
    /// The speaker stopped.
    #[error("BGP speaker: {0}")]
    Speaker(#[from] SpeakerError),
    /// No netlink socket.
    #[error("netlink socket: {0}")]
    Netlink(#[source] std::io::Error),
    /// `--ndp-proxy-interface` cannot be used.
    #[error("--ndp-proxy-interface: {0}")]
    NdpProxy(#[from] NdpError),
    /// The kernel routes could not be read back at start.
    #[error("reading back kernel routes: {0}")]
    Routes(#[from] RouteDataplaneError),
    /// The cluster source stopped feeding the stores.
    #[error("the cluster source stopped")]
    SourceStopped,
}

/// The desired routing state from the Node store right now.
pub fn desired_from_stores(
    stores: &ClusterStores,
    node_name: &str,
    config: &Config,
) -> Result<DesiredRouting, ModelError> {
    let nodes: Vec<Node> = stores.nodes.state().iter().map(|n| (**n).clone()).collect();
    desired_routing(&nodes, node_name, config)
}

/// Every address of the local Node (never a next hop of our own routes).
fn node_addresses(stores: &ClusterStores, node_name: &str) -> Vec<IpAddr> {
    stores
        .nodes
        .state()
        .iter()
        .filter(|n| n.metadata.name.as_deref() == Some(node_name))
        .flat_map(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.addresses.clone())
                .unwrap_or_default()
        })
        .filter_map(|a| a.address.trim().parse().ok())
        .collect()
}

/// Writes the conflist to `path`, merged into the existing file; returns whether the file changed.
fn install_conflist_at(
    path: &std::path::Path,
    desired: &serde_json::Value,
) -> Result<bool, String> {
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let merged = match &existing {
        Some(text) => {
            merge_conflist(text, desired).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => desired.clone(),
    };
    let rendered = render_conflist(&merged);
    if existing.as_deref() == Some(rendered.as_str()) {
        return Ok(false);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write_atomic(path, rendered.as_bytes(), 0o644)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(true)
}

/// The MTU of the interface holding `addr` (the uplink), if netlink can tell.
async fn uplink_mtu(handle: &rtnetlink::Handle, addr: IpAddr) -> Option<u32> {
    use netlink_packet_route::address::AddressAttribute;
    use netlink_packet_route::link::LinkAttribute;
    let mut addrs = handle.address().get().execute();
    let mut index = None;
    while let Ok(Some(msg)) = addrs.try_next().await {
        if msg
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Address(ip) if *ip == addr))
        {
            index = Some(msg.header.index);
            break;
        }
    }
    let mut links = handle.link().get().match_index(index?).execute();
    let link = links.try_next().await.ok()??;
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// The controller; see the module documentation.
pub struct RouteController {
    config: ControllerConfig,
    stores: ClusterStores,
    speaker: Speaker,
    identity: SpeakerIdentity,
    handle: rtnetlink::Handle,
    routes: RouteDataplane,
    /// Neighbours configured on the speaker, by address.
    peers: BTreeMap<IpAddr, Neighbor>,
    /// Prefixes originated, with their attributes.
    announced: BTreeMap<IpNet, PathAttributes>,
    /// The last desired state computed (None until the local Node was seen).
    desired: Option<DesiredRouting>,
    local_addresses: Vec<IpAddr>,
    /// Pod CIDRs the conflist on disk was written for.
    conflist_cidrs: Option<Vec<IpNet>>,
    egress: Option<EgressConfig>,
    /// Best paths learned from peers: prefix -> next hops.
    best: BTreeMap<IpNet, Vec<IpAddr>>,
    /// Graceful restart: our routes found in the kernel at start, kept until `retain_until` or the peers settle.
    retained: Vec<KernelRoute>,
    retain_until: Instant,
    /// Warnings already logged (each is logged once while it lasts).
    logged: BTreeSet<String>,
    /// Kernel routes of a previous run were found at start (the graceful-restart R bit).
    restarted: bool,
    /// The NDP proxy, with the entries last applied.
    ndp: Option<(NdpProxy, Option<BTreeSet<Ipv6Addr>>)>,
}

impl RouteController {
    /// Opens netlink in the current network namespace and reads back the routes a previous run installed.
    pub async fn new(
        config: ControllerConfig,
        stores: ClusterStores,
        speaker: Speaker,
        identity: SpeakerIdentity,
    ) -> Result<Self, ControllerError> {
        let handle = rtnetlink_handle().map_err(ControllerError::Netlink)?;
        let routes = RouteDataplane::new(handle.clone(), config.routes.clone());
        let retained = routes.read_back().await?;
        if !retained.is_empty() {
            info!(
                node = %config.node_name,
                routes = retained.len(),
                "kept the kernel routes of the previous run until the peers have re-sent theirs"
            );
        }
        let retain_until = Instant::now() + config.restart_hold;
        let restarted = !retained.is_empty();
        let ndp = match &config.ndp_proxy_interface {
            Some(interface) => Some((NdpProxy::new(handle.clone(), interface).await?, None)),
            None => None,
        };
        Ok(RouteController {
            config,
            stores,
            speaker,
            identity,
            handle,
            routes,
            peers: BTreeMap::new(),
            announced: BTreeMap::new(),
            desired: None,
            local_addresses: Vec::new(),
            conflist_cidrs: None,
            egress: None,
            best: BTreeMap::new(),
            retained,
            retain_until,
            logged: BTreeSet::new(),
            restarted,
            ndp,
        })
    }

    /// Runs until `shutdown` turns true (Ok) or the speaker's identity must change (Err). Kernel routes, the
    /// conflist and the sessions are left as they are on return: a restart reads them back.
    pub async fn run(
        self,
        changes: Changes,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), ControllerError> {
        let span = info_span!("routecontroller", node = %self.config.node_name);
        self.run_inner(changes, shutdown).instrument(span).await
    }

    async fn run_inner(
        mut self,
        mut changes: Changes,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ControllerError> {
        let mut best = self.speaker.subscribe().await?;
        for change in std::mem::take(&mut best.snapshot) {
            self.on_best_change(change);
        }
        self.reconcile_routing().await?;
        self.apply_kernel().await;
        self.reconcile_ndp().await;

        let mut resync = tokio::time::interval(self.config.resync_interval);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        let mut restart_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    info!("route controller stopping; kernel routes and the conflist are kept");
                    return Ok(());
                }
                change = changes.recv() => {
                    let Some(change) = change else {
                        return Err(ControllerError::SourceStopped);
                    };
                    let mut relevant = concerns_routing(&change);
                    let mut pods = concerns_pods(&change);
                    // A burst of changes (a relist, a directory re-read) is handled once.
                    while let Some(more) = changes.try_recv() {
                        relevant |= concerns_routing(&more);
                        pods |= concerns_pods(&more);
                    }
                    if relevant {
                        self.reconcile_routing().await?;
                        self.apply_kernel().await;
                    }
                    if pods || relevant {
                        self.reconcile_ndp().await;
                    }
                }
                change = best.changes.recv() => {
                    let Some(change) = change else {
                        return Err(ControllerError::Speaker(SpeakerError::Stopped));
                    };
                    self.on_best_change(change);
                    while let Ok(more) = best.changes.try_recv() {
                        self.on_best_change(more);
                    }
                    self.apply_kernel().await;
                }
                _ = resync.tick() => {
                    debug!("periodic resync");
                    self.reconcile_routing().await?;
                    self.apply_kernel().await;
                    if let Some((_, applied)) = &mut self.ndp {
                        *applied = None; // re-read and re-apply
                    }
                    self.reconcile_ndp().await;
                }
                _ = restart_check.tick(), if !self.retained.is_empty() => {
                    if self.restart_over().await {
                        info!(routes = self.retained.len(), "graceful restart over; routes of the previous run no longer kept");
                        self.retained.clear();
                        self.apply_kernel().await;
                    }
                }
            }
        }
    }

    /// Logs a warning once while it lasts, with the node it concerns.
    fn log_warnings(&mut self, warnings: &[crate::model::ModelWarning], scope: &str) {
        let mut now = BTreeSet::new();
        for w in warnings {
            let text = format!("{scope}: {w}");
            if !self.logged.contains(&text) {
                warn!(about = w.node().unwrap_or("-"), reason = w.reason(), "{w}");
            }
            now.insert(text);
        }
        let prefix = format!("{scope}: ");
        self.logged
            .retain(|t| !t.starts_with(&prefix) || now.contains(t));
        self.logged.extend(now);
    }

    /// Node store -> peers, originations, conflist, egress.
    async fn reconcile_routing(&mut self) -> Result<(), ControllerError> {
        let desired =
            match desired_from_stores(&self.stores, &self.config.node_name, &self.config.routing) {
                Ok(d) => d,
                Err(e @ ModelError::LocalNodeNotFound(_)) => {
                    // Never tear down working state because the Node vanished from the source.
                    let text = e.to_string();
                    if self.logged.insert(format!("model: {text}")) {
                        warn!("{text}; keeping the current sessions and routes");
                    }
                    return Ok(());
                }
            };
        self.logged.retain(|t| !t.starts_with("model: "));
        self.log_warnings(&desired.warnings, "routing");

        let identity = SpeakerIdentity::of(&desired);
        if identity != self.identity {
            return Err(ControllerError::IdentityChanged {
                old: self.identity.clone(),
                new: identity,
            });
        }
        self.local_addresses = node_addresses(&self.stores, &self.config.node_name);
        self.reconcile_peers(&desired).await?;
        self.reconcile_originations(&desired).await?;
        self.reconcile_conflist(&desired).await;
        self.reconcile_egress().await;
        self.desired = Some(desired);
        Ok(())
    }

    async fn reconcile_peers(&mut self, desired: &DesiredRouting) -> Result<(), ControllerError> {
        let speaker_config = self.identity.speaker_config();
        let mut wanted = BTreeMap::new();
        let mut map_errors = Vec::new();
        for p in &desired.peers {
            match neighbor_for(&speaker_config, desired, p) {
                Ok(n) => {
                    wanted.insert(p.address, with_graceful_restart(n, self.restarted));
                }
                Err(e) => map_errors.push(e.to_string()),
            }
        }
        for text in &map_errors {
            if self.logged.insert(format!("peers: {text}")) {
                warn!("{text}");
            }
        }
        self.logged
            .retain(|t| !t.starts_with("peers: ") || map_errors.iter().any(|e| t.ends_with(e)));

        let diff = diff_peers(&self.peers, &wanted);
        for addr in diff.remove {
            let id = PeerId { addr, scope_id: 0 };
            match self.speaker.remove_peer(id).await {
                Ok(()) | Err(SpeakerError::UnknownPeer(_)) => {
                    info!(peer = %addr, "BGP peer removed");
                    self.peers.remove(&addr);
                }
                Err(SpeakerError::Stopped) => return Err(SpeakerError::Stopped.into()),
                Err(e) => warn!(peer = %addr, error = %e, "removing BGP peer failed"),
            }
        }
        for n in diff.add {
            let addr = n.session.remote;
            match self.speaker.add_peer(n.clone()).await {
                Ok(()) => {
                    info!(peer = %addr, asn = n.rib.remote_asn, "BGP peer added");
                    self.peers.insert(addr, n);
                }
                Err(SpeakerError::Stopped) => return Err(SpeakerError::Stopped.into()),
                Err(e) => warn!(peer = %addr, error = %e, "adding BGP peer failed"),
            }
        }
        for n in diff.update {
            let addr = n.session.remote;
            match self.speaker.update_peer(n.clone()).await {
                Ok(()) => {
                    info!(peer = %addr, "BGP peer updated");
                    self.peers.insert(addr, n);
                }
                Err(SpeakerError::Stopped) => return Err(SpeakerError::Stopped.into()),
                Err(e) => warn!(peer = %addr, error = %e, "updating BGP peer failed"),
            }
        }
        Ok(())
    }

    async fn reconcile_originations(
        &mut self,
        desired: &DesiredRouting,
    ) -> Result<(), ControllerError> {
        let wanted: BTreeMap<IpNet, PathAttributes> = desired
            .announcements
            .iter()
            .map(|a| (a.prefix, origination_attributes(a)))
            .collect();
        let gone: Vec<IpNet> = self
            .announced
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        for prefix in gone {
            self.speaker.withdraw(prefix).await?;
            info!(%prefix, "withdrawn");
            self.announced.remove(&prefix);
        }
        for (prefix, attrs) in wanted {
            if self.announced.get(&prefix) != Some(&attrs) {
                self.speaker.originate(prefix, attrs.clone()).await?;
                info!(%prefix, "originated");
                self.announced.insert(prefix, attrs);
            }
        }
        Ok(())
    }

    async fn reconcile_conflist(&mut self, desired: &DesiredRouting) {
        if self.conflist_cidrs.as_ref() == Some(&desired.local_pod_cidrs) {
            return;
        }
        if desired.local_pod_cidrs.is_empty() {
            let text = "no podCIDRs on this node yet; CNI conflist not written".to_string();
            if self.logged.insert(format!("cni: {text}")) {
                warn!("{text}");
            }
            return;
        }
        let uplink = desired
            .peers
            .iter()
            .find_map(|p| p.local_address)
            .or_else(|| self.local_addresses.first().copied());
        let mtu = match uplink {
            Some(addr) => uplink_mtu(&self.handle, addr).await,
            None => None,
        }
        .unwrap_or(1500);
        let params = ConflistParams {
            network_name: CNI_NETWORK_NAME.into(),
            bridge: CNI_BRIDGE.into(),
            mtu,
            hairpin_mode: true,
            pod_cidrs: desired.local_pod_cidrs.clone(),
        };
        let result = cni_conflist(&params)
            .map_err(|e| e.to_string())
            .and_then(|v| install_conflist_at(&self.config.cni_conf_file, &v));
        match result {
            Ok(changed) => {
                self.logged.retain(|t| !t.starts_with("cni: "));
                if changed {
                    info!(path = %self.config.cni_conf_file.display(), cidrs = ?desired.local_pod_cidrs, mtu, "CNI conflist written");
                }
                self.conflist_cidrs = Some(desired.local_pod_cidrs.clone());
            }
            Err(e) => {
                // Retried at the next change or resync.
                if self.logged.insert(format!("cni: {e}")) {
                    warn!(error = %e, "writing the CNI conflist failed");
                }
            }
        }
    }

    async fn reconcile_egress(&mut self) {
        let cfg = &self.config.routing;
        let wanted = EgressConfig {
            enabled: cfg.enable_pod_egress,
            pod_cidrs: cfg.cluster_cidrs.clone(),
            cluster_ranges: cfg.cluster_owned_ranges(),
            ..EgressConfig::default()
        };
        if self.egress.as_ref() == Some(&wanted) {
            return;
        }
        let apply = wanted.clone();
        let result = tokio::task::spawn_blocking(move || PodEgress.apply(&apply)).await;
        match result {
            Ok(Ok(())) => {
                info!(enabled = wanted.enabled, "pod egress table applied");
                self.egress = Some(wanted);
            }
            Ok(Err(e)) => {
                warn!(error = %e, "pod egress table not applied; retried at the next resync")
            }
            Err(e) => warn!(error = %e, "pod egress task failed"),
        }
    }

    /// Pod store -> NDP proxy entries on `--ndp-proxy-interface` (when set).
    async fn reconcile_ndp(&mut self) {
        let Some((proxy, applied)) = &mut self.ndp else {
            return;
        };
        let Some(desired) = &self.desired else {
            return;
        };
        // An unsynced (or unwatched) Pod store reads as empty, which would remove every entry: wait for it.
        let synced = matches!(
            futures::FutureExt::now_or_never(self.stores.pods.wait_until_ready()),
            Some(Ok(()))
        );
        if !synced {
            let text =
                "Pod objects not synced (are Pods watched?); NDP proxy entries left as they are";
            if self.logged.insert(format!("ndp: {text}")) {
                warn!("{text}");
            }
            return;
        }
        let pods: Vec<Pod> = self
            .stores
            .pods
            .state()
            .iter()
            .map(|p| (**p).clone())
            .collect();
        let wanted = local_pod_ipv6(&pods, &self.config.node_name, &desired.local_pod_cidrs);
        if applied.as_ref() == Some(&wanted) {
            return;
        }
        match proxy.apply(&wanted).await {
            Ok(report) => {
                if report.added + report.removed > 0 || !report.errors.is_empty() {
                    info!(
                        interface = proxy.interface(),
                        added = report.added,
                        removed = report.removed,
                        failed = report.errors.len(),
                        "NDP proxy entries updated"
                    );
                }
                for (addr, e) in &report.errors {
                    warn!(%addr, error = %e, "NDP proxy entry not applied");
                }
                *applied = report.errors.is_empty().then_some(wanted);
            }
            Err(e) => {
                warn!(error = %e, "NDP proxy entries not read back; retried at the next resync")
            }
        }
    }

    /// Records one best-path change: paths from peers only (our own originations are the bridge's business).
    fn on_best_change(&mut self, change: BestChange) {
        let learned = change
            .new
            .first()
            .is_some_and(|best| best.source != PathSource::Local);
        let hops: Vec<IpAddr> = if learned {
            change
                .new
                .iter()
                .filter(|r| r.source != PathSource::Local)
                .filter_map(|r| r.attrs.next_hop)
                .collect()
        } else {
            Vec::new()
        };
        if hops.is_empty() {
            self.best.remove(&change.prefix);
        } else {
            self.best.insert(change.prefix, hops);
        }
    }

    /// Best paths (+ routes kept over a restart) -> kernel; failures are logged and retried at the next resync.
    async fn apply_kernel(&mut self) {
        let local_cidrs = self
            .desired
            .as_ref()
            .map(|d| d.local_pod_cidrs.clone())
            .unwrap_or_default();
        let paths: Vec<BestPath> = self
            .best
            .iter()
            .map(|(prefix, hops)| BestPath {
                prefix: *prefix,
                next_hops: hops.clone(),
            })
            .collect();
        let computed = desired_kernel_routes(&paths, &local_cidrs, &self.local_addresses);
        self.log_warnings(&computed.warnings, "kernel");
        let mut routes = computed.routes;
        // Next hops on another segment go through the kernel's route towards them.
        match read_kernel_view(&self.handle).await {
            Ok(view) => {
                for route in &mut routes {
                    for hop in &mut route.next_hops {
                        *hop = match *hop {
                            KernelNextHop::Gateway(ip) => {
                                KernelNextHop::Gateway(resolve(ip, &view))
                            }
                            KernelNextHop::ViaInet6(v6) => match resolve(IpAddr::V6(v6), &view) {
                                IpAddr::V6(gw) => KernelNextHop::ViaInet6(gw),
                                IpAddr::V4(_) => KernelNextHop::ViaInet6(v6),
                            },
                        };
                    }
                    route.next_hops.sort();
                    route.next_hops.dedup();
                }
            }
            Err(e) => debug!(error = %e, "kernel routes not read for next-hop resolution"),
        }
        for kept in &self.retained {
            if !routes.iter().any(|r| r.prefix == kept.prefix)
                && !local_cidrs.iter().any(|c| c.contains(&kept.prefix))
            {
                routes.push(kept.clone());
            }
        }
        routes.sort_by_key(|r| r.prefix);
        match self.routes.apply(&routes).await {
            Ok(report) => {
                if report.added + report.replaced + report.deleted > 0 {
                    info!(
                        added = report.added,
                        replaced = report.replaced,
                        deleted = report.deleted,
                        failed = report.errors.len(),
                        "kernel routes updated"
                    );
                }
            }
            Err(e) => warn!(error = %e, "kernel routes not read back; retried at the next change"),
        }
    }

    /// Whether the routes kept over a restart can go: the hold time passed, or every peer has been Established
    /// for the settle time (it sent its table right after the OPEN exchange).
    async fn restart_over(&self) -> bool {
        if Instant::now() >= self.retain_until {
            return true;
        }
        if self.desired.is_none() {
            return false;
        }
        let Ok(states) = self.speaker.neighbors().await else {
            return false;
        };
        let settled = |addr: &IpAddr| {
            states.iter().any(|s| {
                s.id.addr == *addr
                    && s.state == State::Established
                    && s.established_since
                        .is_some_and(|t| t.elapsed() >= self.config.restart_settle)
            })
        };
        self.peers.keys().all(settled)
    }
}

/// Whether a change can alter the NDP proxy entries (Pods, or a lost notification).
fn concerns_pods(change: &Change) -> bool {
    matches!(change.kind(), Some(Kind::Pod) | None)
}

/// The IPv6 addresses of the pods on `node_name` that lie inside its pod CIDRs (host-network pods use the
/// node's own addresses and are left out).
pub fn local_pod_ipv6(pods: &[Pod], node_name: &str, pod_cidrs: &[IpNet]) -> BTreeSet<Ipv6Addr> {
    let mut out = BTreeSet::new();
    for pod in pods {
        let Some(spec) = &pod.spec else { continue };
        if spec.node_name.as_deref() != Some(node_name) || spec.host_network == Some(true) {
            continue;
        }
        let Some(status) = &pod.status else { continue };
        let ips = status
            .pod_ips
            .iter()
            .flatten()
            .map(|p| p.ip.as_str())
            .chain(status.pod_ip.as_deref());
        for ip in ips {
            if let Ok(IpAddr::V6(v6)) = ip.trim().parse::<IpAddr>()
                && pod_cidrs.iter().any(|c| c.contains(&IpAddr::V6(v6)))
            {
                out.insert(v6);
            }
        }
    }
    out
}

/// Whether a change can alter the routing state (Nodes only, or a lost notification).
fn concerns_routing(change: &Change) -> bool {
    matches!(change.kind(), Some(Kind::Node) | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: &str, host_network: bool, ips: &[&str]) -> Pod {
        let yaml = format!(
            "metadata: {{name: p}}\nspec: {{nodeName: {node}, hostNetwork: {host_network}, containers: []}}\n\
             status: {{podIPs: [{}]}}\n",
            ips.iter()
                .map(|i| format!("{{ip: \"{i}\"}}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        serde_norway::from_str(&yaml).expect(&yaml)
    }

    #[test]
    fn only_this_nodes_pod_ipv6_addresses_inside_its_pod_cidrs_are_proxied() {
        let cidrs: Vec<IpNet> = vec![
            "fd00:0:0:1:1::/80".parse().unwrap(),
            "198.19.1.0/24".parse().unwrap(),
        ];
        let pods = vec![
            pod("node1", false, &["fd00:0:0:1:1::5", "198.19.1.5"]),
            pod("node1", true, &["fd00:0:0:1::1"]),
            pod("node2", false, &["fd00:0:0:1:2::5"]),
            pod("node1", false, &["fd00:0:0:9::5", "not-an-ip"]),
        ];
        let got = local_pod_ipv6(&pods, "node1", &cidrs);
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec!["fd00:0:0:1:1::5".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn node_and_lost_changes_concern_routing_pod_changes_do_not() {
        let node = Change::Applied {
            kind: Kind::Node,
            key: cluster::ObjectKey::cluster("n"),
        };
        let pod = Change::Deleted {
            kind: Kind::Pod,
            key: cluster::ObjectKey::namespaced("d", "p"),
        };
        let lost = Change::Missed { count: 3 };
        assert!(concerns_routing(&node) && !concerns_pods(&node));
        assert!(!concerns_routing(&pod) && concerns_pods(&pod));
        assert!(concerns_routing(&lost) && concerns_pods(&lost));
    }
}
