//! Applies a [`Ruleset`] to the kernel through `nft -j` (the `nftables` crate) and reads it back.
//!
//! - A full sync is one JSON batch (`add table; delete table; add table; add set ...; add rule
//!   ...`), which `nft -j -f -` commits as one netlink transaction: the kernel switches from the
//!   old table to the new one at once, so there is no instant where an isolated pod is open.
//! - A pod change that leaves the table's structure alone is sent as set-element changes only
//!   (`delete element` / `add element`, computed by [`set_delta`]).
//! - At start ([`Dataplane::sync`] with nothing known) the live table is read back
//!   (`nft -j list table inet <name>`), compared with the desired one, and replaced only if it
//!   differs: a restart never flushes.
//! - Only fairlead's own table is ever named; other tables are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::IpNet;
use nftables::helper::{NftablesError, apply_ruleset_raw};
use nftables::schema::Nftables;
use serde_json::Value;

use crate::model::Ruleset;
use crate::model::delta::{SetDelta, set_delta};
use crate::render::{delta_to_nftables, to_nftables_batch};

/// The two br_netfilter sysctls decision 0004 requires (bridged pod traffic reaches `forward`).
pub const BRIDGE_SYSCTLS: [&str; 2] = [
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
];

/// Errors of the dataplane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("nft: {0}")]
    Nft(#[from] NftablesError),
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("nft list table inet {table} failed: {stderr}")]
    ReadBack { table: String, stderr: String },
    #[error("nft list table output is not libnftables JSON: {0}")]
    ReadBackJson(#[from] serde_json::Error),
    #[error(
        "br_netfilter is not available ({dir} missing after `modprobe br_netfilter`: {detail}); \
         bridged pod-to-pod traffic would bypass NetworkPolicy"
    )]
    BridgeNetfilterMissing { dir: PathBuf, detail: String },
    #[error(
        "cannot set {sysctl}=1 ({detail}); bridged pod-to-pod traffic would bypass NetworkPolicy"
    )]
    BridgeSysctl { sysctl: String, detail: String },
}

/// How `nft` is run: directly (the daemon, in the node's namespace), or in a named network
/// namespace through `ip netns exec` (tests and benchmarks drive several nodes from one process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NftTarget {
    /// The current network namespace.
    Current,
    /// `ip netns exec <name>`.
    Netns(String),
}

impl NftTarget {
    /// Program and leading arguments that run `nft` in the target namespace.
    fn nft(&self) -> (OsString, Vec<OsString>) {
        match self {
            NftTarget::Current => ("nft".into(), Vec::new()),
            NftTarget::Netns(ns) => (
                "ip".into(),
                vec!["netns".into(), "exec".into(), ns.into(), "nft".into()],
            ),
        }
    }
}

/// What a [`Dataplane::sync`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Live table already equal to the desired one; nothing sent.
    Unchanged,
    /// Set elements added/removed only (counts).
    Elements { added: usize, removed: usize },
    /// The whole table replaced in one transaction (reason).
    Replaced(String),
}

/// fairlead's table in one network namespace: applies rulesets, remembers the last one applied.
#[derive(Debug)]
pub struct Dataplane {
    target: NftTarget,
    table: String,
    /// The ruleset last applied successfully (what the kernel holds, as far as we know).
    known: Option<Ruleset>,
}

