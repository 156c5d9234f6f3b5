//! The kernel agrees with the evaluator: the JSON batch is loaded into a node namespace whose pods
//! hang off one Linux bridge (same-node, bridged traffic, br_netfilter on), and real TCP connects
//! and UDP exchanges on ports 80 and 81 between the pods must succeed exactly where `allows` says
//! so, over IPv6 and IPv4. (This kernel has no SCTP.)
//! Needs root; skips with a message otherwise.

mod support;

use std::io::Write;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firewall::model::eval::allows;
use firewall::model::{Family, Input, Options, Protocol, Ruleset, build};
use firewall::render::to_nftables_batch;
use support::*;

/// The lab's pods: (namespace index, pod index) of x/a, x/b, y/a.
const LAB_PODS: [(usize, usize); 3] = [(0, 0), (0, 1), (1, 0)];

/// Namespaces and listener processes of one test; Drop kills the listeners (by PID) and
/// deletes the namespaces, also when the test fails.
struct Lab {
    node: String,
    pods: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.pods.iter().chain(std::iter::once(&self.node)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    run(&v);
}

impl Lab {
    fn new(prefix: &str) -> Lab {
        let mut lab = Lab {
            node: format!("{prefix}-node"),
            pods: Vec::new(),
            children: Vec::new(),
        };
        run(&["ip", "netns", "add", &lab.node]);
        let node = lab.node.clone();
        run(&["ip", "-n", &node, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &node, "link", "set", "br0", "up"]);
        // The node's own addresses live on the bridge (like a CNI bridge gateway).
        run(&[
            "ip",
            "-n",
            &node,
            "addr",
            "add",
            "198.18.0.1/15",
            "dev",
            "br0",
        ]);
        run(&[
            "ip",
            "-n",
            &node,
            "addr",
            "add",
            "fd00::1/8",
            "dev",
            "br0",
            "nodad",
        ]);
        lab.bridge_netfilter(true);
        for (i, (ns, p)) in LAB_PODS.iter().enumerate() {
            let name = format!("{prefix}-{}{}", NAMESPACES[*ns], PODS[*p]);
            run(&["ip", "netns", "add", &name]);
            lab.pods.push(name.clone());
            let veth = format!("veth{i}");
            run(&[
                "ip", "link", "add", &veth, "netns", &node, "type", "veth", "peer", "name", "eth0",
                "netns", &name,
            ]);
            run(&[
                "ip", "-n", &node, "link", "set", &veth, "master", "br0", "up",
            ]);
            run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
            run(&["ip", "-n", &name, "link", "set", "eth0", "up"]);
            let v4 = format!("{}/15", pod_ip(*ns, *p, Family::Ipv4));
            let v6 = format!("{}/8", pod_ip(*ns, *p, Family::Ipv6));
            run(&["ip", "-n", &name, "addr", "add", &v4, "dev", "eth0"]);
            run(&[
                "ip", "-n", &name, "addr", "add", &v6, "dev", "eth0", "nodad",
            ]);
            for port in [80u16, 81] {
                let child = Command::new("ip")
                    .args(["netns", "exec", &name, "socat"])
                    .arg(format!("TCP6-LISTEN:{port},ipv6only=0,fork,reuseaddr"))
                    .arg("SYSTEM:true")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("socat");
                lab.children.push(child);
                // UDP: one process answering every datagram ("ok"). socat's forking UDP
                // listeners lose datagrams when several peers send at once.
                let child = Command::new("ip")
                    .args(["netns", "exec", &name, "python3", "-c", UDP_ANSWER])
                    .arg(port.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("python3");
                lab.children.push(child);
            }
        }
        // Listeners are up when the node (never filtered: its traffic is local, not forwarded)
        // connects; bounded wait.
        let deadline = Instant::now() + Duration::from_secs(20);
        for (ns, p) in LAB_PODS {
            for (proto, port) in PROBED {
                let dst = pod_ip(ns, p, Family::Ipv4);
                while !reaches(&lab.node, proto, dst, port) {
                    assert!(
                        Instant::now() < deadline,
                        "listener {dst} {proto}/{port} not up"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        lab
    }

    fn bridge_netfilter(&self, on: bool) {
        let v = if on { "1" } else { "0" };
        in_ns(
            &self.node,
            &[
                "sysctl",
                "-qw",
                &format!("net.bridge.bridge-nf-call-iptables={v}"),
                &format!("net.bridge.bridge-nf-call-ip6tables={v}"),
            ],
        );
    }

    fn load(&self, ruleset: &Ruleset) {
        let file = std::env::temp_dir().join(format!("{}.json", self.node));
        std::fs::write(
            &file,
            serde_json::to_string(&to_nftables_batch(ruleset)).unwrap(),
        )
        .unwrap();
        in_ns(&self.node, &["nft", "-j", "-f", file.to_str().unwrap()]);
        let _ = std::fs::remove_file(file);
    }
}

/// A UDP server for both families on port argv[1] that answers each datagram with "ok".
const UDP_ANSWER: &str = "import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', int(sys.argv[1])))
while True:
    d, a = s.recvfrom(512)
    s.sendto(b'ok', a)
";

/// Protocols and ports probed in the kernel (this kernel has no SCTP).
const PROBED: [(Protocol, u16); 4] = [
    (Protocol::Tcp, 80),
    (Protocol::Tcp, 81),
    (Protocol::Udp, 80),
    (Protocol::Udp, 81),
];

/// Real traffic from namespace `ns` to `dst:port`: a TCP handshake, or a UDP datagram answered
/// by the listener; bounded by socat timeouts (0.5 s TCP, 2 s UDP) and a 4 s hard timeout.
fn reaches(ns: &str, protocol: Protocol, dst: IpAddr, port: u16) -> bool {
    // UDP: stdin hits EOF at once, so the close timeout (-t) is what bounds the wait for the
    // answer, and it must allow for a fork and a shell in the listener.
    let (kind, opts, local, idle) = match protocol {
        Protocol::Tcp => ("TCP", ",connect-timeout=0.5", "OPEN:/dev/null", "-T0.5"),
        Protocol::Udp => ("UDP", "", "-", "-t2"),
        Protocol::Sctp => unreachable!("not probed"),
    };
    let target = match dst {
        IpAddr::V4(a) => format!("{kind}4:{a}:{port}{opts}"),
        IpAddr::V6(a) => format!("{kind}6:[{a}]:{port}{opts}"),
    };
    let out = Command::new("timeout")
        .args(["4", "ip", "netns", "exec", ns, "socat", idle, local])
        .arg(target)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            // One datagram for UDP; stdin closes right after, which ends the TCP probe's input.
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(b"probe\n");
            }
            child.wait_with_output()
        });
    match (protocol, out) {
        (Protocol::Tcp, Ok(o)) => o.status.success(),
        // The listener answers "ok"; nothing comes back when either direction is dropped.
        (_, Ok(o)) => String::from_utf8_lossy(&o.stdout).contains("ok"),
        (_, Err(_)) => false,
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn has_tools() -> bool {
    ["nft", "socat", "ip", "timeout", "python3"]
        .iter()
        .all(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

#[test]
fn bridged_traffic_matches_the_evaluator() {
    if !is_root() || !has_tools() {
        eprintln!("SKIP bridged_traffic_matches_the_evaluator: needs root, nft, socat, python3");
        return;
    }
    let lab = Lab::new(&format!("fl-fwk{}", std::process::id()));
    let namespaces = namespaces();
    let pods = pods(Addressing::DualStackIpv6Primary);
    let mut mismatches = Vec::new();
    let mut counts = (0, 0);
    for fixture in [
        "deny-all-both",
        "port-80-tcp",
        "pod-or-namespace-two-peers",
        "named-port-per-pod",
        "egress-named-port",
        "ingress-and-egress",
        "udp-only",
        "multiple-ports-and-rules",
    ] {
        let policies = load_policies(fixture);
        let built = build(
            Input {
                policies: &policies,
                pods: &pods,
                namespaces: &namespaces,
            },
            &Options {
                node_addresses: node_addresses(),
                ..Default::default()
            },
        );
        lab.load(&built.ruleset);
        let mut probes = Vec::new();
        for (i, (sns, sp)) in LAB_PODS.iter().enumerate() {
            for (dns, dp) in LAB_PODS {
                if (*sns, *sp) == (dns, dp) {
                    continue;
                }
                for f in Family::ALL {
                    for (proto, port) in PROBED {
                        probes.push((i, pod_ip(*sns, *sp, f), pod_ip(dns, dp, f), proto, port));
                    }
                }
            }
        }
        // Probes run concurrently: each blocked one waits for its timeout.
        let results: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = probes
                .iter()
                .map(|(i, _, dst, proto, port)| {
                    let ns = &lab.pods[*i];
                    scope.spawn(move || reaches(ns, *proto, *dst, *port))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for ((_, src, dst, proto, port), got) in probes.iter().zip(results) {
            let want = allows(&built.ruleset, *src, *dst, *proto, *port).unwrap();
            if want {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            if want != got {
                mismatches.push(format!(
                    "{fixture}: {src} -> {dst} {proto}/{port}: evaluator {want}, kernel {got}"
                ));
            }
        }
    }
    eprintln!(
        "kernel vs evaluator: {} allowed, {} blocked probes",
        counts.0, counts.1
    );
    assert!(
        counts.0 > 0 && counts.1 > 0,
        "the probes must cover both outcomes"
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // The node's own packets (hook output) pass `fib saddr type local` even with no node
    // address configured; pods stay blocked.
    let policies = load_policies("deny-all-both");
    let built = build(
        Input {
            policies: &policies,
            pods: &pods,
            namespaces: &namespaces,
        },
        &Options::default(),
    );
    lab.load(&built.ruleset);
    for f in Family::ALL {
        let xa = pod_ip(0, 0, f);
        for proto in [Protocol::Tcp, Protocol::Udp] {
            assert!(reaches(&lab.node, proto, xa, 80), "node -> {xa} {proto}");
            assert!(!reaches(&lab.pods[1], proto, xa, 80), "x/b -> {xa} {proto}");
        }
    }

    // Why br_netfilter matters: with it off, bridged traffic bypasses the inet forward hook.
    let policies = load_policies("deny-all-both");
    let built = build(
        Input {
            policies: &policies,
            pods: &pods,
            namespaces: &namespaces,
        },
        &Options::default(),
    );
    lab.load(&built.ruleset);
    let xa6 = pod_ip(0, 0, Family::Ipv6);
    assert!(!reaches(&lab.pods[1], Protocol::Tcp, xa6, 80));
    lab.bridge_netfilter(false);
    assert!(
        reaches(&lab.pods[1], Protocol::Tcp, xa6, 80),
        "bridged traffic was filtered without br_netfilter: the hook assumption changed"
    );
    lab.bridge_netfilter(true);
}
