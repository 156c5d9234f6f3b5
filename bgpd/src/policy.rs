//! Import and export policy: prefix lists, communities, AS-path prepend, max-prefix.
//!
//! Everything here is a pure function of (prefix, attributes): [`Policy::evaluate`] answers
//! [`PolicyResult::Accept`] with the (possibly modified) attributes or [`PolicyResult::Reject`] with the reason as
//! data. The RIB calls it after the RFC-mandated loop checks on import and after the per-peer attribute
//! transformation (but before its own-AS prepend) on export, so an export statement's prepend lands behind the
//! speaker's own ASN, as operators expect from GoBGP and Cisco.

use std::borrow::Cow;

use ipnet::IpNet;

use crate::packet::iana::Family;
use crate::packet::{Afi, Safi};
use crate::packet::{AsPathSegment, Community, NotificationMsg, PathAttributes};

/// Configuration errors of a policy (found when it is built, never while routes flow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `ge`/`le` must satisfy `prefix length <= ge <= le <= address bits`.
    #[error("prefix-list entry {prefix}: ge {ge:?} / le {le:?} outside {min}..={max}, or ge > le")]
    InvalidLengthRange {
        prefix: IpNet,
        ge: Option<u8>,
        le: Option<u8>,
        min: u8,
        max: u8,
    },
    /// A max-prefix limit of 0 would tear every session down on its first route.
    #[error("max-prefix limit must be at least 1")]
    ZeroMaxPrefix,
}

/// What a matching statement (or the default) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Action {
    #[default]
    Permit,
    Deny,
}

/// One prefix-list entry's match: routes inside `prefix` whose length lies in `ge..=le`.
/// Without `ge`/`le` the match is exact, with only `ge` up to the full length, with only `le` from the
/// entry's own length (the FRR/Cisco `ip prefix-list` semantics). The family is the prefix's own: an IPv4 entry
/// never matches an IPv6 route (`0.0.0.0/0 le 32` is "any IPv4 route").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrefixMatch {
    prefix: IpNet,
    ge: u8,
    le: u8,
}

impl PrefixMatch {
    /// Validates the range; host bits of `prefix` are cleared.
    pub fn new(prefix: IpNet, ge: Option<u8>, le: Option<u8>) -> Result<Self, PolicyError> {
        let min = prefix.prefix_len();
        let max = prefix.max_prefix_len();
        let lo = ge.unwrap_or(min);
        let hi = match (ge, le) {
            (_, Some(le)) => le,
            (Some(_), None) => max,
            (None, None) => min,
        };
        if lo < min || hi > max || lo > hi {
            return Err(PolicyError::InvalidLengthRange {
                prefix,
                ge,
                le,
                min,
                max,
            });
        }
        Ok(Self {
            prefix: prefix.trunc(),
            ge: lo,
            le: hi,
        })
    }

    /// Exactly this prefix.
    pub fn exact(prefix: IpNet) -> Self {
        let len = prefix.prefix_len();
        Self {
            prefix: prefix.trunc(),
            ge: len,
            le: len,
        }
    }

    pub fn matches(&self, route: &IpNet) -> bool {
        let len = route.prefix_len();
        // `IpNet::contains` is false across families, which is what keeps the entry to its own family.
        self.ge <= len && len <= self.le && self.prefix.contains(route)
    }
}

/// A match on standard communities (RFC 1997).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CommunityMatch {
    /// The route carries at least one of these.
    Any(Vec<Community>),
    /// The route carries every one of these.
    All(Vec<Community>),
}

impl CommunityMatch {
    pub fn matches(&self, carried: &[Community]) -> bool {
        match self {
            Self::Any(wanted) => wanted.iter().any(|c| carried.contains(c)),
            Self::All(wanted) => wanted.iter().all(|c| carried.contains(c)),
        }
    }
}

/// A change to the communities, applied in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CommunityAction {
    /// Replace the whole list.
    Set(Vec<Community>),
    /// Append those not yet carried.
    Add(Vec<Community>),
    /// Drop these.
    Remove(Vec<Community>),
}

/// AS-path prepend: `count` copies of `asn` (the speaker's own ASN when `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prepend {
    pub asn: Option<u32>,
    pub count: u8,
}

