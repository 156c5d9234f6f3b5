//! Conversions between the API's Rust types and GoBGP's v3/v4 messages: round trips, GoBGP's exact Any type
//! URLs and attribute shapes, and typed errors for bad client input. Also the pure table helpers.

mod api_common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_common::peer;
use bgpd::api::convert::{self, ConvertError};
use bgpd::api::proto::{v3, v4};
use bgpd::api::table::{self, RibView};
use bgpd::api::{
    AdminState, Capability, Destination, FamilyState, GlobalInfo, PrefixFilter, PrefixMatch,
    RoutePath, SessionState, filter_destinations,
};
use bgpd::packet::{Afi, AsPathSegment, Community, Origin, PathAttributes};
use prost::Message;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn full_attrs(nh: &str) -> PathAttributes {
    PathAttributes {
        origin: Origin::Egp,
        as_path: vec![
            AsPathSegment::Sequence(vec![65002, 4_200_000_000]),
            AsPathSegment::Set(vec![65010, 65011]),
            AsPathSegment::ConfedSequence(vec![65100]),
            AsPathSegment::ConfedSet(vec![65101, 65102]),
        ],
        next_hop: Some(ip(nh)),
        med: Some(7),
        local_pref: Some(200),
        atomic_aggregate: true,
        aggregator: Some((65002, Ipv4Addr::new(198, 18, 0, 2))),
        communities: vec![Community(65002 << 16 | 10), Community(0xffff_ff01)],
        originator_id: Some(Ipv4Addr::new(198, 18, 0, 3)),
        cluster_list: vec![Ipv4Addr::new(198, 18, 0, 4), Ipv4Addr::new(198, 18, 0, 5)],
        ..Default::default()
    }
}

fn path(prefix: &str, attrs: PathAttributes) -> RoutePath {
    RoutePath {
        prefix: prefix.parse().unwrap(),
        attrs,
        best: true,
        age: t(1_700_000_000),
        neighbor: Some(ip("fd00:1::2")),
        source_asn: 65002,
        source_id: Some(Ipv4Addr::new(198, 18, 0, 2)),
        is_from_external: true,
        filtered: false,
        stale: true,
        path_id: 3,
        local_path_id: 4,
        uuid: vec![],
    }
}

/// Paths of both families, an IPv4 route over an IPv6 next hop (RFC 8950), and a link-local next hop.
fn paths() -> Vec<RoutePath> {
    let mut ll = full_attrs("fd00:1::2");
    ll.link_local_next_hop = Some("fe80::2".parse().unwrap());
    vec![
        path("198.18.10.0/24", full_attrs("198.18.0.2")),
        path("fd00:10::/64", full_attrs("fd00:1::2")),
        path("198.18.12.0/24", full_attrs("fd00:1::2")),
        path("fd00:12::/64", ll),
        path("198.18.13.0/24", PathAttributes::default()),
    ]
}

#[test]
fn paths_round_trip_through_v3_and_v4() {
    for p in paths() {
        assert_eq!(
            convert::path_from_v3(&convert::path_to_v3(&p)).unwrap(),
            p,
            "v3 {}",
            p.prefix
        );
        assert_eq!(
            convert::path_from_v4(&convert::path_to_v4(&p)).unwrap(),
            p,
            "v4 {}",
            p.prefix
        );
        // And through the bytes on the wire.
        let wire = convert::path_to_v3(&p).encode_to_vec();
        assert_eq!(
            convert::path_from_v3(&v3::Path::decode(wire.as_slice()).unwrap()).unwrap(),
            p
        );
    }
    let d = Destination {
        prefix: "fd00:10::/64".parse().unwrap(),
        paths: vec![paths()[1].clone()],
    };
    assert_eq!(
        convert::destination_from_v3(&convert::destination_to_v3(&d)).unwrap(),
        d
    );
    assert_eq!(
        convert::destination_from_v4(&convert::destination_to_v4(&d)).unwrap(),
        d
    );
}

