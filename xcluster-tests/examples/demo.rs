//! The README's demo: a 3-node IPv6-only cluster in network namespaces with a BIRD top-of-rack router, the real
//! `fairlead run` on every node (`--objects-from`), CNI pods on node1 and node3, and what an operator would look
//! at: `fairlead neighbor`, `fairlead global rib -a ipv6`, `birdc show route` and a cross-node pod ping.
//!
//! Run as root: `xcluster-tests/demo [--keep]` (installs packages, builds, runs this), or
//! `cargo run -p xcluster-tests --example demo -- [--keep]`. `tests/netns/demo.rs` runs the same code path.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use nix::sys::signal::{SigSet, Signal};
use xcluster_tests::bgp::{BgpSpeaker, Bird, Neighbor, RouterSpec};
use xcluster_tests::{
    AddressPlan, Family, Node, Pod, Topology, TopologyBuilder, exec_in, load_conflist, ping,
    wait_until,
};

/// Tools the demo runs (checked before anything is created).
pub const TOOLS: &[&str] = &[
    "ip",
    "ping",
    "bird",
    "birdc",
    "bridge",
    "host-local",
    "loopback",
];
/// The cluster's AS (iBGP full mesh between nodes) and the ToR's.
pub const CLUSTER_ASN: u32 = 64512;
pub const TOR_ASN: u32 = 65000;
/// Nodes in the demo cluster.
pub const NODES: u8 = 3;
/// The prefix the ToR announces (inside the harness's free `fd00:99::/32`); the ToR owns its first address.
pub const TOR_PREFIX: &str = "fd00:99:64:ff9b::/96";
/// Bound of every wait (sessions, routes, conflist, ping).
pub const TIMEOUT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(500);

/// Set by the signal thread on SIGINT / SIGTERM (`--keep` waits for it).
#[derive(Clone, Default)]
struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Blocks SIGINT and SIGTERM in this thread and every thread it starts, and waits for them on a dedicated
    /// thread, so the demo gets to clean up. Call it only once every long-lived child runs: a blocked mask is
    /// inherited across fork and exec, and fairlead or BIRD would then ignore the guard's SIGTERM.
    fn install() -> anyhow::Result<Interrupt> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.thread_block().context("block SIGINT/SIGTERM")?;
        let flag = Interrupt::default();
        let seen = flag.clone();
        std::thread::spawn(move || {
            if let Ok(sig) = set.wait() {
                eprintln!("\n{sig} received: cleaning up");
                seen.0.store(true, Ordering::SeqCst);
            }
        });
        Ok(flag)
    }
}

/// `target/debug/fairlead` of this workspace (or `$FAIRLEAD_BIN`), built with cargo if missing.
pub fn fairlead_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("FAIRLEAD_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Incremental: a no-op when the script (or a previous run) built it already.
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "fairlead", "--bin", "fairlead"])
        .current_dir(workspace)
        .status()
        .context("run cargo build -p fairlead")?;
    if !status.success() {
        bail!("cargo build -p fairlead failed");
    }
    let bin = target.join("debug").join("fairlead");
    if !bin.is_file() {
        bail!("{} missing after cargo build", bin.display());
    }
    Ok(bin)
}

/// The running demo cluster. Dropping it stops every process it started (by PID) and deletes its namespaces.
pub struct Demo {
    pub topo: Topology,
    pub tor: Bird,
    pub bin: PathBuf,
    /// fairlead's PID on node `i` at index `i - 1`.
    pub fairlead: Vec<u32>,
    /// The pods on node1 and node3.
    pub pods: Vec<Pod>,
}

/// What the demo shows, section by section (each is the command's own output).
#[derive(Debug, Clone)]
pub struct Report {
    pub topology: String,
    pub neighbor: String,
    pub rib: String,
    pub tor_routes: String,
    /// `(from, to)` pod addresses and the ping output.
    pub ping_from: IpAddr,
    pub ping_to: IpAddr,
    pub ping: String,
}

