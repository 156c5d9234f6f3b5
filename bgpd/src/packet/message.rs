//! The four RFC 4271 messages plus ROUTE-REFRESH (RFC 2918), as bgpd's own structs, and their codec.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};
use ipnet::IpNet;

use super::attribute::PathAttributes;
use super::error::{AttributeError, DecodeError, EncodeError, ErrorAction, HeaderError, OpenError};
use super::iana::{Afi, Family, FamilySet, Safi, capability_code as cap, msg_type};

/// Length of the fixed header: marker (16), length (2), type (1).
pub const HEADER_LEN: usize = 19;
/// Largest message without RFC 8654 extended messages.
pub const MAX_MESSAGE_LEN: usize = 4096;

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
    GracefulRestart {
        restarting: bool,
        restart_time: u16,
        families: Vec<(Afi, Safi, bool)>,
    },
    /// RFC 6793 (code 65).
    FourOctetAs(u32),
    /// RFC 7911 (code 69): per family, send/receive mode (1 receive, 2 send, 3 both).
    AddPath(Vec<(Afi, Safi, u8)>),
    /// Anything else: kept, ignored (RFC 5492 says unknown capabilities are ignored). Also a known code whose
    /// value names a family bgpd does not speak, so it is still passed on intact.
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
///
/// RFC 7606 outcome: a decoded UPDATE whose errors allow the session to stay up comes back `Ok` with
/// `errors` listing them. On treat-as-withdraw the decoder has already moved every announced prefix into
/// `withdrawn` (with its path id) and set `attributes` to `None`, so the RIB just applies the message;
/// on attribute-discard the attribute is simply absent. Errors that reset the session are `Err`.
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
    /// RFC 7911 path identifiers of `withdrawn`, index-aligned; empty when no family of the message uses
    /// add-path (0 stands for "no path id" of a family without it).
    pub withdrawn_path_ids: Vec<u32>,
    /// RFC 7911 path identifiers of `nlri`, index-aligned; empty when no family of the message uses add-path.
    pub nlri_path_ids: Vec<u32>,
    /// Errors recovered from per RFC 7606 (treat-as-withdraw, attribute-discard); empty for a clean UPDATE.
    pub errors: Vec<AttributeError>,
}

impl UpdateMsg {
    /// True when RFC 7606 treat-as-withdraw was applied: every prefix of the message is in `withdrawn`.
    pub fn treated_as_withdraw(&self) -> bool {
        self.errors
            .iter()
            .any(|e| e.action == ErrorAction::TreatAsWithdraw)
    }
}

/// NOTIFICATION (type 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationMsg {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// A BGP message.
// UPDATE is nearly every message on a session; boxing it would add an allocation to each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(OpenMsg),
    Update(UpdateMsg),
    Notification(NotificationMsg),
    Keepalive,
    /// ROUTE-REFRESH (type 5, RFC 2918).
    RouteRefresh {
        afi: Afi,
        safi: Safi,
    },
}

/// What the session negotiated that changes how the peer's messages are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeCxt {
    /// Both sides sent the four-octet AS capability: AS_PATH and AGGREGATOR carry 4-octet ASNs (RFC 6793).
    pub four_octet_as: bool,
    /// Families whose NLRI the peer sends with path identifiers (we advertised receive, it advertised send).
    pub add_path: FamilySet,
    /// Families whose MP_REACH may carry an IPv6 next hop for IPv4 NLRI (RFC 8950, we advertised it).
    pub extended_next_hop: FamilySet,
}

/// What the session negotiated that changes how our messages to the peer are written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodeCxt {
    /// Both sides sent the four-octet AS capability; otherwise AS4_PATH/AS4_AGGREGATOR are added (RFC 6793).
    pub four_octet_as: bool,
    /// Families for which we send path identifiers (we advertised send, the peer advertised receive).
    pub add_path: FamilySet,
    /// Families for which the peer accepts an IPv6 next hop on IPv4 NLRI (RFC 8950).
    pub extended_next_hop: FamilySet,
}