#[test]
fn v3_attributes_use_gobgp_type_urls_and_shapes() {
    let ps = paths();
    let v4path = convert::path_to_v3(&ps[0]);
    let urls: Vec<&str> = v4path.pattrs.iter().map(|a| a.type_url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "type.googleapis.com/apipb.OriginAttribute",
            "type.googleapis.com/apipb.AsPathAttribute",
            "type.googleapis.com/apipb.NextHopAttribute",
            "type.googleapis.com/apipb.MultiExitDiscAttribute",
            "type.googleapis.com/apipb.LocalPrefAttribute",
            "type.googleapis.com/apipb.AtomicAggregateAttribute",
            "type.googleapis.com/apipb.AggregatorAttribute",
            "type.googleapis.com/apipb.CommunitiesAttribute",
            "type.googleapis.com/apipb.OriginatorIdAttribute",
            "type.googleapis.com/apipb.ClusterListAttribute",
        ]
    );
    let nlri = v4path.nlri.unwrap();
    assert_eq!(nlri.type_url, "type.googleapis.com/apipb.IPAddressPrefix");
    assert_eq!(
        v3::IpAddressPrefix::decode(nlri.value.as_slice()).unwrap(),
        v3::IpAddressPrefix {
            prefix_len: 24,
            prefix: "198.18.10.0".into()
        }
    );
    let seg = v3::AsPathAttribute::decode(v4path.pattrs[1].value.as_slice()).unwrap();
    assert_eq!(
        seg.segments[0],
        v3::AsSegment {
            r#type: 2,
            numbers: vec![65002, 4_200_000_000]
        }
    );
    assert_eq!(seg.segments[1].r#type, 1);

    // IPv6: no NEXT_HOP; MP_REACH_NLRI last, with family, next hops (global, link-local) and the NLRI.
    let v6 = convert::path_to_v3(&ps[3]);
    assert!(
        !v6.pattrs
            .iter()
            .any(|a| a.type_url.ends_with("NextHopAttribute"))
    );
    let mp = v6.pattrs.last().unwrap();
    assert_eq!(
        mp.type_url,
        "type.googleapis.com/apipb.MpReachNLRIAttribute"
    );
    let mp = v3::MpReachNlriAttribute::decode(mp.value.as_slice()).unwrap();
    assert_eq!(mp.family, Some(v3::Family { afi: 2, safi: 1 }));
    assert_eq!(mp.next_hops, ["fd00:1::2", "fe80::2"]);
    assert_eq!(
        mp.nlris[0].type_url,
        "type.googleapis.com/apipb.IPAddressPrefix"
    );
    assert_eq!(v6.family, Some(v3::Family { afi: 2, safi: 1 }));
}

