//! UPDATE codec (RFC 4271 section 4.3, RFC 4760, RFC 6793, RFC 7911, RFC 8950) with RFC 7606 error handling.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::IpNet;

use super::attribute::{self, AsPathSegment, Community, Origin, PathAttributes, flag};
use super::error::{AttributeError, EncodeError, ErrorAction, UpdateError, UpdateErrorKind as K};
use super::iana::{AS_TRANS, Afi, Family, Safi, attr_type as t};
use super::message::{DecodeCxt, EncodeCxt, UpdateMsg};
use super::nlri::{self, NlriError};

const V4: Family = (Afi::Ipv4, Safi::Unicast);
const V6: Family = (Afi::Ipv6, Safi::Unicast);

fn reset(kind: K, type_code: Option<u8>, data: &[u8]) -> UpdateError {
    UpdateError {
        kind,
        type_code,
        data: data.to_vec(),
    }
}

/// Expected (optional, transitive) flags of the attributes bgpd knows (RFC 4271 section 5 and each RFC).
fn expected_flags(code: u8) -> Option<(bool, bool)> {
    Some(match code {
        t::ORIGIN | t::AS_PATH | t::NEXT_HOP | t::LOCAL_PREF | t::ATOMIC_AGGREGATE => (false, true),
        t::MULTI_EXIT_DISC
        | t::ORIGINATOR_ID
        | t::CLUSTER_LIST
        | t::MP_REACH_NLRI
        | t::MP_UNREACH_NLRI => (true, false),
        t::AGGREGATOR | t::COMMUNITIES | t::AS4_PATH | t::AS4_AGGREGATOR => (true, true),
        _ => return None,
    })
}

/// What RFC 7606 section 7 says to do with a malformed instance of each known attribute; `None` means a
/// session reset (MP_REACH_NLRI / MP_UNREACH_NLRI, RFC 7606 section 7.11 and RFC 4760 section 7).
fn malformed_action(code: u8) -> Option<ErrorAction> {
    match code {
        t::ATOMIC_AGGREGATE | t::AGGREGATOR | t::AS4_PATH | t::AS4_AGGREGATOR => {
            Some(ErrorAction::AttributeDiscard)
        }
        t::MP_REACH_NLRI | t::MP_UNREACH_NLRI => None,
        _ => Some(ErrorAction::TreatAsWithdraw),
    }
}

fn u32_at(v: &[u8]) -> u32 {
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

fn ipv4_at(v: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(v[0], v[1], v[2], v[3])
}

fn ipv6_at(v: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&v[..16]);
    Ipv6Addr::from(a)
}

/// State gathered while walking the attributes of one UPDATE.
#[derive(Default)]
struct Walk {
    attrs: PathAttributes,
    errors: Vec<AttributeError>,
    seen: [u64; 4],
    count: usize,
    has_origin: bool,
    has_as_path: bool,
    classic_nh: Option<Ipv4Addr>,
    mp_reach: Option<(IpAddr, Option<Ipv6Addr>)>,
    mp_reach_seen: bool,
    mp_unreach: Option<(Family, usize)>,
    as4_path: Option<Vec<AsPathSegment>>,
    as4_aggregator: Option<(u32, Ipv4Addr)>,
}

impl Walk {
    fn soft(&mut self, type_code: u8, action: ErrorAction, kind: K) {
        self.errors.push(AttributeError {
            type_code,
            action,
            kind,
        });
    }

    /// Records the first occurrence of `code`; false when it was already there.
    fn first(&mut self, code: u8) -> bool {
        let (w, b) = ((code >> 6) as usize, code & 63);
        let dup = self.seen[w] & (1 << b) != 0;
        self.seen[w] |= 1 << b;
        !dup
    }
}

