//! Shared by the API tests: network-namespace and process guards, and an in-memory `ApiBackend`.
#![allow(dead_code)]

pub mod render;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bgpd::api::{
    AdminState, ApiBackend, ApiError, Destination, GlobalInfo, NewPath, PathDeletion, PathQuery,
    PeerConfig, PeerInfo, PeerTimers, ResetKind, RoutePath, SessionState, TableKind, afi_of,
    filter_destinations,
};
use bgpd::packet::Afi;

/// Whether the test can run (root); prints why it skips otherwise.
pub fn need_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    eprintln!("skipping {test}: needs root for network namespaces");
    false
}

/// A network namespace deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(prefix: &str) -> Netns {
        let name = format!("{prefix}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {cmd}: {e}"))
    }

    /// Starts a long-running process inside the namespace.
    pub fn spawn(&self, cmd: &str, args: &[&str]) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd}: {e}"));
        Proc(child)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Joins two namespaces with a veth pair `va` (in `a`) / `vb` (in `b`), with the given addresses.
pub fn veth(a: &Netns, b: &Netns, addrs_a: &[&str], addrs_b: &[&str]) {
    ip(&[
        "link", "add", "va", "netns", &a.name, "type", "veth", "peer", "name", "vb", "netns",
        &b.name,
    ]);
    for (ns, dev, addrs) in [(a, "va", addrs_a), (b, "vb", addrs_b)] {
        for addr in addrs {
            if addr.contains(':') {
                ns.ip(&["addr", "add", addr, "dev", dev, "nodad"]);
            } else {
                ns.ip(&["addr", "add", addr, "dev", dev]);
            }
        }
        ns.ip(&["link", "set", dev, "up"]);
    }
}

/// A process started by a test, killed (by its PID) and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 200 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts `f` on a thread inside network namespace `ns`, on a runtime of its own.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f())
    })
}

/// Runs `f` on a thread inside network namespace `ns`, on a runtime of its own.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f())
    })
    .join()
    .expect("netns thread")
}

