//! `-j` output, shaped like `gobgp -j` (protobuf field names for peers, GoBGP's path JSON for RIBs).

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bgpd::api::{Capability, Destination, GlobalInfo, MessageCounters, PeerInfo, RoutePath};
use bgpd::packet::{Afi, AsPathSegment, Origin};
use ipnet::IpNet;
use serde_json::{Value, json};

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn family(afi: Afi) -> Value {
    match afi {
        Afi::Ipv4 => json!({"afi": "AFI_IP", "safi": "SAFI_UNICAST"}),
        Afi::Ipv6 => json!({"afi": "AFI_IP6", "safi": "SAFI_UNICAST"}),
    }
}

fn counters(c: &MessageCounters) -> Value {
    json!({
        "notification": c.notification, "update": c.update, "open": c.open, "keepalive": c.keepalive,
        "refresh": c.refresh, "discarded": c.discarded, "total": c.total,
        "withdraw_update": c.withdraw_update, "withdraw_prefix": c.withdraw_prefix,
    })
}

fn capability(c: &Capability) -> Value {
    match c {
        Capability::MultiProtocol(afi) => json!({"multiprotocol": family(*afi)}),
        Capability::RouteRefresh => json!({"route_refresh": {}}),
        Capability::FourOctetAs(asn) => json!({"four_octet_asn": {"asn": asn}}),
        Capability::ExtendedNexthop(t) => json!({"extended_nexthop": {"tuples": t.iter()
            .map(|(n, h)| json!({"nlri_family": family(*n), "nexthop_family": family(*h)}))
            .collect::<Vec<_>>()}}),
        Capability::GracefulRestart {
            flags,
            restart_time,
            families,
        } => json!({"graceful_restart": {
            "flags": flags, "time": restart_time,
            "tuples": families.iter()
                .map(|(a, f)| json!({"family": family(*a), "flags": if *f { 0x80 } else { 0 }}))
                .collect::<Vec<_>>()}}),
        Capability::AddPath(t) => json!({"add_path": {"tuples": t.iter()
            .map(|(a, m)| json!({"family": family(*a), "mode": m}))
            .collect::<Vec<_>>()}}),
        Capability::EnhancedRouteRefresh => json!({"enhanced_route_refresh": {}}),
        Capability::LongLivedGracefulRestart(t) => {
            json!({"long_lived_graceful_restart": {"tuples": t.iter()
            .map(|(a, f, s)| json!({"family": family(*a), "flags": f, "time": s}))
            .collect::<Vec<_>>()}})
        }
        Capability::Fqdn {
            host_name,
            domain_name,
        } => json!({"fqdn": {"host_name": host_name, "domain_name": domain_name}}),
        Capability::Unknown { code, value } => json!({"unknown": {"code": code, "value": value}}),
    }
}

fn peer_value(p: &PeerInfo) -> Value {
    let state = match p.session_state {
        bgpd::api::SessionState::Idle => "IDLE",
        bgpd::api::SessionState::Connect => "CONNECT",
        bgpd::api::SessionState::Active => "ACTIVE",
        bgpd::api::SessionState::OpenSent => "OPENSENT",
        bgpd::api::SessionState::OpenConfirm => "OPENCONFIRM",
        bgpd::api::SessionState::Established => "ESTABLISHED",
    };
    let admin = match p.admin_state {
        bgpd::api::AdminState::Up => "UP",
        bgpd::api::AdminState::Down => "DOWN",
        bgpd::api::AdminState::PrefixLimitExceeded => "PFX_CT",
    };
    let ts = |t: Option<SystemTime>| t.map(|t| json!({"seconds": unix(t)}));
    json!({
        "conf": {
            "neighbor_address": p.address.to_string(), "peer_asn": p.peer_asn, "local_asn": p.local_asn,
            "description": p.description,
        },
        "state": {
            "neighbor_address": p.address.to_string(), "peer_asn": p.peer_asn, "local_asn": p.local_asn,
            "session_state": state, "admin_state": admin, "flops": p.flops,
            "router_id": p.remote_router_id.map(|i| i.to_string()),
            "messages": {"received": counters(&p.received), "sent": counters(&p.sent)},
            "local_cap": p.local_capabilities.iter().map(capability).collect::<Vec<_>>(),
            "remote_cap": p.remote_capabilities.iter().map(capability).collect::<Vec<_>>(),
        },
        "timers": {
            "config": {
                "connect_retry": p.timers.connect_retry, "hold_time": p.timers.hold_time,
                "keepalive_interval": p.timers.keepalive_interval,
            },
            "state": {
                "negotiated_hold_time": p.timers.negotiated_hold_time,
                "keepalive_interval": p.timers.negotiated_keepalive_interval,
                "uptime": ts(p.uptime), "downtime": ts(p.downtime),
            },
        },
        "transport": {
            "local_address": p.local_address.map(|a| a.to_string()), "local_port": p.local_port,
            "remote_address": p.address.to_string(), "remote_port": p.remote_port, "passive_mode": p.passive,
        },
        "route_reflector": {
            "route_reflector_client": p.route_reflector_client,
            "route_reflector_cluster_id": p.cluster_id.map(|i| i.to_string()),
        },
        "afi_safis": p.families.iter().map(|f| json!({
            "state": {
                "family": family(f.afi), "enabled": f.enabled,
                "received": f.received, "accepted": f.accepted, "advertised": f.advertised,
            }
        })).collect::<Vec<_>>(),
    })
}

