//! OPEN: building ours, validating the peer's (RFC 4271 §6.2, RFC 6793, RFC 6286), negotiating capabilities.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::packet::iana::{Afi, Family, Safi};
use crate::packet::{Capability, NotificationMsg, OpenMsg};

use super::FsmConfig;

/// The BGP version bgpd speaks.
pub const BGP_VERSION: u8 = 4;
/// AS_TRANS (RFC 6793): the 2-octet "My AS" of a speaker whose ASN does not fit in 16 bits.
pub const AS_TRANS: u16 = 23456;

/// NOTIFICATION error codes (RFC 4271 §4.5) and the subcodes bgpd sends.
pub mod code {
    /// Message Header Error.
    pub const MESSAGE_HEADER: u8 = 1;
    /// OPEN Message Error.
    pub const OPEN_MESSAGE: u8 = 2;
    /// UPDATE Message Error.
    pub const UPDATE_MESSAGE: u8 = 3;
    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Cease.
    pub const CEASE: u8 = 6;

    /// FSM error subcodes (RFC 6608).
    pub mod fsm {
        pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
        pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
        pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    }

    /// Cease subcodes (RFC 4486).
    pub mod cease {
        pub const MAX_PREFIXES: u8 = 1;
        pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
        pub const PEER_DECONFIGURED: u8 = 3;
        pub const ADMINISTRATIVE_RESET: u8 = 4;
        pub const CONNECTION_REJECTED: u8 = 5;
        pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
        pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
        pub const OUT_OF_RESOURCES: u8 = 8;
    }
}

/// Why a peer's OPEN is refused; each maps to an OPEN Message Error subcode (RFC 4271 §6.2, RFC 5492).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Subcode 1; the data carries the largest version we support.
    #[error("unsupported BGP version {0}")]
    UnsupportedVersionNumber(u8),
    /// Subcode 2.
    #[error("bad peer AS {received} (expected {expected})")]
    BadPeerAs { received: u32, expected: u32 },
    /// Subcode 3.
    #[error("bad BGP identifier {0}")]
    BadBgpIdentifier(Ipv4Addr),
    /// Subcode 4: an optional parameter other than Capabilities (detected by the codec).
    #[error("unsupported optional parameter")]
    UnsupportedOptionalParameter,
    /// Subcode 6: hold time 1 or 2 seconds.
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    /// Subcode 7 (RFC 5492): the peer lacks a capability we require; data is the capability we wanted.
    #[error("unsupported capability: no address family in common")]
    UnsupportedCapability,
}

impl OpenError {
    /// The OPEN Message Error subcode.
    pub fn subcode(&self) -> u8 {
        match self {
            OpenError::UnsupportedVersionNumber(_) => 1,
            OpenError::BadPeerAs { .. } => 2,
            OpenError::BadBgpIdentifier(_) => 3,
            OpenError::UnsupportedOptionalParameter => 4,
            OpenError::UnacceptableHoldTime(_) => 6,
            OpenError::UnsupportedCapability => 7,
        }
    }

    /// The NOTIFICATION that answers this error.
    pub fn notification(&self) -> NotificationMsg {
        let data = match self {
            // RFC 4271 §6.2: "the largest, locally-supported version number less than the version the remote
            // BGP peer bid", as a 2-octet unsigned integer.
            OpenError::UnsupportedVersionNumber(_) => u16::from(BGP_VERSION).to_be_bytes().to_vec(),
            _ => Vec::new(),
        };
        NotificationMsg {
            code: code::OPEN_MESSAGE,
            subcode: self.subcode(),
            data,
        }
    }
}

/// Graceful restart as the peer announced it (RFC 4724), kept when both sides advertised the capability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerGracefulRestart {
    /// The peer's restart time: how long to keep its routes as stale after the session drops.
    pub restart_time: u16,
    /// The R bit: the peer has restarted and expects our End-of-RIB.
    pub restarting: bool,
    /// Per family both sides have, the peer's F bit (forwarding state preserved across its restart).
    pub forwarding: BTreeMap<Family, bool>,
}

