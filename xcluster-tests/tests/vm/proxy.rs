//! fairlead's proxy (controller + dataplane) in a node namespace, with real TCP traffic through IPVS: pods made
//! by the CNI bridge plugin serve their name, a client pod and a router namespace connect through ClusterIPs and
//! NodePorts; draining, restart without flush, ownership of foreign virtual servers, masquerade and reject.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use ipnet::IpNet;
use proxy::controller::{
    ClusterObjects, EndpointSlice, ProxyConfig, ProxyController, Service, SyncOutcome,
};
use proxy::dataplane::{DataplaneConfig, VIP_INTERFACE};
use proxy::model::{NodeContext, NodePortAddresses};
use serde_json::json;
use xcluster_tests::plan::service_cidr;
use xcluster_tests::{AddressPlan, Family, Pod, Topology, TopologyBuilder, exec_in, wait_until};

use crate::support::{require_vm, run};

const BACKEND_PORT: u16 = 8080;
const UDP_BACKEND_PORT: u16 = 5353;
const UDP_SERVICE_PORT: u16 = 53;
/// The client's fixed UDP source port: its datagrams form one flow (one conntrack entry, one IPVS connection).
const UDP_CLIENT_PORT: u16 = 40053;
const SERVICE_PORT: u16 = 80;
const NODE_PORT: u16 = 30080;
/// A port nothing serves on a VIP; the node itself listens on it, so only the reject rule can refuse it.
const UNUSED_PORT: u16 = 9999;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The VIP of the test Service in `family`: address 10 of the plan's service CIDR.
fn cluster_ip(family: Family) -> IpAddr {
    match service_cidr(family) {
        IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) + 10)),
        IpNet::V4(n) => IpAddr::V4((u32::from(n.network()) + 10).into()),
    }
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::V6 => "IPv6",
        Family::V4 => "IPv4",
    }
}

/// Runs `f` on a thread inside network namespace `netns` (so sockets it opens live there).
fn in_netns<R: Send + 'static>(netns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// A TCP connection opened from `netns`, and the first line the server sent (`<name> <peer address>`).
struct Conn {
    stream: BufReader<TcpStream>,
    name: String,
    peer: IpAddr,
}

impl Conn {
    fn open(netns: &str, to: SocketAddr) -> std::io::Result<Conn> {
        let stream = in_netns(netns, move || TcpStream::connect_timeout(&to, IO_TIMEOUT))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        stream.read_line(&mut line)?;
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_owned();
        let peer = words
            .next()
            .map(|w| w.trim_matches(['[', ']']))
            .and_then(|w| w.parse::<IpAddr>().ok())
            .map(|a| match a {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
                v4 => v4,
            })
            .ok_or_else(|| std::io::Error::other(format!("bad greeting {line:?} from {to}")))?;
        Ok(Conn { stream, name, peer })
    }

    /// Sends a line and reads it back (the server echoes after its greeting): the connection still works.
    fn echo(&mut self, text: &str) -> std::io::Result<()> {
        self.stream
            .get_mut()
            .write_all(format!("{text}\n").as_bytes())?;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        if line.trim_end() == text {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "echo {text:?} came back as {line:?}"
            )))
        }
    }
}

/// Connects `n` times and returns how often each backend name answered, and the peer addresses backends saw.
fn spread(netns: &str, to: SocketAddr, n: usize) -> (BTreeMap<String, usize>, BTreeSet<IpAddr>) {
    let mut names = BTreeMap::new();
    let mut peers = BTreeSet::new();
    for i in 0..n {
        let c = Conn::open(netns, to)
            .unwrap_or_else(|e| panic!("connection {i} to {to} from {netns}: {e}"));
        *names.entry(c.name).or_default() += 1;
        peers.insert(c.peer);
    }
    (names, peers)
}

/// Work for the controller's thread.
type Job = Box<dyn FnOnce(&mut Option<ProxyController>) + Send>;