/// The stdout of a command that must succeed.
pub fn stdout(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

// ---- an in-memory backend ----

/// Holds neighbours and tables in memory; records resets. Locally added paths go to the global table
/// (as best, ahead of received ones), with a UUID handle.
pub struct MemoryBackend {
    pub state: Mutex<MemoryState>,
}

pub struct MemoryState {
    pub global: GlobalInfo,
    pub peers: Vec<PeerInfo>,
    /// Received paths per neighbour (Adj-RIB-In); they are also candidates in the global table.
    pub adj_in: BTreeMap<IpAddr, Vec<RoutePath>>,
    pub adj_out: BTreeMap<IpAddr, Vec<RoutePath>>,
    /// Locally originated paths with their UUID.
    pub local: Vec<(Vec<u8>, RoutePath)>,
    pub resets: Vec<(Option<IpAddr>, ResetKind)>,
    next_uuid: u8,
}

impl MemoryBackend {
    pub fn new(global: GlobalInfo) -> MemoryBackend {
        MemoryBackend {
            state: Mutex::new(MemoryState {
                global,
                peers: Vec::new(),
                adj_in: BTreeMap::new(),
                adj_out: BTreeMap::new(),
                local: Vec::new(),
                resets: Vec::new(),
                next_uuid: 1,
            }),
        }
    }
}

fn group(paths: Vec<RoutePath>, afi: Afi) -> Vec<Destination> {
    let mut by_prefix: BTreeMap<ipnet::IpNet, Vec<RoutePath>> = BTreeMap::new();
    for p in paths.into_iter().filter(|p| afi_of(p.prefix.addr()) == afi) {
        by_prefix.entry(p.prefix).or_default().push(p);
    }
    by_prefix
        .into_iter()
        .map(|(prefix, paths)| Destination { prefix, paths })
        .collect()
}

fn peer_index(s: &MemoryState, a: IpAddr) -> Result<usize, ApiError> {
    s.peers
        .iter()
        .position(|p| p.address == a)
        .ok_or(ApiError::PeerNotFound(a))
}

impl ApiBackend for MemoryBackend {
    async fn global(&self) -> Result<GlobalInfo, ApiError> {
        Ok(self.state.lock().unwrap().global.clone())
    }

    async fn peers(&self, address: Option<IpAddr>) -> Result<Vec<PeerInfo>, ApiError> {
        let s = self.state.lock().unwrap();
        Ok(s.peers
            .iter()
            .filter(|p| address.is_none_or(|a| a == p.address))
            .cloned()
            .collect())
    }

    async fn paths(&self, q: PathQuery) -> Result<Vec<Destination>, ApiError> {
        let s = self.state.lock().unwrap();
        let dests = match q.table {
            TableKind::Global => {
                let mut all: Vec<RoutePath> = s.local.iter().map(|(_, p)| p.clone()).collect();
                all.extend(s.adj_in.values().flatten().cloned());
                let mut dests = group(all, q.afi);
                for d in &mut dests {
                    for (i, p) in d.paths.iter_mut().enumerate() {
                        p.best = i == 0;
                    }
                }
                dests
            }
            TableKind::AdjIn(a) => {
                peer_index(&s, a)?;
                group(s.adj_in.get(&a).cloned().unwrap_or_default(), q.afi)
            }
            TableKind::AdjOut(a) => {
                peer_index(&s, a)?;
                group(s.adj_out.get(&a).cloned().unwrap_or_default(), q.afi)
            }
        };
        Ok(filter_destinations(dests, &q.prefixes))
    }

    async fn add_path(&self, path: NewPath) -> Result<Vec<u8>, ApiError> {
        let mut s = self.state.lock().unwrap();
        let uuid = vec![s.next_uuid; 16];
        s.next_uuid += 1;
        s.local.retain(|(_, p)| p.prefix != path.prefix);
        let asn = s.global.asn;
        s.local.push((
            uuid.clone(),
            RoutePath {
                prefix: path.prefix,
                attrs: path.attrs,
                best: true,
                age: SystemTime::now(),
                neighbor: None,
                source_asn: asn,
                source_id: None,
                is_from_external: false,
                filtered: false,
                stale: false,
                path_id: 0,
                local_path_id: 0,
                uuid: uuid.clone(),
            },
        ));
        Ok(uuid)
    }

    async fn delete_path(&self, deletion: PathDeletion) -> Result<(), ApiError> {
        let mut s = self.state.lock().unwrap();
        match deletion {
            PathDeletion::Uuid(u) => s.local.retain(|(id, _)| *id != u),
            PathDeletion::Path(p) => s.local.retain(|(_, q)| q.prefix != p.prefix),
            PathDeletion::AllOfFamily(afi) => {
                s.local.retain(|(_, q)| afi_of(q.prefix.addr()) != afi)
            }
        }
        Ok(())
    }

    async fn add_peer(&self, c: PeerConfig) -> Result<(), ApiError> {
        let mut s = self.state.lock().unwrap();
        if s.peers.iter().any(|p| p.address == c.address) {
            return Err(ApiError::PeerExists(c.address));
        }
        let local_asn = c.local_asn.unwrap_or(s.global.asn);
        let mut p = peer(c.address, c.peer_asn, local_asn, SessionState::Active);
        p.description = c.description;
        p.admin_state = if c.admin_down {
            AdminState::Down
        } else {
            AdminState::Up
        };
        s.peers.push(p);
        Ok(())
    }

    async fn delete_peer(&self, a: IpAddr) -> Result<(), ApiError> {
        let mut s = self.state.lock().unwrap();
        let i = peer_index(&s, a)?;
        s.peers.remove(i);
        Ok(())
    }

    async fn enable_peer(&self, a: IpAddr) -> Result<(), ApiError> {
        let mut s = self.state.lock().unwrap();
        let i = peer_index(&s, a)?;
        s.peers[i].admin_state = AdminState::Up;
        Ok(())
    }

    async fn disable_peer(&self, a: IpAddr, _communication: String) -> Result<(), ApiError> {
        let mut s = self.state.lock().unwrap();
        let i = peer_index(&s, a)?;
        s.peers[i].admin_state = AdminState::Down;
        s.peers[i].session_state = SessionState::Idle;
        Ok(())
    }

    async fn reset_peer(&self, a: Option<IpAddr>, kind: ResetKind) -> Result<(), ApiError> {
        let mut s = self.state.lock().unwrap();
        if let Some(a) = a {
            peer_index(&s, a)?;
        }
        s.resets.push((a, kind));
        Ok(())
    }
}

/// A neighbour with GoBGP's default timers and the given state; counters zero.
pub fn peer(address: IpAddr, peer_asn: u32, local_asn: u32, state: SessionState) -> PeerInfo {
    PeerInfo {
        address,
        peer_asn,
        local_asn,
        description: String::new(),
        remote_router_id: None,
        session_state: state,
        admin_state: AdminState::Up,
        uptime: None,
        downtime: None,
        flops: 0,
        timers: PeerTimers {
            connect_retry: 120,
            hold_time: 90,
            keepalive_interval: 30,
            ..Default::default()
        },
        sent: Default::default(),
        received: Default::default(),
        families: Vec::new(),
        route_reflector_client: false,
        cluster_id: None,
        passive: false,
        multihop_ttl: None,
        local_address: None,
        local_port: 0,
        remote_port: 179,
        local_capabilities: Vec::new(),
        remote_capabilities: Vec::new(),
    }
}

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
