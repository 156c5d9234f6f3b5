//! The kernel agrees with the evaluator: the JSON batch is loaded into a node namespace whose pods
//! hang off one Linux bridge (same-node, bridged traffic, br_netfilter on), and real TCP connects
//! between the pods must succeed exactly where `allows` says so, over IPv6 and IPv4.
//! Needs root; skips with a message otherwise.

mod support;

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
            }
        }
        // Listeners are up when the node (never filtered: its traffic is local, not forwarded)
        // connects; bounded wait.
        let deadline = Instant::now() + Duration::from_secs(10);
        for (ns, p) in LAB_PODS {
            for port in [80, 81] {
                let dst = pod_ip(ns, p, Family::Ipv4);
                while !connects(&lab.node, dst, port) {
                    assert!(Instant::now() < deadline, "listener {dst}:{port} not up");
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

/// A real TCP handshake from namespace `ns` to `dst:port`, bounded by a 0.5 s connect timeout.
fn connects(ns: &str, dst: IpAddr, port: u16) -> bool {
    let target = match dst {
        IpAddr::V4(a) => format!("TCP4:{a}:{port},connect-timeout=0.5"),
        IpAddr::V6(a) => format!("TCP6:[{a}]:{port},connect-timeout=0.5"),
    };
    Command::new("timeout")
        .args([
            "3",
            "ip",
            "netns",
            "exec",
            ns,
            "socat",
            "-u",
            "OPEN:/dev/null",
        ])
        .arg(target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
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
    ["nft", "socat", "ip", "timeout"].iter().all(|t| {
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
        eprintln!("SKIP bridged_traffic_matches_the_evaluator: needs root, nft, socat");
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
                    for port in [80u16, 81] {
                        probes.push((i, pod_ip(*sns, *sp, f), pod_ip(dns, dp, f), port));
                    }
                }
            }
        }
        // Probes run concurrently: each blocked one waits for its connect timeout.
        let results: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = probes
                .iter()
                .map(|(i, _, dst, port)| {
                    let ns = &lab.pods[*i];
                    scope.spawn(move || connects(ns, *dst, *port))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for ((_, src, dst, port), got) in probes.iter().zip(results) {
            let want = allows(&built.ruleset, *src, *dst, Protocol::Tcp, *port).unwrap();
            if want {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            if want != got {
                mismatches.push(format!(
                    "{fixture}: {src} -> {dst} TCP/{port}: evaluator {want}, kernel {got}"
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
    assert!(!connects(&lab.pods[1], xa6, 80));
    lab.bridge_netfilter(false);
    assert!(
        connects(&lab.pods[1], xa6, 80),
        "bridged traffic was filtered without br_netfilter: the hook assumption changed"
    );
    lab.bridge_netfilter(true);
}
