//! Smoke: 3 nodes and a router on one segment, two CNI pods per node; pods reach each other, the router reaches
//! every node, in each address family of each plan.

use xcluster_tests::{AddressPlan, TopologyBuilder, ping, require_root_and_tools};

const TOOLS: &[&str] = &["ip", "ping", "bridge", "host-local", "loopback"];

fn smoke(plan: AddressPlan) {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let topo = TopologyBuilder::new(plan)
        .nodes(3)
        .router("r1", &[1])
        .build()
        .expect("build topology");
    let router = topo.router("r1").expect("router");

    for node in topo.nodes() {
        let conflist = topo.bridge_conflist(node);
        let a = topo.add_pod(node, &conflist).expect("pod a");
        let b = topo.add_pod(node, &conflist).expect("pod b");
        // One address per family of the plan, primary first, each inside the node's pod CIDR of that family.
        for pod in [&a, &b] {
            assert_eq!(pod.ips.len(), plan.families().len(), "{pod:?}");
            for (ip, cidr) in pod.ips.iter().zip(&node.pod_cidrs) {
                assert!(cidr.contains(&ip.addr()), "{ip} not in {cidr}");
            }
        }
        assert_ne!(a.ips, b.ips);
        for &family in plan.families() {
            let to = b.ip(family).expect("pod b address");
            ping(&a.netns, to).unwrap_or_else(|e| panic!("{} -> {to}: {e}", node.name));
            let node_addr = node.address(family).expect("node address");
            ping(&router.netns, node_addr).unwrap_or_else(|e| panic!("r1 -> {node_addr}: {e}"));
        }
        // A family the plan lacks is absent everywhere.
        for family in [xcluster_tests::Family::V6, xcluster_tests::Family::V4] {
            if !plan.has(family) {
                assert!(a.ip(family).is_none() && node.address(family).is_none());
            }
        }
    }
}

#[test]
fn ipv6_only() {
    smoke(AddressPlan::Ipv6Only);
}

#[test]
fn dual_stack_v6_primary() {
    smoke(AddressPlan::DualStackV6Primary);
}

#[test]
fn dual_stack_v4_primary() {
    smoke(AddressPlan::DualStackV4Primary);
}

#[test]
fn ipv4_only() {
    smoke(AddressPlan::Ipv4Only);
}

/// Two segments joined by a router: a node on each side reaches the other, in both families.
#[test]
fn two_segments_through_a_router() {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let plan = AddressPlan::DualStackV6Primary;
    let topo = TopologyBuilder::new(plan)
        .segments(2)
        .nodes_on(1, 1)
        .nodes_on(2, 1)
        .router("gw", &[1, 2])
        .build()
        .expect("build topology");
    let (n1, n2) = (topo.node(1).unwrap(), topo.node(2).unwrap());
    assert_eq!((n1.segment, n2.segment), (1, 2));
    for &family in plan.families() {
        ping(&n1.netns, n2.address(family).unwrap()).expect("node1 -> node2 through gw");
        ping(&n2.netns, n1.address(family).unwrap()).expect("node2 -> node1 through gw");
    }
}

/// CNI DEL (reverse order, prevResult from ADD) removes the pod's interface and frees its host-local reservations.
#[test]
fn pod_delete_releases_its_address() {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let topo = TopologyBuilder::new(AddressPlan::DualStackV4Primary)
        .nodes(1)
        .build()
        .expect("build topology");
    let node = topo.node(1).unwrap();
    let conflist = topo.bridge_conflist(node);
    // host-local keeps one file per reserved address under <dataDir>/<network name>/.
    let reservations =
        std::path::Path::new(conflist["plugins"][0]["ipam"]["dataDir"].as_str().unwrap())
            .join("fairlead");
    let a = topo.add_pod(node, &conflist).expect("pod a");
    for ip in &a.ips {
        assert!(
            reservations.join(ip.addr().to_string()).is_file(),
            "{ip} not reserved"
        );
    }
    a.delete().expect("CNI DEL");
    let links = topo.exec(&a.netns, &["ip", "-o", "link", "show"]).unwrap();
    assert!(
        !links.contains("eth0"),
        "eth0 still in pod after DEL: {links}"
    );
    for ip in &a.ips {
        assert!(
            !reservations.join(ip.addr().to_string()).exists(),
            "{ip} still reserved after DEL"
        );
    }
}