impl OpenMsg {
    fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// The add-path mode (RFC 7911 section 4: 1 receive, 2 send, 3 both) this OPEN advertises for `family`.
    fn add_path_mode(&self, family: Family) -> u8 {
        self.capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::AddPath(v) => v
                    .iter()
                    .find(|(a, s, _)| (*a, *s) == family)
                    .map(|(_, _, m)| *m),
                _ => None,
            })
            .fold(0, |acc, m| acc | m)
    }

    /// Whether this OPEN advertises an IPv6 next hop for `family` (RFC 8950 section 3).
    fn extended_next_hop(&self, family: Family) -> bool {
        self.capabilities.iter().any(|c| match c {
            Capability::ExtendedNextHop(v) => v
                .iter()
                .any(|(a, s, nh)| (*a, *s) == family && *nh == Afi::Ipv6),
            _ => false,
        })
    }

    /// The real ASN of the sender: the four-octet AS capability when present, else My Autonomous System.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(self.my_as as u32)
    }
}

/// The codec contexts of a session once both OPENs are known (`local` sent, `remote` received).
/// - four-octet AS: both sent the capability (RFC 6793 section 3);
/// - add-path: we read path ids for a family when we offered receive and the peer offered send, and write
///   them when we offered send and the peer receive (RFC 7911 section 4);
/// - extended next hop: we accept it on what we advertised, and send it where the peer advertised it
///   (RFC 8950 section 3).
pub fn negotiate(local: &OpenMsg, remote: &OpenMsg) -> (DecodeCxt, EncodeCxt) {
    let four = local.four_octet_as().is_some() && remote.four_octet_as().is_some();
    let families = [(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)];
    let (mut rx, mut tx, mut enh_rx, mut enh_tx) = (
        FamilySet::empty(),
        FamilySet::empty(),
        FamilySet::empty(),
        FamilySet::empty(),
    );
    for f in families {
        let (l, r) = (local.add_path_mode(f), remote.add_path_mode(f));
        if l & 1 != 0 && r & 2 != 0 {
            rx.insert(f);
        }
        if l & 2 != 0 && r & 1 != 0 {
            tx.insert(f);
        }
        if local.extended_next_hop(f) {
            enh_rx.insert(f);
        }
        if remote.extended_next_hop(f) {
            enh_tx.insert(f);
        }
    }
    (
        DecodeCxt {
            four_octet_as: four,
            add_path: rx,
            extended_next_hop: enh_rx,
        },
        EncodeCxt {
            four_octet_as: four,
            add_path: tx,
            extended_next_hop: enh_tx,
        },
    )
}

/// Checks the header at the start of `buf` (RFC 4271 section 6.1) and returns the length of the message it
/// starts, once the whole message is in `buf`; `Ok(None)` while more octets are needed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < HEADER_LEN {
        // Check the marker octets already there, so garbage is refused without waiting for 19 octets.
        if buf.iter().take(16).any(|&b| b != 0xff) {
            return Err(HeaderError::ConnectionNotSynchronized.into());
        }
        return Ok(None);
    }
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(HeaderError::ConnectionNotSynchronized.into());
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    if (len as usize) < HEADER_LEN || len as usize > MAX_MESSAGE_LEN {
        return Err(HeaderError::BadMessageLength(len).into());
    }
    Ok((buf.len() >= len as usize).then_some(len as usize))
}

fn put_header(buf: &mut BytesMut, typ: u8) -> usize {
    let start = buf.len();
    buf.put_slice(&[0xff; 16]);
    buf.put_u16(0);
    buf.put_u8(typ);
    start
}

/// Fills in the length of the message that starts at `start`, or undoes it when too long.
fn finish(buf: &mut BytesMut, start: usize) -> Result<(), EncodeError> {
    let len = buf.len() - start;
    if len > MAX_MESSAGE_LEN {
        buf.truncate(start);
        return Err(EncodeError::MessageTooLong(len));
    }
    buf[start + 16..start + 18].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(())
}

