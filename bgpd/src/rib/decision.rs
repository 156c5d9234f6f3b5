//! The RFC 4271 section 9.1.2 decision process over the candidate paths of one destination.
//!
//! It is written as the RFC's elimination (9.1.2.2: each step removes the paths that are not best by that
//! step), not as a pairwise sort, because the MED step compares only paths from the same neighbouring AS and is
//! therefore not a total order: sorting with it gives an answer that depends on arrival order.
//!
//! Steps, in order (the variant of [`LossReason`] names the step a path lost at):
//! 1. highest LOCAL_PREF (missing: 100, the default bgpd itself applies on iBGP);
//! 2. locally originated over learned (GoBGP's and Cisco's position: after LOCAL_PREF, so an import policy that
//!    raises LOCAL_PREF can still prefer a learned path; BIRD puts its protocol preference first instead);
//! 3. shortest AS_PATH (an AS_SET counts 1);
//! 4. lowest ORIGIN (IGP < EGP < INCOMPLETE);
//! 5. lowest MED, only among paths from the same neighbouring AS (the leftmost AS of the AS_PATH, the local AS
//!    for an empty one); a missing MED is 0 (RFC 4271 section 9.1.2.2 c);
//! 6. eBGP-learned over iBGP-learned (locally originated paths reach here only against each other);
//! 7. (interior cost to the next hop: bgpd does not resolve next hops recursively, so all are equal and the step
//!    is skipped);
//! 8. lowest BGP identifier, the ORIGINATOR_ID instead when present (RFC 4456 section 9);
//! 9. shortest CLUSTER_LIST (RFC 4456 section 9);
//! 10. lowest peer address.
//!
//! Multipath (ECMP): the paths that survive steps 1 to 6 form the multipath set. They have the same LOCAL_PREF,
//! the same origination (local or learned), the same AS_PATH length and ORIGIN, are all eBGP or all iBGP, and
//! paths from one neighbouring AS have the same (lowest) MED; paths from different neighbouring ASes are not
//! required to come from the same AS (BIRD's `merge paths` rule, not Cisco's stricter one), because in a cluster
//! each node often has its own ASN and anycast service routes should spread over all of them.

use std::net::IpAddr;

use smallvec::SmallVec;

use crate::packet::Origin;

/// The decision step at which a path lost to the best path (data for the API, never a string).
/// A reason at or after [`LossReason::RouterId`] means the path is in the multipath set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LossReason {
    LocalPref,
    LocalOrigin,
    AsPathLength,
    Origin,
    Med,
    ExternalOverInternal,
    RouterId,
    ClusterListLength,
    PeerAddress,
}

impl LossReason {
    /// True when the path lost only in a tie-break after the multipath boundary.
    pub fn in_multipath(self) -> bool {
        self >= Self::RouterId
    }
}

/// What the decision process looks at, extracted once per path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub local_pref: u32,
    pub local: bool,
    pub as_path_len: u32,
    pub origin: Origin,
    pub med: u32,
    pub neighbor_as: u32,
    pub ebgp: bool,
    pub router_id: u32,
    pub cluster_list_len: u32,
    pub peer_addr: IpAddr,
}

/// Result of ranking: `order[0]` is the best path, `order[..multipath]` the multipath set, `reasons[i]` why the
/// path at input index `i` lost (None for the best).
#[derive(Debug)]
pub(crate) struct Ranking {
    pub order: SmallVec<[usize; 4]>,
    pub multipath: usize,
    pub reasons: SmallVec<[Option<LossReason>; 4]>,
}

type Alive = SmallVec<[usize; 4]>;

fn keep_min<T: Ord + Copy>(
    keys: &[Key],
    alive: &mut Alive,
    reasons: &mut [Option<LossReason>],
    reason: LossReason,
    f: impl Fn(&Key) -> T,
) {
    let Some(min) = alive.iter().map(|&i| f(&keys[i])).min() else {
        return;
    };
    alive.retain(|i| {
        let keep = f(&keys[*i]) == min;
        if !keep {
            reasons[*i] = Some(reason);
        }
        keep
    });
}