impl Dataplane {
    /// A dataplane for table `table` (normally [`crate::model::TABLE_NAME`]); nothing is known yet,
    /// so the first [`sync`](Self::sync) reads the live table back.
    pub fn new(target: NftTarget, table: impl Into<String>) -> Dataplane {
        Dataplane {
            target,
            table: table.into(),
            known: None,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The ruleset last applied (or found live).
    pub fn known(&self) -> Option<&Ruleset> {
        self.known.as_ref()
    }

    /// Forgets what is known, so the next sync reads back (periodic resync).
    pub fn forget(&mut self) {
        self.known = None;
    }

    /// Loads `br_netfilter` if needed and sets both bridge sysctls to 1 in the target namespace.
    pub fn ensure_bridge_netfilter(&self) -> Result<(), DataplaneError> {
        let dir = Path::new("/proc/sys/net/bridge");
        if !dir.is_dir() {
            let out = Command::new("modprobe").arg("br_netfilter").output();
            let detail = match out {
                Ok(o) if o.status.success() => String::new(),
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => format!("modprobe: {e}"),
            };
            if !dir.is_dir() {
                return Err(DataplaneError::BridgeNetfilterMissing {
                    dir: dir.to_path_buf(),
                    detail,
                });
            }
        }
        for sysctl in BRIDGE_SYSCTLS {
            let result = match &self.target {
                NftTarget::Current => std::fs::write(Path::new("/proc/sys").join(sysctl), "1\n")
                    .map_err(|e| e.to_string()),
                NftTarget::Netns(ns) => Command::new("ip")
                    .args(["netns", "exec", ns, "sysctl", "-qw"])
                    .arg(format!("{}=1", sysctl.replace('/', ".")))
                    .output()
                    .map_err(|e| e.to_string())
                    .and_then(|o| {
                        if o.status.success() {
                            Ok(())
                        } else {
                            Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
                        }
                    }),
            };
            result.map_err(|detail| DataplaneError::BridgeSysctl {
                sysctl: sysctl.replace('/', "."),
                detail,
            })?;
        }
        Ok(())
    }

    /// The live table as libnftables JSON, `None` when it does not exist.
    pub fn read_back(&self) -> Result<Option<Value>, DataplaneError> {
        let (program, mut args) = self.target.nft();
        args.extend(["-j", "list", "table", "inet", &self.table].map(OsString::from));
        let out = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| DataplaneError::Spawn {
                program: program.to_string_lossy().into_owned(),
                source,
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            // nft reports a missing table as ENOENT.
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(DataplaneError::ReadBack {
                table: self.table.clone(),
                stderr,
            });
        }
        Ok(Some(serde_json::from_slice(&out.stdout)?))
    }

    /// Whether the live table equals `desired` (sets, elements, chains, rules; handles ignored).
    pub fn live_equals(&self, desired: &Ruleset) -> Result<bool, DataplaneError> {
        Ok(self.live_difference(desired)?.is_none())
    }

    /// The first difference between the live table and `desired`, `None` when they are equal.
    pub fn live_difference(&self, desired: &Ruleset) -> Result<Option<String>, DataplaneError> {
        let Some(live) = self.read_back()? else {
            return Ok(Some(format!("table inet {} is absent", self.table)));
        };
        let want = serde_json::to_value(to_nftables_batch(desired))?;
        Ok(TableShape::from_json(&live, &self.table)
            .difference(&TableShape::from_json(&want, &self.table)))
    }

    /// Brings the kernel to `desired` with the least change: nothing if equal; set elements only
    /// if only elements differ from what is known; otherwise one atomic replacement.
    pub fn sync(&mut self, desired: &Ruleset) -> Result<SyncOutcome, DataplaneError> {
        match &self.known {
            None => {
                if self.live_equals(desired)? {
                    self.known = Some(desired.clone());
                    return Ok(SyncOutcome::Unchanged);
                }
                self.replace(desired)?;
                Ok(SyncOutcome::Replaced(
                    "live table differs from the desired one".into(),
                ))
            }
            Some(old) => match set_delta(old, desired) {
                Ok(delta) if delta.is_empty() => Ok(SyncOutcome::Unchanged),
                Ok(delta) => {
                    let counts = (count(&delta.added), count(&delta.removed));
                    match self.apply_delta(&delta) {
                        Ok(()) => {
                            self.known = Some(desired.clone());
                            Ok(SyncOutcome::Elements {
                                added: counts.0,
                                removed: counts.1,
                            })
                        }
                        // The kernel is not what we thought (someone edited our table):
                        // replace it, atomically.
                        Err(e) => {
                            tracing::warn!(error = %e, "element delta failed; replacing the table");
                            self.replace(desired)?;
                            Ok(SyncOutcome::Replaced(format!("element delta failed: {e}")))
                        }
                    }
                }
                Err(changed) => {
                    self.replace(desired)?;
                    Ok(SyncOutcome::Replaced(changed.to_string()))
                }
            },
        }
    }

    /// Replaces the whole table in one transaction (the full sync).
    pub fn replace(&mut self, desired: &Ruleset) -> Result<(), DataplaneError> {
        self.known = None;
        self.send(&full_batch(desired))?;
        self.known = Some(desired.clone());
        Ok(())
    }

    /// Sends a set-element delta (one transaction).
    fn apply_delta(&self, delta: &SetDelta) -> Result<(), DataplaneError> {
        self.send(&delta_to_nftables(&self.table, delta))
    }

    fn send(&self, batch: &Nftables) -> Result<(), DataplaneError> {
        let payload = serde_json::to_string(batch)?;
        let (program, args) = self.target.nft();
        apply_ruleset_raw(&payload, Some(&program), &args)?;
        Ok(())
    }
}

fn count(m: &BTreeMap<String, BTreeSet<crate::model::SetElement>>) -> usize {
    m.values().map(BTreeSet::len).sum()
}

/// The batch a full sync sends.
pub fn full_batch(desired: &Ruleset) -> Nftables<'static> {
    to_nftables_batch(desired)
}

/// The batch sent when going from `old` to `new` differs only in set elements (a pod added or
/// removed), or `None` if the structure changed and a full sync is needed.
pub fn element_batch(old: &Ruleset, new: &Ruleset) -> Option<Nftables<'static>> {
    set_delta(old, new)
        .ok()
        .map(|d| delta_to_nftables(&new.table, &d))
}

