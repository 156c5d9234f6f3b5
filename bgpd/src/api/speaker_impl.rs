//! [`ApiBackend`] for the running [`Speaker`]: what the speaker's embedding API exposes, mapped to GoBGP's view.
//!
//! What the speaker does not track (withdrawal and discard counters, a neighbour's description, per-neighbour
//! local AS) is shown as GoBGP shows an unset value, or refused with [`ApiError::Unsupported`] (UNIMPLEMENTED on
//! the wire), never invented.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::backend::{
    AdminState, ApiBackend, ApiError, Capability, Destination, FamilyState, GlobalInfo,
    MessageCounters, NewPath, PathDeletion, PathQuery, PeerConfig, PeerInfo, PeerTimers, ResetKind,
    RoutePath, SessionState, TableKind, filter_destinations,
};
use crate::fsm::State;
use crate::packet::{self, Afi, Safi};
use crate::rib::{PathSource, PeerId, Route};
use crate::session::{MessageCounts, TtlMode};
use crate::speaker::{Neighbor, NeighborState, Speaker, SpeakerConfig, SpeakerError};

/// The speaker behind the API, with what the API must remember itself: the speaker's settings and the handles
/// of added paths.
pub struct SpeakerBackend {
    speaker: Speaker,
    config: SpeakerConfig,
    originated: Mutex<HashMap<Vec<u8>, ipnet::IpNet>>,
    next_uuid: Mutex<u64>,
}

impl SpeakerBackend {
    pub fn new(speaker: Speaker, config: SpeakerConfig) -> SpeakerBackend {
        SpeakerBackend {
            speaker,
            config,
            originated: Mutex::new(HashMap::new()),
            next_uuid: Mutex::new(1),
        }
    }
}

