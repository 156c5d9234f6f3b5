//! The four RFC 4271 messages plus ROUTE-REFRESH (RFC 2918), as bgpd's own structs.

use std::net::Ipv4Addr;

use ipnet::IpNet;

use super::attribute::PathAttributes;
use super::iana::{Afi, Safi};

/// A capability advertised in OPEN (RFC 5492).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760 (code 1).
    MultiProtocol { afi: Afi, safi: Safi },
    /// RFC 2918 (code 2).
    RouteRefresh,
    /// RFC 8950 (code 5): NLRI of (afi, safi) may carry a next hop of `nexthop_afi`.
    ExtendedNextHop(Vec<(Afi, Safi, Afi)>),
    /// RFC 4724 (code 64): restart flags (R bit), restart time, per family the forwarding-state (F) bit.
    GracefulRestart { restarting: bool, restart_time: u16, families: Vec<(Afi, Safi, bool)> },
    /// RFC 6793 (code 65).
    FourOctetAs(u32),
    /// RFC 7911 (code 69): per family, send/receive mode (1 receive, 2 send, 3 both).
    AddPath(Vec<(Afi, Safi, u8)>),
    /// Anything else: kept, ignored (RFC 5492 says unknown capabilities are ignored).
    Unknown { code: u8, value: Vec<u8> },
}

/// OPEN (type 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenMsg {
    pub version: u8,
    /// The 2-octet "My Autonomous System" field (AS_TRANS 23456 when the real ASN does not fit).
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_identifier: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

/// UPDATE (type 2): withdrawals and announcements of any family, attributes decoded.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UpdateMsg {
    /// Withdrawn prefixes of every family (classic IPv4 field and MP_UNREACH_NLRI merged).
    pub withdrawn: Vec<IpNet>,
    /// Attributes shared by every prefix in `nlri`; `None` for a pure withdrawal.
    pub attributes: Option<PathAttributes>,
    /// Announced prefixes of every family (classic IPv4 field and MP_REACH_NLRI merged).
    pub nlri: Vec<IpNet>,
    /// End-of-RIB marker (RFC 4724) for this family, when the UPDATE is one.
    pub end_of_rib: Option<(Afi, Safi)>,
}

/// NOTIFICATION (type 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationMsg {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// A BGP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(OpenMsg),
    Update(UpdateMsg),
    Notification(NotificationMsg),
    Keepalive,
    /// ROUTE-REFRESH (type 5, RFC 2918).
    RouteRefresh { afi: Afi, safi: Safi },
}