/// One run of the elimination over `cands`; returns the winner and the multipath survivors (winner included),
/// and records in `reasons` the step each eliminated candidate lost at.
fn eliminate(keys: &[Key], cands: &[usize], reasons: &mut [Option<LossReason>]) -> (usize, Alive) {
    let mut alive: Alive = cands.iter().copied().collect();
    keep_min(keys, &mut alive, reasons, LossReason::LocalPref, |k| {
        std::cmp::Reverse(k.local_pref)
    });
    keep_min(keys, &mut alive, reasons, LossReason::LocalOrigin, |k| {
        !k.local
    });
    keep_min(keys, &mut alive, reasons, LossReason::AsPathLength, |k| {
        k.as_path_len
    });
    keep_min(keys, &mut alive, reasons, LossReason::Origin, |k| k.origin);
    // MED: a path is removed only by a path from the same neighbouring AS with a lower MED.
    let snapshot = alive.clone();
    alive.retain(|i| {
        let k = &keys[*i];
        let beaten = snapshot
            .iter()
            .any(|&j| keys[j].neighbor_as == k.neighbor_as && keys[j].med < k.med);
        if beaten {
            reasons[*i] = Some(LossReason::Med);
        }
        !beaten
    });
    keep_min(
        keys,
        &mut alive,
        reasons,
        LossReason::ExternalOverInternal,
        |k| !k.ebgp,
    );
    let multipath = alive.clone();
    keep_min(keys, &mut alive, reasons, LossReason::RouterId, |k| {
        k.router_id
    });
    keep_min(
        keys,
        &mut alive,
        reasons,
        LossReason::ClusterListLength,
        |k| k.cluster_list_len,
    );
    keep_min(keys, &mut alive, reasons, LossReason::PeerAddress, |k| {
        k.peer_addr
    });
    // Two paths equal in every step cannot come from different peers; if they ever do, the lower input index
    // (the older path) wins, so the answer is still deterministic.
    let winner = alive[0];
    for &other in &alive[1..] {
        reasons[other] = Some(LossReason::PeerAddress);
    }
    (winner, multipath)
}

/// Repeatedly takes the winner out of `set`, appending to `order`; gives the order of the non-best paths.
fn drain_in_order(keys: &[Key], mut set: Alive, order: &mut SmallVec<[usize; 4]>) {
    let mut scratch: SmallVec<[Option<LossReason>; 4]> = smallvec::smallvec![None; keys.len()];
    while !set.is_empty() {
        let (winner, _) = eliminate(keys, &set, &mut scratch);
        order.push(winner);
        set.retain(|i| *i != winner);
    }
}

/// Ranks all candidate paths: the best, then the rest of the multipath set, then the others, each group in
/// decision order.
pub(crate) fn rank(keys: &[Key]) -> Ranking {
    let n = keys.len();
    let mut reasons: SmallVec<[Option<LossReason>; 4]> = smallvec::smallvec![None; n];
    let mut order = SmallVec::new();
    if n <= 1 {
        order.extend(0..n);
        return Ranking {
            order,
            multipath: n,
            reasons,
        };
    }
    let all: Alive = (0..n).collect();
    let (winner, multipath) = eliminate(keys, &all, &mut reasons);
    order.push(winner);
    let rest_of_multipath: Alive = multipath.iter().copied().filter(|&i| i != winner).collect();
    drain_in_order(keys, rest_of_multipath, &mut order);
    let others: Alive = (0..n).filter(|i| !multipath.contains(i)).collect();
    drain_in_order(keys, others, &mut order);
    Ranking {
        order,
        multipath: multipath.len(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(addr: &str) -> Key {
        Key {
            local_pref: 100,
            local: false,
            as_path_len: 1,
            origin: Origin::Igp,
            med: 0,
            neighbor_as: 65001,
            ebgp: true,
            router_id: 1,
            cluster_list_len: 0,
            peer_addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn single_and_empty() {
        let r = rank(&[key("fd00::1")]);
        assert_eq!((r.order.as_slice(), r.multipath), (&[0][..], 1));
        let r = rank(&[]);
        assert_eq!((r.order.len(), r.multipath), (0, 0));
    }

    #[test]
    fn med_is_not_transitive_but_the_answer_is_order_independent() {
        // a: AS1 MED 10, b: AS2 MED 0 (lower router id), c: AS1 MED 5.
        // c removes a (same AS, lower MED); b and c remain; b wins on router id.
        let mut a = key("198.18.0.1");
        a.neighbor_as = 1;
        a.med = 10;
        a.router_id = 3;
        let mut b = key("198.18.0.2");
        b.neighbor_as = 2;
        b.router_id = 1;
        let mut c = key("fd00::3");
        c.neighbor_as = 1;
        c.med = 5;
        c.router_id = 2;
        let perms = [
            [a, b, c],
            [a, c, b],
            [b, a, c],
            [b, c, a],
            [c, a, b],
            [c, b, a],
        ];
        for keys in perms {
            let r = rank(&keys);
            let best = keys[r.order[0]];
            assert_eq!(best, b);
            assert_eq!(r.multipath, 2, "b and c survive to the multipath boundary");
            let ia = keys.iter().position(|k| *k == a).unwrap();
            assert_eq!(r.reasons[ia], Some(LossReason::Med));
            assert_eq!(keys[r.order[2]], a, "a ranks last");
        }
    }
}
