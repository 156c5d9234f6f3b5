//! The netns tier: tests that build nodes, pods and BGP peers in network namespaces (root only; they skip with
//! a reason otherwise, and fail under CI=true). Run: `cargo test -p xcluster-tests --test netns`.

/// Topology + CNI pods + reachability in every address plan.
#[path = "netns/smoke.rs"]
mod smoke;

/// Cleanup guarantees: nothing is left behind, stale leftovers are removed, waits and commands fail usefully.
#[path = "netns/guard.rs"]
mod guard;

/// Real BGP daemons (BIRD, GoBGP, FRR): each starts and answers its CLI; pairs of them peer.
#[path = "netns/bgp.rs"]
mod bgp;

/// The standalone `bgpd` binary: config, state dumps, start/reload helpers (finds `target/<profile>/bgpd`).
#[path = "netns/bgpd_common.rs"]
mod bgpd_common;

/// The `bgpd` binary against BIRD and FRR: both families, eBGP/iBGP, route reflector, SIGHUP reloads.
#[path = "netns/bgpd_interop.rs"]
mod bgpd_interop;

/// End to end: the `fairlead` binary per node (`--objects-from`), BIRD as ToR, CNI pods from fairlead's conflist.
#[path = "netns/e2e_router.rs"]
mod e2e_router;

/// NetworkPolicy truth tables probed for real between CNI pods on 2 nodes, fairlead's firewall dataplane per node.
#[path = "netns/firewall.rs"]
mod firewall_policy;

/// The README's demo (`examples/demo.rs`): its code path run and its sections asserted.
#[path = "netns/demo.rs"]
mod demo;

/// `fairlead run`'s /metrics (BGP session state, prefixes, sync durations), /healthz and /readyz.
#[path = "netns/e2e_metrics.rs"]
mod e2e_metrics;

/// GoBGP compatibility: the stock `gobgp` CLI against `bgpd` and gobgpd; `fairlead`'s CLI against `bgpd`.
#[path = "netns/gobgp_compat.rs"]
mod gobgp_compat;

/// `fairlead cleanup` after `fairlead run`: no route, table, interface, NDP entry or conflist of fairlead remains.
#[path = "netns/e2e_cleanup.rs"]
mod e2e_cleanup;
