//! Conversions between the backend's Rust types and the GoBGP v3 (`apipb`) and v4 (`api`) messages.
//!
//! v3 packs every path attribute, NLRI and capability into a `google.protobuf.Any` whose type URL
//! names the GoBGP message (`type.googleapis.com/apipb.OriginAttribute`); v4 uses oneof wrappers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use ipnet::IpNet;
use prost_types::{Any, Timestamp};

use super::backend::{
    AdminState, Capability, Destination, FamilyState, GlobalInfo, MessageCounters, NewPath,
    PeerConfig, PeerInfo, PeerTimers, PrefixFilter, PrefixMatch, RoutePath, SessionState,
};
use super::proto::{v3, v4};
use crate::packet::{Afi, AsPathSegment, Community, Origin, PathAttributes};

/// A message from a client that cannot be turned into the backend's types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("invalid IP address {0:?}")]
    BadAddress(String),
    #[error("invalid prefix {0:?}")]
    BadPrefix(String),
    #[error(
        "unsupported address family afi={afi} safi={safi}: fairlead serves ipv4-unicast and ipv6-unicast"
    )]
    UnsupportedFamily { afi: i32, safi: i32 },
    #[error("cannot decode {type_url}: {reason}")]
    Decode { type_url: String, reason: String },
    #[error("unsupported path attribute {0}")]
    UnsupportedAttribute(String),
    #[error("next hop {next_hop} does not fit prefix {prefix}")]
    NextHopFamily { prefix: IpNet, next_hop: IpAddr },
}

const TYPE_URL_PREFIX: &str = "type.googleapis.com/apipb.";

/// Packs a v3 message into an `Any` under GoBGP's type URL for `name`.
fn pack(name: &str, msg: &impl prost::Message) -> Any {
    Any {
        type_url: format!("{TYPE_URL_PREFIX}{name}"),
        value: msg.encode_to_vec(),
    }
}

fn unpack<M: prost::Message + Default>(any: &Any) -> Result<M, ConvertError> {
    M::decode(any.value.as_slice()).map_err(|e| ConvertError::Decode {
        type_url: any.type_url.clone(),
        reason: e.to_string(),
    })
}

/// The GoBGP message name an `Any` carries, `None` for a foreign type URL.
fn any_name(any: &Any) -> Option<&str> {
    any.type_url.strip_prefix(TYPE_URL_PREFIX)
}

fn parse_ip(s: &str) -> Result<IpAddr, ConvertError> {
    s.parse()
        .map_err(|_| ConvertError::BadAddress(s.to_string()))
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, ConvertError> {
    s.parse()
        .map_err(|_| ConvertError::BadAddress(s.to_string()))
}

/// An optional address; GoBGP writes an unset one as "" or, for locally originated paths, "<nil>".
fn opt_ip(s: &str) -> Result<Option<IpAddr>, ConvertError> {
    if s.is_empty() || s == "<nil>" {
        Ok(None)
    } else {
        parse_ip(s).map(Some)
    }
}

fn opt_ipv4(s: &str) -> Result<Option<Ipv4Addr>, ConvertError> {
    if s.is_empty() || s == "<nil>" {
        Ok(None)
    } else {
        parse_ipv4(s).map(Some)
    }
}

fn opt_string<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn ts(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

fn from_ts(t: &Option<Timestamp>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(t).ok())
}

/// Builds a prefix from GoBGP's (address, length) pair, rejecting host bits being set as GoBGP's own parser does not.
fn make_prefix(prefix: &str, len: u32) -> Result<IpNet, ConvertError> {
    let addr = parse_ip(prefix)?;
    let len = u8::try_from(len).map_err(|_| ConvertError::BadPrefix(format!("{prefix}/{len}")))?;
    IpNet::new(addr, len)
        .map(|n| n.trunc())
        .map_err(|_| ConvertError::BadPrefix(format!("{prefix}/{len}")))
}

/// Parses a prefix filter string as the gobgp CLI sends it: `198.18.0.0/24` or a bare address.
pub fn parse_prefix_filter(s: &str, kind: PrefixMatch) -> Result<PrefixFilter, ConvertError> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(PrefixFilter {
            prefix: net.trunc(),
            kind,
            is_address: false,
        });
    }
    let addr = parse_ip(s).map_err(|_| ConvertError::BadPrefix(s.to_string()))?;
    Ok(PrefixFilter {
        prefix: IpNet::from(addr),
        kind,
        is_address: true,
    })
}

/// GoBGP's route-family number (AFI << 16 | SAFI) of a unicast family.
pub fn route_family(afi: Afi) -> u32 {
    ((afi as u32) << 16) | 1
}

fn route_family_afi(rf: u32) -> Option<Afi> {
    match rf {
        0x0001_0001 => Some(Afi::Ipv4),
        0x0002_0001 => Some(Afi::Ipv6),
        _ => None,
    }
}

fn afi_of_prefix(prefix: &IpNet) -> Afi {
    match prefix {
        IpNet::V4(_) => Afi::Ipv4,
        IpNet::V6(_) => Afi::Ipv6,
    }
}

fn check_next_hop(prefix: IpNet, next_hop: IpAddr) -> Result<(), ConvertError> {
    // An IPv6 route never gets an IPv4 next hop; an IPv4 route may have an IPv6 one (RFC 8950).
    if matches!((prefix, next_hop), (IpNet::V6(_), IpAddr::V4(_))) {
        return Err(ConvertError::NextHopFamily { prefix, next_hop });
    }
    Ok(())
}

fn origin_code(o: Origin) -> u32 {
    o as u32
}

fn origin_from(code: u32) -> Origin {
    u8::try_from(code)
        .ok()
        .and_then(Origin::from_u8)
        .unwrap_or(Origin::Incomplete)
}

fn segment_parts(seg: &AsPathSegment) -> (i32, Vec<u32>) {
    // v3 and v4 number the segment types the same way (v4 only renames them).
    (i32::from(seg_type_code(seg)), seg.asns().to_vec())
}

fn seg_type_code(seg: &AsPathSegment) -> u8 {
    match seg {
        AsPathSegment::Set(_) => 1,
        AsPathSegment::Sequence(_) => 2,
        AsPathSegment::ConfedSequence(_) => 3,
        AsPathSegment::ConfedSet(_) => 4,
    }
}

fn segment_from(kind: i32, numbers: Vec<u32>) -> AsPathSegment {
    match kind {
        1 => AsPathSegment::Set(numbers),
        3 => AsPathSegment::ConfedSequence(numbers),
        4 => AsPathSegment::ConfedSet(numbers),
        _ => AsPathSegment::Sequence(numbers),
    }
}

/// The MP_REACH next hops as GoBGP lists them: the global address, then the link-local one if any.
fn mp_next_hops(attrs: &PathAttributes) -> Vec<String> {
    let mut v: Vec<String> = attrs.next_hop.iter().map(ToString::to_string).collect();
    if let Some(ll) = attrs.link_local_next_hop {
        v.push(ll.to_string());
    }
    v
}

