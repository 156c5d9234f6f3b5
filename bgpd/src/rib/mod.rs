//! Routing information bases: Adj-RIB-In, Loc-RIB with the decision process, Adj-RIB-Out, per (AFI, SAFI).
//!
//! Sans-IO: a [`Rib`] is plain data that the speaker drives. Every mutation returns its delta:
//! - [`Rib::insert`], [`Rib::withdraw`], [`Rib::apply_update`], [`Rib::originate`], [`Rib::withdraw_local`],
//!   [`Rib::session_down`], [`Rib::remove_peer`] and [`Rib::sweep_stale`] return the [`BestChange`]s (old and new
//!   best/multipath set per prefix), which the speaker streams to Loc-RIB subscribers and hands to
//! - [`Rib::export`] per established peer, which runs the export rules and policy, updates that peer's
//!   Adj-RIB-Out and returns the [`OutChange`]s to put in UPDATEs; [`Rib::export_all`] does the same for a whole
//!   family (a new session, ROUTE-REFRESH).
//!
//! Storage: one hash table per (AFI, SAFI) from prefix to destination; a destination holds every accepted path
//! (this is the union of the Adj-RIBs-In after import policy, which is what the decision process runs on) in
//! decision order, with the reason each non-best path lost. Path attributes are interned (`Arc`), so the 100k
//! routes of a peer that share attributes share one copy. Per peer, only what is not already in the tables is
//! kept: the prefixes the import rules rejected and why, the accepted count (max-prefix), and the Adj-RIB-Out.

mod decision;
mod export;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;
use smallvec::SmallVec;

use crate::packet::iana::Family;
use crate::packet::{Afi, AsPathSegment, PathAttributes, Safi, UpdateMsg};
use crate::policy::{
    MaxPrefix, MaxPrefixSignal, Policy, PolicyContext, PolicyReject, PolicyResult, afi_of,
};

pub use decision::LossReason;
pub use export::OutChange;

type Hasher = foldhash::fast::RandomState;
type FastMap<K, V> = HashMap<K, V, Hasher>;

/// LOCAL_PREF assumed when a path has none (RFC 4271 leaves it to the implementation; 100 everywhere).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// The (AFI, SAFI) a prefix belongs to; bgpd carries unicast only.
pub fn family_of(prefix: &IpNet) -> Family {
    (afi_of(prefix), Safi::Unicast)
}

/// Identifies a peer: its address, plus a scope (the interface index for an IPv6 link-local peer, else 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    pub addr: IpAddr,
    pub scope_id: u32,
}

impl PeerId {
    pub fn new(addr: IpAddr) -> Self {
        Self { addr, scope_id: 0 }
    }
}

impl From<IpAddr> for PeerId {
    fn from(addr: IpAddr) -> Self {
        Self::new(addr)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope_id {
            0 => write!(f, "{}", self.addr),
            scope => write!(f, "{}%{}", self.addr, scope),
        }
    }
}

/// Where a path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathSource {
    /// Originated by this speaker ([`Rib::originate`]).
    Local,
    Peer(PeerId),
}

/// The speaker's own identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// RFC 4456 CLUSTER_ID; the router-id when not set.
    pub cluster_id: Option<Ipv4Addr>,
}

impl LocalConfig {
    pub fn cluster_id(&self) -> Ipv4Addr {
        self.cluster_id.unwrap_or(self.router_id)
    }
}

/// Static configuration of a peer. iBGP is `remote_asn == local asn` (no confederations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub id: PeerId,
    pub remote_asn: u32,
    /// RFC 4456: this iBGP peer is a client of ours (which makes us a route reflector).
    pub route_reflector_client: bool,
    /// Set the next hop to ourselves on routes sent to this iBGP peer (it is always done towards eBGP).
    /// Reflected routes keep their next hop, as RFC 4456 section 10 asks.
    pub next_hop_self: bool,
    /// How many times our own ASN may appear in a received AS_PATH (eBGP) before the route is a loop.
    pub allow_own_as: u8,
    pub import: Policy,
    pub export: Policy,
    /// Per-family limit on accepted prefixes.
    pub max_prefix: Option<MaxPrefix>,
}

impl PeerConfig {
    /// Defaults: not a client, no next-hop-self, no own ASN allowed, policies that accept all but default routes.
    pub fn new(id: PeerId, remote_asn: u32) -> Self {
        Self {
            id,
            remote_asn,
            route_reflector_client: false,
            next_hop_self: false,
            allow_own_as: 0,
            import: Policy::default(),
            export: Policy::default(),
            max_prefix: None,
        }
    }
}

/// What an established session negotiated and the local end of it: the input of the out-path computation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The peer's BGP identifier from its OPEN.
    pub router_id: Ipv4Addr,
    /// Our addresses to use as next hop towards this peer, per family.
    pub local_ipv4: Option<Ipv4Addr>,
    pub local_ipv6: Option<Ipv6Addr>,
    pub local_ipv6_link_local: Option<Ipv6Addr>,
    /// Families both sides announced (RFC 4760).
    pub families: Vec<Family>,
    /// RFC 8950 (NLRI AFI, SAFI, next-hop AFI) both sides announced.
    pub extended_next_hop: Vec<(Afi, Safi, Afi)>,
}