fn speaker_error(e: SpeakerError) -> ApiError {
    match e {
        SpeakerError::UnknownPeer(id) => ApiError::PeerNotFound(id.addr),
        SpeakerError::DuplicatePeer(id) => ApiError::PeerExists(id.addr),
        SpeakerError::Session(e) => ApiError::InvalidArgument(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

fn session_state(s: State) -> SessionState {
    match s {
        State::Idle => SessionState::Idle,
        State::Connect => SessionState::Connect,
        State::Active => SessionState::Active,
        State::OpenSent => SessionState::OpenSent,
        State::OpenConfirm => SessionState::OpenConfirm,
        State::Established => SessionState::Established,
    }
}

/// A tokio instant as wall-clock time.
fn wall_clock(t: tokio::time::Instant) -> SystemTime {
    SystemTime::now() - tokio::time::Instant::now().saturating_duration_since(t)
}

fn counters(c: &MessageCounts) -> MessageCounters {
    MessageCounters {
        open: c.open,
        update: c.update,
        notification: c.notification,
        keepalive: c.keepalive,
        refresh: c.route_refresh,
        total: c.total(),
        ..Default::default()
    }
}

/// A capability of an OPEN as the API shows it. `None` for one the API cannot show faithfully: a modelled code
/// whose value is malformed or names only families outside IPv4/IPv6 unicast (GoBGP's CLI expects such a
/// code to carry its decoded form, so it is left out rather than shown as unknown).
fn api_capability(c: &packet::Capability) -> Option<Capability> {
    use packet::Capability as P;
    Some(match c {
        P::MultiProtocol { afi, .. } => Capability::MultiProtocol(*afi),
        P::RouteRefresh => Capability::RouteRefresh,
        P::FourOctetAs(asn) => Capability::FourOctetAs(*asn),
        P::ExtendedNextHop(list) => {
            Capability::ExtendedNexthop(list.iter().map(|&(afi, _, nh)| (afi, nh)).collect())
        }
        P::GracefulRestart {
            restarting,
            restart_time,
            families,
        } => Capability::GracefulRestart {
            flags: if *restarting { GR_RESTART_FLAG } else { 0 },
            restart_time: *restart_time,
            families: families.iter().map(|&(afi, _, f)| (afi, f)).collect(),
        },
        P::AddPath(list) => {
            Capability::AddPath(list.iter().map(|&(afi, _, mode)| (afi, mode)).collect())
        }
        P::Unknown { code, value } => unknown_capability(*code, value)?,
    })
}

/// RFC 4724 §3 restart state (R) bit, in the 4-bit flags field.
const GR_RESTART_FLAG: u8 = 0x8;

/// (AFI, SAFI) from the wire, when IPv4 or IPv6 unicast.
fn unicast(afi: u16, safi: u16) -> Option<Afi> {
    match (Afi::from_u16(afi)?, safi) {
        (a, 1) => Some(a),
        _ => None,
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Decodes what the packet layer keeps raw: capabilities it does not use, and modelled ones naming a family it
/// does not speak (their IPv4/IPv6 unicast entries are kept).
fn unknown_capability(code: u8, v: &[u8]) -> Option<Capability> {
    Some(match code {
        // RFC 4760: AFI, reserved, SAFI.
        1 if v.len() == 4 => Capability::MultiProtocol(unicast(be16(v), u16::from(v[3]))?),
        // RFC 8950: (NLRI AFI, NLRI SAFI, next-hop AFI), 2 octets each.
        5 if v.len().is_multiple_of(6) => Capability::ExtendedNexthop(
            v.chunks(6)
                .filter_map(|t| {
                    Some((
                        unicast(be16(t), be16(&t[2..]))?,
                        Afi::from_u16(be16(&t[4..]))?,
                    ))
                })
                .collect(),
        ),
        // RFC 4724: flags (4 bits) and restart time (12 bits), then (AFI, SAFI, flags) tuples.
        64 if v.len() >= 2 && (v.len() - 2).is_multiple_of(4) => Capability::GracefulRestart {
            flags: v[0] >> 4,
            restart_time: be16(v) & 0x0fff,
            families: v[2..]
                .chunks(4)
                .filter_map(|t| Some((unicast(be16(t), u16::from(t[2]))?, t[3] & 0x80 != 0)))
                .collect(),
        },
        // RFC 7911: (AFI, SAFI, send/receive) tuples.
        69 if v.len().is_multiple_of(4) => Capability::AddPath(
            v.chunks(4)
                .filter_map(|t| Some((unicast(be16(t), u16::from(t[2]))?, t[3])))
                .collect(),
        ),
        70 => Capability::EnhancedRouteRefresh,
        // RFC 9494: (AFI, SAFI, flags, 24-bit stale time) tuples.
        71 if v.len().is_multiple_of(7) => Capability::LongLivedGracefulRestart(
            v.chunks(7)
                .filter_map(|t| {
                    let time = u32::from_be_bytes([0, t[4], t[5], t[6]]);
                    Some((unicast(be16(t), u16::from(t[2]))?, t[3], time))
                })
                .collect(),
        ),
        // Hostname capability: length-prefixed host name, then length-prefixed domain name.
        73 => {
            let (&hl, rest) = v.split_first()?;
            let host = rest.get(..usize::from(hl))?;
            let (&dl, rest) = rest.get(usize::from(hl)..)?.split_first()?;
            let domain = rest.get(..usize::from(dl))?;
            Capability::Fqdn {
                host_name: String::from_utf8_lossy(host).into_owned(),
                domain_name: String::from_utf8_lossy(domain).into_owned(),
            }
        }
        1 | 2 | 5 | 64 | 65 | 69 | 71 => return None,
        _ => Capability::Unknown {
            code,
            value: v.to_vec(),
        },
    })
}

fn peer_info(n: &NeighborState, local_asn: u32) -> PeerInfo {
    let neg = n.negotiated.as_ref();
    let fsm = &n.neighbor.session.fsm;
    let mut families: Vec<FamilyState> = Vec::new();
    for &(afi, safi) in &fsm.families {
        let count = |m: &std::collections::BTreeMap<_, usize>| {
            m.get(&(afi, safi)).copied().unwrap_or(0) as u64
        };
        families.push(FamilyState {
            afi,
            enabled: true,
            received: count(&n.received),
            accepted: count(&n.accepted),
            advertised: count(&n.advertised),
            max_prefixes: None,
        });
    }
    let hold = neg.map_or(0, |g| u64::from(g.hold_time));
    let keepalive = neg.map_or(0, |g| u64::from(g.keepalive_time));
    PeerInfo {
        address: n.id.addr,
        peer_asn: n.remote_asn,
        local_asn,
        description: String::new(),
        remote_router_id: neg.map(|g| g.peer_id),
        session_state: session_state(n.state),
        admin_state: if n.admin_down {
            AdminState::Down
        } else {
            AdminState::Up
        },
        uptime: n.established_since.map(wall_clock),
        downtime: n.down_since.map(wall_clock),
        flops: n.flaps,
        timers: PeerTimers {
            connect_retry: fsm.connect_retry_time.as_secs(),
            hold_time: u64::from(fsm.hold_time),
            // The FSM keeps alive at a third of the hold time (RFC 4271 §10's suggestion).
            keepalive_interval: u64::from(fsm.hold_time / 3),
            negotiated_hold_time: hold,
            negotiated_keepalive_interval: keepalive,
            ..Default::default()
        },
        sent: counters(&n.messages.sent),
        received: counters(&n.messages.received),
        families,
        route_reflector_client: n.neighbor.rib.route_reflector_client,
        cluster_id: None,
        passive: fsm.passive,
        multihop_ttl: match n.neighbor.session.ttl {
            TtlMode::Multihop(t) => Some(t),
            _ => None,
        },
        local_address: n.local.map(|a| a.ip()),
        local_port: n.local.map_or(0, |a| a.port()),
        remote_port: n.neighbor.session.remote_port,
        local_capabilities: n
            .local_capabilities
            .iter()
            .filter_map(api_capability)
            .collect(),
        remote_capabilities: n
            .remote_capabilities
            .iter()
            .filter_map(api_capability)
            .collect(),
    }
}

impl SpeakerBackend {
    fn route_path(
        &self,
        prefix: ipnet::IpNet,
        r: &Route,
        best: bool,
        peers: &[NeighborState],
    ) -> RoutePath {
        let (neighbor, source_asn, source_id) = match r.source {
            PathSource::Local => (None, self.config.asn, None),
            PathSource::Peer(id) => {
                let n = peers.iter().find(|n| n.id == id);
                (
                    Some(id.addr),
                    n.map_or(0, |n| n.remote_asn),
                    n.and_then(|n| n.negotiated.as_ref().map(|g| g.peer_id)),
                )
            }
        };
        RoutePath {
            prefix,
            attrs: (*r.attrs).clone(),
            best,
            age: UNIX_EPOCH + Duration::from_secs(u64::from(r.learned_at)),
            neighbor,
            source_asn,
            source_id,
            is_from_external: neighbor.is_some() && source_asn != self.config.asn,
            filtered: false,
            stale: r.stale,
            path_id: 0,
            local_path_id: 0,
            uuid: Vec::new(),
        }
    }
}

impl ApiBackend for SpeakerBackend {
    async fn global(&self) -> Result<GlobalInfo, ApiError> {
        let port = self.config.listen.first().map(|a| a.port());
        Ok(GlobalInfo {
            asn: self.config.asn,
            router_id: self.config.router_id,
            listen_port: port,
            listen_addresses: self.config.listen.iter().map(|a| a.ip()).collect(),
            families: vec![Afi::Ipv4, Afi::Ipv6],
            use_multiple_paths: false,
        })
    }

    async fn peers(&self, address: Option<IpAddr>) -> Result<Vec<PeerInfo>, ApiError> {
        let all = self.speaker.neighbors().await.map_err(speaker_error)?;
        Ok(all
            .iter()
            .filter(|n| address.is_none_or(|a| a == n.id.addr))
            .map(|n| peer_info(n, self.config.asn))
            .collect())
    }

    async fn paths(&self, query: PathQuery) -> Result<Vec<Destination>, ApiError> {
        let family = (query.afi, Safi::Unicast);
        match query.table {
            TableKind::Global => {}
            TableKind::AdjIn(addr) => {
                let routes = self
                    .speaker
                    .adj_rib_in(PeerId::new(addr), family)
                    .await
                    .map_err(speaker_error)?;
                let peers = self.speaker.neighbors().await.map_err(speaker_error)?;
                let dests = routes
                    .iter()
                    .map(|(prefix, r)| Destination {
                        prefix: *prefix,
                        paths: vec![self.route_path(*prefix, r, false, &peers)],
                    })
                    .collect();
                return Ok(filter_destinations(dests, &query.prefixes));
            }
            TableKind::AdjOut(addr) => {
                let out = self
                    .speaker
                    .adj_rib_out(PeerId::new(addr), family)
                    .await
                    .map_err(speaker_error)?;
                let now = SystemTime::now();
                let dests = out
                    .into_iter()
                    .map(|(prefix, attrs)| Destination {
                        prefix,
                        paths: vec![RoutePath {
                            prefix,
                            attrs: (*attrs).clone(),
                            best: false,
                            // The Adj-RIB-Out keeps no send time; GoBGP shows the time of the query too.
                            age: now,
                            neighbor: None,
                            source_asn: self.config.asn,
                            source_id: None,
                            is_from_external: false,
                            filtered: false,
                            stale: false,
                            path_id: 0,
                            local_path_id: 0,
                            uuid: Vec::new(),
                        }],
                    })
                    .collect();
                return Ok(filter_destinations(dests, &query.prefixes));
            }
        }
        let rib = self.speaker.loc_rib(family).await.map_err(speaker_error)?;
        let peers = self.speaker.neighbors().await.map_err(speaker_error)?;
        let uuids = self
            .originated
            .lock()
            .map_err(|_| ApiError::Internal("poisoned".into()))?
            .clone();
        let mut dests: Vec<Destination> = rib
            .iter()
            .map(|(prefix, routes)| Destination {
                prefix: *prefix,
                paths: routes
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let mut p = self.route_path(*prefix, r, i == 0, &peers);
                        if r.source == PathSource::Local {
                            p.uuid = uuids
                                .iter()
                                .find(|(_, n)| *n == prefix)
                                .map(|(u, _)| u.clone())
                                .unwrap_or_default();
                        }
                        p
                    })
                    .collect(),
            })
            .collect();
        dests.sort_by_key(|d| (d.prefix.network(), d.prefix.prefix_len()));
        Ok(filter_destinations(dests, &query.prefixes))
    }

    async fn add_path(&self, path: NewPath) -> Result<Vec<u8>, ApiError> {
        let prefix = path.prefix;
        self.speaker
            .originate(prefix, path.attrs)
            .await
            .map_err(speaker_error)?;
        let n = {
            let mut next = self
                .next_uuid
                .lock()
                .map_err(|_| ApiError::Internal("poisoned".into()))?;
            *next += 1;
            *next
        };
        let mut uuid = vec![0u8; 8];
        uuid.extend_from_slice(&n.to_be_bytes());
        let mut m = self
            .originated
            .lock()
            .map_err(|_| ApiError::Internal("poisoned".into()))?;
        m.retain(|_, p| *p != prefix);
        m.insert(uuid.clone(), prefix);
        Ok(uuid)
    }

    async fn delete_path(&self, deletion: PathDeletion) -> Result<(), ApiError> {
        let prefixes: Vec<ipnet::IpNet> = {
            let mut m = self
                .originated
                .lock()
                .map_err(|_| ApiError::Internal("poisoned".into()))?;
            match deletion {
                PathDeletion::Uuid(u) => m.remove(&u).into_iter().collect(),
                PathDeletion::Path(p) => {
                    m.retain(|_, q| *q != p.prefix);
                    vec![p.prefix]
                }
                PathDeletion::AllOfFamily(afi) => {
                    let v: Vec<_> = m
                        .values()
                        .copied()
                        .filter(|p| super::afi_of(p.addr()) == afi)
                        .collect();
                    m.retain(|_, p| super::afi_of(p.addr()) != afi);
                    v
                }
            }
        };
        for p in prefixes {
            self.speaker.withdraw(p).await.map_err(speaker_error)?;
        }
        Ok(())
    }

    async fn add_peer(&self, c: PeerConfig) -> Result<(), ApiError> {
        if c.local_asn.is_some_and(|a| a != self.config.asn) {
            return Err(ApiError::Unsupported("a per-neighbour local AS".into()));
        }
        let mut n = Neighbor::new(&self.config, c.address, c.peer_asn);
        n.session.fsm.passive = c.passive;
        if let Some(h) = c.hold_time {
            n.session.fsm.hold_time = h;
        }
        if let Some(r) = c.connect_retry {
            n.session.fsm.connect_retry_time = Duration::from_secs(u64::from(r));
        }
        if let Some(port) = c.remote_port {
            n.session.remote_port = port;
        }
        if !c.families.is_empty() {
            n.session.fsm.families = c.families.iter().map(|a| (*a, Safi::Unicast)).collect();
        }
        n.session.md5_key = c.auth_password.map(String::into_bytes);
        if let Some(ttl) = c.multihop_ttl {
            n.session.ttl = TtlMode::Multihop(ttl);
        }
        n.rib.route_reflector_client = c.route_reflector_client;
        let id = n.id();
        self.speaker.add_peer(n).await.map_err(speaker_error)?;
        if c.admin_down {
            // Stopped before its first connection attempt can finish (the session task handles commands in order).
            self.speaker
                .set_peer_enabled(id, false)
                .await
                .map_err(speaker_error)?;
        }
        Ok(())
    }

    async fn delete_peer(&self, address: IpAddr) -> Result<(), ApiError> {
        self.speaker
            .remove_peer(PeerId::new(address))
            .await
            .map_err(speaker_error)
    }

    async fn enable_peer(&self, address: IpAddr) -> Result<(), ApiError> {
        self.speaker
            .set_peer_enabled(PeerId::new(address), true)
            .await
            .map_err(speaker_error)
    }

    /// The shutdown communication (RFC 8203) is not sent: the session's Cease carries no data.
    async fn disable_peer(&self, address: IpAddr, _communication: String) -> Result<(), ApiError> {
        self.speaker
            .set_peer_enabled(PeerId::new(address), false)
            .await
            .map_err(speaker_error)
    }

    async fn reset_peer(&self, address: Option<IpAddr>, kind: ResetKind) -> Result<(), ApiError> {
        let soft = !matches!(kind, ResetKind::Hard { .. });
        let targets: Vec<IpAddr> = match address {
            Some(a) => vec![a],
            None => self
                .speaker
                .neighbors()
                .await
                .map_err(speaker_error)?
                .iter()
                .map(|n| n.id.addr)
                .collect(),
        };
        for a in targets {
            // The speaker's soft reset does both directions (ROUTE-REFRESH in, full resend out).
            self.speaker
                .reset_peer(PeerId::new(a), soft)
                .await
                .map_err(speaker_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_capabilities_map_to_the_api_view() {
        use packet::Capability as P;
        let gr = P::GracefulRestart {
            restarting: true,
            restart_time: 90,
            families: vec![(Afi::Ipv6, Safi::Unicast, true)],
        };
        assert_eq!(
            api_capability(&gr),
            Some(Capability::GracefulRestart {
                flags: 0x8,
                restart_time: 90,
                families: vec![(Afi::Ipv6, true)],
            })
        );
        let enh = P::ExtendedNextHop(vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]);
        assert_eq!(
            api_capability(&enh),
            Some(Capability::ExtendedNexthop(vec![(Afi::Ipv4, Afi::Ipv6)]))
        );
        let unknown = |code, value: &[u8]| P::Unknown {
            code,
            value: value.to_vec(),
        };
        assert_eq!(
            api_capability(&unknown(70, &[])),
            Some(Capability::EnhancedRouteRefresh)
        );
        // LLGR: IPv6 unicast kept, an IPv4 multicast (SAFI 2) tuple skipped; 24-bit stale time.
        assert_eq!(
            api_capability(&unknown(
                71,
                &[0, 2, 1, 0x80, 0, 0x0e, 0x10, 0, 1, 2, 0, 0, 0, 1]
            )),
            Some(Capability::LongLivedGracefulRestart(vec![(
                Afi::Ipv6,
                0x80,
                3600
            )]))
        );
        assert_eq!(
            api_capability(&unknown(73, b"\x02r1\x00")),
            Some(Capability::Fqdn {
                host_name: "r1".into(),
                domain_name: String::new(),
            })
        );
        // Malformed hostname or LLGR values are left out, never shown as unknown (gobgp would misread them).
        assert_eq!(api_capability(&unknown(73, b"\x05r1")), None);
        assert_eq!(api_capability(&unknown(71, &[0, 2, 1])), None);
        // GR naming only a family bgpd does not speak (IPv4 multicast): its unicast part (none) is shown.
        assert_eq!(
            api_capability(&unknown(64, &[0x80, 0x78, 0, 1, 2, 0x80])),
            Some(Capability::GracefulRestart {
                flags: 0x8,
                restart_time: 120,
                families: vec![],
            })
        );
        assert_eq!(
            api_capability(&unknown(200, &[7])),
            Some(Capability::Unknown {
                code: 200,
                value: vec![7],
            })
        );
    }
}
