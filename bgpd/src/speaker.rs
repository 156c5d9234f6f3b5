//! The embedding API: a `Speaker` handle that runs sessions and the RIB on tokio.
//!
//! ```text
//!  Speaker (cloneable handle) ──Request──► speaker task: owns the Rib, the Listener and one SessionHandle per peer
//!                                             ▲  │ SessionCommand (start/stop, UPDATEs out)
//!                          PeerEvent ─────────┘  ▼
//!                                          session tasks (session.rs)
//!  subscribers ◄── BestChange (a snapshot first, then every delta, in order)
//! ```
//! Every change of a best path (from an UPDATE, a session going down, an origination) goes to the subscribers and,
//! through [`Rib::export`], to every Established peer as UPDATEs.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::fsm::{FsmConfig, Negotiated, State, build_open};
use crate::packet::iana::{Afi, Family, Safi};
use crate::packet::{Capability, NotificationMsg, PathAttributes, UpdateMsg};
use crate::policy::MaxPrefixSignal;
use crate::rib::{
    BestChange, LocalConfig, OutChange, PeerConfig, PeerId, Rib, RibError, Route, SessionInfo,
};
use crate::session::{
    self, Listener, MessageStats, PeerEvent, PeerKey, SessionCommand, SessionConfig, SessionError,
    SessionEvent, SessionHandle,
};

/// Prefixes per UPDATE: keeps every message well under 4096 octets (a /128 with path id is 21 octets).
const PREFIXES_PER_UPDATE: usize = 100;

/// The speaker's own settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeakerConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// RFC 4456 cluster id when reflecting; the router id when `None`.
    pub cluster_id: Option<Ipv4Addr>,
    /// Addresses to accept sessions on (usually [`session::any_addrs`]`(179)`); empty: outgoing sessions only.
    pub listen: Vec<SocketAddr>,
}

/// One configured neighbour: how to reach it (session) and how to treat its routes (RIB policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub session: SessionConfig,
    /// Reflection, next-hop-self, import/export policy, max-prefix. Its `id` is set from the session's address.
    pub rib: PeerConfig,
    /// Our next hops of each family towards this peer when the session's own local address is of the other
    /// family (dual-stack routes over a single-family session); the session's local address otherwise.
    pub local_ipv4: Option<Ipv4Addr>,
    pub local_ipv6: Option<Ipv6Addr>,
}

impl Neighbor {
    /// A neighbour at `remote` in `remote_asn` with default session and policy settings.
    pub fn new(config: &SpeakerConfig, remote: IpAddr, remote_asn: u32) -> Self {
        let fsm = FsmConfig::new(config.asn, remote_asn, config.router_id);
        let session = SessionConfig::new(fsm, remote);
        let id = peer_id(session.peer_key());
        Neighbor {
            session,
            rib: PeerConfig::new(id, remote_asn),
            local_ipv4: None,
            local_ipv6: None,
        }
    }

    pub fn id(&self) -> PeerId {
        peer_id(self.session.peer_key())
    }
}

/// What the speaker knows about one neighbour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborState {
    pub id: PeerId,
    pub remote_asn: u32,
    pub state: State,
    /// What the OPEN exchange agreed on, while Established.
    pub negotiated: Option<Negotiated>,
    /// When the session reached Established (the current one).
    pub established_since: Option<Instant>,
    /// How many times the session left Established.
    pub flaps: u32,
    /// Accepted prefixes per family.
    pub accepted: BTreeMap<Family, usize>,
    /// Prefixes in the Adj-RIB-Out per family (what we advertise to it).
    pub advertised: BTreeMap<Family, usize>,
    /// Prefixes it sent per family that we hold: accepted plus rejected by import policy.
    pub received: BTreeMap<Family, usize>,
    /// Graceful restart (RFC 4724) in progress: the families whose routes are kept as stale, and until when.
    pub stale: Option<(Instant, Vec<Family>)>,
    /// The last NOTIFICATION we sent to it, and the last one it sent us (kept across sessions).
    pub last_notification_sent: Option<NotificationMsg>,
    pub last_notification_received: Option<NotificationMsg>,
    /// Messages sent and received by its session.
    pub messages: MessageStats,
    /// Disabled by [`Speaker::set_peer_enabled`].
    pub admin_down: bool,
    /// Our end of the Established connection.
    pub local: Option<SocketAddr>,
    /// When the session last left Established.
    pub down_since: Option<Instant>,
    /// The configuration it runs with.
    pub neighbor: Neighbor,
    /// The capabilities of our OPEN and of the peer's OPEN for the Established session (empty otherwise):
    /// what each side advertised, not only what both agreed on.
    pub local_capabilities: Vec<Capability>,
    pub remote_capabilities: Vec<Capability>,
}

