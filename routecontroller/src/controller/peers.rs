//! Model peers, import policies and announcements -> bgpd's `Neighbor`, `Policy` and path attributes (pure).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use bgpd::fsm::GracefulRestartConfig;
use bgpd::packet::{Afi, Community as BgpCommunity, Origin, PathAttributes, Safi};
use bgpd::policy::{
    Action, Conditions, Modifications, Policy, PolicyError, PrefixMatch as BgpPrefixMatch, Prepend,
    Statement,
};
use bgpd::session::TtlMode;
use bgpd::speaker::{Neighbor, SpeakerConfig};
use ipnet::IpNet;

use crate::model::{
    Announcement, DesiredPeer, DesiredRouting, FilterAction, ImportPolicy, IpFamily, PeerKind,
    PeerPassword, PrefixMatch,
};

/// ConnectRetry starts at bgpd's 5 s; capped lower than its 120 s so a node that comes back is reached soon.
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(30);

/// Why a desired peer cannot be configured on the speaker (the peer is skipped and logged).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerMapError {
    /// A password from a Secret: reading Secrets is not wired yet.
    #[error(
        "peer {address}: password from Secret {secret}/{key} is not supported yet; session not configured"
    )]
    SecretPassword {
        address: IpAddr,
        secret: String,
        key: String,
    },
    /// A prefix-list entry bgpd refuses.
    #[error("peer {address}: import policy: {source}")]
    Policy {
        address: IpAddr,
        #[source]
        source: PolicyError,
    },
}

/// The speaker's identity; a change needs a new speaker (a restart of the daemon).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeakerIdentity {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub cluster_id: Option<Ipv4Addr>,
    pub listen_port: u16,
}

impl SpeakerIdentity {
    /// The identity `desired` asks for.
    pub fn of(desired: &DesiredRouting) -> SpeakerIdentity {
        SpeakerIdentity {
            asn: desired.local_asn.0,
            router_id: desired.router_id,
            cluster_id: desired
                .peers
                .iter()
                .find_map(|p| p.route_reflector_client_of),
            listen_port: desired.listen_port,
        }
    }

    /// The speaker configuration: listening on every address at the BGP port.
    pub fn speaker_config(&self) -> SpeakerConfig {
        SpeakerConfig {
            asn: self.asn,
            router_id: self.router_id,
            cluster_id: self.cluster_id,
            listen: bgpd::session::any_addrs(self.listen_port).to_vec(),
        }
    }
}

/// Our next-hop addresses per family, from the announcements' next hops (the model chose them).
pub fn local_next_hops(desired: &DesiredRouting) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let mut v4 = None;
    let mut v6 = None;
    for a in &desired.announcements {
        match (a.prefix, a.next_hop) {
            (IpNet::V4(_), IpAddr::V4(nh)) => v4 = v4.or(Some(nh)),
            (_, IpAddr::V6(nh)) => v6 = v6.or(Some(nh)),
            (IpNet::V6(_), IpAddr::V4(_)) => {}
        }
    }
    // A session over IPv6 still needs our IPv6 address for IPv6 routes when only IPv4 prefixes carry one.
    (v4, v6)
}

/// The bgpd neighbour for one desired peer.
pub fn neighbor_for(
    speaker: &SpeakerConfig,
    desired: &DesiredRouting,
    peer: &DesiredPeer,
) -> Result<Neighbor, PeerMapError> {
    let mut n = Neighbor::new(speaker, peer.address, peer.remote_asn.0);
    let fsm = &mut n.session.fsm;
    fsm.local_as = peer.local_asn.0;
    // IPv6 first: the order only shapes the OPEN, both are negotiated.
    fsm.families = [IpFamily::Ipv6, IpFamily::Ipv4]
        .into_iter()
        .filter(|f| peer.families.contains(f))
        .map(|f| (afi(f), Safi::Unicast))
        .collect();
    if peer.address.is_ipv6() && peer.families.contains(&IpFamily::Ipv4) {
        // RFC 8950: IPv4 routes with IPv6 next hops over an IPv6 session (used only when we lack IPv4).
        fsm.extended_next_hop = vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)];
    }
    fsm.connect_retry_max = CONNECT_RETRY_MAX;
    n.session.remote_port = peer.port;
    n.session.local_addr = peer.local_address;
    n.session.md5_key = match &peer.password {
        None => None,
        Some(PeerPassword::Value(p)) => Some(p.0.as_bytes().to_vec()),
        Some(PeerPassword::SecretKeyRef(s)) => {
            return Err(PeerMapError::SecretPassword {
                address: peer.address,
                secret: s.name.clone(),
                key: s.key.clone(),
            });
        }
    };
    n.session.ttl = match peer.ebgp_multihop_ttl {
        Some(ttl) => TtlMode::Multihop(ttl),
        None => TtlMode::Default,
    };
    n.rib.route_reflector_client = peer.route_reflector_client_of.is_some();
    n.rib.next_hop_self = peer.next_hop_self;
    n.rib.import = import_policy(&peer.import).map_err(|source| PeerMapError::Policy {
        address: peer.address,
        source,
    })?;
    n.rib.export = export_policy(desired, peer);
    let (v4, v6) = local_next_hops(desired);
    n.local_ipv4 = v4;
    n.local_ipv6 = v6;
    Ok(n)
}