/// `neighbor -j`: an array of peers.
pub fn peers(ps: &[PeerInfo]) -> String {
    format!("{}\n", Value::Array(ps.iter().map(peer_value).collect()))
}

/// `neighbor ADDR -j`: one peer.
pub fn peer(p: &PeerInfo) -> String {
    format!("{}\n", peer_value(p))
}

/// `global -j`.
pub fn global(g: &GlobalInfo) -> String {
    let v = json!({
        "asn": g.asn, "router_id": g.router_id.to_string(), "listen_port": g.listen_port.map_or(-1, i32::from),
        "listen_addresses": g.listen_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "families": g.families.iter().map(|a| bgpd::api::convert::route_family(*a)).collect::<Vec<_>>(),
        "use_multiple_paths": g.use_multiple_paths,
    });
    format!("{v}\n")
}

fn attrs(prefix: &IpNet, p: &RoutePath) -> Vec<Value> {
    let a = &p.attrs;
    let mut v = vec![
        json!({"type": 1, "value": match a.origin { Origin::Igp => 0, Origin::Egp => 1, Origin::Incomplete => 2 }}),
    ];
    let segs: Vec<Value> = a
        .as_path
        .iter()
        .map(|s| {
            let t = match s {
                AsPathSegment::Set(_) => 1,
                AsPathSegment::Sequence(_) => 2,
                AsPathSegment::ConfedSequence(_) => 3,
                AsPathSegment::ConfedSet(_) => 4,
            };
            json!({"segment_type": t, "num": s.asns().len(), "asns": s.asns()})
        })
        .collect();
    v.push(json!({"type": 2, "as_paths": segs}));
    let classic = matches!((prefix, a.next_hop), (IpNet::V4(_), Some(IpAddr::V4(_))));
    if classic {
        v.push(json!({"type": 3, "nexthop": a.next_hop.map(|n| n.to_string())}));
    }
    if let Some(med) = a.med {
        v.push(json!({"type": 4, "metric": med}));
    }
    if let Some(lp) = a.local_pref {
        v.push(json!({"type": 5, "value": lp}));
    }
    if !a.communities.is_empty() {
        v.push(json!({"type": 8, "communities": a.communities.iter().map(|c| c.0).collect::<Vec<_>>()}));
    }
    if let Some(id) = a.originator_id {
        v.push(json!({"type": 9, "value": id.to_string()}));
    }
    if !a.cluster_list.is_empty() {
        v.push(json!({"type": 10, "value": a.cluster_list.iter().map(ToString::to_string).collect::<Vec<_>>()}));
    }
    if !classic {
        let (afi, safi) = (if prefix.addr().is_ipv4() { 1 } else { 2 }, 1);
        v.push(json!({
            "type": 14, "nexthop": a.next_hop.map(|n| n.to_string()), "afi": afi, "safi": safi,
            "value": [{"prefix": prefix.to_string()}],
        }));
    }
    v
}

/// `global rib -j` / `neighbor ADDR adj-in -j`: an object from prefix to its paths.
pub fn rib(dests: &[Destination]) -> String {
    let mut m = serde_json::Map::new();
    for d in dests {
        let paths: Vec<Value> = d
            .paths
            .iter()
            .map(|p| {
                json!({
                    "nlri": {"prefix": p.prefix.to_string()}, "age": unix(p.age), "best": p.best,
                    "attrs": attrs(&p.prefix, p), "stale": p.stale,
                    "source-id": p.source_id.map(|i| i.to_string()),
                    "neighbor-ip": p.neighbor.map(|n| n.to_string()),
                })
            })
            .collect();
        m.insert(d.prefix.to_string(), Value::Array(paths));
    }
    format!("{}\n", Value::Object(m))
}
