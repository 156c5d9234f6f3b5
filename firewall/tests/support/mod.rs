//! Shared test scaffolding: the upstream e2e cluster (namespaces x, y, z; pods a, b, c), fixtures,
//! addressing modes, and truth-table parsing and printing.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use firewall::model::eval::allows_at;
use firewall::model::{Family, Hook, Protocol, Ruleset};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// This node's addresses (kubelet probes come from them).
pub const NODE_V4: &str = "198.18.0.1";
pub const NODE_V6: &str = "fd00::1";

/// Pod addressing of a test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    Ipv6Only,
    DualStackIpv6Primary,
    DualStackIpv4Primary,
    Ipv4Only,
}

impl Addressing {
    pub const ALL: [Addressing; 4] = [
        Addressing::Ipv6Only,
        Addressing::DualStackIpv6Primary,
        Addressing::DualStackIpv4Primary,
        Addressing::Ipv4Only,
    ];

    /// Families of `status.podIPs`, primary first.
    pub fn families(self) -> Vec<Family> {
        match self {
            Addressing::Ipv6Only => vec![Family::Ipv6],
            Addressing::DualStackIpv6Primary => vec![Family::Ipv6, Family::Ipv4],
            Addressing::DualStackIpv4Primary => vec![Family::Ipv4, Family::Ipv6],
            Addressing::Ipv4Only => vec![Family::Ipv4],
        }
    }
}

/// Address of pod `pod` in namespace `ns` (indexes into NAMESPACES / PODS):
/// 198.18.<ns+1>.<11+pod> and fd00:0:0:<ns+1>::<11+pod>.
pub fn pod_ip(ns: usize, pod: usize, family: Family) -> IpAddr {
    let s = match family {
        Family::Ipv4 => format!("198.18.{}.{}", ns + 1, 11 + pod),
        Family::Ipv6 => format!("fd00:0:0:{}::{}", ns + 1, 11 + pod),
    };
    s.parse().expect("test addresses are valid")
}

pub fn node_addresses() -> Vec<IpAddr> {
    vec![NODE_V6.parse().unwrap(), NODE_V4.parse().unwrap()]
}

fn container_port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some(protocol.to_string()),
        ..Default::default()
    }
}

