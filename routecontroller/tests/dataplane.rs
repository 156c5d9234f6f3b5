//! Root-only tests of the dataplane against the real kernel, in network namespaces each test makes (and removes).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::process::Command;

use ipnet::IpNet;
use routecontroller::dataplane::{
    EgressConfig, NdpProxy, PodEgress, RouteDataplane, RouteDataplaneConfig, RouteDataplaneError,
    RouteOp, rtnetlink_handle,
};
use routecontroller::model::{BestPath, KernelNextHop, KernelRoute, desired_kernel_routes};

// ---------- harness ----------

/// True when the test can run; prints why not otherwise (and fails under CI=true, where skipping hides breakage).
fn require_root(test: &str) -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let tools = ["ip", "nft", "ping"].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if root && tools {
        return true;
    }
    let why = if root {
        "ip, nft or ping missing"
    } else {
        "needs root (network namespaces)"
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why}");
    }
    eprintln!("skipping {test}: {why}");
    false
}

/// Namespaces made by one test; removed on drop, also when the test panics.
struct Netns {
    names: Vec<String>,
}

impl Netns {
    /// Makes `rcdp-{test}-{pid}-{n}` for each `n`.
    fn new(test: &str, names: &[&str]) -> Self {
        let mut me = Netns { names: Vec::new() };
        for n in names {
            let name = format!("rcdp-{test}-{}-{n}", std::process::id());
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            run("ip", &["netns", "add", &name]);
            me.names.push(name.clone());
            ip(&name, "link set lo up");
        }
        me
    }

