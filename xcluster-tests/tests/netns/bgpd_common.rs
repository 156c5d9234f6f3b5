//! The standalone `bgpd` binary in a namespace: config writing, start, SIGHUP reload, and its state as it reports
//! it (SIGUSR1 writes neighbours and Loc-RIB as JSON to `--state-file`).
//!
//! The binary is found next to this test binary's own directory (`target/<profile>/bgpd`, two levels above
//! `target/<profile>/deps/netns-*`), so it works for any target dir and profile; `FAIRLEAD_BGPD` overrides it.
//! It must be built first: `cargo build -p bgpd --bin bgpd` (a test cannot build it: xcluster-tests is another
//! package, and `CARGO_BIN_EXE_*` only exists for a package's own binaries).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use xcluster_tests::{Guard, wait_until};

/// How long a session may take to come up (bgpd retries after 1 s, the peers after 1-2 s).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
pub const ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// The bgpd binary: `FAIRLEAD_BGPD`, else `bgpd` in the profile directory of this test binary.
pub fn bgpd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FAIRLEAD_BGPD") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir.join("bgpd");
    bin.is_file().then_some(bin)
}

/// The binary, or a printed reason to skip (under `CI=true` a missing binary fails the test instead).
pub fn require_bgpd() -> Option<PathBuf> {
    match bgpd_binary() {
        Some(b) => Some(b),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("bgpd binary not found: run `cargo build -p bgpd --bin bgpd` first")
        }
        None => {
            eprintln!("SKIP: bgpd binary not found: run `cargo build -p bgpd --bin bgpd` first");
            None
        }
    }
}

/// One neighbour line set of the TOML config.
#[derive(Clone, Debug)]
pub struct BgpdNeighbor {
    pub address: IpAddr,
    pub remote_asn: u32,
    pub families: Vec<&'static str>,
    pub extended_next_hop: bool,
    pub route_reflector_client: bool,
    pub next_hop_ipv4: Option<IpAddr>,
    pub next_hop_ipv6: Option<IpAddr>,
    /// `[neighbor.import] default = "deny"`: accept nothing from this neighbour.
    pub import_deny_all: bool,
    /// TCP-MD5 key.
    pub password: Option<String>,
}

impl BgpdNeighbor {
    pub fn new(address: IpAddr, remote_asn: u32, families: &[&'static str]) -> Self {
        BgpdNeighbor {
            address,
            remote_asn,
            families: families.to_vec(),
            extended_next_hop: false,
            route_reflector_client: false,
            next_hop_ipv4: None,
            next_hop_ipv6: None,
            import_deny_all: false,
            password: None,
        }
    }
}

/// The whole config file of a test's bgpd.
#[derive(Clone, Debug)]
pub struct BgpdConfig {
    pub asn: u32,
    pub router_id: std::net::Ipv4Addr,
    pub listen: Vec<IpAddr>,
    pub neighbors: Vec<BgpdNeighbor>,
    pub originate: Vec<IpNet>,
    /// The loopback gRPC API port (GoBGP-compatible; the stock `gobgp` CLI works against it).
    pub grpc_port: Option<u16>,
}

impl BgpdConfig {
    pub fn toml(&self) -> String {
        let q = |v: &[String]| v.join(", ");
        let listen: Vec<String> = self.listen.iter().map(|a| format!("\"{a}\"")).collect();
        let mut c = format!(
            "[global]\nasn = {}\nrouter_id = \"{}\"\nlisten_addresses = [{}]\n",
            self.asn,
            self.router_id,
            q(&listen)
        );
        if let Some(p) = self.grpc_port {
            c.push_str(&format!("grpc_port = {p}\n"));
        }
        for n in &self.neighbors {
            let fams: Vec<String> = n.families.iter().map(|f| format!("\"{f}\"")).collect();
            c.push_str(&format!(
                "\n[[neighbor]]\naddress = \"{}\"\nremote_asn = {}\nfamilies = [{}]\nhold_time = 9\nconnect_retry = 1\n",
                n.address,
                n.remote_asn,
                q(&fams)
            ));
            if n.extended_next_hop {
                c.push_str("extended_next_hop = true\n");
            }
            if n.route_reflector_client {
                c.push_str("route_reflector_client = true\n");
            }
            if let Some(a) = n.next_hop_ipv4 {
                c.push_str(&format!("next_hop_ipv4 = \"{a}\"\n"));
            }
            if let Some(a) = n.next_hop_ipv6 {
                c.push_str(&format!("next_hop_ipv6 = \"{a}\"\n"));
            }
            if let Some(p) = &n.password {
                c.push_str(&format!("password = \"{p}\"\n"));
            }
            if n.import_deny_all {
                c.push_str("[neighbor.import]\ndefault = \"deny\"\n");
            }
        }
        for p in &self.originate {
            c.push_str(&format!("\n[[originate]]\nprefix = \"{p}\"\n"));
        }
        c
    }
}

/// A running bgpd (its process belongs to the guard).
pub struct Bgpd {
    pub pid: u32,
    pub config_path: PathBuf,
    pub state_path: PathBuf,
    pub label: String,
    generation: u64,
}

/// One neighbour as bgpd reports it.
#[derive(Clone, Debug)]
pub struct NeighborStatus {
    pub state: String,
    pub established_secs: Option<f64>,
    pub flaps: u64,
}

/// One Loc-RIB best path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BestPath {
    pub prefix: IpNet,
    pub next_hop: Option<IpAddr>,
    pub from: Option<IpAddr>,
}