/// A table reduced to what matters for equality, from either a readback (`nft -j list table`) or
/// our own batch: both are normalised the same way (handles dropped, elements parsed, anonymous
/// sets sorted), so `==` means "the kernel holds what we want".
#[derive(Debug, Default, PartialEq, Eq)]
struct TableShape {
    /// name -> (declaration, elements)
    sets: BTreeMap<String, (Value, BTreeSet<String>)>,
    /// name -> declaration
    chains: BTreeMap<String, Value>,
    /// chain -> rules in order
    rules: BTreeMap<String, Vec<Value>>,
}

impl TableShape {
    /// The first difference, described (live first, desired second).
    fn difference(&self, want: &TableShape) -> Option<String> {
        let names = |a: &BTreeMap<String, _>| a.keys().cloned().collect::<Vec<String>>();
        if names(&self.sets) != names(&want.sets) {
            return Some("set names differ".into());
        }
        for (name, (decl, elems)) in &self.sets {
            let (wdecl, welems) = &want.sets[name];
            if decl != wdecl {
                return Some(format!("set {name}: declaration {decl} != {wdecl}"));
            }
            if elems != welems {
                let extra: Vec<_> = elems.difference(welems).take(3).collect();
                let missing: Vec<_> = welems.difference(elems).take(3).collect();
                return Some(format!(
                    "set {name}: elements, extra {extra:?}, missing {missing:?}"
                ));
            }
        }
        if self.chains != want.chains {
            return Some(format!("chains {:?} != {:?}", self.chains, want.chains));
        }
        for (chain, rules) in &self.rules {
            let wrules = want.rules.get(chain).cloned().unwrap_or_default();
            if rules.len() != wrules.len() {
                return Some(format!(
                    "chain {chain}: {} rules != {}",
                    rules.len(),
                    wrules.len()
                ));
            }
            for (r, w) in rules.iter().zip(&wrules) {
                if r != w {
                    return Some(format!("chain {chain}: rule {r} != {w}"));
                }
            }
        }
        (self.rules.len() != want.rules.len()).then(|| "chain sets differ".to_string())
    }

    fn from_json(doc: &Value, table: &str) -> TableShape {
        let mut shape = TableShape::default();
        let Some(items) = doc.get("nftables").and_then(Value::as_array) else {
            return shape;
        };
        for item in items {
            // A batch wraps objects in {"add": {...}}; a listing does not.
            let obj = item.get("add").unwrap_or(item);
            let Some((kind, body)) = obj.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            if body.get("table").and_then(Value::as_str) != Some(table) {
                continue;
            }
            let name = body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match kind.as_str() {
                "set" => {
                    let interval = body
                        .get("flags")
                        .and_then(Value::as_array)
                        .is_some_and(|f| f.iter().any(|v| v == "interval"));
                    let elements = body
                        .get("elem")
                        .and_then(Value::as_array)
                        .map(|e| e.iter().map(|v| element_key(v, interval)).collect())
                        .unwrap_or_default();
                    // Set comments are not compared: nft 1.0.6 drops them from JSON input, and
                    // they are for humans only.
                    let decl = pick(body, &["type", "flags"]);
                    shape.sets.insert(name, (normalise(&decl), elements));
                }
                "chain" => {
                    let decl = pick(body, &["type", "hook", "prio", "policy"]);
                    shape.chains.insert(name, normalise(&decl));
                    shape.rules.entry(body_name(body)).or_default();
                }
                "rule" => {
                    let chain = body.get("chain").and_then(Value::as_str).unwrap_or("");
                    let mut rule = pick(body, &["expr", "comment"]);
                    if let Some(Value::Array(expr)) = rule.get_mut("expr") {
                        fold_l4proto(expr);
                    }
                    shape
                        .rules
                        .entry(chain.to_string())
                        .or_default()
                        .push(normalise(&rule));
                }
                _ => {}
            }
        }
        shape
    }
}

