//! fairlead's own nftables table around IPVS (`inet fairlead-proxy`): masquerade and reject rules, replaced atomically.
//!
//! The table, in `nft` syntax (one block per family; `4` shown):
//! ```text
//! table inet fairlead-proxy {
//!   set vips4           { type ipv4_addr }                              # every VIP on fairlead-vip
//!   set vip-ports4      { type ipv4_addr . inet_proto . inet_service }  # virtual servers on those VIPs
//!   set cluster-ip4     { type ipv4_addr . inet_proto . inet_service }  # ClusterIP virtual servers
//!   set masq-external4  { type ipv4_addr . inet_proto . inet_service }  # NodePort/ExternalIP/LB, ETP Cluster
//!   set cluster-cidrs4  { type ipv4_addr; flags interval }              # the cluster's pod CIDRs
//!   set hairpin4        { type ipv4_addr . ipv4_addr }                  # endpoint . endpoint
//!   chain prerouting {  type filter hook prerouting priority dstnat; policy accept;   # and `output`, same rules
//!     ip daddr . meta l4proto . th dport @cluster-ip4 ip saddr != @cluster-cidrs4 meta mark set meta mark | 0x4000
//!     ip daddr . meta l4proto . th dport @masq-external4 meta mark set meta mark | 0x4000
//!   }
//!   chain input {       type filter hook input priority filter; policy accept;
//!     meta l4proto { tcp, udp, sctp } ip daddr @vips4 ip daddr . meta l4proto . th dport != @vip-ports4 reject
//!   }
//!   chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!     meta mark & 0x4000 == 0x4000 masquerade
//!     ip saddr . ip daddr @hairpin4 masquerade
//!   }
//! }
//! ```
//! Why a packet mark: the decision needs the virtual server's address and port, which IPVS (at LOCAL_IN or
//! LOCAL_OUT) has already rewritten to the endpoint's when the packet reaches postrouting, and nft cannot
//! concatenate `ct original proto-dst` into a set lookup. So the first packet is marked in prerouting/output
//! (before IPVS) and the mark is read in postrouting, where the NAT decision for the connection is made; the
//! bit is kube-proxy's masquerade bit (0x4000), as fairlead takes kube-proxy's place. The input chain runs before
//! IPVS (IPVS hooks LOCAL_IN at priority 98), so a VIP answers only on the ports of its virtual servers, never
//! for a socket that happens to listen on the node's wildcard address.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use nftables::helper::{self, NftablesError};
use nftables::schema::Nftables;
use serde_json::{Value, json};

use crate::model::{
    DesiredState, IpFamily, Protocol, ServiceRef, VirtualServerKey, VirtualServerKind,
};

/// The name of fairlead's proxy table (family `inet`).
pub const NFT_TABLE: &str = "fairlead-proxy";

/// The packet mark bit that asks postrouting to masquerade (kube-proxy's `--masquerade-bit` 14).
pub const MASQUERADE_MARK: u32 = 0x4000;

/// What the proxy's nftables table must hold; derived from the desired state, compared by value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NftState {
    /// Every VIP (ClusterIP, ExternalIP, LoadBalancer IP) fairlead puts on its dummy interface.
    pub vips: BTreeSet<IpAddr>,
    /// Every virtual server on a VIP: connections to a VIP on anything else are rejected.
    pub vip_ports: BTreeSet<VirtualServerKey>,
    /// ClusterIP virtual servers: masqueraded when the client is outside the cluster CIDRs.
    pub cluster_ip: BTreeSet<VirtualServerKey>,
    /// NodePort, ExternalIP and LoadBalancer virtual servers of Services with `externalTrafficPolicy: Cluster`:
    /// always masqueraded (the endpoint may be on another node, whose reply must come back through this one).
    pub masquerade_external: BTreeSet<VirtualServerKey>,
    /// The cluster's pod CIDRs; a family without one gets no off-cluster ClusterIP rule (nothing to compare with).
    pub cluster_cidrs: Vec<IpNet>,
    /// Every endpoint address: a connection from an endpoint to itself through a virtual server (hairpin) is
    /// masqueraded, or the endpoint would answer itself directly and the client would drop the reply.
    pub hairpin: BTreeSet<IpAddr>,
}