impl Message {
    /// Appends this message, header included, to `buf`. On error `buf` is left as it was.
    pub fn encode(&self, cx: &EncodeCxt, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let typ = match self {
            Message::Open(_) => msg_type::OPEN,
            Message::Update(_) => msg_type::UPDATE,
            Message::Notification(_) => msg_type::NOTIFICATION,
            Message::Keepalive => msg_type::KEEPALIVE,
            Message::RouteRefresh { .. } => msg_type::ROUTE_REFRESH,
        };
        let start = put_header(buf, typ);
        let r = match self {
            Message::Open(o) => encode_open(o, buf),
            Message::Update(u) => super::update::encode(u, cx, buf),
            Message::Notification(n) => {
                buf.put_u8(n.code);
                buf.put_u8(n.subcode);
                buf.put_slice(&n.data);
                Ok(())
            }
            Message::Keepalive => Ok(()),
            Message::RouteRefresh { afi, safi } => {
                buf.put_u16(*afi as u16);
                buf.put_u8(0); // RFC 7313 message subtype: normal route refresh
                buf.put_u8(*safi as u8);
                Ok(())
            }
        };
        if let Err(e) = r {
            buf.truncate(start);
            return Err(e);
        }
        finish(buf, start)
    }

    /// Decodes one whole message (header included), as delimited by [`frame_len`].
    pub fn decode(frame: &[u8], cx: &DecodeCxt) -> Result<Message, DecodeError> {
        let len = match frame_len(frame)? {
            Some(l) => l,
            // Shorter than its own length field: the length is wrong for what was handed over.
            None if frame.len() < HEADER_LEN => {
                return Err(HeaderError::BadMessageLength(frame.len() as u16).into());
            }
            None => {
                return Err(HeaderError::BadMessageLength(u16::from_be_bytes([
                    frame[16], frame[17],
                ]))
                .into());
            }
        };
        let frame = &frame[..len];
        let typ = frame[18];
        let body = &frame[HEADER_LEN..];
        let bad_len = || DecodeError::from(HeaderError::BadMessageLength(len as u16));
        // Minimum lengths per type, RFC 4271 section 6.1.
        match typ {
            msg_type::OPEN => {
                if len < 29 {
                    return Err(bad_len());
                }
                decode_open(body).map(Message::Open)
            }
            msg_type::UPDATE => {
                if len < 23 {
                    return Err(bad_len());
                }
                Ok(Message::Update(super::update::decode(body, cx)?))
            }
            msg_type::NOTIFICATION => {
                if len < 21 {
                    return Err(bad_len());
                }
                Ok(Message::Notification(NotificationMsg {
                    code: body[0],
                    subcode: body[1],
                    data: body[2..].to_vec(),
                }))
            }
            msg_type::KEEPALIVE => {
                if len != HEADER_LEN {
                    return Err(bad_len());
                }
                Ok(Message::Keepalive)
            }
            msg_type::ROUTE_REFRESH => {
                if len != 23 {
                    return Err(DecodeError::RouteRefreshLength(frame.to_vec()));
                }
                let afi = u16::from_be_bytes([body[0], body[1]]);
                let safi = body[3];
                match (Afi::from_u16(afi), Safi::from_u8(safi)) {
                    (Some(afi), Some(safi)) => Ok(Message::RouteRefresh { afi, safi }),
                    _ => Err(DecodeError::RouteRefreshFamily { afi, safi }),
                }
            }
            t => Err(HeaderError::BadMessageType(t).into()),
        }
    }
}

fn family(b: &[u8]) -> Option<Family> {
    // AFI (2 octets) then SAFI (1 octet), the layout of every capability that lists families.
    Some((
        Afi::from_u16(u16::from_be_bytes([b[0], b[1]]))?,
        Safi::from_u8(b[2])?,
    ))
}