/// Decodes an UPDATE body (after the header). `Err` is a session reset; everything RFC 7606 lets the session
/// survive is applied to the returned message and listed in its `errors`.
pub(crate) fn decode(body: &[u8], cx: &DecodeCxt) -> Result<UpdateMsg, UpdateError> {
    // RFC 4271 section 6.3: lengths that overrun the message are a Malformed Attribute List.
    let wlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    if 2 + wlen + 2 > body.len() {
        return Err(reset(K::MalformedAttributeList, None, &[]));
    }
    let withdrawn_raw = &body[2..2 + wlen];
    let alen = u16::from_be_bytes([body[2 + wlen], body[3 + wlen]]) as usize;
    if 4 + wlen + alen > body.len() {
        return Err(reset(K::MalformedAttributeList, None, &[]));
    }
    let attrs_raw = &body[4 + wlen..4 + wlen + alen];
    let nlri_raw = &body[4 + wlen + alen..];

    // RFC 4271 section 6.3: a syntactically incorrect NLRI field is an Invalid Network Field; RFC 7606 section
    // 5.3 keeps that a session reset, since the prefixes cannot be known. The withdrawn routes are read alike.
    let mut u = UpdateMsg::default();
    let inf = |_: NlriError| reset(K::InvalidNetworkField, None, &[]);
    nlri::decode(
        withdrawn_raw,
        Afi::Ipv4,
        cx.add_path.contains(V4),
        &mut u.withdrawn,
        &mut u.withdrawn_path_ids,
    )
    .map_err(inf)?;
    nlri::decode(
        nlri_raw,
        Afi::Ipv4,
        cx.add_path.contains(V4),
        &mut u.nlri,
        &mut u.nlri_path_ids,
    )
    .map_err(inf)?;
    let classic_nlri = u.nlri.len();

    let mut w = Walk::default();
    let mut rest = attrs_raw;
    while !rest.is_empty() {
        let hlen = if rest[0] & flag::EXTENDED_LENGTH != 0 {
            4
        } else {
            3
        };
        let vlen = match rest.len() {
            l if l < hlen => None,
            _ if hlen == 4 => Some(u16::from_be_bytes([rest[2], rest[3]]) as usize),
            _ => Some(rest[2] as usize),
        };
        let Some(vlen) = vlen.filter(|l| hlen + l <= rest.len()) else {
            // RFC 7606 section 4: an attribute overrunning the Total Path Attribute Length is handled by
            // treat-as-withdraw; once MP_REACH/MP_UNREACH was seen, its NLRI cannot be trusted: session reset.
            if w.mp_reach_seen || w.mp_unreach.is_some() {
                return Err(reset(K::MalformedAttributeList, None, &[]));
            }
            w.soft(
                rest.get(1).copied().unwrap_or(0),
                ErrorAction::TreatAsWithdraw,
                K::AttributeLengthError,
            );
            break;
        };
        let raw = &rest[..hlen + vlen];
        let (flags, code, value) = (rest[0], rest[1], &rest[hlen..hlen + vlen]);
        rest = &rest[hlen + vlen..];
        w.count += 1;
        attribute(&mut w, &mut u, cx, flags, code, value, raw)?;
    }

    let announced = !u.nlri.is_empty();
    // RFC 7606 section 3 (d): a missing well-known mandatory attribute is treat-as-withdraw. NEXT_HOP is
    // mandatory only with classic NLRI (RFC 4760 section 3).
    if announced {
        if !w.has_origin {
            w.soft(
                t::ORIGIN,
                ErrorAction::TreatAsWithdraw,
                K::MissingWellKnownAttribute,
            );
        }
        if !w.has_as_path {
            w.soft(
                t::AS_PATH,
                ErrorAction::TreatAsWithdraw,
                K::MissingWellKnownAttribute,
            );
        }
        if classic_nlri > 0 && w.classic_nh.is_none() {
            w.soft(
                t::NEXT_HOP,
                ErrorAction::TreatAsWithdraw,
                K::MissingWellKnownAttribute,
            );
        }
    }

    // RFC 6793 section 4.2.3: a 2-octet peer's AS4_AGGREGATOR and AS4_PATH are used only when AGGREGATOR
    // (if any) carries AS_TRANS; AS4_PATH then replaces the tail of AS_PATH.
    if !cx.four_octet_as {
        let aggregator_is_trans = w
            .attrs
            .aggregator
            .is_none_or(|(asn, _)| asn == AS_TRANS as u32);
        if aggregator_is_trans {
            if let Some(a4) = w.as4_aggregator.take()
                && w.attrs.aggregator.is_some()
            {
                w.attrs.aggregator = Some(a4);
            }
            if let Some(p4) = w.as4_path.take() {
                w.attrs.as_path = attribute::merge_as4_path(&w.attrs.as_path, &p4);
            }
        }
    }

    if w.mp_reach.is_some() && classic_nlri > 0 {
        w.attrs.classic_next_hop = w.classic_nh;
    }
    w.attrs.next_hop = match w.mp_reach {
        Some((nh, ll)) => {
            w.attrs.link_local_next_hop = ll;
            Some(nh)
        }
        None => w.classic_nh.map(IpAddr::V4),
    };

    // RFC 4724 section 2: End-of-RIB is an UPDATE with nothing in it (IPv4) or with only an empty
    // MP_UNREACH_NLRI of the family.
    if body.len() == 4 {
        u.end_of_rib = Some(V4);
    } else if let Some((fam, 0)) = w.mp_unreach
        && w.count == 1
        && u.withdrawn.is_empty()
        && u.nlri.is_empty()
    {
        u.end_of_rib = Some(fam);
    }

    if w.errors
        .iter()
        .any(|e| e.action == ErrorAction::TreatAsWithdraw)
    {
        if !u.withdrawn_path_ids.is_empty() || !u.nlri_path_ids.is_empty() {
            u.withdrawn_path_ids.resize(u.withdrawn.len(), 0);
            u.nlri_path_ids.resize(u.nlri.len(), 0);
        }
        u.withdrawn.append(&mut u.nlri);
        u.withdrawn_path_ids.append(&mut u.nlri_path_ids);
    } else if !u.nlri.is_empty() {
        u.attributes = Some(w.attrs);
    }
    if !u.nlri_path_ids.is_empty() {
        u.nlri_path_ids.resize(u.nlri.len(), 0);
    }
    if !u.withdrawn_path_ids.is_empty() {
        u.withdrawn_path_ids.resize(u.withdrawn.len(), 0);
    }
    u.errors = w.errors;
    Ok(u)
}