/// nft lists `meta l4proto tcp th dport 80` as `tcp dport 80`: the protocol match becomes the
/// payload's protocol. Folds our own rules the same way so both sides compare equal.
fn fold_l4proto(expr: &mut Vec<Value>) {
    let is_l4proto = |v: &Value| {
        v.get("match")
            .and_then(|m| m.get("left"))
            .and_then(|l| l.get("meta"))
            .and_then(|m| m.get("key"))
            .and_then(Value::as_str)
            == Some("l4proto")
    };
    let Some(i) = expr.iter().position(is_l4proto) else {
        return;
    };
    let Some(proto) = expr[i]
        .get("match")
        .and_then(|m| m.get("right"))
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return;
    };
    let mut used = false;
    for v in expr.iter_mut().skip(i + 1) {
        used |= rename_th(v, &proto);
    }
    if used {
        expr.remove(i);
    }
}

/// Renames `{"payload": {"protocol": "th", ..}}` to the given protocol; true if one was found.
fn rename_th(v: &mut Value, proto: &str) -> bool {
    match v {
        Value::Object(o) => {
            let mut found = false;
            if let Some(Value::Object(p)) = o.get_mut("payload")
                && p.get("protocol").and_then(Value::as_str) == Some("th")
            {
                p.insert("protocol".into(), Value::String(proto.to_string()));
                found = true;
            }
            for (_, child) in o.iter_mut() {
                found |= rename_th(child, proto);
            }
            found
        }
        Value::Array(a) => a.iter_mut().fold(false, |f, c| rename_th(c, proto) | f),
        _ => false,
    }
}