impl Default for SessionInfo {
    fn default() -> Self {
        Self {
            router_id: Ipv4Addr::UNSPECIFIED,
            local_ipv4: None,
            local_ipv6: None,
            local_ipv6_link_local: None,
            families: Vec::new(),
            extended_next_hop: Vec::new(),
        }
    }
}

impl SessionInfo {
    /// IPv4 unicast NLRI may carry an IPv6 next hop on this session (RFC 8950).
    pub fn ipv4_over_ipv6(&self) -> bool {
        self.extended_next_hop
            .contains(&(Afi::Ipv4, Safi::Unicast, Afi::Ipv6))
    }

    fn is_local_address(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.local_ipv4 == Some(a),
            IpAddr::V6(a) => self.local_ipv6 == Some(a) || self.local_ipv6_link_local == Some(a),
        }
    }
}

/// Why a received route was not accepted (it is treated as a withdrawal of the peer's earlier path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The family was not negotiated on this session.
    FamilyNotNegotiated,
    /// No next hop for the route's family.
    MissingNextHop,
    /// An IPv4 next hop on an IPv6 route, or an IPv6 one on an IPv4 route without RFC 8950.
    NextHopFamily,
    /// Unspecified, multicast or one of our own addresses (RFC 4271 section 5.1.3).
    InvalidNextHop,
    /// Our ASN appears in the AS_PATH more often than `allow_own_as` (RFC 4271 section 9.1.2).
    AsLoop,
    /// ORIGINATOR_ID is our router-id (RFC 4456 section 8).
    OriginatorIdLoop,
    /// Our cluster id is in the CLUSTER_LIST (RFC 4456 section 8).
    ClusterListLoop,
    Policy(PolicyReject),
}

/// Errors of the RIB API (a caller's mistake, never a peer's).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RibError {
    #[error("peer {0} is not configured")]
    UnknownPeer(PeerId),
    #[error("peer {0} is already configured")]
    DuplicatePeer(PeerId),
    #[error("peer {0} has no established session")]
    SessionDown(PeerId),
    #[error("UPDATE from {0} announces prefixes without path attributes")]
    MissingAttributes(PeerId),
    #[error("more than {} peers", u16::MAX)]
    TooManyPeers,
}

/// One path as the RIB hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub source: PathSource,
    pub attrs: Arc<PathAttributes>,
    /// Kept through a graceful restart of its peer, not yet re-learned.
    pub stale: bool,
    /// When this path was learned (or last changed), on the caller's clock ([`Rib::set_clock`]).
    pub learned_at: u32,
}

/// One path of a destination with its standing in the decision process, for the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathEntry {
    pub route: Route,
    pub best: bool,
    pub multipath: bool,
    /// Why it is not the best (`None` for the best).
    pub reason: Option<LossReason>,
}

/// The best path set of a prefix changed. `old`/`new` are the multipath sets, best first; an empty `new` means
/// the prefix is gone from the Loc-RIB, an empty `old` that it is new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BestChange {
    pub family: Family,
    pub prefix: IpNet,
    pub old: Vec<Route>,
    pub new: Vec<Route>,
}

impl BestChange {
    /// The single best path changed (what a speaker without ADD-PATH advertises).
    pub fn best_changed(&self) -> bool {
        match (self.old.first(), self.new.first()) {
            (Some(a), Some(b)) => a.source != b.source || !Arc::ptr_eq(&a.attrs, &b.attrs),
            (None, None) => false,
            _ => true,
        }
    }
}

/// The answer to one received route.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    pub change: Option<BestChange>,
    pub rejected: Option<RejectReason>,
    /// A max-prefix limit was crossed by this route (reported once per crossing).
    pub max_prefix: Option<MaxPrefixSignal>,
}

/// The answer to one UPDATE.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UpdateOutcome {
    pub changes: Vec<BestChange>,
    pub rejected: Vec<(IpNet, RejectReason)>,
    pub max_prefix: Option<MaxPrefixSignal>,
    /// The UPDATE was an End-of-RIB: the speaker sweeps that family's stale paths ([`Rib::sweep_stale`]).
    pub end_of_rib: Option<Family>,
}

/// Index of a peer slot; 0 is the speaker itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PeerIdx(u16);

const LOCAL: PeerIdx = PeerIdx(0);

/// One path in a destination: 16 bytes (checked by a test), so a one-path destination stays inline.
#[derive(Clone, Debug)]
struct Path {
    attrs: Arc<PathAttributes>,
    peer: PeerIdx,
    stale: bool,
    reason: Option<LossReason>,
    learned_at: u32,
}

/// All paths of one prefix, in decision order; `paths[..multipath]` is the multipath set.
#[derive(Debug, Default)]
struct Dest {
    paths: SmallVec<[Path; 1]>,
}

impl Dest {
    /// Size of the multipath set, derived rather than stored (a stored count would pad every table entry by 8
    /// bytes): after a rerank the best has no reason and the rest of the set lost only in a tie-break after
    /// the multipath boundary ([`LossReason::in_multipath`]), and they come first.
    fn multipath(&self) -> usize {
        self.paths
            .iter()
            .take_while(|p| p.reason.is_none_or(LossReason::in_multipath))
            .count()
    }

    fn best_set(&self) -> &[Path] {
        &self.paths[..self.multipath()]
    }
}

