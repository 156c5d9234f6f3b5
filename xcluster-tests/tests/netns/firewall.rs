//! NetworkPolicy truth tables for real: 2 nodes, the 9 e2e pods (x/a .. z/c) made by the CNI bridge plugin and
//! spread over both nodes, a TCP+UDP server on ports 80 and 81 in every pod, fairlead's firewall dataplane applied
//! in each node's namespace, and every (source, destination, port, protocol) pair probed and compared with the
//! hand-written expected matrix of `firewall/tests/truth_tables.rs` (parsed from that file, so there is one truth).
//! Plus: under default-deny ingress and egress on every pod, IPv6 neighbour discovery still works.
//!
//! Addressing: namespace k (x=1, y=2, z=3) owns `fd00:10:244:k0::/60` and `198.19.16k.0/20`; its pods on node n
//! live in the subnet `fd00:10:244:kn::/64` / `198.19.(16k+n).0/24` (one host-local conflist per namespace and node,
//! on a bridge `cni-<namespace>` per node), so an ipBlock naming a namespace or a pod in the fixture maps to one prefix here.
//! The self pairs (diagonal) are not probed: a pod reaching itself never leaves its namespace.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use firewall::dataplane::{Dataplane, NftTarget};
use firewall::model::{Family as FwFamily, Input, Options, Protocol, TABLE_NAME, build};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Pod as K8sPod, PodIP};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;
use xcluster_tests::{
    AddressPlan, Family, Node, Pod, Topology, TopologyBuilder, require_root_and_tools, wait_until,
};

#[path = "../../../firewall/tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use support::{Matrix, NAMESPACES, Probe, diff_report, parse_table, probes_of};

const TOOLS: &[&str] = &[
    "ip",
    "nft",
    "python3",
    "bridge",
    "host-local",
    "loopback",
    "sysctl",
];

/// The fixtures probed: deny-all, namespace selector, pod selector, ipBlock except (both directions), named ports
/// (ingress and egress), egress, ingress+egress, protocols and port lists.
const CASES: &[&str] = &[
    "deny-all-both",
    "allow-from-namespace-label",
    "pod-or-namespace-two-peers",
    "egress-ipblock-except",
    "ingress-ipblock-except",
    "named-port-per-pod",
    "egress-named-port",
    "egress-to-namespace",
    "ingress-and-egress",
    "udp-only",
    "multiple-ports-and-rules",
];

/// TCP and UDP on 80 and 81 (this kernel has no SCTP).
const PROBED: [Probe; 4] = [
    Probe {
        protocol: Protocol::Tcp,
        port: 80,
    },
    Probe {
        protocol: Protocol::Tcp,
        port: 81,
    },
    Probe {
        protocol: Protocol::Udp,
        port: 80,
    },
    Probe {
        protocol: Protocol::Udp,
        port: 81,
    },
];

const TIMEOUT: Duration = Duration::from_secs(1);

/// One server per pod: TCP accept-and-close and UDP echo "ok" on 80 and 81, both families.
const SERVER: &str = "import socket, threading
def tcp(p):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('::', p)); s.listen(1024)
    while True:
        c, _ = s.accept(); c.close()
def udp(p):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('::', p))
    while True:
        d, a = s.recvfrom(512); s.sendto(b'ok', a)
for p in (80, 81):
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
    threading.Thread(target=udp, args=(p,), daemon=True).start()
threading.Event().wait()
";

fn fw_family(f: Family) -> FwFamily {
    match f {
        Family::V6 => FwFamily::Ipv6,
        Family::V4 => FwFamily::Ipv4,
    }
}

/// Namespace `k`'s prefix of a family (what a namespace-wide ipBlock maps to).
fn namespace_prefix(k: usize, f: Family) -> IpNet {
    match f {
        Family::V6 => format!("fd00:10:244:{}0::/60", k + 1),
        Family::V4 => format!("198.19.{}.0/20", 16 * (k + 1)),
    }
    .parse()
    .expect("valid prefix")
}

/// The subnet of namespace `k`'s pods on node `n` (1-based).
fn pod_subnet(k: usize, n: u8, f: Family) -> IpNet {
    match f {
        Family::V6 => format!("fd00:10:244:{}{n}::/64", k + 1),
        Family::V4 => format!("198.19.{}.0/24", 16 * (k + 1) + usize::from(n)),
    }
    .parse()
    .expect("valid prefix")
}

/// The 9 pods and their servers on a 2-node topology, with routes between the nodes' pod subnets.
struct Lab {
    topo: Topology,
    /// x/a .. z/c
    pods: Vec<Pod>,
    /// Node index (0-based) of each pod.
    on_node: Vec<usize>,
}

