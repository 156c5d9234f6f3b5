//! NLRI prefixes on the wire (RFC 4271 section 4.3, RFC 4760 section 5, RFC 7911 path identifiers).

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::BufMut;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::iana::Afi;

/// Why an NLRI block could not be parsed (the caller knows which NOTIFICATION that is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NlriError {
    /// A prefix longer than the family allows.
    BadPrefixLength,
    /// The block ends inside a prefix or path identifier.
    Truncated,
}

/// Appends the prefixes of `b` to `out`; with `add_path`, each is preceded by a 4-octet path identifier that
/// goes to `ids`, padded with 0 for earlier prefixes that had none so the two stay index-aligned.
/// Host bits past the prefix length are cleared (RFC 4271: trailing bits are irrelevant).
pub(crate) fn decode(
    mut b: &[u8],
    afi: Afi,
    add_path: bool,
    out: &mut Vec<IpNet>,
    ids: &mut Vec<u32>,
) -> Result<(), NlriError> {
    if add_path && ids.len() < out.len() {
        ids.resize(out.len(), 0);
    }
    let max = afi.max_prefix_len();
    while !b.is_empty() {
        if add_path {
            if b.len() < 4 {
                return Err(NlriError::Truncated);
            }
            ids.push(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            b = &b[4..];
            if b.is_empty() {
                return Err(NlriError::Truncated);
            }
        }
        let len = b[0];
        if len > max {
            return Err(NlriError::BadPrefixLength);
        }
        let n = (len as usize).div_ceil(8);
        let Some(bytes) = b.get(1..1 + n) else {
            return Err(NlriError::Truncated);
        };
        let net = match afi {
            Afi::Ipv4 => {
                let mut a = [0u8; 4];
                a[..n].copy_from_slice(bytes);
                let mask = u32::MAX.checked_shl(32 - len as u32).unwrap_or(0);
                let addr = Ipv4Addr::from(u32::from_be_bytes(a) & mask);
                IpNet::V4(Ipv4Net::new(addr, len).map_err(|_| NlriError::BadPrefixLength)?)
            }
            Afi::Ipv6 => {
                let mut a = [0u8; 16];
                a[..n].copy_from_slice(bytes);
                let mask = u128::MAX.checked_shl(128 - len as u32).unwrap_or(0);
                let addr = Ipv6Addr::from(u128::from_be_bytes(a) & mask);
                IpNet::V6(Ipv6Net::new(addr, len).map_err(|_| NlriError::BadPrefixLength)?)
            }
        };
        out.push(net);
        b = &b[1 + n..];
    }
    Ok(())
}

/// Writes one prefix (and its path identifier when `path_id` is given).
pub(crate) fn encode(buf: &mut impl BufMut, net: &IpNet, path_id: Option<u32>) {
    if let Some(id) = path_id {
        buf.put_u32(id);
    }
    let len = net.prefix_len();
    buf.put_u8(len);
    let n = (len as usize).div_ceil(8);
    match net {
        IpNet::V4(v) => buf.put_slice(&v.network().octets()[..n]),
        IpNet::V6(v) => buf.put_slice(&v.network().octets()[..n]),
    }
}