fn body_name(body: &Value) -> String {
    body.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn pick(body: &Value, keys: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for k in keys {
        if let Some(v) = body.get(*k) {
            out.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// Drops null fields and sorts the members of anonymous sets and flag lists, whose order nft
/// does not keep. A list match (`"op": "in"`, `right: [..]`, what JSON input gives for
/// `ct state`) and an anonymous-set match (`==`, `{"set": [..]}`, what `nft -f` text gives) mean
/// the same and compare equal.
fn normalise(v: &Value) -> Value {
    if let Some(m) = v.get("match")
        && m.get("op").and_then(Value::as_str) == Some("in")
        && let Some(Value::Array(items)) = m.get("right")
    {
        let mut m = m.clone();
        m["op"] = Value::String("==".into());
        m["right"] = serde_json::json!({ "set": items });
        return normalise(&serde_json::json!({ "match": m }));
    }
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let n = normalise(v);
                    let n = match (k.as_str(), n) {
                        ("set" | "flags", Value::Array(mut a)) => {
                            a.sort_by_key(|x| x.to_string());
                            Value::Array(a)
                        }
                        (_, n) => n,
                    };
                    (k.clone(), n)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

/// One set element as a canonical string: addresses re-printed, a full-length prefix in an
/// interval set the same as the bare address nft lists for it.
fn element_key(v: &Value, interval: bool) -> String {
    if let Some(inner) = v.get("elem").and_then(|e| e.get("val")) {
        return element_key(inner, interval);
    }
    match v {
        Value::String(s) => match s.parse::<IpAddr>() {
            Ok(a) if interval => IpNet::from(a).to_string(),
            Ok(a) => a.to_string(),
            Err(_) => s.clone(),
        },
        Value::Object(o) => {
            if let Some(p) = o.get("prefix") {
                let addr = p.get("addr").and_then(Value::as_str).unwrap_or("");
                let len = p.get("len").and_then(Value::as_u64).unwrap_or(0);
                return match format!("{addr}/{len}").parse::<IpNet>() {
                    Ok(n) => n.trunc().to_string(),
                    Err(_) => format!("{addr}/{len}"),
                };
            }
            if let Some(Value::Array(parts)) = o.get("concat") {
                return parts
                    .iter()
                    .map(|p| element_key(p, false))
                    .collect::<Vec<_>>()
                    .join(" . ");
            }
            v.to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn elements_compare_as_nft_lists_them() {
        // nft lists a full-length prefix of an interval set as the bare address.
        assert_eq!(element_key(&json!("198.18.2.12"), true), "198.18.2.12/32");
        assert_eq!(
            element_key(
                &json!({"prefix": {"addr": "fd00:0:0:2::12", "len": 128}}),
                true
            ),
            "fd00:0:0:2::12/128"
        );
        assert_eq!(
            element_key(&json!("fd00:0:0:2:0::12"), false),
            "fd00:0:0:2::12"
        );
        assert_eq!(
            element_key(
                &json!({"elem": {"val": {"concat": ["fd00::1", "tcp", 80]}}}),
                false
            ),
            "fd00::1 . tcp . 80"
        );
    }

    #[test]
    fn l4proto_folds_into_the_transport_header_match() {
        let mut ours = vec![
            json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}),
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": 80}}),
            json!({"accept": null}),
        ];
        fold_l4proto(&mut ours);
        let listed = vec![
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}}),
            json!({"accept": null}),
        ];
        assert_eq!(ours, listed);
        // Without a transport header match the protocol match stays.
        let mut alone = vec![
            json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "udp"}}),
        ];
        fold_l4proto(&mut alone);
        assert_eq!(alone.len(), 1);
    }

    #[test]
    fn list_match_equals_anonymous_set_match() {
        let from_json = json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["related", "established"]}});
        let from_text = json!({"match": {"op": "==", "left": {"ct": {"key": "state"}}, "right": {"set": ["established", "related"]}}});
        assert_eq!(normalise(&from_json), normalise(&from_text));
        let other = json!({"match": {"op": "==", "left": {"ct": {"key": "state"}}, "right": {"set": ["established"]}}});
        assert_ne!(normalise(&from_json), normalise(&other));
    }

    #[test]
    fn shapes_differ_on_elements_rules_and_foreign_tables_are_ignored() {
        let listing = |elems: Value, extra_rule: bool| {
            let mut items = vec![
                json!({"metainfo": {"version": "1.0.6"}}),
                json!({"table": {"family": "inet", "name": "t", "handle": 1}}),
                json!({"set": {"family": "inet", "name": "s", "table": "t", "type": "ipv6_addr", "handle": 2, "elem": elems}}),
                json!({"chain": {"family": "inet", "table": "t", "name": "c", "handle": 3}}),
                json!({"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 4, "expr": [{"accept": null}]}}),
                json!({"rule": {"family": "inet", "table": "other", "chain": "c", "handle": 5, "expr": [{"drop": null}]}}),
            ];
            if extra_rule {
                items.push(json!({"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [{"drop": null}]}}));
            }
            json!({ "nftables": items })
        };
        let batch = json!({"nftables": [
            {"add": {"table": {"family": "inet", "name": "t"}}},
            {"delete": {"table": {"family": "inet", "name": "t"}}},
            {"add": {"table": {"family": "inet", "name": "t"}}},
            {"add": {"set": {"family": "inet", "name": "s", "table": "t", "type": "ipv6_addr", "elem": ["fd00::2", "fd00::1"]}}},
            {"add": {"chain": {"family": "inet", "table": "t", "name": "c"}}},
            {"add": {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [{"accept": null}]}}},
        ]});
        let want = TableShape::from_json(&batch, "t");
        let same = TableShape::from_json(&listing(json!(["fd00::1", "fd00::2"]), false), "t");
        assert_eq!(same.difference(&want), None);
        let fewer = TableShape::from_json(&listing(json!(["fd00::1"]), false), "t");
        assert!(fewer.difference(&want).unwrap().contains("elements"));
        let more_rules = TableShape::from_json(&listing(json!(["fd00::1", "fd00::2"]), true), "t");
        assert!(more_rules.difference(&want).unwrap().contains("rules"));
    }
}