/// The controller, living on a thread inside the node's namespace; jobs run there one at a time.
struct ProxyThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProxyThread {
    fn start(netns: &str) -> Self {
        let path = format!("/run/netns/{netns}");
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            let mut controller = None;
            for job in rx {
                job(&mut controller);
            }
        });
        Self {
            jobs: Some(tx),
            thread: Some(thread),
        }
    }

    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Option<ProxyController>) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .expect("proxy thread running")
            .send(Box::new(move |c| {
                let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                    || f(c),
                )));
            }))
            .expect("proxy thread alive");
        match rx
            .recv_timeout(Duration::from_secs(60))
            .expect("proxy thread answered")
        {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// (Re)creates the controller in the namespace: a restart when one existed.
    fn start_controller(&self, config: ProxyConfig) {
        self.call(move |c| {
            *c = None;
            *c = Some(ProxyController::new(config).expect("open the proxy dataplane"));
        });
    }

    fn sync(&self, services: Vec<Service>, slices: Vec<EndpointSlice>) -> SyncOutcome {
        self.call(move |c| c.as_mut().expect("controller").sync(&services, &slices))
    }

    fn resync(&self) -> SyncOutcome {
        self.call(|c| {
            c.as_mut()
                .expect("controller")
                .resync()
                .expect("a sync happened before")
        })
    }
}

impl Drop for ProxyThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One node with backend pods and a client pod, a router on the node's segment, and the proxy on the node.
struct Cluster {
    // First: the controller's thread ends before the namespaces go.
    proxy: ProxyThread,
    topo: Topology,
    node_netns: String,
    node_name: String,
    backends: Vec<(String, Pod)>,
    client: Pod,
    config: ProxyConfig,
}

impl Cluster {
    fn new(plan: AddressPlan, backends: usize) -> Cluster {
        require_vm();
        // Bridged replies of a pod to a client pod on the same bridge must pass IPVS to be un-NATed.
        run("modprobe", &["br_netfilter"]);
        let topo = TopologyBuilder::new(plan)
            .segments(1)
            .nodes(1)
            .router("r", &[1])
            .build()
            .expect("topology");
        let node = topo.node(1).expect("node1").clone();
        let conflist = topo.bridge_conflist(&node);
        let mut pods = Vec::new();
        for i in 1..=backends {
            let pod = topo.add_pod(&node, &conflist).expect("backend pod");
            let name = format!("backend{i}");
            let reply = format!("echo {name} $SOCAT_PEERADDR; cat");
            topo.guard()
                .spawn_in(
                    &pod.netns,
                    &name,
                    "socat",
                    &[
                        &format!("TCP6-LISTEN:{BACKEND_PORT},fork,reuseaddr,ipv6only=0"),
                        &format!("SYSTEM:{reply}"),
                    ],
                )
                .expect("start socat");
            topo.guard()
                .spawn_in(
                    &pod.netns,
                    &format!("{name}-udp"),
                    "socat",
                    &[
                        &format!("UDP6-RECVFROM:{UDP_BACKEND_PORT},fork,ipv6only=0"),
                        &format!("SYSTEM:echo {name}"),
                    ],
                )
                .expect("start socat (UDP)");
            pods.push((name, pod));
        }
        let client = topo.add_pod(&node, &conflist).expect("client pod");
        for (name, pod) in &pods {
            for &family in plan.families() {
                let ip = pod.ip(family).expect("pod address");
                wait_until(
                    &format!("{name} listening on {ip}"),
                    Duration::from_secs(10),
                    Duration::from_millis(100),
                    || Conn::open(&client.netns, SocketAddr::new(ip, BACKEND_PORT)).is_ok(),
                )
                .expect("backend up");
            }
        }
        let config = ProxyConfig {
            node: NodeContext {
                name: node.name.clone(),
                zone: None,
                addresses: node.addresses.iter().map(IpNet::addr).collect(),
                node_port_addresses: NodePortAddresses::all(),
            },
            cluster_cidrs: plan.cluster_cidrs(),
            dataplane: DataplaneConfig {
                drain_grace: Duration::from_secs(3),
                ..DataplaneConfig::default()
            },
            resync_period: Duration::from_secs(30),
        };
        let proxy = ProxyThread::start(&node.netns);
        proxy.start_controller(config.clone());
        Cluster {
            proxy,
            node_netns: node.netns.clone(),
            node_name: node.name.clone(),
            topo,
            backends: pods,
            client,
            config,
        }
    }

    fn plan(&self) -> AddressPlan {
        self.topo.plan()
    }