/// ADD-PATH (RFC 7911) per family, from our side's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AddPathMode {
    /// We may send several paths per prefix (we advertised send and the peer receive).
    pub send: bool,
    /// The peer may send several paths per prefix (we advertised receive and the peer send).
    pub receive: bool,
}

/// The result of the OPEN exchange: what both sides agreed on for this session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's AS (its 4-octet AS capability when present).
    pub peer_as: u32,
    /// The peer's BGP identifier.
    pub peer_id: Ipv4Addr,
    /// min(our hold time, theirs); 0 means no keepalives and no hold timer.
    pub hold_time: u16,
    /// hold_time / 3.
    pub keepalive_time: u16,
    /// Families both sides advertised (IPv4 unicast implied for a peer without Multiprotocol capabilities).
    pub families: BTreeSet<Family>,
    /// Both sides advertised the 4-octet AS capability (RFC 6793).
    pub four_octet_as: bool,
    /// Both sides advertised route refresh (RFC 2918).
    pub route_refresh: bool,
    /// (AFI, SAFI, next hop AFI) both sides advertised (RFC 8950).
    pub extended_next_hop: BTreeSet<(Afi, Safi, Afi)>,
    /// Graceful restart, when both sides advertised it.
    pub graceful_restart: Option<PeerGracefulRestart>,
    /// ADD-PATH per family, only families where something was agreed.
    pub add_path: BTreeMap<Family, AddPathMode>,
    /// Every capability of the peer's OPEN, as received (what the API reports as received).
    pub peer_capabilities: Vec<Capability>,
}

impl Negotiated {
    /// Whether routes of `family` may carry a next hop of `nexthop_afi` (its own AFI always may).
    pub fn next_hop_allowed(&self, family: Family, nexthop_afi: Afi) -> bool {
        family.0 == nexthop_afi
            || self
                .extended_next_hop
                .contains(&(family.0, family.1, nexthop_afi))
    }
}

/// Our OPEN for `config`.
pub fn build_open(config: &FsmConfig) -> OpenMsg {
    let mut capabilities: Vec<Capability> = config
        .families
        .iter()
        .map(|&(afi, safi)| Capability::MultiProtocol { afi, safi })
        .collect();
    if config.route_refresh {
        capabilities.push(Capability::RouteRefresh);
    }
    if !config.extended_next_hop.is_empty() {
        capabilities.push(Capability::ExtendedNextHop(
            config.extended_next_hop.clone(),
        ));
    }
    if let Some(gr) = &config.graceful_restart {
        capabilities.push(Capability::GracefulRestart {
            restarting: gr.restarting,
            restart_time: gr.restart_time,
            families: gr.forwarding.clone(),
        });
    }
    capabilities.push(Capability::FourOctetAs(config.local_as));
    if !config.add_path.is_empty() {
        capabilities.push(Capability::AddPath(config.add_path.clone()));
    }
    OpenMsg {
        version: BGP_VERSION,
        my_as: u16::try_from(config.local_as).unwrap_or(AS_TRANS),
        hold_time: config.hold_time,
        bgp_identifier: config.router_id,
        capabilities,
    }
}