/// Parses one capability value; `Ok(None)` keeps it as [`Capability::Unknown`].
fn decode_capability(code: u8, v: &[u8]) -> Result<Option<Capability>, OpenError> {
    let malformed = OpenError::Malformed;
    Ok(match code {
        cap::MULTIPROTOCOL => {
            if v.len() != 4 {
                return Err(malformed("multiprotocol capability length"));
            }
            family(&[v[0], v[1], v[3]]).map(|(afi, safi)| Capability::MultiProtocol { afi, safi })
        }
        cap::ROUTE_REFRESH => {
            if !v.is_empty() {
                return Err(malformed("route refresh capability length"));
            }
            Some(Capability::RouteRefresh)
        }
        cap::EXTENDED_NEXT_HOP => {
            if !v.len().is_multiple_of(6) {
                return Err(malformed("extended next hop capability length"));
            }
            v.chunks_exact(6)
                .map(|c| {
                    let afi = Afi::from_u16(u16::from_be_bytes([c[0], c[1]]))?;
                    let safi = Safi::from_u8(u16::from_be_bytes([c[2], c[3]]).try_into().ok()?)?;
                    Some((afi, safi, Afi::from_u16(u16::from_be_bytes([c[4], c[5]]))?))
                })
                .collect::<Option<Vec<_>>>()
                .map(Capability::ExtendedNextHop)
        }
        cap::GRACEFUL_RESTART => {
            if v.len() < 2 || !(v.len() - 2).is_multiple_of(4) {
                return Err(malformed("graceful restart capability length"));
            }
            let hdr = u16::from_be_bytes([v[0], v[1]]);
            v[2..]
                .chunks_exact(4)
                .map(|c| family(c).map(|(a, s)| (a, s, c[3] & 0x80 != 0)))
                .collect::<Option<Vec<_>>>()
                .map(|families| Capability::GracefulRestart {
                    restarting: hdr & 0x8000 != 0,
                    restart_time: hdr & 0x0fff,
                    families,
                })
        }
        cap::FOUR_OCTET_AS => {
            if v.len() != 4 {
                return Err(malformed("four-octet AS capability length"));
            }
            Some(Capability::FourOctetAs(u32::from_be_bytes([
                v[0], v[1], v[2], v[3],
            ])))
        }
        cap::ADD_PATH => {
            if !v.len().is_multiple_of(4) {
                return Err(malformed("add-path capability length"));
            }
            v.chunks_exact(4)
                .map(|c| family(c).map(|(a, s)| (a, s, c[3])))
                .collect::<Option<Vec<_>>>()
                .map(Capability::AddPath)
        }
        _ => None,
    })
}

fn decode_open(b: &[u8]) -> Result<OpenMsg, DecodeError> {
    let version = b[0];
    if version != 4 {
        return Err(OpenError::UnsupportedVersion(version).into());
    }
    let my_as = u16::from_be_bytes([b[1], b[2]]);
    let hold_time = u16::from_be_bytes([b[3], b[4]]);
    // RFC 4271 section 6.2: a hold time of 1 or 2 seconds MUST be rejected.
    if hold_time == 1 || hold_time == 2 {
        return Err(OpenError::UnacceptableHoldTime(hold_time).into());
    }
    let bgp_identifier = Ipv4Addr::new(b[5], b[6], b[7], b[8]);
    if bgp_identifier.is_unspecified() {
        return Err(OpenError::BadBgpIdentifier.into());
    }
    let opt_len = b[9] as usize;
    let mut params = &b[10..];
    if params.len() != opt_len {
        return Err(
            OpenError::Malformed("optional parameters length does not match the message").into(),
        );
    }
    let mut capabilities = Vec::new();
    while !params.is_empty() {
        if params.len() < 2 {
            return Err(OpenError::Malformed("truncated optional parameter").into());
        }
        let (ptype, plen) = (params[0], params[1] as usize);
        let Some(mut value) = params.get(2..2 + plen) else {
            return Err(OpenError::Malformed("optional parameter overruns the message").into());
        };
        params = &params[2 + plen..];
        // RFC 5492 section 4: only Capabilities (2) is defined; anything else is unsupported.
        if ptype != 2 {
            return Err(OpenError::UnsupportedOptionalParameter(ptype).into());
        }
        while !value.is_empty() {
            if value.len() < 2 {
                return Err(OpenError::Malformed("truncated capability").into());
            }
            let (code, clen) = (value[0], value[1] as usize);
            let Some(cv) = value.get(2..2 + clen) else {
                return Err(OpenError::Malformed("capability overruns its parameter").into());
            };
            let c = decode_capability(code, cv)?.unwrap_or_else(|| Capability::Unknown {
                code,
                value: cv.to_vec(),
            });
            capabilities.push(c);
            value = &value[2 + clen..];
        }
    }
    Ok(OpenMsg {
        version,
        my_as,
        hold_time,
        bgp_identifier,
        capabilities,
    })
}