impl NftState {
    /// The nftables state for a desired IPVS state. `local_external` names the Services with
    /// `externalTrafficPolicy: Local`, whose external virtual servers keep the client's address.
    pub fn from_desired(
        desired: &DesiredState,
        local_external: &BTreeSet<ServiceRef>,
        cluster_cidrs: &[IpNet],
    ) -> Self {
        let mut state = Self {
            vips: desired.vips.iter().collect(),
            cluster_cidrs: cluster_cidrs.iter().map(IpNet::trunc).collect(),
            ..Self::default()
        };
        for (key, vs) in &desired.ipvs.virtual_servers {
            if state.vips.contains(&key.address) {
                state.vip_ports.insert(*key);
            }
            state.hairpin.extend(vs.destinations.keys().map(|d| d.ip()));
            let Some(origin) = desired.origins.get(key) else {
                continue;
            };
            match origin.kind {
                VirtualServerKind::ClusterIp => {
                    state.cluster_ip.insert(*key);
                }
                VirtualServerKind::NodePort
                | VirtualServerKind::ExternalIp
                | VirtualServerKind::LoadBalancer => {
                    if !local_external.contains(&origin.service_port.service) {
                        state.masquerade_external.insert(*key);
                    }
                }
            }
        }
        state
    }
}

/// Per-family names and expression spellings.
struct Fam {
    suffix: &'static str,
    payload: &'static str,
    addr_type: &'static str,
    family: IpFamily,
}

const FAMILIES: [Fam; 2] = [
    Fam {
        suffix: "4",
        payload: "ip",
        addr_type: "ipv4_addr",
        family: IpFamily::Ipv4,
    },
    Fam {
        suffix: "6",
        payload: "ip6",
        addr_type: "ipv6_addr",
        family: IpFamily::Ipv6,
    },
];

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

fn key_elements(keys: &BTreeSet<VirtualServerKey>, family: IpFamily) -> Vec<Value> {
    keys.iter()
        .filter(|k| k.family() == family)
        .map(|k| json!({"concat": [k.address.to_string(), proto_name(k.protocol), k.port]}))
        .collect()
}

fn set(name: String, set_type: Value, flags: &[&str], elements: Vec<Value>) -> Value {
    let mut set = json!({"family": "inet", "table": NFT_TABLE, "name": name, "type": set_type});
    if !flags.is_empty() {
        set["flags"] = json!(flags);
    }
    if !elements.is_empty() {
        set["elem"] = Value::Array(elements);
    }
    json!({"add": {"set": set}})
}

