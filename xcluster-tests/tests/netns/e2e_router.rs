//! End to end: the real `fairlead run` binary in every node namespace (`--objects-from DIR`, Node YAML written by
//! the test), BIRD as the top-of-rack router, pods made with the conflist fairlead wrote. No route is typed on a
//! node: pod-to-pod, pod-to-ToR and node add/delete all go through fairlead's BGP and kernel routes (proto 44).
//!
//! The binary: [`fairlead_bin`] runs `cargo build -p fairlead --bin fairlead` once per test process and returns
//! `$CARGO_TARGET_DIR/debug/fairlead` (default `<workspace>/target/debug/fairlead`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use ipnet::IpNet;
use xcluster_tests::bgp::{AfiSafi, BgpSpeaker, Bird, Neighbor, RouterSpec};
use xcluster_tests::{
    AddressPlan, Family, Node, Pod, Topology, TopologyBuilder, exec_in, load_conflist, ping,
    require_root_and_tools, wait_until,
};

const TOOLS: &[&str] = &[
    "ip",
    "ping",
    "bird",
    "birdc",
    "gobgp",
    "nft",
    "bridge",
    "host-local",
    "loopback",
    "portmap",
];
const CLUSTER_ASN: u32 = 64512;
const TOR_ASN: u32 = 65000;
const EDGE_ASN: u32 = 65001;
const SESSION_TIMEOUT: Duration = Duration::from_secs(40);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(500);

/// Builds the `fairlead` binary once (incrementally) and returns its path.
pub fn fairlead_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let workspace = manifest.parent().expect("workspace root");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "fairlead", "--bin", "fairlead"])
            .current_dir(workspace)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p fairlead failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| {
                if t.is_absolute() {
                    t
                } else {
                    workspace.join(t)
                }
            })
            .unwrap_or_else(|| workspace.join("target"));
        let bin = target.join("debug").join("fairlead");
        assert!(bin.is_file(), "{} missing after cargo build", bin.display());
        bin
    })
    .clone()
}

/// The ToR's prefixes: an IPv6 /96 (NAT64-style, inside the tests' free `fd00:99::/32`) and an IPv4 /24 inside
/// 198.18.160.0/19; the ToR owns the first address of each.
fn tor_prefixes(plan: AddressPlan) -> Vec<IpNet> {
    plan.families()
        .iter()
        .map(|f| match f {
            Family::V6 => "fd00:99:64:ff9b::/96".parse().unwrap(),
            Family::V4 => "198.18.160.0/24".parse().unwrap(),
        })
        .collect()
}

/// Prefixes the ToR also announces that no node may install: a default route, a prefix inside the cluster's
/// pod range (a hijack of a node's pod CIDR), and one outside `--peer-router-import-prefixes`.
fn filtered_prefixes(plan: AddressPlan) -> Vec<IpNet> {
    let mut out = Vec::new();
    for f in plan.families() {
        let list: [&str; 3] = match f {
            Family::V6 => ["::/0", "fd00:10:244:9::/64", "fd00:99:77::/48"],
            Family::V4 => ["0.0.0.0/0", "198.19.9.0/24", "198.18.170.0/24"],
        };
        out.extend(list.iter().map(|p| p.parse::<IpNet>().unwrap()));
    }
    out
}

/// `--peer-router-import-prefixes`: the ToR's and the edge router's prefixes.
fn import_prefixes(plan: AddressPlan) -> String {
    let mut list = tor_prefixes(plan);
    list.push(edge_prefix(plan));
    list.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The edge router's prefix (announced to node1 only, over the annotation's session).
fn edge_prefix(plan: AddressPlan) -> IpNet {
    match plan.primary() {
        Family::V6 => "fd00:99:1::/48".parse().unwrap(),
        Family::V4 => "198.18.161.0/24".parse().unwrap(),
    }
}

/// The address the ToR owns inside `prefix` (the first after the network address).
fn first_host(prefix: &IpNet) -> IpAddr {
    match prefix.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    }
}

/// Where the nodes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Nodes 1-4, the ToR and the edge router on segment 1.
    OneSegment,
    /// Nodes 1-2 on segment 1, nodes 3-4 on segment 2, the ToR on both (forwarding), the edge on segment 1.
    TwoSegments,
}

/// A test cluster: topology (4 node namespaces, ToR and edge routers), the objects directory, BIRD on the ToR
/// and the fairlead processes.
struct Cluster {
    topo: Topology,
    objects: PathBuf,
    tor: Bird,
    fairlead: BTreeMap<u8, u32>,
    /// Pod CIDRs that differ from the plan's, by node.
    pod_cidrs: BTreeMap<u8, Vec<IpNet>>,
    /// `--cluster-cidr` when not the plan's.
    cluster_cidr: Option<String>,
    /// More `fairlead run` flags.
    extra_args: Vec<String>,
}

