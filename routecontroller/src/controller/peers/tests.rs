use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use super::*;
use crate::model::{Config, Flags, desired_routing};

fn node(name: &str, ips: &[&str], cidrs: &[&str], annotations: &[(&str, &str)]) -> Node {
    let yaml = format!(
        "metadata: {{name: {name}, annotations: {{{}}}}}\nspec: {{podCIDRs: [{}]}}\nstatus: {{addresses: [{}]}}\n",
        annotations
            .iter()
            .map(|(k, v)| format!("{k:?}: {v:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        cidrs.join(", "),
        ips.iter()
            .map(|ip| format!("{{type: InternalIP, address: \"{ip}\"}}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    serde_norway::from_str(&yaml).expect(&yaml)
}

fn config(extra: impl FnOnce(&mut Flags)) -> Config {
    let mut flags = Flags {
        nodes_full_mesh: true,
        enable_ibgp: true,
        enable_pod_egress: true,
        cluster_cidr: vec!["fd00:10:244::/56".into(), "198.19.0.0/16".into()],
        ..Flags::default()
    };
    extra(&mut flags);
    Config::from_flags(&flags).expect("flags")
}

fn cluster() -> Vec<Node> {
    vec![
        node(
            "node1",
            &["fd00:0:0:1::1", "198.18.1.1"],
            &["fd00:10:244:1::/64", "198.19.1.0/24"],
            &[],
        ),
        node(
            "node2",
            &["fd00:0:0:1::2", "198.18.1.2"],
            &["fd00:10:244:2::/64", "198.19.2.0/24"],
            &[],
        ),
    ]
}

fn neighbors(desired: &DesiredRouting) -> BTreeMap<IpAddr, Neighbor> {
    let speaker = SpeakerIdentity::of(desired).speaker_config();
    desired
        .peers
        .iter()
        .map(|p| (p.address, neighbor_for(&speaker, desired, p).expect("maps")))
        .collect()
}

#[test]
fn a_node_peer_accepts_only_its_pod_cidrs_and_gets_only_ours() {
    let desired = desired_routing(&cluster(), "node1", &config(|_| {})).unwrap();
    let n = &neighbors(&desired)[&"fd00:0:0:1::2".parse::<IpAddr>().unwrap()];
    assert_eq!(n.session.local_addr, Some("fd00:0:0:1::1".parse().unwrap()));
    assert_eq!(n.local_ipv4, Some("198.18.1.1".parse().unwrap()));
    assert_eq!(n.local_ipv6, Some("fd00:0:0:1::1".parse().unwrap()));
    assert_eq!(
        n.session.fsm.families,
        vec![(Afi::Ipv6, Safi::Unicast), (Afi::Ipv4, Safi::Unicast)]
    );
    let ctx = bgpd::policy::PolicyContext { local_asn: 64512 };
    let attrs = PathAttributes::default();
    let accepts = |p: &Policy, prefix: &str| {
        matches!(
            p.evaluate(&ctx, &prefix.parse().unwrap(), &attrs),
            bgpd::policy::PolicyResult::Accept(_)
        )
    };
    assert!(accepts(&n.rib.import, "fd00:10:244:2::/64"));
    assert!(accepts(&n.rib.import, "198.19.2.0/24"));
    assert!(!accepts(&n.rib.import, "fd00:10:244:3::/64"));
    assert!(!accepts(&n.rib.import, "::/0"));
    assert!(accepts(&n.rib.export, "fd00:10:244:1::/64"));
    assert!(accepts(&n.rib.export, "198.19.1.0/24"));
    assert!(!accepts(&n.rib.export, "fd00:10:244:2::/64"));
}

#[test]
fn external_peers_follow_the_import_prefix_list() {
    let cfg = config(|f| {
        f.peer_router_ips = vec!["fd00:0:0:1::201".into()];
        f.peer_router_asns = vec!["65000".into()];
        f.peer_router_import_prefixes = vec!["fd00:99::/32".into()];
    });
    let desired = desired_routing(&cluster(), "node1", &cfg).unwrap();
    let n = &neighbors(&desired)[&"fd00:0:0:1::201".parse::<IpAddr>().unwrap()];
    assert_eq!(n.rib.remote_asn, 65000);
    let ctx = bgpd::policy::PolicyContext { local_asn: 64512 };
    let attrs = PathAttributes::default();
    let accepts = |prefix: &str| {
        matches!(
            n.rib
                .import
                .evaluate(&ctx, &prefix.parse().unwrap(), &attrs),
            bgpd::policy::PolicyResult::Accept(_)
        )
    };
    assert!(accepts("fd00:99:1::/48"));
    assert!(!accepts("fd00:98::/32"), "outside the prefix list");
    assert!(!accepts("fd00:10:244:2::/64"), "inside the cluster's range");
    assert!(!accepts("::/0"));
}

#[test]
fn an_annotation_change_touches_only_the_session_it_concerns() {
    let cfg = config(|_| {});
    let before = neighbors(&desired_routing(&cluster(), "node1", &cfg).unwrap());
    let mut nodes = cluster();
    nodes[0] = node(
        "node1",
        &["fd00:0:0:1::1", "198.18.1.1"],
        &["fd00:10:244:1::/64", "198.19.1.0/24"],
        &[(
            "fairlead.io/peers",
            "- {remoteIP: 'fd00:0:0:1::201', remoteASN: 65000}",
        )],
    );
    let after = neighbors(&desired_routing(&nodes, "node1", &cfg).unwrap());
    let diff = diff_peers(&before, &after);
    assert_eq!(diff.add.len(), 1, "{diff:?}");
    assert_eq!(
        diff.add[0].session.remote,
        "fd00:0:0:1::201".parse::<IpAddr>().unwrap()
    );
    assert!(diff.update.is_empty(), "{diff:?}");
    assert!(diff.remove.is_empty());
    let back = diff_peers(&after, &before);
    assert_eq!(
        back.remove,
        vec!["fd00:0:0:1::201".parse::<IpAddr>().unwrap()]
    );
    assert!(back.add.is_empty() && back.update.is_empty());
}

#[test]
fn a_secret_password_is_refused_with_the_peer_named() {
    let nodes = vec![node(
        "node1",
        &["fd00:0:0:1::1"],
        &["fd00:10:244:1::/64"],
        &[(
            "fairlead.io/peers",
            "- {remoteIP: 'fd00:0:0:1::201', remoteASN: 65000, passwordSecretRef: {name: s, key: k}}",
        )],
    )];
    let cfg = config(|f| f.cluster_cidr = vec!["fd00:10:244::/56".into()]);
    let desired = desired_routing(&nodes, "node1", &cfg).unwrap();
    let speaker = SpeakerIdentity::of(&desired).speaker_config();
    let err = neighbor_for(&speaker, &desired, &desired.peers[0]).unwrap_err();
    assert!(matches!(err, PeerMapError::SecretPassword { .. }), "{err}");
    assert!(err.to_string().contains("fd00:0:0:1::201"));
}