fn set_mp_next_hops(attrs: &mut PathAttributes, hops: &[String]) -> Result<(), ConvertError> {
    if let Some(first) = hops.first() {
        attrs.next_hop = Some(parse_ip(first)?);
    }
    if let Some(second) = hops.get(1) {
        attrs.link_local_next_hop = Some(
            second
                .parse::<Ipv6Addr>()
                .map_err(|_| ConvertError::BadAddress(second.clone()))?,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// v3 (apipb)
// ---------------------------------------------------------------------------------------------------------------

/// v3 `Family` of a unicast AFI.
pub fn family_to_v3(afi: Afi) -> v3::Family {
    v3::Family {
        afi: afi as i32,
        safi: v3::family::Safi::Unicast as i32,
    }
}

/// The unicast AFI of a v3 `Family`.
pub fn family_from_v3(f: &v3::Family) -> Result<Afi, ConvertError> {
    match (f.afi, f.safi) {
        (1, 1) => Ok(Afi::Ipv4),
        (2, 1) => Ok(Afi::Ipv6),
        (afi, safi) => Err(ConvertError::UnsupportedFamily { afi, safi }),
    }
}

fn nlri_to_v3(prefix: &IpNet) -> Any {
    pack(
        "IPAddressPrefix",
        &v3::IpAddressPrefix {
            prefix_len: u32::from(prefix.prefix_len()),
            prefix: prefix.network().to_string(),
        },
    )
}

fn nlri_from_v3(any: &Any) -> Result<IpNet, ConvertError> {
    match any_name(any) {
        Some("IPAddressPrefix") => {
            let p: v3::IpAddressPrefix = unpack(any)?;
            make_prefix(&p.prefix, p.prefix_len)
        }
        _ => Err(ConvertError::UnsupportedAttribute(any.type_url.clone())),
    }
}

/// A path's attributes as GoBGP lists them, in type-code order. IPv4 routes with an IPv4 next hop carry
/// NEXT_HOP; every other route carries MP_REACH_NLRI with its NLRI and next hops.
pub fn attrs_to_v3(prefix: &IpNet, a: &PathAttributes) -> Vec<Any> {
    let mut out = vec![pack(
        "OriginAttribute",
        &v3::OriginAttribute {
            origin: origin_code(a.origin),
        },
    )];
    let segments = a
        .as_path
        .iter()
        .map(|s| {
            let (kind, numbers) = segment_parts(s);
            v3::AsSegment {
                r#type: kind,
                numbers,
            }
        })
        .collect();
    out.push(pack("AsPathAttribute", &v3::AsPathAttribute { segments }));
    let classic = matches!((prefix, a.next_hop), (IpNet::V4(_), Some(IpAddr::V4(_))));
    if classic {
        out.push(pack(
            "NextHopAttribute",
            &v3::NextHopAttribute {
                next_hop: opt_string(&a.next_hop),
            },
        ));
    }
    if let Some(med) = a.med {
        out.push(pack(
            "MultiExitDiscAttribute",
            &v3::MultiExitDiscAttribute { med },
        ));
    }
    if let Some(local_pref) = a.local_pref {
        out.push(pack(
            "LocalPrefAttribute",
            &v3::LocalPrefAttribute { local_pref },
        ));
    }
    if a.atomic_aggregate {
        out.push(pack(
            "AtomicAggregateAttribute",
            &v3::AtomicAggregateAttribute {},
        ));
    }
    if let Some((asn, addr)) = a.aggregator {
        out.push(pack(
            "AggregatorAttribute",
            &v3::AggregatorAttribute {
                asn,
                address: addr.to_string(),
            },
        ));
    }
    if !a.communities.is_empty() {
        let communities = a.communities.iter().map(|c| c.0).collect();
        out.push(pack(
            "CommunitiesAttribute",
            &v3::CommunitiesAttribute { communities },
        ));
    }
    if let Some(id) = a.originator_id {
        out.push(pack(
            "OriginatorIdAttribute",
            &v3::OriginatorIdAttribute { id: id.to_string() },
        ));
    }
    if !a.cluster_list.is_empty() {
        let ids = a.cluster_list.iter().map(ToString::to_string).collect();
        out.push(pack(
            "ClusterListAttribute",
            &v3::ClusterListAttribute { ids },
        ));
    }
    if !classic {
        out.push(pack(
            "MpReachNLRIAttribute",
            &v3::MpReachNlriAttribute {
                family: Some(family_to_v3(afi_of_prefix(prefix))),
                next_hops: mp_next_hops(a),
                nlris: vec![nlri_to_v3(prefix)],
            },
        ));
    }
    out
}

/// The prefix (from `nlri` or MP_REACH) and attributes of a v3 path.
pub fn attrs_from_v3(
    nlri: Option<&Any>,
    pattrs: &[Any],
) -> Result<(IpNet, PathAttributes), ConvertError> {
    let mut a = PathAttributes::default();
    let mut prefix = nlri.map(nlri_from_v3).transpose()?;
    for any in pattrs {
        match any_name(any) {
            Some("OriginAttribute") => {
                a.origin = origin_from(unpack::<v3::OriginAttribute>(any)?.origin)
            }
            Some("AsPathAttribute") => {
                a.as_path = unpack::<v3::AsPathAttribute>(any)?
                    .segments
                    .into_iter()
                    .map(|s| segment_from(s.r#type, s.numbers))
                    .collect();
            }
            Some("NextHopAttribute") => {
                a.next_hop = Some(parse_ip(&unpack::<v3::NextHopAttribute>(any)?.next_hop)?);
            }
            Some("MultiExitDiscAttribute") => {
                a.med = Some(unpack::<v3::MultiExitDiscAttribute>(any)?.med)
            }
            Some("LocalPrefAttribute") => {
                a.local_pref = Some(unpack::<v3::LocalPrefAttribute>(any)?.local_pref)
            }
            Some("AtomicAggregateAttribute") => a.atomic_aggregate = true,
            Some("AggregatorAttribute") => {
                let ag: v3::AggregatorAttribute = unpack(any)?;
                a.aggregator = Some((ag.asn, parse_ipv4(&ag.address)?));
            }
            Some("CommunitiesAttribute") => {
                a.communities = unpack::<v3::CommunitiesAttribute>(any)?
                    .communities
                    .into_iter()
                    .map(Community)
                    .collect();
            }
            Some("OriginatorIdAttribute") => {
                a.originator_id = Some(parse_ipv4(&unpack::<v3::OriginatorIdAttribute>(any)?.id)?);
            }
            Some("ClusterListAttribute") => {
                a.cluster_list = unpack::<v3::ClusterListAttribute>(any)?
                    .ids
                    .iter()
                    .map(|s| parse_ipv4(s))
                    .collect::<Result<_, _>>()?;
            }
            Some("MpReachNLRIAttribute") => {
                let mp: v3::MpReachNlriAttribute = unpack(any)?;
                if let Some(f) = &mp.family {
                    family_from_v3(f)?;
                }
                set_mp_next_hops(&mut a, &mp.next_hops)?;
                if prefix.is_none() {
                    prefix = mp.nlris.first().map(nlri_from_v3).transpose()?;
                }
            }
            _ => return Err(ConvertError::UnsupportedAttribute(any.type_url.clone())),
        }
    }
    let prefix = prefix.ok_or(ConvertError::Missing("nlri"))?;
    if let Some(nh) = a.next_hop {
        check_next_hop(prefix, nh)?;
    }
    Ok((prefix, a))
}

/// A v3 `Path` of a table path.
pub fn path_to_v3(p: &RoutePath) -> v3::Path {
    v3::Path {
        nlri: Some(nlri_to_v3(&p.prefix)),
        pattrs: attrs_to_v3(&p.prefix, &p.attrs),
        age: Some(ts(p.age)),
        best: p.best,
        is_withdraw: false,
        validation: None,
        no_implicit_withdraw: false,
        family: Some(family_to_v3(afi_of_prefix(&p.prefix))),
        source_asn: p.source_asn,
        source_id: opt_string(&p.source_id),
        filtered: p.filtered,
        stale: p.stale,
        is_from_external: p.is_from_external,
        neighbor_ip: opt_string(&p.neighbor),
        uuid: p.uuid.clone(),
        is_nexthop_invalid: false,
        identifier: p.path_id,
        local_identifier: p.local_path_id,
    }
}

/// A table path from a v3 `Path` (what the CLI reads back).
pub fn path_from_v3(p: &v3::Path) -> Result<RoutePath, ConvertError> {
    let (prefix, attrs) = attrs_from_v3(p.nlri.as_ref(), &p.pattrs)?;
    Ok(RoutePath {
        prefix,
        attrs,
        best: p.best,
        age: from_ts(&p.age).unwrap_or(SystemTime::UNIX_EPOCH),
        neighbor: opt_ip(&p.neighbor_ip)?,
        source_asn: p.source_asn,
        source_id: opt_ipv4(&p.source_id)?,
        is_from_external: p.is_from_external,
        filtered: p.filtered,
        stale: p.stale,
        path_id: p.identifier,
        local_path_id: p.local_identifier,
        uuid: p.uuid.clone(),
    })
}

/// A path to originate from a v3 `AddPath`/`DeletePath` request's `Path`.
pub fn new_path_from_v3(p: &v3::Path) -> Result<NewPath, ConvertError> {
    let (prefix, attrs) = attrs_from_v3(p.nlri.as_ref(), &p.pattrs)?;
    if let Some(f) = &p.family
        && family_from_v3(f)? != afi_of_prefix(&prefix)
    {
        return Err(ConvertError::BadPrefix(prefix.to_string()));
    }
    Ok(NewPath { prefix, attrs })
}

/// A v3 `Destination`.
pub fn destination_to_v3(d: &Destination) -> v3::Destination {
    v3::Destination {
        prefix: d.prefix.to_string(),
        paths: d.paths.iter().map(path_to_v3).collect(),
    }
}

/// A destination from a v3 `Destination`.
pub fn destination_from_v3(d: &v3::Destination) -> Result<Destination, ConvertError> {
    let prefix: IpNet = d
        .prefix
        .parse()
        .map_err(|_| ConvertError::BadPrefix(d.prefix.clone()))?;
    Ok(Destination {
        prefix,
        paths: d.paths.iter().map(path_from_v3).collect::<Result<_, _>>()?,
    })
}

/// v3 `Global`.
pub fn global_to_v3(g: &GlobalInfo) -> v3::Global {
    v3::Global {
        asn: g.asn,
        router_id: g.router_id.to_string(),
        listen_port: g.listen_port.map_or(-1, i32::from),
        listen_addresses: g.listen_addresses.iter().map(ToString::to_string).collect(),
        families: g.families.iter().map(|a| route_family(*a)).collect(),
        use_multiple_paths: g.use_multiple_paths,
    }
}

/// Global settings from a v3 `Global`.
pub fn global_from_v3(g: &v3::Global) -> Result<GlobalInfo, ConvertError> {
    Ok(GlobalInfo {
        asn: g.asn,
        router_id: parse_ipv4(&g.router_id)?,
        listen_port: u16::try_from(g.listen_port).ok(),
        listen_addresses: g
            .listen_addresses
            .iter()
            .map(|s| parse_ip(s))
            .collect::<Result<_, _>>()?,
        families: g
            .families
            .iter()
            .filter_map(|rf| route_family_afi(*rf))
            .collect(),
        use_multiple_paths: g.use_multiple_paths,
    })
}

fn session_state_v3(s: SessionState) -> v3::peer_state::SessionState {
    use v3::peer_state::SessionState as S;
    match s {
        SessionState::Idle => S::Idle,
        SessionState::Connect => S::Connect,
        SessionState::Active => S::Active,
        SessionState::OpenSent => S::Opensent,
        SessionState::OpenConfirm => S::Openconfirm,
        SessionState::Established => S::Established,
    }
}

fn session_state_from_v3(s: i32) -> SessionState {
    use v3::peer_state::SessionState as S;
    match S::try_from(s).unwrap_or(S::Unknown) {
        S::Connect => SessionState::Connect,
        S::Active => SessionState::Active,
        S::Opensent => SessionState::OpenSent,
        S::Openconfirm => SessionState::OpenConfirm,
        S::Established => SessionState::Established,
        S::Idle | S::Unknown => SessionState::Idle,
    }
}

fn admin_state_v3(s: AdminState) -> v3::peer_state::AdminState {
    use v3::peer_state::AdminState as A;
    match s {
        AdminState::Up => A::Up,
        AdminState::Down => A::Down,
        AdminState::PrefixLimitExceeded => A::PfxCt,
    }
}

fn admin_state_from_v3(s: i32) -> AdminState {
    use v3::peer_state::AdminState as A;
    match A::try_from(s).unwrap_or(A::Up) {
        A::Up => AdminState::Up,
        A::Down => AdminState::Down,
        A::PfxCt => AdminState::PrefixLimitExceeded,
    }
}

/// Field-by-field copies between the backend's counters and the identically shaped v3/v4 messages.
macro_rules! counters_conv {
    ($to:ident, $from:ident, $m:path) => {
        fn $to(c: &MessageCounters) -> $m {
            use $m as M;
            M {
                notification: c.notification,
                update: c.update,
                open: c.open,
                keepalive: c.keepalive,
                refresh: c.refresh,
                discarded: c.discarded,
                total: c.total,
                withdraw_update: c.withdraw_update,
                withdraw_prefix: c.withdraw_prefix,
            }
        }
        fn $from(m: &Option<$m>) -> MessageCounters {
            m.as_ref()
                .map_or_else(MessageCounters::default, |m| MessageCounters {
                    notification: m.notification,
                    update: m.update,
                    open: m.open,
                    keepalive: m.keepalive,
                    refresh: m.refresh,
                    discarded: m.discarded,
                    total: m.total,
                    withdraw_update: m.withdraw_update,
                    withdraw_prefix: m.withdraw_prefix,
                })
        }
    };
}
counters_conv!(counters_to_v3, counters_from_v3, v3::Message);
counters_conv!(counters_to_v4, counters_from_v4, v4::Message);

fn capability_to_v3(c: &Capability) -> Any {
    let fam = |afi: &Afi| Some(family_to_v3(*afi));
    match c {
        Capability::MultiProtocol(afi) => pack(
            "MultiProtocolCapability",
            &v3::MultiProtocolCapability { family: fam(afi) },
        ),
        Capability::RouteRefresh => pack("RouteRefreshCapability", &v3::RouteRefreshCapability {}),
        Capability::FourOctetAs(asn) => pack(
            "FourOctetASNCapability",
            &v3::FourOctetAsnCapability { asn: *asn },
        ),
        Capability::ExtendedNexthop(tuples) => pack(
            "ExtendedNexthopCapability",
            &v3::ExtendedNexthopCapability {
                tuples: tuples
                    .iter()
                    .map(|(nlri, nh)| v3::ExtendedNexthopCapabilityTuple {
                        nlri_family: fam(nlri),
                        // GoBGP gives the next-hop AFI as a unicast family too.
                        nexthop_family: fam(nh),
                    })
                    .collect(),
            },
        ),
        Capability::GracefulRestart {
            flags,
            restart_time,
            families,
        } => pack(
            "GracefulRestartCapability",
            &v3::GracefulRestartCapability {
                flags: u32::from(*flags),
                time: u32::from(*restart_time),
                tuples: families
                    .iter()
                    .map(|(afi, forwarding)| v3::GracefulRestartCapabilityTuple {
                        family: fam(afi),
                        // RFC 4724 §3: the F bit is the high bit of the per-family flags.
                        flags: if *forwarding { 0x80 } else { 0 },
                    })
                    .collect(),
            },
        ),
        Capability::AddPath(tuples) => pack(
            "AddPathCapability",
            &v3::AddPathCapability {
                tuples: tuples
                    .iter()
                    .map(|(afi, mode)| v3::AddPathCapabilityTuple {
                        family: fam(afi),
                        mode: i32::from(*mode),
                    })
                    .collect(),
            },
        ),
        Capability::EnhancedRouteRefresh => pack(
            "EnhancedRouteRefreshCapability",
            &v3::EnhancedRouteRefreshCapability {},
        ),
        Capability::LongLivedGracefulRestart(tuples) => pack(
            "LongLivedGracefulRestartCapability",
            &v3::LongLivedGracefulRestartCapability {
                tuples: tuples
                    .iter()
                    .map(
                        |(afi, flags, time)| v3::LongLivedGracefulRestartCapabilityTuple {
                            family: fam(afi),
                            flags: u32::from(*flags),
                            time: *time,
                        },
                    )
                    .collect(),
            },
        ),
        Capability::Fqdn {
            host_name,
            domain_name,
        } => pack(
            "FqdnCapability",
            &v3::FqdnCapability {
                host_name: host_name.clone(),
                domain_name: domain_name.clone(),
            },
        ),
        Capability::Unknown { code, value } => pack(
            "UnknownCapability",
            &v3::UnknownCapability {
                code: u32::from(*code),
                value: value.clone(),
            },
        ),
    }
}

/// Capabilities the API does not model are skipped, not refused: a CLI shows what it can. Families other
/// than IPv4/IPv6 unicast inside a capability are skipped the same way.
fn capability_from_v3(any: &Any) -> Option<Capability> {
    let fam = |f: &Option<v3::Family>| f.as_ref().and_then(|f| family_from_v3(f).ok());
    let small = |v: u32| u8::try_from(v).ok();
    Some(match any_name(any)? {
        "MultiProtocolCapability" => {
            let m: v3::MultiProtocolCapability = unpack(any).ok()?;
            Capability::MultiProtocol(fam(&m.family)?)
        }
        "RouteRefreshCapability" => Capability::RouteRefresh,
        "FourOctetASNCapability" => {
            Capability::FourOctetAs(unpack::<v3::FourOctetAsnCapability>(any).ok()?.asn)
        }
        "ExtendedNexthopCapability" => {
            let m: v3::ExtendedNexthopCapability = unpack(any).ok()?;
            Capability::ExtendedNexthop(
                m.tuples
                    .iter()
                    .filter_map(|t| Some((fam(&t.nlri_family)?, fam(&t.nexthop_family)?)))
                    .collect(),
            )
        }
        "GracefulRestartCapability" => {
            let m: v3::GracefulRestartCapability = unpack(any).ok()?;
            Capability::GracefulRestart {
                flags: small(m.flags)?,
                restart_time: u16::try_from(m.time).ok()?,
                families: m
                    .tuples
                    .iter()
                    .filter_map(|t| Some((fam(&t.family)?, t.flags & 0x80 != 0)))
                    .collect(),
            }
        }
        "AddPathCapability" => {
            let m: v3::AddPathCapability = unpack(any).ok()?;
            Capability::AddPath(
                m.tuples
                    .iter()
                    .filter_map(|t| Some((fam(&t.family)?, u8::try_from(t.mode).ok()?)))
                    .collect(),
            )
        }
        "EnhancedRouteRefreshCapability" => Capability::EnhancedRouteRefresh,
        "LongLivedGracefulRestartCapability" => {
            let m: v3::LongLivedGracefulRestartCapability = unpack(any).ok()?;
            Capability::LongLivedGracefulRestart(
                m.tuples
                    .iter()
                    .filter_map(|t| Some((fam(&t.family)?, small(t.flags)?, t.time)))
                    .collect(),
            )
        }
        "FqdnCapability" => {
            let m: v3::FqdnCapability = unpack(any).ok()?;
            Capability::Fqdn {
                host_name: m.host_name,
                domain_name: m.domain_name,
            }
        }
        "UnknownCapability" => {
            let m: v3::UnknownCapability = unpack(any).ok()?;
            Capability::Unknown {
                code: small(m.code)?,
                value: m.value,
            }
        }
        _ => return None,
    })
}

fn peer_type(p: &PeerInfo) -> bool {
    // GoBGP calls a session internal when both ends share an AS.
    p.peer_asn != 0 && p.peer_asn == p.local_asn
}

/// v3 `Peer`. Every sub-message the gobgp CLI dereferences is present.
pub fn peer_to_v3(p: &PeerInfo) -> v3::Peer {
    let address = p.address.to_string();
    let kind = if peer_type(p) {
        v3::PeerType::Internal
    } else {
        v3::PeerType::External
    } as i32;
    v3::Peer {
        conf: Some(v3::PeerConf {
            description: p.description.clone(),
            local_asn: p.local_asn,
            neighbor_address: address.clone(),
            peer_asn: p.peer_asn,
            r#type: kind,
            admin_down: p.admin_state == AdminState::Down,
            ..Default::default()
        }),
        ebgp_multihop: Some(v3::EbgpMultihop {
            enabled: p.multihop_ttl.is_some(),
            multihop_ttl: p.multihop_ttl.map_or(0, u32::from),
        }),
        route_reflector: Some(v3::RouteReflector {
            route_reflector_client: p.route_reflector_client,
            route_reflector_cluster_id: opt_string(&p.cluster_id),
        }),
        state: Some(v3::PeerState {
            description: p.description.clone(),
            local_asn: p.local_asn,
            messages: Some(v3::Messages {
                received: Some(counters_to_v3(&p.received)),
                sent: Some(counters_to_v3(&p.sent)),
            }),
            neighbor_address: address.clone(),
            peer_asn: p.peer_asn,
            r#type: kind,
            queues: Some(v3::Queues::default()),
            session_state: session_state_v3(p.session_state) as i32,
            admin_state: admin_state_v3(p.admin_state) as i32,
            flops: p.flops,
            remote_cap: p.remote_capabilities.iter().map(capability_to_v3).collect(),
            local_cap: p.local_capabilities.iter().map(capability_to_v3).collect(),
            router_id: opt_string(&p.remote_router_id),
            ..Default::default()
        }),
        timers: Some(v3::Timers {
            config: Some(v3::TimersConfig {
                connect_retry: p.timers.connect_retry,
                hold_time: p.timers.hold_time,
                keepalive_interval: p.timers.keepalive_interval,
                minimum_advertisement_interval: p.timers.minimum_advertisement_interval,
                idle_hold_time_after_reset: 0,
            }),
            state: Some(v3::TimersState {
                connect_retry: p.timers.connect_retry,
                hold_time: p.timers.hold_time,
                keepalive_interval: p.timers.negotiated_keepalive_interval,
                minimum_advertisement_interval: p.timers.minimum_advertisement_interval,
                negotiated_hold_time: p.timers.negotiated_hold_time,
                uptime: p.uptime.map(ts),
                downtime: p.downtime.map(ts),
            }),
        }),
        transport: Some(v3::Transport {
            local_address: opt_string(&p.local_address),
            local_port: u32::from(p.local_port),
            passive_mode: p.passive,
            remote_address: address,
            remote_port: u32::from(p.remote_port),
            ..Default::default()
        }),
        route_server: Some(v3::RouteServer::default()),
        graceful_restart: Some(v3::GracefulRestart::default()),
        afi_safis: p
            .families
            .iter()
            .map(|f| v3::AfiSafi {
                config: Some(v3::AfiSafiConfig {
                    family: Some(family_to_v3(f.afi)),
                    enabled: f.enabled,
                }),
                state: Some(v3::AfiSafiState {
                    family: Some(family_to_v3(f.afi)),
                    enabled: f.enabled,
                    received: f.received,
                    accepted: f.accepted,
                    advertised: f.advertised,
                }),
                prefix_limits: f.max_prefixes.map(|max| v3::PrefixLimit {
                    family: Some(family_to_v3(f.afi)),
                    max_prefixes: max,
                    shutdown_threshold_pct: 0,
                }),
            })
            .collect(),
    }
}

/// Neighbour state from a v3 `Peer` (what the CLI reads back).
pub fn peer_from_v3(p: &v3::Peer) -> Result<PeerInfo, ConvertError> {
    let state = p.state.clone().unwrap_or_default();
    let conf = p.conf.clone().unwrap_or_default();
    let address = if state.neighbor_address.is_empty() {
        &conf.neighbor_address
    } else {
        &state.neighbor_address
    };
    let timers = p.timers.unwrap_or_default();
    let tc = timers.config.unwrap_or_default();
    let tstate = timers.state.unwrap_or_default();
    let transport = p.transport.clone().unwrap_or_default();
    let rr = p.route_reflector.clone().unwrap_or_default();
    let messages = state.messages.unwrap_or_default();
    let mut families = Vec::new();
    for afi_safi in &p.afi_safis {
        let Some(st) = &afi_safi.state else { continue };
        let Some(afi) = st.family.as_ref().and_then(|f| family_from_v3(f).ok()) else {
            continue;
        };
        families.push(FamilyState {
            afi,
            enabled: st.enabled,
            received: st.received,
            accepted: st.accepted,
            advertised: st.advertised,
            max_prefixes: afi_safi
                .prefix_limits
                .as_ref()
                .map(|l| l.max_prefixes)
                .filter(|m| *m > 0),
        });
    }
    let multihop = p.ebgp_multihop.unwrap_or_default();
    Ok(PeerInfo {
        address: parse_ip(address)?,
        peer_asn: if state.peer_asn != 0 {
            state.peer_asn
        } else {
            conf.peer_asn
        },
        local_asn: if state.local_asn != 0 {
            state.local_asn
        } else {
            conf.local_asn
        },
        description: if state.description.is_empty() {
            conf.description
        } else {
            state.description
        },
        remote_router_id: opt_ipv4(&state.router_id)?,
        session_state: session_state_from_v3(state.session_state),
        admin_state: admin_state_from_v3(state.admin_state),
        uptime: from_ts(&tstate.uptime),
        downtime: from_ts(&tstate.downtime),
        flops: state.flops,
        timers: PeerTimers {
            connect_retry: tc.connect_retry,
            hold_time: tc.hold_time,
            keepalive_interval: tc.keepalive_interval,
            minimum_advertisement_interval: tc.minimum_advertisement_interval,
            negotiated_hold_time: tstate.negotiated_hold_time,
            negotiated_keepalive_interval: tstate.keepalive_interval,
        },
        sent: counters_from_v3(&messages.sent),
        received: counters_from_v3(&messages.received),
        families,
        route_reflector_client: rr.route_reflector_client,
        cluster_id: opt_ipv4(&rr.route_reflector_cluster_id)?,
        passive: transport.passive_mode,
        multihop_ttl: multihop
            .enabled
            .then(|| u8::try_from(multihop.multihop_ttl).unwrap_or(u8::MAX)),
        local_address: opt_ip(&transport.local_address)?,
        local_port: u16::try_from(transport.local_port).unwrap_or(0),
        remote_port: u16::try_from(transport.remote_port).unwrap_or(0),
        local_capabilities: state
            .local_cap
            .iter()
            .filter_map(capability_from_v3)
            .collect(),
        remote_capabilities: state
            .remote_cap
            .iter()
            .filter_map(capability_from_v3)
            .collect(),
    })
}

fn nonzero_u16(v: u64) -> Option<u16> {
    u16::try_from(v).ok().filter(|v| *v != 0)
}

/// A neighbour to add from a v3 `AddPeer` request's `Peer`.
pub fn peer_config_from_v3(p: &v3::Peer) -> Result<PeerConfig, ConvertError> {
    let conf = p.conf.as_ref().ok_or(ConvertError::Missing("peer.conf"))?;
    let address = parse_ip(&conf.neighbor_address)?;
    let tc = p.timers.as_ref().and_then(|t| t.config).unwrap_or_default();
    let transport = p.transport.clone().unwrap_or_default();
    let rr = p.route_reflector.clone().unwrap_or_default();
    let mut families = Vec::new();
    for a in &p.afi_safis {
        if let Some(f) = a.config.as_ref().and_then(|c| c.family.as_ref()) {
            families.push(family_from_v3(f)?);
        }
    }
    Ok(PeerConfig {
        address,
        peer_asn: conf.peer_asn,
        local_asn: Some(conf.local_asn).filter(|a| *a != 0),
        description: conf.description.clone(),
        auth_password: Some(conf.auth_password.clone()).filter(|s| !s.is_empty()),
        passive: transport.passive_mode,
        route_reflector_client: rr.route_reflector_client,
        cluster_id: opt_ipv4(&rr.route_reflector_cluster_id)?,
        multihop_ttl: p
            .ebgp_multihop
            .as_ref()
            .filter(|m| m.enabled)
            .map(|m| u8::try_from(m.multihop_ttl).unwrap_or(u8::MAX)),
        hold_time: nonzero_u16(tc.hold_time),
        keepalive_interval: nonzero_u16(tc.keepalive_interval),
        connect_retry: nonzero_u16(tc.connect_retry),
        remote_port: u16::try_from(transport.remote_port)
            .ok()
            .filter(|p| *p != 0),
        families,
        admin_down: conf.admin_down,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// v4 (api)
// ---------------------------------------------------------------------------------------------------------------

/// v4 `Family` of a unicast AFI.
pub fn family_to_v4(afi: Afi) -> v4::Family {
    v4::Family {
        afi: afi as i32,
        safi: v4::family::Safi::Unicast as i32,
    }
}

/// The unicast AFI of a v4 `Family` (AFI and SAFI numbers are the IANA ones in both versions).
pub fn family_from_v4(f: &v4::Family) -> Result<Afi, ConvertError> {
    family_from_v3(&v3::Family {
        afi: f.afi,
        safi: f.safi,
    })
}

fn nlri_to_v4(prefix: &IpNet) -> v4::Nlri {
    v4::Nlri {
        nlri: Some(v4::nlri::Nlri::Prefix(v4::IpAddressPrefix {
            prefix_len: u32::from(prefix.prefix_len()),
            prefix: prefix.network().to_string(),
        })),
    }
}

fn nlri_from_v4(n: &v4::Nlri) -> Result<IpNet, ConvertError> {
    match &n.nlri {
        Some(v4::nlri::Nlri::Prefix(p)) => make_prefix(&p.prefix, p.prefix_len),
        None => Err(ConvertError::Missing("nlri")),
    }
}

fn attr(a: v4::attribute::Attr) -> v4::Attribute {
    v4::Attribute { attr: Some(a) }
}

/// A path's attributes as v4 `Attribute`s, in the same order and shape as [`attrs_to_v3`].
pub fn attrs_to_v4(prefix: &IpNet, a: &PathAttributes) -> Vec<v4::Attribute> {
    use v4::attribute::Attr;
    let mut out = vec![attr(Attr::Origin(v4::OriginAttribute {
        origin: origin_code(a.origin),
    }))];
    let segments = a
        .as_path
        .iter()
        .map(|s| {
            let (kind, numbers) = segment_parts(s);
            v4::AsSegment {
                r#type: kind,
                numbers,
            }
        })
        .collect();
    out.push(attr(Attr::AsPath(v4::AsPathAttribute { segments })));
    let classic = matches!((prefix, a.next_hop), (IpNet::V4(_), Some(IpAddr::V4(_))));
    if classic {
        out.push(attr(Attr::NextHop(v4::NextHopAttribute {
            next_hop: opt_string(&a.next_hop),
        })));
    }
    if let Some(med) = a.med {
        out.push(attr(Attr::MultiExitDisc(v4::MultiExitDiscAttribute {
            med,
        })));
    }
    if let Some(local_pref) = a.local_pref {
        out.push(attr(Attr::LocalPref(v4::LocalPrefAttribute { local_pref })));
    }
    if a.atomic_aggregate {
        out.push(attr(Attr::AtomicAggregate(v4::AtomicAggregateAttribute {})));
    }
    if let Some((asn, addr)) = a.aggregator {
        out.push(attr(Attr::Aggregator(v4::AggregatorAttribute {
            asn,
            address: addr.to_string(),
        })));
    }
    if !a.communities.is_empty() {
        let communities = a.communities.iter().map(|c| c.0).collect();
        out.push(attr(Attr::Communities(v4::CommunitiesAttribute {
            communities,
        })));
    }
    if let Some(id) = a.originator_id {
        out.push(attr(Attr::OriginatorId(v4::OriginatorIdAttribute {
            id: id.to_string(),
        })));
    }
    if !a.cluster_list.is_empty() {
        let ids = a.cluster_list.iter().map(ToString::to_string).collect();
        out.push(attr(Attr::ClusterList(v4::ClusterListAttribute { ids })));
    }
    if !classic {
        out.push(attr(Attr::MpReach(v4::MpReachNlriAttribute {
            family: Some(family_to_v4(afi_of_prefix(prefix))),
            next_hops: mp_next_hops(a),
            nlris: vec![nlri_to_v4(prefix)],
        })));
    }
    out
}

/// The prefix and attributes of a v4 path.
pub fn attrs_from_v4(
    nlri: Option<&v4::Nlri>,
    pattrs: &[v4::Attribute],
) -> Result<(IpNet, PathAttributes), ConvertError> {
    use v4::attribute::Attr;
    let mut a = PathAttributes::default();
    let mut prefix = nlri.map(nlri_from_v4).transpose()?;
    for at in pattrs {
        match &at.attr {
            Some(Attr::Origin(o)) => a.origin = origin_from(o.origin),
            Some(Attr::AsPath(p)) => {
                a.as_path = p
                    .segments
                    .iter()
                    .map(|s| segment_from(s.r#type, s.numbers.clone()))
                    .collect();
            }
            Some(Attr::NextHop(n)) => a.next_hop = Some(parse_ip(&n.next_hop)?),
            Some(Attr::MultiExitDisc(m)) => a.med = Some(m.med),
            Some(Attr::LocalPref(l)) => a.local_pref = Some(l.local_pref),
            Some(Attr::AtomicAggregate(_)) => a.atomic_aggregate = true,
            Some(Attr::Aggregator(ag)) => a.aggregator = Some((ag.asn, parse_ipv4(&ag.address)?)),
            Some(Attr::Communities(c)) => {
                a.communities = c.communities.iter().copied().map(Community).collect()
            }
            Some(Attr::OriginatorId(o)) => a.originator_id = Some(parse_ipv4(&o.id)?),
            Some(Attr::ClusterList(c)) => {
                a.cluster_list = c
                    .ids
                    .iter()
                    .map(|s| parse_ipv4(s))
                    .collect::<Result<_, _>>()?;
            }
            Some(Attr::MpReach(mp)) => {
                if let Some(f) = &mp.family {
                    family_from_v4(f)?;
                }
                set_mp_next_hops(&mut a, &mp.next_hops)?;
                if prefix.is_none() {
                    prefix = mp.nlris.first().map(nlri_from_v4).transpose()?;
                }
            }
            Some(Attr::MpUnreach(_)) => {
                return Err(ConvertError::UnsupportedAttribute("MpUnreach".into()));
            }
            None => return Err(ConvertError::Missing("attribute")),
        }
    }
    let prefix = prefix.ok_or(ConvertError::Missing("nlri"))?;
    if let Some(nh) = a.next_hop {
        check_next_hop(prefix, nh)?;
    }
    Ok((prefix, a))
}

/// A v4 `Path` of a table path.
pub fn path_to_v4(p: &RoutePath) -> v4::Path {
    v4::Path {
        nlri: Some(nlri_to_v4(&p.prefix)),
        pattrs: attrs_to_v4(&p.prefix, &p.attrs),
        age: Some(ts(p.age)),
        best: p.best,
        is_withdraw: false,
        validation: None,
        no_implicit_withdraw: false,
        family: Some(family_to_v4(afi_of_prefix(&p.prefix))),
        source_asn: p.source_asn,
        source_id: opt_string(&p.source_id),
        filtered: p.filtered,
        stale: p.stale,
        is_from_external: p.is_from_external,
        neighbor_ip: opt_string(&p.neighbor),
        uuid: p.uuid.clone(),
        is_nexthop_invalid: false,
        identifier: p.path_id,
        local_identifier: p.local_path_id,
    }
}

/// A table path from a v4 `Path`.
pub fn path_from_v4(p: &v4::Path) -> Result<RoutePath, ConvertError> {
    let (prefix, attrs) = attrs_from_v4(p.nlri.as_ref(), &p.pattrs)?;
    Ok(RoutePath {
        prefix,
        attrs,
        best: p.best,
        age: from_ts(&p.age).unwrap_or(SystemTime::UNIX_EPOCH),
        neighbor: opt_ip(&p.neighbor_ip)?,
        source_asn: p.source_asn,
        source_id: opt_ipv4(&p.source_id)?,
        is_from_external: p.is_from_external,
        filtered: p.filtered,
        stale: p.stale,
        path_id: p.identifier,
        local_path_id: p.local_identifier,
        uuid: p.uuid.clone(),
    })
}

/// A path to originate from a v4 `AddPath`/`DeletePath` request's `Path`.
pub fn new_path_from_v4(p: &v4::Path) -> Result<NewPath, ConvertError> {
    let (prefix, attrs) = attrs_from_v4(p.nlri.as_ref(), &p.pattrs)?;
    if let Some(f) = &p.family
        && family_from_v4(f)? != afi_of_prefix(&prefix)
    {
        return Err(ConvertError::BadPrefix(prefix.to_string()));
    }
    Ok(NewPath { prefix, attrs })
}

/// A v4 `Destination`.
pub fn destination_to_v4(d: &Destination) -> v4::Destination {
    v4::Destination {
        prefix: d.prefix.to_string(),
        paths: d.paths.iter().map(path_to_v4).collect(),
    }
}

/// A destination from a v4 `Destination`.
pub fn destination_from_v4(d: &v4::Destination) -> Result<Destination, ConvertError> {
    let prefix: IpNet = d
        .prefix
        .parse()
        .map_err(|_| ConvertError::BadPrefix(d.prefix.clone()))?;
    Ok(Destination {
        prefix,
        paths: d.paths.iter().map(path_from_v4).collect::<Result<_, _>>()?,
    })
}

/// v4 `Global`.
pub fn global_to_v4(g: &GlobalInfo) -> v4::Global {
    let v = global_to_v3(g);
    v4::Global {
        asn: v.asn,
        router_id: v.router_id,
        listen_port: v.listen_port,
        listen_addresses: v.listen_addresses,
        families: v.families,
        use_multiple_paths: v.use_multiple_paths,
    }
}

/// Global settings from a v4 `Global`.
pub fn global_from_v4(g: &v4::Global) -> Result<GlobalInfo, ConvertError> {
    global_from_v3(&v3::Global {
        asn: g.asn,
        router_id: g.router_id.clone(),
        listen_port: g.listen_port,
        listen_addresses: g.listen_addresses.clone(),
        families: g.families.clone(),
        use_multiple_paths: g.use_multiple_paths,
    })
}

// v4 shifted every enum by one to make 0 "unspecified"; v3's numbering plus one is v4's.
fn session_state_v4(s: SessionState) -> i32 {
    session_state_v3(s) as i32
}

fn session_state_from_v4(s: i32) -> SessionState {
    session_state_from_v3(s)
}

fn admin_state_v4(s: AdminState) -> i32 {
    admin_state_v3(s) as i32 + 1
}

fn admin_state_from_v4(s: i32) -> AdminState {
    admin_state_from_v3((s - 1).max(0))
}

/// v4 capability messages have v3's names and field numbers (only v3's `Any` became a oneof), so each is
/// carried over through its wire encoding: one mapping, [`capability_to_v3`], for both versions.
fn capability_to_v4(c: &Capability) -> Option<v4::Capability> {
    use v4::capability::Cap;
    let any = capability_to_v3(c);
    let b = any.value.as_slice();
    let cap = match any_name(&any)? {
        "MultiProtocolCapability" => Cap::MultiProtocol(prost::Message::decode(b).ok()?),
        "RouteRefreshCapability" => Cap::RouteRefresh(v4::RouteRefreshCapability {}),
        "FourOctetASNCapability" => Cap::FourOctetAsn(prost::Message::decode(b).ok()?),
        "ExtendedNexthopCapability" => Cap::ExtendedNexthop(prost::Message::decode(b).ok()?),
        "GracefulRestartCapability" => Cap::GracefulRestart(prost::Message::decode(b).ok()?),
        "AddPathCapability" => Cap::AddPath(prost::Message::decode(b).ok()?),
        "EnhancedRouteRefreshCapability" => {
            Cap::EnhancedRouteRefresh(v4::EnhancedRouteRefreshCapability {})
        }
        "LongLivedGracefulRestartCapability" => {
            Cap::LongLivedGracefulRestart(prost::Message::decode(b).ok()?)
        }
        "FqdnCapability" => Cap::Fqdn(prost::Message::decode(b).ok()?),
        "UnknownCapability" => Cap::Unknown(prost::Message::decode(b).ok()?),
        _ => return None,
    };
    Some(v4::Capability { cap: Some(cap) })
}

fn capability_from_v4(c: &v4::Capability) -> Option<Capability> {
    use prost::Message as _;
    use v4::capability::Cap;
    let (name, value) = match c.cap.as_ref()? {
        Cap::MultiProtocol(m) => ("MultiProtocolCapability", m.encode_to_vec()),
        Cap::RouteRefresh(m) => ("RouteRefreshCapability", m.encode_to_vec()),
        Cap::FourOctetAsn(m) => ("FourOctetASNCapability", m.encode_to_vec()),
        Cap::ExtendedNexthop(m) => ("ExtendedNexthopCapability", m.encode_to_vec()),
        Cap::GracefulRestart(m) => ("GracefulRestartCapability", m.encode_to_vec()),
        Cap::AddPath(m) => ("AddPathCapability", m.encode_to_vec()),
        Cap::EnhancedRouteRefresh(m) => ("EnhancedRouteRefreshCapability", m.encode_to_vec()),
        Cap::LongLivedGracefulRestart(m) => {
            ("LongLivedGracefulRestartCapability", m.encode_to_vec())
        }
        Cap::Fqdn(m) => ("FqdnCapability", m.encode_to_vec()),
        Cap::Unknown(m) => ("UnknownCapability", m.encode_to_vec()),
    };
    capability_from_v3(&Any {
        type_url: format!("{TYPE_URL_PREFIX}{name}"),
        value,
    })
}

/// v4 `Peer`, with the same content as [`peer_to_v3`].
pub fn peer_to_v4(p: &PeerInfo) -> v4::Peer {
    let address = p.address.to_string();
    let kind = if peer_type(p) {
        v4::PeerType::Internal
    } else {
        v4::PeerType::External
    } as i32;
    v4::Peer {
        conf: Some(v4::PeerConf {
            description: p.description.clone(),
            local_asn: p.local_asn,
            neighbor_address: address.clone(),
            peer_asn: p.peer_asn,
            r#type: kind,
            admin_down: p.admin_state == AdminState::Down,
            ..Default::default()
        }),
        ebgp_multihop: Some(v4::EbgpMultihop {
            enabled: p.multihop_ttl.is_some(),
            multihop_ttl: p.multihop_ttl.map_or(0, u32::from),
        }),
        route_reflector: Some(v4::RouteReflector {
            route_reflector_client: p.route_reflector_client,
            route_reflector_cluster_id: opt_string(&p.cluster_id),
        }),
        state: Some(v4::PeerState {
            description: p.description.clone(),
            local_asn: p.local_asn,
            messages: Some(v4::Messages {
                received: Some(counters_to_v4(&p.received)),
                sent: Some(counters_to_v4(&p.sent)),
            }),
            neighbor_address: address.clone(),
            peer_asn: p.peer_asn,
            r#type: kind,
            queues: Some(v4::Queues::default()),
            session_state: session_state_v4(p.session_state),
            admin_state: admin_state_v4(p.admin_state),
            flops: p.flops,
            remote_cap: p
                .remote_capabilities
                .iter()
                .filter_map(capability_to_v4)
                .collect(),
            local_cap: p
                .local_capabilities
                .iter()
                .filter_map(capability_to_v4)
                .collect(),
            router_id: opt_string(&p.remote_router_id),
            ..Default::default()
        }),
        timers: Some(v4::Timers {
            config: Some(v4::TimersConfig {
                connect_retry: p.timers.connect_retry,
                hold_time: p.timers.hold_time,
                keepalive_interval: p.timers.keepalive_interval,
                minimum_advertisement_interval: p.timers.minimum_advertisement_interval,
                idle_hold_time_after_reset: 0,
            }),
            state: Some(v4::TimersState {
                connect_retry: p.timers.connect_retry,
                hold_time: p.timers.hold_time,
                keepalive_interval: p.timers.negotiated_keepalive_interval,
                minimum_advertisement_interval: p.timers.minimum_advertisement_interval,
                negotiated_hold_time: p.timers.negotiated_hold_time,
                uptime: p.uptime.map(ts),
                downtime: p.downtime.map(ts),
            }),
        }),
        transport: Some(v4::Transport {
            local_address: opt_string(&p.local_address),
            local_port: u32::from(p.local_port),
            passive_mode: p.passive,
            remote_address: address,
            remote_port: u32::from(p.remote_port),
            ..Default::default()
        }),
        route_server: Some(v4::RouteServer::default()),
        graceful_restart: Some(v4::GracefulRestart::default()),
        afi_safis: p
            .families
            .iter()
            .map(|f| v4::AfiSafi {
                config: Some(v4::AfiSafiConfig {
                    family: Some(family_to_v4(f.afi)),
                    enabled: f.enabled,
                }),
                state: Some(v4::AfiSafiState {
                    family: Some(family_to_v4(f.afi)),
                    enabled: f.enabled,
                    received: f.received,
                    accepted: f.accepted,
                    advertised: f.advertised,
                }),
                prefix_limits: f.max_prefixes.map(|max| v4::PrefixLimit {
                    family: Some(family_to_v4(f.afi)),
                    max_prefixes: max,
                    shutdown_threshold_pct: 0,
                }),
            })
            .collect(),
    }
}

/// Neighbour state from a v4 `Peer`.
pub fn peer_from_v4(p: &v4::Peer) -> Result<PeerInfo, ConvertError> {
    let state = p.state.clone().unwrap_or_default();
    let conf = p.conf.clone().unwrap_or_default();
    let address = if state.neighbor_address.is_empty() {
        &conf.neighbor_address
    } else {
        &state.neighbor_address
    };
    let timers = p.timers.unwrap_or_default();
    let tc = timers.config.unwrap_or_default();
    let tstate = timers.state.unwrap_or_default();
    let transport = p.transport.clone().unwrap_or_default();
    let rr = p.route_reflector.clone().unwrap_or_default();
    let messages = state.messages.unwrap_or_default();
    let mut families = Vec::new();
    for afi_safi in &p.afi_safis {
        let Some(st) = &afi_safi.state else { continue };
        let Some(afi) = st.family.as_ref().and_then(|f| family_from_v4(f).ok()) else {
            continue;
        };
        families.push(FamilyState {
            afi,
            enabled: st.enabled,
            received: st.received,
            accepted: st.accepted,
            advertised: st.advertised,
            max_prefixes: afi_safi
                .prefix_limits
                .as_ref()
                .map(|l| l.max_prefixes)
                .filter(|m| *m > 0),
        });
    }
    let multihop = p.ebgp_multihop.unwrap_or_default();
    Ok(PeerInfo {
        address: parse_ip(address)?,
        peer_asn: if state.peer_asn != 0 {
            state.peer_asn
        } else {
            conf.peer_asn
        },
        local_asn: if state.local_asn != 0 {
            state.local_asn
        } else {
            conf.local_asn
        },
        description: if state.description.is_empty() {
            conf.description
        } else {
            state.description
        },
        remote_router_id: opt_ipv4(&state.router_id)?,
        session_state: session_state_from_v4(state.session_state),
        admin_state: admin_state_from_v4(state.admin_state),
        uptime: from_ts(&tstate.uptime),
        downtime: from_ts(&tstate.downtime),
        flops: state.flops,
        timers: PeerTimers {
            connect_retry: tc.connect_retry,
            hold_time: tc.hold_time,
            keepalive_interval: tc.keepalive_interval,
            minimum_advertisement_interval: tc.minimum_advertisement_interval,
            negotiated_hold_time: tstate.negotiated_hold_time,
            negotiated_keepalive_interval: tstate.keepalive_interval,
        },
        sent: counters_from_v4(&messages.sent),
        received: counters_from_v4(&messages.received),
        families,
        route_reflector_client: rr.route_reflector_client,
        cluster_id: opt_ipv4(&rr.route_reflector_cluster_id)?,
        passive: transport.passive_mode,
        multihop_ttl: multihop
            .enabled
            .then(|| u8::try_from(multihop.multihop_ttl).unwrap_or(u8::MAX)),
        local_address: opt_ip(&transport.local_address)?,
        local_port: u16::try_from(transport.local_port).unwrap_or(0),
        remote_port: u16::try_from(transport.remote_port).unwrap_or(0),
        local_capabilities: state
            .local_cap
            .iter()
            .filter_map(capability_from_v4)
            .collect(),
        remote_capabilities: state
            .remote_cap
            .iter()
            .filter_map(capability_from_v4)
            .collect(),
    })
}

/// A neighbour to add from a v4 `AddPeer` request's `Peer`.
pub fn peer_config_from_v4(p: &v4::Peer) -> Result<PeerConfig, ConvertError> {
    let conf = p.conf.as_ref().ok_or(ConvertError::Missing("peer.conf"))?;
    let address = parse_ip(&conf.neighbor_address)?;
    let tc = p.timers.as_ref().and_then(|t| t.config).unwrap_or_default();
    let transport = p.transport.clone().unwrap_or_default();
    let rr = p.route_reflector.clone().unwrap_or_default();
    let mut families = Vec::new();
    for a in &p.afi_safis {
        if let Some(f) = a.config.as_ref().and_then(|c| c.family.as_ref()) {
            families.push(family_from_v4(f)?);
        }
    }
    Ok(PeerConfig {
        address,
        peer_asn: conf.peer_asn,
        local_asn: Some(conf.local_asn).filter(|a| *a != 0),
        description: conf.description.clone(),
        auth_password: Some(conf.auth_password.clone()).filter(|s| !s.is_empty()),
        passive: transport.passive_mode,
        route_reflector_client: rr.route_reflector_client,
        cluster_id: opt_ipv4(&rr.route_reflector_cluster_id)?,
        multihop_ttl: p
            .ebgp_multihop
            .as_ref()
            .filter(|m| m.enabled)
            .map(|m| u8::try_from(m.multihop_ttl).unwrap_or(u8::MAX)),
        hold_time: nonzero_u16(tc.hold_time),
        keepalive_interval: nonzero_u16(tc.keepalive_interval),
        connect_retry: nonzero_u16(tc.connect_retry),
        remote_port: u16::try_from(transport.remote_port)
            .ok()
            .filter(|p| *p != 0),
        families,
        admin_down: conf.admin_down,
    })
}