/// Handles one attribute; `Err` only for the cases RFC 7606 still answers with a session reset.
fn attribute(
    w: &mut Walk,
    u: &mut UpdateMsg,
    cx: &DecodeCxt,
    flags: u8,
    code: u8,
    v: &[u8],
    raw: &[u8],
) -> Result<(), UpdateError> {
    let is_mp = code == t::MP_REACH_NLRI || code == t::MP_UNREACH_NLRI;
    // RFC 7606 section 3 (g): MP_REACH/MP_UNREACH twice is Malformed Attribute List; any other attribute
    // twice keeps its first occurrence.
    if !w.first(code) {
        if is_mp {
            return Err(reset(K::MalformedAttributeList, Some(code), &[]));
        }
        w.soft(
            code,
            ErrorAction::AttributeDiscard,
            K::MalformedAttributeList,
        );
        return Ok(());
    }
    let Some((opt, trans)) = expected_flags(code) else {
        // RFC 4271 section 6.3: an unrecognized well-known attribute resets the session (data: the attribute);
        // unrecognized optional transitive ones are passed on, optional non-transitive ones ignored (section 9).
        if flags & flag::OPTIONAL == 0 {
            return Err(reset(K::UnrecognizedWellKnownAttribute, Some(code), raw));
        }
        if flags & flag::TRANSITIVE != 0 {
            // Stored without the Extended Length bit: the encoder picks the length form again.
            w.attrs
                .unknown
                .push((flags & !flag::EXTENDED_LENGTH, code, v.to_vec()));
        }
        return Ok(());
    };
    // RFC 7606 section 3 (c): Optional/Transitive bits in conflict make the attribute malformed.
    let flags_ok = (flags & flag::OPTIONAL != 0) == opt && (flags & flag::TRANSITIVE != 0) == trans;
    let result = if flags_ok {
        known(w, u, cx, code, v)
    } else {
        Err(K::AttributeFlagsError)
    };
    match result {
        Ok(()) => Ok(()),
        Err(kind) => match malformed_action(code) {
            Some(action) => {
                w.soft(code, action, kind);
                Ok(())
            }
            // RFC 4760 section 7: an incorrect MP_REACH/MP_UNREACH is answered with Optional Attribute Error
            // (or, for its flags, Attribute Flags Error); the data is the attribute.
            None => Err(reset(
                if kind == K::AttributeFlagsError {
                    kind
                } else {
                    K::OptionalAttributeError
                },
                Some(code),
                raw,
            )),
        },
    }
}