#[derive(Debug, Default)]
struct Table {
    dests: FastMap<IpNet, Dest>,
}

/// Deduplicates attribute sets. Entries whose only owner is the interner are dropped when the set has doubled
/// since the last collection, which keeps the cost amortised O(1) per mutation.
#[derive(Debug, Default)]
struct Interner {
    set: HashSet<Arc<PathAttributes>, Hasher>,
    collect_at: usize,
}

impl Interner {
    fn intern(&mut self, attrs: Cow<'_, PathAttributes>) -> Arc<PathAttributes> {
        if let Some(found) = self.set.get(attrs.as_ref()) {
            return found.clone();
        }
        let arc = Arc::new(attrs.into_owned());
        self.set.insert(arc.clone());
        arc
    }

    fn maybe_collect(&mut self) {
        if self.set.len() > self.collect_at {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.collect_at = (2 * self.set.len()).max(1024);
        }
    }
}

#[derive(Debug)]
struct PeerSlot {
    config: PeerConfig,
    ibgp: bool,
    /// The last BGP identifier seen; kept after the session goes so stale paths still rank.
    router_id: Ipv4Addr,
    session: Option<SessionInfo>,
    accepted: BTreeMap<Family, usize>,
    over_limit: Vec<Family>,
    rejected: BTreeMap<Family, FastMap<IpNet, RejectReason>>,
    adj_out: BTreeMap<Family, FastMap<IpNet, Arc<PathAttributes>>>,
}

/// The RIB of one speaker: every family's Loc-RIB, the Adj-RIBs-In (as paths in it) and the Adj-RIBs-Out.
#[derive(Debug)]
pub struct Rib {
    local: LocalConfig,
    peers: Vec<Option<PeerSlot>>,
    index: FastMap<PeerId, PeerIdx>,
    tables: BTreeMap<Family, Table>,
    interner: Interner,
    now: u32,
}

fn as_path_len(path: &[AsPathSegment]) -> u32 {
    path.iter()
        .map(|s| match s {
            AsPathSegment::Sequence(v) => v.len() as u32,
            AsPathSegment::Set(_) => 1,
            // RFC 5065 section 5.3: confederation segments do not count.
            AsPathSegment::ConfedSequence(_) | AsPathSegment::ConfedSet(_) => 0,
        })
        .sum()
}

fn own_as_count(path: &[AsPathSegment], asn: u32) -> usize {
    path.iter()
        .map(|s| match s {
            AsPathSegment::Sequence(v) | AsPathSegment::Set(v) => {
                v.iter().filter(|a| **a == asn).count()
            }
            // Confederation member ASNs are not our (confederation) ASN.
            AsPathSegment::ConfedSequence(_) | AsPathSegment::ConfedSet(_) => 0,
        })
        .sum()
}

/// The neighbouring AS for the MED rule: the first AS of a leading AS_SEQUENCE, else our own AS.
fn neighbor_as(path: &[AsPathSegment], local_asn: u32) -> u32 {
    match path.first() {
        Some(AsPathSegment::Sequence(v)) if !v.is_empty() => v[0],
        _ => local_asn,
    }
}