fn encode_capability(c: &Capability, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    let code = match c {
        Capability::MultiProtocol { afi, safi } => {
            out.extend_from_slice(&(*afi as u16).to_be_bytes());
            out.extend_from_slice(&[0, *safi as u8]);
            cap::MULTIPROTOCOL
        }
        Capability::RouteRefresh => cap::ROUTE_REFRESH,
        Capability::ExtendedNextHop(v) => {
            for (afi, safi, nh) in v {
                out.extend_from_slice(&(*afi as u16).to_be_bytes());
                out.extend_from_slice(&(*safi as u16).to_be_bytes());
                out.extend_from_slice(&(*nh as u16).to_be_bytes());
            }
            cap::EXTENDED_NEXT_HOP
        }
        Capability::GracefulRestart {
            restarting,
            restart_time,
            families,
        } => {
            let hdr = ((*restarting as u16) << 15) | (restart_time & 0x0fff);
            out.extend_from_slice(&hdr.to_be_bytes());
            for (afi, safi, fwd) in families {
                out.extend_from_slice(&(*afi as u16).to_be_bytes());
                out.extend_from_slice(&[*safi as u8, if *fwd { 0x80 } else { 0 }]);
            }
            cap::GRACEFUL_RESTART
        }
        Capability::FourOctetAs(asn) => {
            out.extend_from_slice(&asn.to_be_bytes());
            cap::FOUR_OCTET_AS
        }
        Capability::AddPath(v) => {
            for (afi, safi, mode) in v {
                out.extend_from_slice(&(*afi as u16).to_be_bytes());
                out.extend_from_slice(&[*safi as u8, *mode]);
            }
            cap::ADD_PATH
        }
        Capability::Unknown { code, value } => {
            out.extend_from_slice(value);
            *code
        }
    };
    let len = out.len() - start - 2;
    out[start] = code;
    out[start + 1] = u8::try_from(len).map_err(|_| EncodeError::CapabilityTooLong(code))?;
    Ok(())
}

fn encode_open(o: &OpenMsg, buf: &mut BytesMut) -> Result<(), EncodeError> {
    buf.put_u8(o.version);
    buf.put_u16(o.my_as);
    buf.put_u16(o.hold_time);
    buf.put_slice(&o.bgp_identifier.octets());
    // All capabilities in one Capabilities parameter (RFC 5492 allows one or several).
    let mut caps = Vec::new();
    for c in &o.capabilities {
        encode_capability(c, &mut caps)?;
    }
    if caps.is_empty() {
        buf.put_u8(0);
        return Ok(());
    }
    let plen = u8::try_from(caps.len()).map_err(|_| EncodeError::OptionalParametersTooLong)?;
    let olen = u8::try_from(caps.len() + 2).map_err(|_| EncodeError::OptionalParametersTooLong)?;
    buf.put_u8(olen);
    buf.put_u8(2);
    buf.put_u8(plen);
    buf.put_slice(&caps);
    Ok(())
}