    /// The `web` Service: NodePort, one port, the plan's families in its order.
    fn service(&self) -> Service {
        let families: Vec<Family> = self.plan().families().to_vec();
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "NodePort",
                "clusterIP": cluster_ip(families[0]).to_string(),
                "clusterIPs": families.iter().map(|&f| cluster_ip(f).to_string()).collect::<Vec<_>>(),
                "ipFamilies": families.iter().map(|&f| family_name(f)).collect::<Vec<_>>(),
                "ipFamilyPolicy": if families.len() == 2 { "RequireDualStack" } else { "SingleStack" },
                "externalTrafficPolicy": "Cluster",
                "ports": [{"name": "http", "protocol": "TCP", "port": SERVICE_PORT,
                           "targetPort": BACKEND_PORT, "nodePort": NODE_PORT},
                          {"name": "dns", "protocol": "UDP", "port": UDP_SERVICE_PORT,
                           "targetPort": UDP_BACKEND_PORT}],
            },
        }))
        .expect("Service")
    }

    /// One EndpointSlice per family with the named backends (all ready, on this node).
    fn slices(&self, backends: &[&str]) -> Vec<EndpointSlice> {
        self.plan()
            .families()
            .iter()
            .map(|&family| {
                let endpoints: Vec<_> = self
                    .backends
                    .iter()
                    .filter(|(name, _)| backends.contains(&name.as_str()))
                    .map(|(name, pod)| {
                        json!({
                            "addresses": [pod.ip(family).expect("pod address").to_string()],
                            "conditions": {"ready": true, "serving": true, "terminating": false},
                            "nodeName": self.node_name,
                            "targetRef": {"kind": "Pod", "name": name, "namespace": "default"},
                        })
                    })
                    .collect();
                serde_json::from_value(json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": format!("web-{}", family_name(family).to_lowercase()),
                                 "namespace": "default",
                                 "labels": {"kubernetes.io/service-name": "web"}},
                    "addressType": family_name(family),
                    "endpoints": endpoints,
                    "ports": [{"name": "http", "protocol": "TCP", "port": BACKEND_PORT},
                              {"name": "dns", "protocol": "UDP", "port": UDP_BACKEND_PORT}],
                }))
                .expect("EndpointSlice")
            })
            .collect()
    }

    fn all_backends(&self) -> Vec<&str> {
        self.backends.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn sync(&self, backends: &[&str]) -> SyncOutcome {
        let outcome = self.proxy.sync(vec![self.service()], self.slices(backends));
        assert!(
            outcome.warnings.is_empty(),
            "model warnings: {:?}",
            outcome.warnings
        );
        assert!(
            outcome.report.errors.is_empty(),
            "dataplane errors: {:?}",
            outcome.report.errors
        );
        outcome
    }

    fn node_address(&self, family: Family) -> IpAddr {
        self.topo
            .node(1)
            .expect("node1")
            .address(family)
            .expect("node address")
    }

    /// The node's IPVS table as `ipvsadm -Ln` prints it.
    fn ipvsadm(&self) -> String {
        exec_in(&self.node_netns, &["ipvsadm", "-Ln"]).expect("ipvsadm -Ln")
    }
}

/// Whether `addr` is configured on an interface of `netns`.
fn has_address(netns: &str, addr: IpAddr) -> bool {
    let out = exec_in(netns, &["ip", "-j", "addr", "show"]).expect("ip addr");
    let links: serde_json::Value = serde_json::from_str(&out).expect("ip -j addr");
    links
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().and_then(|s| s.parse::<IpAddr>().ok()))
        .any(|a| a == addr)
}