/// Errors of the speaker API.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Rib(#[from] RibError),
    #[error("neighbor {0} is already configured")]
    DuplicatePeer(PeerId),
    #[error("neighbor {0} is not configured")]
    UnknownPeer(PeerId),
    #[error("the speaker has stopped")]
    Stopped,
}

type Reply<T> = oneshot::Sender<T>;
/// An Adj-RIB-Out as the speaker hands it out: prefix and the attributes last announced.
pub type AdjRibOut = Vec<(IpNet, Arc<PathAttributes>)>;

enum Request {
    AddPeer(Box<Neighbor>, Reply<Result<(), SpeakerError>>),
    UpdatePeer(Box<Neighbor>, Reply<Result<(), SpeakerError>>),
    RemovePeer(PeerId, Reply<Result<(), SpeakerError>>),
    ResetPeer {
        id: PeerId,
        soft: bool,
        reply: Reply<Result<(), SpeakerError>>,
    },
    Enable {
        id: PeerId,
        enabled: bool,
        reply: Reply<Result<(), SpeakerError>>,
    },
    Originate(IpNet, Box<PathAttributes>, Reply<()>),
    WithdrawLocal(IpNet, Reply<()>),
    Neighbors(Reply<Vec<NeighborState>>),
    Best(IpNet, Reply<Vec<Route>>),
    LocRib(Family, Reply<Vec<(IpNet, Vec<Route>)>>),
    AdjIn(
        PeerId,
        Family,
        Reply<Result<Vec<(IpNet, Route)>, SpeakerError>>,
    ),
    AdjOut(PeerId, Family, Reply<Result<AdjRibOut, SpeakerError>>),
    Subscribe(Reply<Subscription>),
    Shutdown(Reply<()>),
}

/// A stream of best-path changes: `snapshot` holds the Loc-RIB at subscription time (each as a change from
/// nothing), `changes` every change after it, in order.
#[derive(Debug)]
pub struct Subscription {
    pub snapshot: Vec<BestChange>,
    pub changes: mpsc::UnboundedReceiver<BestChange>,
}

/// The handle of a running speaker; clones talk to the same task.
#[derive(Clone, Debug)]
pub struct Speaker {
    tx: mpsc::UnboundedSender<Request>,
}