#[test]
fn bad_client_paths_are_typed_errors() {
    let pack = |name: &str, m: &dyn Fn(&mut Vec<u8>)| {
        let mut value = Vec::new();
        m(&mut value);
        prost_types::Any {
            type_url: format!("type.googleapis.com/apipb.{name}"),
            value,
        }
    };
    let nlri = |p: &str, len: u32| {
        pack("IPAddressPrefix", &|b| {
            v3::IpAddressPrefix {
                prefix_len: len,
                prefix: p.into(),
            }
            .encode(b)
            .unwrap()
        })
    };
    let nh = |n: &str| {
        pack("NextHopAttribute", &|b| {
            v3::NextHopAttribute { next_hop: n.into() }
                .encode(b)
                .unwrap()
        })
    };
    let mk = |nlri, pattrs| v3::Path {
        nlri: Some(nlri),
        pattrs,
        ..Default::default()
    };
    // An IPv6 route never gets an IPv4 next hop.
    assert!(matches!(
        convert::new_path_from_v3(&mk(nlri("fd00:20::", 64), vec![nh("198.18.0.1")])),
        Err(ConvertError::NextHopFamily { .. })
    ));
    assert!(matches!(
        convert::new_path_from_v3(&mk(nlri("fd00:20::", 129), vec![])),
        Err(ConvertError::BadPrefix(_))
    ));
    assert!(matches!(
        convert::new_path_from_v3(&mk(nlri("not-an-address", 24), vec![])),
        Err(ConvertError::BadAddress(_))
    ));
    let flowspec = pack("FlowSpecNLRI", &|_| {});
    assert!(matches!(
        convert::new_path_from_v3(&mk(flowspec, vec![])),
        Err(ConvertError::UnsupportedAttribute(_))
    ));
    let garbage = prost_types::Any {
        type_url: "type.googleapis.com/apipb.OriginAttribute".into(),
        value: vec![0xff],
    };
    assert!(matches!(
        convert::new_path_from_v3(&mk(nlri("198.18.20.0", 24), vec![garbage])),
        Err(ConvertError::Decode { .. })
    ));
    assert!(matches!(
        convert::new_path_from_v3(&v3::Path::default()),
        Err(ConvertError::Missing("nlri"))
    ));
    assert!(matches!(
        convert::family_from_v3(&v3::Family { afi: 25, safi: 70 }),
        Err(ConvertError::UnsupportedFamily { afi: 25, safi: 70 })
    ));
    // Host bits are cleared, as GoBGP stores the network.
    let p =
        convert::new_path_from_v3(&mk(nlri("198.18.20.7", 24), vec![nh("198.18.0.1")])).unwrap();
    assert_eq!(p.prefix.to_string(), "198.18.20.0/24");
    // v4 oneof: a missing attribute body is an error, not a panic.
    let bad = v4::Path {
        nlri: None,
        pattrs: vec![v4::Attribute { attr: None }],
        ..Default::default()
    };
    assert!(convert::new_path_from_v4(&bad).is_err());
}

fn rich_peer() -> bgpd::api::PeerInfo {
    let mut p = peer(ip("fd00:1::2"), 65002, 65001, SessionState::Established);
    p.description = "node-b".into();
    p.remote_router_id = Some(Ipv4Addr::new(198, 18, 0, 2));
    p.uptime = Some(t(1_700_000_000));
    p.downtime = Some(t(1_699_999_000));
    p.flops = 2;
    p.timers.negotiated_hold_time = 90;
    p.timers.negotiated_keepalive_interval = 30;
    p.timers.minimum_advertisement_interval = 30;
    p.sent.open = 1;
    p.sent.total = 9;
    p.received.update = 4;
    p.received.withdraw_prefix = 1;
    p.families = vec![
        FamilyState {
            afi: Afi::Ipv6,
            enabled: true,
            received: 4,
            accepted: 3,
            advertised: 2,
            max_prefixes: Some(1000),
        },
        FamilyState {
            afi: Afi::Ipv4,
            enabled: true,
            received: 1,
            accepted: 1,
            advertised: 0,
            max_prefixes: None,
        },
    ];
    p.route_reflector_client = true;
    p.cluster_id = Some(Ipv4Addr::new(198, 18, 0, 1));
    p.passive = true;
    p.multihop_ttl = Some(2);
    p.local_address = Some(ip("fd00:1::1"));
    p.local_port = 40000;
    p.local_capabilities = vec![
        Capability::MultiProtocol(Afi::Ipv6),
        Capability::RouteRefresh,
        Capability::FourOctetAs(65001),
    ];
    p.remote_capabilities = vec![
        Capability::MultiProtocol(Afi::Ipv4),
        Capability::FourOctetAs(65002),
        Capability::ExtendedNexthop(vec![(Afi::Ipv4, Afi::Ipv6)]),
        Capability::GracefulRestart {
            flags: 0x8,
            restart_time: 120,
            families: vec![(Afi::Ipv4, true), (Afi::Ipv6, false)],
        },
        Capability::AddPath(vec![(Afi::Ipv6, 3)]),
        Capability::EnhancedRouteRefresh,
        Capability::LongLivedGracefulRestart(vec![(Afi::Ipv6, 0x80, 3600)]),
        Capability::Fqdn {
            host_name: "r1".into(),
            domain_name: "example".into(),
        },
        Capability::Unknown {
            code: 128,
            value: vec![],
        },
        Capability::Unknown {
            code: 200,
            value: vec![1, 2, 3],
        },
    ];
    p
}

