//! Shared by the speaker's netns tests: real BIRD and GoBGP peers that can be killed and restarted, and the
//! `Speaker` run in a namespace on a runtime of its own that can stop cleanly or die abruptly.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bgpd::fsm::GracefulRestartConfig;
use bgpd::packet::{Afi, PathAttributes, Safi};
use bgpd::rib::{BestChange, PeerId};
use bgpd::session::any_addrs;
use bgpd::speaker::{Neighbor, NeighborState, Speaker, SpeakerConfig, Subscription};
use ipnet::IpNet;

use crate::api_common::{Netns, Proc, veth};

pub const FAIRLEAD_ASN: u32 = 65001;
pub const PEER_ASN: u32 = 65002;
/// The restart time both sides advertise: long enough that no test waits it out by accident.
pub const RESTART_TIME: u16 = 30;

/// Which addresses the session runs over and which families it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// IPv6 session, IPv6 routes only.
    Ipv6Only,
    /// IPv6 session carrying IPv6 and IPv4 routes (IPv4 with IPv6 next hops, RFC 8950).
    DualStackV6Primary,
    /// IPv4 session carrying IPv4 and IPv6 routes (IPv6 with configured IPv6 next hops).
    DualStackV4Primary,
    /// IPv4 session, IPv4 routes only.
    Ipv4Only,
}

impl Plan {
    pub fn families(self) -> Vec<Afi> {
        match self {
            Plan::Ipv6Only => vec![Afi::Ipv6],
            Plan::DualStackV6Primary => vec![Afi::Ipv6, Afi::Ipv4],
            Plan::DualStackV4Primary => vec![Afi::Ipv4, Afi::Ipv6],
            Plan::Ipv4Only => vec![Afi::Ipv4],
        }
    }

    fn v6_session(self) -> bool {
        matches!(self, Plan::Ipv6Only | Plan::DualStackV6Primary)
    }

    /// fairlead's address (namespace A).
    pub fn fairlead_addr(self) -> IpAddr {
        if self.v6_session() {
            "fd00:7::1".parse().unwrap()
        } else {
            "198.18.7.1".parse().unwrap()
        }
    }

    /// The peer's address (namespace B).
    pub fn peer_addr(self) -> IpAddr {
        if self.v6_session() {
            "fd00:7::2".parse().unwrap()
        } else {
            "198.18.7.2".parse().unwrap()
        }
    }

    /// Routes the peer announces: the first of each family stays across its restart, the second does not.
    pub fn peer_routes(self) -> (Vec<IpNet>, Vec<IpNet>) {
        self.routes(
            ["198.18.160.0/24", "198.18.161.0/24"],
            ["fd00:99:1::/64", "fd00:99:2::/64"],
        )
    }

    /// Routes fairlead originates: the first of each family stays across its restart, the second does not.
    pub fn fairlead_routes(self) -> (Vec<IpNet>, Vec<IpNet>) {
        self.routes(
            ["198.18.170.0/24", "198.18.171.0/24"],
            ["fd00:99:a::/64", "fd00:99:b::/64"],
        )
    }

    fn routes(self, v4: [&str; 2], v6: [&str; 2]) -> (Vec<IpNet>, Vec<IpNet>) {
        let (mut keep, mut gone) = (Vec::new(), Vec::new());
        for afi in self.families() {
            let r = if afi == Afi::Ipv4 { v4 } else { v6 };
            keep.push(r[0].parse().unwrap());
            gone.push(r[1].parse().unwrap());
        }
        (keep, gone)
    }
}

/// Two namespaces joined by a veth pair: A (fairlead) and B (the peer), with both families' addresses.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
}