/// The conditions of a statement; all given ones must hold (an empty `Conditions` matches every route).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Conditions {
    /// Only routes of this address family.
    pub afi: Option<Afi>,
    /// The route matches at least one entry (ignored when empty).
    pub prefixes: Vec<PrefixMatch>,
    pub communities: Option<CommunityMatch>,
}

impl Conditions {
    pub fn matches(&self, prefix: &IpNet, attrs: &PathAttributes) -> bool {
        if self.afi.is_some_and(|afi| afi != afi_of(prefix)) {
            return false;
        }
        if !self.prefixes.is_empty() && !self.prefixes.iter().any(|m| m.matches(prefix)) {
            return false;
        }
        self.communities
            .as_ref()
            .is_none_or(|m| m.matches(&attrs.communities))
    }
}

/// What a permitting statement changes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Modifications {
    pub communities: Vec<CommunityAction>,
    pub prepend: Option<Prepend>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
}

impl Modifications {
    fn is_empty(&self) -> bool {
        self.communities.is_empty()
            && self.prepend.is_none()
            && self.local_pref.is_none()
            && self.med.is_none()
    }

    fn apply(&self, ctx: &PolicyContext, attrs: &mut PathAttributes) {
        for action in &self.communities {
            match action {
                CommunityAction::Set(list) => {
                    attrs.communities.clone_from(list);
                    dedup_in_order(&mut attrs.communities);
                }
                CommunityAction::Add(list) => {
                    for c in list {
                        if !attrs.communities.contains(c) {
                            attrs.communities.push(*c);
                        }
                    }
                }
                CommunityAction::Remove(list) => attrs.communities.retain(|c| !list.contains(c)),
            }
        }
        if let Some(p) = self.prepend {
            prepend_as_path(&mut attrs.as_path, p.asn.unwrap_or(ctx.local_asn), p.count);
        }
        if let Some(lp) = self.local_pref {
            attrs.local_pref = Some(lp);
        }
        if let Some(med) = self.med {
            attrs.med = Some(med);
        }
    }
}

fn dedup_in_order(list: &mut Vec<Community>) {
    let mut seen = Vec::with_capacity(list.len());
    list.retain(|c| {
        if seen.contains(c) {
            false
        } else {
            seen.push(*c);
            true
        }
    });
}

/// One rule: if the conditions hold, `action` decides; on permit the modifications apply.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Statement {
    pub conditions: Conditions,
    pub action: Action,
    pub modifications: Modifications,
}

/// A per-peer, per-direction policy: statements in order, the first whose conditions hold decides; when none
/// does, `default_action` decides (without modifications). Default routes (0.0.0.0/0, ::/0) are rejected before
/// any statement unless `allow_default_route`, so a peer cannot pull a node's traffic by accident.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Policy {
    pub statements: Vec<Statement>,
    pub default_action: Action,
    pub allow_default_route: bool,
}

/// What the policy needs to know about the speaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyContext {
    pub local_asn: u32,
}

/// Why a policy rejected a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyReject {
    /// 0.0.0.0/0 or ::/0 without `allow_default_route`.
    DefaultRoute,
    /// The statement at this index (0-based) matched and denies.
    Statement(usize),
    /// No statement matched and the default action denies.
    DefaultAction,
}

/// The answer of [`Policy::evaluate`]. `Accept` borrows the input when nothing changed, so the RIB can keep
/// sharing one interned attribute set across all prefixes of an UPDATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyResult<'a> {
    Accept(Cow<'a, PathAttributes>),
    Reject(PolicyReject),
}

impl Policy {
    /// A policy that accepts everything, default routes included.
    pub fn accept_all() -> Self {
        Self {
            allow_default_route: true,
            ..Self::default()
        }
    }