#[test]
fn peers_round_trip_through_v3_and_v4() {
    let mut down = peer(ip("198.18.0.9"), 0, 65001, SessionState::Idle);
    down.admin_state = AdminState::Down;
    let mut pfx = peer(ip("198.18.0.8"), 65008, 65001, SessionState::Idle);
    pfx.admin_state = AdminState::PrefixLimitExceeded;
    for p in [
        rich_peer(),
        down,
        pfx,
        peer(ip("198.18.0.7"), 65001, 65001, SessionState::OpenConfirm),
    ] {
        assert_eq!(
            convert::peer_from_v3(&convert::peer_to_v3(&p)).unwrap(),
            p,
            "v3 {}",
            p.address
        );
        assert_eq!(
            convert::peer_from_v4(&convert::peer_to_v4(&p)).unwrap(),
            p,
            "v4 {}",
            p.address
        );
    }
    // Enum numbers as GoBGP defines them: v3 ESTABLISHED=6, DOWN=1; v4 shifts AdminState by one.
    let rich = rich_peer();
    assert_eq!(convert::peer_to_v3(&rich).state.unwrap().session_state, 6);
    let mut d = rich.clone();
    d.admin_state = AdminState::Down;
    assert_eq!(convert::peer_to_v3(&d).state.unwrap().admin_state, 1);
    assert_eq!(convert::peer_to_v4(&d).state.unwrap().admin_state, 2);
    assert_eq!(convert::peer_to_v4(&rich).state.unwrap().session_state, 6);
    let caps = convert::peer_to_v3(&rich).state.unwrap().local_cap;
    assert_eq!(
        caps[0].type_url,
        "type.googleapis.com/apipb.MultiProtocolCapability"
    );
    assert_eq!(
        caps[2].type_url,
        "type.googleapis.com/apipb.FourOctetASNCapability"
    );
}

#[test]
fn add_peer_request_to_config() {
    let p = convert::peer_to_v3(&rich_peer());
    let c = convert::peer_config_from_v3(&p).unwrap();
    assert_eq!(c.address, ip("fd00:1::2"));
    assert_eq!((c.peer_asn, c.local_asn), (65002, Some(65001)));
    assert_eq!(c.families, [Afi::Ipv6, Afi::Ipv4]);
    assert!(c.passive && c.route_reflector_client);
    assert_eq!(
        (c.multihop_ttl, c.hold_time, c.keepalive_interval),
        (Some(2), Some(90), Some(30))
    );
    let c4 = convert::peer_config_from_v4(&convert::peer_to_v4(&rich_peer())).unwrap();
    assert_eq!(c4, c);
    assert!(matches!(
        convert::peer_config_from_v3(&v3::Peer::default()),
        Err(ConvertError::Missing(_))
    ));
}

#[test]
fn global_round_trip_and_route_families() {
    let g = GlobalInfo {
        asn: 4_200_000_001,
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        listen_port: Some(179),
        listen_addresses: vec![ip("::"), ip("0.0.0.0")],
        families: vec![Afi::Ipv4, Afi::Ipv6],
        use_multiple_paths: true,
    };
    let v = convert::global_to_v3(&g);
    assert_eq!(v.families, [65537, 131073]);
    assert_eq!(convert::global_from_v3(&v).unwrap(), g);
    assert_eq!(
        convert::global_from_v4(&convert::global_to_v4(&g)).unwrap(),
        g
    );
    let none = GlobalInfo {
        listen_port: None,
        ..g
    };
    assert_eq!(convert::global_to_v3(&none).listen_port, -1);
}