    fn get(&self, short: &str) -> &str {
        self.names
            .iter()
            .find(|n| n.ends_with(&format!("-{short}")))
            .expect("namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -n NS ARGS...` (test setup and outside checks only).
fn ip(ns: &str, args: &str) -> String {
    let mut v = vec!["-n", ns];
    v.extend(args.split_whitespace());
    run("ip", &v)
}

fn try_ns(ns: &str, cmd: &str) -> bool {
    let mut v = vec!["netns", "exec", ns];
    v.extend(cmd.split_whitespace());
    Command::new("ip")
        .args(&v)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn sysctl(ns: &str, key: &str, value: &str) {
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "sysctl",
            "-q",
            "-w",
            &format!("{key}={value}"),
        ],
    );
}

/// Runs `f` on a thread that entered `ns`, with a current-thread tokio runtime (sockets it opens live in `ns`).
fn in_netns<T, F, Fut>(ns: &str, f: F) -> T
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
{
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f())
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Pings from `ns` until one answer or `tries` seconds; true when answered.
fn ping(ns: &str, dst: &str, tries: u32) -> bool {
    (0..tries).any(|_| try_ns(ns, &format!("ping -c 1 -W 1 {dst}")))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stack {
    Ipv6Only,
    DualV6Primary,
    DualV4Primary,
    Ipv4Only,
}

impl Stack {
    fn v4(self) -> bool {
        self != Stack::Ipv6Only
    }
    fn v6(self) -> bool {
        self != Stack::Ipv4Only
    }
    fn tag(self) -> &'static str {
        match self {
            Stack::Ipv6Only => "v6",
            Stack::DualV6Primary => "d6",
            Stack::DualV4Primary => "d4",
            Stack::Ipv4Only => "v4",
        }
    }
}

// ---------- kernel routes ----------

fn path(prefix: &str, hops: &[&str]) -> BestPath {
    BestPath {
        prefix: prefix.parse().unwrap(),
        next_hops: hops.iter().map(|h| h.parse().unwrap()).collect(),
    }
}

/// Best paths of the stack, primary family first; single next hops, ECMP and (dual-stack) RFC 8950 `via inet6`.
fn best_paths(stack: Stack, generation: u8) -> Vec<BestPath> {
    let g = |base: &str| base.replace('G', &generation.to_string());
    let v6 = vec![
        path("fd00:10:244:1::/64", &[&g("fd00:0:0:1::G")]),
        path("fd00:10:244:2::/64", &["fd00:0:0:1::2", "fd00:0:0:1::3"]),
        // Single next hop in generation 2 (the two are equal), ECMP in generation 5.
        path(
            "fd00:10:244:3::/64",
            &["fd00:0:0:1::2", &g("fd00:0:0:1::G")],
        ),
        path("fd00:10:244:99::/64", &["fd00:0:0:1::2"]), // this node's own pod CIDR: skipped
    ];
    let mut v4 = Vec::new();
    if stack.v4() {
        v4.push(path("198.19.1.0/24", &[&g("198.18.0.G")]));
        v4.push(path("198.19.2.0/24", &["198.18.0.2", "198.18.0.3"]));
        v4.push(path("198.19.6.0/24", &["198.18.0.2", &g("198.18.0.G")]));
    }
    if stack.v4() && stack.v6() {
        // IPv4 pod CIDRs over an IPv6 next hop (RFC 8950), alone and mixed with an IPv4 one.
        v4.push(path("198.19.3.0/24", &[&g("fd00:0:0:1::G")]));
        v4.push(path("198.19.4.0/24", &["fd00:0:0:1::2", "198.18.0.3"]));
        v4.push(path("198.19.5.0/24", &["fd00:0:0:1::2", "fd00:0:0:1::3"]));
    }
    let v6 = if stack.v6() { v6 } else { Vec::new() };
    match stack {
        Stack::DualV4Primary | Stack::Ipv4Only => v4.into_iter().chain(v6).collect(),
        _ => v6.into_iter().chain(v4).collect(),
    }
}

fn desired(stack: Stack, generation: u8) -> Vec<KernelRoute> {
    let own: Vec<IpNet> = vec![
        "fd00:10:244:99::/64".parse().unwrap(),
        "198.19.99.0/24".parse().unwrap(),
    ];
    let local: Vec<IpAddr> = vec![
        "fd00:0:0:1::1".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
    ];
    let out = desired_kernel_routes(&best_paths(stack, generation), &own, &local);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    out.routes
}

fn node_with_uplink(test: &str, stack: Stack) -> Netns {
    let ns = Netns::new(test, &["node"]);
    let n = ns.get("node");
    // A veth pair inside the node stands in for the uplink (this kernel has no dummy driver).
    ip(n, "link add up0 type veth peer name up0peer");
    ip(n, "link set up0peer up");
    ip(n, "link set up0 up");
    if stack.v6() {
        ip(n, "-6 addr add fd00:0:0:1::1/64 dev up0 nodad");
    }
    if stack.v4() {
        ip(n, "addr add 198.18.0.1/24 dev up0");
    }
    ns
}

/// Routes of other protocols in the same prefix space, including one at a prefix fairlead also owns (another metric).
fn add_foreign_routes(n: &str, stack: Stack) -> Vec<String> {
    let mut checks = Vec::new();
    if stack.v6() {
        ip(
            n,
            "-6 route add fd00:10:244:200::/64 via fd00:0:0:1::9 proto static",
        );
        ip(
            n,
            "-6 route add fd00:10:244:1::/64 via fd00:0:0:1::9 proto static metric 500",
        );
        checks.push("fd00:10:244:200::/64 via fd00:0:0:1::9".into());
        checks.push("fd00:10:244:1::/64 via fd00:0:0:1::9".into());
    }
    if stack.v4() {
        ip(n, "route add 198.19.200.0/24 via 198.18.0.9 proto static");
        ip(
            n,
            "route add 198.19.1.0/24 via 198.18.0.9 proto static metric 500",
        );
        checks.push("198.19.200.0/24 via 198.18.0.9".into());
        checks.push("198.19.1.0/24 via 198.18.0.9".into());
    }
    checks
}

fn foreign_routes_intact(n: &str, checks: &[String]) {
    let shown = ip(n, "route show proto static") + &ip(n, "-6 route show proto static");
    for c in checks {
        assert!(shown.contains(c), "foreign route {c} gone: {shown}");
    }
}

fn routes_lifecycle(stack: Stack) {
    let test = format!("rt{}", stack.tag());
    if !require_root(&test) {
        return;
    }
    let ns = node_with_uplink(&test, stack);
    let n = ns.get("node").to_string();
    let foreign = add_foreign_routes(&n, stack);
    let gen2 = desired(stack, 2);
    let gen5 = desired(stack, 5);
    let count = gen2.len();
    let expected = match stack {
        Stack::Ipv6Only => 3,
        Stack::Ipv4Only => 3,
        Stack::DualV6Primary | Stack::DualV4Primary => 3 + 6,
    };
    assert_eq!(count, expected);

    in_netns(&n, || async {
        let dp = RouteDataplane::new(rtnetlink_handle().unwrap(), RouteDataplaneConfig::default());
        assert!(dp.read_back().await.unwrap().is_empty());

        // Install.
        let r = dp.apply(&gen2).await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!((r.added, r.replaced, r.deleted), (count, 0, 0));
        assert_eq!(dp.read_back().await.unwrap(), gen2);

        // Idempotent.
        let r = dp.apply(&gen2).await.unwrap();
        assert_eq!(
            (r.added, r.replaced, r.deleted, r.errors.len()),
            (0, 0, 0, 0)
        );

        // Next hops change: replaced in place (single -> other single, ECMP <-> single).
        let changed = gen2.iter().zip(&gen5).filter(|(a, b)| a != b).count();
        // Single -> other single, single -> ECMP, per family.
        assert!(changed >= 2, "{changed}");
        let r = dp.apply(&gen5).await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!((r.added, r.replaced, r.deleted), (0, changed, 0));
        assert_eq!(dp.read_back().await.unwrap(), gen5);
    });

    // Seen from outside with iproute2: the protocol number, ECMP and `via inet6`.
    let v4 = ip(&n, "route show proto 44");
    let v6 = ip(&n, "-6 route show proto 44");
    if stack.v6() {
        assert!(v6.contains("fd00:10:244:1::/64 via fd00:0:0:1::5"), "{v6}");
        assert!(v6.contains("nexthop via fd00:0:0:1::3"), "{v6}");
    }
    if stack.v4() {
        assert!(v4.contains("198.19.1.0/24 via 198.18.0.5"), "{v4}");
        assert!(v4.contains("nexthop via 198.18.0.3"), "{v4}");
    }
    if stack.v4() && stack.v6() {
        assert!(v4.contains("198.19.3.0/24 via inet6 fd00:0:0:1::5"), "{v4}");
        assert!(v4.contains("nexthop via inet6 fd00:0:0:1::2"), "{v4}");
    }
    foreign_routes_intact(&n, &foreign);

    // Restart: a new dataplane (new socket) finds the routes, keeps them, and has nothing to do.
    in_netns(&n, || async {
        let dp = RouteDataplane::new(rtnetlink_handle().unwrap(), RouteDataplaneConfig::default());
        assert_eq!(dp.read_back().await.unwrap(), gen5);
        let r = dp.apply(&gen5).await.unwrap();
        assert_eq!(
            (r.added, r.replaced, r.deleted, r.errors.len()),
            (0, 0, 0, 0)
        );

        // Remove all: only ours go.
        let r = dp.apply(&[]).await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.deleted, count);
        assert!(dp.read_back().await.unwrap().is_empty());
    });
    foreign_routes_intact(&n, &foreign);
    assert_eq!(ip(&n, "route show proto 44").trim(), "");
    assert_eq!(ip(&n, "-6 route show proto 44").trim(), "");
}

#[test]
fn routes_ipv6_only() {
    routes_lifecycle(Stack::Ipv6Only);
}

#[test]
fn routes_dual_stack_ipv6_primary() {
    routes_lifecycle(Stack::DualV6Primary);
}

#[test]
fn routes_dual_stack_ipv4_primary() {
    routes_lifecycle(Stack::DualV4Primary);
}

#[test]
fn routes_ipv4_only() {
    routes_lifecycle(Stack::Ipv4Only);
}

/// A route the kernel refuses (unreachable gateway) or the dataplane refuses (IPv6 route via IPv4) is reported;
/// the others are installed; deleting an absent route counts as done; another table is honoured.
#[test]
fn bad_routes_do_not_stop_others_and_absent_deletes_are_done() {
    let stack = Stack::DualV6Primary;
    if !require_root("rtbad") {
        return;
    }
    let ns = node_with_uplink("rtbad", stack);
    let n = ns.get("node").to_string();
    let gw = |s: &str| KernelNextHop::Gateway(s.parse().unwrap());
    let good = vec![
        KernelRoute {
            prefix: "198.19.1.0/24".parse().unwrap(),
            next_hops: vec![gw("198.18.0.2")],
        },
        KernelRoute {
            prefix: "fd00:10:244:1::/64".parse().unwrap(),
            next_hops: vec![gw("fd00:0:0:1::2")],
        },
    ];
    let unreachable = KernelRoute {
        prefix: "198.19.2.0/24".parse().unwrap(),
        next_hops: vec![gw("198.18.77.7")],
    };
    let wrong_family = KernelRoute {
        prefix: "fd00:10:244:2::/64".parse().unwrap(),
        next_hops: vec![gw("198.18.0.2")],
    };
    in_netns(&n, || async {
        let cfg = RouteDataplaneConfig {
            table: 1000,
            metric: 7,
            ..Default::default()
        };
        let dp = RouteDataplane::new(rtnetlink_handle().unwrap(), cfg);
        let mut all = good.clone();
        all.insert(1, unreachable.clone());
        all.push(wrong_family.clone());
        let r = dp.apply(&all).await.unwrap();
        assert_eq!(r.added, 2, "{:?}", r.errors);
        assert_eq!(r.errors.len(), 2);
        let failed: BTreeSet<IpNet> = r.errors.iter().map(|e| e.prefix).collect();
        assert_eq!(failed, [unreachable.prefix, wrong_family.prefix].into());
        assert!(
            r.errors
                .iter()
                .any(|e| matches!(e.source, RouteDataplaneError::InvalidRoute { .. }))
        );
        assert!(
            r.errors
                .iter()
                .any(|e| matches!(e.source, RouteDataplaneError::Netlink(_)))
        );
        let mut back = dp.read_back().await.unwrap();
        back.sort_by_key(|r| r.prefix);
        assert_eq!(back, good);
        let installed = dp.read_back_installed().await.unwrap();
        assert!(installed.iter().all(|i| i.metric == 7), "{installed:?}");

        // Deleting what is already gone is done, not an error.
        let mut gone = installed[0].clone();
        gone.route.prefix = "198.19.123.0/24".parse().unwrap();
        let r = dp.execute(vec![RouteOp::Delete(gone)]).await;
        assert_eq!((r.deleted, r.errors.len()), (1, 0), "{:?}", r.errors);
    });
    let t1000 = ip(&n, "route show table 1000 proto 44");
    assert!(t1000.contains("198.19.1.0/24 via 198.18.0.2"), "{t1000}");
    assert!(t1000.contains("metric 7"), "{t1000}");
    assert_eq!(ip(&n, "route show table main proto 44").trim(), "");
}

// ---------- NDP proxy ----------

/// router --(uplink fd00:1::/64)-- node --(veth)-- pod (fd00:1::100, from the uplink's /64).
/// The router has no route to the pod beyond the connected /64: it reaches the pod only because the node answers
/// its Neighbour Solicitations for fd00:1::100 (the proxy entry).
fn ndp_proxy(stack: Stack) {
    let test = format!("ndp{}", stack.tag());
    if !require_root(&test) {
        return;
    }
    let ns = Netns::new(&test, &["router", "node", "pod"]);
    let (r, n, p) = (ns.get("router"), ns.get("node"), ns.get("pod"));
    ip(
        r,
        &format!("link add up0 type veth peer name up1 netns {n}"),
    );
    ip(
        n,
        &format!("link add pod0 type veth peer name eth0 netns {p}"),
    );
    for (ns, dev) in [(r, "up0"), (n, "up1"), (n, "pod0"), (p, "eth0")] {
        sysctl(ns, &format!("net.ipv6.conf.{dev}.accept_dad"), "0");
        ip(ns, &format!("link set {dev} up"));
    }
    ip(r, "-6 addr add fd00:1::1/64 dev up0 nodad");
    ip(n, "-6 addr add fd00:1::2/64 dev up1 nodad");
    ip(n, "-6 addr add fe80::1/64 dev pod0 nodad");
    ip(n, "-6 route add fd00:1::100/128 dev pod0");
    ip(p, "-6 addr add fd00:1::100/128 dev eth0 nodad");
    ip(p, "-6 route add default via fe80::1 dev eth0");
    if stack.v4() {
        // Dual-stack: IPv4 on the same links changes nothing for NDP.
        ip(r, "addr add 198.18.1.1/24 dev up0");
        ip(n, "addr add 198.18.1.2/24 dev up1");
        assert!(ping(r, "198.18.1.2", 5));
    }
    assert!(ping(r, "fd00:1::2", 5), "uplink itself broken");
    let pod: Ipv6Addr = "fd00:1::100".parse().unwrap();

    // A config for another interface is refused with a typed error, not a panic.
    in_netns(n, || async {
        let err = NdpProxy::new(rtnetlink_handle().unwrap(), "nope0")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nope0"), "{err}");
    });
    assert!(
        !ping(r, "fd00:1::100", 2),
        "reachable without a proxy entry"
    );

    in_netns(n, || async {
        let proxy = NdpProxy::new(rtnetlink_handle().unwrap(), "up1")
            .await
            .unwrap();
        let rep = proxy.apply(&[pod].into()).await.unwrap();
        assert_eq!((rep.added, rep.removed, rep.errors.len()), (1, 0, 0));
        assert_eq!(proxy.read_back().await.unwrap(), [pod].into());
        let rep = proxy.apply(&[pod].into()).await.unwrap();
        assert_eq!((rep.added, rep.removed), (0, 0), "idempotent");
    });
    assert!(
        run(
            "ip",
            &[
                "netns",
                "exec",
                n,
                "cat",
                "/proc/sys/net/ipv6/conf/up1/proxy_ndp"
            ]
        )
        .trim()
            == "1"
    );
    let shown = ip(n, "-6 neigh show proxy dev up1");
    assert!(shown.contains("fd00:1::100"), "{shown}");
    assert!(
        ping(r, "fd00:1::100", 10),
        "pod not reachable through the proxy entry"
    );

    // Removing the entry (and letting the router forget the old answer) breaks it again.
    in_netns(n, || async {
        let proxy = NdpProxy::new(rtnetlink_handle().unwrap(), "up1")
            .await
            .unwrap();
        assert_eq!(
            proxy.read_back().await.unwrap(),
            [pod].into(),
            "restart keeps entries"
        );
        let rep = proxy.apply(&BTreeSet::new()).await.unwrap();
        assert_eq!((rep.added, rep.removed, rep.errors.len()), (0, 1, 0));
        assert!(proxy.read_back().await.unwrap().is_empty());
    });
    ip(r, "-6 neigh flush dev up0");
    assert!(
        !ping(r, "fd00:1::100", 3),
        "still reachable after the entry was removed"
    );
}

#[test]
fn ndp_proxy_ipv6_only() {
    ndp_proxy(Stack::Ipv6Only);
}

#[test]
fn ndp_proxy_dual_stack() {
    ndp_proxy(Stack::DualV6Primary);
}

// ---------- pod egress ----------

/// pod --(veth)-- node --(veth)-- ext. `ext` has no route back to the pod CIDRs: an answer arrives only when the
/// node masqueraded the pod's traffic.
fn pod_egress(stack: Stack) {
    let test = format!("eg{}", stack.tag());
    if !require_root(&test) {
        return;
    }
    let ns = Netns::new(&test, &["pod", "node", "ext"]);
    let (p, n, e) = (ns.get("pod"), ns.get("node"), ns.get("ext"));
    ip(
        n,
        &format!("link add pod0 type veth peer name eth0 netns {p}"),
    );
    ip(
        n,
        &format!("link add up0 type veth peer name eth0 netns {e}"),
    );
    for (ns, dev) in [(n, "pod0"), (n, "up0"), (p, "eth0"), (e, "eth0")] {
        sysctl(ns, &format!("net.ipv6.conf.{dev}.accept_dad"), "0");
        ip(ns, &format!("link set {dev} up"));
    }
    if stack.v4() {
        sysctl(n, "net.ipv4.ip_forward", "1");
        ip(n, "addr add 198.19.1.1/24 dev pod0");
        ip(p, "addr add 198.19.1.2/24 dev eth0");
        ip(p, "route add default via 198.19.1.1");
        ip(n, "addr add 198.18.50.1/24 dev up0");
        ip(e, "addr add 198.18.50.2/24 dev eth0");
    }
    if stack.v6() {
        sysctl(n, "net.ipv6.conf.all.forwarding", "1");
        ip(n, "-6 addr add fd00:10:244:1::1/64 dev pod0 nodad");
        ip(p, "-6 addr add fd00:10:244:1::2/64 dev eth0 nodad");
        ip(p, "-6 route add default via fd00:10:244:1::1");
        ip(n, "-6 addr add fd00:50::1/64 dev up0 nodad");
        ip(e, "-6 addr add fd00:50::2/64 dev eth0 nodad");
    }
    let mut config = EgressConfig {
        pod_cidrs: vec![
            "198.19.0.0/16".parse().unwrap(),
            "fd00:10:244::/56".parse().unwrap(),
        ],
        cluster_ranges: vec![
            "198.19.0.0/16".parse().unwrap(),
            "198.18.240.0/24".parse().unwrap(),
            "fd00:10:244::/56".parse().unwrap(),
            "fd00:10:96::/112".parse().unwrap(),
        ],
        ..Default::default()
    };
    // Without the table nothing comes back.
    if stack.v4() {
        assert!(ping(n, "198.18.50.2", 5));
        assert!(!ping(p, "198.18.50.2", 2), "answered without NAT");
    }
    if stack.v6() {
        assert!(ping(n, "fd00:50::2", 5));
        assert!(!ping(p, "fd00:50::2", 2), "answered without NAT");
    }

    // Defaults: IPv4 only.
    in_netns(n, || async { PodEgress.apply(&config).unwrap() });
    let listed = run(
        "ip",
        &[
            "netns",
            "exec",
            n,
            "nft",
            "list",
            "table",
            "inet",
            "fairlead-egress",
        ],
    );
    assert!(
        listed.contains("type nat hook postrouting priority srcnat; policy accept;"),
        "{listed}"
    );
    assert!(!listed.contains("pod-cidrs6"), "{listed}");
    assert!(
        listed.contains("ip saddr @pod-cidrs4 ip daddr != @cluster-ranges4 masquerade"),
        "{listed}"
    );
    assert!(
        listed.contains("elements = { 198.18.240.0/24, 198.19.0.0/16 }"),
        "{listed}"
    );
    if stack.v4() {
        assert!(ping(p, "198.18.50.2", 5), "IPv4 egress not masqueraded");
    }
    if stack.v6() {
        assert!(!ping(p, "fd00:50::2", 2), "IPv6 masqueraded though off");
    }

    // IPv6 on.
    config.ipv6 = true;
    in_netns(n, || async { PodEgress.apply(&config).unwrap() });
    let listed = run(
        "ip",
        &[
            "netns",
            "exec",
            n,
            "nft",
            "list",
            "table",
            "inet",
            "fairlead-egress",
        ],
    );
    assert!(
        listed.contains("ip6 saddr @pod-cidrs6 ip6 daddr != @cluster-ranges6 masquerade"),
        "{listed}"
    );
    // nft wraps long element lists.
    assert!(
        listed.contains("elements = { fd00:10:96::/112,"),
        "{listed}"
    );
    assert!(listed.contains("fd00:10:244::/56 }"), "{listed}");
    if stack.v6() {
        assert!(ping(p, "fd00:50::2", 5), "IPv6 egress not masqueraded");
    }

    // A destination inside the cluster ranges keeps the pod's address (no answer: ext has no route back).
    config
        .cluster_ranges
        .push("198.18.50.0/24".parse().unwrap());
    config.cluster_ranges.push("fd00:50::/64".parse().unwrap());
    in_netns(n, || async { PodEgress.apply(&config).unwrap() });
    let _ = Command::new("ip")
        .args(["netns", "exec", n, "conntrack", "-F"])
        .output();
    if stack.v4() {
        assert!(
            !ping(p, "198.18.50.2", 2),
            "masqueraded towards a cluster range"
        );
    }
    if stack.v6() {
        assert!(
            !ping(p, "fd00:50::2", 2),
            "masqueraded towards a cluster range"
        );
    }

    // Read back through the dataplane, then disable: the table is gone, other tables untouched.
    run(
        "ip",
        &[
            "netns",
            "exec",
            n,
            "nft",
            "add",
            "table",
            "inet",
            "someone-else",
        ],
    );
    in_netns(n, || async {
        let back = PodEgress.read_back().unwrap().expect("table present");
        let text = serde_json::to_string(&back).unwrap();
        assert!(text.contains("masquerade"), "{text}");
        config.enabled = false;
        PodEgress.apply(&config).unwrap();
        assert!(PodEgress.read_back().unwrap().is_none());
        PodEgress.apply(&config).unwrap(); // removing an absent table is fine
    });
    let tables = run("ip", &["netns", "exec", n, "nft", "list", "tables"]);
    assert!(!tables.contains("fairlead-egress"), "{tables}");
    assert!(tables.contains("someone-else"), "{tables}");
}

#[test]
fn pod_egress_ipv6_only() {
    pod_egress(Stack::Ipv6Only);
}

#[test]
fn pod_egress_dual_stack_ipv6_primary() {
    pod_egress(Stack::DualV6Primary);
}

#[test]
fn pod_egress_dual_stack_ipv4_primary() {
    pod_egress(Stack::DualV4Primary);
}

#[test]
fn pod_egress_ipv4_only() {
    pod_egress(Stack::Ipv4Only);
}