    pub fn evaluate<'a>(
        &self,
        ctx: &PolicyContext,
        prefix: &IpNet,
        attrs: &'a PathAttributes,
    ) -> PolicyResult<'a> {
        if !self.allow_default_route && prefix.prefix_len() == 0 {
            return PolicyResult::Reject(PolicyReject::DefaultRoute);
        }
        let Some((index, statement)) = self
            .statements
            .iter()
            .enumerate()
            .find(|(_, s)| s.conditions.matches(prefix, attrs))
        else {
            return match self.default_action {
                Action::Permit => PolicyResult::Accept(Cow::Borrowed(attrs)),
                Action::Deny => PolicyResult::Reject(PolicyReject::DefaultAction),
            };
        };
        match statement.action {
            Action::Deny => PolicyResult::Reject(PolicyReject::Statement(index)),
            Action::Permit if statement.modifications.is_empty() => {
                PolicyResult::Accept(Cow::Borrowed(attrs))
            }
            Action::Permit => {
                let mut out = attrs.clone();
                statement.modifications.apply(ctx, &mut out);
                PolicyResult::Accept(Cow::Owned(out))
            }
        }
    }
}

/// Puts `count` copies of `asn` in front of the AS_PATH: into the leading AS_SEQUENCE while it has room
/// (255 ASNs per segment, RFC 4271 section 4.3), else in a new leading AS_SEQUENCE.
pub fn prepend_as_path(as_path: &mut Vec<AsPathSegment>, asn: u32, count: u8) {
    const MAX_SEGMENT: usize = 255;
    for _ in 0..count {
        match as_path.first_mut() {
            Some(AsPathSegment::Sequence(seq)) if seq.len() < MAX_SEGMENT => seq.insert(0, asn),
            _ => as_path.insert(0, AsPathSegment::Sequence(vec![asn])),
        }
    }
}

/// The address family of a prefix.
pub fn afi_of(prefix: &IpNet) -> Afi {
    match prefix {
        IpNet::V4(_) => Afi::Ipv4,
        IpNet::V6(_) => Afi::Ipv6,
    }
}

/// What to do when a peer sends more prefixes of one family than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MaxPrefixAction {
    /// Log and keep the session (and the routes).
    Warn,
    /// Close the session with a NOTIFICATION Cease / Maximum Number of Prefixes Reached (RFC 4486).
    #[default]
    TearDown,
}

/// A per-family limit on accepted prefixes from one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaxPrefix {
    limit: u32,
    pub action: MaxPrefixAction,
}

/// The signal the RIB hands the speaker when a limit is crossed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaxPrefixSignal {
    Warn {
        family: Family,
        limit: u32,
        count: usize,
    },
    /// Send this NOTIFICATION and close the session.
    TearDown {
        family: Family,
        notification: NotificationMsg,
    },
}

/// NOTIFICATION error code Cease (RFC 4271) and its subcode 1 (RFC 4486).
pub const CEASE: u8 = 6;
pub const CEASE_MAX_PREFIX: u8 = 1;

