//! Pod egress masquerade (`--enable-pod-egress`): fairlead's own `inet fairlead-egress` nftables table.
//!
//! The table, in `nft` syntax (the IPv6 half only when IPv6 egress is on, each half only with pod CIDRs):
//! ```text
//! table inet fairlead-egress {
//!   set pod-cidrs4      { type ipv4_addr; flags interval }   # sources: the pod CIDRs
//!   set cluster-ranges4 { type ipv4_addr; flags interval }   # pod + service ranges: never masqueraded towards
//!   chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!     ip saddr @pod-cidrs4 ip daddr != @cluster-ranges4 masquerade
//!     ip6 saddr @pod-cidrs6 ip6 daddr != @cluster-ranges6 masquerade
//!   }
//! }
//! ```
//! Why IPv6 is off by default: IPv6 pod addresses are usually globally routed (announced over BGP), so they need
//! no translation; IPv4 pod CIDRs are private and do.

use ipnet::IpNet;
use nftables::helper::{self, NftablesError};
use nftables::schema::Nftables;
use serde_json::{Value, json};

/// The name of fairlead's egress table (family `inet`).
pub const EGRESS_TABLE: &str = "fairlead-egress";

/// What the egress table must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressConfig {
    /// `--enable-pod-egress`; when off the table is removed.
    pub enabled: bool,
    /// Sources to masquerade: the cluster's pod CIDRs (both families allowed).
    pub pod_cidrs: Vec<IpNet>,
    /// Destinations never masqueraded towards: the cluster's pod CIDRs and service ranges.
    pub cluster_ranges: Vec<IpNet>,
    /// Masquerade IPv4 pod traffic (default on).
    pub ipv4: bool,
    /// Masquerade IPv6 pod traffic (default off).
    pub ipv6: bool,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            pod_cidrs: Vec::new(),
            cluster_ranges: Vec::new(),
            ipv4: true,
            ipv6: false,
        }
    }
}