/// ClusterIP of each family from a client pod and from a backend (hairpin), NodePort of each family from the
/// router, VIPs on the dummy interface, reject on unused VIP ports, foreign virtual servers left alone.
fn traffic(plan: AddressPlan) {
    let cluster = Cluster::new(plan, 3);
    let names: BTreeSet<String> = cluster.backends.iter().map(|(n, _)| n.clone()).collect();
    let node = cluster.node_netns.clone();

    // Another tool's virtual servers: one on a free address, one on the node address outside the NodePort range.
    let foreign: Vec<String> = plan
        .families()
        .iter()
        .flat_map(|&f| {
            let free = match f {
                Family::V6 => "[fd00:99::1]:80".to_owned(),
                Family::V4 => "198.18.160.1:80".to_owned(),
            };
            [
                free,
                SocketAddr::new(cluster.node_address(f), 8443).to_string(),
            ]
        })
        .collect();
    for vs in &foreign {
        exec_in(&node, &["ipvsadm", "-A", "-t", vs, "-s", "wlc"]).expect("foreign virtual server");
    }

    let first = cluster.sync(&cluster.all_backends());
    assert!(
        first.report.operations > 0,
        "first sync applied nothing: {:?}",
        first.report
    );
    let again = cluster.proxy.resync();
    assert_eq!(
        again.report.operations, 0,
        "a second sync of the same objects changed IPVS"
    );
    assert!(again.report.errors.is_empty(), "{:?}", again.report.errors);

    let table = cluster.ipvsadm();
    for vs in &foreign {
        assert!(
            table.contains(&format!("TCP  {vs} wlc")),
            "foreign {vs} was touched:\n{table}"
        );
    }
    let dummy = exec_in(&node, &["ip", "-d", "addr", "show", "dev", VIP_INTERFACE])
        .expect("dummy interface");
    assert!(dummy.contains("dummy"), "{dummy}");

    let listener = cluster
        .topo
        .guard()
        .spawn_in(
            &node,
            "node-listener",
            "socat",
            &[
                &format!("TCP6-LISTEN:{UNUSED_PORT},fork,reuseaddr,ipv6only=0"),
                "SYSTEM:echo node-itself $SOCAT_PEERADDR",
            ],
        )
        .expect("node listener");

    for &family in plan.families() {
        let vip = cluster_ip(family);
        assert!(
            has_address(&node, vip),
            "VIP {vip} not on {VIP_INTERFACE}:\n{dummy}"
        );
        let client_ip = cluster.client.ip(family).expect("client address");

        // Spread: round robin over 3 backends, 6 connections -> each twice; the client keeps its address.
        let (seen, peers) = spread(&cluster.client.netns, SocketAddr::new(vip, SERVICE_PORT), 6);
        assert_eq!(
            seen.keys().cloned().collect::<BTreeSet<_>>(),
            names,
            "{family:?} ClusterIP spread: {seen:?}"
        );
        assert!(seen.values().all(|&n| n == 2), "round robin: {seen:?}");
        assert_eq!(
            peers,
            BTreeSet::from([client_ip]),
            "pod-to-ClusterIP must not be masqueraded"
        );

        // Hairpin: backend1 reaches itself through the VIP, masqueraded to a node address.
        let (name1, pod1) = &cluster.backends[0];
        let own = pod1.ip(family).expect("backend address");
        let mut to_itself = 0;
        for _ in 0..6 {
            let c = Conn::open(&pod1.netns, SocketAddr::new(vip, SERVICE_PORT))
                .expect("hairpin connection");
            if &c.name == name1 {
                to_itself += 1;
                assert_ne!(c.peer, own, "hairpin connection not masqueraded");
                assert!(
                    has_address(&node, c.peer),
                    "hairpin peer {} is not a node address",
                    c.peer
                );
            }
        }
        assert_eq!(
            to_itself, 2,
            "{name1} reached itself {to_itself} times out of 6"
        );

        // NodePort from the router: every backend, source masqueraded to a node address (ETP Cluster).
        let router = cluster.topo.router("r").expect("router");
        let node_ip = cluster.node_address(family);
        let (seen, peers) = spread(&router.netns, SocketAddr::new(node_ip, NODE_PORT), 6);
        assert_eq!(
            seen.keys().cloned().collect::<BTreeSet<_>>(),
            names,
            "{family:?} NodePort spread: {seen:?}"
        );
        let router_ip = router.address(family).expect("router address");
        for p in &peers {
            assert_ne!(
                *p, router_ip,
                "NodePort traffic from off-cluster must be masqueraded"
            );
            assert!(
                has_address(&node, *p),
                "NodePort peer {p} is not a node address"
            );
        }

        // ClusterIP from off-cluster (the router, given a route to the service CIDR): masqueraded.
        let route = service_cidr(family).to_string();
        exec_in(
            &router.netns,
            &[
                "ip",
                "route",
                "replace",
                &route,
                "via",
                &node_ip.to_string(),
            ],
        )
        .expect("router route to the service CIDR");
        let (seen, peers) = spread(&router.netns, SocketAddr::new(vip, SERVICE_PORT), 3);
        assert_eq!(
            seen.len(),
            3,
            "{family:?} ClusterIP from the router: {seen:?}"
        );
        for p in &peers {
            assert_ne!(
                *p, router_ip,
                "off-cluster traffic to a ClusterIP must be masqueraded"
            );
            assert!(
                has_address(&node, *p),
                "ClusterIP peer {p} is not a node address"
            );
        }

        // Unused port on the VIP: refused by the reject rule although the node listens on it (the node's own
        // address answers, so the listener is there).
        let own_answer = Conn::open(
            &cluster.client.netns,
            SocketAddr::new(pod_gateway(&cluster, family), UNUSED_PORT),
        )
        .expect("the node's listener answers on its own address");
        assert_eq!(own_answer.name, "node-itself");
        let refused = Conn::open(&cluster.client.netns, SocketAddr::new(vip, UNUSED_PORT));
        assert!(
            refused.is_err(),
            "VIP {vip} answered on unused port {UNUSED_PORT}"
        );
    }
    cluster
        .topo
        .guard()
        .stop(listener)
        .expect("stop node listener");

    let nft =
        exec_in(&node, &["nft", "list", "table", "inet", "fairlead-proxy"]).expect("nft list");
    assert!(nft.contains("masquerade"), "{nft}");
    let metrics = cluster
        .proxy
        .call(|c| c.as_ref().expect("controller").metrics().clone());
    assert_eq!(metrics.syncs, 2);
    assert!(metrics.duration_sum > Duration::ZERO);
    assert!(metrics.errors.is_empty(), "{:?}", metrics.errors);
    // The Service is deleted: its virtual servers, VIPs and nftables elements go; foreign ones stay.
    let gone = cluster.proxy.sync(Vec::new(), Vec::new());
    assert!(gone.report.errors.is_empty(), "{:?}", gone.report.errors);
    assert_eq!(
        gone.report.vips_deleted,
        plan.families().len(),
        "{:?}",
        gone.report
    );
    let table = cluster.ipvsadm();
    let nft =
        exec_in(&node, &["nft", "list", "table", "inet", "fairlead-proxy"]).expect("nft list");
    for &family in plan.families() {
        let vip = cluster_ip(family);
        assert!(
            !has_address(&node, vip),
            "VIP {vip} left on {VIP_INTERFACE}"
        );
        assert!(
            !table.contains(&vip.to_string()),
            "virtual server on {vip} left:\n{table}"
        );
        assert!(
            !nft.contains(&vip.to_string()),
            "{vip} left in the nftables table:\n{nft}"
        );
    }
    assert!(
        !table.contains(&format!(":{NODE_PORT}")),
        "NodePort left:\n{table}"
    );
    for vs in &foreign {
        assert!(
            table.contains(&format!("TCP  {vs} wlc")),
            "foreign {vs} was touched:\n{table}"
        );
    }

    eprintln!(
        "{}: first sync {:?} ({} operations), second {:?}",
        plan.tag(),
        first.duration,
        first.report.operations,
        again.duration
    );
}

