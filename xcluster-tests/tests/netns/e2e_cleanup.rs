//! `fairlead cleanup` in a node namespace after `fairlead run` (router + firewall, pod egress, NDP proxy) made its
//! state: afterwards no route of protocol 44 (any table), no fairlead nftables table, no `fairlead-vip`, no NDP
//! proxy entry and no conflist remain.

use std::time::Duration;

use ipnet::IpNet;
use xcluster_tests::bgp::{Bird, Neighbor, RouterSpec};
use xcluster_tests::{
    AddressPlan, Family, Node, TopologyBuilder, exec_in, require_root_and_tools, wait_until,
};

use crate::e2e_router::fairlead_bin;

const TOOLS: &[&str] = &["ip", "bird", "birdc", "nft"];
const CLUSTER_ASN: u32 = 64512;
const TOR_ASN: u32 = 65000;
const TIMEOUT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(500);

/// Prefixes the ToR announces and the node may import (they become proto 44 routes).
fn tor_prefix(family: Family) -> IpNet {
    match family {
        Family::V6 => "fd00:99:64:ff9b::/96".parse().unwrap(),
        Family::V4 => "198.18.160.0/24".parse().unwrap(),
    }
}

fn node_yaml(node: &Node) -> String {
    let cidrs: Vec<String> = node.pod_cidrs.iter().map(|c| c.to_string()).collect();
    let mut yaml = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\nspec:\n  podCIDR: {}\n  podCIDRs: [{}]\n\
         status:\n  addresses:\n",
        node.name,
        cidrs[0],
        cidrs.join(", ")
    );
    for a in &node.addresses {
        yaml.push_str(&format!(
            "  - {{type: InternalIP, address: \"{}\"}}\n",
            a.addr()
        ));
    }
    yaml
}

/// Everything of fairlead's in `netns`, one line per item (empty: nothing left).
fn leftovers(netns: &str, conflist: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let routes = exec_in(
            netns,
            &["ip", family, "route", "show", "table", "all", "proto", "44"],
        )
        .unwrap();
        out.extend(routes.lines().map(|l| format!("route {l}")));
    }
    let tables = exec_in(netns, &["nft", "list", "tables"]).unwrap();
    out.extend(
        tables
            .lines()
            .filter(|l| l.contains("fairlead"))
            .map(|l| format!("nft {l}")),
    );
    if exec_in(netns, &["ip", "link", "show", "fairlead-vip"]).is_ok() {
        out.push("link fairlead-vip".into());
    }
    let proxies = exec_in(
        netns,
        &["ip", "-6", "neigh", "show", "proxy", "dev", "eth0"],
    )
    .unwrap();
    out.extend(proxies.lines().map(|l| format!("ndp proxy {l}")));
    if conflist.exists() {
        out.push(format!("file {}", conflist.display()));
    }
    out
}

