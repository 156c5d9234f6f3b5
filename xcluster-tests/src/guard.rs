//! The per-test guard: names namespaces with the test's prefix and, on drop, kills the test's processes and
//! deletes its namespaces and temp directory, even when the test panicked.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{HarnessError, Result};
use crate::exec::{command_line, ip, ns_command};

/// How long a process gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// `ip netns add` makes /run/netns a shared mount the first time; two threads doing that at once can race,
/// so namespace creation is serialised within the test binary.
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// A process started by the test, kept so Drop can stop it and reap it.
struct Spawned {
    label: String,
    child: Child,
}

#[derive(Default)]
struct State {
    namespaces: Vec<String>,
    processes: Vec<Spawned>,
}

/// Owns everything one test created. Drop: SIGTERM every process (bounded wait, then SIGKILL), delete every
/// namespace (newest first), remove the temp directory.
pub struct Guard {
    prefix: String,
    temp_dir: PathBuf,
    state: Mutex<State>,
}

/// The test's name as libtest gives it (the thread name), or `test` outside libtest.
pub fn current_test_name() -> String {
    std::thread::current().name().unwrap_or("test").to_owned()
}

/// FNV-1a: a hash that is stable across Rust versions, so a rerun finds the previous run's leftovers.
fn fnv1a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The namespace prefix shared by every run of a test: `fl-` and 6 hex digits of the test name's hash, then `-`.
pub fn prefix_for(test_name: &str) -> String {
    format!("fl-{:06x}-", fnv1a(test_name) & 0x00ff_ffff)
}

/// Run prefixes of guards alive in this process (a test may build several topologies).
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Distinguishes guards of the same test in one process.
static SEQ: AtomicU32 = AtomicU32::new(0);

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// The prefix of one guard: the test's prefix, this process's PID in base 36 and a sequence number,
/// e.g. `fl-1a2b3c-2kq-0-`. The PID tells a later run whether a leftover's owner is still alive.
fn run_prefix(test_prefix: &str) -> String {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{test_prefix}{}-{}-",
        base36(std::process::id()),
        base36(seq)
    )
}

