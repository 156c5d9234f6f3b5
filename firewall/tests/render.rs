//! Rendering: golden `nft -f` text (regenerate with `FAIRLEAD_BLESS=1`), and, as root, the real
//! `nft -c` accepting both the text and the JSON batch inside a throwaway network namespace.

mod support;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use firewall::model::{Built, Input, LogRate, Options, build};
use firewall::render::{to_nft_replace_script, to_nft_text, to_nftables_batch};
use support::*;

/// Policies covering every rule shape: selectors, ipBlock with except, endPort, named ports,
/// SCTP, both directions; dual-stack pods, drop logging on.
fn sample(addressing: Addressing) -> Built {
    let mut policies = Vec::new();
    for f in [
        "ingress-and-egress",
        "named-port-per-pod",
        "ingress-ipblock-except",
        "endport-sctp",
        "egress-named-port",
        "udp-only",
    ] {
        policies.extend(load_policies(f));
    }
    let pods = pods(addressing);
    let namespaces = namespaces();
    let built = build(
        Input {
            policies: &policies,
            pods: &pods,
            namespaces: &namespaces,
        },
        &Options {
            node_addresses: node_addresses(),
            log_drops: Some(LogRate {
                per_second: 10,
                burst: 5,
            }),
            ..Default::default()
        },
    );
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    built
}

fn golden(name: &str, actual: &str) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("FAIRLEAD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with FAIRLEAD_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             (FAIRLEAD_BLESS=1 regenerates it after review)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn golden_text_dual_stack() {
    golden(
        "dual-stack.nft",
        &to_nft_text(&sample(Addressing::DualStackIpv6Primary).ruleset),
    );
}

#[test]
fn golden_text_ipv6_only() {
    golden(
        "ipv6-only.nft",
        &to_nft_text(&sample(Addressing::Ipv6Only).ruleset),
    );
}

#[test]
fn golden_json_dual_stack() {
    let rs = sample(Addressing::DualStackIpv4Primary).ruleset;
    let mut json = serde_json::to_string_pretty(&to_nftables_batch(&rs)).unwrap();
    json.push('\n');
    golden("dual-stack.json", &json);
}

#[test]
fn json_batch_shape() {
    let rs = sample(Addressing::DualStackIpv4Primary).ruleset;
    let json = serde_json::to_value(to_nftables_batch(&rs)).unwrap();
    let cmds = json["nftables"].as_array().unwrap();
    // add table, delete table, add table, then every set, chain and rule.
    assert_eq!(
        cmds.len(),
        3 + rs.sets.len() + rs.chains.len() + rs.rule_count()
    );
    assert_eq!(cmds[1]["delete"]["table"]["name"], "fairlead-firewall");
    assert_eq!(cmds[1]["delete"]["table"]["family"], "inet");
    let forward = cmds
        .iter()
        .find(|c| c["add"]["chain"]["name"] == "forward")
        .unwrap();
    assert_eq!(forward["add"]["chain"]["hook"], "forward");
    assert_eq!(forward["add"]["chain"]["policy"], "accept");
    let named = cmds
        .iter()
        .find(|c| c["add"]["set"]["name"] == "np0_v4")
        .unwrap();
    assert_eq!(
        named["add"]["set"]["type"],
        serde_json::json!(["ipv4_addr", "inet_proto", "inet_service"])
    );
}

/// A network namespace made for one test, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Option<Netns> {
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .ok()?
            .success();
        ok.then(|| Netns(name.to_string()))
    }

    fn nft_check(&self, args: &[&str], file: &Path) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .arg("-f")
            .arg(file)
            .output()
            .expect("running nft");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn root_with_nft() -> bool {
    // SAFETY-free check: effective uid via /proc, nft via PATH.
    let uid0 = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    uid0 && Command::new("nft").arg("--version").output().is_ok()
}