/// Pod `ns/pod` like the upstream e2e server pods: ports 80 and 81 on TCP, UDP and SCTP, named
/// `serve-<port>-<proto>`. Besides, the name `web` is 80/TCP on pod a and 81/TCP on pod b (pod c
/// has no `web`), so named ports resolve differently per pod.
pub fn pod(ns: usize, pod: usize, addressing: Addressing) -> Pod {
    let mut ports = Vec::new();
    for port in [80, 81] {
        for proto in ["TCP", "UDP", "SCTP"] {
            ports.push(container_port(
                &format!("serve-{port}-{}", proto.to_lowercase()),
                port,
                proto,
            ));
        }
    }
    match pod {
        0 => ports.push(container_port("web", 80, "TCP")),
        1 => ports.push(container_port("web", 81, "TCP")),
        _ => {}
    }
    let ips: Vec<PodIP> = addressing
        .families()
        .into_iter()
        .map(|f| PodIP {
            ip: pod_ip(ns, pod, f).to_string(),
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(PODS[pod].to_string()),
            namespace: Some(NAMESPACES[ns].to_string()),
            labels: Some(BTreeMap::from([("pod".to_string(), PODS[pod].to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "server".into(),
                ports: Some(ports),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ips[0].ip.clone()),
            pod_ips: Some(ips),
            ..Default::default()
        }),
    }
}

pub fn namespaces() -> Vec<Namespace> {
    NAMESPACES
        .iter()
        .map(|n| Namespace {
            metadata: ObjectMeta {
                name: Some(n.to_string()),
                labels: Some(BTreeMap::from([("ns".to_string(), n.to_string())])),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect()
}

/// The 9 pods of the e2e scheme.
pub fn pods(addressing: Addressing) -> Vec<Pod> {
    let mut v = Vec::new();
    for ns in 0..3 {
        for p in 0..3 {
            v.push(pod(ns, p, addressing));
        }
    }
    v
}

pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// All NetworkPolicies of a multi-document YAML fixture.
pub fn load_policies(name: &str) -> Vec<NetworkPolicy> {
    let path = fixture_path(&format!("policies/{name}.yaml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let value = serde_norway::Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        // A document of comments only is empty, not a policy.
        if value.is_null() {
            continue;
        }
        let np: NetworkPolicy = serde_norway::from_value(value)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        out.push(np);
    }
    out
}

/// One probe: protocol and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    pub protocol: Protocol,
    pub port: u16,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.protocol, self.port)
    }
}

pub const PROBES: [Probe; 6] = [
    Probe {
        protocol: Protocol::Tcp,
        port: 80,
    },
    Probe {
        protocol: Protocol::Tcp,
        port: 81,
    },
    Probe {
        protocol: Protocol::Udp,
        port: 80,
    },
    Probe {
        protocol: Protocol::Udp,
        port: 81,
    },
    Probe {
        protocol: Protocol::Sctp,
        port: 80,
    },
    Probe {
        protocol: Protocol::Sctp,
        port: 81,
    },
];

/// Probes named by a selector: `all`, a protocol (`TCP`), or `TCP/80`; space separated.
pub fn probes_of(sel: &str) -> Vec<Probe> {
    let mut out = Vec::new();
    for tok in sel.split_whitespace() {
        let matched: Vec<Probe> = PROBES
            .iter()
            .copied()
            .filter(|p| tok == "all" || tok == p.protocol.to_string() || tok == p.to_string())
            .collect();
        assert!(!matched.is_empty(), "unknown probe selector {tok:?}");
        out.extend(matched);
    }
    out
}

/// A 9x9 reachability matrix: `[from][to]`, pods in order x/a x/b x/c y/a ... z/c.
pub type Matrix = [[bool; 9]; 9];

pub fn label(i: usize) -> String {
    format!("{}/{}", NAMESPACES[i / 3], PODS[i % 3])
}

/// Parses a hand-written table: 9 rows `x/a: XXX XXX XXX` (X = allowed, . = blocked).
pub fn parse_table(text: &str) -> Matrix {
    let mut m = [[false; 9]; 9];
    let rows: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), 9, "table needs 9 rows:\n{text}");
    for (i, row) in rows.iter().enumerate() {
        let (lbl, cells) = row.split_once(':').unwrap_or_else(|| panic!("row {row:?}"));
        assert_eq!(lbl.trim(), label(i), "row {i} label in:\n{text}");
        let cells: Vec<char> = cells.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(cells.len(), 9, "row {row:?} needs 9 cells");
        for (j, c) in cells.iter().enumerate() {
            m[i][j] = match c {
                'X' => true,
                '.' => false,
                other => panic!("cell {other:?} in row {row:?}"),
            };
        }
    }
    m
}

/// Prints a matrix like the upstream truth-table printouts; `mark` overrides a cell.
pub fn format_table(m: &Matrix, mark: impl Fn(usize, usize) -> Option<char>) -> String {
    let mut s = String::from("      x/a x/b x/c  y/a y/b y/c  z/a z/b z/c\n");
    for (i, row) in m.iter().enumerate() {
        s.push_str(&format!("{}:", label(i)));
        for (j, cell) in row.iter().enumerate() {
            if j % 3 == 0 {
                s.push(' ');
            }
            let c = mark(i, j).unwrap_or(if *cell { 'X' } else { '.' });
            s.push_str(&format!("  {c} "));
        }
        s.push('\n');
    }
    s
}

/// Evaluates the generated ruleset at the forward hook for every pod pair of one family and probe.
pub fn observe(ruleset: &Ruleset, family: Family, probe: Probe) -> Matrix {
    observe_at(ruleset, Hook::Forward, family, probe)
}

/// [`observe`] at a given hook (`Output`: service traffic forwarded by IPVS after DNAT).
pub fn observe_at(ruleset: &Ruleset, hook: Hook, family: Family, probe: Probe) -> Matrix {
    let mut m = [[false; 9]; 9];
    for (from, row) in m.iter_mut().enumerate() {
        for (to, cell) in row.iter_mut().enumerate() {
            let src = pod_ip(from / 3, from % 3, family);
            let dst = pod_ip(to / 3, to % 3, family);
            *cell = allows_at(ruleset, hook, src, dst, probe.protocol, probe.port)
                .unwrap_or_else(|e| panic!("evaluating {src} -> {dst} {probe}: {e}"));
        }
    }
    m
}

/// Expected and observed differ: the three tables (expected, observed, `!` on mismatches).
pub fn diff_report(expected: &Matrix, observed: &Matrix) -> Option<String> {
    if expected == observed {
        return None;
    }
    Some(format!(
        "expected:\n{}observed:\n{}diff (! = mismatch):\n{}",
        format_table(expected, |_, _| None),
        format_table(observed, |_, _| None),
        format_table(observed, |i, j| Some(if expected[i][j] == observed[i][j] {
            '.'
        } else {
            '!'
        })),
    ))
}
