//! The VM tier: tests that need kernel modules the host kernel lacks (IPVS). Each is `#[ignore]`d on the host
//! and run inside Debian's kernel by `xcluster-tests/vm/run-tests` (virtme-ng over the host's root filesystem),
//! which sets FAIRLEAD_IN_VM=1; run on the host with `--ignored`, they fail with a message saying so.

/// The namespace guard and the in-VM check shared by the tests below.
#[path = "vm/support.rs"]
mod support;

/// fairlead's IPVS generic netlink module against the real kernel: GET_INFO, services and destinations of both
/// families round-tripped in a network namespace, cross-checked with `ipvsadm` and `/proc/net/ip_vs`.
#[path = "vm/ipvs.rs"]
mod ipvs;

/// fairlead's proxy controller + dataplane in a node namespace with real TCP traffic (pods by the CNI bridge
/// plugin, a router namespace): ClusterIP spread and hairpin, NodePort, masquerade, reject, drain, restart.
#[path = "vm/proxy.rs"]
mod proxy;