#[test]
fn real_nft_accepts_text_and_json() {
    if !root_with_nft() {
        eprintln!("SKIP real_nft_accepts_text_and_json: needs root and nft");
        return;
    }
    let ns = Netns::new(&format!("fl-fwrender-{}", std::process::id())).expect("ip netns add");
    let dir = std::env::temp_dir().join(format!("fl-fwrender-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for addressing in Addressing::ALL {
        let rs = sample(addressing).ruleset;
        let text = dir.join("ruleset.nft");
        std::fs::write(&text, to_nft_replace_script(&rs)).unwrap();
        let (ok, err) = ns.nft_check(&["-c"], &text);
        assert!(ok, "{addressing:?}: nft -c rejected the text:\n{err}");
        let json = dir.join("ruleset.json");
        std::fs::write(
            &json,
            serde_json::to_string(&to_nftables_batch(&rs)).unwrap(),
        )
        .unwrap();
        let (ok, err) = ns.nft_check(&["-c", "-j"], &json);
        assert!(ok, "{addressing:?}: nft -c -j rejected the JSON:\n{err}");
    }
    // Longest legal names (namespace 63, policy 253 characters) still fit nft's comment limits.
    let long = serde_norway::from_str::<k8s_openapi::api::networking::v1::NetworkPolicy>(&format!(
        "metadata: {{name: {}, namespace: {}}}\nspec:\n  podSelector: {{}}\n  ingress:\n  \
         - from: [{{ipBlock: {{cidr: fd00::/8, except: [fd00::/16]}}}}, {{podSelector: {{}}}}]\n",
        "p".repeat(253),
        "n".repeat(63)
    ))
    .unwrap();
    let built = build(
        Input {
            policies: &[long],
            pods: &pods(Addressing::Ipv6Only),
            namespaces: &namespaces(),
        },
        &Options::default(),
    );
    assert!(built.skipped.is_empty());
    let text = dir.join("long.nft");
    std::fs::write(&text, to_nft_replace_script(&built.ruleset)).unwrap();
    let (ok, err) = ns.nft_check(&["-c"], &text);
    assert!(ok, "long names: nft -c rejected the text:\n{err}");
    // The check is not vacuous: a broken script is rejected.
    let bad = dir.join("bad.nft");
    std::fs::write(
        &bad,
        "table inet fairlead-firewall { chain c { ip saddr @missing accept } }\n",
    )
    .unwrap();
    let (ok, _) = ns.nft_check(&["-c"], &bad);
    assert!(!ok, "nft -c accepted a rule naming a missing set");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads every set of fairlead's table back from the kernel as model elements.
fn read_back_sets(
    ns: &Netns,
    table: &str,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<firewall::model::SetElement>> {
    use firewall::model::{Protocol, SetElement};
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "nft", "-j", "list", "table", "inet", table,
        ])
        .output()
        .expect("running nft list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut sets = std::collections::BTreeMap::new();
    for obj in v["nftables"].as_array().unwrap() {
        let Some(set) = obj.get("set") else { continue };
        let interval = set["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "interval"));
        let mut elems = std::collections::BTreeSet::new();
        for e in set["elem"].as_array().into_iter().flatten() {
            let parsed = if let Some(s) = e.as_str() {
                let a: IpAddr = s.parse().unwrap();
                if interval {
                    SetElement::Net(ipnet::IpNet::from(a))
                } else {
                    SetElement::Addr(a)
                }
            } else if let Some(p) = e.get("prefix") {
                let a: IpAddr = p["addr"].as_str().unwrap().parse().unwrap();
                let len = p["len"].as_u64().unwrap() as u8;
                SetElement::Net(ipnet::IpNet::new(a, len).unwrap())
            } else if let Some(c) = e.get("concat") {
                let proto = match c[1].as_str().unwrap() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    "sctp" => Protocol::Sctp,
                    other => panic!("protocol {other}"),
                };
                SetElement::AddrProtoPort(
                    c[0].as_str().unwrap().parse().unwrap(),
                    proto,
                    c[2].as_u64().unwrap() as u16,
                )
            } else {
                panic!("unexpected element {e}");
            };
            elems.insert(parsed);
        }
        sets.insert(set["name"].as_str().unwrap().to_string(), elems);
    }
    sets
}

fn count_rules(ns: &Netns, table: &str) -> usize {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "nft", "-j", "list", "table", "inet", table,
        ])
        .output()
        .expect("running nft list");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o.get("rule").is_some())
        .count()
}

fn model_sets(
    rs: &firewall::model::Ruleset,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<firewall::model::SetElement>> {
    rs.sets
        .iter()
        .map(|(k, s)| (k.clone(), s.elements.clone()))
        .collect()
}

fn nft_apply(ns: &Netns, dir: &Path, name: &str, batch: &nftables::schema::Nftables) {
    let file = dir.join(name);
    std::fs::write(&file, serde_json::to_string(batch).unwrap()).unwrap();
    let (ok, err) = ns.nft_check(&["-j"], &file);
    assert!(ok, "nft -j -f {name} failed:\n{err}");
}

#[test]
fn real_nft_loads_batch_then_delta() {
    use firewall::model::delta::set_delta;
    use firewall::render::delta_to_nftables;
    if !root_with_nft() {
        eprintln!("SKIP real_nft_loads_batch_then_delta: needs root and nft");
        return;
    }
    let ns = Netns::new(&format!("fl-fwdelta-{}", std::process::id())).expect("ip netns add");
    let dir = std::env::temp_dir().join(format!("fl-fwdelta-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for addressing in Addressing::ALL {
        let old = sample(addressing).ruleset;
        // Same cluster minus pod y/b (which is a peer of several sets).
        let mut policies = Vec::new();
        for f in [
            "ingress-and-egress",
            "named-port-per-pod",
            "ingress-ipblock-except",
            "endport-sctp",
            "egress-named-port",
            "udp-only",
        ] {
            policies.extend(load_policies(f));
        }
        let mut fewer = pods(addressing);
        fewer.remove(4);
        let new = build(
            Input {
                policies: &policies,
                pods: &fewer,
                namespaces: &namespaces(),
            },
            &Options {
                node_addresses: node_addresses(),
                log_drops: Some(LogRate {
                    per_second: 10,
                    burst: 5,
                }),
                ..Default::default()
            },
        )
        .ruleset;
        // The text script loads the same state as the JSON batch.
        let text = dir.join("full.nft");
        std::fs::write(&text, to_nft_replace_script(&old)).unwrap();
        let (ok, err) = ns.nft_check(&[], &text);
        assert!(ok, "nft -f full.nft: {err}");
        assert_eq!(
            read_back_sets(&ns, &old.table),
            model_sets(&old),
            "{addressing:?} text"
        );
        assert_eq!(count_rules(&ns, &old.table), old.rule_count());
        // Full replace twice (the second replaces the first), then the element delta.
        nft_apply(&ns, &dir, "full.json", &to_nftables_batch(&old));
        nft_apply(&ns, &dir, "full.json", &to_nftables_batch(&old));
        assert_eq!(count_rules(&ns, &old.table), old.rule_count());
        assert_eq!(
            read_back_sets(&ns, &old.table),
            model_sets(&old),
            "{addressing:?} full"
        );
        let delta = set_delta(&old, &new).unwrap();
        assert!(!delta.removed.is_empty());
        nft_apply(
            &ns,
            &dir,
            "delta.json",
            &delta_to_nftables(&old.table, &delta),
        );
        assert_eq!(
            read_back_sets(&ns, &new.table),
            model_sets(&new),
            "{addressing:?} delta"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