impl Speaker {
    /// Binds the listening sockets and starts the speaker task. Must be called within a tokio runtime.
    pub fn start(config: SpeakerConfig) -> Result<(Speaker, JoinHandle<()>), SpeakerError> {
        let listener = if config.listen.is_empty() {
            None
        } else {
            Some(Listener::bind(&config.listen)?)
        };
        let local = LocalConfig {
            asn: config.asn,
            router_id: config.router_id,
            cluster_id: config.cluster_id,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (etx, erx) = mpsc::unbounded_channel();
        let core = Core {
            rib: Rib::new(local),
            listener,
            peers: HashMap::new(),
            subscribers: Vec::new(),
            events_tx: etx,
        };
        let task = tokio::spawn(core.run(rx, erx));
        Ok((Speaker { tx }, task))
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| SpeakerError::Stopped)?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// Adds a neighbour and starts its session.
    pub async fn add_peer(&self, neighbor: Neighbor) -> Result<(), SpeakerError> {
        self.ask(|r| Request::AddPeer(Box::new(neighbor), r))
            .await?
    }

    /// Changes a neighbour: policy-only changes apply in place (re-export, and ROUTE-REFRESH for import changes);
    /// session changes (addresses, AS, timers, keys) restart the session.
    pub async fn update_peer(&self, neighbor: Neighbor) -> Result<(), SpeakerError> {
        self.ask(|r| Request::UpdatePeer(Box::new(neighbor), r))
            .await?
    }

    /// Stops the session (Cease / Peer De-configured) and withdraws the neighbour's routes.
    pub async fn remove_peer(&self, id: PeerId) -> Result<(), SpeakerError> {
        self.ask(|r| Request::RemovePeer(id, r)).await?
    }

    /// Hard reset (Cease / Administrative Reset, new session), or soft: ROUTE-REFRESH in and a full resend out.
    pub async fn reset_peer(&self, id: PeerId, soft: bool) -> Result<(), SpeakerError> {
        self.ask(|reply| Request::ResetPeer { id, soft, reply })
            .await?
    }

    /// Disables (Cease / Administrative Shutdown, no restart) or re-enables a neighbour's session.
    pub async fn set_peer_enabled(&self, id: PeerId, enabled: bool) -> Result<(), SpeakerError> {
        self.ask(|reply| Request::Enable { id, enabled, reply })
            .await?
    }

    /// Originates `prefix` (a missing next hop means ourselves, per peer).
    pub async fn originate(
        &self,
        prefix: IpNet,
        attrs: PathAttributes,
    ) -> Result<(), SpeakerError> {
        self.ask(|r| Request::Originate(prefix, Box::new(attrs), r))
            .await
    }

    /// Stops originating `prefix`.
    pub async fn withdraw(&self, prefix: IpNet) -> Result<(), SpeakerError> {
        self.ask(|r| Request::WithdrawLocal(prefix, r)).await
    }

    pub async fn neighbors(&self) -> Result<Vec<NeighborState>, SpeakerError> {
        self.ask(Request::Neighbors).await
    }

    /// The best path set of `prefix`.
    pub async fn best(&self, prefix: IpNet) -> Result<Vec<Route>, SpeakerError> {
        self.ask(|r| Request::Best(prefix, r)).await
    }

    /// The Loc-RIB of a family: every prefix with its best path set.
    pub async fn loc_rib(&self, family: Family) -> Result<Vec<(IpNet, Vec<Route>)>, SpeakerError> {
        self.ask(|r| Request::LocRib(family, r)).await
    }

    /// A neighbour's Adj-RIB-In of a family after import policy (what it sent and we accepted), with stale
    /// marks and learn times, ordered by prefix.
    pub async fn adj_rib_in(
        &self,
        id: PeerId,
        family: Family,
    ) -> Result<Vec<(IpNet, Route)>, SpeakerError> {
        self.ask(|r| Request::AdjIn(id, family, r)).await?
    }

    /// A neighbour's Adj-RIB-Out of a family (what was last announced to it), ordered by prefix.
    pub async fn adj_rib_out(&self, id: PeerId, family: Family) -> Result<AdjRibOut, SpeakerError> {
        self.ask(|r| Request::AdjOut(id, family, r)).await?
    }

    /// Best-path changes from now on, after a snapshot of the current ones.
    pub async fn subscribe(&self) -> Result<Subscription, SpeakerError> {
        self.ask(Request::Subscribe).await
    }

    /// Stops every session (Cease / Peer De-configured) and the task.
    pub async fn shutdown(&self) -> Result<(), SpeakerError> {
        self.ask(Request::Shutdown).await
    }
}

fn peer_id(key: PeerKey) -> PeerId {
    PeerId {
        addr: key.addr,
        scope_id: key.scope_id,
    }
}

struct PeerEntry {
    neighbor: Neighbor,
    handle: SessionHandle,
    state: State,
    negotiated: Option<Negotiated>,
    since: Option<Instant>,
    flaps: u32,
    admin_down: bool,
    local: Option<SocketAddr>,
    down_since: Option<Instant>,
    /// Graceful restart: stale routes of these families go when this deadline passes (or End-of-RIB arrives).
    stale_until: Option<(Instant, Vec<Family>)>,
    last_notification_sent: Option<NotificationMsg>,
    last_notification_received: Option<NotificationMsg>,
    /// Our OPEN's capabilities, captured when the session reached Established.
    local_capabilities: Vec<Capability>,
}

struct Core {
    rib: Rib,
    listener: Option<Listener>,
    peers: HashMap<PeerId, PeerEntry>,
    subscribers: Vec<mpsc::UnboundedSender<BestChange>>,
    events_tx: mpsc::UnboundedSender<PeerEvent>,
}

impl Core {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        mut events: mpsc::UnboundedReceiver<PeerEvent>,
    ) {
        loop {
            // Paths are stamped with UNIX seconds, so their age is wall-clock time (the API shows it).
            self.rib.set_clock(unix_seconds());
            let deadline = self
                .peers
                .values()
                .filter_map(|p| p.stale_until.as_ref().map(|s| s.0))
                .min();
            tokio::select! {
                req = requests.recv() => match req {
                    Some(Request::Shutdown(reply)) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                    Some(req) => self.request(req).await,
                },
                Some(ev) = events.recv() => self.peer_event(ev),
                _ = sleep_until(deadline), if deadline.is_some() => self.sweep_expired_stale(),
            }
        }
    }

