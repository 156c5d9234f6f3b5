//! Adj-RIB-Out: which best path goes to which peer, with which attributes (RFC 4271 9.1.3, RFC 4456, RFC 8950).
//!
//! Rules, applied to the best path of a prefix for one established peer, in this order:
//! 1. never back to the peer it came from;
//! 2. iBGP split horizon: an iBGP-learned path goes to another iBGP peer only when reflecting (RFC 4456 section
//!    6): from a client to everyone, from a non-client to clients only;
//! 3. well-known communities (RFC 1997): NO_ADVERTISE to nobody, NO_EXPORT and NO_EXPORT_SUBCONFED not to eBGP;
//! 4. attributes for the peer: when reflecting, ORIGINATOR_ID set to the source's router-id if absent and our
//!    cluster id prepended to CLUSTER_LIST; towards eBGP, ORIGINATOR_ID and CLUSTER_LIST removed, MED removed
//!    unless the path is ours (RFC 4271 5.1.4: it does not leave the neighbouring AS), next hop ourselves;
//!    towards iBGP the next hop is kept, except ours for our own routes, or with `next_hop_self` for paths not
//!    being reflected;
//! 5. next hop per family: an IPv6 route only ever gets an IPv6 next hop; an IPv4 route gets an IPv4 one, or an
//!    IPv6 one only when the session negotiated RFC 8950 for IPv4 unicast. A kept next hop of a family the peer
//!    cannot take, or a link-local one, is replaced by ours; if we have no address of a usable family the
//!    prefix is not sent;
//! 6. export policy (it may set MED, communities, prepend);
//! 7. towards eBGP our ASN is prepended and LOCAL_PREF removed; towards iBGP LOCAL_PREF defaults to 100.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::{
    BestChange, DEFAULT_LOCAL_PREF, FastMap, LOCAL, LocalConfig, Path, PeerId, PeerIdx, PeerSlot,
    Rib, RibError, SessionInfo,
};
use crate::packet::iana::Family;
use crate::packet::{Community, PathAttributes};
use crate::policy::{PolicyContext, PolicyResult, prepend_as_path};

/// RFC 1997 well-known communities.
pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);

/// One change to a peer's Adj-RIB-Out, to be sent in an UPDATE. Announcements that share an `Arc` (pointer
/// equality) share their attributes and can go in one UPDATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutChange {
    Announce {
        prefix: IpNet,
        attrs: Arc<PathAttributes>,
    },
    Withdraw {
        prefix: IpNet,
    },
}

impl OutChange {
    pub fn prefix(&self) -> IpNet {
        match self {
            Self::Announce { prefix, .. } | Self::Withdraw { prefix } => *prefix,
        }
    }
}

/// Our next hop for `prefix` on this session, of a family the peer can take.
pub(super) fn self_next_hop(prefix: &IpNet, session: &SessionInfo) -> Option<IpAddr> {
    let v6 = session
        .local_ipv6
        .or(session.local_ipv6_link_local)
        .map(IpAddr::V6);
    match prefix {
        IpNet::V4(_) => session
            .local_ipv4
            .map(IpAddr::V4)
            .or(if session.ipv4_over_ipv6() { v6 } else { None }),
        IpNet::V6(_) => v6,
    }
}

/// Whether `nh` may be sent with `prefix` on this session. A link-local address (learned as the only next hop
/// of an unnumbered session) is valid on its own link only, so it is never passed on.
pub(super) fn next_hop_sendable(prefix: &IpNet, nh: IpAddr, session: &SessionInfo) -> bool {
    if let IpAddr::V6(v6) = nh
        && v6.is_unicast_link_local()
    {
        return false;
    }
    match (prefix, nh) {
        (IpNet::V6(_), IpAddr::V6(_)) | (IpNet::V4(_), IpAddr::V4(_)) => true,
        (IpNet::V4(_), IpAddr::V6(_)) => session.ipv4_over_ipv6(),
        (IpNet::V6(_), IpAddr::V4(_)) => false,
    }
}

/// The attributes `to` gets for `best`, or `None` when it must not get the prefix (see the module doc).
pub(super) fn out_attributes(
    local: &LocalConfig,
    peers: &[Option<PeerSlot>],
    to_idx: PeerIdx,
    to: &PeerSlot,
    session: &SessionInfo,
    prefix: &IpNet,
    best: &Path,
) -> Option<PathAttributes> {
    if best.peer == to_idx {
        return None;
    }
    let from = if best.peer == LOCAL {
        None
    } else {
        Some(peers.get(usize::from(best.peer.0))?.as_ref()?)
    };
    let from_ibgp = from.is_some_and(|f| f.ibgp);
    let reflecting = to.ibgp && from_ibgp;
    if reflecting
        && !(from.is_some_and(|f| f.config.route_reflector_client)
            || to.config.route_reflector_client)
    {
        return None;
    }
    let communities = &best.attrs.communities;
    if communities.contains(&NO_ADVERTISE) {
        return None;
    }
    if !to.ibgp && (communities.contains(&NO_EXPORT) || communities.contains(&NO_EXPORT_SUBCONFED))
    {
        return None;
    }

    let mut a = (*best.attrs).clone();
    a.classic_next_hop = None;
    let ours = best.peer == LOCAL;
    let use_self = if to.ibgp {
        if let (true, Some(from)) = (reflecting, from) {
            a.originator_id.get_or_insert(from.router_id);
            a.cluster_list.insert(0, local.cluster_id());
        }
        let want_self = (ours && a.next_hop.is_none()) || (to.config.next_hop_self && !reflecting);
        want_self
            || !a
                .next_hop
                .is_some_and(|nh| next_hop_sendable(prefix, nh, session))
    } else {
        a.originator_id = None;
        a.cluster_list.clear();
        if !ours {
            a.med = None;
        }
        true
    };
    if use_self {
        let nh = self_next_hop(prefix, session)?;
        a.next_hop = Some(nh);
        a.link_local_next_hop = match nh {
            IpAddr::V6(g) => session.local_ipv6_link_local.filter(|ll| *ll != g),
            IpAddr::V4(_) => None,
        };
    } else {
        // A link-local next hop is only meaningful on the link it was learned on.
        a.link_local_next_hop = None;
    }

    let ctx = PolicyContext {
        local_asn: local.asn,
    };
    let mut a = match to.config.export.evaluate(&ctx, prefix, &a) {
        PolicyResult::Reject(_) => return None,
        PolicyResult::Accept(c) => c.into_owned(),
    };
    if to.ibgp {
        a.local_pref.get_or_insert(DEFAULT_LOCAL_PREF);
    } else {
        prepend_as_path(&mut a.as_path, local.asn, 1);
        a.local_pref = None;
    }
    Some(a)
}

