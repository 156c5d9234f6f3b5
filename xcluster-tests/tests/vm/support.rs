//! Helpers of the VM tier: the in-VM check and a network namespace guard.

use std::fs::File;
use std::process::Command;

/// Message for a VM-tier test started anywhere but inside the VM.
const NOT_IN_VM: &str = "this is a VM-tier test: it needs Debian's kernel with IPVS and runs inside the VM \
     started by `xcluster-tests/vm/run-tests` (which sets FAIRLEAD_IN_VM=1); do not run it with --ignored on the host";

/// Panics unless the test runs inside the VM tier's VM.
pub fn require_vm() {
    if std::env::var("FAIRLEAD_IN_VM").as_deref() != Ok("1") {
        panic!("{NOT_IN_VM}");
    }
}

/// Runs a command to completion and returns its stdout; panics with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace made by the test; removed on drop, even when the test panics.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `flvm-<test>-<pid>`; a leftover of the same name (an earlier crashed run) is removed first.
    pub fn create(test: &str) -> Self {
        let name = format!("flvm-{test}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        // Without an up interface a namespace has no IPv4 local table, and IPVS then takes every IPv4
        // destination for a broadcast address (inet_addr_type) and refuses it with EINVAL.
        ns.exec("ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread that has entered the namespace, so sockets it opens live there.
    /// A panic in `f` is re-raised here.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                f()
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs a command inside the namespace (`ip netns exec`) and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run("ip", &full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("warning: could not remove netns {}: {out:?}", self.name);
        }
    }
}