impl Lab {
    fn new(plan: AddressPlan) -> Lab {
        let topo = TopologyBuilder::new(plan)
            .nodes(2)
            .build()
            .expect("topology");
        let mut pods = Vec::new();
        let mut on_node = Vec::new();
        for i in 0..9 {
            let (k, node_index) = (i / 3, i % 2);
            let node = &topo.nodes()[node_index];
            let cidrs: Vec<IpNet> = plan
                .families()
                .iter()
                .map(|&f| pod_subnet(k, node.index, f))
                .collect();
            let mut conflist = xcluster_tests::bridge_conflist(
                &format!("fw-{}", NAMESPACES[k]),
                &cidrs,
                &topo
                    .guard()
                    .temp_dir()
                    .join("cni")
                    .join(format!("{}-{}", node.name, NAMESPACES[k])),
            );
            // One bridge per namespace: the bridge plugin allows one IPv4 gateway subnet per bridge.
            conflist["plugins"][0]["bridge"] = json!(format!("cni-{}", NAMESPACES[k]));
            let pod = topo.add_pod(node, &conflist).expect("CNI ADD");
            pods.push(pod);
            on_node.push(node_index);
        }
        let nodes: Vec<Node> = topo.nodes().to_vec();
        for (a, b) in [(0usize, 1usize), (1, 0)] {
            let (here, there) = (&nodes[a], &nodes[b]);
            topo.exec(
                &here.netns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                    "net.ipv6.conf.all.forwarding=1",
                ],
            )
            .expect("forwarding");
            for &f in plan.families() {
                let via = there.address(f).expect("node address").to_string();
                for k in 0..3 {
                    let dst = pod_subnet(k, there.index, f).to_string();
                    topo.exec(&here.netns, &["ip", "route", "replace", &dst, "via", &via])
                        .expect("route to the other node's pods");
                }
            }
        }
        for (i, pod) in pods.iter().enumerate() {
            topo.guard()
                .spawn_in(
                    &pod.netns,
                    &format!("server-{i}"),
                    "python3",
                    &["-c", SERVER],
                )
                .expect("server");
        }
        let lab = Lab {
            topo,
            pods,
            on_node,
        };
        // Servers answer (no firewall yet; the node's own traffic is never filtered anyway).
        for (i, pod) in lab.pods.iter().enumerate() {
            for &f in plan.families() {
                let dst = pod.ip(f).expect("pod address");
                let node = lab.topo.nodes()[lab.on_node[i]].netns.clone();
                wait_until(
                    &format!("server {} {dst}", support::label(i)),
                    Duration::from_secs(20),
                    Duration::from_millis(100),
                    || {
                        in_netns(&node, move || {
                            reaches(dst, PROBED[0]) && reaches(dst, PROBED[2])
                        })
                    },
                )
                .expect("servers up");
            }
        }
        lab
    }

    /// Pod objects as the API would hold them, with the CNI's addresses (primary first).
    fn k8s_pods(&self) -> Vec<K8sPod> {
        let fixture_addressing = support::Addressing::Ipv6Only;
        (0..9)
            .map(|i| {
                let mut p = support::pod(i / 3, i % 3, fixture_addressing);
                let ips: Vec<PodIP> = self.pods[i]
                    .ips
                    .iter()
                    .map(|n| PodIP {
                        ip: n.addr().to_string(),
                    })
                    .collect();
                let status = p.status.as_mut().expect("status");
                status.pod_ip = Some(ips[0].ip.clone());
                status.pod_ips = Some(ips);
                p
            })
            .collect()
    }

    /// fairlead's dataplane in each node's namespace, syncing `policies`.
    fn apply(&self, policies: &[NetworkPolicy]) {
        let pods = self.k8s_pods();
        let namespaces = support::namespaces();
        for node in self.topo.nodes() {
            let built = build(
                Input {
                    policies,
                    pods: &pods,
                    namespaces: &namespaces,
                },
                &Options {
                    node_addresses: node.addresses.iter().map(IpNet::addr).collect(),
                    ..Default::default()
                },
            );
            assert!(built.skipped.is_empty(), "skipped {:?}", built.skipped);
            let mut dp = Dataplane::new(NftTarget::Netns(node.netns.clone()), TABLE_NAME);
            dp.ensure_bridge_netfilter().expect("br_netfilter");
            dp.sync(&built.ruleset).expect("sync");
            assert_eq!(
                dp.live_difference(&built.ruleset).expect("read back"),
                None,
                "{}",
                node.name
            );
        }
    }

    /// Every off-diagonal pair for one family and probe, concurrently (one thread per probe, each in its pod's
    /// namespace, bounded by 1 s connects / answers); a cell that disagrees with `expected` is probed once more.
    fn observe(&self, f: Family, probe: Probe, expected: &Matrix) -> Matrix {
        let mut m = [[false; 9]; 9];
        let pairs: Vec<(usize, usize)> = (0..9)
            .flat_map(|a| (0..9).map(move |b| (a, b)))
            .filter(|(a, b)| a != b)
            .collect();
        let run = |pairs: &[(usize, usize)]| -> Vec<bool> {
            std::thread::scope(|s| {
                let handles: Vec<_> = pairs
                    .iter()
                    .map(|&(a, b)| {
                        let ns = self.pods[a].netns.clone();
                        let dst = self.pods[b].ip(f).expect("address");
                        s.spawn(move || in_netns(&ns, move || reaches(dst, probe)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("probe thread"))
                    .collect()
            })
        };
        for (&(a, b), got) in pairs.iter().zip(run(&pairs)) {
            m[a][b] = got;
        }
        let retry: Vec<(usize, usize)> = pairs
            .iter()
            .copied()
            .filter(|&(a, b)| m[a][b] != expected[a][b])
            .collect();
        for (&(a, b), got) in retry.iter().zip(run(&retry)) {
            m[a][b] = got;
        }
        for (i, row) in m.iter_mut().enumerate() {
            row[i] = expected[i][i];
        }
        m
    }
}

/// Runs `f` on a thread that entered network namespace `ns` (a thread's namespace is its own).
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// A TCP handshake, or a UDP datagram answered by the server (3 tries in 1 s).
fn reaches(dst: IpAddr, probe: Probe) -> bool {
    let to = SocketAddr::new(dst, probe.port);
    match probe.protocol {
        Protocol::Tcp => TcpStream::connect_timeout(&to, TIMEOUT).is_ok(),
        Protocol::Udp => {
            let local: SocketAddr = if dst.is_ipv6() {
                "[::]:0".parse().unwrap()
            } else {
                "0.0.0.0:0".parse().unwrap()
            };
            let Ok(sock) = UdpSocket::bind(local) else {
                return false;
            };
            if sock.connect(to).is_err() || sock.set_read_timeout(Some(TIMEOUT / 3)).is_err() {
                return false;
            }
            let mut buf = [0u8; 16];
            for _ in 0..3 {
                if sock.send(b"probe").is_err() {
                    return false;
                }
                match sock.recv(&mut buf) {
                    Ok(n) => return &buf[..n] == b"ok",
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    // ICMP errors (refused, unreachable): not allowed through.
                    Err(_) => return false,
                }
            }
            false
        }
        Protocol::Sctp => false,
    }
}

/// The expected tables of every `truth_table!` in `firewall/tests/truth_tables.rs`: fixture -> [(selector, table)].
fn expected_tables() -> BTreeMap<String, Vec<(String, String)>> {
    let src = include_str!("../../../firewall/tests/truth_tables.rs");
    let mut out = BTreeMap::new();
    for chunk in src.split("truth_table!(").skip(1) {
        let body = chunk.split("\n);").next().unwrap_or("");
        // String literals in order: fixture, then (selector, table) pairs. None contains a quote.
        let lits: Vec<String> = body
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        if lits.len() < 3 || lits.len().is_multiple_of(2) {
            continue;
        }
        let pairs = lits[1..]
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        out.insert(lits[0].clone(), pairs);
    }
    out
}

/// The expected matrix of one family and probe.
fn expected_for(tables: &[(String, String)], f: FwFamily, probe: Probe) -> Matrix {
    let hits: Vec<Matrix> = tables
        .iter()
        .filter_map(|(sel, table)| {
            let (fam, sel) = match sel.split_once(':') {
                Some(("v4", rest)) => (Some(FwFamily::Ipv4), rest),
                Some(("v6", rest)) => (Some(FwFamily::Ipv6), rest),
                _ => (None, sel.as_str()),
            };
            (fam.is_none_or(|x| x == f) && probes_of(sel).contains(&probe))
                .then(|| parse_table(table))
        })
        .collect();
    assert_eq!(hits.len(), 1, "{f:?} {probe}: exactly one expected table");
    hits[0]
}

/// The fixture's policies, ipBlocks mapped from the fixture's addressing (namespace k = `198.18.k.0/24`,
/// `fd00:0:0:k::/64`; pod p = host k.(11+p)) onto this lab's; other prefixes (`fd00::/8`) stay.
fn load_policies(lab: &Lab, name: &str) -> Vec<NetworkPolicy> {
    let path = format!(
        "{}/../firewall/tests/fixtures/policies/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for k in 0..3 {
        for (ff, f) in [(FwFamily::Ipv6, Family::V6), (FwFamily::Ipv4, Family::V4)] {
            let fixture_ns = match ff {
                FwFamily::Ipv6 => format!("fd00:0:0:{}::/64", k + 1),
                FwFamily::Ipv4 => format!("198.18.{}.0/24", k + 1),
            };
            map.insert(fixture_ns, namespace_prefix(k, f).to_string());
            for p in 0..3 {
                let host = IpNet::from(support::pod_ip(k, p, ff)).to_string();
                // A family the plan lacks: an unused host of the namespace's prefix (its subnet 0 holds no pod).
                let ip = lab.pods[3 * k + p].ip(f).unwrap_or_else(|| match f {
                    Family::V6 => format!("fd00:10:244:{}0::{}", k + 1, 11 + p)
                        .parse()
                        .unwrap(),
                    Family::V4 => format!("198.19.{}.{}", 16 * (k + 1), 11 + p)
                        .parse()
                        .unwrap(),
                });
                map.insert(host, IpNet::from(ip).to_string());
            }
        }
    }
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let value = <serde_json::Value as serde::Deserialize>::deserialize(doc).expect("yaml");
        if value.is_null() {
            continue;
        }
        let mut value = value;
        remap(&mut value, &map);
        out.push(serde_json::from_value(value).expect("NetworkPolicy"));
    }
    out
}

fn remap(v: &mut serde_json::Value, map: &BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (key, child) in o.iter_mut() {
                if key == "ipBlock" {
                    for field in ["cidr", "except"] {
                        match child.get_mut(field) {
                            Some(serde_json::Value::String(s)) => {
                                if let Some(m) = map.get(s.as_str()) {
                                    *s = m.clone();
                                }
                            }
                            Some(serde_json::Value::Array(a)) => {
                                for e in a {
                                    if let Some(m) = e.as_str().and_then(|s| map.get(s)) {
                                        *e = json!(m);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                } else {
                    remap(child, map);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|c| remap(c, map)),
        _ => {}
    }
}

fn truth_tables(plan: AddressPlan) {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let lab = Lab::new(plan);
    let expected = expected_tables();
    let mut failures = Vec::new();
    let (mut allowed, mut blocked) = (0, 0);
    for case in CASES {
        let tables = expected
            .get(*case)
            .unwrap_or_else(|| panic!("no truth table for {case}"));
        lab.apply(&load_policies(&lab, case));
        for &f in plan.families() {
            for probe in PROBED {
                let want = expected_for(tables, fw_family(f), probe);
                let got = lab.observe(f, probe, &want);
                for (i, row) in want.iter().enumerate() {
                    for (j, &cell) in row.iter().enumerate() {
                        if i != j {
                            if cell { allowed += 1 } else { blocked += 1 }
                        }
                    }
                }
                if let Some(report) = diff_report(&want, &got) {
                    failures.push(format!("--- {case} {plan:?} {f:?} {probe}\n{report}"));
                }
            }
        }
    }
    eprintln!(
        "{plan:?}: {} cases, {allowed} allowed and {blocked} blocked probes",
        CASES.len()
    );
    assert!(allowed > 0 && blocked > 0);
    assert!(
        failures.is_empty(),
        "{} mismatching tables:\n{}",
        failures.len(),
        failures.join("\n")
    );

    if plan.has(Family::V6) {
        neighbour_discovery_under_default_deny(&lab);
    }
    no_window_during_full_sync(&lab, plan.primary());
}

/// A full sync replaces the table in one transaction: while the table is replaced 20 times (each a different
/// structure, so each a full replacement), 8 threads keep connecting from x/c and y/a to x/a, which every version
/// isolates; not one connection may succeed. Then an allow-all version lets them through (the probe can succeed).
fn no_window_during_full_sync(lab: &Lab, f: Family) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let deny = |ns: &str, extra: usize| -> Vec<NetworkPolicy> {
        let mut v: Vec<NetworkPolicy> = vec![
            serde_json::from_value(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "deny", "namespace": ns},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
            }))
            .expect("policy"),
        ];
        // Changes rules and sets, never x/a's isolation: z/b may receive from z/a on port 1000+extra.
        v.push(
            serde_json::from_value(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("extra{extra}"), "namespace": "z"},
                "spec": {"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Ingress"],
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}],
                                      "ports": [{"protocol": "TCP", "port": 1000 + extra}]}]}
            }))
            .expect("policy"),
        );
        v
    };
    lab.apply(&deny("x", 0));
    let dst = SocketAddr::new(lab.pods[0].ip(f).expect("address"), 80);
    let stop = AtomicBool::new(false);
    let (attempts, opened) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..8 {
            let ns = lab.pods[if t % 2 == 0 { 2 } else { 3 }].netns.clone();
            let (stop, attempts, opened) = (&stop, &attempts, &opened);
            s.spawn(move || {
                in_netns(&ns, || {
                    while !stop.load(Ordering::Relaxed) {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        if TcpStream::connect_timeout(&dst, Duration::from_millis(100)).is_ok() {
                            opened.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            });
        }
        for i in 1..=20 {
            lab.apply(&deny("x", i));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (attempts, opened) = (attempts.into_inner(), opened.into_inner());
    eprintln!("{f:?}: {attempts} connects to isolated x/a during 20 full syncs, {opened} opened");
    assert!(attempts > 40, "too few probes ({attempts})");
    assert_eq!(
        opened, 0,
        "a full sync opened isolated x/a ({opened} of {attempts} connects)"
    );
    lab.apply(&[]);
    let ns = lab.pods[2].netns.clone();
    assert!(
        in_netns(&ns, move || reaches(dst.ip(), PROBED[0])),
        "control: x/c -> x/a with no policy"
    );
}

/// Default deny (ingress + egress) on every pod; flush neighbour caches; a flow allowed afterwards works at once,
/// on one node (bridged, pod-to-pod ND) and across nodes (pod-to-gateway ND).
fn neighbour_discovery_under_default_deny(lab: &Lab) {
    let deny = |ns: &str| -> NetworkPolicy {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        }))
        .expect("policy")
    };
    let mut policies: Vec<NetworkPolicy> = NAMESPACES.iter().map(|ns| deny(ns)).collect();
    lab.apply(&policies);
    // x/a (node 1) -> x/c (node 1): bridged; x/a -> y/a (node 2): routed.
    let (src, same, other) = (0usize, 2usize, 3usize);
    assert_eq!(lab.on_node[src], lab.on_node[same]);
    assert_ne!(lab.on_node[src], lab.on_node[other]);
    let tcp80 = PROBED[0];
    for dst in [same, other] {
        let to = lab.pods[dst].ip(Family::V6).expect("v6");
        assert!(
            !in_netns(&lab.pods[src].netns, move || reaches(to, tcp80)),
            "deny-all: x/a -> {to} open"
        );
    }
    for i in [src, same, other] {
        lab.topo
            .exec(&lab.pods[i].netns, &["ip", "-6", "neigh", "flush", "all"])
            .expect("flush");
    }
    for node in lab.topo.nodes() {
        lab.topo
            .exec(&node.netns, &["ip", "-6", "neigh", "flush", "all"])
            .expect("flush");
    }
    let allow: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "a-to-c-and-y-a", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "c"}}},
                                    {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}
    }))
    .expect("policy");
    let ingress = |ns: &str, pod: &str| -> NetworkPolicy {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "from-x-a", "namespace": ns},
            "spec": {"podSelector": {"matchLabels": {"pod": pod}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}
        }))
        .expect("policy")
    };
    policies.extend([allow, ingress("x", "c"), ingress("y", "a")]);
    lab.apply(&policies);
    for dst in [same, other] {
        let to = lab.pods[dst].ip(Family::V6).expect("v6");
        assert!(
            in_netns(&lab.pods[src].netns, move || reaches(to, tcp80)),
            "after flushing neighbours, the newly allowed x/a -> {to} failed under default deny"
        );
    }
    let neigh = lab
        .topo
        .exec(
            &lab.pods[src].netns,
            &["ip", "-6", "neigh", "show", "dev", "eth0"],
        )
        .expect("neigh");
    let to = lab.pods[same].ip(Family::V6).expect("v6").to_string();
    assert!(
        neigh.contains(&to),
        "no neighbour entry for {to} (resolved through the firewall):\n{neigh}"
    );
    // The other direction stays closed (ingress of x/a denies it).
    let back = lab.pods[src].ip(Family::V6).expect("v6");
    assert!(
        !in_netns(&lab.pods[same].netns, move || reaches(back, tcp80)),
        "x/c -> x/a open"
    );
}

#[test]
fn truth_tables_ipv6_only() {
    truth_tables(AddressPlan::Ipv6Only);
}

#[test]
fn truth_tables_dual_stack() {
    truth_tables(AddressPlan::DualStackV6Primary);
}
