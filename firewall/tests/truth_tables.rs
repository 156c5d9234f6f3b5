//! NetworkPolicy truth tables on the upstream e2e scheme (namespaces x, y, z; pods a, b, c;
//! ports 80 and 81 over TCP, UDP and SCTP).
//!
//! Every expected table is written by hand from the NetworkPolicy API spec: rows are the source
//! pod, columns the destination pod, `X` allowed, `.` blocked. Each case runs in every pod
//! addressing (IPv6-only, dual-stack with either family primary, IPv4-only), probing each family
//! the pods have, and evaluates the *generated ruleset* (sets + chains) with the model's nftables
//! interpreter, at the forward hook (pod traffic routed or bridged by the node) and at the output
//! hook (the same connection as service traffic that IPVS forwards after DNAT). A probe selector is `all`, a protocol (`TCP`), or `TCP/80`; a `v4: ` / `v6: `
//! prefix restricts an entry to one address family.

mod support;

use firewall::model::{Family, Hook, Input, Options, build};
use support::*;

/// Runs one case; on failure prints, per addressing/family/probe, expected/observed/diff tables.
fn run_case(fixture: &str, expect: &[(&str, &str)]) {
    let policies = load_policies(fixture);
    let namespaces = namespaces();
    let parsed: Vec<(Option<Family>, Vec<Probe>, Matrix)> = expect
        .iter()
        .map(|(sel, table)| {
            let (family, sel) = match sel.split_once(':') {
                Some(("v4", rest)) => (Some(Family::Ipv4), rest),
                Some(("v6", rest)) => (Some(Family::Ipv6), rest),
                Some((other, _)) => panic!("unknown family prefix {other:?}"),
                None => (None, *sel),
            };
            (family, probes_of(sel), parse_table(table))
        })
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for addressing in Addressing::ALL {
        let pods = pods(addressing);
        let options = Options {
            node_addresses: node_addresses(),
            ..Default::default()
        };
        let built = build(
            Input {
                policies: &policies,
                pods: &pods,
                namespaces: &namespaces,
            },
            &options,
        );
        assert!(
            built.skipped.is_empty(),
            "{fixture}: skipped {:?}",
            built.skipped
        );
        for family in addressing.families() {
            for probe in PROBES {
                let entries: Vec<&Matrix> = parsed
                    .iter()
                    .filter(|(f, probes, _)| {
                        f.is_none_or(|f| f == family) && probes.contains(&probe)
                    })
                    .map(|(_, _, m)| m)
                    .collect();
                assert_eq!(
                    entries.len(),
                    1,
                    "{fixture}: {family:?} {probe} must be covered by exactly one table"
                );
                for hook in [Hook::Forward, Hook::Output] {
                    let observed = observe_at(&built.ruleset, hook, family, probe);
                    checked += 81;
                    if let Some(report) = diff_report(entries[0], &observed) {
                        failures.push(format!(
                            "--- {fixture} {addressing:?} {family:?} {probe} {hook:?}\n{report}"
                        ));
                    }
                }
            }
        }
    }
    // 4 addressings: 1 + 2 + 2 + 1 family runs of 6 probes x 2 hooks x 81 pairs.
    assert_eq!(checked, 6 * 6 * 2 * 81);
    assert!(
        failures.is_empty(),
        "{} mismatching tables:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

macro_rules! truth_table {
    ($name:ident, $fixture:literal, [$(($sel:literal, $table:literal)),+ $(,)?]) => {
        #[test]
        fn $name() {
            run_case($fixture, &[$(($sel, $table)),+]);
        }
    };
}

// Nothing selected: everything open.
truth_table!(
    no_policy,
    "no-policy",
    [(
        "all",
        "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
    ),]
);

// podSelector {} + policyTypes [Ingress], no rules.
truth_table!(
    deny_all_ingress,
    "deny-all-ingress",
    [(
        "all",
        "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// podSelector {} + policyTypes [Egress], no rules.
truth_table!(
    deny_all_egress,
    "deny-all-egress",
    [(
        "all",
        "
        x/a: ... ... ...
        x/b: ... ... ...
        x/c: ... ... ...
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
    ),]
);

// Both types, `ingress: []`, `egress: []`.
truth_table!(
    deny_all_both,
    "deny-all-both",
    [(
        "all",
        "
        x/a: ... ... ...
        x/b: ... ... ...
        x/c: ... ... ...
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// `ingress: [{}]` allows every source and port.
truth_table!(
    allow_all_ingress_rule,
    "allow-all-ingress-rule",
    [(
        "all",
        "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
    ),]
);

// From podSelector {} = every pod of x only.
truth_table!(
    allow_same_namespace,
    "allow-same-namespace",
    [(
        "all",
        "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// From namespaces labelled ns=y.
truth_table!(
    allow_from_namespace_label,
    "allow-from-namespace-label",
    [(
        "all",
        "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// One peer, both selectors: only y/b.
truth_table!(
    pod_and_namespace_selector_and,
    "pod-and-namespace-selector-and",
    [(
        "all",
        "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: XXX XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// Two peers: all of y, or x/b.
truth_table!(
    pod_or_namespace_two_peers,
    "pod-or-namespace-two-peers",
    [(
        "all",
        "
        x/a: ... XXX XXX
        x/b: XXX XXX XXX
        x/c: ... XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// Only x/a isolated.
truth_table!(
    deny_ingress_one_pod,
    "deny-ingress-one-pod",
    [(
        "all",
        "
        x/a: .XX XXX XXX
        x/b: .XX XXX XXX
        x/c: .XX XXX XXX
        y/a: .XX XXX XXX
        y/b: .XX XXX XXX
        y/c: .XX XXX XXX
        z/a: .XX XXX XXX
        z/b: .XX XXX XXX
        z/c: .XX XXX XXX
    "
    ),]
);

// x/a open on TCP/80 only.
truth_table!(
    port_80_tcp,
    "port-80-tcp",
    [
        (
            "TCP/80",
            "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "TCP/81 UDP SCTP",
            "
        x/a: .XX XXX XXX
        x/b: .XX XXX XXX
        x/c: .XX XXX XXX
        y/a: .XX XXX XXX
        y/b: .XX XXX XXX
        y/c: .XX XXX XXX
        z/a: .XX XXX XXX
        z/b: .XX XXX XXX
        z/c: .XX XXX XXX
    "
        ),
    ]
);

// From z and port 81 (TCP by default) in one rule.
truth_table!(
    port_81_from_namespace_z,
    "port-81-from-namespace-z",
    [
        (
            "TCP/81",
            "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "TCP/80 UDP SCTP",
            "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
        ),
    ]
);

// x/a, TCP 80-81.
truth_table!(
    endport_80_81,
    "endport-80-81",
    [
        (
            "TCP",
            "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "UDP SCTP",
            "
        x/a: .XX XXX XXX
        x/b: .XX XXX XXX
        x/c: .XX XXX XXX
        y/a: .XX XXX XXX
        y/b: .XX XXX XXX
        y/c: .XX XXX XXX
        z/a: .XX XXX XXX
        z/b: .XX XXX XXX
        z/c: .XX XXX XXX
    "
        ),
    ]
);

// x/a, TCP 81-90: 80 stays closed.
truth_table!(
    endport_81_90,
    "endport-81-90",
    [
        (
            "TCP/81",
            "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "TCP/80 UDP SCTP",
            "
        x/a: .XX XXX XXX
        x/b: .XX XXX XXX
        x/c: .XX XXX XXX
        y/a: .XX XXX XXX
        y/b: .XX XXX XXX
        y/c: .XX XXX XXX
        z/a: .XX XXX XXX
        z/b: .XX XXX XXX
        z/c: .XX XXX XXX
    "
        ),
    ]
);

// All of y, SCTP 79-81.
truth_table!(
    endport_sctp,
    "endport-sctp",
    [
        (
            "SCTP",
            "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "TCP UDP",
            "
        x/a: XXX ... XXX
        x/b: XXX ... XXX
        x/c: XXX ... XXX
        y/a: XXX ... XXX
        y/b: XXX ... XXX
        y/c: XXX ... XXX
        z/a: XXX ... XXX
        z/b: XXX ... XXX
        z/c: XXX ... XXX
    "
        ),
    ]
);

// Named port serve-81-tcp on x.
truth_table!(
    named_port,
    "named-port",
    [
        (
            "TCP/81",
            "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "TCP/80 UDP SCTP",
            "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
        ),
    ]
);

// serve-80-tcp asked over UDP: no pod has it, nothing opens.
truth_table!(
    named_port_wrong_protocol,
    "named-port-wrong-protocol",
    [(
        "all",
        "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// `web` is 80 on a, 81 on b, absent on c.
truth_table!(
    named_port_per_pod,
    "named-port-per-pod",
    [
        (
            "TCP/80",
            "
        x/a: X.. XXX XXX
        x/b: X.. XXX XXX
        x/c: X.. XXX XXX
        y/a: X.. XXX XXX
        y/b: X.. XXX XXX
        y/c: X.. XXX XXX
        z/a: X.. XXX XXX
        z/b: X.. XXX XXX
        z/c: X.. XXX XXX
    "
        ),
        (
            "TCP/81",
            "
        x/a: .X. XXX XXX
        x/b: .X. XXX XXX
        x/c: .X. XXX XXX
        y/a: .X. XXX XXX
        y/b: .X. XXX XXX
        y/c: .X. XXX XXX
        z/a: .X. XXX XXX
        z/b: .X. XXX XXX
        z/c: .X. XXX XXX
    "
        ),
        (
            "UDP SCTP",
            "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
        ),
    ]
);

// Protocol UDP without a port: every UDP port.
truth_table!(
    udp_only,
    "udp-only",
    [
        (
            "UDP",
            "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "TCP SCTP",
            "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
        ),
    ]
);

// SCTP/80 only.
truth_table!(
    sctp_80,
    "sctp-80",
    [
        (
            "SCTP/80",
            "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "TCP UDP SCTP/81",
            "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
        ),
    ]
);

// x may only talk to y.
truth_table!(
    egress_to_namespace,
    "egress-to-namespace",
    [(
        "all",
        "
        x/a: ... XXX ...
        x/b: ... XXX ...
        x/c: ... XXX ...
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
    ),]
);

// x egress to y's block except y/b.
truth_table!(
    egress_ipblock_except,
    "egress-ipblock-except",
    [(
        "all",
        "
        x/a: ... X.X ...
        x/b: ... X.X ...
        x/c: ... X.X ...
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
    ),]
);

// x ingress from z's block except z/c.
truth_table!(
    ingress_ipblock_except,
    "ingress-ipblock-except",
    [(
        "all",
        "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// An IPv4 block: IPv6 traffic into x is not matched.
truth_table!(
    ipblock_ipv4_only,
    "ipblock-ipv4-only",
    [
        (
            "v4: all",
            "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "v6: all",
            "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
        ),
    ]
);

// fd00::/8 except y's /64: IPv4 traffic into x not matched.
truth_table!(
    ipblock_ipv6_only,
    "ipblock-ipv6-only",
    [
        (
            "v6: all",
            "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "v4: all",
            "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
        ),
    ]
);

// namespaceSelector {} + pod=a: the a pods of every namespace.
truth_table!(
    any_namespace_pod_a,
    "any-namespace-pod-a",
    [(
        "all",
        "
        x/a: XXX XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: XXX XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: XXX XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// pod In [a, b] in x.
truth_table!(
    match_expressions_in,
    "match-expressions-in",
    [(
        "all",
        "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: ... XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// Targets pod NotIn [a]: x/b and x/c isolated.
truth_table!(
    match_expressions_notin,
    "match-expressions-notin",
    [(
        "all",
        "
        x/a: X.. XXX XXX
        x/b: X.. XXX XXX
        x/c: X.. XXX XXX
        y/a: X.. XXX XXX
        y/b: X.. XXX XXX
        y/c: X.. XXX XXX
        z/a: X.. XXX XXX
        z/b: X.. XXX XXX
        z/c: X.. XXX XXX
    "
    ),]
);

// ns NotIn [x] and pod Exists: y and z.
truth_table!(
    match_expressions_exists,
    "match-expressions-exists",
    [(
        "all",
        "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
    ),]
);

// team DoesNotExist: every pod of x.
truth_table!(
    match_expressions_doesnotexist,
    "match-expressions-doesnotexist",
    [(
        "all",
        "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// x/a: y on TCP/80, plus z on everything.
truth_table!(
    multiple_policies_union,
    "multiple-policies-union",
    [
        (
            "TCP/80",
            "
        x/a: .XX XXX XXX
        x/b: .XX XXX XXX
        x/c: .XX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "TCP/81 UDP SCTP",
            "
        x/a: .XX XXX XXX
        x/b: .XX XXX XXX
        x/c: .XX XXX XXX
        y/a: .XX XXX XXX
        y/b: .XX XXX XXX
        y/c: .XX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
    ]
);

// Defaulted to [Ingress, Egress]: ingress denied, egress only to x.
truth_table!(
    policytypes_empty_with_egress,
    "policytypes-empty-with-egress",
    [(
        "all",
        "
        x/a: ... ... ...
        x/b: ... ... ...
        x/c: ... ... ...
        y/a: ... XXX XXX
        y/b: ... XXX XXX
        y/c: ... XXX XXX
        z/a: ... XXX XXX
        z/b: ... XXX XXX
        z/c: ... XXX XXX
    "
    ),]
);

// Defaulted to [Ingress]: x/c from y only, x/c egress open.
truth_table!(
    policytypes_empty_ingress_only,
    "policytypes-empty-ingress-only",
    [(
        "all",
        "
        x/a: XX. XXX XXX
        x/b: XX. XXX XXX
        x/c: XX. XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XX. XXX XXX
        z/b: XX. XXX XXX
        z/c: XX. XXX XXX
    "
    ),]
);

// [Egress] only: ingress rules ignored.
truth_table!(
    policytypes_explicit_egress,
    "policytypes-explicit-egress",
    [(
        "all",
        "
        x/a: XXX ... ...
        x/b: XXX ... ...
        x/c: XXX ... ...
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
    ),]
);

// x/a egress UDP/80 anywhere.
truth_table!(
    egress_udp_80,
    "egress-udp-80",
    [
        (
            "UDP/80",
            "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "TCP UDP/81 SCTP",
            "
        x/a: ... ... ...
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
    ]
);

// x/a egress to y on `web`, resolved on the destination pod.
truth_table!(
    egress_named_port,
    "egress-named-port",
    [
        (
            "TCP/80",
            "
        x/a: ... X.. ...
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "TCP/81",
            "
        x/a: ... .X. ...
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
        (
            "UDP SCTP",
            "
        x/a: ... ... ...
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
    ]
);

// x/a: in from y, out to z.
truth_table!(
    ingress_and_egress,
    "ingress-and-egress",
    [(
        "all",
        "
        x/a: ... ... XXX
        x/b: .XX XXX XXX
        x/c: .XX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: .XX XXX XXX
        z/b: .XX XXX XXX
        z/c: .XX XXX XXX
    "
    ),]
);

// x denies all ingress; y accepts only x.
truth_table!(
    two_namespaces,
    "two-namespaces",
    [(
        "all",
        "
        x/a: ... XXX XXX
        x/b: ... XXX XXX
        x/c: ... XXX XXX
        y/a: ... ... XXX
        y/b: ... ... XXX
        y/c: ... ... XXX
        z/a: ... ... XXX
        z/b: ... ... XXX
        z/c: ... ... XXX
    "
    ),]
);

// z/b may only reach z/c.
truth_table!(
    egress_to_pod_in_own_namespace,
    "egress-to-pod-in-own-namespace",
    [(
        "all",
        "
        x/a: XXX XXX XXX
        x/b: XXX XXX XXX
        x/c: XXX XXX XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX XXX XXX
        z/b: ... ... ..X
        z/c: XXX XXX XXX
    "
    ),]
);

// y/b: y on TCP/80 or UDP/81; z on any SCTP port.
truth_table!(
    multiple_ports_and_rules,
    "multiple-ports-and-rules",
    [
        (
            "TCP/80 UDP/81",
            "
        x/a: XXX X.X XXX
        x/b: XXX X.X XXX
        x/c: XXX X.X XXX
        y/a: XXX XXX XXX
        y/b: XXX XXX XXX
        y/c: XXX XXX XXX
        z/a: XXX X.X XXX
        z/b: XXX X.X XXX
        z/c: XXX X.X XXX
    "
        ),
        (
            "TCP/81 UDP/80",
            "
        x/a: XXX X.X XXX
        x/b: XXX X.X XXX
        x/c: XXX X.X XXX
        y/a: XXX X.X XXX
        y/b: XXX X.X XXX
        y/c: XXX X.X XXX
        z/a: XXX X.X XXX
        z/b: XXX X.X XXX
        z/c: XXX X.X XXX
    "
        ),
        (
            "SCTP",
            "
        x/a: XXX X.X XXX
        x/b: XXX X.X XXX
        x/c: XXX X.X XXX
        y/a: XXX X.X XXX
        y/b: XXX X.X XXX
        y/c: XXX X.X XXX
        z/a: XXX XXX XXX
        z/b: XXX XXX XXX
        z/c: XXX XXX XXX
    "
        ),
    ]
);
