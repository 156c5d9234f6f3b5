//! The README's demo (`examples/demo.rs`) run as a test: the same code path, with its output asserted.

use xcluster_tests::guard::current_test_name;
use xcluster_tests::{Family, require_root_and_tools};

// The example's `main` and its `--keep` path are not used here.
#[allow(dead_code)]
#[path = "../../examples/demo.rs"]
mod example;

use example::{Demo, all_established, fairlead_bin, rib_has};

/// The demo's sections: node1's neighbour table shows the ToR and both other nodes `Establ`, node1's IPv6
/// Loc-RIB lists every node's pod CIDR, the ToR learnt the pod CIDRs, and the cross-node pod ping succeeds.
#[test]
fn demo_ipv6_only() {
    if !require_root_and_tools(example::TOOLS) {
        return;
    }
    let bin = fairlead_bin().expect("fairlead binary");
    let demo = Demo::start(&current_test_name(), bin).expect("demo cluster");
    let report = demo.report().expect("demo report");

    let peers = demo.peers_of(1).unwrap();
    assert_eq!(peers.len(), 3, "ToR + node2 + node3: {peers:?}");
    assert!(
        all_established(&report.neighbor, &peers),
        "every peer of node1 must be Establ: {peers:?}\n{}",
        report.neighbor
    );
    // A table that does not list a peer must fail the check (the check can fail).
    let stranger = "fd00:0:0:1::99".parse().unwrap();
    assert!(!all_established(&report.neighbor, &[stranger]));

    let cidrs = demo.pod_cidrs();
    assert_eq!(cidrs.len(), 3);
    for cidr in &cidrs {
        assert!(
            rib_has(&report.rib, cidr),
            "node1's RIB lacks {cidr}:\n{}",
            report.rib
        );
        assert!(
            report.tor_routes.contains(&cidr.to_string()),
            "the ToR lacks {cidr}:\n{}",
            report.tor_routes
        );
    }
    assert!(!rib_has(
        &report.rib,
        &"fd00:10:244:9::/64".parse().unwrap()
    ));

    assert_eq!(report.ping_from, demo.pods[0].ip(Family::V6).unwrap());
    assert_eq!(report.ping_to, demo.pods[1].ip(Family::V6).unwrap());
    assert!(
        report.ping.contains(" 0% packet loss"),
        "ping from node1's pod to node3's pod:\n{}",
        report.ping
    );
    for section in [&report.topology, &report.neighbor, &report.rib] {
        assert!(!section.trim().is_empty());
    }
    assert!(report.topology.contains(&demo.node(1).unwrap().netns));
}