impl MaxPrefix {
    pub fn new(limit: u32, action: MaxPrefixAction) -> Result<Self, PolicyError> {
        if limit == 0 {
            return Err(PolicyError::ZeroMaxPrefix);
        }
        Ok(Self { limit, action })
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// `Some` once `count` exceeds the limit.
    pub fn check(&self, family: Family, count: usize) -> Option<MaxPrefixSignal> {
        if count <= self.limit as usize {
            return None;
        }
        Some(match self.action {
            MaxPrefixAction::Warn => MaxPrefixSignal::Warn {
                family,
                limit: self.limit,
                count,
            },
            MaxPrefixAction::TearDown => {
                // RFC 4486 section 4: AFI (2 octets), SAFI (1 octet), upper bound (4 octets).
                let (afi, safi): (Afi, Safi) = family;
                let mut data = Vec::with_capacity(7);
                data.extend_from_slice(&(afi as u16).to_be_bytes());
                data.push(safi as u8);
                data.extend_from_slice(&self.limit.to_be_bytes());
                MaxPrefixSignal::TearDown {
                    family,
                    notification: NotificationMsg {
                        code: CEASE,
                        subcode: CEASE_MAX_PREFIX,
                        data,
                    },
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const V4: Family = (Afi::Ipv4, Safi::Unicast);
    const V6: Family = (Afi::Ipv6, Safi::Unicast);
    const CTX: PolicyContext = PolicyContext { local_asn: 64512 };

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn attrs() -> PathAttributes {
        PathAttributes {
            as_path: vec![AsPathSegment::Sequence(vec![65001])],
            next_hop: Some("198.18.0.1".parse::<IpAddr>().unwrap()),
            ..Default::default()
        }
    }

    fn permit_if(prefix: PrefixMatch) -> Statement {
        Statement {
            conditions: Conditions {
                prefixes: vec![prefix],
                ..Default::default()
            },
            action: Action::Permit,
            modifications: Modifications::default(),
        }
    }

    fn deny_if(prefix: PrefixMatch) -> Statement {
        Statement {
            action: Action::Deny,
            ..permit_if(prefix)
        }
    }

    #[test]
    fn prefix_match_exact_without_ge_le_both_families() {
        for (entry, hit, longer, other_family) in [
            (
                "198.18.0.0/24",
                "198.18.0.0/24",
                "198.18.0.0/25",
                "fd00::/24",
            ),
            ("fd00:1::/64", "fd00:1::/64", "fd00:1::/65", "198.18.0.0/24"),
        ] {
            let m = PrefixMatch::new(net(entry), None, None).unwrap();
            assert!(m.matches(&net(hit)));
            assert!(!m.matches(&net(longer)));
            assert!(!m.matches(&net(other_family)));
        }
    }

    #[test]
    fn prefix_match_ge_le_ranges_both_families() {
        let m = PrefixMatch::new(net("198.18.0.0/16"), Some(24), Some(26)).unwrap();
        assert!(!m.matches(&net("198.18.0.0/23")));
        assert!(m.matches(&net("198.18.1.0/24")));
        assert!(m.matches(&net("198.18.1.64/26")));
        assert!(!m.matches(&net("198.18.1.64/27")));
        assert!(
            !m.matches(&net("198.19.1.0/24")),
            "outside the covering prefix"
        );

        let m = PrefixMatch::new(net("fd00::/48"), Some(64), None).unwrap();
        assert!(!m.matches(&net("fd00::/63")));
        assert!(m.matches(&net("fd00:0:0:5::/64")));
        assert!(m.matches(&net("fd00::1/128")));
        assert!(!m.matches(&net("fd01::/64")));

        let m = PrefixMatch::new(net("fd00::/48"), None, Some(56)).unwrap();
        assert!(m.matches(&net("fd00::/48")));
        assert!(m.matches(&net("fd00:0:0:100::/56")));
        assert!(!m.matches(&net("fd00::/64")));

        let any_v4 = PrefixMatch::new(net("0.0.0.0/0"), None, Some(32)).unwrap();
        assert!(any_v4.matches(&net("198.18.7.0/24")));
        assert!(
            !any_v4.matches(&net("fd00::/64")),
            "an IPv4 entry never matches IPv6"
        );
        let any_v6 = PrefixMatch::new(net("::/0"), None, Some(128)).unwrap();
        assert!(any_v6.matches(&net("fd00::/64")));
        assert!(!any_v6.matches(&net("198.18.7.0/24")));
    }

    #[test]
    fn prefix_match_rejects_bad_ranges() {
        assert!(matches!(
            PrefixMatch::new(net("198.18.0.0/24"), Some(16), None),
            Err(PolicyError::InvalidLengthRange { .. })
        ));
        assert!(PrefixMatch::new(net("198.18.0.0/24"), None, Some(33)).is_err());
        assert!(PrefixMatch::new(net("fd00::/64"), Some(100), Some(90)).is_err());
        assert!(PrefixMatch::new(net("fd00::/64"), None, Some(129)).is_err());
        assert!(PrefixMatch::new(net("fd00::/64"), Some(128), Some(128)).is_ok());
    }

    #[test]
    fn first_match_wins_then_default_action() {
        let policy = Policy {
            statements: vec![
                deny_if(PrefixMatch::new(net("198.18.1.0/24"), None, Some(32)).unwrap()),
                permit_if(PrefixMatch::new(net("198.18.0.0/15"), None, Some(32)).unwrap()),
                deny_if(PrefixMatch::new(net("fd00:1::/32"), None, Some(128)).unwrap()),
                permit_if(PrefixMatch::new(net("fd00::/8"), None, Some(128)).unwrap()),
            ],
            default_action: Action::Deny,
            allow_default_route: false,
        };
        let a = attrs();
        let eval = |p: &str| policy.evaluate(&CTX, &net(p), &a);
        assert_eq!(
            eval("198.18.1.0/25"),
            PolicyResult::Reject(PolicyReject::Statement(0))
        );
        assert_eq!(
            eval("198.18.2.0/24"),
            PolicyResult::Accept(Cow::Borrowed(&a))
        );
        assert_eq!(
            eval("fd00:1:2::/48"),
            PolicyResult::Reject(PolicyReject::Statement(2))
        );
        assert_eq!(eval("fd00:2::/48"), PolicyResult::Accept(Cow::Borrowed(&a)));
        assert_eq!(
            eval("203.0.113.0/24"),
            PolicyResult::Reject(PolicyReject::DefaultAction)
        );
        assert_eq!(
            eval("2001:db8::/32"),
            PolicyResult::Reject(PolicyReject::DefaultAction)
        );
    }

    #[test]
    fn afi_condition_matches_only_its_family() {
        let policy = Policy {
            statements: vec![Statement {
                conditions: Conditions {
                    afi: Some(Afi::Ipv6),
                    ..Default::default()
                },
                action: Action::Deny,
                modifications: Modifications::default(),
            }],
            ..Default::default()
        };
        let a = attrs();
        assert_eq!(
            policy.evaluate(&CTX, &net("fd00::/64"), &a),
            PolicyResult::Reject(PolicyReject::Statement(0))
        );
        assert!(matches!(
            policy.evaluate(&CTX, &net("198.18.0.0/24"), &a),
            PolicyResult::Accept(_)
        ));
    }

    #[test]
    fn default_route_rejected_unless_allowed_both_families() {
        let a = attrs();
        for p in ["0.0.0.0/0", "::/0"] {
            assert_eq!(
                Policy::default().evaluate(&CTX, &net(p), &a),
                PolicyResult::Reject(PolicyReject::DefaultRoute)
            );
            assert!(matches!(
                Policy::accept_all().evaluate(&CTX, &net(p), &a),
                PolicyResult::Accept(_)
            ));
        }
        // A /1 is not a default route.
        assert!(matches!(
            Policy::default().evaluate(&CTX, &net("128.0.0.0/1"), &a),
            PolicyResult::Accept(_)
        ));
        assert!(matches!(
            Policy::default().evaluate(&CTX, &net("8000::/1"), &a),
            PolicyResult::Accept(_)
        ));
    }

    #[test]
    fn community_match_any_and_all() {
        let carried = [Community(1), Community(2)];
        assert!(CommunityMatch::Any(vec![Community(2), Community(9)]).matches(&carried));
        assert!(!CommunityMatch::Any(vec![Community(9)]).matches(&carried));
        assert!(CommunityMatch::All(vec![Community(1), Community(2)]).matches(&carried));
        assert!(!CommunityMatch::All(vec![Community(1), Community(9)]).matches(&carried));
        assert!(
            CommunityMatch::All(vec![]).matches(&carried),
            "all of nothing holds"
        );
        assert!(
            !CommunityMatch::Any(vec![]).matches(&carried),
            "any of nothing does not"
        );
    }

    #[test]
    fn community_condition_and_set_add_remove_both_families() {
        let tag = Community(0xFDE8_0001);
        let policy = Policy {
            statements: vec![Statement {
                conditions: Conditions {
                    communities: Some(CommunityMatch::Any(vec![tag])),
                    ..Default::default()
                },
                action: Action::Permit,
                modifications: Modifications {
                    communities: vec![
                        CommunityAction::Add(vec![Community(7), tag]),
                        CommunityAction::Remove(vec![tag]),
                        CommunityAction::Add(vec![Community(8)]),
                    ],
                    ..Default::default()
                },
            }],
            default_action: Action::Deny,
            allow_default_route: false,
        };
        for p in ["198.18.4.0/24", "fd00:4::/64"] {
            let mut a = attrs();
            assert_eq!(
                policy.evaluate(&CTX, &net(p), &a),
                PolicyResult::Reject(PolicyReject::DefaultAction)
            );
            a.communities = vec![Community(3), tag];
            let PolicyResult::Accept(out) = policy.evaluate(&CTX, &net(p), &a) else {
                panic!("rejected {p}")
            };
            assert_eq!(
                out.communities,
                vec![Community(3), Community(7), Community(8)]
            );
            assert!(matches!(out, Cow::Owned(_)));
        }
        let set = Modifications {
            communities: vec![CommunityAction::Set(vec![Community(5), Community(5)])],
            ..Default::default()
        };
        let mut a = attrs();
        a.communities = vec![Community(1)];
        set.apply(&CTX, &mut a);
        assert_eq!(a.communities, vec![Community(5)]);
    }

    #[test]
    fn prepend_own_and_given_asn() {
        let mut path = vec![AsPathSegment::Sequence(vec![65001])];
        prepend_as_path(&mut path, 64512, 2);
        assert_eq!(
            path,
            vec![AsPathSegment::Sequence(vec![64512, 64512, 65001])]
        );

        let mut path = vec![AsPathSegment::Set(vec![65001, 65002])];
        prepend_as_path(&mut path, 64999, 1);
        assert_eq!(
            path,
            vec![
                AsPathSegment::Sequence(vec![64999]),
                AsPathSegment::Set(vec![65001, 65002])
            ]
        );

        let mut path = vec![];
        prepend_as_path(&mut path, 64999, 0);
        assert!(path.is_empty());

        let mut path = vec![AsPathSegment::Sequence(vec![1; 254])];
        prepend_as_path(&mut path, 2, 3);
        assert_eq!(path.len(), 2, "a full segment spills into a new one");
        assert_eq!(path[0], AsPathSegment::Sequence(vec![2, 2]));
        assert!(matches!(&path[1], AsPathSegment::Sequence(s) if s.len() == 255 && s[0] == 2));

        for (p, asn, want) in [
            ("198.18.0.0/24", None, 64512),
            ("fd00::/64", Some(65099), 65099),
        ] {
            let policy = Policy {
                statements: vec![Statement {
                    modifications: Modifications {
                        prepend: Some(Prepend { asn, count: 3 }),
                        ..Default::default()
                    },
                    ..Default::default()
                }],
                ..Default::default()
            };
            let input = attrs();
            let PolicyResult::Accept(out) = policy.evaluate(&CTX, &net(p), &input) else {
                panic!()
            };
            assert_eq!(
                out.as_path,
                vec![AsPathSegment::Sequence(vec![want, want, want, 65001])]
            );
        }
    }

    #[test]
    fn set_local_pref_and_med() {
        let policy = Policy {
            statements: vec![Statement {
                modifications: Modifications {
                    local_pref: Some(200),
                    med: Some(5),
                    ..Default::default()
                },
                ..Default::default()
            }],
            ..Default::default()
        };
        for p in ["198.18.0.0/24", "fd00::/64"] {
            let input = attrs();
            let PolicyResult::Accept(out) = policy.evaluate(&CTX, &net(p), &input) else {
                panic!()
            };
            assert_eq!((out.local_pref, out.med), (Some(200), Some(5)));
        }
    }

    #[test]
    fn max_prefix_warn_and_teardown_with_rfc4486_data() {
        assert_eq!(
            MaxPrefix::new(0, MaxPrefixAction::Warn),
            Err(PolicyError::ZeroMaxPrefix)
        );
        let warn = MaxPrefix::new(2, MaxPrefixAction::Warn).unwrap();
        assert_eq!(warn.check(V4, 2), None);
        assert_eq!(
            warn.check(V4, 3),
            Some(MaxPrefixSignal::Warn {
                family: V4,
                limit: 2,
                count: 3
            })
        );
        let down = MaxPrefix::new(1000, MaxPrefixAction::TearDown).unwrap();
        assert_eq!(down.check(V6, 1000), None);
        let Some(MaxPrefixSignal::TearDown {
            family,
            notification,
        }) = down.check(V6, 1001)
        else {
            panic!()
        };
        assert_eq!(family, V6);
        assert_eq!((notification.code, notification.subcode), (6, 1));
        assert_eq!(notification.data, vec![0, 2, 1, 0, 0, 0x03, 0xE8]);
        let Some(MaxPrefixSignal::TearDown { notification, .. }) = down.check(V4, 5000) else {
            panic!()
        };
        assert_eq!(notification.data, vec![0, 1, 1, 0, 0, 0x03, 0xE8]);
    }
}
