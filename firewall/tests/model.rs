//! Model behaviour outside the 9x9 tables: node and external addresses, traffic that is never
//! dropped, pod eligibility (hostNetwork, no IP, finished), invalid objects, drop logging.

mod support;

use std::net::IpAddr;

use firewall::model::eval::{EvalError, Packet, Transport, Verdict, allows, evaluate};
use firewall::model::{
    Action, Built, CtState, Family, Input, LogRate, ModelError, Options, Protocol, Ruleset, build,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use support::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn build_with(policies: &[NetworkPolicy], pods: &[Pod], options: &Options) -> Built {
    build(
        Input {
            policies,
            pods,
            namespaces: &namespaces(),
        },
        options,
    )
}

fn ruleset(fixture: &str, addressing: Addressing) -> Ruleset {
    let options = Options {
        node_addresses: node_addresses(),
        ..Default::default()
    };
    let built = build_with(&load_policies(fixture), &pods(addressing), &options);
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    built.ruleset
}

fn node(family: Family) -> IpAddr {
    match family {
        Family::Ipv4 => ip(NODE_V4),
        Family::Ipv6 => ip(NODE_V6),
    }
}

fn packet(src: IpAddr, dst: IpAddr, ct_state: CtState, transport: Transport) -> Packet {
    Packet {
        src,
        dst,
        ct_state,
        transport,
    }
}

#[test]
fn node_reaches_isolated_pods() {
    for addressing in Addressing::ALL {
        let rs = ruleset("deny-all-both", addressing);
        for f in addressing.families() {
            for probe in PROBES {
                let xa = pod_ip(0, 0, f);
                assert!(allows(&rs, node(f), xa, probe.protocol, probe.port).unwrap());
                // ... while another pod is blocked, so the node rule is what lets probes in.
                assert!(!allows(&rs, pod_ip(1, 0, f), xa, probe.protocol, probe.port).unwrap());
            }
        }
    }
}

#[test]
fn ipblock_matches_external_addresses_of_its_family_only() {
    let rs = ruleset("ingress-ipblock-except", Addressing::DualStackIpv6Primary);
    let xa4 = pod_ip(0, 0, Family::Ipv4);
    let xa6 = pod_ip(0, 0, Family::Ipv6);
    // Not a pod, inside z's block: allowed. The excepted address (z/c): blocked.
    assert!(allows(&rs, ip("198.18.3.200"), xa4, Protocol::Tcp, 80).unwrap());
    assert!(allows(&rs, ip("fd00:0:0:3::200"), xa6, Protocol::Tcp, 80).unwrap());
    assert!(!allows(&rs, ip("198.18.3.13"), xa4, Protocol::Tcp, 80).unwrap());
    assert!(!allows(&rs, ip("fd00:0:0:3::13"), xa6, Protocol::Tcp, 80).unwrap());
    assert!(!allows(&rs, ip("198.19.0.1"), xa4, Protocol::Tcp, 80).unwrap());
    assert!(!allows(&rs, ip("fd00:ff::1"), xa6, Protocol::Tcp, 80).unwrap());

    let rs = ruleset("ipblock-ipv4-only", Addressing::DualStackIpv4Primary);
    assert!(allows(&rs, ip("198.19.255.1"), xa4, Protocol::Udp, 81).unwrap());
    assert!(!allows(&rs, ip("fd00:ff::1"), xa6, Protocol::Udp, 81).unwrap());

    // Egress to an ipBlock reaches non-pod addresses of the block.
    let rs = ruleset("egress-ipblock-except", Addressing::DualStackIpv4Primary);
    assert!(allows(&rs, xa4, ip("198.18.2.99"), Protocol::Sctp, 80).unwrap());
    assert!(allows(&rs, xa6, ip("fd00:0:0:2::99"), Protocol::Sctp, 80).unwrap());
    assert!(!allows(&rs, xa4, ip("198.18.3.99"), Protocol::Sctp, 80).unwrap());
}

#[test]
fn essential_icmp_and_established_are_never_dropped() {
    for addressing in Addressing::ALL {
        let rs = ruleset("deny-all-both", addressing);
        for f in addressing.families() {
            let (xa, xb) = (pod_ip(0, 0, f), pod_ip(0, 1, f));
            let (errors, nd, echo): (Vec<Transport>, Vec<Transport>, Transport) = match f {
                Family::Ipv4 => (
                    [3, 11, 12]
                        .map(|t| Transport::Icmp { icmp_type: t })
                        .to_vec(),
                    vec![],
                    Transport::Icmp { icmp_type: 8 },
                ),
                Family::Ipv6 => (
                    [1, 2, 3, 4]
                        .map(|t| Transport::Icmpv6 { icmp_type: t })
                        .to_vec(),
                    [133, 134, 135, 136, 137]
                        .map(|t| Transport::Icmpv6 { icmp_type: t })
                        .to_vec(),
                    Transport::Icmpv6 { icmp_type: 128 },
                ),
            };
            for t in errors.into_iter().chain(nd) {
                let p = packet(xa, xb, CtState::New, t);
                assert_eq!(evaluate(&rs, &p).unwrap(), Verdict::Accept, "{p:?}");
            }
            // Echo is ordinary traffic: policed.
            let p = packet(xa, xb, CtState::New, echo);
            assert_eq!(evaluate(&rs, &p).unwrap(), Verdict::Drop, "{p:?}");
            for ct in [CtState::Established, CtState::Related] {
                let tcp = Transport::Port {
                    protocol: Protocol::Tcp,
                    dport: 80,
                };
                let p = packet(xa, xb, ct, tcp);
                assert_eq!(evaluate(&rs, &p).unwrap(), Verdict::Accept, "{p:?}");
            }
        }
    }
}

#[test]
fn rules_without_ports_cover_every_protocol() {
    let f = Family::Ipv6;
    let echo = Transport::Icmpv6 { icmp_type: 128 };
    let (ya, xa) = (pod_ip(1, 0, f), pod_ip(0, 0, f));
    let rs = ruleset("allow-all-ingress-rule", Addressing::Ipv6Only);
    assert_eq!(
        evaluate(&rs, &packet(ya, xa, CtState::New, echo)).unwrap(),
        Verdict::Accept
    );
    let rs = ruleset("port-80-tcp", Addressing::Ipv6Only);
    assert_eq!(
        evaluate(&rs, &packet(ya, xa, CtState::New, echo)).unwrap(),
        Verdict::Drop
    );
}

fn with_phase(mut p: Pod, phase: &str) -> Pod {
    p.status.as_mut().unwrap().phase = Some(phase.into());
    p
}

#[test]
fn pod_eligibility_follows_upstream() {
    let f = Family::Ipv4;
    let mut pods = pods(Addressing::Ipv4Only);
    // hostNetwork pod in x labelled like a, on another node address.
    let mut host = pod(0, 0, Addressing::Ipv4Only);
    host.metadata.name = Some("host".into());
    host.spec.as_mut().unwrap().host_network = Some(true);
    host.status.as_mut().unwrap().pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
        ip: "198.18.0.2".into(),
    }]);
    // A finished pod that kept an address, and a pod with no address yet.
    let mut done = with_phase(pod(0, 0, Addressing::Ipv4Only), "Succeeded");
    done.metadata.name = Some("done".into());
    done.status.as_mut().unwrap().pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
        ip: "198.18.1.50".into(),
    }]);
    let mut pending = with_phase(pod(0, 0, Addressing::Ipv4Only), "Pending");
    pending.metadata.name = Some("pending".into());
    pending.status.as_mut().unwrap().pod_ips = None;
    pending.status.as_mut().unwrap().pod_ip = None;
    // A Pending pod that already has its address is isolated from its first packet.
    let mut starting = with_phase(pod(0, 0, Addressing::Ipv4Only), "Pending");
    starting.metadata.name = Some("starting".into());
    starting.status.as_mut().unwrap().pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
        ip: "198.18.1.60".into(),
    }]);
    pods.extend([host, done, pending, starting]);

    let options = Options::default();
    let built = build_with(&load_policies("allow-same-namespace"), &pods, &options);
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    let rs = &built.ruleset;
    let (xa, ya) = (pod_ip(0, 0, f), pod_ip(1, 0, f));
    // hostNetwork: not isolated, and not a member of x for peer selection.
    assert!(allows(rs, ya, ip("198.18.0.2"), Protocol::Tcp, 80).unwrap());
    assert!(!allows(rs, ip("198.18.0.2"), xa, Protocol::Tcp, 80).unwrap());
    // Finished pod: neither isolated nor a peer.
    assert!(allows(rs, ya, ip("198.18.1.50"), Protocol::Tcp, 80).unwrap());
    assert!(!allows(rs, ip("198.18.1.50"), xa, Protocol::Tcp, 80).unwrap());
    // Starting pod: isolated and a peer.
    assert!(!allows(rs, ya, ip("198.18.1.60"), Protocol::Tcp, 80).unwrap());
    assert!(allows(rs, ip("198.18.1.60"), xa, Protocol::Tcp, 80).unwrap());
    // Exactly the 3 running x pods plus the starting one are isolated.
    assert_eq!(rs.sets["ingress_isolated_v4"].elements.len(), 4);
    assert!(rs.sets["ingress_isolated_v6"].elements.is_empty());
}

