//! Path attributes (RFC 4271 section 5 and the RFCs that add to it), decoded.

use std::net::{IpAddr, Ipv4Addr};

/// ORIGIN (type code 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Origin {
    #[default]
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// One AS_PATH segment (type code 2); ASNs are always 4-octet inside bgpd (RFC 6793).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AsPathSegment {
    Sequence(Vec<u32>),
    Set(Vec<u32>),
}

/// A standard community (RFC 1997), as its 32-bit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

/// The attributes a path carries. NLRI and next hop of MP_REACH/MP_UNREACH live in [`crate::packet::UpdateMsg`];
/// `next_hop` here is the resolved next hop of this path for its family (NEXT_HOP for IPv4 in the classic
/// encoding, the MP_REACH next hop otherwise; an IPv6 next hop on an IPv4 route only via RFC 8950).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct PathAttributes {
    pub origin: Origin,
    pub as_path: Vec<AsPathSegment>,
    pub next_hop: Option<IpAddr>,
    /// IPv6 link-local next hop, when the MP_REACH next hop carried one (32-octet form).
    pub link_local_next_hop: Option<std::net::Ipv6Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<Community>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// Optional transitive attributes bgpd does not interpret, kept to pass on: (flags, type code, value).
    pub unknown: Vec<(u8, u8, Vec<u8>)>,
}