#[test]
fn prefix_filters_exact_longer_shorter_and_longest_match() {
    let dest = |p: &str| Destination {
        prefix: p.parse().unwrap(),
        paths: vec![],
    };
    let all = || {
        vec![
            dest("198.18.0.0/16"),
            dest("198.18.10.0/24"),
            dest("198.18.10.128/25"),
            dest("fd00:10::/64"),
        ]
    };
    let f = |s: &str, kind| convert::parse_prefix_filter(s, kind).unwrap();
    let names = |v: Vec<Destination>| v.iter().map(|d| d.prefix.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(filter_destinations(
            all(),
            &[f("198.18.10.0/24", PrefixMatch::Exact)]
        )),
        ["198.18.10.0/24"]
    );
    assert_eq!(
        names(filter_destinations(
            all(),
            &[f("198.18.10.0/24", PrefixMatch::Longer)]
        )),
        ["198.18.10.0/24", "198.18.10.128/25"]
    );
    assert_eq!(
        names(filter_destinations(
            all(),
            &[f("198.18.10.0/24", PrefixMatch::Shorter)]
        )),
        ["198.18.0.0/16", "198.18.10.0/24"]
    );
    // A bare address selects the longest prefix covering it.
    assert_eq!(
        names(filter_destinations(
            all(),
            &[f("198.18.10.200", PrefixMatch::Exact)]
        )),
        ["198.18.10.128/25"]
    );
    assert_eq!(
        names(filter_destinations(
            all(),
            &[f("fd00:10::1", PrefixMatch::Exact)]
        )),
        ["fd00:10::/64"]
    );
    assert!(filter_destinations(all(), &[f("fd00:99::1", PrefixMatch::Exact)]).is_empty());
    assert_eq!(filter_destinations(all(), &[]).len(), 4);
    assert!(convert::parse_prefix_filter("nonsense", PrefixMatch::Exact).is_err());
    let pf: PrefixFilter = f("198.18.10.7/24", PrefixMatch::Exact);
    assert_eq!(pf.prefix.to_string(), "198.18.10.0/24");
}

#[test]
fn table_helpers_follow_gobgp() {
    let now = t(1_700_000_000);
    assert_eq!(
        table::format_timedelta(t(1_700_000_000 - 59), now),
        "00:00:59"
    );
    assert_eq!(
        table::format_timedelta(t(1_700_000_000 - 3_723), now),
        "01:02:03"
    );
    assert_eq!(
        table::format_timedelta(t(1_700_000_000 - 2 * 86_400 - 5), now),
        "2d 00:00:05"
    );
    // A time in the future shows its distance, as gobgp's does.
    assert_eq!(table::format_timedelta(t(1_700_000_010), now), "00:00:10");
    assert_eq!(
        table::as_path_string(&full_attrs("198.18.0.2").as_path),
        "65002 4200000000 {65010,65011} (65100) [65101,65102]"
    );
    assert_eq!(table::community_string(0xffff_ff02), "no-advertise");
    assert_eq!(table::community_string(0xffff_029a), "blackhole");
    assert_eq!(table::community_string(65535 << 16 | 65535), "65535:65535");
    assert_eq!(
        table::attrs_string(&full_attrs("198.18.0.2")),
        "[{Origin: e} {Med: 7} {LocalPref: 200} {AtomicAggregate} {Aggregate: {AS: 65002, Address: 198.18.0.2}} \
         {Communities: 65002:10, no-export} {Originator: 198.18.0.3} {ClusterList: [198.18.0.4 198.18.0.5]}]"
    );
    assert_eq!(
        table::state_column(AdminState::Up, SessionState::OpenSent),
        "Sent"
    );
    assert_eq!(
        table::state_column(AdminState::Up, SessionState::OpenConfirm),
        "Confirm"
    );
    assert_eq!(
        table::state_column(AdminState::Up, SessionState::Connect),
        "Connect"
    );
    assert_eq!(
        table::state_column(AdminState::PrefixLimitExceeded, SessionState::Idle),
        "Idle(PfxCt)"
    );
    assert_eq!(
        table::rib_table(&[], RibView::GLOBAL, now),
        "Network not in table\n"
    );
}