impl Pair {
    pub fn create(prefix: &str) -> Pair {
        let a = Netns::create(&format!("{prefix}-a"));
        let b = Netns::create(&format!("{prefix}-b"));
        veth(
            &a,
            &b,
            &["198.18.7.1/24", "fd00:7::1/64"],
            &["198.18.7.2/24", "fd00:7::2/64"],
        );
        Pair { a, b }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bird,
    Gobgp,
    /// FRR: zebra (started once, as user `frr`) and bgpd (killed and restarted).
    Frr,
}

const FRR_DIR: &str = "/usr/lib/frr";

/// A peer daemon in namespace B that can be killed (SIGKILL: no NOTIFICATION) and started again.
pub struct Peer {
    pub kind: Kind,
    pub plan: Plan,
    ns: String,
    dir: PathBuf,
    proc: Option<Proc>,
    zebra: Option<Proc>,
    /// Graceful restart on (helper and restarting speaker); hold time in seconds.
    pub graceful_restart: bool,
    pub hold_time: u16,
}

impl Peer {
    pub fn new(kind: Kind, plan: Plan, ns: &Netns, graceful_restart: bool, hold_time: u16) -> Peer {
        let dir = std::env::temp_dir().join(format!("{}-{kind:?}", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Peer {
            kind,
            plan,
            ns: ns.name.clone(),
            dir,
            proc: None,
            zebra: None,
            graceful_restart,
            hold_time,
        }
    }

    fn bird_config(&self, routes: &[IpNet]) -> String {
        let mut c = String::from("router id 198.18.7.2;\nprotocol device {}\n");
        for afi in self.plan.families() {
            let (ch, name) = if afi == Afi::Ipv4 {
                ("ipv4", "s4")
            } else {
                ("ipv6", "s6")
            };
            c += &format!("protocol static {name} {{ {ch};\n");
            for r in routes.iter().filter(|r| afi_of(r) == afi) {
                c += &format!("  route {r} blackhole;\n");
            }
            c += "}\n";
        }
        c += &format!(
            "protocol bgp fl {{\n  local {} as {PEER_ASN};\n  neighbor {} as {FAIRLEAD_ASN};\n  \
             hold time {}; keepalive time {};\n  connect retry time 1; error wait time 1, 2;\n",
            self.plan.peer_addr(),
            self.plan.fairlead_addr(),
            self.hold_time,
            self.hold_time / 3
        );
        if self.graceful_restart {
            c += &format!("  graceful restart on;\n  graceful restart time {RESTART_TIME};\n");
        }
        for afi in self.plan.families() {
            if afi == Afi::Ipv4 {
                let enh = if self.plan.v6_session() {
                    " extended next hop on;"
                } else {
                    ""
                };
                c += &format!("  ipv4 {{ import all; export all;{enh} }};\n");
            } else if self.plan.v6_session() {
                c += "  ipv6 { import all; export all; };\n";
            } else {
                // IPv6 over an IPv4 session: the IPv6 next hop must be configured.
                c += "  ipv6 { import all; export all; next hop address fd00:7::2; };\n";
            }
        }
        c + "}\n"
    }

    fn frr_config(&self, routes: &[IpNet]) -> String {
        let f = self.plan.fairlead_addr();
        let mut c = format!(
            "frr defaults traditional\nhostname peer\nlog stdout informational\n!\nrouter bgp {PEER_ASN}\n bgp router-id 198.18.7.2\n              no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n              neighbor {f} remote-as {FAIRLEAD_ASN}\n neighbor {f} timers {} {}\n neighbor {f} timers connect 1\n",
            self.hold_time / 3,
            self.hold_time
        );
        if self.graceful_restart {
            c += &format!(
                " bgp graceful-restart\n bgp graceful-restart restart-time {RESTART_TIME}\n                  bgp graceful-restart preserve-fw-state\n"
            );
        }
        if self.plan == Plan::DualStackV6Primary {
            c += &format!(" neighbor {f} capability extended-nexthop\n");
        }
        for afi in self.plan.families() {
            let name = if afi == Afi::Ipv4 { "ipv4" } else { "ipv6" };
            c += &format!(" address-family {name} unicast\n");
            for r in routes.iter().filter(|r| afi_of(r) == afi) {
                c += &format!("  network {r}\n");
            }
            c += &format!("  neighbor {f} activate\n exit-address-family\n");
        }
        c + "!\n"
    }

    fn frr_start(&mut self, routes: &[IpNet], log: std::fs::File) -> Proc {
        let vty = self.dir.join("vty");
        let path = |n: &str| vty.join(n).to_string_lossy().into_owned();
        if self.zebra.is_none() {
            std::fs::create_dir_all(&vty).unwrap();
            std::fs::write(vty.join("zebra.conf"), "").unwrap();
            // zebra refuses to run as root unless root is in `frrvty`: it runs as `frr` and writes here.
            let frr = nix::unistd::User::from_name("frr")
                .unwrap()
                .expect("the frr user");
            nix::unistd::chown(&vty, Some(frr.uid), Some(frr.gid)).unwrap();
            let zebra = Command::new("ip")
                .args(["netns", "exec", &self.ns, &format!("{FRR_DIR}/zebra")])
                .args(["-u", "frr", "-g", "frr", "-f", &path("zebra.conf")])
                .args(["-i", &path("zebra.pid"), "-z", &path("zserv.api")])
                .args(["--vty_socket", &vty.to_string_lossy(), "-P", "0"])
                .args(["--log", &format!("file:{}", path("zebra.log"))])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start zebra");
            self.zebra = Some(Proc(zebra));
            wait(Duration::from_secs(10), "zebra answers", || {
                self.vtysh("zebra", "show version").contains("FRRouting")
            });
        }
        let conf = self.dir.join("bgpd.conf");
        std::fs::write(&conf, self.frr_config(routes)).unwrap();
        let bgpd = Command::new("ip")
            .args(["netns", "exec", &self.ns, &format!("{FRR_DIR}/bgpd")])
            .args([
                "-S",
                "-n",
                "-z",
                &path("zserv.api"),
                "-f",
                &conf.to_string_lossy(),
            ])
            .args([
                "-i",
                &path("bgpd.pid"),
                "--vty_socket",
                &vty.to_string_lossy(),
                "-P",
                "0",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start bgpd");
        Proc(bgpd)
    }

    fn vtysh(&self, daemon: &str, command: &str) -> String {
        let o = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(self.dir.join("vty"))
            .args(["-d", daemon, "-c", command])
            .stdin(Stdio::null())
            .output()
            .expect("vtysh");
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    fn gobgp_config(&self) -> String {
        let mut c = format!(
            "[global.config]\n  as = {PEER_ASN}\n  router-id = \"198.18.7.2\"\n  port = 179\n\
             [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {FAIRLEAD_ASN}\n    \
             admin-down = true\n  [neighbors.timers.config]\n    hold-time = {}\n    keepalive-interval = {}\n    \
             connect-retry = 1\n",
            self.plan.fairlead_addr(),
            self.hold_time,
            self.hold_time / 3
        );
        if self.graceful_restart {
            c += &format!(
                "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = {RESTART_TIME}\n"
            );
        }
        for afi in self.plan.families() {
            let name = if afi == Afi::Ipv4 {
                "ipv4-unicast"
            } else {
                "ipv6-unicast"
            };
            c += &format!(
                "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{name}\"\n"
            );
            if self.graceful_restart {
                c += "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n";
            }
        }
        c
    }

    /// Starts the daemon announcing `routes`; `restarting` sets the Restart State bit (BIRD `-R`, gobgpd `-r`).
    /// GoBGP learns its routes through its CLI, so its neighbour starts administratively down and is enabled once
    /// they are in: the first UPDATEs then carry them all.
    pub fn start(&mut self, routes: &[IpNet], restarting: bool) {
        assert!(self.proc.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("daemon.log")).unwrap();
        if self.kind == Kind::Frr {
            let bgpd = self.frr_start(routes, log);
            self.proc = Some(bgpd);
            wait(Duration::from_secs(10), "FRR bgpd answers", || {
                self.vtysh("bgpd", "show version").contains("FRRouting")
            });
            return;
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]);
        match self.kind {
            Kind::Bird => {
                let conf = self.dir.join("bird.conf");
                std::fs::write(&conf, self.bird_config(routes)).unwrap();
                let _ = std::fs::remove_file(self.dir.join("bird.ctl"));
                cmd.arg("bird").arg("-f").arg("-c").arg(&conf);
                cmd.arg("-s").arg(self.dir.join("bird.ctl"));
                if restarting {
                    cmd.arg("-R");
                }
            }
            Kind::Gobgp => {
                let conf = self.dir.join("gobgpd.toml");
                std::fs::write(&conf, self.gobgp_config()).unwrap();
                cmd.arg("gobgpd").arg("-f").arg(&conf);
                cmd.args([
                    "--api-hosts=127.0.0.1:50051",
                    "--pprof-disable",
                    "-l",
                    "info",
                ]);
                if restarting {
                    cmd.arg("-r");
                }
            }
            Kind::Frr => unreachable!("started above"),
        }
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start peer daemon");
        self.proc = Some(Proc(child));
        match self.kind {
            Kind::Bird => wait(Duration::from_secs(10), "bird answers", || {
                self.cli(&["show", "status"]).contains("Daemon is up")
            }),
            Kind::Gobgp => {
                wait(Duration::from_secs(10), "gobgpd answers", || {
                    self.cli(&["global"]).contains("AS:")
                });
                for r in routes {
                    let mut args = vec!["global", "rib"];
                    if afi_of(r) == Afi::Ipv6 {
                        args.extend(["-a", "ipv6"]);
                    }
                    let r = r.to_string();
                    args.extend(["add", r.as_str()]);
                    let out = self.cli_out(&args);
                    assert!(out.status.success(), "gobgp {args:?}: {out:?}");
                }
                let addr = self.plan.fairlead_addr().to_string();
                let out = self.cli_out(&["neighbor", &addr, "enable"]);
                assert!(out.status.success(), "gobgp neighbor enable: {out:?}");
            }
            Kind::Frr => {}
        }
    }

    /// SIGKILL: the kernel closes the connection, no NOTIFICATION is sent.
    pub fn kill(&mut self) {
        self.proc = None;
    }

    fn cli_out(&self, args: &[&str]) -> std::process::Output {
        match self.kind {
            Kind::Frr => Command::new("vtysh")
                .arg("--vty_socket")
                .arg(self.dir.join("vty"))
                .args(["-d", "bgpd", "-c", &args.join(" ")])
                .stdin(Stdio::null())
                .output()
                .expect("vtysh"),
            Kind::Bird => Command::new("birdc")
                .arg("-s")
                .arg(self.dir.join("bird.ctl"))
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("birdc"),
            Kind::Gobgp => Command::new("ip")
                .args(["netns", "exec", &self.ns, "gobgp"])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("gobgp"),
        }
    }

    /// The daemon's CLI (birdc / gobgp), stdout and stderr.
    pub fn cli(&self, args: &[&str]) -> String {
        let o = self.cli_out(args);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// The daemon's view of `prefix` (BIRD: `show route for P all`; GoBGP: `global rib [-a ipv6] P`).
    pub fn route(&self, prefix: &IpNet) -> String {
        let p = prefix.to_string();
        match self.kind {
            Kind::Bird => self.cli(&["show", "route", "for", &p, "all"]),
            Kind::Frr => {
                let fam = if afi_of(prefix) == Afi::Ipv6 {
                    "ipv6"
                } else {
                    "ipv4"
                };
                self.cli(&["show", "bgp", fam, "unicast", &p])
            }
            Kind::Gobgp => {
                let fam = if afi_of(prefix) == Afi::Ipv6 {
                    "ipv6"
                } else {
                    "ipv4"
                };
                self.cli(&["global", "rib", "-a", fam, &p])
            }
        }
    }

    /// Whether the daemon has `prefix` from fairlead (BIRD: from protocol `fl`; GoBGP: via fairlead's address).
    pub fn has_route_from_fairlead(&self, prefix: &IpNet) -> bool {
        let out = self.route(prefix);
        let p = prefix.to_string();
        match self.kind {
            Kind::Bird => out.contains(&p) && out.contains("[fl "),
            Kind::Frr => {
                out.contains(&format!("entry for {p}"))
                    && out.contains(&format!("from {}", self.plan.fairlead_addr()))
            }
            Kind::Gobgp => out
                .lines()
                .any(|l| l.contains(&p) && l.contains(&self.plan.fairlead_addr().to_string())),
        }
    }

    /// The protocol / neighbour details (BIRD `show protocols all fl`, `gobgp neighbor ADDR`).
    pub fn session(&self) -> String {
        match self.kind {
            Kind::Bird => self.cli(&["show", "protocols", "all", "fl"]),
            Kind::Gobgp => self.cli(&["neighbor", &self.plan.fairlead_addr().to_string()]),
            Kind::Frr => self.cli(&[
                "show",
                "bgp",
                "neighbors",
                &self.plan.fairlead_addr().to_string(),
            ]),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.proc = None;
        self.zebra = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn afi_of(p: &IpNet) -> Afi {
    match p {
        IpNet::V4(_) => Afi::Ipv4,
        IpNet::V6(_) => Afi::Ipv6,
    }
}

/// Polls `f` every 100 ms for at most `timeout`; panics naming `what`.
pub fn wait(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// fairlead's speaker running in namespace A on a thread and runtime of its own.
pub struct Fairlead {
    pub speaker: Speaker,
    stop: Option<tokio::sync::oneshot::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The test thread's runtime, for calling the speaker.
    rt: tokio::runtime::Runtime,
}

impl Fairlead {
    /// Starts a speaker in `ns` that originates `originate` (before the session starts, so its first UPDATEs
    /// carry them) and peers with the plan's peer address.
    pub fn start(
        ns: &Netns,
        plan: Plan,
        originate: &[IpNet],
        graceful_restart: Option<bool>,
        hold_time: u16,
    ) -> Fairlead {
        let config = SpeakerConfig {
            asn: FAIRLEAD_ASN,
            router_id: "198.18.7.1".parse().unwrap(),
            cluster_id: None,
            listen: any_addrs(179).to_vec(),
        };
        let mut n = Neighbor::new(&config, plan.peer_addr(), PEER_ASN);
        // A fixed source: FRR's extended next hop turns on router advertisements, and a SLAAC address of A
        // would otherwise become the source of new connections (which FRR refuses as unconfigured).
        n.session.local_addr = Some(plan.fairlead_addr());
        n.session.fsm.hold_time = hold_time;
        n.session.fsm.connect_retry_time = Duration::from_millis(500);
        n.session.fsm.connect_retry_max = Duration::from_secs(2);
        n.session.fsm.families = plan
            .families()
            .into_iter()
            .map(|a| (a, Safi::Unicast))
            .collect();
        match plan {
            Plan::DualStackV6Primary => {
                n.session.fsm.extended_next_hop = vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)];
            }
            Plan::DualStackV4Primary => n.local_ipv6 = Some("fd00:7::1".parse().unwrap()),
            _ => {}
        }
        if let Some(restarting) = graceful_restart {
            n.session.fsm.graceful_restart = Some(GracefulRestartConfig {
                restart_time: RESTART_TIME,
                restarting,
                // Forwarding state (the kernel routes) survives a restart of fairlead's process.
                forwarding: plan
                    .families()
                    .into_iter()
                    .map(|a| (a, Safi::Unicast, true))
                    .collect(),
            });
        }
        let originate = originate.to_vec();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<bool>();
        let thread = crate::api_common::spawn_in_netns(&ns.name, move || {
            Box::pin(async move {
                let (s, task) = Speaker::start(config).expect("speaker starts");
                for p in originate {
                    s.originate(p, PathAttributes::default()).await.unwrap();
                }
                s.add_peer(n).await.unwrap();
                tx.send(s.clone()).unwrap();
                if stop_rx.await.unwrap_or(false) {
                    let _ = s.shutdown().await;
                    let _ = task.await;
                }
                // Otherwise the runtime is dropped with every task and socket in it: the connection closes
                // without a NOTIFICATION, as when the process is killed.
            })
        });
        let speaker = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("speaker started");
        Fairlead {
            speaker,
            stop: Some(stop_tx),
            thread: Some(thread),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    pub fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    pub fn neighbor(&self) -> NeighborState {
        self.block_on(self.speaker.neighbors())
            .unwrap()
            .into_iter()
            .next()
            .expect("one neighbour")
    }

    pub fn peer_id(&self, plan: Plan) -> PeerId {
        PeerId::new(plan.peer_addr())
    }

    /// The Loc-RIB entry of `prefix` (best path set; empty when absent).
    pub fn best(&self, prefix: &IpNet) -> Vec<bgpd::rib::Route> {
        self.block_on(self.speaker.best(*prefix)).unwrap()
    }

    pub fn subscribe(&self) -> Subscription {
        self.block_on(self.speaker.subscribe()).unwrap()
    }

    /// Ends the speaker: `graceful` sends Cease; otherwise the connection just closes.
    pub fn stop(mut self, graceful: bool) {
        self.stop_inner(graceful);
    }

    fn stop_inner(&mut self, graceful: bool) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(graceful);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Fairlead {
    fn drop(&mut self) {
        self.stop_inner(true);
    }
}

/// Every change received so far on a subscription.
pub fn drain(sub: &mut Subscription) -> Vec<BestChange> {
    let mut v = Vec::new();
    while let Ok(c) = sub.changes.try_recv() {
        v.push(c);
    }
    v
}
