//! Model tests: YAML Node fixtures in, desired routing state out, for every cluster IP-family layout.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use routecontroller::model::*;
use serde::Deserialize;

// ---------------------------------------------------------------------------------------------------------------
// Fixtures and the cluster matrix.

fn load(name: &str) -> Vec<Node> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Node::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stack {
    Ipv6Only,
    DualIpv6Primary,
    DualIpv4Primary,
    Ipv4Only,
}

use IpFamily::{Ipv4, Ipv6};

impl Stack {
    const ALL: [Stack; 4] = [
        Stack::Ipv6Only,
        Stack::DualIpv6Primary,
        Stack::DualIpv4Primary,
        Stack::Ipv4Only,
    ];

    fn fixture(self) -> &'static str {
        match self {
            Stack::Ipv6Only => "ipv6-only.yaml",
            Stack::DualIpv6Primary => "dual-ipv6-primary.yaml",
            Stack::DualIpv4Primary => "dual-ipv4-primary.yaml",
            Stack::Ipv4Only => "ipv4-only.yaml",
        }
    }

    /// Primary first.
    fn families(self) -> Vec<IpFamily> {
        match self {
            Stack::Ipv6Only => vec![Ipv6],
            Stack::DualIpv6Primary => vec![Ipv6, Ipv4],
            Stack::DualIpv4Primary => vec![Ipv4, Ipv6],
            Stack::Ipv4Only => vec![Ipv4],
        }
    }

    fn nodes(self) -> Vec<Node> {
        load(self.fixture())
    }

    fn flags(self) -> Flags {
        let pick = |v6: &str, v4: &str| -> Vec<String> {
            self.families()
                .iter()
                .map(|f| {
                    if *f == Ipv6 {
                        v6.to_owned()
                    } else {
                        v4.to_owned()
                    }
                })
                .collect()
        };
        Flags {
            cluster_cidr: pick("fd00:100::/48", "198.19.0.0/16"),
            service_cluster_ip_range: pick("fd00:200::/108", "198.18.128.0/20"),
            ..Flags::default()
        }
    }

    fn config(self) -> Config {
        Config::from_flags(&self.flags()).expect("valid flags")
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// node-N's InternalIP of a family, per the fixture scheme.
fn node_ip(f: IpFamily, n: u8) -> IpAddr {
    match f {
        Ipv6 => IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, n.into())),
        Ipv4 => IpAddr::V4(Ipv4Addr::new(198, 18, 0, n)),
    }
}

/// node-N's pod CIDR of a family, per the fixture scheme.
fn pod_cidr(f: IpFamily, n: u8) -> IpNet {
    match f {
        Ipv6 => net(&format!("fd00:100:0:{n}::/64")),
        Ipv4 => net(&format!("198.19.{n}.0/24")),
    }
}

fn annotate(nodes: &mut [Node], name: &str, key: &str, value: &str) {
    let node = nodes
        .iter_mut()
        .find(|n| n.metadata.name.as_deref() == Some(name))
        .expect("node in fixture");
    node.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value.to_owned());
}

fn routing(nodes: &[Node], local: &str, config: &Config) -> DesiredRouting {
    desired_routing(nodes, local, config).expect("local node exists")
}

fn node_peer_names(r: &DesiredRouting) -> Vec<String> {
    r.peers
        .iter()
        .filter_map(|p| match &p.kind {
            PeerKind::Node { name } => Some(name.clone()),
            PeerKind::External { .. } => None,
        })
        .collect()
}

fn peer<'a>(r: &'a DesiredRouting, addr: &str) -> &'a DesiredPeer {
    r.peers
        .iter()
        .find(|p| p.address == ip(addr))
        .unwrap_or_else(|| panic!("no peer {addr} in {:#?}", r.peers))
}

fn warnings_of<'a>(r: &'a DesiredRouting, node: &str) -> Vec<&'a ModelWarning> {
    r.warnings
        .iter()
        .filter(|w| w.node() == Some(node))
        .collect()
}