/// Parses a known attribute into `w`; `Err` names what was wrong, the caller applies RFC 7606.
fn known(w: &mut Walk, u: &mut UpdateMsg, cx: &DecodeCxt, code: u8, v: &[u8]) -> Result<(), K> {
    let need = |n: usize| {
        if v.len() == n {
            Ok(())
        } else {
            Err(K::AttributeLengthError)
        }
    };
    let asn_len = if cx.four_octet_as { 4 } else { 2 };
    match code {
        t::ORIGIN => {
            need(1)?;
            w.attrs.origin = Origin::from_u8(v[0]).ok_or(K::InvalidOrigin)?;
            w.has_origin = true;
        }
        t::AS_PATH => {
            w.attrs.as_path = attribute::parse_as_path(v, asn_len).ok_or(K::MalformedAsPath)?;
            w.has_as_path = true;
        }
        t::NEXT_HOP => {
            need(4)?;
            let nh = ipv4_at(v);
            // RFC 4271 section 6.3: not a valid host address.
            if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                return Err(K::InvalidNextHop);
            }
            w.classic_nh = Some(nh);
        }
        t::MULTI_EXIT_DISC => {
            need(4)?;
            w.attrs.med = Some(u32_at(v));
        }
        t::LOCAL_PREF => {
            need(4)?;
            w.attrs.local_pref = Some(u32_at(v));
        }
        t::ATOMIC_AGGREGATE => {
            need(0)?;
            w.attrs.atomic_aggregate = true;
        }
        t::AGGREGATOR => {
            need(asn_len + 4)?;
            w.attrs.aggregator = Some(if asn_len == 4 {
                (u32_at(v), ipv4_at(&v[4..]))
            } else {
                (u16::from_be_bytes([v[0], v[1]]) as u32, ipv4_at(&v[2..]))
            });
        }
        t::COMMUNITIES => {
            // RFC 7606 section 7.8: a non-zero multiple of 4.
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return Err(K::AttributeLengthError);
            }
            w.attrs.communities = v.chunks_exact(4).map(|c| Community(u32_at(c))).collect();
        }
        t::ORIGINATOR_ID => {
            need(4)?;
            w.attrs.originator_id = Some(ipv4_at(v));
        }
        t::CLUSTER_LIST => {
            // RFC 7606 section 7.10: a non-zero multiple of 4.
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return Err(K::AttributeLengthError);
            }
            w.attrs.cluster_list = v.chunks_exact(4).map(ipv4_at).collect();
        }
        t::MP_REACH_NLRI => {
            w.mp_reach_seen = true;
            mp_reach(w, u, cx, v)?;
        }
        t::MP_UNREACH_NLRI => {
            if v.len() < 3 {
                return Err(K::AttributeLengthError);
            }
            let (afi, safi) = (u16::from_be_bytes([v[0], v[1]]), v[2]);
            let Some(fam) = Afi::from_u16(afi).zip(Safi::from_u8(safi)) else {
                // A family bgpd never negotiates: nothing of it can be withdrawn here.
                w.soft(
                    code,
                    ErrorAction::AttributeDiscard,
                    K::OptionalAttributeError,
                );
                return Ok(());
            };
            let before = u.withdrawn.len();
            nlri::decode(
                &v[3..],
                fam.0,
                cx.add_path.contains(fam),
                &mut u.withdrawn,
                &mut u.withdrawn_path_ids,
            )
            .map_err(|_| K::OptionalAttributeError)?;
            w.mp_unreach = Some((fam, u.withdrawn.len() - before));
        }
        t::AS4_PATH => {
            let p = attribute::parse_as_path(v, 4).ok_or(K::MalformedAsPath)?;
            // RFC 6793 section 4.1: between two 4-octet speakers AS4_PATH has no meaning and is dropped.
            if !cx.four_octet_as {
                w.as4_path = Some(p);
            }
        }
        t::AS4_AGGREGATOR => {
            need(8)?;
            if !cx.four_octet_as {
                w.as4_aggregator = Some((u32_at(v), ipv4_at(&v[4..])));
            }
        }
        _ => unreachable!("expected_flags lists exactly the codes handled here"),
    }
    Ok(())
}

