//! IANA registries used by BGP, as enums (AFI, SAFI, attribute types, capability codes).

/// Address Family Identifier (IANA "Address Family Numbers").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    Ipv4 = 1,
    Ipv6 = 2,
}

impl Afi {
    /// The AFI for a wire value bgpd handles, `None` for any other family.
    pub fn from_u16(v: u16) -> Option<Afi> {
        match v {
            1 => Some(Afi::Ipv4),
            2 => Some(Afi::Ipv6),
            _ => None,
        }
    }

    /// Maximum prefix length of this family, in bits.
    pub fn max_prefix_len(self) -> u8 {
        match self {
            Afi::Ipv4 => 32,
            Afi::Ipv6 => 128,
        }
    }
}

/// Subsequent Address Family Identifier (IANA "SAFI Values").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Safi {
    Unicast = 1,
}

impl Safi {
    /// The SAFI for a wire value bgpd handles, `None` for any other.
    pub fn from_u8(v: u8) -> Option<Safi> {
        match v {
            1 => Some(Safi::Unicast),
            _ => None,
        }
    }
}

/// The key of every per-family table: (AFI, SAFI).
pub type Family = (Afi, Safi);

/// A set of the families bgpd knows, for per-family negotiated state (add-path, extended next hop);
/// a bit set because it is looked up once per NLRI block on the decode path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FamilySet(u8);

impl FamilySet {
    fn bit(family: Family) -> u8 {
        match family {
            (Afi::Ipv4, Safi::Unicast) => 1,
            (Afi::Ipv6, Safi::Unicast) => 2,
        }
    }

    /// The empty set.
    pub const fn empty() -> Self {
        FamilySet(0)
    }

    /// Adds `family`.
    pub fn insert(&mut self, family: Family) {
        self.0 |= Self::bit(family);
    }

    /// Whether `family` is in the set.
    pub fn contains(&self, family: Family) -> bool {
        self.0 & Self::bit(family) != 0
    }
}

impl FromIterator<Family> for FamilySet {
    fn from_iter<I: IntoIterator<Item = Family>>(iter: I) -> Self {
        let mut s = FamilySet::empty();
        for f in iter {
            s.insert(f);
        }
        s
    }
}

/// BGP message types (RFC 4271 section 4.1, RFC 2918).
pub mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Path attribute type codes (IANA "BGP Path Attributes").
pub mod attr_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
}

/// Capability codes (IANA "Capability Codes").
pub mod capability_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
    pub const ADD_PATH: u8 = 69;
}

/// AS_TRANS (RFC 6793): the 2-octet stand-in for an ASN above 65535.
pub const AS_TRANS: u16 = 23456;