#[test]
fn rib_table_widens_columns_and_marks_stale_and_best() {
    let now = t(1_700_000_000);
    let mut a = path(
        "fd00:1234:5678:9abc:def0::/80",
        full_attrs("fd00:1234:5678:9abc::1"),
    );
    a.age = t(1_700_000_000 - 90);
    let mut b = a.clone();
    b.best = false;
    b.stale = false;
    b.attrs = PathAttributes {
        next_hop: None,
        ..Default::default()
    };
    let d = Destination {
        prefix: a.prefix,
        paths: vec![a, b],
    };
    let out = table::rib_table(&[d], RibView::GLOBAL, now);
    let lines: Vec<&str> = out.lines().collect();
    // Network is 29 wide, Next Hop 22 wide, AS_PATH 52 wide; stale-and-best is "S*>".
    assert_eq!(
        lines[0],
        format!(
            "   {:<29} {:<22} {:<52} {:<10} Attrs",
            "Network", "Next Hop", "AS_PATH", "Age"
        )
    );
    assert!(
        lines[1].starts_with(
            "S*>fd00:1234:5678:9abc:def0::/80 fd00:1234:5678:9abc::1 65002 4200000000"
        ),
        "{out}"
    );
    assert!(
        lines[1].contains(" 00:01:30   [{Origin: e} {Med: 7}"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("*  fd00:1234:5678:9abc:def0::/80 fictitious "),
        "{out}"
    );
    assert!(lines[2].ends_with("00:01:30   [{Origin: i}]"), "{out}");
}

#[test]
fn neighbor_detail_lists_capabilities_like_gobgp() {
    let out = table::neighbor_detail(&rich_peer(), None, t(1_700_000_100));
    // Local capabilities first, then the remote-only ones, stably sorted by code (as gobgp's sort of so few).
    // Each capability's values in the layout of gobgp 3.10's `neighbor ADDR` (cmd/gobgp/neighbor.go).
    let expected_caps = concat!(
        "  Neighbor capabilities:\n",
        "    multiprotocol:\n",
        "        ipv6-unicast:\tadvertised\n",
        "        ipv4-unicast:\treceived\n",
        "    route-refresh:\tadvertised\n",
        "    extended-nexthop:\treceived\n",
        "        Remote: nlri: ipv4-unicast, nexthop: ipv6\n",
        "    graceful-restart:\treceived\n",
        "        Remote: restart time 120 sec, restart flag set\n",
        "\t    ipv4-unicast, forward flag set\n",
        "\t    ipv6-unicast\n",
        "    4-octet-as:\tadvertised and received\n",
        "    add-path:\treceived\n",
        "      Remote:\n",
        "         ipv6-unicast:\treceive/send\n",
        "    enhanced-route-refresh:\treceived\n",
        "    long-lived-graceful-restart:\treceived\n",
        "        Remote:\n",
        "\t    ipv6-unicast, restart time 3600 sec, forward flag set\n",
        "    fqdn:\treceived\n",
        "      Remote:\n",
        "         name: r1, domain: example\n",
        "    cisco-route-refresh:\treceived\n",
        "    UnknownCapability(200):\treceived\n",
        "  Message statistics:\n",
    );
    assert!(out.contains(expected_caps), "{out}");
    assert!(
        out.starts_with("BGP neighbor is fd00:1::2, remote AS 65002, route-reflector-client\n"),
        "{out}"
    );
    assert!(
        out.contains("  BGP state = ESTABLISHED, up for 00:01:40\n"),
        "{out}"
    );
    assert!(
        out.contains("  Prefix Limits:\n    ipv6-unicast:\tMaximum prefixes allowed 1000\n"),
        "{out}"
    );
    assert!(out.contains("    Advertised:             2\n    Received:               5\n    Accepted:               4\n"), "{out}");
    let only_v4 = table::neighbor_detail(&rich_peer(), Some(Afi::Ipv4), t(1_700_000_100));
    assert!(
        only_v4.contains("    Received:               1\n"),
        "{only_v4}"
    );
}