/// MP_REACH_NLRI (RFC 4760 section 3): AFI, SAFI, next hop, reserved octet, NLRI.
fn mp_reach(w: &mut Walk, u: &mut UpdateMsg, cx: &DecodeCxt, v: &[u8]) -> Result<(), K> {
    if v.len() < 5 {
        return Err(K::AttributeLengthError);
    }
    let (afi, safi, nhlen) = (u16::from_be_bytes([v[0], v[1]]), v[2], v[3] as usize);
    let Some(fam) = Afi::from_u16(afi).zip(Safi::from_u8(safi)) else {
        w.soft(
            t::MP_REACH_NLRI,
            ErrorAction::AttributeDiscard,
            K::OptionalAttributeError,
        );
        return Ok(());
    };
    let nh = v.get(4..4 + nhlen).ok_or(K::AttributeLengthError)?;
    if v.len() < 5 + nhlen {
        return Err(K::AttributeLengthError);
    }
    // IPv6 next hop: 16 octets global, or 32 global + link-local (RFC 2545 section 3). For IPv4 NLRI
    // only when the extended next hop capability was negotiated (RFC 8950 section 3).
    let v6_ok = fam.0 == Afi::Ipv6 || cx.extended_next_hop.contains(fam);
    let next_hop = match nhlen {
        4 if fam.0 == Afi::Ipv4 => (IpAddr::V4(ipv4_at(nh)), None),
        16 if v6_ok => (IpAddr::V6(ipv6_at(nh)), None),
        32 if v6_ok => (IpAddr::V6(ipv6_at(nh)), Some(ipv6_at(&nh[16..]))),
        _ => return Err(K::InvalidNextHop),
    };
    nlri::decode(
        &v[5 + nhlen..],
        fam.0,
        cx.add_path.contains(fam),
        &mut u.nlri,
        &mut u.nlri_path_ids,
    )
    .map_err(|_| K::InvalidNetworkField)?;
    w.mp_reach = Some(next_hop);
    Ok(())
}

/// Appends one attribute: the value is written by `f` after a 4-octet header, which is then shrunk to the
/// 3-octet form when the value fits in one length octet.
fn put_attr(
    buf: &mut BytesMut,
    flags: u8,
    code: u8,
    f: impl FnOnce(&mut BytesMut),
) -> Result<(), EncodeError> {
    let start = buf.len();
    buf.put_slice(&[flags | flag::EXTENDED_LENGTH, code, 0, 0]);
    f(buf);
    let len = buf.len() - start - 4;
    if len <= 255 {
        buf[start] = flags & !flag::EXTENDED_LENGTH;
        buf[start + 2] = len as u8;
        buf.copy_within(start + 4.., start + 3);
        buf.truncate(buf.len() - 1);
    } else {
        let l = u16::try_from(len).map_err(|_| EncodeError::AttributeTooLong(code))?;
        buf[start + 2..start + 4].copy_from_slice(&l.to_be_bytes());
    }
    Ok(())
}

fn path_id(ids: &[u32], i: usize, add_path: bool) -> Option<u32> {
    add_path.then(|| ids.get(i).copied().unwrap_or(0))
}