fn cleanup_e2e(plan: AddressPlan) {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let topo = TopologyBuilder::new(plan)
        .nodes(1)
        .router("tor", &[1])
        .build()
        .expect("build topology");
    let objects = topo.guard().temp_dir().join("objects");
    std::fs::create_dir_all(&objects).expect("objects dir");
    let node = topo.node(1).expect("node1").clone();
    std::fs::write(
        objects.join(format!("{}.yaml", node.name)),
        node_yaml(&node),
    )
    .expect("node yaml");
    // A pod of this node with an IPv6 address: the NDP proxy answers for it on eth0.
    let pod_v6 = node
        .pod_cidrs
        .iter()
        .find(|c| c.addr().is_ipv6())
        .map(|c| c.hosts().nth(5).unwrap());
    if let Some(ip) = pod_v6 {
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p1, namespace: default}}\n\
             spec: {{nodeName: {}, containers: [{{name: c, image: none}}]}}\n\
             status: {{podIP: \"{ip}\", podIPs: [{{ip: \"{ip}\"}}]}}\n",
            node.name
        );
        std::fs::write(objects.join("pod-p1.yaml"), pod).expect("pod yaml");
    }

    let tor = topo.router("tor").unwrap();
    exec_in(&tor.netns, &["ip", "link", "set", "lo", "up"]).unwrap();
    let mut spec = RouterSpec::new(tor.router_id, TOR_ASN);
    for &family in plan.families() {
        spec = spec
            .listen(tor.address(family).unwrap())
            .neighbor(
                Neighbor::new(node.address(family).unwrap(), CLUSTER_ASN)
                    .local_address(tor.address_on(node.segment, family).unwrap()),
            )
            .announce(tor_prefix(family));
    }
    let _bird = Bird::start(topo.guard(), &tor.netns, "bird-tor", &spec).expect("start bird");

    let join = |v: Vec<String>| v.join(",");
    let fams = plan.families();
    let tor_ips = join(
        fams.iter()
            .map(|f| tor.address_on(node.segment, *f).unwrap().to_string())
            .collect(),
    );
    let tor_asns = join(fams.iter().map(|_| TOR_ASN.to_string()).collect());
    let imports = join(fams.iter().map(|f| tor_prefix(*f).to_string()).collect());
    let cluster_cidr = join(plan.cluster_cidrs().iter().map(|c| c.to_string()).collect());
    let conflist = topo.guard().temp_dir().join("10-fairlead.conflist");
    let objects_arg = objects.to_string_lossy().into_owned();
    let conflist_arg = conflist.to_string_lossy().into_owned();
    let mut args = vec![
        "run",
        "--objects-from",
        &objects_arg,
        "--hostname-override",
        &node.name,
        "--cluster-cidr",
        &cluster_cidr,
        "--peer-router-ips",
        &tor_ips,
        "--peer-router-asns",
        &tor_asns,
        "--peer-router-import-prefixes",
        &imports,
        "--cni-conf-file",
        &conflist_arg,
        "--run-service-proxy=false",
        "--run-firewall=true",
        "--enable-pod-egress=true",
        "--grpc-port",
        "0",
        "--health-port",
        "0",
    ];
    if pod_v6.is_some() {
        args.extend(["--ndp-proxy-interface", "eth0"]);
    }
    let bin = fairlead_bin();
    let pid = topo
        .guard()
        .spawn_in(
            &node.netns,
            "fairlead-cleanup",
            &bin.to_string_lossy(),
            &args,
        )
        .expect("spawn fairlead");
    let log = || topo.guard().log("fairlead-cleanup");

    // What a proxy run on an IPVS kernel leaves, and a route of ours in another table: cleanup removes those too.
    // The proxy makes a dummy; kernels without the dummy module get a veth of that name (removed by name too).
    exec_in(
        &node.netns,
        &["ip", "link", "add", "fairlead-vip", "type", "dummy"],
    )
    .or_else(|_| {
        exec_in(
            &node.netns,
            &[
                "ip",
                "link",
                "add",
                "fairlead-vip",
                "type",
                "veth",
                "peer",
                "name",
                "flvip-peer",
            ],
        )
    })
    .unwrap();
    let other_table_route = match fams[0] {
        Family::V6 => "fd00:99:55::/64",
        Family::V4 => "198.18.155.0/24",
    };
    exec_in(
        &node.netns,
        &[
            "ip",
            "route",
            "add",
            other_table_route,
            "dev",
            "lo",
            "table",
            "100",
            "proto",
            "44",
        ],
    )
    .unwrap();

    // fairlead made its state: the ToR's prefixes as proto 44 routes, its nftables tables, the conflist, and
    // the NDP proxy entry.
    wait_until("fairlead's state is in place", TIMEOUT, POLL, || {
        let left = leftovers(&node.netns, &conflist);
        let has = |s: &str| left.iter().any(|l| l.contains(s));
        fams.iter()
            .all(|f| has(&format!("route {}", tor_prefix(*f))))
            && has("inet fairlead-firewall")
            && has("inet fairlead-egress")
            && has("file ")
            && has("link fairlead-vip")
            && pod_v6.is_none_or(|ip| has(&format!("ndp proxy {ip}")))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", leftovers(&node.netns, &conflist), log()));

    topo.guard().stop(pid).expect("stop fairlead");
    // Stopping leaves the state in place on purpose (a restart reads it back).
    let before = leftovers(&node.netns, &conflist);
    assert!(before.iter().any(|l| l.starts_with("route ")), "{before:?}");

    let mut cleanup = vec!["cleanup", "--cni-conf-file", &conflist_arg];
    if pod_v6.is_some() {
        cleanup.extend(["--ndp-proxy-interface", "eth0"]);
    }
    let mut cmd = vec![bin.to_str().unwrap()];
    cmd.extend(cleanup);
    exec_in(&node.netns, &cmd).unwrap_or_else(|e| panic!("fairlead cleanup: {e}"));
    let after = leftovers(&node.netns, &conflist);
    assert!(
        after.is_empty(),
        "left after cleanup: {after:?} (before: {before:?})"
    );
    // Nothing else was touched: the node's own routes and addresses stay.
    let addr = node.addresses[0].addr().to_string();
    let addrs = exec_in(&node.netns, &["ip", "addr", "show", "dev", "eth0"]).unwrap();
    assert!(addrs.contains(&addr), "{addrs}");
    // A second run finds nothing and succeeds.
    exec_in(&node.netns, &cmd).unwrap_or_else(|e| panic!("second fairlead cleanup: {e}"));
}

#[test]
fn ipv6_only() {
    cleanup_e2e(AddressPlan::Ipv6Only);
}

#[test]
fn dual_stack_v6_primary() {
    cleanup_e2e(AddressPlan::DualStackV6Primary);
}

#[test]
fn dual_stack_v4_primary() {
    cleanup_e2e(AddressPlan::DualStackV4Primary);
}

#[test]
fn ipv4_only() {
    cleanup_e2e(AddressPlan::Ipv4Only);
}