/// Why the egress table could not be applied or read.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The rendered document does not fit the `nftables` crate's schema (a bug in [`render_egress`]).
    #[error("rendered nftables document does not fit the schema: {0}")]
    Schema(#[from] serde_json::Error),
    /// `nft` refused the transaction (nothing was changed: it is atomic) or could not be run.
    #[error("nftables: {0}")]
    Nft(#[from] NftablesError),
}

struct Family {
    suffix: &'static str,
    payload: &'static str,
    addr_type: &'static str,
    v6: bool,
}

const FAMILIES: [Family; 2] = [
    Family {
        suffix: "4",
        payload: "ip",
        addr_type: "ipv4_addr",
        v6: false,
    },
    Family {
        suffix: "6",
        payload: "ip6",
        addr_type: "ipv6_addr",
        v6: true,
    },
];

fn elements(nets: &[IpNet], v6: bool) -> Vec<Value> {
    let mut nets: Vec<IpNet> = nets
        .iter()
        .filter(|n| matches!(n, IpNet::V6(_)) == v6)
        .map(IpNet::trunc)
        .collect();
    nets.sort();
    nets.dedup();
    // An interval set refuses overlapping elements: keep only the outermost prefixes.
    let outer: Vec<IpNet> = nets
        .iter()
        .filter(|n| !nets.iter().any(|o| o != *n && o.contains(*n)))
        .copied()
        .collect();
    outer
        .iter()
        .map(|n| json!({"prefix": {"addr": n.network().to_string(), "len": n.prefix_len()}}))
        .collect()
}

/// The commands that replace fairlead's egress table in one transaction (add, delete, recreate: the add makes the
/// delete valid when the table does not exist yet); when disabled, only add + delete (the table is removed).
pub fn render_egress(config: &EgressConfig) -> Value {
    let table = json!({"family": "inet", "name": EGRESS_TABLE});
    let mut cmds = vec![
        json!({"add": {"table": table.clone()}}),
        json!({"delete": {"table": table.clone()}}),
    ];
    if !config.enabled {
        return json!({"nftables": cmds});
    }
    cmds.push(json!({"add": {"table": table}}));
    cmds.push(
        json!({"add": {"chain": {"family": "inet", "table": EGRESS_TABLE, "name": "postrouting",
        "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}}),
    );
    for f in &FAMILIES {
        let on = if f.v6 { config.ipv6 } else { config.ipv4 };
        let sources = elements(&config.pod_cidrs, f.v6);
        if !on || sources.is_empty() {
            continue;
        }
        let dests = elements(&config.cluster_ranges, f.v6);
        for (name, elem) in [
            (format!("pod-cidrs{}", f.suffix), sources),
            (format!("cluster-ranges{}", f.suffix), dests),
        ] {
            let mut set = json!({"family": "inet", "table": EGRESS_TABLE, "name": name,
                "type": f.addr_type, "flags": ["interval"]});
            if !elem.is_empty() {
                set["elem"] = Value::Array(elem);
            }
            cmds.push(json!({"add": {"set": set}}));
        }
        let field = |name: &str| json!({"payload": {"protocol": f.payload, "field": name}});
        cmds.push(json!({"add": {"rule": {"family": "inet", "table": EGRESS_TABLE, "chain": "postrouting",
            "expr": [
                {"match": {"op": "==", "left": field("saddr"), "right": format!("@pod-cidrs{}", f.suffix)}},
                {"match": {"op": "!=", "left": field("daddr"), "right": format!("@cluster-ranges{}", f.suffix)}},
                {"masquerade": null},
            ]}}}));
    }
    json!({"nftables": cmds})
}

/// The egress table, applied in the calling thread's network namespace (`nft` inherits it).
#[derive(Clone, Debug, Default)]
pub struct PodEgress;

impl PodEgress {
    /// Replaces the table in one `nft -j -f -` transaction (or removes it when `config.enabled` is false).
    pub fn apply(&self, config: &EgressConfig) -> Result<(), EgressError> {
        let nft: Nftables = serde_json::from_value(render_egress(config))?;
        helper::apply_ruleset(&nft)?;
        Ok(())
    }

    /// The table as the kernel holds it (`nft -j list table inet fairlead-egress`), `None` when absent.
    pub fn read_back(&self) -> Result<Option<Nftables<'static>>, EgressError> {
        // Listing a missing table fails; ask for the tables first so "absent" is not an error.
        let tables = helper::get_current_ruleset_with_args(
            helper::DEFAULT_NFT,
            ["list", "tables", "inet"].iter().copied(),
        )?;
        let present = tables.objects.iter().any(|o| {
            matches!(o, nftables::schema::NfObject::ListObject(
                nftables::schema::NfListObject::Table(t)) if t.name == EGRESS_TABLE)
        });
        if !present {
            return Ok(None);
        }
        let nft = helper::get_current_ruleset_with_args(
            helper::DEFAULT_NFT,
            ["list", "table", "inet", EGRESS_TABLE].iter().copied(),
        )?;
        Ok(Some(nft))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EgressConfig {
        EgressConfig {
            pod_cidrs: vec![
                "198.19.0.0/16".parse().unwrap(),
                "fd00:10:244::/56".parse().unwrap(),
            ],
            cluster_ranges: vec![
                "198.19.0.0/16".parse().unwrap(),
                "198.19.1.0/24".parse().unwrap(),
                "198.18.240.0/24".parse().unwrap(),
                "fd00:10:244::/56".parse().unwrap(),
                "fd00:10:96::/112".parse().unwrap(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn ipv6_is_off_by_default_and_nested_ranges_collapse() {
        let doc = render_egress(&cfg());
        let nft: Nftables = serde_json::from_value(doc.clone()).expect("schema");
        // add/delete/add table, chain, 2 sets + 1 rule for IPv4 only.
        assert_eq!(nft.objects.len(), 4 + 3);
        let text = doc.to_string();
        assert!(!text.contains("pod-cidrs6"));
        assert!(!text.contains(r#""198.19.1.0""#), "{text}");
        assert!(text.contains(r#""198.18.240.0""#));
    }

    #[test]
    fn both_families_when_ipv6_enabled_and_none_without_pod_cidrs() {
        let mut c = cfg();
        c.ipv6 = true;
        let nft: Nftables = serde_json::from_value(render_egress(&c)).unwrap();
        assert_eq!(nft.objects.len(), 4 + 6);
        c.pod_cidrs.retain(|n| matches!(n, IpNet::V6(_)));
        let nft: Nftables = serde_json::from_value(render_egress(&c)).unwrap();
        assert_eq!(nft.objects.len(), 4 + 3);
    }

    #[test]
    fn disabled_removes_the_table() {
        let c = EgressConfig {
            enabled: false,
            ..cfg()
        };
        let nft: Nftables = serde_json::from_value(render_egress(&c)).unwrap();
        assert_eq!(nft.objects.len(), 2);
    }
}