/// Writes an UPDATE body; see [`UpdateMsg`] for how families map to the classic fields and MP attributes.
pub(crate) fn encode(u: &UpdateMsg, cx: &EncodeCxt, buf: &mut BytesMut) -> Result<(), EncodeError> {
    if let Some(fam) = u.end_of_rib {
        buf.put_u16(0);
        if fam == V4 {
            buf.put_u16(0);
        } else {
            buf.put_u16(6);
            buf.put_slice(&[flag::OPTIONAL, t::MP_UNREACH_NLRI, 3]);
            buf.put_u16(fam.0 as u16);
            buf.put_u8(fam.1 as u8);
        }
        return Ok(());
    }
    for (ids, nets) in [
        (&u.withdrawn_path_ids, &u.withdrawn),
        (&u.nlri_path_ids, &u.nlri),
    ] {
        if !ids.is_empty() && ids.len() != nets.len() {
            return Err(EncodeError::PathIdCount {
                ids: ids.len(),
                nlri: nets.len(),
            });
        }
    }
    let (ap4, ap6) = (cx.add_path.contains(V4), cx.add_path.contains(V6));

    let wstart = buf.len();
    buf.put_u16(0);
    for (i, n) in u
        .withdrawn
        .iter()
        .enumerate()
        .filter(|(_, n)| n.addr().is_ipv4())
    {
        nlri::encode(buf, n, path_id(&u.withdrawn_path_ids, i, ap4));
    }
    let wlen = (buf.len() - wstart - 2) as u16;
    buf[wstart..wstart + 2].copy_from_slice(&wlen.to_be_bytes());

    let astart = buf.len();
    buf.put_u16(0);
    let has_v6_withdrawn = u.withdrawn.iter().any(|n| n.addr().is_ipv6());
    if has_v6_withdrawn {
        put_attr(buf, flag::OPTIONAL, t::MP_UNREACH_NLRI, |b| {
            b.put_u16(Afi::Ipv6 as u16);
            b.put_u8(Safi::Unicast as u8);
            for (i, n) in u
                .withdrawn
                .iter()
                .enumerate()
                .filter(|(_, n)| n.addr().is_ipv6())
            {
                nlri::encode(b, n, path_id(&u.withdrawn_path_ids, i, ap6));
            }
        })?;
    }

    let mut classic_v4 = false;
    if !u.nlri.is_empty() {
        let a = u
            .attributes
            .as_ref()
            .ok_or(EncodeError::MissingAttributes)?;
        let has_v4 = u.nlri.iter().any(|n| n.addr().is_ipv4());
        let has_v6 = u.nlri.iter().any(|n| n.addr().is_ipv6());
        let nh4 = a.classic_next_hop.or(match a.next_hop {
            Some(IpAddr::V4(nh)) => Some(nh),
            _ => None,
        });
        // Which MP_REACH to write: IPv6 NLRI, or IPv4 NLRI with an IPv6 next hop (RFC 8950).
        let mut mp: Option<(Family, Ipv6Addr)> = None;
        if has_v6 {
            match a.next_hop {
                Some(IpAddr::V6(nh)) => mp = Some((V6, nh)),
                _ => return Err(EncodeError::NoNextHop(Afi::Ipv6)),
            }
        }
        if has_v4 {
            match (nh4, a.next_hop) {
                (Some(_), _) => classic_v4 = true,
                (None, Some(IpAddr::V6(nh))) => {
                    if has_v6 {
                        return Err(EncodeError::MixedFamilies);
                    }
                    if !cx.extended_next_hop.contains(V4) {
                        return Err(EncodeError::ExtendedNextHopNotNegotiated);
                    }
                    mp = Some((V4, nh));
                }
                _ => return Err(EncodeError::NoNextHop(Afi::Ipv4)),
            }
        }
        if let Some((fam, nh)) = mp {
            // RFC 7606 section 5.1: MP_REACH_NLRI SHOULD come first.
            put_attr(buf, flag::OPTIONAL, t::MP_REACH_NLRI, |b| {
                b.put_u16(fam.0 as u16);
                b.put_u8(fam.1 as u8);
                match a.link_local_next_hop {
                    Some(ll) => {
                        b.put_u8(32);
                        b.put_slice(&nh.octets());
                        b.put_slice(&ll.octets());
                    }
                    None => {
                        b.put_u8(16);
                        b.put_slice(&nh.octets());
                    }
                }
                b.put_u8(0);
                let is_fam = |n: &IpNet| {
                    if fam.0 == Afi::Ipv6 {
                        n.addr().is_ipv6()
                    } else {
                        n.addr().is_ipv4()
                    }
                };
                let ap = cx.add_path.contains(fam);
                for (i, n) in u.nlri.iter().enumerate().filter(|(_, n)| is_fam(n)) {
                    nlri::encode(b, n, path_id(&u.nlri_path_ids, i, ap));
                }
            })?;
        }
        encode_attributes(a, cx, if classic_v4 { nh4 } else { None }, buf)?;
    }
    let alen = u16::try_from(buf.len() - astart - 2)
        .map_err(|_| EncodeError::MessageTooLong(buf.len()))?;
    buf[astart..astart + 2].copy_from_slice(&alen.to_be_bytes());
    if classic_v4 {
        for (i, n) in u
            .nlri
            .iter()
            .enumerate()
            .filter(|(_, n)| n.addr().is_ipv4())
        {
            nlri::encode(buf, n, path_id(&u.nlri_path_ids, i, ap4));
        }
    }
    Ok(())
}