impl Demo {
    /// Builds the topology, starts BIRD and fairlead everywhere, waits (bounded) for every session, route and
    /// pod, and returns the cluster. `name` gives the namespace prefix (tests pass their own name).
    pub fn start(name: &str, bin: PathBuf) -> anyhow::Result<Demo> {
        let plan = AddressPlan::Ipv6Only;
        let topo = TopologyBuilder::named(name, plan)
            .nodes(NODES)
            .router("tor", &[1])
            .build()
            .context("build topology")?;
        let tor = start_tor(&topo)?;
        let objects = topo.guard().temp_dir().join("objects");
        std::fs::create_dir_all(&objects).context("objects dir")?;
        for node in topo.nodes() {
            write_node(&objects, node)?;
        }
        let mut demo = Demo {
            topo,
            tor,
            bin,
            fairlead: Vec::new(),
            pods: Vec::new(),
        };
        for i in 1..=NODES {
            let pid = demo.start_fairlead(i, &objects)?;
            demo.fairlead.push(pid);
        }
        for i in 1..=NODES {
            let addr = demo.node(i)?.address(Family::V6).context("node address")?;
            demo.wait(&format!("the ToR's session with node{i}"), || {
                demo.tor.session_established(addr).unwrap_or(false)
            })?;
        }
        for i in [1, 3] {
            let pod = demo.add_pod(i)?;
            demo.pods.push(pod);
        }
        let (from, to) = (&demo.pods[0], &demo.pods[1]);
        let to_ip = to.ip(Family::V6).context("pod IPv6 address")?;
        demo.wait(&format!("the pod on node1 pings {to_ip} on node3"), || {
            ping(&from.netns, to_ip).is_ok()
        })?;
        // node1's own view: every peer Established and every node's pod CIDR in the Loc-RIB.
        let peers = demo.peers_of(1)?;
        let cidrs = demo.pod_cidrs();
        demo.wait("node1: every neighbour Establ", || {
            demo.fairlead_cli(1, &["neighbor"])
                .is_ok_and(|t| all_established(&t, &peers))
        })?;
        demo.wait("node1: every pod CIDR in the RIB", || {
            demo.fairlead_cli(1, &["global", "rib", "-a", "ipv6"])
                .is_ok_and(|t| cidrs.iter().all(|c| rib_has(&t, c)))
        })?;
        Ok(demo)
    }

    pub fn node(&self, index: u8) -> anyhow::Result<&Node> {
        Ok(self.topo.node(index)?)
    }

    /// Addresses node `index` peers with: the ToR and every other node (iBGP full mesh).
    pub fn peers_of(&self, index: u8) -> anyhow::Result<Vec<IpAddr>> {
        let tor = self.topo.router("tor")?;
        let mut out = vec![tor.address(Family::V6).context("ToR address")?];
        for n in self.topo.nodes().iter().filter(|n| n.index != index) {
            out.push(n.address(Family::V6).context("node address")?);
        }
        Ok(out)
    }

    /// Every node's IPv6 pod CIDR.
    pub fn pod_cidrs(&self) -> Vec<IpNet> {
        self.topo
            .nodes()
            .iter()
            .filter_map(|n| n.pod_cidr(Family::V6))
            .collect()
    }

    /// `fairlead ARGS` inside node `index`'s namespace (the API listens on 127.0.0.1:50051 there).
    pub fn fairlead_cli(&self, index: u8, args: &[&str]) -> anyhow::Result<String> {
        let bin = self.bin.to_string_lossy();
        let mut argv = vec![bin.as_ref()];
        argv.extend_from_slice(args);
        Ok(exec_in(&self.node(index)?.netns, &argv)?)
    }

    /// Collects the sections the demo prints.
    pub fn report(&self) -> anyhow::Result<Report> {
        let mut topology = String::new();
        let tor = self.topo.router("tor")?;
        for n in self.topo.nodes() {
            topology.push_str(&format!(
                "{:<6} netns {:<28} address {:<16} pod CIDR {:<22} AS {CLUSTER_ASN}  fairlead pid {}\n",
                n.name,
                n.netns,
                n.address(Family::V6).map(|a| a.to_string()).unwrap_or_default(),
                n.pod_cidr(Family::V6).map(|c| c.to_string()).unwrap_or_default(),
                self.fairlead
                    .get(usize::from(n.index) - 1)
                    .copied()
                    .unwrap_or_default(),
            ));
        }
        topology.push_str(&format!(
            "{:<6} netns {:<28} address {:<16} announces {TOR_PREFIX:<21} AS {TOR_ASN}  (BIRD)\n",
            "tor",
            tor.netns,
            tor.address(Family::V6)
                .map(|a| a.to_string())
                .unwrap_or_default(),
        ));
        for (pod, node) in self.pods.iter().zip(["node1", "node3"]) {
            topology.push_str(&format!(
                "pod on {node}: netns {} address {}\n",
                pod.netns,
                pod.ip(Family::V6)
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            ));
        }
        let (from, to) = (&self.pods[0], &self.pods[1]);
        let ping_from = from.ip(Family::V6).context("pod address")?;
        let ping_to = to.ip(Family::V6).context("pod address")?;
        let ping = exec_in(
            &from.netns,
            &[
                "ping",
                "-6",
                "-n",
                "-c",
                "3",
                "-i",
                "0.2",
                "-w",
                "5",
                &ping_to.to_string(),
            ],
        )?;
        Ok(Report {
            topology,
            neighbor: self.fairlead_cli(1, &["neighbor"])?,
            rib: self.fairlead_cli(1, &["global", "rib", "-a", "ipv6"])?,
            tor_routes: self.tor.birdc(&["show", "route"])?,
            ping_from,
            ping_to,
            ping,
        })
    }

