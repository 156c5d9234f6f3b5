//! `fairlead run` in a node namespace (router + firewall) peering with BIRD: `/metrics` carries the BGP
//! session-state, prefix and sync-duration series with their labels, and `/healthz` + `/readyz` answer 200.

use std::time::Duration;

use xcluster_tests::bgp::{BgpSpeaker, Bird, Neighbor, RouterSpec};
use xcluster_tests::{
    AddressPlan, Node, TopologyBuilder, exec_in, require_root_and_tools, wait_until,
};

use crate::e2e_router::fairlead_bin;

const TOOLS: &[&str] = &["ip", "bird", "birdc", "nft", "curl"];
const CLUSTER_ASN: u32 = 64512;
const TOR_ASN: u32 = 65000;
const TIMEOUT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(500);
const METRICS_PORT: &str = "20245";
const HEALTH_PORT: &str = "20244";

/// The Node object of `node`, as the kubelet would report it.
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

/// `curl` inside the node namespace: (HTTP status, body).
fn get(netns: &str, url: &str) -> Option<(u16, String)> {
    let out = exec_in(
        netns,
        &["curl", "-s", "-m", "2", "-w", "\n%{http_code}", url],
    )
    .ok()?;
    let (body, code) = out.trim_end().rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_owned()))
}

fn metrics_e2e(plan: AddressPlan) {
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

    let tor = topo.router("tor").unwrap();
    exec_in(&tor.netns, &["ip", "link", "set", "lo", "up"]).unwrap();
    exec_in(&node.netns, &["ip", "link", "set", "lo", "up"]).unwrap();
    let mut spec = RouterSpec::new(tor.router_id, TOR_ASN);
    for &family in plan.families() {
        spec = spec.listen(tor.address(family).unwrap()).neighbor(
            Neighbor::new(node.address(family).unwrap(), CLUSTER_ASN)
                .local_address(tor.address_on(node.segment, family).unwrap()),
        );
    }
    let bird = Bird::start(topo.guard(), &tor.netns, "bird-tor", &spec).expect("start bird");

    let join = |v: Vec<String>| v.join(",");
    let tor_ips = join(
        plan.families()
            .iter()
            .map(|f| tor.address_on(node.segment, *f).unwrap().to_string())
            .collect(),
    );
    let tor_asns = join(
        plan.families()
            .iter()
            .map(|_| TOR_ASN.to_string())
            .collect(),
    );
    let cluster_cidr = join(plan.cluster_cidrs().iter().map(|c| c.to_string()).collect());
    let conflist = topo.guard().temp_dir().join("10-fairlead.conflist");
    let objects_arg = objects.to_string_lossy().into_owned();
    let conflist_arg = conflist.to_string_lossy().into_owned();
    let bin = fairlead_bin();
    topo.guard()
        .spawn_in(
            &node.netns,
            "fairlead-metrics",
            &bin.to_string_lossy(),
            &[
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
                "--cni-conf-file",
                &conflist_arg,
                "--run-service-proxy=false",
                "--run-firewall=true",
                "--grpc-port",
                "0",
                "--health-port",
                HEALTH_PORT,
                "--metrics-port",
                METRICS_PORT,
            ],
        )
        .expect("spawn fairlead");
    let log = || topo.guard().log("fairlead-metrics");

    for &family in plan.families() {
        bird.wait_established(node.address(family).unwrap(), TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}\n{}", log()));
    }

    // Probes over the loopback of the node namespace and over its node address (kubelet's path).
    let node_addr = node.addresses[0].addr();
    let host = match node_addr {
        std::net::IpAddr::V6(a) => format!("[{a}]"),
        std::net::IpAddr::V4(a) => a.to_string(),
    };
    for path in ["/readyz", "/healthz"] {
        let url = format!("http://{host}:{HEALTH_PORT}{path}");
        wait_until(&format!("{url} answers 200"), TIMEOUT, POLL, || {
            get(&node.netns, &url).is_some_and(|(code, _)| code == 200)
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", get(&node.netns, &url), log()));
    }

    let url = format!("http://{host}:{METRICS_PORT}/metrics");
    let mut text = String::new();
    wait_until("every session Established in /metrics", TIMEOUT, POLL, || {
        text = get(&node.netns, &url).map(|(_, b)| b).unwrap_or_default();
        plan.families().iter().all(|f| {
            let peer = tor.address_on(node.segment, *f).unwrap();
            text.contains(&format!(
                "fairlead_bgp_session_state{{peer=\"{peer}\",peer_asn=\"{TOR_ASN}\",state=\"established\"}} 1"
            ))
        })
    })
    .unwrap_or_else(|e| panic!("{e}:\n{text}\n{}", log()));
    for &family in plan.families() {
        let peer = tor.address_on(node.segment, family).unwrap();
        // One series per FSM state, only the current one at 1.
        for state in ["idle", "connect", "active", "opensent", "openconfirm"] {
            let line = format!(
                "fairlead_bgp_session_state{{peer=\"{peer}\",peer_asn=\"{TOR_ASN}\",state=\"{state}\"}} 0"
            );
            assert!(text.contains(&line), "missing {line}:\n{text}");
        }
        let fam = match family {
            xcluster_tests::Family::V4 => "ipv4-unicast",
            xcluster_tests::Family::V6 => "ipv6-unicast",
        };
        let negotiated =
            format!("fairlead_bgp_family_negotiated{{peer=\"{peer}\",family=\"{fam}\"}} 1");
        assert!(text.contains(&negotiated), "missing {negotiated}:\n{text}");
        let opens = format!(
            "fairlead_bgp_messages_received_total{{peer=\"{peer}\",message_type=\"open\"}} 1"
        );
        assert!(text.contains(&opens), "missing {opens}:\n{text}");
        let changed =
            format!("fairlead_bgp_session_last_change_timestamp_seconds{{peer=\"{peer}\"}} ");
        assert!(text.contains(&changed), "missing {changed}:\n{text}");
        // The node advertises its pod CIDR of the family to the ToR.
        let advertised =
            format!("fairlead_bgp_prefixes_advertised{{peer=\"{peer}\",family=\"{fam}\"}} ");
        let value: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&advertised))
            .unwrap_or_else(|| panic!("missing {advertised}:\n{text}"))
            .parse()
            .expect("a count");
        assert!(
            value >= 1,
            "{advertised}{value}: the pod CIDR is not counted:\n{text}"
        );
    }
    // The firewall's sync-duration histogram, with its controller label, has observed its first pass.
    let count = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("fairlead_sync_duration_seconds_count{controller=\"firewall\"} ")
        })
        .unwrap_or_else(|| panic!("no firewall sync-duration series:\n{text}"));
    assert!(count.parse::<u64>().expect("a count") >= 1, "{text}");
    for le in ["0.001", "30", "+Inf"] {
        let bucket = format!(
            "fairlead_sync_duration_seconds_bucket{{controller=\"firewall\",le=\"{le}\"}} "
        );
        assert!(text.contains(&bucket), "missing {bucket}:\n{text}");
    }
    assert!(
        text.contains("# TYPE fairlead_sync_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("fairlead_build_info{version=\"") && l.ends_with("} 1")),
        "{text}"
    );
}

#[test]
fn ipv6_only() {
    metrics_e2e(AddressPlan::Ipv6Only);
}

#[test]
fn dual_stack_v6_primary() {
    metrics_e2e(AddressPlan::DualStackV6Primary);
}

#[test]
fn dual_stack_v4_primary() {
    metrics_e2e(AddressPlan::DualStackV4Primary);
}

#[test]
fn ipv4_only() {
    metrics_e2e(AddressPlan::Ipv4Only);
}
