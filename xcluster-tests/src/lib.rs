//! xcluster-tests: the multi-node test harness.
//! Test hosts in network namespaces on shared segments, real BGP peers (BIRD, GoBGP, FRR),
//! pods made by the real CNI bridge plugin, and the VM tier for kernels with IPVS.
//!
//! Brief overview:
//! - [`TopologyBuilder`] -> [`Topology`]: nodes and routers in namespaces on bridge segments, addressed by an
//!   [`AddressPlan`]; [`Topology::add_pod`] makes a [`Pod`] with the real CNI plugins.
//! - [`bgp`]: typed [`bgp::RouterSpec`] -> BIRD / GoBGP / FRR configs, daemons started in a namespace, CLI queries.
//! - [`Guard`]: owns the test's namespaces, processes and temp dir; Drop cleans everything up.
//! - [`exec`]: run in a namespace, [`wait_until`], [`ping`], [`tcp_connect`].
//! - [`require_root_and_tools`]: the skip rule (a skip is a failure under `CI=true`).

pub mod bgp;
pub mod cni;
pub mod error;
pub mod exec;
pub mod guard;
pub mod plan;
pub mod topology;

use std::path::PathBuf;

pub use cni::{Pod, bridge_conflist, load_conflist};
pub use error::{HarnessError, Result};
pub use exec::{exec_in, ping, tcp_connect, wait_until};
pub use guard::Guard;
pub use plan::{AddressPlan, Family};
pub use topology::{Node, Router, Segment, Topology, TopologyBuilder};

/// Directories searched for tools besides `PATH` (daemons and plugins live outside it on Debian).
const EXTRA_TOOL_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/lib/frr", "/usr/lib/cni"];

/// Finds a tool by name in `PATH` and the Debian daemon/plugin directories (an absolute path is checked as is).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let candidate = PathBuf::from(name);
    if candidate.is_absolute() {
        return candidate.is_file().then_some(candidate);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_TOOL_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Why the netns tier cannot run here, if it cannot: not root, or one of `tools` missing.
pub fn missing_requirements(tools: &[&str]) -> Option<String> {
    let mut why = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        why.push("not running as root".to_owned());
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find_tool(t).is_none())
        .collect();
    if !missing.is_empty() {
        why.push(format!("missing tools: {}", missing.join(", ")));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The skip rule of the netns tier. Returns true when the test can run. Otherwise prints why and returns
/// false (the test returns early) — except under `CI=true`, where a skip is a failure and this panics.
pub fn require_root_and_tools(tools: &[&str]) -> bool {
    let Some(why) = missing_requirements(tools) else {
        return true;
    };
    let test = guard::current_test_name();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: cannot run under CI=true: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_named() {
        let why =
            missing_requirements(&["sh", "fairlead-no-such-tool"]).expect("must not be runnable");
        assert!(why.contains("fairlead-no-such-tool"), "{why}");
        assert!(!why.contains("sh,"), "{why}");
        assert!(find_tool("sh").is_some());
        assert!(find_tool("/no/such/fairlead/tool").is_none());
    }
}