/// Checks the peer's OPEN against `config` and negotiates; an error says which NOTIFICATION to send.
pub fn negotiate(config: &FsmConfig, open: &OpenMsg) -> Result<Negotiated, OpenError> {
    if open.version != BGP_VERSION {
        return Err(OpenError::UnsupportedVersionNumber(open.version));
    }
    let four_octet = open.capabilities.iter().find_map(|c| match c {
        Capability::FourOctetAs(asn) => Some(*asn),
        _ => None,
    });
    // RFC 6793 §4.2: a speaker with the capability is identified by it; a 2-octet speaker never sends AS_TRANS
    // as its own AS unless it really is 23456, which we then accept only if configured so.
    let peer_as = four_octet.unwrap_or(u32::from(open.my_as));
    if peer_as != config.peer_as || peer_as == 0 {
        return Err(OpenError::BadPeerAs {
            received: peer_as,
            expected: config.peer_as,
        });
    }
    if open.hold_time == 1 || open.hold_time == 2 {
        return Err(OpenError::UnacceptableHoldTime(open.hold_time));
    }
    // RFC 6286: the identifier is a non-zero 4-octet number, unique within the AS (so only iBGP must differ).
    let ibgp = config.peer_as == config.local_as;
    if open.bgp_identifier.is_unspecified() || (ibgp && open.bgp_identifier == config.router_id) {
        return Err(OpenError::BadBgpIdentifier(open.bgp_identifier));
    }

    let mut peer_families = BTreeSet::new();
    let mut peer_route_refresh = false;
    let mut peer_enh = BTreeSet::new();
    let mut peer_gr = None;
    let mut peer_add_path = BTreeMap::new();
    for cap in &open.capabilities {
        match cap {
            Capability::MultiProtocol { afi, safi } => {
                peer_families.insert((*afi, *safi));
            }
            Capability::RouteRefresh => peer_route_refresh = true,
            Capability::ExtendedNextHop(list) => peer_enh.extend(list.iter().copied()),
            Capability::GracefulRestart {
                restarting,
                restart_time,
                families,
            } => {
                peer_gr = Some((*restarting, *restart_time, families.clone()));
            }
            Capability::AddPath(list) => {
                for &(afi, safi, mode) in list {
                    peer_add_path.insert((afi, safi), mode);
                }
            }
            Capability::FourOctetAs(_) | Capability::Unknown { .. } => {}
        }
    }
    // RFC 4760 §8: a peer that advertises no Multiprotocol capability speaks IPv4 unicast only.
    if !open
        .capabilities
        .iter()
        .any(|c| matches!(c, Capability::MultiProtocol { .. }))
    {
        peer_families.insert((Afi::Ipv4, Safi::Unicast));
    }
    let families: BTreeSet<Family> = config
        .families
        .iter()
        .copied()
        .filter(|f| peer_families.contains(f))
        .collect();
    if families.is_empty() && config.require_common_family {
        return Err(OpenError::UnsupportedCapability);
    }

    let extended_next_hop = config
        .extended_next_hop
        .iter()
        .copied()
        .filter(|e| peer_enh.contains(e) && families.contains(&(e.0, e.1)))
        .collect();

    let graceful_restart = match (&config.graceful_restart, peer_gr) {
        (Some(_), Some((restarting, restart_time, peer_fams))) => Some(PeerGracefulRestart {
            restart_time,
            restarting,
            forwarding: peer_fams
                .into_iter()
                .filter(|&(afi, safi, _)| families.contains(&(afi, safi)))
                .map(|(afi, safi, f)| ((afi, safi), f))
                .collect(),
        }),
        _ => None,
    };

    let mut add_path = BTreeMap::new();
    for &(afi, safi, ours) in &config.add_path {
        let Some(&theirs) = peer_add_path.get(&(afi, safi)) else {
            continue;
        };
        if !families.contains(&(afi, safi)) {
            continue;
        }
        // Mode bits: 1 = receive, 2 = send (RFC 7911 §4).
        let mode = AddPathMode {
            send: ours & 2 != 0 && theirs & 1 != 0,
            receive: ours & 1 != 0 && theirs & 2 != 0,
        };
        if mode.send || mode.receive {
            add_path.insert((afi, safi), mode);
        }
    }

    let hold_time = config.hold_time.min(open.hold_time);
    Ok(Negotiated {
        peer_as,
        peer_id: open.bgp_identifier,
        hold_time,
        keepalive_time: hold_time / 3,
        families,
        four_octet_as: four_octet.is_some(),
        route_refresh: config.route_refresh && peer_route_refresh,
        extended_next_hop,
        graceful_restart,
        add_path,
        peer_capabilities: open.capabilities.clone(),
    })
}