fn afi(f: IpFamily) -> Afi {
    match f {
        IpFamily::Ipv4 => Afi::Ipv4,
        IpFamily::Ipv6 => Afi::Ipv6,
    }
}

fn action(a: FilterAction) -> Action {
    match a {
        FilterAction::Accept => Action::Permit,
        FilterAction::Reject => Action::Deny,
    }
}

/// The model's ordered prefix list as a bgpd policy: one statement per rule, first match decides.
pub fn import_policy(model: &ImportPolicy) -> Result<Policy, PolicyError> {
    let mut statements = Vec::with_capacity(model.rules.len());
    for rule in &model.rules {
        let m = match rule.matching {
            PrefixMatch::Exact => BgpPrefixMatch::exact(rule.prefix),
            PrefixMatch::OrLonger => {
                BgpPrefixMatch::new(rule.prefix, None, Some(rule.prefix.max_prefix_len()))?
            }
        };
        statements.push(Statement {
            conditions: Conditions {
                prefixes: vec![m],
                ..Conditions::default()
            },
            action: action(rule.action),
            modifications: Modifications::default(),
        });
    }
    // bgpd rejects default routes before any statement unless allowed; the model decides them itself.
    let allow_default_route = [IpFamily::Ipv4, IpFamily::Ipv6]
        .into_iter()
        .any(|f| model.evaluate(&f.default_route()) == FilterAction::Accept);
    Ok(Policy {
        statements,
        default_action: action(model.default_action),
        allow_default_route,
    })
}

/// What we send a peer: our own announcements only (exact prefixes), with the AS-path prepend towards eBGP;
/// a route reflector passes everything on to its iBGP node peers.
pub fn export_policy(desired: &DesiredRouting, peer: &DesiredPeer) -> Policy {
    let reflecting = matches!(peer.kind, PeerKind::Node { .. })
        && desired
            .peers
            .iter()
            .any(|p| p.route_reflector_client_of.is_some());
    if reflecting {
        return Policy::default();
    }
    let ebgp = peer.remote_asn != peer.local_asn;
    let statements = desired
        .announcements
        .iter()
        .map(|a| Statement {
            conditions: Conditions {
                prefixes: vec![BgpPrefixMatch::exact(a.prefix)],
                ..Conditions::default()
            },
            action: Action::Permit,
            modifications: Modifications {
                prepend: a.as_path_prepend.filter(|_| ebgp).map(|p| Prepend {
                    asn: Some(p.asn.0),
                    count: p.repeat,
                }),
                ..Modifications::default()
            },
        })
        .collect();
    Policy {
        statements,
        default_action: Action::Deny,
        allow_default_route: false,
    }
}

/// The attributes we originate an announcement with: no next hop (bgpd uses ours per session, from the
/// neighbour's `local_ipv4`/`local_ipv6`), the node's communities.
pub fn origination_attributes(a: &Announcement) -> PathAttributes {
    PathAttributes {
        origin: Origin::Igp,
        communities: a.communities.iter().map(|c| BgpCommunity(c.0)).collect(),
        ..PathAttributes::default()
    }
}

/// What to change on the speaker to go from `current` to `desired` neighbours (keyed by address).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PeerDiff {
    pub add: Vec<Neighbor>,
    pub update: Vec<Neighbor>,
    pub remove: Vec<IpAddr>,
}

/// How long peers keep our routes after our session drops without a NOTIFICATION (a crash, SIGKILL).
pub const GRACEFUL_RESTART_TIME: u16 = 120;

/// Advertises graceful restart (RFC 4724) on the session: peers keep our routes as stale when we crash, for
/// [`GRACEFUL_RESTART_TIME`] or until our End-of-RIB. `restarting`: this process found its kernel routes from a
/// previous run (R bit, and the F bit per family: forwarding went on meanwhile).
pub fn with_graceful_restart(mut n: Neighbor, restarting: bool) -> Neighbor {
    let forwarding = n
        .session
        .fsm
        .families
        .iter()
        .map(|(afi, safi)| (*afi, *safi, restarting))
        .collect();
    n.session.fsm.graceful_restart = Some(GracefulRestartConfig {
        restart_time: GRACEFUL_RESTART_TIME,
        restarting,
        forwarding,
    });
    n
}

/// Compares configured neighbours with wanted ones; unchanged neighbours are left alone.
pub fn diff_peers(
    current: &BTreeMap<IpAddr, Neighbor>,
    desired: &BTreeMap<IpAddr, Neighbor>,
) -> PeerDiff {
    let mut diff = PeerDiff::default();
    for (addr, n) in desired {
        match current.get(addr) {
            None => diff.add.push(n.clone()),
            Some(old) if old != n => diff.update.push(n.clone()),
            Some(_) => {}
        }
    }
    diff.remove = current
        .keys()
        .filter(|a| !desired.contains_key(a))
        .copied()
        .collect();
    diff
}

#[cfg(test)]
mod tests;