fn encode_attributes(
    a: &PathAttributes,
    cx: &EncodeCxt,
    classic_nh: Option<Ipv4Addr>,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    const WK: u8 = flag::TRANSITIVE;
    const OPT: u8 = flag::OPTIONAL;
    const OPT_T: u8 = flag::OPTIONAL | flag::TRANSITIVE;
    put_attr(buf, WK, t::ORIGIN, |b| b.put_u8(a.origin as u8))?;
    let asn_len = if cx.four_octet_as { 4 } else { 2 };
    let mut path = Vec::new();
    attribute::write_as_path(&mut path, &a.as_path, asn_len);
    put_attr(buf, WK, t::AS_PATH, |b| b.put_slice(&path))?;
    if let Some(nh) = classic_nh {
        put_attr(buf, WK, t::NEXT_HOP, |b| b.put_slice(&nh.octets()))?;
    }
    if let Some(med) = a.med {
        put_attr(buf, OPT, t::MULTI_EXIT_DISC, |b| b.put_u32(med))?;
    }
    if let Some(lp) = a.local_pref {
        put_attr(buf, WK, t::LOCAL_PREF, |b| b.put_u32(lp))?;
    }
    if a.atomic_aggregate {
        put_attr(buf, WK, t::ATOMIC_AGGREGATE, |_| {})?;
    }
    if let Some((asn, id)) = a.aggregator {
        put_attr(buf, OPT_T, t::AGGREGATOR, |b| {
            if asn_len == 4 {
                b.put_u32(asn);
            } else {
                b.put_u16(u16::try_from(asn).unwrap_or(AS_TRANS));
            }
            b.put_slice(&id.octets());
        })?;
    }
    if !a.communities.is_empty() {
        put_attr(buf, OPT_T, t::COMMUNITIES, |b| {
            a.communities.iter().for_each(|c| b.put_u32(c.0))
        })?;
    }
    if let Some(id) = a.originator_id {
        put_attr(buf, OPT, t::ORIGINATOR_ID, |b| b.put_slice(&id.octets()))?;
    }
    if !a.cluster_list.is_empty() {
        put_attr(buf, OPT, t::CLUSTER_LIST, |b| {
            a.cluster_list.iter().for_each(|c| b.put_slice(&c.octets()))
        })?;
    }
    // RFC 6793 section 4.2.2: to a 2-octet peer, ASNs that do not fit go in AS4_PATH / AS4_AGGREGATOR
    // (without confederation segments).
    if !cx.four_octet_as {
        if a.as_path
            .iter()
            .flat_map(|s| s.asns())
            .any(|&asn| asn > u16::MAX as u32)
        {
            let as4: Vec<AsPathSegment> = a
                .as_path
                .iter()
                .filter(|s| matches!(s, AsPathSegment::Sequence(_) | AsPathSegment::Set(_)))
                .cloned()
                .collect();
            let mut p = Vec::new();
            attribute::write_as_path(&mut p, &as4, 4);
            put_attr(buf, OPT_T, t::AS4_PATH, |b| b.put_slice(&p))?;
        }
        if let Some((asn, id)) = a.aggregator.filter(|(asn, _)| *asn > u16::MAX as u32) {
            put_attr(buf, OPT_T, t::AS4_AGGREGATOR, |b| {
                b.put_u32(asn);
                b.put_slice(&id.octets());
            })?;
        }
    }
    // RFC 4271 section 5: an unrecognized optional transitive attribute is passed on with Partial set.
    for (flags, code, value) in &a.unknown {
        put_attr(buf, *flags | flag::PARTIAL, *code, |b| b.put_slice(value))?;
    }
    Ok(())
}