fn rule(chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": "inet", "table": NFT_TABLE, "chain": chain, "expr": expr}}})
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn mark() -> Value {
    json!({"meta": {"key": "mark"}})
}

fn l4proto() -> Value {
    json!({"meta": {"key": "l4proto"}})
}

/// The commands that replace fairlead's table in one transaction (add, delete, recreate: the add makes the
/// delete valid when the table does not exist yet), as the libnftables JSON document.
pub fn render(state: &NftState) -> Value {
    let mut cmds = vec![
        json!({"add": {"table": {"family": "inet", "name": NFT_TABLE}}}),
        json!({"delete": {"table": {"family": "inet", "name": NFT_TABLE}}}),
        json!({"add": {"table": {"family": "inet", "name": NFT_TABLE}}}),
    ];
    let mut rules = Vec::new();
    for f in &FAMILIES {
        let s = f.suffix;
        let fam = |ip: &IpAddr| IpFamily::of(ip) == f.family;
        let tuple_type = json!([f.addr_type, "inet_proto", "inet_service"]);
        cmds.push(set(
            format!("vips{s}"),
            json!(f.addr_type),
            &[],
            state
                .vips
                .iter()
                .filter(|a| fam(a))
                .map(|a| json!(a.to_string()))
                .collect(),
        ));
        cmds.push(set(
            format!("vip-ports{s}"),
            tuple_type.clone(),
            &[],
            key_elements(&state.vip_ports, f.family),
        ));
        cmds.push(set(
            format!("cluster-ip{s}"),
            tuple_type.clone(),
            &[],
            key_elements(&state.cluster_ip, f.family),
        ));
        cmds.push(set(
            format!("masq-external{s}"),
            tuple_type,
            &[],
            key_elements(&state.masquerade_external, f.family),
        ));
        let cidrs: Vec<Value> = state
            .cluster_cidrs
            .iter()
            .filter(|n| fam(&n.addr()))
            .map(|n| json!({"prefix": {"addr": n.addr().to_string(), "len": n.prefix_len()}}))
            .collect();
        let has_cidrs = !cidrs.is_empty();
        cmds.push(set(
            format!("cluster-cidrs{s}"),
            json!(f.addr_type),
            &["interval"],
            cidrs,
        ));
        cmds.push(set(
            format!("hairpin{s}"),
            json!([f.addr_type, f.addr_type]),
            &[],
            state
                .hairpin
                .iter()
                .filter(|a| fam(a))
                .map(|a| json!({"concat": [a.to_string(), a.to_string()]}))
                .collect(),
        ));

        let daddr = payload(f.payload, "daddr");
        let tuple = json!({"concat": [daddr.clone(), l4proto(), payload("th", "dport")]});
        let set_mark =
            json!({"mangle": {"key": mark(), "value": {"|": [mark(), MASQUERADE_MARK]}}});
        for chain in ["prerouting", "output"] {
            if has_cidrs {
                rules.push(rule(
                    chain,
                    vec![
                        matches("==", tuple.clone(), json!(format!("@cluster-ip{s}"))),
                        matches(
                            "!=",
                            payload(f.payload, "saddr"),
                            json!(format!("@cluster-cidrs{s}")),
                        ),
                        set_mark.clone(),
                    ],
                ));
            }
            rules.push(rule(
                chain,
                vec![
                    matches("==", tuple.clone(), json!(format!("@masq-external{s}"))),
                    set_mark.clone(),
                ],
            ));
        }
        rules.push(rule(
            "input",
            vec![
                matches("==", l4proto(), json!({"set": ["tcp", "udp", "sctp"]})),
                matches("==", daddr.clone(), json!(format!("@vips{s}"))),
                matches("!=", tuple, json!(format!("@vip-ports{s}"))),
                json!({"reject": null}),
            ],
        ));
        rules.push(rule(
            "postrouting",
            vec![
                matches(
                    "==",
                    json!({"concat": [payload(f.payload, "saddr"), daddr]}),
                    json!(format!("@hairpin{s}")),
                ),
                json!({"masquerade": null}),
            ],
        ));
    }
    rules.push(rule(
        "postrouting",
        vec![
            matches(
                "==",
                json!({"&": [mark(), MASQUERADE_MARK]}),
                json!(MASQUERADE_MARK),
            ),
            json!({"masquerade": null}),
        ],
    ));
    let chain = |name: &str, kind: &str, prio: i32| {
        json!({"add": {"chain": {"family": "inet", "table": NFT_TABLE, "name": name,
            "type": kind, "hook": name, "prio": prio, "policy": "accept"}}})
    };
    // dstnat (-100) for the marks: before IPVS's LOCAL_OUT hook (-99); filter (0) for input: before IPVS's
    // LOCAL_IN hook (98); srcnat (100) for masquerade.
    cmds.push(chain("prerouting", "filter", -100));
    cmds.push(chain("output", "filter", -100));
    cmds.push(chain("input", "filter", 0));
    cmds.push(chain("postrouting", "nat", 100));
    cmds.extend(rules);
    json!({"nftables": cmds})
}
/// Why the table could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The rendered document does not fit the `nftables` crate's schema (a bug in [`render`]).
    #[error("rendered nftables document does not fit the schema: {0}")]
    Schema(#[from] serde_json::Error),
    /// `nft` refused the transaction (nothing was changed: it is atomic).
    #[error("nftables: {0}")]
    Apply(#[from] NftablesError),
}

/// Applies the table in one `nft -j -f -` transaction (through the `nftables` crate) in the calling thread's
/// network namespace (a child process inherits the namespace of the thread that forks it).
pub fn apply(state: &NftState) -> Result<(), NftError> {
    let doc = render(state);
    let nft: Nftables = serde_json::from_value(doc)?;
    helper::apply_ruleset(&nft)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        DESTINATION_WEIGHT, Scheduler, ServicePortRef, VirtualServer, VirtualServerOrigin,
    };

    fn svc(name: &str) -> ServiceRef {
        ServiceRef {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    /// A dual-stack ClusterIP service, and NodePorts of a Cluster and a Local service.
    pub(crate) fn sample() -> (DesiredState, BTreeSet<ServiceRef>) {
        let mut desired = DesiredState::default();
        let mut add = |addr: &str, port, kind, name: &str, dest: &str| {
            let key = VirtualServerKey::new(addr.parse().unwrap(), port, Protocol::Tcp);
            if kind != VirtualServerKind::NodePort {
                desired.vips.insert(key.address);
            }
            desired.ipvs.virtual_servers.insert(
                key,
                VirtualServer {
                    scheduler: Scheduler::RoundRobin,
                    persistence: None,
                    destinations: [(dest.parse().unwrap(), DESTINATION_WEIGHT)].into(),
                },
            );
            desired.origins.insert(
                key,
                VirtualServerOrigin {
                    service_port: ServicePortRef {
                        service: svc(name),
                        port_name: String::new(),
                        protocol: Protocol::Tcp,
                    },
                    kind,
                },
            );
        };
        add(
            "fd00:10:96::10",
            80,
            VirtualServerKind::ClusterIp,
            "web",
            "[fd00:10:244:1::5]:8080",
        );
        add(
            "198.18.240.10",
            80,
            VirtualServerKind::ClusterIp,
            "web",
            "198.19.1.5:8080",
        );
        add(
            "fd00:0:0:1::1",
            30080,
            VirtualServerKind::NodePort,
            "web",
            "[fd00:10:244:1::5]:8080",
        );
        add(
            "198.18.1.1",
            30081,
            VirtualServerKind::NodePort,
            "local",
            "198.19.1.6:8080",
        );
        (desired, [svc("local")].into())
    }

    #[test]
    fn state_sorts_virtual_servers_by_kind_and_policy() {
        let (desired, local) = sample();
        let cidrs: Vec<IpNet> = vec![
            "fd00:10:244::/56".parse().unwrap(),
            "198.19.0.0/16".parse().unwrap(),
        ];
        let state = NftState::from_desired(&desired, &local, &cidrs);
        assert_eq!(state.vips.len(), 2);
        assert_eq!(state.vip_ports.len(), 2);
        assert_eq!(state.cluster_ip, state.vip_ports);
        assert_eq!(
            state
                .masquerade_external
                .iter()
                .map(|k| k.port)
                .collect::<Vec<_>>(),
            vec![30080],
            "only the NodePort of the ETP Cluster service"
        );
        assert_eq!(state.hairpin.len(), 3);
    }

    #[test]
    fn rendered_document_fits_the_crate_schema() {
        let (desired, local) = sample();
        let cidrs: Vec<IpNet> = vec!["fd00:10:244::/56".parse().unwrap()];
        let state = NftState::from_desired(&desired, &local, &cidrs);
        let doc = render(&state);
        let nft: Nftables = serde_json::from_value(doc.clone()).expect("schema");
        // 3 table commands, 6 sets per family, 4 chains; rules per family: the external mark in prerouting and
        // output, the off-cluster ClusterIP mark only for IPv6 (no IPv4 cluster CIDR given), input reject, hairpin;
        // and the one masquerade-by-mark rule.
        assert_eq!(nft.objects.len(), 3 + 12 + 4 + (2 * 4 + 2) + 1);
        let text = doc.to_string();
        assert!(
            !text.contains(r#""concat":["198.18.1.1","tcp",30081]"#),
            "the NodePort of an externalTrafficPolicy Local service is not masqueraded: {text}"
        );
        assert!(
            text.contains(r#""concat":["fd00:0:0:1::1","tcp",30080]"#),
            "{text}"
        );
        if let Ok(path) = std::env::var("FAIRLEAD_DUMP_NFT") {
            std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        }
    }
}