impl Cluster {
    fn new(plan: AddressPlan) -> Cluster {
        Cluster::with_layout(plan, Layout::OneSegment)
    }

    fn with_layout(plan: AddressPlan, layout: Layout) -> Cluster {
        let topo = match layout {
            Layout::OneSegment => TopologyBuilder::new(plan)
                .nodes(4)
                .router("tor", &[1])
                .router("edge", &[1]),
            Layout::TwoSegments => TopologyBuilder::new(plan)
                .segments(2)
                .nodes_on(1, 2)
                .nodes_on(2, 2)
                .router("tor", &[1, 2])
                .router("edge", &[1]),
        }
        .build()
        .expect("build topology");
        let objects = topo.guard().temp_dir().join("objects");
        std::fs::create_dir_all(&objects).expect("objects dir");

        let tor = topo.router("tor").unwrap();
        exec_in(&tor.netns, &["ip", "link", "set", "lo", "up"]).unwrap();
        let mut spec = RouterSpec::new(tor.router_id, TOR_ASN);
        for &family in plan.families() {
            spec = spec.listen(tor.address(family).unwrap());
        }
        // One session per node and family (each carries its own family).
        for node in topo.nodes() {
            for &family in plan.families() {
                // From the ToR's address on the node's own segment: the sessions are single-hop eBGP.
                let local = tor.address_on(node.segment, family).unwrap();
                spec = spec.neighbor(
                    Neighbor::new(node.address(family).unwrap(), CLUSTER_ASN).local_address(local),
                );
            }
        }
        for prefix in tor_prefixes(plan) {
            spec = spec.announce(prefix);
            let owned = IpNet::new(first_host(&prefix), prefix.max_prefix_len()).unwrap();
            exec_in(
                &tor.netns,
                &["ip", "addr", "add", &owned.to_string(), "dev", "lo"],
            )
            .unwrap();
        }
        for prefix in filtered_prefixes(plan) {
            spec = spec.announce(prefix);
        }
        let bird = Bird::start(topo.guard(), &tor.netns, "bird-tor", &spec).expect("start bird");
        // Replies to pods need the pod routes in the ToR's kernel: BIRD exports its BGP routes there.
        let conf = topo.guard().temp_dir().join("bird-tor.conf");
        let mut text = std::fs::read_to_string(&conf).expect("bird conf");
        text.push_str("protocol kernel { ipv4 { export where source = RTS_BGP; }; }\n");
        text.push_str("protocol kernel { ipv6 { export where source = RTS_BGP; }; }\n");
        std::fs::write(&conf, text).expect("write bird conf");
        bird.birdc(&["configure"]).expect("birdc configure");

        Cluster {
            topo,
            objects,
            tor: bird,
            fairlead: BTreeMap::new(),
            pod_cidrs: BTreeMap::new(),
            cluster_cidr: None,
            extra_args: Vec::new(),
        }
    }

    fn plan(&self) -> AddressPlan {
        self.topo.plan()
    }

    fn node(&self, index: u8) -> &Node {
        self.topo.node(index).expect("node")
    }

    /// Node `index`'s pod CIDRs (the plan's unless overridden).
    fn pod_cidrs(&self, index: u8) -> Vec<IpNet> {
        self.pod_cidrs
            .get(&index)
            .cloned()
            .unwrap_or_else(|| self.node(index).pod_cidrs.clone())
    }