    async fn shutdown(&mut self) {
        let peers: Vec<PeerEntry> = self.peers.drain().map(|(_, p)| p).collect();
        for p in peers {
            p.handle.shutdown().await;
        }
    }

    async fn request(&mut self, req: Request) {
        match req {
            Request::AddPeer(n, reply) => {
                let _ = reply.send(self.add_peer(*n));
            }
            Request::UpdatePeer(n, reply) => {
                let _ = reply.send(self.update_peer(*n).await);
            }
            Request::RemovePeer(id, reply) => {
                let _ = reply.send(self.remove_peer(id).await);
            }
            Request::Enable { id, enabled, reply } => {
                let r = match self.peers.get_mut(&id) {
                    None => Err(SpeakerError::UnknownPeer(id)),
                    Some(p) => {
                        p.admin_down = !enabled;
                        let cmd = if enabled {
                            SessionCommand::Start
                        } else {
                            SessionCommand::Stop
                        };
                        p.handle.send(cmd).map_err(SpeakerError::from)
                    }
                };
                let _ = reply.send(r);
            }
            Request::ResetPeer { id, soft, reply } => {
                let _ = reply.send(self.reset_peer(id, soft));
            }
            Request::Originate(prefix, attrs, reply) => {
                let change = self.rib.originate(prefix, *attrs);
                self.propagate(change.into_iter().collect());
                let _ = reply.send(());
            }
            Request::WithdrawLocal(prefix, reply) => {
                let change = self.rib.withdraw_local(prefix);
                self.propagate(change.into_iter().collect());
                let _ = reply.send(());
            }
            Request::Neighbors(reply) => {
                let _ = reply.send(self.neighbor_states());
            }
            Request::Best(prefix, reply) => {
                let _ = reply.send(self.rib.best(&prefix));
            }
            Request::LocRib(family, reply) => {
                let _ = reply.send(self.rib.iter_best(family).collect());
            }
            Request::AdjIn(id, family, reply) => {
                let r = self.rib.adj_rib_in(id, family).map(|mut v| {
                    v.sort_by_key(|(p, _)| (p.network(), p.prefix_len()));
                    v
                });
                let _ = reply.send(r.map_err(|_| SpeakerError::UnknownPeer(id)));
            }
            Request::AdjOut(id, family, reply) => {
                let r = self.rib.adj_rib_out(id, family).map(|mut v| {
                    v.sort_by_key(|(p, _)| (p.network(), p.prefix_len()));
                    v
                });
                let _ = reply.send(r.map_err(|_| SpeakerError::UnknownPeer(id)));
            }
            Request::Subscribe(reply) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let mut snapshot = Vec::new();
                for family in [(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)] {
                    snapshot.extend(self.rib.iter_best(family).map(|(prefix, new)| BestChange {
                        family,
                        prefix,
                        old: Vec::new(),
                        new,
                    }));
                }
                self.subscribers.push(tx);
                let _ = reply.send(Subscription {
                    snapshot,
                    changes: rx,
                });
            }
            Request::Shutdown(_) => {}
        }
    }

    fn add_peer(&mut self, mut neighbor: Neighbor) -> Result<(), SpeakerError> {
        let id = neighbor.id();
        if self.peers.contains_key(&id) {
            return Err(SpeakerError::DuplicatePeer(id));
        }
        neighbor.session.validate()?;
        neighbor.rib.id = id;
        neighbor.rib.remote_asn = neighbor.session.fsm.peer_as;
        self.rib.add_peer(neighbor.rib.clone())?;
        let handle = session::spawn(neighbor.session.clone(), self.events_tx.clone());
        if let Some(l) = &self.listener
            && let Err(e) = l.register(&neighbor.session, &handle)
        {
            let _ = self.rib.remove_peer(id);
            tokio::spawn(handle.shutdown());
            return Err(e.into());
        }
        handle.send(SessionCommand::Start)?;
        info!(peer = %id, asn = neighbor.session.fsm.peer_as, "neighbor added");
        self.peers.insert(
            id,
            PeerEntry {
                neighbor,
                handle,
                state: State::Idle,
                negotiated: None,
                since: None,
                flaps: 0,
                admin_down: false,
                local: None,
                down_since: None,
                stale_until: None,
                last_notification_sent: None,
                last_notification_received: None,
                local_capabilities: Vec::new(),
            },
        );
        Ok(())
    }

    async fn remove_peer(&mut self, id: PeerId) -> Result<(), SpeakerError> {
        let entry = self
            .peers
            .remove(&id)
            .ok_or(SpeakerError::UnknownPeer(id))?;
        if let Some(l) = &self.listener {
            l.unregister(&entry.neighbor.session)?;
        }
        entry.handle.shutdown().await;
        let changes = self.rib.remove_peer(id)?;
        self.propagate(changes);
        info!(peer = %id, "neighbor removed");
        Ok(())
    }

    async fn update_peer(&mut self, mut neighbor: Neighbor) -> Result<(), SpeakerError> {
        let id = neighbor.id();
        let entry = self
            .peers
            .get_mut(&id)
            .ok_or(SpeakerError::UnknownPeer(id))?;
        neighbor.rib.id = id;
        neighbor.rib.remote_asn = neighbor.session.fsm.peer_as;
        if entry.neighbor.session != neighbor.session
            || entry.neighbor.local_ipv4 != neighbor.local_ipv4
            || entry.neighbor.local_ipv6 != neighbor.local_ipv6
        {
            self.remove_peer(id).await?;
            return self.add_peer(neighbor);
        }
        let import_changed = entry.neighbor.rib.import != neighbor.rib.import;
        entry.neighbor = neighbor.clone();
        self.rib.set_peer_config(neighbor.rib)?;
        if let Some(neg) = entry.negotiated.clone() {
            for &family in &neg.families {
                if import_changed && neg.route_refresh {
                    entry.handle.send(SessionCommand::SoftResetIn(family))?;
                }
            }
            self.export_families(id, &neg, false);
        }
        Ok(())
    }

    fn reset_peer(&mut self, id: PeerId, soft: bool) -> Result<(), SpeakerError> {
        let entry = self.peers.get(&id).ok_or(SpeakerError::UnknownPeer(id))?;
        if !soft {
            entry.handle.send(SessionCommand::Reset)?;
            return Ok(());
        }
        let Some(neg) = entry.negotiated.clone() else {
            return Ok(());
        };
        for &family in &neg.families {
            entry.handle.send(SessionCommand::SoftResetIn(family))?;
        }
        self.resend(id, &neg.families.iter().copied().collect::<Vec<_>>());
        Ok(())
    }

    fn neighbor_states(&self) -> Vec<NeighborState> {
        let mut v: Vec<NeighborState> = self
            .peers
            .iter()
            .map(|(id, p)| NeighborState {
                id: *id,
                remote_asn: p.neighbor.session.fsm.peer_as,
                state: p.state,
                negotiated: p.negotiated.clone(),
                established_since: p.since,
                flaps: p.flaps,
                accepted: [(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)]
                    .into_iter()
                    .map(|f| (f, self.rib.accepted_count(*id, f).unwrap_or(0)))
                    .collect(),
                advertised: [(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)]
                    .into_iter()
                    .map(|f| (f, self.rib.adj_rib_out(*id, f).map_or(0, |v| v.len())))
                    .collect(),
                received: [(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)]
                    .into_iter()
                    .map(|f| {
                        let accepted = self.rib.accepted_count(*id, f).unwrap_or(0);
                        (f, accepted + self.rib.rejected_count(*id, f).unwrap_or(0))
                    })
                    .collect(),
                stale: p.stale_until.clone(),
                last_notification_sent: p.last_notification_sent.clone(),
                last_notification_received: p.last_notification_received.clone(),
                messages: p.handle.stats(),
                admin_down: p.admin_down,
                local: p.local,
                down_since: p.down_since,
                neighbor: p.neighbor.clone(),
                local_capabilities: p
                    .negotiated
                    .as_ref()
                    .map(|_| p.local_capabilities.clone())
                    .unwrap_or_default(),
                remote_capabilities: p
                    .negotiated
                    .as_ref()
                    .map(|n| n.peer_capabilities.clone())
                    .unwrap_or_default(),
            })
            .collect();
        v.sort_by_key(|n| n.id);
        v
    }

    fn peer_event(&mut self, ev: PeerEvent) {
        let id = peer_id(ev.peer);
        if !self.peers.contains_key(&id) {
            return; // a removed peer's last words
        }
        match ev.event {
            SessionEvent::StateChanged { to, .. } => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.state = to;
                }
            }
            SessionEvent::Established { negotiated, local } => {
                self.established(id, *negotiated, local)
            }
            SessionEvent::Down(down) => {
                let keep: Vec<Family> = down
                    .graceful_restart
                    .as_ref()
                    .map(|(_, f)| f.clone())
                    .unwrap_or_default();
                let changes = self.rib.session_down(id, &keep).unwrap_or_default();
                if let Some(p) = self.peers.get_mut(&id) {
                    p.negotiated = None;
                    p.since = None;
                    p.local = None;
                    p.down_since = Some(Instant::now());
                    p.flaps += 1;
                    // A helper-only peer (no family in its capability) leaves nothing stale to wait for.
                    p.stale_until = down
                        .graceful_restart
                        .filter(|(_, f)| !f.is_empty())
                        .map(|(t, f)| (Instant::now() + t, f));
                }
                self.propagate(changes);
            }
            SessionEvent::Update(u) => self.update(id, &u),
            SessionEvent::RouteRefresh(family) => self.resend(id, &[family]),
            SessionEvent::NotificationSent(n) => {
                info!(peer = %id, code = n.code, subcode = n.subcode, "NOTIFICATION sent");
                if let Some(p) = self.peers.get_mut(&id) {
                    p.last_notification_sent = Some(n);
                }
            }
            SessionEvent::NotificationReceived(n) => {
                info!(peer = %id, code = n.code, subcode = n.subcode, "NOTIFICATION received");
                if let Some(p) = self.peers.get_mut(&id) {
                    p.last_notification_received = Some(n);
                }
            }
        }
    }

    fn established(&mut self, id: PeerId, neg: Negotiated, local: Option<SocketAddr>) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let local_ip = local.map(|a| match a.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            ip => ip,
        });
        let (mut v4, mut v6, mut ll) = (p.neighbor.local_ipv4, p.neighbor.local_ipv6, None);
        match local_ip {
            Some(IpAddr::V4(a)) => v4 = v4.or(Some(a)),
            Some(IpAddr::V6(a)) if a.is_unicast_link_local() => ll = Some(a),
            Some(IpAddr::V6(a)) => v6 = v6.or(Some(a)),
            None => {}
        }
        let info = SessionInfo {
            router_id: neg.peer_id,
            local_ipv4: v4,
            local_ipv6: v6,
            local_ipv6_link_local: ll,
            families: neg.families.iter().copied().collect(),
            extended_next_hop: neg.extended_next_hop.iter().copied().collect(),
        };
        p.negotiated = Some(neg.clone());
        p.local_capabilities = build_open(&p.neighbor.session.fsm).capabilities;
        p.since = Some(Instant::now());
        p.local = local;
        if let Err(e) = self.rib.session_up(id, info) {
            warn!(peer = %id, error = %e, "session up refused by the RIB");
            return;
        }
        self.flush_unpreserved_stale(id, &neg);
        self.export_families(id, &neg, true);
    }

    /// RFC 4724 §4.2: on the new session, stale routes of a family go at once when the peer's capability no
    /// longer lists the family or does not set its F bit (its forwarding state was lost); the others wait for
    /// End-of-RIB.
    fn flush_unpreserved_stale(&mut self, id: PeerId, neg: &Negotiated) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some((_, families)) = &mut p.stale_until else {
            return;
        };
        let preserved = |f: &Family| {
            neg.graceful_restart
                .as_ref()
                .is_some_and(|g| g.forwarding.get(f) == Some(&true))
        };
        let (keep, flush): (Vec<Family>, Vec<Family>) = families.iter().partition(|f| preserved(f));
        *families = keep;
        if families.is_empty() {
            p.stale_until = None;
        }
        let mut changes = Vec::new();
        for f in flush {
            info!(peer = %id, family = ?f, "forwarding state not preserved across the restart: stale routes removed");
            changes.extend(self.rib.sweep_stale(id, f).unwrap_or_default());
        }
        self.propagate(changes);
    }

    /// Full export of every negotiated family to a peer; with End-of-RIB after each (RFC 4724) on a new session.
    fn export_families(&mut self, id: PeerId, neg: &Negotiated, end_of_rib: bool) {
        let mut updates = Vec::new();
        for &family in &neg.families {
            match self.rib.export_all(id, family) {
                Ok(out) => updates.extend(build_updates(out)),
                Err(e) => warn!(peer = %id, error = %e, "export failed"),
            }
            if end_of_rib {
                updates.push(UpdateMsg {
                    end_of_rib: Some(family),
                    ..Default::default()
                });
            }
        }
        self.send_updates(id, updates);
    }

    /// ROUTE-REFRESH from the peer: everything in its Adj-RIB-Out goes again.
    fn resend(&mut self, id: PeerId, families: &[Family]) {
        let mut out = Vec::new();
        for &family in families {
            // First whatever changed since, then the whole table as it stands.
            out.extend(self.rib.export_all(id, family).unwrap_or_default());
            for (prefix, attrs) in self.rib.adj_rib_out(id, family).unwrap_or_default() {
                out.push(OutChange::Announce { prefix, attrs });
            }
        }
        let updates = build_updates(out);
        self.send_updates(id, updates);
    }

    fn update(&mut self, id: PeerId, u: &UpdateMsg) {
        if !u.errors.is_empty() {
            warn!(peer = %id, errors = ?u.errors, "UPDATE with errors recovered per RFC 7606");
        }
        let outcome = match self.rib.apply_update(id, u) {
            Ok(o) => o,
            Err(e) => {
                warn!(peer = %id, error = %e, "UPDATE not applied");
                return;
            }
        };
        for (prefix, reason) in &outcome.rejected {
            debug!(peer = %id, %prefix, ?reason, "route rejected");
        }
        let mut changes = outcome.changes;
        if let Some(family) = outcome.end_of_rib {
            changes.extend(self.rib.sweep_stale(id, family).unwrap_or_default());
            if let Some(p) = self.peers.get_mut(&id)
                && let Some((_, fams)) = &mut p.stale_until
            {
                fams.retain(|f| *f != family);
                if fams.is_empty() {
                    p.stale_until = None;
                }
            }
        }
        self.propagate(changes);
        match outcome.max_prefix {
            Some(MaxPrefixSignal::TearDown {
                family,
                notification,
            }) => {
                warn!(peer = %id, ?family, "maximum number of prefixes reached: closing the session");
                if let Some(p) = self.peers.get(&id) {
                    let _ = p
                        .handle
                        .send(SessionCommand::AutomaticStop(notification.subcode));
                }
            }
            Some(MaxPrefixSignal::Warn {
                family,
                limit,
                count,
            }) => {
                warn!(peer = %id, ?family, limit, count, "maximum number of prefixes exceeded");
            }
            None => {}
        }
    }

    fn sweep_expired_stale(&mut self) {
        let now = Instant::now();
        let due: Vec<(PeerId, Vec<Family>)> = self
            .peers
            .iter_mut()
            .filter(|(_, p)| p.stale_until.as_ref().is_some_and(|s| s.0 <= now))
            .filter_map(|(id, p)| p.stale_until.take().map(|(_, f)| (*id, f)))
            .collect();
        for (id, families) in due {
            info!(peer = %id, "graceful restart timer expired: removing stale routes");
            let mut changes = Vec::new();
            for f in families {
                changes.extend(self.rib.sweep_stale(id, f).unwrap_or_default());
            }
            self.propagate(changes);
        }
    }

    /// Hands best-path changes to the subscribers and exports them to every Established peer.
    fn propagate(&mut self, changes: Vec<BestChange>) {
        if changes.is_empty() {
            return;
        }
        self.subscribers
            .retain(|s| changes.iter().all(|c| s.send(c.clone()).is_ok()));
        let established: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.negotiated.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in established {
            match self.rib.export(id, &changes) {
                Ok(out) => {
                    let updates = build_updates(out);
                    self.send_updates(id, updates);
                }
                Err(e) => debug!(peer = %id, error = %e, "no export"),
            }
        }
    }

    fn send_updates(&self, id: PeerId, updates: Vec<UpdateMsg>) {
        if updates.is_empty() {
            return;
        }
        if let Some(p) = self.peers.get(&id) {
            let _ = p.handle.send(SessionCommand::SendUpdates(updates));
        }
    }
}