/// Memo of out-attributes within one export call, valid when the result cannot depend on the prefix beyond
/// its family (no export statements, not a default route): keyed by (source attributes, source peer, family).
type ExportCache = FastMap<(usize, u16, bool), Option<Arc<PathAttributes>>>;

impl Rib {
    /// Runs the export rules for the prefixes in `changes` towards `peer` and updates its Adj-RIB-Out; returns
    /// what to send. Reads the current best path, so changes may be batched or repeated.
    pub fn export(
        &mut self,
        peer: PeerId,
        changes: &[BestChange],
    ) -> Result<Vec<OutChange>, RibError> {
        let idx = self.idx(peer)?;
        let session = self
            .slot(idx)
            .session
            .as_ref()
            .ok_or(RibError::SessionDown(peer))?;
        let families: BTreeSet<Family> = changes
            .iter()
            .map(|c| c.family)
            .filter(|f| session.families.contains(f))
            .collect();
        // At most one OutChange per change: reserve once instead of growing (a table load is 100k changes).
        let mut out = Vec::with_capacity(changes.len());
        for family in families {
            let prefixes: Vec<IpNet> = changes
                .iter()
                .filter(|c| c.family == family)
                .map(|c| c.prefix)
                .collect();
            self.export_prefixes(idx, family, &prefixes, &mut out);
        }
        Ok(out)
    }

    /// The full export of a family towards `peer` (after session establishment or a ROUTE-REFRESH): announces
    /// what is missing or different, withdraws what the Adj-RIB-Out holds that should no longer be there.
    pub fn export_all(&mut self, peer: PeerId, family: Family) -> Result<Vec<OutChange>, RibError> {
        let idx = self.idx(peer)?;
        let slot = self.slot(idx);
        let session = slot.session.as_ref().ok_or(RibError::SessionDown(peer))?;
        if !session.families.contains(&family) {
            return Ok(Vec::new());
        }
        let mut prefixes: Vec<IpNet> = self
            .tables
            .get(&family)
            .map(|t| t.dests.keys().copied().collect())
            .unwrap_or_default();
        if let (Some(adj), Some(t)) = (slot.adj_out.get(&family), self.tables.get(&family)) {
            prefixes.extend(adj.keys().filter(|p| !t.dests.contains_key(*p)));
        }
        let mut out = Vec::with_capacity(prefixes.len());
        self.export_prefixes(idx, family, &prefixes, &mut out);
        Ok(out)
    }

    fn export_prefixes(
        &mut self,
        idx: PeerIdx,
        family: Family,
        prefixes: &[IpNet],
        out: &mut Vec<OutChange>,
    ) {
        if self.slot(idx).session.is_none() {
            // Checked before the Adj-RIB-Out is taken out below, so it is never lost.
            return;
        }
        let mut adj = std::mem::take(self.slot_mut(idx).adj_out.entry(family).or_default());
        {
            let Rib {
                local,
                peers,
                tables,
                interner,
                ..
            } = &mut *self;
            let to = peers[usize::from(idx.0)].as_ref().expect("live slot");
            let Some(session) = to.session.as_ref() else {
                return;
            };
            let table = tables.get(&family);
            let cacheable = to.config.export.statements.is_empty();
            let mut cache = ExportCache::default();
            for prefix in prefixes {
                let best = table
                    .and_then(|t| t.dests.get(prefix))
                    .and_then(|d| d.paths.first());
                let attrs = best.and_then(|b| {
                    let key = (
                        Arc::as_ptr(&b.attrs) as usize,
                        b.peer.0,
                        matches!(prefix, IpNet::V4(_)),
                    );
                    let use_cache = cacheable && prefix.prefix_len() != 0;
                    if use_cache && let Some(hit) = cache.get(&key) {
                        return hit.clone();
                    }
                    let computed = out_attributes(local, peers, idx, to, session, prefix, b)
                        .map(|a| interner.intern(std::borrow::Cow::Owned(a)));
                    if use_cache {
                        cache.insert(key, computed.clone());
                    }
                    computed
                });
                match (attrs, adj.get(prefix)) {
                    (Some(a), Some(old)) if Arc::ptr_eq(&a, old) => {}
                    (Some(a), _) => {
                        adj.insert(*prefix, a.clone());
                        out.push(OutChange::Announce {
                            prefix: *prefix,
                            attrs: a,
                        });
                    }
                    (None, Some(_)) => {
                        adj.remove(prefix);
                        out.push(OutChange::Withdraw { prefix: *prefix });
                    }
                    (None, None) => {}
                }
            }
        }
        self.slot_mut(idx).adj_out.insert(family, adj);
        self.interner.maybe_collect();
    }
}