fn policy(yaml: &str) -> NetworkPolicy {
    serde_norway::from_str(yaml).unwrap()
}

#[test]
fn invalid_objects_are_skipped_with_their_names() {
    let good = load_policies("deny-all-ingress");
    let bad = [
        (
            "bad-cidr",
            "ipBlock: {cidr: 198.18.0.0/33}",
            ModelError::Cidr("198.18.0.0/33".into()),
        ),
        (
            "bad-op",
            "podSelector: {matchExpressions: [{key: pod, operator: Gt, values: ['1']}]}",
            ModelError::Selector("unknown operator \"Gt\" on key pod".into()),
        ),
        (
            "except-outside",
            "ipBlock: {cidr: 198.18.1.0/24, except: [198.18.2.0/24]}",
            ModelError::ExceptOutsideCidr {
                cidr: "198.18.1.0/24".parse().unwrap(),
                except: "198.18.2.0/24".parse().unwrap(),
            },
        ),
        ("empty-peer", "{}", ModelError::EmptyPeer),
        (
            "mixed-peer",
            "{ipBlock: {cidr: fd00::/8}, podSelector: {}}",
            ModelError::IpBlockWithSelector,
        ),
    ];
    let mut policies = good.clone();
    for (name, peer, _) in &bad {
        let peer = if peer.starts_with('{') {
            peer.to_string()
        } else {
            format!("{{{peer}}}")
        };
        policies.push(policy(&format!(
            "metadata: {{name: {name}, namespace: y}}\nspec:\n  podSelector: {{}}\n  ingress:\n  - from: [{peer}]\n"
        )));
    }
    for (name, ports, _) in [
        ("bad-proto", "[{protocol: ICMP}]", ()),
        ("endport-named", "[{port: web, endPort: 90}]", ()),
        ("endport-below", "[{port: 90, endPort: 80}]", ()),
        ("port-zero", "[{port: 0}]", ()),
    ] {
        policies.push(policy(&format!(
            "metadata: {{name: {name}, namespace: z}}\nspec:\n  podSelector: {{}}\n  ingress:\n  - ports: {ports}\n"
        )));
    }
    let mut bad_pod = pod(2, 2, Addressing::Ipv4Only);
    bad_pod.metadata.name = Some("bad-ip".into());
    bad_pod.status.as_mut().unwrap().pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
        ip: "not-an-ip".into(),
    }]);
    let mut all_pods = pods(Addressing::Ipv4Only);
    all_pods.push(bad_pod);

    let built = build_with(&policies, &all_pods, &Options::default());
    let skipped: Vec<(&str, &str, &str)> = built
        .skipped
        .iter()
        .map(|s| (s.kind, s.namespace.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(built.skipped.len(), bad.len() + 4 + 1, "{skipped:?}");
    for (name, _, err) in &bad {
        let s = built.skipped.iter().find(|s| s.name == *name).unwrap();
        assert_eq!((&s.error, s.namespace.as_str()), (err, "y"));
    }
    assert!(skipped.contains(&("Pod", "z", "bad-ip")));
    assert!(matches!(
        built
            .skipped
            .iter()
            .find(|s| s.name == "endport-below")
            .unwrap()
            .error,
        ModelError::EndPortBelowPort { port: 90, end: 80 }
    ));
    // The valid policy still applies: x is isolated, y and z are not.
    let f = Family::Ipv4;
    let rs = &built.ruleset;
    assert!(!allows(rs, pod_ip(1, 0, f), pod_ip(0, 0, f), Protocol::Tcp, 80).unwrap());
    assert!(allows(rs, pod_ip(0, 0, f), pod_ip(1, 0, f), Protocol::Tcp, 80).unwrap());
    assert!(allows(rs, pod_ip(0, 0, f), pod_ip(2, 0, f), Protocol::Tcp, 80).unwrap());
}

#[test]
fn drop_logging_is_rate_limited_and_changes_no_verdict() {
    let rate = LogRate {
        per_second: 5,
        burst: 10,
    };
    for fixture in ["deny-all-both", "ingress-and-egress", "named-port-per-pod"] {
        let policies = load_policies(fixture);
        let pods = pods(Addressing::DualStackIpv6Primary);
        let plain = build_with(&policies, &pods, &Options::default()).ruleset;
        let logged = build_with(
            &policies,
            &pods,
            &Options {
                log_drops: Some(rate),
                ..Default::default()
            },
        )
        .ruleset;
        for chain in ["ingress", "egress"] {
            let rules = &logged.chain(chain).unwrap().rules;
            let n = rules.len();
            assert!(matches!(&rules[n - 2].action, Action::Log { rate: r, .. } if *r == rate));
            assert_eq!(rules[n - 1].action, Action::Drop);
        }
        for f in Family::ALL {
            for probe in PROBES {
                assert_eq!(observe(&plain, f, probe), observe(&logged, f, probe));
            }
        }
    }
}

#[test]
fn evaluator_rejects_broken_rulesets() {
    let mut rs = ruleset("deny-all-ingress", Addressing::Ipv6Only);
    let (a, b) = (ip("fd00:0:0:1::11"), ip("198.18.1.12"));
    assert!(matches!(
        allows(&rs, a, b, Protocol::Tcp, 80),
        Err(EvalError::MixedFamilies(..))
    ));
    rs.sets.remove("ingress_isolated_v6");
    assert!(matches!(
        allows(&rs, a, ip("fd00:0:0:1::12"), Protocol::Tcp, 80),
        Err(EvalError::UnknownSet(s)) if s == "ingress_isolated_v6"
    ));
}

#[test]
fn comments_fit_nft_limit_for_longest_names() {
    let long: NetworkPolicy = serde_norway::from_str(&format!(
        "metadata: {{name: {}, namespace: {}}}\nspec:\n  podSelector: {{}}\n  ingress:\n  \
         - from: [{{ipBlock: {{cidr: fd00::/8}}}}, {{podSelector: {{}}}}]\n    ports: [{{port: {}}}]\n",
        "p".repeat(253),
        "n".repeat(63),
        "w".repeat(15)
    ))
    .unwrap();
    let built = build_with(&[long], &pods(Addressing::Ipv6Only), &Options::default());
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    let rs = &built.ruleset;
    // nft rejects comments over 128 characters (checked with nft 1.0.6).
    for set in rs.sets.values() {
        assert!(set.comment.len() <= 128, "{}", set.comment);
    }
    for chain in &rs.chains {
        for rule in &chain.rules {
            assert!(rule.comment.as_ref().is_none_or(|c| c.len() <= 128));
        }
    }
    assert!(rs.sets.values().any(|s| s.comment.len() == 120));
}

#[test]
fn output_hook_polices_proxied_traffic_but_not_the_node() {
    use firewall::model::Hook;
    use firewall::model::eval::allows_at;
    for addressing in Addressing::ALL {
        let rs = ruleset("ingress-ipblock-except", addressing);
        let deny = ruleset("deny-all-both", addressing);
        for f in addressing.families() {
            let xa = pod_ip(0, 0, f);
            let (inside, excepted, outside) = match f {
                Family::Ipv4 => (ip("198.18.3.200"), ip("198.18.3.13"), ip("198.19.0.1")),
                Family::Ipv6 => (
                    ip("fd00:0:0:3::200"),
                    ip("fd00:0:0:3::13"),
                    ip("fd00:ff::1"),
                ),
            };
            // External clients through a NodePort (source kept): ipBlock decides.
            for (src, want) in [(inside, true), (excepted, false), (outside, false)] {
                assert_eq!(
                    allows_at(&rs, Hook::Output, src, xa, Protocol::Tcp, 80).unwrap(),
                    want,
                    "{src} -> {xa}"
                );
            }
            // The node's own packets pass even towards a deny-all pod; a proxied pod's do not,
            // in either direction.
            for probe in PROBES {
                let (p, port) = (probe.protocol, probe.port);
                assert!(allows_at(&deny, Hook::Output, node(f), xa, p, port).unwrap());
                assert!(!allows_at(&deny, Hook::Output, pod_ip(1, 0, f), xa, p, port).unwrap());
                assert!(!allows_at(&deny, Hook::Output, xa, pod_ip(1, 0, f), p, port).unwrap());
            }
        }
    }
}

#[test]
fn equal_selections_share_one_pair_of_sets() {
    // matchLabels {pod: a} and matchExpressions pod In [a] select the same pods the same way;
    // a peer with only a podSelector in the policy's namespace is the same selection too.
    let policies: Vec<NetworkPolicy> = [
        "metadata: {name: p1, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  \
         policyTypes: [Ingress]\n",
        "metadata: {name: p2, namespace: x}\nspec:\n  podSelector:\n    matchExpressions: \
         [{key: pod, operator: In, values: [a]}]\n  ingress:\n  - from: [{podSelector: \
         {matchLabels: {pod: a}}}]\n",
        "metadata: {name: p3, namespace: y}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  \
         policyTypes: [Ingress]\n",
    ]
    .iter()
    .map(|y| policy(y))
    .collect();
    let built = build_with(
        &policies,
        &pods(Addressing::DualStackIpv6Primary),
        &Options::default(),
    );
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    let selection_sets: Vec<&String> = built
        .ruleset
        .sets
        .keys()
        .filter(|k| k.starts_with("sel"))
        .collect();
    // x/a (three uses) and y/a: two selections, one set per family each.
    assert_eq!(selection_sets.len(), 4, "{selection_sets:?}");
    assert_eq!(
        built.ruleset.sets["sel0_v6"].comment,
        "pods in x where pod=a"
    );
}