/// The node's address on the pod bridge (the pods' gateway) of `family`.
fn pod_gateway(cluster: &Cluster, family: Family) -> IpAddr {
    let out = exec_in(
        &cluster.node_netns,
        &["ip", "-j", "addr", "show", "dev", "cni0"],
    )
    .expect("ip addr cni0");
    let links: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    links[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] == "global")
        .filter_map(|a| a["local"].as_str().and_then(|s| s.parse::<IpAddr>().ok()))
        .find(|a| Family::of(*a) == family)
        .expect("cni0 address of the family")
}

/// Removing a backend drains it (an open connection keeps working, new ones go elsewhere); a restarted
/// controller reads IPVS back and changes nothing (the open connection survives); once the connection is closed
/// the drained destination is deleted.
fn drain_and_restart(plan: AddressPlan) {
    let cluster = Cluster::new(plan, 2);
    let family = plan.primary();
    let vip = SocketAddr::new(cluster_ip(family), SERVICE_PORT);
    cluster.sync(&cluster.all_backends());

    let mut held = Conn::open(&cluster.client.netns, vip).expect("held connection");
    held.echo("before").expect("held connection works");
    let drained = held.name.clone();
    let kept: Vec<&str> = cluster
        .all_backends()
        .into_iter()
        .filter(|n| *n != drained)
        .collect();
    let drained_ip = cluster
        .backends
        .iter()
        .find(|(n, _)| *n == drained)
        .and_then(|(_, p)| p.ip(family))
        .expect("drained backend address");
    let drained_dest = SocketAddr::new(drained_ip, BACKEND_PORT).to_string();

    cluster.sync(&kept);
    let table = cluster.ipvsadm();
    let line = table
        .lines()
        .find(|l| l.contains(&drained_dest))
        .unwrap_or_else(|| panic!("drained destination {drained_dest} gone at once:\n{table}"));
    assert_eq!(
        line.split_whitespace().nth(3),
        Some("0"),
        "not at weight 0: {line}"
    );
    held.echo("while draining")
        .expect("held connection survives the drain");
    let (seen, _) = spread(&cluster.client.netns, vip, 4);
    assert!(
        !seen.contains_key(&drained),
        "new connections reached the drained {drained}: {seen:?}"
    );

    // Restart: a new controller reads back and diffs; nothing to change, nothing flushed.
    cluster.proxy.start_controller(cluster.config.clone());
    let restarted = cluster.sync(&kept);
    assert_eq!(
        restarted.report.operations, 0,
        "restart changed IPVS: {:?}",
        restarted.report
    );
    held.echo("after restart")
        .expect("held connection survives a restart");
    assert!(
        cluster.ipvsadm().contains(&drained_dest),
        "restart deleted the draining destination"
    );

    // Closing the connection lets the sweep delete the destination (no connections left, or grace over).
    drop(held);
    wait_until(
        "drained destination deleted",
        Duration::from_secs(20),
        Duration::from_millis(500),
        || {
            let outcome = cluster.proxy.resync();
            assert!(
                outcome.report.errors.is_empty(),
                "{:?}",
                outcome.report.errors
            );
            !cluster.ipvsadm().contains(&drained_dest)
        },
    )
    .expect("drained destination deleted");

    // Wanted again: it comes back at full weight.
    cluster.sync(&cluster.all_backends());
    let (seen, _) = spread(&cluster.client.netns, vip, 4);
    assert!(
        seen.contains_key(&drained),
        "{drained} is not back: {seen:?}"
    );
}