fn key_of(local: &LocalConfig, peers: &[Option<PeerSlot>], path: &Path) -> decision::Key {
    let a = &*path.attrs;
    let (ebgp, router_id, peer_addr) =
        match peers.get(usize::from(path.peer.0)).and_then(Option::as_ref) {
            Some(slot) if path.peer != LOCAL => (!slot.ibgp, slot.router_id, slot.config.id.addr),
            _ => (false, local.router_id, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        };
    decision::Key {
        local_pref: a.local_pref.unwrap_or(DEFAULT_LOCAL_PREF),
        local: path.peer == LOCAL,
        as_path_len: as_path_len(&a.as_path),
        origin: a.origin,
        med: a.med.unwrap_or(0),
        neighbor_as: neighbor_as(&a.as_path, local.asn),
        ebgp,
        router_id: u32::from(a.originator_id.unwrap_or(router_id)),
        cluster_list_len: a.cluster_list.len() as u32,
        peer_addr,
    }
}

/// Reruns the decision process on a destination and stores its result (order, reasons, multipath size).
fn rerank(local: &LocalConfig, peers: &[Option<PeerSlot>], dest: &mut Dest) {
    if dest.paths.len() <= 1 {
        if let Some(p) = dest.paths.first_mut() {
            p.reason = None;
        }
        return;
    }
    let keys: SmallVec<[decision::Key; 4]> =
        dest.paths.iter().map(|p| key_of(local, peers, p)).collect();
    let ranking = decision::rank(&keys);
    let mut old: SmallVec<[Option<Path>; 4]> = dest.paths.drain(..).map(Some).collect();
    for &i in &ranking.order {
        let mut p = old[i].take().expect("ranking is a permutation");
        p.reason = ranking.reasons[i];
        dest.paths.push(p);
    }
    debug_assert_eq!(dest.multipath(), ranking.multipath);
}

fn source_of(peers: &[Option<PeerSlot>], idx: PeerIdx) -> PathSource {
    match peers.get(usize::from(idx.0)).and_then(Option::as_ref) {
        Some(slot) if idx != LOCAL => PathSource::Peer(slot.config.id),
        _ => PathSource::Local,
    }
}

fn to_route(peers: &[Option<PeerSlot>], p: &Path) -> Route {
    Route {
        source: source_of(peers, p.peer),
        attrs: p.attrs.clone(),
        stale: p.stale,
        learned_at: p.learned_at,
    }
}

type BestSnapshot = SmallVec<[(PeerIdx, *const PathAttributes); 2]>;

fn snapshot(dest: Option<&Dest>) -> BestSnapshot {
    dest.map(|d| {
        d.best_set()
            .iter()
            .map(|p| (p.peer, Arc::as_ptr(&p.attrs)))
            .collect()
    })
    .unwrap_or_default()
}

impl Rib {
    pub fn new(local: LocalConfig) -> Self {
        Self {
            local,
            peers: vec![None],
            index: FastMap::default(),
            tables: BTreeMap::new(),
            interner: Interner::default(),
            now: 0,
        }
    }

    /// Sets the time stamped on paths learned from now on (the speaker passes, e.g., UNIX seconds; the RIB
    /// never reads a clock itself).
    pub fn set_clock(&mut self, now: u32) {
        self.now = now;
    }

    pub fn local(&self) -> &LocalConfig {
        &self.local
    }

    fn policy_context(&self) -> PolicyContext {
        PolicyContext {
            local_asn: self.local.asn,
        }
    }

    fn idx(&self, peer: PeerId) -> Result<PeerIdx, RibError> {
        self.index
            .get(&peer)
            .copied()
            .ok_or(RibError::UnknownPeer(peer))
    }

    fn slot(&self, idx: PeerIdx) -> &PeerSlot {
        self.peers[usize::from(idx.0)]
            .as_ref()
            .expect("index points at a live slot")
    }

    fn slot_mut(&mut self, idx: PeerIdx) -> &mut PeerSlot {
        self.peers[usize::from(idx.0)]
            .as_mut()
            .expect("index points at a live slot")
    }

    /// Adds a configured peer (no session yet).
    pub fn add_peer(&mut self, config: PeerConfig) -> Result<(), RibError> {
        if self.index.contains_key(&config.id) {
            return Err(RibError::DuplicatePeer(config.id));
        }
        let slot = PeerSlot {
            ibgp: config.remote_asn == self.local.asn,
            router_id: Ipv4Addr::UNSPECIFIED,
            session: None,
            accepted: BTreeMap::new(),
            over_limit: Vec::new(),
            rejected: BTreeMap::new(),
            adj_out: BTreeMap::new(),
            config,
        };
        let id = slot.config.id;
        if self.peers.len() > usize::from(u16::MAX)
            && self.peers.iter().skip(1).all(Option::is_some)
        {
            return Err(RibError::TooManyPeers);
        }
        let free = self
            .peers
            .iter()
            .skip(1)
            .position(Option::is_none)
            .map(|i| i + 1);
        let i = match free {
            Some(i) => {
                self.peers[i] = Some(slot);
                i
            }
            None => {
                self.peers.push(Some(slot));
                self.peers.len() - 1
            }
        };
        self.index.insert(id, PeerIdx(i as u16));
        Ok(())
    }

    /// Removes a peer and all its paths.
    pub fn remove_peer(&mut self, peer: PeerId) -> Result<Vec<BestChange>, RibError> {
        let changes = self.session_down(peer, &[])?;
        let idx = self.idx(peer)?;
        self.peers[usize::from(idx.0)] = None;
        self.index.remove(&peer);
        Ok(changes)
    }

    /// Replaces a peer's configuration (policies, reflection, limits). Import changes apply to routes received
    /// from now on (the speaker sends ROUTE-REFRESH to re-learn the rest, as bgpd keeps no pre-policy copy);
    /// export changes take effect with the next [`Rib::export_all`]. A changed `remote_asn` changes iBGP/eBGP
    /// and needs a new session.
    pub fn set_peer_config(&mut self, config: PeerConfig) -> Result<(), RibError> {
        let idx = self.idx(config.id)?;
        let ibgp = config.remote_asn == self.local.asn;
        let slot = self.slot_mut(idx);
        slot.ibgp = ibgp;
        slot.config = config;
        Ok(())
    }

    pub fn peer_config(&self, peer: PeerId) -> Result<&PeerConfig, RibError> {
        Ok(&self.slot(self.idx(peer)?).config)
    }

    /// The session reached Established. A new session starts with an empty Adj-RIB-Out; paths kept stale through
    /// a graceful restart stay until re-learned or swept.
    pub fn session_up(&mut self, peer: PeerId, info: SessionInfo) -> Result<(), RibError> {
        let idx = self.idx(peer)?;
        let slot = self.slot_mut(idx);
        slot.router_id = info.router_id;
        slot.session = Some(info);
        slot.adj_out.clear();
        Ok(())
    }

    /// The session left Established. Paths of the families in `keep_stale` (those the peer's graceful restart
    /// capability covers) are kept and marked stale; all others are removed.
    pub fn session_down(
        &mut self,
        peer: PeerId,
        keep_stale: &[Family],
    ) -> Result<Vec<BestChange>, RibError> {
        let idx = self.idx(peer)?;
        let slot = self.slot_mut(idx);
        slot.session = None;
        slot.adj_out.clear();
        slot.rejected.clear();
        slot.over_limit.clear();
        let families: Vec<Family> = self.tables.keys().copied().collect();
        let mut changes = Vec::new();
        for family in families {
            if keep_stale.contains(&family) {
                self.mark_stale_idx(idx, family);
            } else {
                changes.extend(self.remove_paths(family, |p| p.peer == idx).0);
                self.slot_mut(idx).accepted.remove(&family);
            }
        }
        self.interner.maybe_collect();
        Ok(changes)
    }

    /// Marks every path of `peer` in `family` stale (graceful restart, RFC 4724); returns how many.
    /// Stale paths keep taking part in the decision process until re-learned or swept.
    pub fn mark_stale(&mut self, peer: PeerId, family: Family) -> Result<usize, RibError> {
        let idx = self.idx(peer)?;
        Ok(self.mark_stale_idx(idx, family))
    }

    fn mark_stale_idx(&mut self, idx: PeerIdx, family: Family) -> usize {
        let Some(table) = self.tables.get_mut(&family) else {
            return 0;
        };
        let mut n = 0;
        for dest in table.dests.values_mut() {
            for p in dest.paths.iter_mut().filter(|p| p.peer == idx) {
                p.stale = true;
                n += 1;
            }
        }
        n
    }

    /// Removes the paths of `peer` in `family` still stale (End-of-RIB received, or the restart timer fired).
    pub fn sweep_stale(
        &mut self,
        peer: PeerId,
        family: Family,
    ) -> Result<Vec<BestChange>, RibError> {
        let idx = self.idx(peer)?;
        let (changes, removed) = self.remove_paths(family, |p| p.peer == idx && p.stale);
        if let Some(n) = self.slot_mut(idx).accepted.get_mut(&family) {
            *n = n.saturating_sub(removed);
        }
        self.interner.maybe_collect();
        Ok(changes)
    }

    /// Removes every path matching `pred` from a family, reranking; returns the changed destinations and how
    /// many paths went.
    fn remove_paths(
        &mut self,
        family: Family,
        pred: impl Fn(&Path) -> bool,
    ) -> (Vec<BestChange>, usize) {
        let Rib {
            local,
            peers,
            tables,
            ..
        } = self;
        let Some(table) = tables.get_mut(&family) else {
            return (Vec::new(), 0);
        };
        let mut changes = Vec::new();
        let mut removed = 0;
        table.dests.retain(|prefix, dest| {
            if !dest.paths.iter().any(&pred) {
                return true;
            }
            let n = dest.paths.len();
            let old: SmallVec<[Path; 2]> = dest.best_set().iter().cloned().collect();
            let before = snapshot(Some(dest));
            dest.paths.retain(|p| !pred(p));
            removed += n - dest.paths.len();
            rerank(local, peers, dest);
            if snapshot(Some(dest)) != before {
                let new = dest.best_set().iter().map(|p| to_route(peers, p)).collect();
                changes.push(BestChange {
                    family,
                    prefix: *prefix,
                    old: old.iter().map(|p| to_route(peers, p)).collect(),
                    new,
                });
            }
            !dest.paths.is_empty()
        });
        (changes, removed)
    }

    /// Puts (or with `None` removes) `peer`'s path for `prefix`; returns the change of the best set and whether
    /// the peer had a path before.
    fn replace_path(
        &mut self,
        family: Family,
        prefix: IpNet,
        peer: PeerIdx,
        mut new: Option<Path>,
    ) -> (Option<BestChange>, bool) {
        let Rib {
            local,
            peers,
            tables,
            ..
        } = self;
        let table = tables.entry(family).or_default();
        let dest = match new {
            Some(n) => match table.dests.entry(prefix) {
                Entry::Occupied(o) => {
                    new = Some(n);
                    o.into_mut()
                }
                Entry::Vacant(v) => {
                    // A new prefix (the common case while a table loads): its only path is the best, so skip
                    // the snapshot/rerank/compare of the general case and hash the prefix once.
                    let route = to_route(peers, &n);
                    let mut dest = Dest::default();
                    dest.paths.push(Path { reason: None, ..n });
                    v.insert(dest);
                    let change = BestChange {
                        family,
                        prefix,
                        old: Vec::new(),
                        new: vec![route],
                    };
                    return (Some(change), false);
                }
            },
            None => match table.dests.get_mut(&prefix) {
                Some(d) => d,
                None => return (None, false),
            },
        };
        let existing = dest.paths.iter().position(|p| p.peer == peer);
        if let (Some(i), Some(n)) = (existing, &new)
            && Arc::ptr_eq(&dest.paths[i].attrs, &n.attrs)
        {
            // Re-announcement of the same path: it is fresh again, nothing else moves.
            dest.paths[i].stale = false;
            return (None, true);
        }
        let before = snapshot(Some(dest));
        let old: SmallVec<[Path; 2]> = dest.best_set().iter().cloned().collect();
        if let Some(i) = existing {
            dest.paths.remove(i);
        }
        if let Some(n) = new {
            dest.paths.push(n);
        }
        rerank(local, peers, dest);
        let change = if snapshot(Some(dest)) != before {
            let new = dest.best_set().iter().map(|p| to_route(peers, p)).collect();
            Some(BestChange {
                family,
                prefix,
                old: old.iter().map(|p| to_route(peers, p)).collect(),
                new,
            })
        } else {
            None
        };
        if dest.paths.is_empty() {
            table.dests.remove(&prefix);
        }
        (change, existing.is_some())
    }

    /// RFC-mandated checks on a received route (before import policy).
    fn import_check(
        &self,
        slot: &PeerSlot,
        session: &SessionInfo,
        prefix: &IpNet,
        attrs: &PathAttributes,
    ) -> Result<(), RejectReason> {
        if !session.families.contains(&family_of(prefix)) {
            return Err(RejectReason::FamilyNotNegotiated);
        }
        let nh = attrs.next_hop.ok_or(RejectReason::MissingNextHop)?;
        match (prefix, nh) {
            (IpNet::V6(_), IpAddr::V4(_)) => return Err(RejectReason::NextHopFamily),
            (IpNet::V4(_), IpAddr::V6(_)) if !session.ipv4_over_ipv6() => {
                return Err(RejectReason::NextHopFamily);
            }
            _ => {}
        }
        if nh.is_unspecified() || nh.is_multicast() || session.is_local_address(nh) {
            return Err(RejectReason::InvalidNextHop);
        }
        if !slot.ibgp
            && own_as_count(&attrs.as_path, self.local.asn) > slot.config.allow_own_as as usize
        {
            return Err(RejectReason::AsLoop);
        }
        if attrs.originator_id == Some(self.local.router_id) {
            return Err(RejectReason::OriginatorIdLoop);
        }
        if attrs.cluster_list.contains(&self.local.cluster_id()) {
            return Err(RejectReason::ClusterListLoop);
        }
        Ok(())
    }

    /// A route received from `peer`: loop and next-hop checks, import policy, then the decision process.
    /// A rejected route withdraws the peer's earlier path for the prefix (RFC 7606 treat-as-withdraw spirit).
    pub fn insert(
        &mut self,
        peer: PeerId,
        prefix: IpNet,
        attrs: &PathAttributes,
    ) -> Result<InsertOutcome, RibError> {
        let idx = self.idx(peer)?;
        let mut cache = None;
        let out = self.insert_idx(idx, prefix, attrs, &mut cache);
        self.interner.maybe_collect();
        out
    }

    fn insert_idx(
        &mut self,
        idx: PeerIdx,
        prefix: IpNet,
        attrs: &PathAttributes,
        cache: &mut Option<Arc<PathAttributes>>,
    ) -> Result<InsertOutcome, RibError> {
        let prefix = prefix.trunc();
        let family = family_of(&prefix);
        let slot = self.slot(idx);
        let session = slot
            .session
            .as_ref()
            .ok_or(RibError::SessionDown(slot.config.id))?;
        // RFC 4271 section 5.1.5: LOCAL_PREF from an external peer is ignored. In an UPDATE that carries both
        // classic IPv4 NLRI and MP_REACH_NLRI, the classic prefixes use the classic NEXT_HOP; stored paths
        // keep one resolved next hop.
        let ignore_local_pref = !slot.ibgp && attrs.local_pref.is_some();
        let classic = attrs
            .classic_next_hop
            .filter(|_| matches!(prefix, IpNet::V4(_)));
        let cleaned: Cow<'_, PathAttributes> =
            if ignore_local_pref || attrs.classic_next_hop.is_some() {
                let mut a = attrs.clone();
                if ignore_local_pref {
                    a.local_pref = None;
                }
                if let Some(nh) = classic
                    && !a.next_hop.is_some_and(|n| n.is_ipv4())
                {
                    a.next_hop = Some(IpAddr::V4(nh));
                }
                a.classic_next_hop = None;
                Cow::Owned(a)
            } else {
                Cow::Borrowed(attrs)
            };
        if let Err(reason) = self.import_check(slot, session, &prefix, &cleaned) {
            return Ok(self.reject(idx, family, prefix, reason));
        }
        let modified = match slot
            .config
            .import
            .evaluate(&self.policy_context(), &prefix, &cleaned)
        {
            PolicyResult::Reject(r) => {
                return Ok(self.reject(idx, family, prefix, RejectReason::Policy(r)));
            }
            PolicyResult::Accept(Cow::Borrowed(_)) => None,
            PolicyResult::Accept(Cow::Owned(a)) => Some(a),
        };
        let arc = match (modified, cleaned) {
            (Some(a), _) => self.interner.intern(Cow::Owned(a)),
            (None, Cow::Owned(a)) => self.interner.intern(Cow::Owned(a)),
            (None, Cow::Borrowed(a)) => match cache {
                Some(c) => c.clone(),
                None => cache.insert(self.interner.intern(Cow::Borrowed(a))).clone(),
            },
        };
        let slot = self.slot_mut(idx);
        if let Some(rejected) = slot.rejected.get_mut(&family) {
            rejected.remove(&prefix);
        }
        let path = Path {
            attrs: arc,
            peer: idx,
            stale: false,
            reason: None,
            learned_at: self.now,
        };
        let (change, had) = self.replace_path(family, prefix, idx, Some(path));
        let mut max_prefix = None;
        if !had {
            let slot = self.slot_mut(idx);
            let count = slot.accepted.entry(family).or_default();
            *count += 1;
            let count = *count;
            if let Some(signal) = slot.config.max_prefix.and_then(|m| m.check(family, count))
                && !slot.over_limit.contains(&family)
            {
                slot.over_limit.push(family);
                max_prefix = Some(signal);
            }
        }
        Ok(InsertOutcome {
            change,
            rejected: None,
            max_prefix,
        })
    }

    fn reject(
        &mut self,
        idx: PeerIdx,
        family: Family,
        prefix: IpNet,
        reason: RejectReason,
    ) -> InsertOutcome {
        let (change, had) = self.replace_path(family, prefix, idx, None);
        let slot = self.slot_mut(idx);
        if had {
            slot.forget_one(family);
        }
        slot.rejected
            .entry(family)
            .or_default()
            .insert(prefix, reason);
        InsertOutcome {
            change,
            rejected: Some(reason),
            max_prefix: None,
        }
    }

    /// `peer` withdrew `prefix`.
    pub fn withdraw(
        &mut self,
        peer: PeerId,
        prefix: IpNet,
    ) -> Result<Option<BestChange>, RibError> {
        let idx = self.idx(peer)?;
        let change = self.withdraw_idx(idx, prefix);
        self.interner.maybe_collect();
        Ok(change)
    }

    fn withdraw_idx(&mut self, idx: PeerIdx, prefix: IpNet) -> Option<BestChange> {
        let prefix = prefix.trunc();
        let family = family_of(&prefix);
        let (change, had) = self.replace_path(family, prefix, idx, None);
        let slot = self.slot_mut(idx);
        if had {
            slot.forget_one(family);
        }
        if let Some(rejected) = slot.rejected.get_mut(&family) {
            rejected.remove(&prefix);
        }
        change
    }

    /// A whole UPDATE from `peer`: withdrawals first, then the announced prefixes, which share one interned
    /// attribute set unless import policy changed them per prefix.
    pub fn apply_update(
        &mut self,
        peer: PeerId,
        update: &UpdateMsg,
    ) -> Result<UpdateOutcome, RibError> {
        let idx = self.idx(peer)?;
        if self.slot(idx).session.is_none() {
            return Err(RibError::SessionDown(peer));
        }
        let mut out = UpdateOutcome {
            end_of_rib: update.end_of_rib,
            // At most one change per prefix: reserve once instead of growing per prefix.
            changes: Vec::with_capacity(update.withdrawn.len() + update.nlri.len()),
            ..Default::default()
        };
        for prefix in &update.withdrawn {
            out.changes.extend(self.withdraw_idx(idx, *prefix));
        }
        if !update.nlri.is_empty() {
            let attrs = update
                .attributes
                .as_ref()
                .ok_or(RibError::MissingAttributes(peer))?;
            let mut cache = None;
            for prefix in &update.nlri {
                let r = self.insert_idx(idx, *prefix, attrs, &mut cache)?;
                out.changes.extend(r.change);
                if let Some(reason) = r.rejected {
                    out.rejected.push((*prefix, reason));
                }
                if out.max_prefix.is_none() {
                    out.max_prefix = r.max_prefix;
                }
            }
        }
        self.interner.maybe_collect();
        Ok(out)
    }

    /// Originates `prefix` from this speaker. A missing next hop means "ourselves" (filled in per peer on
    /// export); AS_PATH is normally empty.
    pub fn originate(&mut self, prefix: IpNet, attrs: PathAttributes) -> Option<BestChange> {
        let prefix = prefix.trunc();
        let arc = self.interner.intern(Cow::Owned(attrs));
        let path = Path {
            attrs: arc,
            peer: LOCAL,
            stale: false,
            reason: None,
            learned_at: self.now,
        };
        let (change, _) = self.replace_path(family_of(&prefix), prefix, LOCAL, Some(path));
        self.interner.maybe_collect();
        change
    }

    /// Stops originating `prefix`.
    pub fn withdraw_local(&mut self, prefix: IpNet) -> Option<BestChange> {
        let prefix = prefix.trunc();
        let (change, _) = self.replace_path(family_of(&prefix), prefix, LOCAL, None);
        self.interner.maybe_collect();
        change
    }

    // ---- inspection ----

    /// The multipath set of `prefix`, best first (empty when the prefix is unknown).
    pub fn best(&self, prefix: &IpNet) -> Vec<Route> {
        self.dest(prefix)
            .map(|d| {
                d.best_set()
                    .iter()
                    .map(|p| to_route(&self.peers, p))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every path of `prefix` in decision order with why it lost.
    pub fn paths(&self, prefix: &IpNet) -> Vec<PathEntry> {
        let Some(d) = self.dest(prefix) else {
            return Vec::new();
        };
        let multipath = d.multipath();
        d.paths
            .iter()
            .enumerate()
            .map(|(i, p)| PathEntry {
                route: to_route(&self.peers, p),
                best: i == 0,
                multipath: i < multipath,
                reason: p.reason,
            })
            .collect()
    }

    fn dest(&self, prefix: &IpNet) -> Option<&Dest> {
        let prefix = prefix.trunc();
        self.tables.get(&family_of(&prefix))?.dests.get(&prefix)
    }

    /// The whole Loc-RIB of a family (prefix, multipath set), for a new subscriber; unordered.
    pub fn iter_best(&self, family: Family) -> impl Iterator<Item = (IpNet, Vec<Route>)> + '_ {
        self.tables.get(&family).into_iter().flat_map(move |t| {
            t.dests.iter().map(move |(prefix, d)| {
                (
                    *prefix,
                    d.best_set()
                        .iter()
                        .map(|p| to_route(&self.peers, p))
                        .collect(),
                )
            })
        })
    }

    /// Number of prefixes in a family's Loc-RIB.
    pub fn len(&self, family: Family) -> usize {
        self.tables.get(&family).map_or(0, |t| t.dests.len())
    }

    pub fn is_empty(&self) -> bool {
        self.tables.values().all(|t| t.dests.is_empty())
    }

    /// `peer`'s Adj-RIB-In of a family after import policy (unordered).
    pub fn adj_rib_in(
        &self,
        peer: PeerId,
        family: Family,
    ) -> Result<Vec<(IpNet, Route)>, RibError> {
        let idx = self.idx(peer)?;
        let Some(t) = self.tables.get(&family) else {
            return Ok(Vec::new());
        };
        Ok(t.dests
            .iter()
            .filter_map(|(prefix, d)| {
                d.paths
                    .iter()
                    .find(|p| p.peer == idx)
                    .map(|p| (*prefix, to_route(&self.peers, p)))
            })
            .collect())
    }

    /// What `peer` sent in a family that was not accepted, and why.
    pub fn rejected(
        &self,
        peer: PeerId,
        family: Family,
    ) -> Result<Vec<(IpNet, RejectReason)>, RibError> {
        let slot = self.slot(self.idx(peer)?);
        Ok(slot
            .rejected
            .get(&family)
            .map(|m| m.iter().map(|(p, r)| (*p, *r)).collect())
            .unwrap_or_default())
    }

    /// Accepted prefixes from `peer` in a family (what max-prefix counts).
    pub fn accepted_count(&self, peer: PeerId, family: Family) -> Result<usize, RibError> {
        Ok(self
            .slot(self.idx(peer)?)
            .accepted
            .get(&family)
            .copied()
            .unwrap_or(0))
    }

    /// Prefixes of a family `peer` sent that were rejected (still held as rejected).
    pub fn rejected_count(&self, peer: PeerId, family: Family) -> Result<usize, RibError> {
        let slot = self.slot(self.idx(peer)?);
        Ok(slot.rejected.get(&family).map_or(0, |m| m.len()))
    }

    /// Prefixes of a family currently announced to `peer`.
    pub fn advertised_count(&self, peer: PeerId, family: Family) -> Result<usize, RibError> {
        let slot = self.slot(self.idx(peer)?);
        Ok(slot.adj_out.get(&family).map_or(0, |m| m.len()))
    }

    /// The configured peers.
    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.index.keys().copied()
    }

    /// `peer`'s Adj-RIB-Out of a family: what was last announced to it (unordered).
    pub fn adj_rib_out(
        &self,
        peer: PeerId,
        family: Family,
    ) -> Result<Vec<(IpNet, Arc<PathAttributes>)>, RibError> {
        let slot = self.slot(self.idx(peer)?);
        Ok(slot
            .adj_out
            .get(&family)
            .map(|m| m.iter().map(|(p, a)| (*p, a.clone())).collect())
            .unwrap_or_default())
    }

    /// Distinct attribute sets held (after the last collection).
    pub fn interned_attribute_sets(&self) -> usize {
        self.interner.set.len()
    }

    /// Heap and inline bytes of the Loc-RIB tables and interned attributes, from the containers' capacities
    /// (hashbrown stores one control byte per bucket; attribute vectors counted by capacity). An estimate for
    /// memory-per-route figures, not an allocator measurement.
    pub fn approx_memory_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(IpNet, Dest)>() + 1;
        let tables: usize = self
            .tables
            .values()
            .map(|t| {
                let spilled: usize = t
                    .dests
                    .values()
                    .filter(|d| d.paths.spilled())
                    .map(|d| d.paths.capacity() * std::mem::size_of::<Path>())
                    .sum();
                t.dests.capacity() * bucket + spilled
            })
            .sum();
        let attrs: usize = self
            .interner
            .set
            .iter()
            .map(|a| {
                // Arc header (two counters) + the struct + its vectors' heap.
                16 + std::mem::size_of::<PathAttributes>()
                    + a.as_path
                        .iter()
                        .map(|s| match s {
                            AsPathSegment::Sequence(v)
                            | AsPathSegment::Set(v)
                            | AsPathSegment::ConfedSequence(v)
                            | AsPathSegment::ConfedSet(v) => v.capacity() * 4,
                        })
                        .sum::<usize>()
                    + a.as_path.capacity() * std::mem::size_of::<AsPathSegment>()
                    + a.communities.capacity() * 4
                    + a.cluster_list.capacity() * 4
            })
            .sum::<usize>()
            + self.interner.set.capacity() * (std::mem::size_of::<Arc<PathAttributes>>() + 1);
        tables + attrs
    }
}

impl PeerSlot {
    fn forget_one(&mut self, family: Family) {
        if let Some(n) = self.accepted.get_mut(&family) {
            *n = n.saturating_sub(1);
            let limit = self.config.max_prefix.map(|m| m.limit() as usize);
            if limit.is_some_and(|l| *n <= l) {
                self.over_limit.retain(|f| *f != family);
            }
        }
    }
}