    /// Writes (or replaces) a Pod object of node `index` with these addresses, as the kubelet reports them.
    fn write_pod(&self, name: &str, index: u8, ips: &[IpNet]) {
        let ips: Vec<String> = ips.iter().map(|i| i.addr().to_string()).collect();
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\n\
             spec: {{nodeName: {}, containers: [{{name: c, image: none}}]}}\n\
             status: {{podIP: \"{}\", podIPs: [{}]}}\n",
            self.node(index).name,
            ips[0],
            ips.iter()
                .map(|i| format!("{{ip: \"{i}\"}}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let tmp = self.objects.join(format!(".pod-{name}.yaml.tmp"));
        std::fs::write(&tmp, yaml).expect("write pod yaml");
        std::fs::rename(&tmp, self.objects.join(format!("pod-{name}.yaml"))).expect("rename");
    }

    fn delete_pod(&self, name: &str) {
        std::fs::remove_file(self.objects.join(format!("pod-{name}.yaml")))
            .expect("remove pod yaml");
    }

    /// The IPv6 proxy neighbour entries on node `index`'s uplink.
    fn ndp_proxies(&self, index: u8) -> String {
        exec_in(
            &self.node(index).netns,
            &["ip", "-6", "neigh", "show", "proxy", "dev", "eth0"],
        )
        .unwrap()
    }

    /// Writes (atomically: the source may read at any time) the Node object of node `index`.
    fn write_node(&self, index: u8, annotations: &[(&str, String)]) {
        let node = self.node(index);
        let pod_cidrs = self.pod_cidrs(index);
        let mut yaml = format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n",
            node.name
        );
        if !annotations.is_empty() {
            yaml.push_str("  annotations:\n");
            for (k, v) in annotations {
                yaml.push_str(&format!("    {k}: {}\n", serde_json::to_string(v).unwrap()));
            }
        }
        yaml.push_str(&format!(
            "spec:\n  podCIDR: {}\n  podCIDRs: [{}]\nstatus:\n  addresses:\n",
            pod_cidrs[0],
            pod_cidrs
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for a in &node.addresses {
            yaml.push_str(&format!(
                "  - {{type: InternalIP, address: \"{}\"}}\n",
                a.addr()
            ));
        }
        yaml.push_str(&format!("  - {{type: Hostname, address: {}}}\n", node.name));
        let tmp = self.objects.join(format!(".{}.yaml.tmp", node.name));
        std::fs::write(&tmp, yaml).expect("write node yaml");
        std::fs::rename(&tmp, self.objects.join(format!("{}.yaml", node.name))).expect("rename");
    }

    fn delete_node(&self, index: u8) {
        let name = &self.node(index).name;
        std::fs::remove_file(self.objects.join(format!("{name}.yaml"))).expect("remove node yaml");
    }

    fn conflist_path(&self, index: u8) -> PathBuf {
        self.topo
            .guard()
            .temp_dir()
            .join(format!("cni-node{index}"))
            .join("10-fairlead.conflist")
    }

    fn label(index: u8) -> String {
        format!("fairlead-node{index}")
    }

    /// Starts `fairlead run` in node `index`'s namespace, peering with the ToR.
    fn start_fairlead(&mut self, index: u8) {
        let plan = self.plan();
        let tor = self.topo.router("tor").unwrap();
        let join = |v: Vec<String>| v.join(",");
        let cluster_cidr = self
            .cluster_cidr
            .clone()
            .unwrap_or_else(|| join(plan.cluster_cidrs().iter().map(|c| c.to_string()).collect()));
        let segment = self.node(index).segment;
        let tor_ips = join(
            plan.families()
                .iter()
                .map(|f| tor.address_on(segment, *f).unwrap().to_string())
                .collect(),
        );
        let tor_asns = join(
            plan.families()
                .iter()
                .map(|_| TOR_ASN.to_string())
                .collect(),
        );
        let objects = self.objects.to_string_lossy().into_owned();
        let conflist = self.conflist_path(index).to_string_lossy().into_owned();
        let node = self.node(index).clone();
        let bin = fairlead_bin();
        let pid = self
            .topo
            .guard()
            .spawn_in(
                &node.netns,
                &Self::label(index),
                &bin.to_string_lossy(),
                &[
                    "run",
                    "--objects-from",
                    &objects,
                    "--hostname-override",
                    &node.name,
                    "--cluster-cidr",
                    &cluster_cidr,
                    "--peer-router-ips",
                    &tor_ips,
                    "--peer-router-asns",
                    &tor_asns,
                    "--cni-conf-file",
                    &conflist,
                    "--run-service-proxy=false",
                    "--run-firewall=false",
                    "--health-port",
                    "0",
                    "--peer-router-import-prefixes",
                    &import_prefixes(plan),
                ]
                .into_iter()
                .chain(self.extra_args.iter().map(String::as_str))
                .collect::<Vec<_>>(),
            )
            .expect("spawn fairlead");
        self.fairlead.insert(index, pid);
    }

    fn log(&self, index: u8) -> String {
        self.topo.guard().log(&Self::label(index))
    }

    fn logs(&self) -> String {
        self.fairlead
            .keys()
            .map(|i| format!("--- node{i} ---\n{}", tail(&self.log(*i), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn stop_fairlead(&mut self, index: u8) {
        if let Some(pid) = self.fairlead.remove(&index) {
            self.topo.guard().stop(pid).expect("stop fairlead");
        }
    }

    /// Whether fairlead on node `index` is still the process we started.
    fn fairlead_alive(&self, index: u8) -> bool {
        let pid = self.fairlead[&index];
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
            && self.topo.guard().pids().contains(&pid)
    }

    /// Waits for the conflist fairlead writes and makes a pod with it. The host-local state directory is moved
    /// into the test's temp dir (the default, /var/lib/cni, is shared by every namespace of this machine).
    fn add_pod(&self, index: u8) -> Pod {
        let path = self.conflist_path(index);
        wait_until(
            &format!("fairlead on node{index} writes {}", path.display()),
            CONVERGE_TIMEOUT,
            POLL,
            || path.is_file(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        let mut conflist = load_conflist(&path).expect("load conflist");
        let node = self.node(index);
        let pod_cidrs = self.pod_cidrs(index);
        let ranges = &conflist["plugins"][0]["ipam"]["ranges"];
        assert_eq!(
            ranges.as_array().map(|r| r.len()),
            Some(pod_cidrs.len()),
            "one host-local range per pod CIDR: {conflist}"
        );
        for (range, cidr) in ranges.as_array().unwrap().iter().zip(&pod_cidrs) {
            assert_eq!(range[0]["subnet"], cidr.to_string(), "{conflist}");
        }
        conflist["plugins"][0]["ipam"]["dataDir"] = serde_json::Value::String(
            self.topo
                .guard()
                .temp_dir()
                .join(format!("ipam-node{index}"))
                .to_string_lossy()
                .into_owned(),
        );
        self.topo.add_pod(node, &conflist).expect("CNI ADD")
    }

    /// The destinations of node `index`'s kernel routes of protocol 44.
    fn fairlead_routes(&self, index: u8) -> Vec<IpNet> {
        let ns = &self.node(index).netns;
        let mut out = Vec::new();
        for family in ["-4", "-6"] {
            let text = exec_in(ns, &["ip", family, "route", "show", "proto", "44"]).unwrap();
            for line in text.lines().filter(|l| !l.starts_with(char::is_whitespace)) {
                if let Some(dst) = line.split_whitespace().next() {
                    let dst = match (dst, family) {
                        ("default", "-4") => "0.0.0.0/0",
                        ("default", _) => "::/0",
                        (d, _) => d,
                    };
                    let parsed = dst.parse::<IpNet>().or_else(|_| {
                        dst.parse::<IpAddr>()
                            .map(|a| IpNet::new(a, if a.is_ipv6() { 128 } else { 32 }).unwrap())
                    });
                    if let Ok(net) = parsed {
                        out.push(net);
                    }
                }
            }
        }
        out
    }

    fn wait_routes(&self, index: u8, what: &str, f: impl Fn(&[IpNet]) -> bool) {
        wait_until(
            &format!("node{index}: {what}"),
            CONVERGE_TIMEOUT,
            POLL,
            || f(&self.fairlead_routes(index)),
        )
        .unwrap_or_else(|e| {
            panic!(
                "{e}; routes now {:?}\n{}",
                self.fairlead_routes(index),
                self.logs()
            )
        });
    }

    fn wait_ping(&self, from: &Pod, to: IpAddr, what: &str) {
        wait_until(what, CONVERGE_TIMEOUT, POLL, || {
            ping(&from.netns, to).is_ok()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    fn wait_tor_sessions(&self, index: u8) {
        for &family in self.plan().families() {
            let addr = self.node(index).address(family).unwrap();
            self.tor
                .wait_established(addr, SESSION_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn router_e2e(plan: AddressPlan) {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let mut c = Cluster::new(plan);
    for i in 1..=3 {
        c.write_node(i, &[]);
    }
    for i in 1..=3 {
        c.start_fairlead(i);
    }

    // Every node peers with the ToR in each family and the ToR holds every node's pod CIDRs.
    for i in 1..=3 {
        c.wait_tor_sessions(i);
    }
    for i in 1..=3 {
        for cidr in &c.node(i).pod_cidrs {
            c.tor
                .wait_route(*cidr, CONVERGE_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        }
    }
    for bad in filtered_prefixes(plan) {
        c.tor
            .wait_route(bad, CONVERGE_TIMEOUT)
            .expect("the ToR holds the prefix it offers");
    }
    for &family in plan.families() {
        let rib = c.tor.rib(AfiSafi::of_family(family)).unwrap();
        for i in 1..=3 {
            let cidr = c.node(i).pod_cidr(family).unwrap();
            assert!(
                rib.contains(&cidr),
                "ToR {family:?} table lacks {cidr}: {rib:?}"
            );
        }
    }

    // The GoBGP-compatible API on loopback (--grpc-port, default 50051): the stock gobgp CLI lists the sessions.
    for i in 1..=3u8 {
        let tor = c.topo.router("tor").unwrap();
        let out = exec_in(&c.node(i).netns, &["gobgp", "neighbor"])
            .unwrap_or_else(|e| panic!("gobgp neighbor on node{i}: {e}"));
        for &family in plan.families() {
            let addr = tor.address(family).unwrap().to_string();
            assert!(
                out.lines()
                    .any(|l| l.contains(&addr) && l.contains("Establ")),
                "node{i}: gobgp neighbor lacks an Established {addr}:\n{out}"
            );
        }
    }

    // Pods on every node, each reaching every pod on the other nodes in each family.
    let pods: BTreeMap<u8, Pod> = (1..=3).map(|i| (i, c.add_pod(i))).collect();
    for (i, from) in &pods {
        for (j, to) in &pods {
            if i == j {
                continue;
            }
            for &family in plan.families() {
                let addr = to.ip(family).expect("pod address");
                c.wait_ping(
                    from,
                    addr,
                    &format!("pod on node{i} pings {addr} on node{j}"),
                );
            }
        }
    }
    // Each node holds the other nodes' pod CIDRs and the ToR's prefixes as its own routes (proto 44), and not
    // its own pod CIDRs.
    let tor_owned: Vec<IpNet> = tor_prefixes(plan);
    for i in 1..=3u8 {
        let mut wanted: Vec<IpNet> = tor_owned.clone();
        for j in (1..=3u8).filter(|j| *j != i) {
            wanted.extend(c.node(j).pod_cidrs.iter().copied());
        }
        c.wait_routes(i, "other nodes' pod CIDRs and the ToR's prefixes", |r| {
            wanted.iter().all(|w| r.contains(w))
        });
        let routes = c.fairlead_routes(i);
        for own in &c.node(i).pod_cidrs {
            assert!(
                !routes.contains(own),
                "node{i} routes its own {own}: {routes:?}"
            );
        }
        // Filtering: the ToR offers them (its table holds them) but no node takes them.
        for bad in filtered_prefixes(plan) {
            assert!(
                !routes.contains(&bad),
                "node{i} installed {bad}: {routes:?}"
            );
        }
    }
    for (i, pod) in &pods {
        for prefix in &tor_owned {
            let addr = first_host(prefix);
            c.wait_ping(pod, addr, &format!("pod on node{i} pings the ToR's {addr}"));
        }
    }

    // Node deleted: its pod CIDRs leave the other nodes' kernels (its fairlead still runs: the peers must drop
    // it because the Node is gone, not because its sessions closed).
    c.delete_node(3);
    let gone = c.node(3).pod_cidrs.clone();
    for i in 1..=2 {
        c.wait_routes(i, "node3's pod CIDRs withdrawn", |r| {
            gone.iter().all(|g| !r.contains(g))
        });
    }
    assert!(
        c.fairlead_alive(3),
        "fairlead on node3 exited:\n{}",
        c.log(3)
    );
    c.stop_fairlead(3);

    // Node added: node4 joins, its pods are reachable and reach the others.
    c.write_node(4, &[]);
    c.start_fairlead(4);
    c.wait_tor_sessions(4);
    let pod4 = c.add_pod(4);
    for i in 1..=2 {
        for &family in plan.families() {
            let to4 = pod4.ip(family).unwrap();
            c.wait_ping(
                &pods[&i],
                to4,
                &format!("pod on node{i} pings {to4} on node4"),
            );
            let back = pods[&i].ip(family).unwrap();
            c.wait_ping(
                &pod4,
                back,
                &format!("pod on node4 pings {back} on node{i}"),
            );
        }
    }

    // An external peer added by annotation at run time: the session comes up, the peer's prefix is installed,
    // fairlead was not restarted and the ToR sessions stayed up.
    let edge = c.topo.router("edge").unwrap();
    let edge_addr = edge.address(plan.primary()).unwrap();
    let node1_addr = c.node(1).address(plan.primary()).unwrap();
    let edge_spec = RouterSpec::new(edge.router_id, EDGE_ASN)
        .listen(edge_addr)
        .neighbor(Neighbor::new(node1_addr, CLUSTER_ASN))
        .announce(edge_prefix(plan));
    let edge_bird =
        Bird::start(c.topo.guard(), &edge.netns, "bird-edge", &edge_spec).expect("start edge bird");
    let pid_before = c.fairlead[&1];
    let log_mark = c.log(1).len();
    c.write_node(
        1,
        &[(
            "fairlead.io/peers",
            format!("- remoteIP: \"{edge_addr}\"\n  remoteASN: {EDGE_ASN}\n"),
        )],
    );
    edge_bird
        .wait_established(node1_addr, SESSION_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let edge_prefix = edge_prefix(plan);
    c.wait_routes(1, "the edge router's prefix", |r| r.contains(&edge_prefix));
    assert!(
        c.fairlead_alive(1),
        "fairlead on node1 exited:\n{}",
        c.log(1)
    );
    assert_eq!(c.fairlead[&1], pid_before);
    for &family in plan.families() {
        let addr = c.node(1).address(family).unwrap();
        assert!(
            c.tor.session_established(addr).unwrap(),
            "ToR session with node1 ({addr}) went down on an unrelated annotation change"
        );
    }
    // No other node got the edge session.
    assert!(
        !c.fairlead_routes(2).contains(&edge_prefix),
        "node2 installed the edge prefix"
    );
    let since = c.log(1).split_off(log_mark);
    assert!(
        since.contains("BGP peer added")
            && !since.contains("BGP peer updated")
            && !since.contains("BGP peer removed"),
        "the annotation must add one session and touch no other:\n{since}"
    );

    // Bad input: an annotation that does not parse is logged with the node's name and skipped; the node keeps
    // its sessions and routes and its pods stay reachable.
    c.write_node(
        2,
        &[(
            "fairlead.io/peers",
            "- remoteIP: not-an-address\n  remoteASN: 65001\n".into(),
        )],
    );
    wait_until(
        "node2 logs the bad annotation",
        CONVERGE_TIMEOUT,
        POLL,
        || {
            c.log(2).lines().any(|l| {
                l.contains("WARN") && l.contains("node2") && l.contains("fairlead.io/peers")
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(
        c.fairlead_alive(2),
        "fairlead on node2 exited:\n{}",
        c.log(2)
    );
    for &family in plan.families() {
        let to = pods[&2].ip(family).unwrap();
        c.wait_ping(
            &pods[&1],
            to,
            &format!("pod on node1 still pings {to} on node2"),
        );
        let addr = c.node(2).address(family).unwrap();
        assert!(
            c.tor.session_established(addr).unwrap(),
            "ToR session with node2 ({addr}) lost"
        );
    }

    // Restart: SIGTERM stops fairlead cleanly and leaves its kernel routes (no flush); a new fairlead reads them
    // back, keeps them, and converges again.
    let before = c.fairlead_routes(2);
    assert!(!before.is_empty());
    c.stop_fairlead(2);
    let stopped_log = c.log(2);
    assert!(
        stopped_log.contains("fairlead stopped") && !stopped_log.contains("ERROR"),
        "unclean stop:\n{}",
        tail(&stopped_log, 8)
    );
    let after_stop = c.fairlead_routes(2);
    for r in &before {
        assert!(
            after_stop.contains(r),
            "{r} flushed on stop: {after_stop:?}"
        );
    }
    c.start_fairlead(2);
    wait_until(
        "node2 reads back its routes",
        CONVERGE_TIMEOUT,
        POLL,
        || {
            c.log(2)
                .contains("kept the kernel routes of the previous run")
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    c.wait_tor_sessions(2);
    for &family in plan.families() {
        let to = pods[&2].ip(family).unwrap();
        c.wait_ping(
            &pod4,
            to,
            &format!("pod on node4 pings {to} on node2 after its restart"),
        );
        let back = pod4.ip(family).unwrap();
        c.wait_ping(
            &pods[&2],
            back,
            &format!("pod on node2 pings {back} after its restart"),
        );
    }
}

/// Route reflection by annotation: node1 reflects (`rr.server`), node2 and node3 are its clients and do not peer
/// with each other, yet their pods reach each other with the next hop kept (RFC 4456). Then fairlead on node2 is
/// killed with SIGKILL: its kernel routes survive, and a new fairlead reads them back and converges.
fn route_reflector_e2e(plan: AddressPlan) {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let mut c = Cluster::new(plan);
    c.write_node(1, &[("fairlead.io/rr.server", "1".into())]);
    c.write_node(2, &[("fairlead.io/rr.client", "1".into())]);
    c.write_node(3, &[("fairlead.io/rr.client", "1".into())]);
    for i in 1..=3 {
        c.start_fairlead(i);
    }
    let pods: BTreeMap<u8, Pod> = (1..=3).map(|i| (i, c.add_pod(i))).collect();
    for (i, j) in [(2u8, 3u8), (3, 2), (1, 2), (2, 1)] {
        for &family in plan.families() {
            let to = pods[&j].ip(family).unwrap();
            c.wait_ping(
                &pods[&i],
                to,
                &format!("pod on node{i} pings {to} on node{j}"),
            );
        }
    }
    for &family in plan.families() {
        let cidr = c.node(3).pod_cidr(family).unwrap().to_string();
        let via = c.node(3).address(family).unwrap().to_string();
        let fam = if family == Family::V6 { "-6" } else { "-4" };
        let route = exec_in(
            &c.node(2).netns,
            &["ip", fam, "route", "show", &cidr, "proto", "44"],
        )
        .unwrap();
        assert!(
            route.contains(&format!("via {via}")),
            "node2 -> {cidr}: next hop must stay node3's {via}: {route}"
        );
    }
    let node3 = c.node(3).address(plan.primary()).unwrap();
    assert!(
        !c.log(2).contains(&format!("BGP peer added peer={node3}")),
        "two route-reflector clients peered"
    );
    assert!(c.log(2).contains(&format!(
        "BGP peer added peer={}",
        c.node(1).address(plan.primary()).unwrap()
    )));

    // SIGKILL: nothing is cleaned up by fairlead; the routes stay in node2's kernel.
    let before = c.fairlead_routes(2);
    assert!(!before.is_empty());
    let pid = c.fairlead[&2];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL fairlead");
    c.stop_fairlead(2); // reaps it
    let after_kill = c.fairlead_routes(2);
    for r in &before {
        assert!(
            after_kill.contains(r),
            "{r} gone after SIGKILL: {after_kill:?}"
        );
    }
    // Graceful restart (RFC 4724): the sessions dropped without a NOTIFICATION, so the reflector and node3 keep
    // node2's routes as stale, and node2's pods stay reachable while no fairlead runs there. (A withdrawal takes
    // milliseconds; after 3 s it would have happened.)
    std::thread::sleep(Duration::from_secs(3));
    let on3 = c.fairlead_routes(3);
    for cidr in &c.pod_cidrs(2) {
        assert!(
            on3.contains(cidr),
            "node3 dropped {cidr} while node2 restarts: {on3:?}"
        );
    }
    for &family in plan.families() {
        let to = pods[&2].ip(family).unwrap();
        ping(&pods[&3].netns, to)
            .unwrap_or_else(|e| panic!("node3 pod -> {to} while node2's fairlead is down: {e}"));
    }
    c.start_fairlead(2);
    wait_until(
        "node2 reads back its routes",
        CONVERGE_TIMEOUT,
        POLL,
        || {
            c.log(2)
                .contains("kept the kernel routes of the previous run")
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    for (i, j) in [(2u8, 3u8), (3, 2)] {
        for &family in plan.families() {
            let to = pods[&j].ip(family).unwrap();
            c.wait_ping(
                &pods[&i],
                to,
                &format!("after the restart, node{i} pod pings {to}"),
            );
        }
    }
}

/// Two segments joined by the ToR: the iBGP full mesh spans both, and a next hop on the other segment (not
/// on-link) is installed through the kernel's route towards it (the ToR), which knows the pod CIDRs over eBGP.
fn two_segments_e2e(plan: AddressPlan) {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let mut c = Cluster::with_layout(plan, Layout::TwoSegments);
    for i in 1..=4 {
        c.write_node(i, &[]);
    }
    for i in 1..=4 {
        c.start_fairlead(i);
    }
    for i in 1..=4 {
        c.wait_tor_sessions(i);
    }
    let pods: BTreeMap<u8, Pod> = (1..=4).map(|i| (i, c.add_pod(i))).collect();
    for (i, j) in [(1u8, 3u8), (3, 1), (2, 4), (4, 2), (1, 2), (3, 4)] {
        for &family in plan.families() {
            let to = pods[&j].ip(family).unwrap();
            c.wait_ping(
                &pods[&i],
                to,
                &format!("pod on node{i} pings {to} on node{j}"),
            );
        }
    }
    let tor = c.topo.router("tor").unwrap();
    for &family in plan.families() {
        let fam = if family == Family::V6 { "-6" } else { "-4" };
        let check = |from: u8, to: u8, via: IpAddr| {
            let cidr = c.node(to).pod_cidr(family).unwrap().to_string();
            let route = exec_in(
                &c.node(from).netns,
                &["ip", fam, "route", "show", &cidr, "proto", "44"],
            )
            .unwrap();
            assert!(
                route.contains(&format!("via {via}")),
                "node{from} -> {cidr} must go via {via}: {route}"
            );
        };
        // Across segments: through the ToR's address on the local segment.
        check(1, 3, tor.address_on(1, family).unwrap());
        check(3, 1, tor.address_on(2, family).unwrap());
        // Same segment: straight to the node.
        check(1, 2, c.node(2).address(family).unwrap());
    }
}

#[test]
fn two_segments_ipv6_only() {
    two_segments_e2e(AddressPlan::Ipv6Only);
}

#[test]
fn two_segments_dual_stack_v6_primary() {
    two_segments_e2e(AddressPlan::DualStackV6Primary);
}

#[test]
fn two_segments_dual_stack_v4_primary() {
    two_segments_e2e(AddressPlan::DualStackV4Primary);
}

#[test]
fn two_segments_ipv4_only() {
    two_segments_e2e(AddressPlan::Ipv4Only);
}

/// NDP proxy: node1's pods take IPv6 addresses from the uplink's own /64 (pod CIDR fd00:0:0:1:1::/80), so a
/// router on the segment without any route to them (the edge router, no BGP) resolves them with neighbour
/// solicitations; fairlead (`--ndp-proxy-interface eth0`) answers for the pods its Pod objects list on its node,
/// and only for those. IPv6 only by nature: the IPv4-only plan has no NDP.
fn ndp_proxy_e2e(plan: AddressPlan) {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let mut c = Cluster::new(plan);
    let segment_v6: IpNet = "fd00:0:0:1::/64".parse().unwrap();
    for i in 1..=2u8 {
        let cidrs: Vec<IpNet> = plan
            .families()
            .iter()
            .map(|f| match f {
                Family::V6 => format!("fd00:0:0:1:{i}::/80").parse().unwrap(),
                Family::V4 => c.node(i).pod_cidr(Family::V4).unwrap(),
            })
            .collect();
        c.pod_cidrs.insert(i, cidrs);
    }
    c.cluster_cidr = Some(
        plan.families()
            .iter()
            .map(|f| match f {
                Family::V6 => segment_v6.to_string(),
                Family::V4 => xcluster_tests::plan::cluster_cidr(Family::V4).to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
    );
    c.extra_args = vec!["--ndp-proxy-interface".into(), "eth0".into()];
    for i in 1..=2 {
        c.write_node(i, &[]);
        c.start_fairlead(i);
    }
    let pod = c.add_pod(1);
    let v6 = pod.ip(Family::V6).expect("pod IPv6 address");
    assert!(c.pod_cidrs(1)[..].iter().any(|n| n.contains(&v6)), "{v6}");
    let edge = c.topo.router("edge").unwrap();

    // Before fairlead knows the pod (no Pod object), nobody answers for it on the segment.
    assert!(
        ping(&edge.netns, v6).is_err(),
        "the edge router reached {v6} without an NDP proxy entry"
    );
    c.write_pod("p1", 1, &pod.ips);
    wait_until(
        "node1 proxies the pod's address",
        CONVERGE_TIMEOUT,
        POLL,
        || c.ndp_proxies(1).contains(&v6.to_string()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    wait_until(
        &format!("the edge router pings {v6} by NDP"),
        CONVERGE_TIMEOUT,
        POLL,
        || ping(&edge.netns, v6).is_ok(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(
        !c.ndp_proxies(2).contains(&v6.to_string()),
        "node2 proxies a pod of node1: {}",
        c.ndp_proxies(2)
    );
    // The pod goes: so does the entry.
    c.delete_pod("p1");
    wait_until(
        "node1 drops the proxy entry",
        CONVERGE_TIMEOUT,
        POLL,
        || !c.ndp_proxies(1).contains(&v6.to_string()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
}

#[test]
fn ndp_proxy_ipv6_only() {
    ndp_proxy_e2e(AddressPlan::Ipv6Only);
}

#[test]
fn ndp_proxy_dual_stack_v6_primary() {
    ndp_proxy_e2e(AddressPlan::DualStackV6Primary);
}

#[test]
fn ndp_proxy_dual_stack_v4_primary() {
    ndp_proxy_e2e(AddressPlan::DualStackV4Primary);
}

#[test]
fn route_reflector_ipv6_only() {
    route_reflector_e2e(AddressPlan::Ipv6Only);
}

#[test]
fn route_reflector_dual_stack_v6_primary() {
    route_reflector_e2e(AddressPlan::DualStackV6Primary);
}

#[test]
fn route_reflector_dual_stack_v4_primary() {
    route_reflector_e2e(AddressPlan::DualStackV4Primary);
}

#[test]
fn route_reflector_ipv4_only() {
    route_reflector_e2e(AddressPlan::Ipv4Only);
}

#[test]
fn ipv6_only() {
    router_e2e(AddressPlan::Ipv6Only);
}

#[test]
fn dual_stack_v6_primary() {
    router_e2e(AddressPlan::DualStackV6Primary);
}

#[test]
fn dual_stack_v4_primary() {
    router_e2e(AddressPlan::DualStackV4Primary);
}

#[test]
fn ipv4_only() {
    router_e2e(AddressPlan::Ipv4Only);
}
