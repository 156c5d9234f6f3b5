//! IANA registries used by BGP, as enums (AFI, SAFI).

/// Address Family Identifier (IANA "Address Family Numbers").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    Ipv4 = 1,
    Ipv6 = 2,
}

/// Subsequent Address Family Identifier (IANA "SAFI Values").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Safi {
    Unicast = 1,
}

/// The key of every per-family table: (AFI, SAFI).
pub type Family = (Afi, Safi);