    /// A bounded wait; on timeout the fairlead logs are attached.
    fn wait(&self, what: &str, f: impl Fn() -> bool) -> anyhow::Result<()> {
        wait_until(what, TIMEOUT, POLL, f).with_context(|| self.logs())
    }

    fn logs(&self) -> String {
        (1..=NODES)
            .map(|i| {
                let log = self.topo.guard().log(&format!("fairlead-node{i}"));
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "--- fairlead on node{i} (last lines) ---\n{}",
                    lines[lines.len().saturating_sub(20)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn conflist_path(&self, index: u8) -> PathBuf {
        self.topo
            .guard()
            .temp_dir()
            .join(format!("cni-node{index}"))
            .join("10-fairlead.conflist")
    }

    /// `fairlead run` in node `index`'s namespace, reading its Node from `objects`, peering with the ToR.
    fn start_fairlead(&self, index: u8, objects: &Path) -> anyhow::Result<u32> {
        let node = self.node(index)?;
        let tor = self.topo.router("tor")?;
        let tor_ip = tor
            .address_on(node.segment, Family::V6)
            .context("ToR address")?
            .to_string();
        let cluster_cidr = AddressPlan::Ipv6Only
            .cluster_cidrs()
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let objects = objects.to_string_lossy();
        let conflist = self.conflist_path(index).to_string_lossy().into_owned();
        let pid = self.topo.guard().spawn_in(
            &node.netns,
            &format!("fairlead-node{index}"),
            &self.bin.to_string_lossy(),
            &[
                "run",
                "--objects-from",
                &objects,
                "--hostname-override",
                &node.name,
                "--cluster-cidr",
                &cluster_cidr,
                "--peer-router-ips",
                &tor_ip,
                "--peer-router-asns",
                &TOR_ASN.to_string(),
                "--cni-conf-file",
                &conflist,
                "--run-service-proxy=false",
                "--run-firewall=false",
                "--health-port",
                "0",
                "--peer-router-import-prefixes",
                TOR_PREFIX,
            ],
        )?;
        Ok(pid)
    }

    /// Waits for the conflist fairlead writes on node `index` and makes a pod with it (host-local state in the
    /// demo's temp dir, not the machine's /var/lib/cni).
    fn add_pod(&self, index: u8) -> anyhow::Result<Pod> {
        let path = self.conflist_path(index);
        self.wait(
            &format!("fairlead on node{index} writes {}", path.display()),
            || path.is_file(),
        )?;
        let mut conflist = load_conflist(&path)?;
        conflist["plugins"][0]["ipam"]["dataDir"] = serde_json::Value::String(
            self.topo
                .guard()
                .temp_dir()
                .join(format!("ipam-node{index}"))
                .to_string_lossy()
                .into_owned(),
        );
        Ok(self.topo.add_pod(self.node(index)?, &conflist)?)
    }
}

/// BIRD on the ToR: one eBGP session per node, [`TOR_PREFIX`] announced, BGP routes exported to its kernel (so
/// it can answer pods).
fn start_tor(topo: &Topology) -> anyhow::Result<Bird> {
    let tor = topo.router("tor")?;
    let mut spec = RouterSpec::new(tor.router_id, TOR_ASN)
        .listen(tor.address(Family::V6).context("ToR address")?);
    for node in topo.nodes() {
        let local = tor
            .address_on(node.segment, Family::V6)
            .context("ToR address")?;
        spec = spec.neighbor(
            Neighbor::new(
                node.address(Family::V6).context("node address")?,
                CLUSTER_ASN,
            )
            .local_address(local),
        );
    }
    let prefix: IpNet = TOR_PREFIX.parse()?;
    spec = spec.announce(prefix);
    let owned = match prefix.network() {
        IpAddr::V6(a) => IpNet::new(IpAddr::V6((u128::from(a) + 1).into()), 128)?,
        IpAddr::V4(_) => bail!("{TOR_PREFIX} is not IPv6"),
    };
    exec_in(
        &tor.netns,
        &["ip", "addr", "add", &owned.to_string(), "dev", "lo"],
    )?;
    let bird = Bird::start(topo.guard(), &tor.netns, "bird-tor", &spec)?;
    let conf = topo.guard().temp_dir().join("bird-tor.conf");
    let mut text = std::fs::read_to_string(&conf).context("read bird conf")?;
    text.push_str("protocol kernel { ipv6 { export where source = RTS_BGP; }; }\n");
    std::fs::write(&conf, text).context("write bird conf")?;
    bird.birdc(&["configure"])?;
    Ok(bird)
}

/// Writes node `node`'s Node object (atomically: fairlead may read the directory at any time).
fn write_node(objects: &Path, node: &Node) -> anyhow::Result<()> {
    let cidrs: Vec<String> = node.pod_cidrs.iter().map(|c| c.to_string()).collect();
    let mut yaml = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\nspec:\n  podCIDR: {}\n  podCIDRs: [{}]\n\
         status:\n  addresses:\n",
        node.name,
        cidrs.first().context("node without pod CIDR")?,
        cidrs.join(", ")
    );
    for a in &node.addresses {
        yaml.push_str(&format!(
            "  - {{type: InternalIP, address: \"{}\"}}\n",
            a.addr()
        ));
    }
    yaml.push_str(&format!("  - {{type: Hostname, address: {}}}\n", node.name));
    let tmp = objects.join(format!(".{}.yaml.tmp", node.name));
    std::fs::write(&tmp, yaml).context("write node yaml")?;
    std::fs::rename(&tmp, objects.join(format!("{}.yaml", node.name))).context("rename")?;
    Ok(())
}

/// Whether the `fairlead neighbor` table lists each of `peers` in state `Establ`.
pub fn all_established(table: &str, peers: &[IpAddr]) -> bool {
    peers.iter().all(|p| {
        table.lines().any(|l| {
            let mut fields = l.split_whitespace();
            fields.next().and_then(|f| f.parse::<IpAddr>().ok()) == Some(*p) && l.contains("Establ")
        })
    })
}

/// Whether the `fairlead global rib` table has a line for `prefix`.
pub fn rib_has(table: &str, prefix: &IpNet) -> bool {
    let prefix = prefix.to_string();
    table
        .lines()
        .any(|l| l.split_whitespace().any(|f| f == prefix))
}

fn section(title: &str, body: &str) {
    println!("\n=== {title} ===");
    println!("{}", body.trim_end());
}

fn main() -> std::process::ExitCode {
    // The error chain as plain text (anyhow's `Debug` would add a backtrace under RUST_BACKTRACE).
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let keep = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--keep") => true,
        Some(other) => bail!("usage: demo [--keep] (unknown argument {other})"),
    };
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo creates network namespaces: run it as root");
    }
    if let Some(missing) = xcluster_tests::missing_requirements(TOOLS) {
        bail!("{missing}");
    }
    // Setup is not interruptible: Ctrl-C reaches the whole process group (fairlead and BIRD too), and the next
    // run removes the namespaces left behind (their owner's PID is gone).
    let bin = fairlead_bin()?;
    println!("building a 3-node IPv6-only cluster with a BIRD ToR (up to {TIMEOUT:?} per step)...");
    let demo = Demo::start("fairlead-demo", bin)?;
    let report = demo.report()?;
    section("topology", &report.topology);
    section("fairlead neighbor (node1)", &report.neighbor);
    section("fairlead global rib -a ipv6 (node1)", &report.rib);
    section("birdc show route (tor)", &report.tor_routes);
    section(
        &format!(
            "ping from the pod on node1 ({}) to the pod on node3 ({})",
            report.ping_from, report.ping_to
        ),
        &report.ping,
    );
    if keep {
        let bin = demo.bin.display();
        println!("\n=== the cluster stays up: poke around ===");
        for n in demo.topo.nodes() {
            println!("ip netns exec {} {bin} neighbor", n.netns);
        }
        let n1 = &demo.node(1)?.netns;
        println!("ip netns exec {n1} {bin} global rib -a ipv6");
        println!("ip netns exec {n1} ip -6 route show proto 44");
        println!("birdc -s {} show protocols", demo.tor.socket().display());
        println!(
            "ip netns exec {} ping -6 {}",
            demo.pods[0].netns, report.ping_to
        );
        println!("logs: {}/*.log", demo.topo.guard().temp_dir().display());
        let interrupt = Interrupt::install()?;
        println!(
            "Ctrl-C (or SIGTERM to pid {}) cleans up.",
            std::process::id()
        );
        while !interrupt.is_set() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    println!("\ncleaning up (processes by PID, then namespaces)...");
    drop(demo);
    println!("done");
    Ok(())
}
