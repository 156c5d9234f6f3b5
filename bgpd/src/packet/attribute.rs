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

impl Origin {
    /// The ORIGIN for a wire value, `None` for an undefined one (RFC 7606 section 7.1).
    pub fn from_u8(v: u8) -> Option<Origin> {
        match v {
            0 => Some(Origin::Igp),
            1 => Some(Origin::Egp),
            2 => Some(Origin::Incomplete),
            _ => None,
        }
    }
}

/// One AS_PATH segment (type code 2); ASNs are always 4-octet inside bgpd (RFC 6793).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AsPathSegment {
    /// AS_SEQUENCE (segment type 2).
    Sequence(Vec<u32>),
    /// AS_SET (segment type 1).
    Set(Vec<u32>),
    /// AS_CONFED_SEQUENCE (segment type 3, RFC 5065).
    ConfedSequence(Vec<u32>),
    /// AS_CONFED_SET (segment type 4, RFC 5065).
    ConfedSet(Vec<u32>),
}

impl AsPathSegment {
    pub(crate) fn type_code(&self) -> u8 {
        match self {
            AsPathSegment::Set(_) => 1,
            AsPathSegment::Sequence(_) => 2,
            AsPathSegment::ConfedSequence(_) => 3,
            AsPathSegment::ConfedSet(_) => 4,
        }
    }

    /// The ASNs of the segment, whatever its type.
    pub fn asns(&self) -> &[u32] {
        match self {
            AsPathSegment::Sequence(v)
            | AsPathSegment::Set(v)
            | AsPathSegment::ConfedSequence(v)
            | AsPathSegment::ConfedSet(v) => v,
        }
    }

    fn with_asns(type_code: u8, asns: Vec<u32>) -> Option<AsPathSegment> {
        Some(match type_code {
            1 => AsPathSegment::Set(asns),
            2 => AsPathSegment::Sequence(asns),
            3 => AsPathSegment::ConfedSequence(asns),
            4 => AsPathSegment::ConfedSet(asns),
            _ => return None,
        })
    }

    /// This segment's contribution to the path length as RFC 4271 section 9.1.2.2 (and RFC 6793 section 4.2.3)
    /// count it: an AS_SET counts one, confederation segments count nothing.
    pub fn path_len(&self) -> usize {
        match self {
            AsPathSegment::Sequence(v) => v.len(),
            AsPathSegment::Set(_) => 1,
            AsPathSegment::ConfedSequence(_) | AsPathSegment::ConfedSet(_) => 0,
        }
    }
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
    /// AS_PATH with 4-octet ASNs; from a 2-octet peer already merged with AS4_PATH (RFC 6793 section 4.2.3).
    pub as_path: Vec<AsPathSegment>,
    pub next_hop: Option<IpAddr>,
    /// IPv6 link-local next hop, when the MP_REACH next hop carried one (32-octet form).
    pub link_local_next_hop: Option<std::net::Ipv6Addr>,
    /// The classic NEXT_HOP (type 3) of the IPv4 NLRI field, set only when the same UPDATE also carries an
    /// MP_REACH_NLRI (whose next hop is then `next_hop`). Mixed UPDATEs are legal (RFC 4760) but rare.
    pub classic_next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    /// AGGREGATOR (type 7), ASN 4-octet; from a 2-octet peer already merged with AS4_AGGREGATOR.
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<Community>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// Optional transitive attributes bgpd does not interpret, kept to pass on: (flags, type code, value).
    pub unknown: Vec<(u8, u8, Vec<u8>)>,
}

/// Attribute flag bits (RFC 4271 section 4.3).
pub mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Parses an AS_PATH or AS4_PATH value with `asn_len`-octet ASNs; `None` when malformed in one of the ways
/// RFC 7606 section 7.2 lists (unknown segment type, zero-length segment, overrun).
pub(crate) fn parse_as_path(mut v: &[u8], asn_len: usize) -> Option<Vec<AsPathSegment>> {
    let mut segs = Vec::with_capacity(1);
    while !v.is_empty() {
        if v.len() < 2 {
            return None;
        }
        let (typ, count) = (v[0], v[1] as usize);
        if count == 0 {
            return None;
        }
        let body = v.get(2..2 + count * asn_len)?;
        let asns = body
            .chunks_exact(asn_len)
            .map(|c| {
                if asn_len == 4 {
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                } else {
                    u16::from_be_bytes([c[0], c[1]]) as u32
                }
            })
            .collect();
        segs.push(AsPathSegment::with_asns(typ, asns)?);
        v = &v[2 + count * asn_len..];
    }
    Some(segs)
}

/// Writes an AS_PATH value; segments longer than 255 ASNs are split (the count is one octet). With
/// `asn_len` 2, ASNs above 65535 become AS_TRANS (RFC 6793 section 4.2.2).
pub(crate) fn write_as_path(out: &mut Vec<u8>, path: &[AsPathSegment], asn_len: usize) {
    for seg in path {
        for chunk in seg.asns().chunks(255) {
            out.push(seg.type_code());
            out.push(chunk.len() as u8);
            for &asn in chunk {
                if asn_len == 4 {
                    out.extend_from_slice(&asn.to_be_bytes());
                } else {
                    let a = u16::try_from(asn).unwrap_or(super::iana::AS_TRANS);
                    out.extend_from_slice(&a.to_be_bytes());
                }
            }
        }
    }
}

/// Reconstructs the 4-octet path of a 2-octet peer from AS_PATH and AS4_PATH (RFC 6793 section 4.2.3): when
/// AS_PATH is shorter than AS4_PATH, AS4_PATH is ignored; otherwise the leading ASes of AS_PATH that
/// AS4_PATH lacks are kept and AS4_PATH appended.
pub fn merge_as4_path(as_path: &[AsPathSegment], as4_path: &[AsPathSegment]) -> Vec<AsPathSegment> {
    // Confederation segments in AS4_PATH are not to be there (RFC 6793 section 6); they are dropped.
    let as4: Vec<&AsPathSegment> = as4_path
        .iter()
        .filter(|s| matches!(s, AsPathSegment::Sequence(_) | AsPathSegment::Set(_)))
        .collect();
    let len2: usize = as_path.iter().map(AsPathSegment::path_len).sum();
    let len4: usize = as4.iter().map(|s| s.path_len()).sum();
    if len2 < len4 {
        return as_path.to_vec();
    }
    let mut need = len2 - len4;
    let mut out: Vec<AsPathSegment> = Vec::with_capacity(as_path.len() + as4.len());
    for seg in as_path {
        if need == 0 {
            break;
        }
        match seg {
            AsPathSegment::Sequence(v) => {
                let k = need.min(v.len());
                out.push(AsPathSegment::Sequence(v[..k].to_vec()));
                need -= k;
            }
            AsPathSegment::Set(_) => {
                out.push(seg.clone());
                need -= 1;
            }
            _ => out.push(seg.clone()),
        }
    }
    for seg in as4 {
        match (out.last_mut(), seg) {
            (Some(AsPathSegment::Sequence(prev)), AsPathSegment::Sequence(next)) => {
                prev.extend_from_slice(next)
            }
            _ => out.push(seg.clone()),
        }
    }
    out
}
