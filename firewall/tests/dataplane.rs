//! The dataplane against the kernel (root only, in a namespace of its own): full sync, readback
//! equality, restart without a flush, element-only pod changes, repair after tampering, and
//! other tables left alone.

mod support;

use std::process::Command;

use firewall::dataplane::{Dataplane, NftTarget, SyncOutcome, element_batch};
use firewall::model::{Input, Options, build};
use support::*;

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn nft(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .output()
        .expect("spawn nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn ruleset(fixture: &str, pods: &[k8s_openapi::api::core::v1::Pod]) -> firewall::model::Ruleset {
    let policies = load_policies(fixture);
    let namespaces = namespaces();
    build(
        Input {
            policies: &policies,
            pods,
            namespaces: &namespaces,
        },
        &Options {
            node_addresses: node_addresses(),
            ..Default::default()
        },
    )
    .ruleset
}

#[test]
fn sync_readback_restart_delta_and_repair() {
    if !is_root() {
        eprintln!("SKIP sync_readback_restart_delta_and_repair: needs root");
        return;
    }
    let ns = Netns(format!("fl-fwdp{}", std::process::id()));
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success()
    );
    // Somebody else's table, which must survive everything.
    nft(
        &ns.0,
        &[
            "add table inet other; add chain inet other c { type filter hook forward priority 10; }; add rule inet other c tcp dport 9 drop",
        ],
    );
    let other_before = nft(&ns.0, &["list", "table", "inet", "other"]);

    let target = NftTarget::Netns(ns.0.clone());
    let mut dp = Dataplane::new(target.clone(), firewall::model::TABLE_NAME);
    dp.ensure_bridge_netfilter().expect("br_netfilter");
    for s in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0, "sysctl", "-n"])
            .arg(format!("net.bridge.{s}"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{s}");
    }

    for addressing in [Addressing::DualStackIpv6Primary, Addressing::Ipv6Only] {
        let all = pods(addressing);
        // Every fixture kind: selectors, ipBlock intervals, named ports (concatenations).
        for fixture in [
            "deny-all-both",
            "egress-ipblock-except",
            "named-port-per-pod",
            "multiple-ports-and-rules",
        ] {
            let full = ruleset(fixture, &all);
            // Fresh dataplane, table absent or different: one replacement.
            let mut dp = Dataplane::new(target.clone(), firewall::model::TABLE_NAME);
            match dp.sync(&full).unwrap() {
                SyncOutcome::Replaced(_) => {}
                other => panic!("{fixture}: first sync {other:?}"),
            }
            assert_eq!(
                dp.live_difference(&full).unwrap(),
                None,
                "{fixture}: readback"
            );

            // Restart: a new dataplane reads back, finds it equal, sends nothing.
            let mut restarted = Dataplane::new(target.clone(), firewall::model::TABLE_NAME);
            assert_eq!(
                restarted.sync(&full).unwrap(),
                SyncOutcome::Unchanged,
                "{fixture}: restart"
            );

            // A pod the policy acts on removed, then added again: element changes only.
            let smaller = (0..all.len())
                .map(|i| {
                    let mut fewer = all.clone();
                    fewer.remove(i);
                    ruleset(fixture, &fewer)
                })
                .find(|r| r.sets != full.sets)
                .expect("some pod matters");
            let batch = element_batch(&full, &smaller).expect("same structure");
            let text = serde_json::to_string(&batch).unwrap();
            assert!(
                !text.contains("\"table\":{")
                    && !text.contains("\"rule\"")
                    && !text.contains("\"chain\""),
                "{fixture}: pod removal touches more than elements: {text}"
            );
            match restarted.sync(&smaller).unwrap() {
                SyncOutcome::Elements { added: 0, removed } => assert!(removed > 0),
                other => panic!("{fixture}: pod removal {other:?}"),
            }
            assert!(restarted.live_equals(&smaller).unwrap());
            assert!(!restarted.live_equals(&full).unwrap());
            match restarted.sync(&full).unwrap() {
                SyncOutcome::Elements { added, removed: 0 } => assert!(added > 0),
                other => panic!("{fixture}: pod add {other:?}"),
            }
            assert!(restarted.live_equals(&full).unwrap());
        }
    }

    // Tampering: a rule added by hand is noticed at readback and replaced atomically.
    let full = ruleset("deny-all-both", &pods(Addressing::DualStackIpv6Primary));
    dp.replace(&full).unwrap();
    nft(
        &ns.0,
        &["insert rule inet fairlead-firewall forward accept"],
    );
    assert!(!dp.live_equals(&full).unwrap());
    dp.forget();
    assert!(matches!(dp.sync(&full).unwrap(), SyncOutcome::Replaced(_)));
    assert!(dp.live_equals(&full).unwrap());
    // An element deleted by hand: the next element delta fails in the kernel and the dataplane
    // falls back to a replacement.
    let set = full
        .sets
        .iter()
        .find(|(_, s)| !s.elements.is_empty())
        .map(|(n, _)| n.clone())
        .unwrap();
    let listing = nft(&ns.0, &["list", "set", "inet", "fairlead-firewall", &set]);
    assert!(listing.contains("elements"), "{listing}");
    nft(&ns.0, &["flush", "set", "inet", "fairlead-firewall", &set]);
    assert!(!dp.live_equals(&full).unwrap());
    let fewer: Vec<_> = pods(Addressing::DualStackIpv6Primary)[1..].to_vec();
    let smaller = ruleset("deny-all-both", &fewer);
    assert!(matches!(
        dp.sync(&smaller).unwrap(),
        SyncOutcome::Replaced(_)
    ));
    assert!(dp.live_equals(&smaller).unwrap());

    assert_eq!(
        nft(&ns.0, &["list", "table", "inet", "other"]),
        other_before,
        "another table was touched"
    );
}
