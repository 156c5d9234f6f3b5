//! Pod and namespace churn changes set elements only: the delta between two states is a set
//! element delta, applying it reproduces the new state, and policy changes are refused as such.

mod support;

use std::collections::BTreeMap;

use firewall::model::delta::{SetDelta, set_delta};
use firewall::model::{Family, Input, Options, Ruleset, SetElement, build};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use support::*;

/// Policies with every kind of pod-derived set: targets, pod/namespace peers, named ports.
fn policies() -> Vec<NetworkPolicy> {
    let mut v = Vec::new();
    for f in [
        "ingress-and-egress",
        "named-port-per-pod",
        "egress-named-port",
        "pod-or-namespace-two-peers",
        "ingress-ipblock-except",
    ] {
        v.extend(load_policies(f));
    }
    v
}

fn state(pods: &[Pod], namespaces: &[Namespace]) -> Ruleset {
    let policies = policies();
    let built = build(
        Input {
            policies: &policies,
            pods,
            namespaces,
        },
        &Options {
            node_addresses: node_addresses(),
            ..Default::default()
        },
    );
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    built.ruleset
}

/// A fourth pod in x, labelled like a (so it joins a's sets and has `web` on 80).
fn pod_d(addressing: Addressing) -> Pod {
    let mut d = pod(0, 0, addressing);
    d.metadata.name = Some("d".into());
    let ips: Vec<_> = addressing
        .families()
        .into_iter()
        .map(|f| k8s_openapi::api::core::v1::PodIP {
            ip: pod_ip(0, 3, f).to_string(),
        })
        .collect();
    d.status.as_mut().unwrap().pod_ips = Some(ips);
    d
}

fn check_roundtrip(old: &Ruleset, new: &Ruleset) -> SetDelta {
    let delta = set_delta(old, new).expect("pod churn must be a set-element delta");
    let mut patched = old.clone();
    delta.apply(&mut patched);
    assert_eq!(&patched, new);
    delta
}

#[test]
fn pod_add_and_remove_change_only_set_elements() {
    for addressing in Addressing::ALL {
        let ns = namespaces();
        let before = pods(addressing);
        let mut after = before.clone();
        after.push(pod_d(addressing));
        let (old, new) = (state(&before, &ns), state(&after, &ns));
        assert_ne!(old, new);

        let added = check_roundtrip(&old, &new);
        assert!(added.removed.is_empty(), "{added:?}");
        let d_ips: Vec<_> = addressing
            .families()
            .into_iter()
            .map(|f| pod_ip(0, 3, f))
            .collect();
        // Every added element is about d, and d is in the sets a pod labelled a belongs to.
        for (set, elems) in &added.added {
            for e in elems {
                let addr = match e {
                    SetElement::Addr(a) | SetElement::AddrProtoPort(a, _, _) => *a,
                    SetElement::Net(n) => panic!("ipBlock set {set} changed: {n}"),
                };
                assert!(d_ips.contains(&addr), "{set}: {e:?}");
            }
        }
        for f in addressing.families() {
            let set = format!("ingress_isolated_{}", f.suffix());
            assert!(added.added[&set].contains(&SetElement::Addr(pod_ip(0, 3, f))));
            let np = format!("np0_{}", f.suffix());
            assert!(added.added[&np].contains(&SetElement::AddrProtoPort(
                pod_ip(0, 3, f),
                firewall::model::Protocol::Tcp,
                80
            )));
        }
        for f in [Family::Ipv4, Family::Ipv6] {
            if !addressing.families().contains(&f) {
                assert!(added.added.keys().all(|k| !k.ends_with(f.suffix())));
            }
        }

        let removed = check_roundtrip(&new, &old);
        assert_eq!(removed.removed, added.added);
        assert!(removed.added.is_empty());
        assert!(set_delta(&old, &old).unwrap().is_empty());
    }
}

#[test]
fn namespace_relabel_changes_only_set_elements() {
    let addressing = Addressing::DualStackIpv4Primary;
    let pods = pods(addressing);
    let before = namespaces();
    let mut after = before.clone();
    // z becomes ns=y: its pods join the "from ns=y" peers and leave the "to ns=z" peer.
    after[2].metadata.labels = Some(BTreeMap::from([("ns".to_string(), "y".to_string())]));
    let (old, new) = (state(&pods, &before), state(&pods, &after));
    let delta = check_roundtrip(&old, &new);
    assert!(!delta.removed.is_empty());
    assert!(!delta.added.is_empty());
    for elems in delta.added.values().chain(delta.removed.values()) {
        for e in elems {
            let SetElement::Addr(a) = e else {
                panic!("{e:?}")
            };
            assert!((0..3).any(|p| Family::ALL.iter().any(|f| pod_ip(2, p, *f) == *a)));
        }
    }
}

#[test]
fn policy_change_is_a_structure_change() {
    let ns = namespaces();
    let pods = pods(Addressing::Ipv6Only);
    let old = state(&pods, &ns);
    let mut policies = policies();
    policies.extend(load_policies("udp-only"));
    let new = build(
        Input {
            policies: &policies,
            pods: &pods,
            namespaces: &ns,
        },
        &Options {
            node_addresses: node_addresses(),
            ..Default::default()
        },
    )
    .ruleset;
    assert!(set_delta(&old, &new).is_err());
    let mut renamed = old.clone();
    renamed.table = "other".into();
    assert!(set_delta(&old, &renamed).is_err());
}