/// UPDATEs for a list of Adj-RIB-Out changes: withdrawals per family, announcements grouped by family and shared
/// attributes, at most [`PREFIXES_PER_UPDATE`] prefixes each.
pub fn build_updates(out: Vec<OutChange>) -> Vec<UpdateMsg> {
    let mut withdrawn: BTreeMap<Family, Vec<IpNet>> = BTreeMap::new();
    let mut groups: Vec<(Arc<PathAttributes>, Vec<IpNet>)> = Vec::new();
    let mut index: HashMap<(usize, Family), usize> = HashMap::new();
    for change in out {
        match change {
            OutChange::Withdraw { prefix } => withdrawn
                .entry(crate::rib::family_of(&prefix))
                .or_default()
                .push(prefix),
            OutChange::Announce { prefix, attrs } => {
                let key = (Arc::as_ptr(&attrs) as usize, crate::rib::family_of(&prefix));
                let i = *index.entry(key).or_insert_with(|| {
                    groups.push((attrs.clone(), Vec::new()));
                    groups.len() - 1
                });
                groups[i].1.push(prefix);
            }
        }
    }
    let mut updates = Vec::new();
    for (_, prefixes) in withdrawn {
        for chunk in prefixes.chunks(PREFIXES_PER_UPDATE) {
            updates.push(UpdateMsg {
                withdrawn: chunk.to_vec(),
                ..Default::default()
            });
        }
    }
    for (attrs, prefixes) in groups {
        for chunk in prefixes.chunks(PREFIXES_PER_UPDATE) {
            updates.push(UpdateMsg {
                nlri: chunk.to_vec(),
                attributes: Some((*attrs).clone()),
                ..Default::default()
            });
        }
    }
    updates
}

/// Seconds since the UNIX epoch (0 if the clock is before it; saturating in 2106).
fn unix_seconds() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
