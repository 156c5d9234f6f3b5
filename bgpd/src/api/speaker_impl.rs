//! [`ApiBackend`] for the running [`Speaker`]: what the speaker's embedding API exposes, mapped to GoBGP's view.
//!
//! The speaker API has no Adj-RIB-In/-Out queries, no per-message counters and no administrative
//! enable/disable yet: those requests answer [`ApiError::Unsupported`] (UNIMPLEMENTED on the wire) rather than
//! empty or invented data.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::backend::{
    AdminState, ApiBackend, ApiError, Capability, Destination, FamilyState, GlobalInfo, NewPath,
    PathDeletion, PathQuery, PeerConfig, PeerInfo, PeerTimers, ResetKind, RoutePath, SessionState,
    TableKind, filter_destinations,
};
use crate::fsm::State;
use crate::packet::{Afi, Safi};
use crate::rib::{PathSource, PeerId, Route};
use crate::session::TtlMode;
use crate::speaker::{Neighbor, NeighborState, Speaker, SpeakerConfig, SpeakerError};

/// The speaker behind the API, with what the API must remember itself: the speaker's settings, when it started
/// (paths carry no wall-clock age yet, so they show the time since then), and the handles of added paths.
pub struct SpeakerBackend {
    speaker: Speaker,
    config: SpeakerConfig,
    started: SystemTime,
    originated: Mutex<HashMap<Vec<u8>, ipnet::IpNet>>,
    next_uuid: Mutex<u64>,
}

impl SpeakerBackend {
    pub fn new(speaker: Speaker, config: SpeakerConfig) -> SpeakerBackend {
        SpeakerBackend {
            speaker,
            config,
            started: SystemTime::now(),
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

fn peer_info(n: &NeighborState, local_asn: u32) -> PeerInfo {
    let neg = n.negotiated.as_ref();
    let mut families: Vec<FamilyState> = Vec::new();
    for ((afi, _), count) in &n.accepted {
        let count = count.to_owned() as u64;
        families.push(FamilyState {
            afi: *afi,
            enabled: true,
            received: count,
            accepted: count,
            advertised: 0,
            max_prefixes: None,
        });
    }
    // Capabilities both sides agreed on, shown as advertised and received.
    let mut caps: Vec<Capability> = neg
        .map(|g| {
            g.families
                .iter()
                .map(|(afi, _)| Capability::MultiProtocol(*afi))
                .collect()
        })
        .unwrap_or_default();
    if neg.is_some_and(|g| g.route_refresh) {
        caps.push(Capability::RouteRefresh);
    }
    if neg.is_some_and(|g| g.four_octet_as) {
        caps.push(Capability::FourOctetAs(n.remote_asn));
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
        admin_state: AdminState::Up,
        uptime: n.established_since.map(wall_clock),
        downtime: None,
        flops: n.flaps,
        timers: PeerTimers {
            negotiated_hold_time: hold,
            negotiated_keepalive_interval: keepalive,
            ..Default::default()
        },
        sent: Default::default(),
        received: Default::default(),
        families,
        route_reflector_client: false,
        cluster_id: None,
        passive: false,
        multihop_ttl: None,
        local_address: None,
        local_port: 0,
        remote_port: 179,
        local_capabilities: caps.clone(),
        remote_capabilities: caps,
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
            age: self.started + Duration::from_secs(u64::from(r.learned_at)),
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
        match query.table {
            TableKind::Global => {}
            TableKind::AdjIn(_) | TableKind::AdjOut(_) => {
                return Err(ApiError::Unsupported(
                    "adj-in/adj-out tables of the speaker".into(),
                ));
            }
        }
        let rib = self
            .speaker
            .loc_rib((query.afi, Safi::Unicast))
            .await
            .map_err(speaker_error)?;
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
        if c.admin_down {
            return Err(ApiError::Unsupported(
                "adding a neighbour administratively down".into(),
            ));
        }
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
        self.speaker.add_peer(n).await.map_err(speaker_error)
    }

    async fn delete_peer(&self, address: IpAddr) -> Result<(), ApiError> {
        self.speaker
            .remove_peer(PeerId::new(address))
            .await
            .map_err(speaker_error)
    }

    async fn enable_peer(&self, _address: IpAddr) -> Result<(), ApiError> {
        Err(ApiError::Unsupported(
            "enable/disable of a neighbour".into(),
        ))
    }

    async fn disable_peer(&self, _address: IpAddr, _communication: String) -> Result<(), ApiError> {
        Err(ApiError::Unsupported(
            "enable/disable of a neighbour".into(),
        ))
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