impl Bgpd {
    pub fn start(guard: &Guard, netns: &str, label: &str, config: &BgpdConfig) -> Bgpd {
        let bin = require_bgpd().expect("bgpd binary");
        let config_path = guard.temp_dir().join(format!("{label}.toml"));
        let state_path = guard.temp_dir().join(format!("{label}.state.json"));
        std::fs::write(&config_path, config.toml()).expect("write bgpd config");
        let (c, s) = (
            config_path.to_string_lossy().into_owned(),
            state_path.to_string_lossy().into_owned(),
        );
        let pid = guard
            .spawn_in(
                netns,
                label,
                &bin.to_string_lossy(),
                &["--config", &c, "--state-file", &s],
            )
            .expect("start bgpd");
        Bgpd {
            pid,
            config_path,
            state_path,
            label: label.to_owned(),
            generation: 0,
        }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig)
            .expect("signal bgpd");
    }

    /// Writes a new config and sends SIGHUP.
    pub fn reload_with(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("write bgpd config");
        self.signal(nix::sys::signal::Signal::SIGHUP);
    }

    pub fn alive(&self) -> bool {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), None).is_ok()
    }

    /// A fresh state dump (SIGUSR1, then the file with the next generation).
    pub fn state(&mut self, guard: &Guard) -> serde_json::Value {
        self.generation += 1;
        let want = self.generation;
        self.signal(nix::sys::signal::Signal::SIGUSR1);
        let mut doc = serde_json::Value::Null;
        wait_until(
            &format!("{}: state dump {want}", self.label),
            Duration::from_secs(5),
            Duration::from_millis(20),
            || {
                let Ok(text) = std::fs::read_to_string(&self.state_path) else {
                    return false;
                };
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(v) if v["generation"].as_u64() == Some(want) => {
                        doc = v;
                        true
                    }
                    _ => false,
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}; bgpd log: {}", guard.log(&self.label)));
        doc
    }

    pub fn neighbor(&mut self, guard: &Guard, addr: IpAddr) -> Option<NeighborStatus> {
        let doc = self.state(guard);
        doc["neighbors"]
            .as_array()?
            .iter()
            .find(|n| n["address"].as_str() == Some(&addr.to_string()))
            .map(|n| NeighborStatus {
                state: n["state"].as_str().unwrap_or_default().to_owned(),
                established_secs: n["established_secs"].as_f64(),
                flaps: n["flaps"].as_u64().unwrap_or_default(),
            })
    }

    /// The next hop of `prefix` as bgpd's gRPC API reports it to the stock `gobgp` CLI (run in `netns`).
    pub fn api_next_hop(netns: &str, port: u16, prefix: IpNet) -> Option<IpAddr> {
        let afi = if prefix.addr().is_ipv6() {
            "ipv6"
        } else {
            "ipv4"
        };
        let p = port.to_string();
        let out = xcluster_tests::exec_in(
            netns,
            &[
                "gobgp",
                "-u",
                "127.0.0.1",
                "-p",
                &p,
                "global",
                "rib",
                "-a",
                afi,
                &prefix.to_string(),
                "-j",
            ],
        )
        .ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v[prefix.to_string()][0]["attrs"]
            .as_array()?
            .iter()
            .find_map(|a| a["nexthop"].as_str())
            .and_then(|a| a.parse().ok())
    }

    pub fn loc_rib(&mut self, guard: &Guard) -> Vec<BestPath> {
        let doc = self.state(guard);
        let mut out = Vec::new();
        for fam in ["ipv6-unicast", "ipv4-unicast"] {
            for r in doc["rib"][fam].as_array().into_iter().flatten() {
                out.push(BestPath {
                    prefix: r["prefix"].as_str().unwrap().parse().unwrap(),
                    next_hop: r["next_hop"].as_str().map(|a| a.parse().unwrap()),
                    from: r["from"].as_str().map(|a| a.parse().unwrap()),
                });
            }
        }
        out
    }

    pub fn wait_established(&mut self, guard: &Guard, addr: IpAddr) {
        let deadline = Instant::now() + SESSION_TIMEOUT;
        loop {
            let n = self.neighbor(guard, addr);
            if n.as_ref().is_some_and(|n| n.state == "Established") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "bgpd: session with {addr} not Established within {SESSION_TIMEOUT:?}: {n:?}; log: {}",
                    guard.log(&self.label)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the best path of `prefix` satisfies `f` (`None`: no route).
    pub fn wait_best(
        &mut self,
        guard: &Guard,
        prefix: IpNet,
        what: &str,
        f: impl Fn(Option<&BestPath>) -> bool,
    ) -> Option<BestPath> {
        let deadline = Instant::now() + ROUTE_TIMEOUT;
        loop {
            let rib = self.loc_rib(guard);
            let best = rib.iter().find(|b| b.prefix == prefix);
            if f(best) {
                return best.cloned();
            }
            if Instant::now() > deadline {
                panic!("bgpd: {prefix}: {what} not seen within {ROUTE_TIMEOUT:?}; last: {best:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