/// Whether a name of `test_prefix` belongs to a run that is over: its PID is gone, or it is this process and no
/// live guard has it. A name whose owner runs elsewhere (another test process) is left alone.
fn is_stale(test_prefix: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(test_prefix) else {
        return false;
    };
    let Some(pid) = rest
        .split('-')
        .next()
        .and_then(|p| u32::from_str_radix(p, 36).ok())
        .and_then(|p| i32::try_from(p).ok())
    else {
        return true;
    };
    if u32::try_from(pid).ok() == Some(std::process::id()) {
        let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        return !live.iter().any(|l| name.starts_with(l.as_str()));
    }
    kill(Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
}

/// Names of all network namespaces (`ip netns list`).
pub fn list_netns() -> Result<Vec<String>> {
    let out = ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Deletes a namespace after killing whatever still runs in it (only namespaces this harness named).
fn delete_netns(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    if let Err(e) = ip(&["netns", "del", name]) {
        tracing::warn!(netns = name, error = %e, "could not delete namespace");
    }
}

/// Removes leftovers of earlier runs of the test with `test_prefix` (see [`prefix_for`]) whose process is gone:
/// namespaces (and what still runs in them) and temp directories.
pub fn stale_cleanup(test_prefix: &str) -> Result<()> {
    for ns in list_netns()? {
        if is_stale(test_prefix, &ns) {
            tracing::info!(netns = ns, "removing stale namespace");
            delete_netns(&ns);
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name
                .strip_prefix("fairlead-")
                .is_some_and(|n| is_stale(test_prefix, n))
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

impl Guard {
    /// A guard for the current test (named after the libtest thread).
    pub fn for_current_test() -> Result<Guard> {
        Guard::new(&current_test_name())
    }

    /// A guard for `test_name`: cleans up a previous run's leftovers and makes a fresh temp directory.
    pub fn new(test_name: &str) -> Result<Guard> {
        let test_prefix = prefix_for(test_name);
        stale_cleanup(&test_prefix)?;
        let prefix = run_prefix(&test_prefix);
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(prefix.clone());
        let temp_dir = std::env::temp_dir().join(format!("fairlead-{prefix}"));
        std::fs::create_dir_all(&temp_dir)
            .map_err(|e| HarnessError::io("create directory", &temp_dir, e))?;
        tracing::debug!(test = test_name, prefix, "guard created");
        Ok(Guard {
            prefix,
            temp_dir,
            state: Mutex::new(State::default()),
        })
    }

    /// This guard's namespace prefix, e.g. `fl-1a2b3c-2kq-0-` (test hash, PID, sequence).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The test's private temp directory (removed on drop).
    pub fn temp_dir(&self) -> &Path {
        &self.temp_dir
    }

    /// The full namespace name for `suffix`.
    pub fn netns_name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Creates namespace `<prefix><suffix>` with `lo` up and IPv6 DAD off (tests must not wait seconds for it),
    /// and registers it for deletion. Returns its name.
    pub fn add_netns(&self, suffix: &str) -> Result<String> {
        let name = self.netns_name(suffix);
        {
            let _serial = NETNS_ADD.lock().unwrap_or_else(|p| p.into_inner());
            ip(&["netns", "add", &name])?;
        }
        self.lock().namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        crate::exec::exec_in(
            &name,
            &[
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        )?;
        Ok(name)
    }

    /// Namespaces created so far, oldest first.
    pub fn namespaces(&self) -> Vec<String> {
        self.lock().namespaces.clone()
    }

    /// Starts `program args` inside `netns`, stdout and stderr to `<temp>/<label>.log`, and keeps it for Drop.
    /// Returns the PID (that of `program` itself: `ip netns exec` execs in place).
    pub fn spawn_in(&self, netns: &str, label: &str, program: &str, args: &[&str]) -> Result<u32> {
        let mut cmd = ns_command(netns, program);
        cmd.args(args);
        self.spawn(cmd, label)
    }

    /// Starts `cmd` (already wrapped for its namespace), output to `<temp>/<label>.log`; kept for Drop.
    pub fn spawn(&self, mut cmd: Command, label: &str) -> Result<u32> {
        let log = self.log_path(label);
        let out = File::create(&log).map_err(|e| HarnessError::io("create", &log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| HarnessError::io("duplicate", &log, e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            command: command_line(&cmd),
            source,
        })?;
        let pid = child.id();
        tracing::debug!(label, pid, command = command_line(&cmd), "spawned");
        self.lock().processes.push(Spawned {
            label: label.to_owned(),
            child,
        });
        Ok(pid)
    }

    /// The log file of a spawned process.
    pub fn log_path(&self, label: &str) -> PathBuf {
        self.temp_dir.join(format!("{label}.log"))
    }

    /// The log of a spawned process (empty if none), for failure messages.
    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.log_path(label)).unwrap_or_default()
    }

    /// PIDs of the processes still owned by the guard.
    pub fn pids(&self) -> Vec<u32> {
        self.lock().processes.iter().map(|p| p.child.id()).collect()
    }

    /// Stops one spawned process now (SIGTERM, bounded wait, SIGKILL) and forgets it.
    pub fn stop(&self, pid: u32) -> Result<()> {
        let spawned = {
            let mut st = self.lock();
            let idx = st
                .processes
                .iter()
                .position(|p| p.child.id() == pid)
                .ok_or_else(|| {
                    HarnessError::Topology(format!("pid {pid} not started by this guard"))
                })?;
            st.processes.remove(idx)
        };
        stop_all(vec![spawned]);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock must not stop the cleanup.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// SIGTERM to all, wait up to TERM_GRACE for all of them together, SIGKILL the rest, reap.
fn stop_all(mut processes: Vec<Spawned>) {
    for p in &processes {
        if let Ok(pid) = i32::try_from(p.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    loop {
        processes.retain_mut(|p| !matches!(p.child.try_wait(), Ok(Some(_))));
        if processes.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in &mut processes {
        tracing::warn!(
            label = p.label,
            pid = p.child.id(),
            "SIGKILL after SIGTERM grace"
        );
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let state = std::mem::take(&mut *self.lock());
        stop_all(state.processes);
        for ns in state.namespaces.iter().rev() {
            delete_netns(ns);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.temp_dir) {
            tracing::warn!(dir = %self.temp_dir.display(), error = %e, "could not remove temp dir");
        }
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|l| l != &self.prefix);
    }
}