fn annotation_warnings(r: &DesiredRouting, node: &str, annotation: &str) -> Vec<String> {
    r.warnings
        .iter()
        .filter_map(|w| match w {
            ModelWarning::InvalidAnnotation {
                node: n,
                annotation: a,
                reason,
            } if n == node && a == annotation => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Flags.

#[test]
fn flags_defaults_validate() {
    for stack in Stack::ALL {
        let c = stack.config();
        assert_eq!(c.cluster_asn, Asn(64512), "{stack:?}");
        assert_eq!(c.router_id, RouterIdMode::Derive);
        assert!(c.nodes_full_mesh && c.enable_ibgp && c.enable_pod_egress);
        assert!(!c.override_nexthop && !c.advertise_cluster_ip && !c.accept_default_route);
        assert_eq!(c.bgp_port, 179);
        assert_eq!(c.primary_family(), stack.families()[0], "{stack:?}");
        assert_eq!(
            c.cluster_families(),
            stack.families().into_iter().collect::<BTreeSet<_>>()
        );
        assert!(c.global_peers.is_empty());
        assert_eq!(c.import_prefixes, None);
    }
}

#[test]
fn flags_global_peers() {
    let flags = Flags {
        cluster_asn: Some("4200000001".into()),
        router_id: Some("198.18.0.200".into()),
        peer_router_ips: vec!["fd00:ff::1,198.18.255.1".into(), "fd00:ff::2".into()],
        peer_router_asns: vec!["65100".into(), "65101".into(), "1.10".into()],
        peer_router_ports: vec!["179,1179,2179".into()],
        peer_router_passwords_file: Some("c2VjcmV0LXBhc3N3b3Jk,\nb3RoZXI=\n,".into()),
        peer_router_multihop_ttl: Some("5".into()),
        bgp_port: Some("1790".into()),
        ..Stack::DualIpv6Primary.flags()
    };
    // Three passwords are needed for three IPs: the file has two non-empty ones.
    let err = Config::from_flags(&flags).unwrap_err();
    assert_eq!(
        err,
        ConfigError::LengthMismatch {
            flag: "--peer-router-passwords-file",
            expected: 3,
            got: 2
        }
    );
    // --peer-router-passwords takes precedence over the file (kube-router's rule); empty entry: no password.
    let flags = Flags {
        peer_router_passwords: vec!["c2VjcmV0LXBhc3N3b3Jk".into(), "".into(), "b3RoZXI=".into()],
        ..flags
    };
    let c = Config::from_flags(&flags).unwrap();
    assert_eq!(c.cluster_asn, Asn(4_200_000_001));
    assert_eq!(
        c.router_id,
        RouterIdMode::Fixed(Ipv4Addr::new(198, 18, 0, 200))
    );
    assert_eq!(c.peer_multihop_ttl, Some(5));
    assert_eq!(c.bgp_port, 1790);
    let got: Vec<(IpAddr, Asn, Option<u16>, Option<PeerPassword>)> = c
        .global_peers
        .iter()
        .map(|p| (p.address, p.asn, p.port, p.password.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                ip("fd00:ff::1"),
                Asn(65100),
                Some(179),
                Some(PeerPassword::Value(Password("secret-password".into())))
            ),
            (ip("198.18.255.1"), Asn(65101), Some(1179), None),
            (
                ip("fd00:ff::2"),
                Asn(65546),
                Some(2179),
                Some(PeerPassword::Value(Password("other".into())))
            ),
        ]
    );
    // A password never shows in Debug output (logs).
    assert!(!format!("{c:?}").contains("secret-password"));
}

#[test]
fn flags_errors_name_the_flag() {
    let base = Stack::DualIpv4Primary.flags();
    let cases: Vec<(Flags, &str)> = vec![
        (
            Flags {
                cluster_asn: Some("abc".into()),
                ..base.clone()
            },
            "--cluster-asn",
        ),
        (
            Flags {
                cluster_asn: Some("0".into()),
                ..base.clone()
            },
            "--cluster-asn",
        ),
        (
            Flags {
                cluster_asn: Some("23456".into()),
                ..base.clone()
            },
            "--cluster-asn",
        ),
        (
            Flags {
                cluster_asn: Some("4294967296".into()),
                ..base.clone()
            },
            "--cluster-asn",
        ),
        (
            Flags {
                router_id: Some("0.0.0.0".into()),
                ..base.clone()
            },
            "--router-id",
        ),
        (
            Flags {
                router_id: Some("255.255.255.255".into()),
                ..base.clone()
            },
            "--router-id",
        ),
        (
            Flags {
                router_id: Some("fd00::1".into()),
                ..base.clone()
            },
            "--router-id",
        ),
        (
            Flags {
                cluster_cidr: vec![],
                ..base.clone()
            },
            "--cluster-cidr",
        ),
        (
            Flags {
                cluster_cidr: vec!["198.19.0.0/16,198.20.0.0/16".into()],
                ..base.clone()
            },
            "--cluster-cidr",
        ),
        (
            Flags {
                cluster_cidr: vec!["198.19.0.1/16".into()],
                ..base.clone()
            },
            "--cluster-cidr",
        ),
        (
            Flags {
                service_cluster_ip_range: vec!["nope".into()],
                ..base.clone()
            },
            "--service-cluster-ip-range",
        ),
        (
            Flags {
                loadbalancer_ip_range: vec!["fd00:300::1/64".into()],
                ..base.clone()
            },
            "--loadbalancer-ip-range",
        ),
        (
            Flags {
                peer_router_import_prefixes: vec!["x".into()],
                ..base.clone()
            },
            "--peer-router-import-prefixes",
        ),
        (
            Flags {
                bgp_port: Some("0".into()),
                ..base.clone()
            },
            "--bgp-port",
        ),
        (
            Flags {
                peer_router_multihop_ttl: Some("256".into()),
                ..base.clone()
            },
            "--peer-router-multihop-ttl",
        ),
        (
            Flags {
                peer_router_ips: vec!["fd00:ff::1".into()],
                ..base.clone()
            },
            "--peer-router-asns",
        ),
        (
            Flags {
                peer_router_ips: vec!["fd00:ff::1".into()],
                peer_router_asns: vec!["65100".into()],
                peer_router_ports: vec!["179,180".into()],
                ..base.clone()
            },
            "--peer-router-ports",
        ),
        (
            Flags {
                peer_router_ips: vec!["fd00:ff::zz".into()],
                peer_router_asns: vec!["65100".into()],
                ..base.clone()
            },
            "--peer-router-ips",
        ),
        (
            Flags {
                peer_router_ips: vec!["fd00:ff::1".into()],
                peer_router_asns: vec!["65535".into()],
                ..base.clone()
            },
            "--peer-router-asns",
        ),
        (
            Flags {
                peer_router_ips: vec!["fd00:ff::1".into()],
                peer_router_asns: vec!["65100".into()],
                peer_router_passwords: vec!["!!notbase64".into()],
                ..base.clone()
            },
            "--peer-router-passwords",
        ),
    ];
    for (flags, flag) in cases {
        let err = Config::from_flags(&flags).expect_err(flag);
        let named = match &err {
            ConfigError::Invalid { flag, .. }
            | ConfigError::LengthMismatch { flag, .. }
            | ConfigError::Missing { flag, .. } => *flag,
        };
        assert_eq!(named, flag, "{err}");
        assert!(err.to_string().contains(flag), "{err}");
    }
    // Multihop TTL below 2 means directly connected.
    let c = Config::from_flags(&Flags {
        peer_router_multihop_ttl: Some("1".into()),
        ..base
    })
    .unwrap();
    assert_eq!(c.peer_multihop_ttl, None);
}

// ---------------------------------------------------------------------------------------------------------------
// Node-to-node sessions.

#[test]
fn full_mesh_one_session_per_pair_over_the_primary_family() {
    for stack in Stack::ALL {
        let nodes = stack.nodes();
        let config = stack.config();
        let primary = stack.families()[0];
        let families: BTreeSet<IpFamily> = stack.families().into_iter().collect();
        for local in 1..=4u8 {
            let r = routing(&nodes, &format!("node-{local}"), &config);
            assert!(r.warnings.is_empty(), "{stack:?}: {:?}", r.warnings);
            assert_eq!(r.local_asn, Asn(64512));
            assert_eq!(r.listen_port, 179);
            let expected: Vec<IpAddr> = (1..=4u8)
                .filter(|n| *n != local)
                .map(|n| node_ip(primary, n))
                .collect();
            let got: Vec<IpAddr> = r.peers.iter().map(|p| p.address).collect();
            assert_eq!(got, expected, "{stack:?} node-{local}");
            for p in &r.peers {
                assert_eq!(p.local_address, Some(node_ip(primary, local)), "{stack:?}");
                assert_eq!(
                    p.families, families,
                    "{stack:?}: both families negotiated on one session"
                );
                assert_eq!(
                    (p.remote_asn, p.local_asn, p.port),
                    (Asn(64512), Asn(64512), 179)
                );
                assert_eq!(p.password, None);
                assert_eq!(p.route_reflector_client_of, None);
                assert_eq!(p.ebgp_multihop_ttl, None);
                assert!(!p.next_hop_self);
            }
        }
        // Symmetry: every session is configured on both ends, with swapped addresses.
        let all: Vec<DesiredRouting> = (1..=4)
            .map(|n| routing(&nodes, &format!("node-{n}"), &config))
            .collect();
        for (a, ra) in all.iter().enumerate() {
            for p in &ra.peers {
                let PeerKind::Node { name } = &p.kind else {
                    panic!("external peer")
                };
                let b: usize = name.trim_start_matches("node-").parse::<usize>().unwrap() - 1;
                let back = all[b]
                    .peers
                    .iter()
                    .find(|q| q.address == p.local_address.unwrap());
                assert!(
                    back.is_some_and(|q| q.local_address == Some(p.address)),
                    "{stack:?} {a}->{b}"
                );
            }
        }
    }
}

#[test]
fn no_full_mesh_flag_means_no_node_sessions() {
    for stack in Stack::ALL {
        let config = Config::from_flags(&Flags {
            nodes_full_mesh: false,
            ..stack.flags()
        })
        .unwrap();
        let r = routing(&stack.nodes(), "node-1", &config);
        assert!(r.peers.is_empty(), "{stack:?}: {:?}", r.peers);
        assert_eq!(
            r.announcements.len(),
            stack.families().len(),
            "announcements stay"
        );
    }
}

#[test]
fn enable_ibgp_false_keeps_only_nodes_of_other_asns() {
    for stack in Stack::ALL {
        let mut nodes = stack.nodes();
        annotate(&mut nodes, "node-3", NODE_ASN, "65003");
        annotate(&mut nodes, "node-4", KR_NODE_ASN, "65004");
        let config = Config::from_flags(&Flags {
            enable_ibgp: false,
            ..stack.flags()
        })
        .unwrap();
        let r = routing(&nodes, "node-1", &config);
        assert_eq!(node_peer_names(&r), vec!["node-3", "node-4"], "{stack:?}");
        let asns: Vec<Asn> = r.peers.iter().map(|p| p.remote_asn).collect();
        assert_eq!(asns, vec![Asn(65003), Asn(65004)]);
        // node-3 itself, as AS 65003, has nobody of its ASN: it peers with all three others over eBGP.
        let r3 = routing(&nodes, "node-3", &config);
        assert_eq!(r3.local_asn, Asn(65003));
        assert_eq!(
            node_peer_names(&r3),
            vec!["node-1", "node-2", "node-4"],
            "{stack:?}"
        );
        // With iBGP enabled (default) node-1 peers with all three, mixing iBGP and eBGP.
        let r = routing(&nodes, "node-1", &stack.config());
        assert_eq!(node_peer_names(&r), vec!["node-2", "node-3", "node-4"]);
    }
}

#[test]
fn route_reflector_topology() {
    for stack in Stack::ALL {
        let mut nodes = stack.nodes();
        // node-1, node-2: servers of cluster id 42; node-3: client (kube-router alias); node-4: plain.
        annotate(&mut nodes, "node-1", RR_SERVER, "42");
        annotate(&mut nodes, "node-2", KR_RR_SERVER, "0.0.0.42");
        annotate(&mut nodes, "node-3", RR_CLIENT, "42");
        let config = stack.config();
        let id = Ipv4Addr::new(0, 0, 0, 42);
        let primary = stack.families()[0];

        let r1 = routing(&nodes, "node-1", &config);
        assert_eq!(
            node_peer_names(&r1),
            vec!["node-2", "node-3", "node-4"],
            "{stack:?}"
        );
        let clients: Vec<Option<Ipv4Addr>> = r1
            .peers
            .iter()
            .map(|p| p.route_reflector_client_of)
            .collect();
        assert_eq!(
            clients,
            vec![None, Some(id), None],
            "{stack:?}: only node-3 is our client"
        );

        let r2 = routing(&nodes, "node-2", &config);
        assert_eq!(
            node_peer_names(&r2),
            vec!["node-1", "node-3", "node-4"],
            "{stack:?}"
        );

        let r3 = routing(&nodes, "node-3", &config);
        assert_eq!(
            node_peer_names(&r3),
            vec!["node-1", "node-2"],
            "{stack:?}: a client peers only with servers"
        );
        // From a reflector a client accepts every other node's pod CIDRs, never its own.
        let from_server = &peer(&r3, &node_ip(primary, 1).to_string()).import;
        for f in stack.families() {
            for n in [1u8, 2, 4] {
                assert_eq!(
                    from_server.evaluate(&pod_cidr(f, n)),
                    FilterAction::Accept,
                    "{stack:?} {n}"
                );
            }
            assert_eq!(
                from_server.evaluate(&pod_cidr(f, 3)),
                FilterAction::Reject,
                "{stack:?}"
            );
        }

        let r4 = routing(&nodes, "node-4", &config);
        assert_eq!(
            node_peer_names(&r4),
            vec!["node-1", "node-2"],
            "{stack:?}: plain nodes peer with servers"
        );
        // A server accepts from a client only the client's own CIDRs.
        let from_client = &peer(&r1, &node_ip(primary, 3).to_string()).import;
        for f in stack.families() {
            assert_eq!(from_client.evaluate(&pod_cidr(f, 3)), FilterAction::Accept);
            assert_eq!(from_client.evaluate(&pod_cidr(f, 4)), FilterAction::Reject);
        }
        // Every session exists on both ends.
        let all = [&r1, &r2, &r3, &r4];
        for (a, r) in all.iter().enumerate() {
            for name in node_peer_names(r) {
                let b: usize = name.trim_start_matches("node-").parse::<usize>().unwrap() - 1;
                assert!(
                    node_peer_names(all[b]).contains(&format!("node-{}", a + 1)),
                    "{stack:?} {a} {b}"
                );
            }
        }
        assert!(r1.warnings.is_empty(), "{:?}", r1.warnings);
    }
}

#[test]
fn route_reflector_clusters_and_orphans() {
    for stack in Stack::ALL {
        let mut nodes = stack.nodes();
        annotate(&mut nodes, "node-1", RR_SERVER, "198.18.0.1");
        annotate(&mut nodes, "node-2", RR_CLIENT, "198.18.0.1");
        annotate(&mut nodes, "node-3", RR_CLIENT, "7"); // no server with cluster id 7
        annotate(&mut nodes, "node-4", RR_CLIENT, "198.18.0.1");
        // Plain full mesh off: RR annotations still give node sessions.
        let config = Config::from_flags(&Flags {
            nodes_full_mesh: false,
            ..stack.flags()
        })
        .unwrap();
        let r1 = routing(&nodes, "node-1", &config);
        assert_eq!(node_peer_names(&r1), vec!["node-2", "node-4"], "{stack:?}");
        assert!(
            r1.peers
                .iter()
                .all(|p| p.route_reflector_client_of == Some(Ipv4Addr::new(198, 18, 0, 1)))
        );
        let r3 = routing(&nodes, "node-3", &config);
        assert!(r3.peers.is_empty(), "{stack:?}");
        assert_eq!(
            r3.warnings,
            vec![ModelWarning::OrphanRouteReflectorClient {
                node: "node-3".into(),
                cluster_id: Ipv4Addr::new(0, 0, 0, 7)
            }]
        );
        let r2 = routing(&nodes, "node-2", &config);
        assert_eq!(
            node_peer_names(&r2),
            vec!["node-1"],
            "{stack:?}: clients never peer with clients"
        );
    }
}

#[test]
fn server_and_client_on_one_node_acts_as_server() {
    let mut nodes = Stack::DualIpv6Primary.nodes();
    annotate(&mut nodes, "node-1", RR_SERVER, "1");
    annotate(&mut nodes, "node-1", KR_RR_CLIENT, "1");
    let r = routing(&nodes, "node-1", &Stack::DualIpv6Primary.config());
    assert_eq!(node_peer_names(&r), vec!["node-2", "node-3", "node-4"]);
    assert_eq!(annotation_warnings(&r, "node-1", KR_RR_CLIENT).len(), 1);
}

#[test]
fn sessions_fall_back_to_the_other_family_or_are_skipped() {
    let nodes = load("mixed-nodes.yaml");
    let config = Stack::DualIpv6Primary.config();
    let r1 = routing(&nodes, "node-1", &config);
    let got: Vec<(IpAddr, Option<IpAddr>)> = r1
        .peers
        .iter()
        .map(|p| (p.address, p.local_address))
        .collect();
    assert_eq!(
        got,
        vec![
            (ip("198.18.0.5"), Some(ip("198.18.0.1"))), // IPv4-only node-5: IPv4 session
            (ip("fd00:10::2"), Some(ip("fd00:10::1"))),
            (ip("fd00:10::3"), Some(ip("fd00:10::1"))),
            (ip("fd00:10::4"), Some(ip("fd00:10::1"))),
        ]
    );
    // Both families negotiated even on the IPv4 session.
    assert_eq!(
        peer(&r1, "198.18.0.5").families,
        BTreeSet::from([Ipv4, Ipv6])
    );
    let r5 = routing(&nodes, "node-5", &config);
    assert_eq!(node_peer_names(&r5), vec!["node-1", "node-4"]);
    let no_address: Vec<&ModelWarning> = r5
        .warnings
        .iter()
        .filter(|w| matches!(w, ModelWarning::NoPeeringAddress { .. }))
        .collect();
    assert_eq!(
        no_address,
        vec![
            &ModelWarning::NoPeeringAddress {
                node: "node-2".into()
            },
            &ModelWarning::NoPeeringAddress {
                node: "node-3".into()
            },
        ]
    );
}

#[test]
fn unknown_local_node_is_an_error() {
    let err = desired_routing(
        &Stack::Ipv6Only.nodes(),
        "node-9",
        &Stack::Ipv6Only.config(),
    )
    .unwrap_err();
    assert_eq!(err, ModelError::LocalNodeNotFound("node-9".into()));
}

// ---------------------------------------------------------------------------------------------------------------
// Annotations.

fn communities(list: &[&str]) -> Vec<Community> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

#[test]
fn fairlead_annotations_win_over_kube_router_aliases() {
    let nodes = load("annotations.yaml");
    let config = Stack::DualIpv6Primary.config();
    let r = routing(&nodes, "node-1", &config);
    assert_eq!(
        r.local_asn,
        Asn(65001),
        "fairlead.io/node.asn over kube-router.io/node.asn"
    );
    // External peers: fairlead.io/peers entries 1 and 2; kube-router.io/peer.ips (fd00:ff::99) is shadowed.
    let external: Vec<&DesiredPeer> = r
        .peers
        .iter()
        .filter(|p| matches!(p.kind, PeerKind::External { .. }))
        .collect();
    assert_eq!(external.len(), 2, "{external:#?}");
    assert!(r.peers.iter().all(|p| p.address != ip("fd00:ff::99")));
    let tor = peer(&r, "fd00:ff::1");
    assert_eq!(
        tor,
        &DesiredPeer {
            address: ip("fd00:ff::1"),
            remote_asn: Asn(65100),
            local_asn: Asn(65001),
            local_address: Some(ip("fd00:10::1")),
            port: 179,
            password: Some(PeerPassword::SecretKeyRef(SecretKeySelector {
                name: "bgp-passwords".into(),
                key: "tor1".into()
            })),
            families: BTreeSet::from([Ipv4, Ipv6]),
            kind: PeerKind::External {
                source: PeerSource::Annotation(PEERS)
            },
            route_reflector_client_of: None,
            ebgp_multihop_ttl: None,
            next_hop_self: false,
            import: external_import_policy(&config),
        }
    );
    let v4 = peer(&r, "198.18.255.1");
    assert_eq!(v4.remote_asn, Asn(65546), "asdot 1.10");
    assert_eq!(v4.port, 1179);
    assert_eq!(v4.families, BTreeSet::from([Ipv4]));
    assert_eq!(v4.ebgp_multihop_ttl, Some(4));
    assert_eq!(v4.local_address, None);
    // Entries 3 (reserved ASN) and 4 (unknown field, missing remoteASN) are reported and skipped.
    let peers_warnings = annotation_warnings(&r, "node-1", PEERS);
    assert_eq!(peers_warnings.len(), 2, "{peers_warnings:?}");
    assert!(peers_warnings[0].starts_with("entry 3") && peers_warnings[0].contains("reserved"));
    assert!(
        peers_warnings[1].starts_with("entry 4"),
        "{peers_warnings:?}"
    );
    // Communities and prepend from fairlead.io/ (the kube-router.io/ "1:1" is shadowed).
    for a in &r.announcements {
        assert_eq!(
            a.communities,
            communities(&["64512:100", "no-export", "65000:100"])
        );
        assert_eq!(
            a.as_path_prepend,
            Some(AsPathPrepend {
                asn: Asn(65001),
                repeat: 3
            })
        );
    }
    assert_eq!(r.announcements.len(), 2);
    // Node sessions use each node's ASN: node-2 65002 (alias), node-3 invalid -> cluster ASN.
    let asns: Vec<(String, Asn)> = r
        .peers
        .iter()
        .filter_map(|p| match &p.kind {
            PeerKind::Node { name } => Some((name.clone(), p.remote_asn)),
            _ => None,
        })
        .collect();
    assert_eq!(
        asns,
        vec![
            ("node-2".into(), Asn(65002)),
            ("node-3".into(), Asn(64512)),
            ("node-4".into(), Asn(64512))
        ]
    );
}

#[test]
fn kube_router_alias_annotations() {
    let nodes = load("annotations.yaml");
    let config = Stack::DualIpv6Primary.config();
    let r = routing(&nodes, "node-2", &config);
    assert_eq!(r.local_asn, Asn(65002));
    let a = peer(&r, "fd00:ff::1");
    assert_eq!((a.remote_asn, a.port), (Asn(65100), 1179));
    assert_eq!(
        a.password,
        Some(PeerPassword::Value(Password("secret-password".into())))
    );
    assert_eq!(
        a.kind,
        PeerKind::External {
            source: PeerSource::Annotation(KR_PEER_IPS)
        }
    );
    assert_eq!(
        a.families,
        BTreeSet::from([Ipv4, Ipv6]),
        "default: the cluster's families"
    );
    let b = peer(&r, "198.18.255.2");
    assert_eq!(
        (b.remote_asn, b.port, b.password.clone()),
        (Asn(65101), 179, None)
    );
    for ann in &r.announcements {
        assert_eq!(ann.communities, communities(&["65002:1"]));
        assert_eq!(
            ann.as_path_prepend,
            Some(AsPathPrepend {
                asn: Asn(65002),
                repeat: 2
            })
        );
    }
    assert!(
        warnings_of(&r, "node-2").is_empty(),
        "{:?}",
        warnings_of(&r, "node-2")
    );
}

#[test]
fn invalid_annotations_are_typed_warnings_and_the_rest_is_used() {
    let nodes = load("annotations.yaml");
    let config = Stack::DualIpv6Primary.config();
    let r = routing(&nodes, "node-3", &config);
    assert_eq!(
        r.local_asn,
        Asn(64512),
        "invalid node.asn falls back to --cluster-asn"
    );
    assert_eq!(annotation_warnings(&r, "node-3", NODE_ASN).len(), 1);
    assert_eq!(
        annotation_warnings(&r, "node-3", COMMUNITIES).len(),
        2,
        "99999:1 and no-such"
    );
    assert_eq!(
        annotation_warnings(&r, "node-3", PATH_PREPEND_AS).len(),
        1,
        "without repeat-n"
    );
    assert_eq!(
        annotation_warnings(&r, "node-3", PEERS).len(),
        1,
        "not YAML"
    );
    assert_eq!(
        annotation_warnings(&r, "node-3", RR_SERVER).len(),
        1,
        "cluster id 0"
    );
    // The valid community stays; no prepend; invalid rr.server does not switch on reflection.
    for a in &r.announcements {
        assert_eq!(a.communities, communities(&["1:2"]));
        assert_eq!(a.as_path_prepend, None);
    }
    assert_eq!(r.announcements.len(), 2);
    assert_eq!(node_peer_names(&r), vec!["node-1", "node-2", "node-4"]);
    // Each warning names the node and the annotation.
    let w = &r.warnings.iter().find(|w| matches!(w, ModelWarning::InvalidAnnotation { annotation, .. } if annotation == NODE_ASN)).unwrap();
    assert!(
        w.to_string().contains("node-3") && w.to_string().contains(NODE_ASN),
        "{w}"
    );
    assert_eq!(w.reason(), "InvalidAnnotation");

    let r4 = routing(&nodes, "node-4", &config);
    // Invalid podCIDR (host bits) and address entries are reported; the valid ones are used.
    assert!(r4.warnings.contains(&ModelWarning::InvalidPodCidr {
        node: "node-4".into(),
        value: "fd00:100:0:4::1/64".into(),
        reason: "host bits set (did you mean fd00:100:0:4::/64?)".into()
    }));
    assert!(r4.warnings.contains(&ModelWarning::InvalidNodeAddress {
        node: "node-4".into(),
        address_type: "InternalIP".into(),
        value: "not-an-ip".into()
    }));
    assert_eq!(r4.local_pod_cidrs, vec![net("198.19.4.0/24")]);
    assert_eq!(
        r4.announcements,
        vec![Announcement {
            prefix: net("198.19.4.0/24"),
            next_hop: ip("198.18.0.4"),
            communities: vec![],
            as_path_prepend: None
        }]
    );
    // kube-router peer list: "bogus" dropped, passwords of the wrong length ignored, fd00:ff::9 kept.
    assert_eq!(annotation_warnings(&r4, "node-4", KR_PEER_IPS).len(), 1);
    assert_eq!(
        annotation_warnings(&r4, "node-4", KR_PEER_PASSWORDS).len(),
        1
    );
    assert_eq!(
        annotation_warnings(&r4, "node-4", PATH_PREPEND_REPEAT_N).len(),
        1
    );
    let p = peer(&r4, "fd00:ff::9");
    assert_eq!((p.remote_asn, p.password.clone()), (Asn(65200), None));
    // Its sessions still run over the valid IPv6 InternalIP.
    assert!(
        r4.peers
            .iter()
            .filter(|p| matches!(p.kind, PeerKind::Node { .. }))
            .all(|p| p.local_address == Some(ip("fd00:10::4")))
    );
}

#[test]
fn annotation_value_formats() {
    let mut nodes = Stack::DualIpv4Primary.nodes();
    annotate(
        &mut nodes,
        "node-1",
        COMMUNITIES,
        " no-advertise ,blackhole,graceful-shutdown, no-peer,65535:65281,1:1 ",
    );
    annotate(&mut nodes, "node-1", KR_PATH_PREPEND_AS, "4200000000");
    annotate(&mut nodes, "node-1", PATH_PREPEND_REPEAT_N, "16");
    annotate(&mut nodes, "node-1", NODE_ASN, "64086.59905");
    let r = routing(&nodes, "node-1", &Stack::DualIpv4Primary.config());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.local_asn, Asn(4_200_000_001)); // asdot 64086.59905
    let a = &r.announcements[0];
    let raw: Vec<u32> = a.communities.iter().map(|c| c.0).collect();
    // no-advertise, blackhole (RFC 7999), graceful-shutdown (RFC 8326), no-peer (RFC 3765); 65535:65281 is
    // no-export spelled numerically; 1:1.
    assert_eq!(
        raw,
        vec![
            0xFFFF_FF02,
            0xFFFF_029A,
            0xFFFF_0000,
            0xFFFF_FF04,
            0xFFFF_FF01,
            0x0001_0001
        ]
    );
    assert_eq!(
        a.as_path_prepend,
        Some(AsPathPrepend {
            asn: Asn(4_200_000_000),
            repeat: 16
        })
    );
    assert_eq!(Community(0xFFFF_FF01).to_string(), "65535:65281");
    // Empty peers list and a YAML list that is not a list.
    let mut nodes = Stack::Ipv6Only.nodes();
    annotate(&mut nodes, "node-1", PEERS, "[]");
    annotate(&mut nodes, "node-2", PEERS, "remoteIP: fd00:ff::1");
    annotate(
        &mut nodes,
        "node-3",
        PEERS,
        "- {remoteIP: fd00:ff::1, remoteASN: 65100, localIP: 198.18.0.3}\n- {remoteIP: fd00:ff::2, remoteASN: 65100, families: [IPv5]}\n- {remoteIP: fd00:ff::3, remoteASN: 65100, port: 0}\n- {remoteIP: fd00:ff::4, remoteASN: 65100, families: []}",
    );
    let config = Stack::Ipv6Only.config();
    assert!(
        routing(&nodes, "node-1", &config)
            .peers
            .iter()
            .all(|p| matches!(p.kind, PeerKind::Node { .. }))
    );
    let r2 = routing(&nodes, "node-2", &config);
    assert_eq!(
        annotation_warnings(&r2, "node-2", PEERS),
        vec!["not a YAML list".to_owned()]
    );
    let r3 = routing(&nodes, "node-3", &config);
    let w = annotation_warnings(&r3, "node-3", PEERS);
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(
        w[0].contains("different families")
            && w[1].contains("IPv5")
            && w[2].contains("port 0")
            && w[3].contains("empty"),
        "{w:?}"
    );
    assert_eq!(node_peer_names(&r3).len(), r3.peers.len());
}

#[test]
fn duplicate_peers_keep_the_first_by_precedence() {
    for stack in Stack::ALL {
        let families = stack.families();
        let tor = if families[0] == Ipv6 {
            "fd00:ff::1"
        } else {
            "198.18.255.1"
        };
        let mut nodes = stack.nodes();
        annotate(
            &mut nodes,
            "node-1",
            PEERS,
            &format!("- {{remoteIP: \"{tor}\", remoteASN: 65100, port: 1179}}"),
        );
        let flags = Flags {
            peer_router_ips: vec![tor.into(), node_ip(families[0], 2).to_string()],
            peer_router_asns: vec!["65101".into(), "65102".into()],
            override_nexthop: true,
            peer_router_multihop_ttl: Some("3".into()),
            ..stack.flags()
        };
        let r = routing(&nodes, "node-1", &Config::from_flags(&flags).unwrap());
        let p = peer(&r, tor);
        assert_eq!(
            (p.remote_asn, p.port),
            (Asn(65100), 1179),
            "{stack:?}: the annotation wins over the flags"
        );
        assert!(
            p.next_hop_self,
            "--override-nexthop applies to external peers"
        );
        assert_eq!(
            p.ebgp_multihop_ttl,
            Some(3),
            "--peer-router-multihop-ttl applies to eBGP peers"
        );
        // The node session to node-2 wins over a flag peer at the same address.
        assert_eq!(
            peer(&r, &node_ip(families[0], 2).to_string()).kind,
            PeerKind::Node {
                name: "node-2".into()
            }
        );
        let dups: Vec<IpAddr> = r
            .warnings
            .iter()
            .filter_map(|w| match w {
                ModelWarning::DuplicatePeer { address, .. } => Some(*address),
                _ => None,
            })
            .collect();
        assert_eq!(dups, vec![ip(tor), node_ip(families[0], 2)], "{stack:?}");
        let text = r.warnings[0].to_string();
        assert!(
            text.contains("--peer-router-ips")
                && text.contains("kept: annotation fairlead.io/peers"),
            "{text}"
        );
        assert!(
            r.peers
                .iter()
                .filter(|p| matches!(p.kind, PeerKind::Node { .. }))
                .all(|p| !p.next_hop_self)
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Router-id.

#[test]
fn hashed_router_id_is_fnv1a_32() {
    // Published FNV-1a 32-bit test vectors.
    assert_eq!(hashed_router_id(b""), Ipv4Addr::from(0x811c_9dc5));
    assert_eq!(hashed_router_id(b"a"), Ipv4Addr::from(0xe40c_292c));
    assert_eq!(hashed_router_id(b"foobar"), Ipv4Addr::from(0xbf9c_f968));
    // These IPv6 addresses hash to 0 and to 0xffffffff (found by search): the octet 0x01 is appended.
    let zero: Ipv6Addr = "fd00:10::14a5:c0b9".parse().unwrap();
    let ones: Ipv6Addr = "fd00:10::4667:3020".parse().unwrap();
    assert_eq!(
        hashed_router_id(&zero.octets()),
        Ipv4Addr::new(1, 0, 1, 147)
    );
    assert_eq!(
        hashed_router_id(&ones.octets()),
        Ipv4Addr::new(253, 255, 252, 218)
    );
}

#[test]
fn router_id_derivation() {
    for stack in Stack::ALL {
        let nodes = stack.nodes();
        let config = stack.config();
        let ids: BTreeSet<Ipv4Addr> = (1..=4)
            .map(|n| {
                let r = routing(&nodes, &format!("node-{n}"), &config);
                let expected = if stack.families().contains(&Ipv4) {
                    // Dual-stack of either primary family: the IPv4 InternalIP.
                    let IpAddr::V4(v4) = node_ip(Ipv4, n) else {
                        unreachable!()
                    };
                    (v4, RouterIdSource::NodeIpv4Address(v4))
                } else {
                    let IpAddr::V6(v6) = node_ip(Ipv6, n) else {
                        unreachable!()
                    };
                    (
                        hashed_router_id(&v6.octets()),
                        RouterIdSource::HashOfIpv6Address(v6),
                    )
                };
                assert_eq!(
                    (r.router_id, r.router_id_source.clone()),
                    expected,
                    "{stack:?} node-{n}"
                );
                // Deterministic: the same input gives the same id.
                assert_eq!(
                    routing(&nodes, &format!("node-{n}"), &config).router_id,
                    r.router_id
                );
                r.router_id
            })
            .collect();
        assert_eq!(ids.len(), 4, "{stack:?}: distinct ids");
        // --router-id wins; --router-id=generate always hashes.
        let fixed = Config::from_flags(&Flags {
            router_id: Some("198.18.1.1".into()),
            ..stack.flags()
        })
        .unwrap();
        let r = routing(&nodes, "node-1", &fixed);
        assert_eq!(
            (r.router_id, r.router_id_source),
            (Ipv4Addr::new(198, 18, 1, 1), RouterIdSource::Flag)
        );
        let generate = Config::from_flags(&Flags {
            router_id: Some("generate".into()),
            ..stack.flags()
        })
        .unwrap();
        let r = routing(&nodes, "node-1", &generate);
        assert!(matches!(
            r.router_id_source,
            RouterIdSource::HashOfIpv6Address(_) | RouterIdSource::HashOfNodeName
        ));
    }
    // The IPv6-only case pinned to a value computed independently (Python FNV-1a of fd00:10::1's octets).
    let r = routing(
        &Stack::Ipv6Only.nodes(),
        "node-1",
        &Stack::Ipv6Only.config(),
    );
    assert_eq!(r.router_id, Ipv4Addr::new(5, 76, 46, 251));
    // No InternalIP at all: the node name ("node-1" -> 0x54c43383).
    let mut nodes = Stack::Ipv6Only.nodes();
    nodes[0].status = None;
    let r = routing(&nodes, "node-1", &Stack::Ipv6Only.config());
    assert_eq!(
        (r.router_id, r.router_id_source),
        (
            Ipv4Addr::new(84, 196, 51, 131),
            RouterIdSource::HashOfNodeName
        )
    );
    // ... no announcement and no sessions with other nodes, each reported once about itself.
    assert!(r.peers.is_empty() && r.announcements.is_empty());
    assert_eq!(
        r.warnings,
        vec![
            ModelWarning::PodCidrWithoutAddress {
                node: "node-1".into(),
                cidr: net("fd00:100:0:1::/64"),
                family: Ipv6
            },
            ModelWarning::NoPeeringAddress {
                node: "node-1".into()
            }
        ]
    );
    // Two IPv6 addresses with the same hash (found by search): both nodes are warned; --router-id silences it.
    let mut nodes = Stack::Ipv6Only.nodes();
    nodes[0]
        .status
        .as_mut()
        .unwrap()
        .addresses
        .as_mut()
        .unwrap()[0]
        .address = "fd00:10::3f6:769".into();
    nodes[2]
        .status
        .as_mut()
        .unwrap()
        .addresses
        .as_mut()
        .unwrap()[0]
        .address = "fd00:10::560:8000".into();
    let r = routing(&nodes, "node-3", &Stack::Ipv6Only.config());
    assert_eq!(r.router_id, Ipv4Addr::new(44, 233, 217, 93));
    assert_eq!(
        r.warnings,
        vec![ModelWarning::RouterIdCollision {
            node: "node-3".into(),
            other: "node-1".into(),
            router_id: Ipv4Addr::new(44, 233, 217, 93)
        }]
    );
    assert_eq!(
        routing(&nodes, "node-1", &Stack::Ipv6Only.config())
            .warnings
            .len(),
        1
    );
    assert!(
        routing(&nodes, "node-2", &Stack::Ipv6Only.config())
            .warnings
            .is_empty()
    );
    let fixed = Config::from_flags(&Flags {
        router_id: Some("198.18.9.9".into()),
        ..Stack::Ipv6Only.flags()
    })
    .unwrap();
    assert!(routing(&nodes, "node-3", &fixed).warnings.is_empty());
    // A node whose IPv6 address hashes to 0 still gets a valid id.
    let mut nodes = Stack::Ipv6Only.nodes();
    nodes[0]
        .status
        .as_mut()
        .unwrap()
        .addresses
        .as_mut()
        .unwrap()[0]
        .address = "fd00:10::14a5:c0b9".into();
    let r = routing(&nodes, "node-1", &Stack::Ipv6Only.config());
    assert_eq!(r.router_id, Ipv4Addr::new(1, 0, 1, 147));
}

// ---------------------------------------------------------------------------------------------------------------
// Announcements.

#[test]
fn announcements_per_family_with_next_hop_of_that_family() {
    for stack in Stack::ALL {
        let nodes = stack.nodes();
        for n in 1..=4u8 {
            let r = routing(&nodes, &format!("node-{n}"), &stack.config());
            let mut expected: Vec<Announcement> = stack
                .families()
                .into_iter()
                .map(|f| Announcement {
                    prefix: pod_cidr(f, n),
                    next_hop: node_ip(f, n),
                    communities: vec![],
                    as_path_prepend: None,
                })
                .collect();
            expected.sort_by_key(|a| a.prefix);
            assert_eq!(r.announcements, expected, "{stack:?} node-{n}");
            assert_eq!(
                r.local_pod_cidrs,
                stack
                    .families()
                    .into_iter()
                    .map(|f| pod_cidr(f, n))
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn ipv6_only_node_never_announces_ipv4_and_rfc8950_next_hop() {
    let nodes = load("mixed-nodes.yaml");
    let config = Stack::DualIpv6Primary.config();
    let r2 = routing(&nodes, "node-2", &config);
    assert_eq!(
        r2.announcements,
        vec![Announcement {
            prefix: net("fd00:100:0:2::/64"),
            next_hop: ip("fd00:10::2"),
            communities: vec![],
            as_path_prepend: None
        }]
    );
    let w = ModelWarning::PodCidrWithoutAddress {
        node: "node-2".into(),
        cidr: net("198.19.2.0/24"),
        family: Ipv4,
    };
    assert!(r2.warnings.contains(&w), "{:?}", r2.warnings);
    assert!(w.to_string().contains("node-2"));
    // node-3 has an IPv4 address (ExternalIP) but no IPv4 InternalIP: IPv4 pod CIDR, IPv6 next hop.
    let r3 = routing(&nodes, "node-3", &config);
    let hops: Vec<(IpNet, IpAddr)> = r3
        .announcements
        .iter()
        .map(|a| (a.prefix, a.next_hop))
        .collect();
    assert_eq!(
        hops,
        vec![
            (net("198.19.3.0/24"), ip("fd00:10::3")),
            (net("fd00:100:0:3::/64"), ip("fd00:10::3"))
        ]
    );
    assert!(
        matches!(r3.router_id_source, RouterIdSource::HashOfIpv6Address(_)),
        "ExternalIPs are not router-ids"
    );
    // node-4: only the legacy spec.podCIDR.
    let r4 = routing(&nodes, "node-4", &config);
    assert_eq!(
        r4.announcements
            .iter()
            .map(|a| a.prefix)
            .collect::<Vec<_>>(),
        vec![net("fd00:100:0:4::/64")]
    );
    // node-5: IPv4-only node.
    let r5 = routing(&nodes, "node-5", &config);
    let hops: Vec<(IpNet, IpAddr)> = r5
        .announcements
        .iter()
        .map(|a| (a.prefix, a.next_hop))
        .collect();
    assert_eq!(hops, vec![(net("198.19.5.0/24"), ip("198.18.0.5"))]);
    // In the IPv6-only fixture, an IPv4 podCIDR sneaking in is refused the same way.
    let mut nodes = Stack::Ipv6Only.nodes();
    nodes[0]
        .spec
        .as_mut()
        .unwrap()
        .pod_cidrs
        .as_mut()
        .unwrap()
        .push("198.19.1.0/24".into());
    let r = routing(&nodes, "node-1", &Stack::Ipv6Only.config());
    assert_eq!(r.announcements.len(), 1);
    assert_eq!(r.announcements[0].prefix, net("fd00:100:0:1::/64"));
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].reason(), "PodCIDRWithoutAddress");
}

// ---------------------------------------------------------------------------------------------------------------
// Import filters.

#[test]
fn node_peer_import_accepts_only_its_pod_cidrs() {
    for stack in Stack::ALL {
        for advertise in [false, true] {
            let config = Config::from_flags(&Flags {
                advertise_cluster_ip: advertise,
                ..stack.flags()
            })
            .unwrap();
            let r = routing(&stack.nodes(), "node-1", &config);
            let p2 = peer(&r, &node_ip(stack.families()[0], 2).to_string());
            for f in stack.families() {
                let own = pod_cidr(f, 2);
                assert_eq!(p2.import.evaluate(&own), FilterAction::Accept, "{stack:?}");
                let more_specific = IpNet::new(own.network(), own.prefix_len() + 2).unwrap();
                assert_eq!(p2.import.evaluate(&more_specific), FilterAction::Accept);
                let wider = own.supernet().unwrap();
                assert_eq!(
                    p2.import.evaluate(&wider),
                    FilterAction::Reject,
                    "{stack:?} {wider}"
                );
                assert_eq!(
                    p2.import.evaluate(&pod_cidr(f, 3)),
                    FilterAction::Reject,
                    "node-3's CIDR from node-2"
                );
                assert_eq!(
                    p2.import.evaluate(&pod_cidr(f, 1)),
                    FilterAction::Reject,
                    "our own CIDR"
                );
                assert_eq!(p2.import.evaluate(&f.default_route()), FilterAction::Reject);
                let vip = match f {
                    Ipv6 => net("fd00:200::10/128"),
                    Ipv4 => net("198.18.128.10/32"),
                };
                let want = if advertise {
                    FilterAction::Accept
                } else {
                    FilterAction::Reject
                };
                assert_eq!(
                    p2.import.evaluate(&vip),
                    want,
                    "{stack:?} advertise={advertise}"
                );
            }
        }
    }
}

#[test]
fn external_peer_import_policy() {
    for stack in Stack::ALL {
        let default = external_import_policy(&stack.config());
        for f in stack.families() {
            let (pods, svc, other) = match f {
                Ipv6 => ("fd00:100:0:7::/64", "fd00:200::5/128", "fd00:300::/48"),
                Ipv4 => ("198.19.7.0/24", "198.18.128.5/32", "198.18.64.0/24"),
            };
            assert_eq!(
                default.evaluate(&net(pods)),
                FilterAction::Reject,
                "{stack:?}: our pod range"
            );
            assert_eq!(
                default.evaluate(&net(svc)),
                FilterAction::Reject,
                "{stack:?}: our service range"
            );
            assert_eq!(
                default.evaluate(&net(other)),
                FilterAction::Accept,
                "{stack:?}"
            );
            assert_eq!(
                default.evaluate(&f.default_route()),
                FilterAction::Reject,
                "{stack:?}: default route"
            );
        }
        let flags = Flags {
            bgp_accept_default_route: true,
            peer_router_import_prefixes: vec![
                "fd00:300::/40,198.18.64.0/18".into(),
                "198.18.0.0/15".into(),
            ],
            ..stack.flags()
        };
        let listed = external_import_policy(&Config::from_flags(&flags).unwrap());
        for f in [Ipv4, Ipv6] {
            assert_eq!(
                listed.evaluate(&f.default_route()),
                FilterAction::Accept,
                "flag allows default routes"
            );
        }
        assert_eq!(
            listed.evaluate(&net("fd00:300:1::/48")),
            FilterAction::Accept
        );
        assert_eq!(
            listed.evaluate(&net("198.18.65.0/24")),
            FilterAction::Accept
        );
        assert_eq!(
            listed.evaluate(&net("fd00:400::/48")),
            FilterAction::Reject,
            "not in the list"
        );
        // Listed, but inside the cluster's pod range (when the cluster has that family): still rejected.
        let inside_pods = listed.evaluate(&net("198.19.7.0/24"));
        let want = if stack.families().contains(&Ipv4) {
            FilterAction::Reject
        } else {
            FilterAction::Accept
        };
        assert_eq!(inside_pods, want, "{stack:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Kernel routes.

fn best(prefix: &str, hops: &[&str]) -> BestPath {
    BestPath {
        prefix: net(prefix),
        next_hops: hops.iter().map(|h| ip(h)).collect(),
    }
}

#[test]
fn kernel_routes_family_rules() {
    let own = [net("fd00:100:0:1::/64"), net("198.19.1.0/24")];
    let addrs = [ip("fd00:10::1"), ip("198.18.0.1")];
    let paths = vec![
        best("198.19.2.0/24", &["198.18.0.2"]),
        best("198.19.3.0/24", &["fd00:10::3"]), // RFC 8950
        best("198.19.4.0/24", &["198.18.0.4", "fd00:10::4", "198.18.0.4"]),
        best("fd00:100:0:2::/64", &["fd00:10::2"]),
        best("fd00:100:0:3::/64", &["198.18.0.3"]), // never
        best("fd00:100:0:5::/64", &["198.18.0.5", "fd00:10::5"]), // the IPv4 hop is dropped
        best("198.19.5.0/24", &["::ffff:198.18.0.5"]), // IPv4-mapped counts as IPv4
        best("fd00:100:0:1::/64", &["fd00:10::9"]), // our own pod CIDR
        best("198.19.1.128/25", &["198.18.0.9"]),   // inside our own pod CIDR
        best(
            "198.19.6.0/24",
            &["fe80::1", "127.0.0.1", "0.0.0.0", "198.18.0.1", "ff02::1"],
        ),
        best("fd00:100:0:6::/64", &["fd00:10::7", "fd00:10::6"]), // ECMP, sorted
        best("fd00:100:0:6::/64", &["fd00:10::8"]),               // same prefix again: merged
        best("198.19.8.0/24", &[]),
    ];
    let out = desired_kernel_routes(&paths, &own, &addrs);
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let gw = |s: &str| KernelNextHop::Gateway(ip(s));
    let expected = vec![
        KernelRoute {
            prefix: net("198.19.2.0/24"),
            next_hops: vec![gw("198.18.0.2")],
        },
        KernelRoute {
            prefix: net("198.19.3.0/24"),
            next_hops: vec![KernelNextHop::ViaInet6(v6("fd00:10::3"))],
        },
        KernelRoute {
            prefix: net("198.19.4.0/24"),
            next_hops: vec![gw("198.18.0.4"), KernelNextHop::ViaInet6(v6("fd00:10::4"))],
        },
        KernelRoute {
            prefix: net("198.19.5.0/24"),
            next_hops: vec![gw("198.18.0.5")],
        },
        KernelRoute {
            prefix: net("fd00:100:0:2::/64"),
            next_hops: vec![gw("fd00:10::2")],
        },
        KernelRoute {
            prefix: net("fd00:100:0:5::/64"),
            next_hops: vec![gw("fd00:10::5")],
        },
        KernelRoute {
            prefix: net("fd00:100:0:6::/64"),
            next_hops: vec![gw("fd00:10::6"), gw("fd00:10::7"), gw("fd00:10::8")],
        },
    ];
    assert_eq!(out.routes, expected);
    let unusable: Vec<IpNet> = out
        .warnings
        .iter()
        .map(|w| match w {
            ModelWarning::UnusableRoute { prefix, .. } => *prefix,
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        unusable,
        vec![
            net("fd00:100:0:3::/64"),
            net("198.19.6.0/24"),
            net("198.19.8.0/24")
        ]
    );
    let text = out.warnings[1].to_string();
    for why in [
        "link-local",
        "loopback",
        "unspecified",
        "own addresses",
        "multicast",
    ] {
        assert!(text.contains(why), "{text}");
    }
    assert!(
        out.warnings[0]
            .to_string()
            .contains("never takes an IPv4 next hop")
    );
}

#[test]
fn kernel_routes_from_each_cluster_layout() {
    // Every node's announcements, as seen by node-1, become routes of the right family and next hop.
    for stack in Stack::ALL {
        let nodes = stack.nodes();
        let config = stack.config();
        let local = routing(&nodes, "node-1", &config);
        let paths: Vec<BestPath> = (1..=4)
            .flat_map(|n| routing(&nodes, &format!("node-{n}"), &config).announcements)
            .map(|a| BestPath {
                prefix: a.prefix,
                next_hops: vec![a.next_hop],
            })
            .collect();
        let own_addrs: Vec<IpAddr> = stack
            .families()
            .into_iter()
            .map(|f| node_ip(f, 1))
            .collect();
        let out = desired_kernel_routes(&paths, &local.local_pod_cidrs, &own_addrs);
        assert!(out.warnings.is_empty(), "{stack:?}: {:?}", out.warnings);
        assert_eq!(out.routes.len(), 3 * stack.families().len(), "{stack:?}");
        for r in &out.routes {
            let f = IpFamily::of_net(&r.prefix);
            assert_eq!(r.next_hops.len(), 1);
            let KernelNextHop::Gateway(g) = r.next_hops[0] else {
                panic!("{stack:?}: {r:?}")
            };
            assert_eq!(IpFamily::of_addr(&g), f, "{stack:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// CNI conflist.

fn conflist_params(cidrs: &[&str]) -> ConflistParams {
    ConflistParams {
        network_name: "fairlead".into(),
        bridge: "kube-bridge".into(),
        mtu: 1450,
        hairpin_mode: true,
        pod_cidrs: cidrs.iter().map(|c| net(c)).collect(),
    }
}

#[test]
fn conflist_content_single_and_dual_stack() {
    for stack in Stack::ALL {
        let r = routing(&stack.nodes(), "node-2", &stack.config());
        let cidrs: Vec<String> = r
            .announcements
            .iter()
            .map(|a| a.prefix.to_string())
            .collect();
        // Primary family first, as in spec.podCIDRs.
        let ordered: Vec<String> = r.local_pod_cidrs.iter().map(|c| c.to_string()).collect();
        let v = cni_conflist(&ConflistParams {
            pod_cidrs: r.local_pod_cidrs.clone(),
            ..conflist_params(&[])
        })
        .unwrap();
        let ranges: Vec<serde_json::Value> = ordered
            .iter()
            .map(|c| serde_json::json!([{ "subnet": c }]))
            .collect();
        let expected = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "fairlead",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "kube-bridge",
                    "isGateway": true,
                    "isDefaultGateway": true,
                    "hairpinMode": true,
                    "mtu": 1450,
                    "ipam": { "type": "host-local", "ranges": ranges },
                },
                { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true },
            ],
        });
        assert_eq!(v, expected, "{stack:?}");
        assert_eq!(cidrs.len(), ordered.len());
        assert!(
            v["plugins"][0]["ipam"].get("routes").is_none(),
            "no default routes next to isDefaultGateway"
        );
        // The rendered text is valid JSON ending in a newline.
        let text = render_conflist(&v);
        assert!(text.ends_with("}\n"));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
    }
}

#[test]
fn conflist_errors() {
    assert_eq!(
        cni_conflist(&conflist_params(&[])),
        Err(ConflistError::NoPodCidr)
    );
    let p = ConflistParams {
        mtu: 1200,
        ..conflist_params(&["198.19.1.0/24", "fd00:100:0:1::/64"])
    };
    assert_eq!(
        cni_conflist(&p),
        Err(ConflistError::Mtu {
            mtu: 1200,
            family: Ipv6,
            min: 1280
        })
    );
    assert!(
        cni_conflist(&ConflistParams {
            mtu: 1200,
            ..conflist_params(&["198.19.1.0/24"])
        })
        .is_ok()
    );
    let p = ConflistParams {
        bridge: "a-very-long-bridge-name".into(),
        ..conflist_params(&["198.19.1.0/24"])
    };
    assert!(matches!(
        cni_conflist(&p),
        Err(ConflistError::BridgeName(_))
    ));
}

#[test]
fn conflist_merge_keeps_unknown_fields() {
    let desired = cni_conflist(&conflist_params(&["fd00:100:0:1::/64", "198.19.1.0/24"])).unwrap();
    let existing = r#"{
        "cniVersion": "0.4.0",
        "name": "fairlead",
        "disableCheck": true,
        "plugins": [
            {"type": "bridge", "bridge": "old-bridge", "mtu": 9000, "forceAddress": false,
             "ipam": {"type": "host-local", "dataDir": "/run/cni-ipam",
                      "ranges": [[{"subnet": "198.19.99.0/24"}]],
                      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "198.18.200.0/24"}]}},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": false, "markMasqBit": 13}
        ]
    }"#;
    let merged = merge_conflist(existing, &desired).unwrap();
    let expected = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "fairlead",
        "disableCheck": true,
        "plugins": [
            {
                "type": "bridge", "bridge": "kube-bridge", "isGateway": true, "isDefaultGateway": true,
                "hairpinMode": true, "mtu": 1450, "forceAddress": false,
                "ipam": {
                    "type": "host-local", "dataDir": "/run/cni-ipam",
                    "ranges": [[{"subnet": "fd00:100:0:1::/64"}], [{"subnet": "198.19.1.0/24"}]],
                    "routes": [{"dst": "198.18.200.0/24"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true, "markMasqBit": 13},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}},
        ],
    });
    assert_eq!(merged, expected);
    // Merging is idempotent, and merging into our own output changes nothing.
    assert_eq!(
        merge_conflist(&merged.to_string(), &desired).unwrap(),
        merged
    );
    assert_eq!(
        merge_conflist(&desired.to_string(), &desired).unwrap(),
        desired
    );
    // Only default routes go: a routes list of defaults only disappears.
    let only_defaults =
        r#"{"plugins": [{"type": "bridge", "ipam": {"routes": [{"dst": "::/0"}]}}]}"#;
    let m = merge_conflist(only_defaults, &desired).unwrap();
    assert!(m["plugins"][0]["ipam"].get("routes").is_none());
    // Unusable existing files are typed errors.
    for bad in ["", "[1]", "{\"plugins\": 3}", "{"] {
        assert!(
            matches!(
                merge_conflist(bad, &desired),
                Err(ConflistError::Existing(_))
            ),
            "{bad:?}"
        );
    }
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("rc-model-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn cni_install_writes_atomically_and_merges() {
    use routecontroller::cni::{install_conflist, write_atomic};
    let dir = TempDir::new("install");
    let desired = cni_conflist(&conflist_params(&["fd00:100:0:1::/64", "198.19.1.0/24"])).unwrap();
    assert!(install_conflist(&dir.0, &desired).unwrap(), "first write");
    let path = dir.0.join(CONFLIST_FILE_NAME);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        desired
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(
        !install_conflist(&dir.0, &desired).unwrap(),
        "unchanged: not rewritten"
    );
    // An operator's extra field survives a change of pod CIDRs.
    let mut edited: serde_json::Value = serde_json::from_str(&text).unwrap();
    edited["plugins"][0]["promiscMode"] = serde_json::json!(true);
    std::fs::write(&path, edited.to_string()).unwrap();
    let desired2 = cni_conflist(&conflist_params(&["fd00:100:0:9::/64"])).unwrap();
    assert!(install_conflist(&dir.0, &desired2).unwrap());
    let now: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(now["plugins"][0]["promiscMode"], serde_json::json!(true));
    assert_eq!(
        now["plugins"][0]["ipam"]["ranges"],
        serde_json::json!([[{"subnet": "fd00:100:0:9::/64"}]])
    );
    // Only our file is in the directory: no temporary left behind.
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![CONFLIST_FILE_NAME.to_owned()]);
    // A broken existing file is reported, not overwritten.
    std::fs::write(&path, "{ broken").unwrap();
    let err = install_conflist(&dir.0, &desired).unwrap_err();
    assert!(err.to_string().contains(CONFLIST_FILE_NAME), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ broken");
    // write_atomic into a missing directory fails cleanly.
    assert!(write_atomic(&dir.0.join("missing/x.conflist"), b"{}", 0o644).is_err());
    write_atomic(&dir.0.join("y"), b"abc", 0o600).unwrap();
    assert_eq!(std::fs::read(dir.0.join("y")).unwrap(), b"abc");
}

// ---------------------------------------------------------------------------------------------------------------
// Robustness: whatever the Node objects hold, the model never panics.

#[test]
fn garbage_nodes_never_panic() {
    let mut nodes = Stack::DualIpv6Primary.nodes();
    nodes.push(Node::default()); // no name: skipped
    let mut weird = Node::default();
    weird.metadata.name = Some("weird".into());
    nodes.push(weird.clone());
    let config = Stack::DualIpv6Primary.config();
    let values = [
        "",
        " ",
        "-1",
        "99999999999999999999",
        ":",
        "a:b:c",
        "[",
        "- {}",
        "- remoteIP: x",
        "\u{0}",
        "1.2.3.4.5",
        "fd00::/200",
        "~",
        "null",
        "- null",
        "{a: 1}",
    ];
    let keys = [
        NODE_ASN,
        PEERS,
        RR_SERVER,
        RR_CLIENT,
        COMMUNITIES,
        PATH_PREPEND_AS,
        PATH_PREPEND_REPEAT_N,
        KR_NODE_ASN,
        KR_PEER_IPS,
        KR_PEER_ASNS,
        KR_PEER_PASSWORDS,
        KR_PEER_PORTS,
    ];
    for (i, v) in values.iter().enumerate() {
        let mut ns = nodes.clone();
        for k in keys {
            annotate(&mut ns, "weird", k, v);
            annotate(&mut ns, "node-2", k, v);
        }
        let w = ns
            .iter_mut()
            .find(|n| n.metadata.name.as_deref() == Some("weird"))
            .unwrap();
        w.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidrs: Some(vec![
                v.to_string(),
                "198.19.9.0/24".into(),
                "198.19.10.0/24".into(),
            ]),
            ..Default::default()
        });
        for local in ["node-1", "node-2", "weird"] {
            let r = routing(&ns, local, &config);
            assert!(r.peers.iter().all(|p| p.address != ip("0.0.0.0")), "{i}");
        }
    }
}