/// [`ProxyController::run`]: an update is applied, drift (a virtual server deleted by hand) is repaired by the
/// periodic resync, and the loop ends when the sender is dropped.
fn run_resyncs(plan: AddressPlan) {
    let cluster = Cluster::new(plan, 2);
    let config = ProxyConfig {
        resync_period: Duration::from_secs(1),
        ..cluster.config.clone()
    };
    cluster.proxy.start_controller(config);
    let (updates, rx) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    cluster
        .proxy
        .jobs
        .as_ref()
        .expect("proxy thread")
        .send(Box::new(move |c| {
            c.as_mut().expect("controller").run(rx);
            let _ = done_tx.send(c.as_ref().expect("controller").metrics().clone());
        }))
        .expect("proxy thread alive");
    updates
        .send(ClusterObjects {
            services: vec![cluster.service()],
            slices: cluster.slices(&cluster.all_backends()),
        })
        .expect("send update");
    let vips: Vec<String> = plan
        .families()
        .iter()
        .map(|&f| SocketAddr::new(cluster_ip(f), SERVICE_PORT).to_string())
        .collect();
    let present = |vs: &str| cluster.ipvsadm().contains(&format!("TCP  {vs} rr"));
    for vs in &vips {
        wait_until(
            &format!("{vs} programmed"),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || present(vs),
        )
        .expect("update applied");
    }
    for vs in &vips {
        exec_in(&cluster.node_netns, &["ipvsadm", "-D", "-t", vs]).expect("delete by hand");
        // No check that it is gone: the 1 s resync may already have put it back, which is what is tested.
        wait_until(
            &format!("{vs} restored"),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || present(vs),
        )
        .expect("resync repaired the drift");
        let (seen, _) = spread(
            &cluster.client.netns,
            vs.parse().expect("socket address"),
            2,
        );
        assert_eq!(seen.len(), 2, "{seen:?}");
    }
    drop(updates);
    let metrics = done
        .recv_timeout(Duration::from_secs(10))
        .expect("run returned after the sender was dropped");
    assert!(metrics.syncs >= 2, "{metrics:?}");
    assert!(metrics.errors.is_empty(), "{:?}", metrics.errors);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn run_resyncs_ipv6_only() {
    run_resyncs(AddressPlan::Ipv6Only);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn run_resyncs_dual_stack_v4_primary() {
    run_resyncs(AddressPlan::DualStackV4Primary);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn run_resyncs_ipv4_only() {
    run_resyncs(AddressPlan::Ipv4Only);
}

/// Asks the UDP service once from the client's fixed source port; returns the backend name.
fn udp_ask(socket: &UdpSocket, to: SocketAddr) -> std::io::Result<String> {
    socket.send_to(b"who\n", to)?;
    let mut buf = [0u8; 128];
    let (n, from) = socket.recv_from(&mut buf)?;
    if from != to {
        return Err(std::io::Error::other(format!(
            "answer from {from}, asked {to}"
        )));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
}

/// A UDP flow sticks to its backend; when that backend is removed its destination is deleted at once and the
/// flow's conntrack entry is flushed, so the next datagram of the same flow reaches a remaining backend.
fn udp_flush(plan: AddressPlan) {
    let cluster = Cluster::new(plan, 2);
    cluster.sync(&cluster.all_backends());
    for &family in plan.families() {
        let vip = SocketAddr::new(cluster_ip(family), UDP_SERVICE_PORT);
        let bind = match family {
            Family::V6 => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), UDP_CLIENT_PORT),
            Family::V4 => {
                SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), UDP_CLIENT_PORT)
            }
        };
        let socket = in_netns(&cluster.client.netns, move || UdpSocket::bind(bind))
            .expect("client UDP socket");
        socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let first = udp_ask(&socket, vip).expect("UDP answer");
        for _ in 0..3 {
            assert_eq!(
                udp_ask(&socket, vip).expect("UDP answer"),
                first,
                "a UDP flow must stick to its backend"
            );
        }
        let rest: Vec<&str> = cluster
            .all_backends()
            .into_iter()
            .filter(|n| *n != first)
            .collect();
        let removed = cluster.sync(&rest);
        assert!(
            removed.report.errors.is_empty(),
            "{:?}",
            removed.report.errors
        );
        let table = cluster.ipvsadm();
        let first_ip = cluster
            .backends
            .iter()
            .find(|(n, _)| *n == first)
            .and_then(|(_, p)| p.ip(family))
            .expect("backend address");
        assert!(
            !table.contains(&SocketAddr::new(first_ip, UDP_BACKEND_PORT).to_string()),
            "UDP destination not deleted at once:\n{table}"
        );
        // The flow's conntrack entry towards the removed endpoint is gone (flushed by fairlead, or already by
        // the kernel: with expire_nodest_conn=1, Linux >= 5.9 expires a deleted destination's connections and
        // their conntrack entries itself).
        let family_arg = match family {
            Family::V6 => "ipv6",
            Family::V4 => "ipv4",
        };
        let left = exec_in(
            &cluster.node_netns,
            &[
                "conntrack",
                "-L",
                "-f",
                family_arg,
                "-p",
                "udp",
                "--reply-src",
                &first_ip.to_string(),
            ],
        )
        .expect("conntrack -L");
        assert!(
            left.trim().is_empty(),
            "conntrack entries towards {first} left: {left}"
        );
        let after = udp_ask(&socket, vip).expect("UDP answer after the flush");
        assert_ne!(after, first, "the flow still reaches the removed backend");
        // Back to all backends for the next family.
        cluster.sync(&cluster.all_backends());
    }
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn udp_flush_ipv6_only() {
    udp_flush(AddressPlan::Ipv6Only);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn udp_flush_dual_stack_v6_primary() {
    udp_flush(AddressPlan::DualStackV6Primary);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn udp_flush_ipv4_only() {
    udp_flush(AddressPlan::Ipv4Only);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn traffic_ipv6_only() {
    traffic(AddressPlan::Ipv6Only);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn traffic_dual_stack_v6_primary() {
    traffic(AddressPlan::DualStackV6Primary);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn traffic_dual_stack_v4_primary() {
    traffic(AddressPlan::DualStackV4Primary);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn traffic_ipv4_only() {
    traffic(AddressPlan::Ipv4Only);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn drain_and_restart_ipv6_only() {
    drain_and_restart(AddressPlan::Ipv6Only);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn drain_and_restart_dual_stack_v4_primary() {
    drain_and_restart(AddressPlan::DualStackV4Primary);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn drain_and_restart_ipv4_only() {
    drain_and_restart(AddressPlan::Ipv4Only);
}
