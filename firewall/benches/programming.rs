//! Full programming time of fairlead's firewall dataplane vs `nft -f` of the same ruleset, side by side.
//!
//! 1000 NetworkPolicies over 5000 dual-stack pods (50 namespaces x 100 pods); each run loads the ruleset into a
//! fresh network namespace, fairlead (`Dataplane::replace`: JSON batch rendered and sent to `nft -j -f -`) and
//! `nft -f <file>` (the text rendering of the same ruleset, written beforehand) alternately; median of the runs.
//! Then one pod is added and the element batch fairlead sends for it is printed and timed.
//! Needs root. Run: `sudo cargo bench -p firewall --bench programming -- [runs]`

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use firewall::dataplane::{Dataplane, NftTarget, SyncOutcome, element_batch};
use firewall::model::{Input, Options, TABLE_NAME, build};
use firewall::render::to_nft_replace_script;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const NAMESPACES: usize = 50;
const PODS_PER_NAMESPACE: usize = 100;
const POLICIES: usize = 1000;

fn labels(kv: &[(&str, String)]) -> Option<BTreeMap<String, String>> {
    Some(kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

fn namespace(n: usize) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(format!("ns{n}")),
            labels: labels(&[("team", format!("t{}", n % 10))]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn pod(n: usize, j: usize) -> Pod {
    let ips = vec![
        PodIP {
            ip: format!("fd00:20:{n:x}::{:x}", j + 1),
        },
        PodIP {
            ip: format!("198.19.{n}.{}", j + 1),
        },
    ];
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("p{j}")),
            namespace: Some(format!("ns{n}")),
            labels: labels(&[
                ("app", format!("app{}", j % 50)),
                (
                    "role",
                    if j.is_multiple_of(2) { "web" } else { "db" }.into(),
                ),
            ]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8000 + (j % 3) as i32,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
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

/// Policy `p`: selects app{p % 50} in ns{p % 50}; ingress from app{(p+1) % 50} of team t{p % 10} namespaces on
/// TCP 80 and 443 (every 5th: the named port `http`); every 4th also isolates egress to an ipBlock with except.
fn policy(p: usize) -> NetworkPolicy {
    let ns = p % NAMESPACES;
    let ports = if p.is_multiple_of(5) {
        serde_json::json!([{"protocol": "TCP", "port": "http"}])
    } else {
        serde_json::json!([{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 443}])
    };
    let mut spec = serde_json::json!({
        "podSelector": {"matchLabels": {"app": format!("app{}", (p / NAMESPACES + p) % 50)}},
        "policyTypes": ["Ingress"],
        "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", p % 10)}},
                      "podSelector": {"matchLabels": {"app": format!("app{}", (p + 1) % 50)}}},
                     {"podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["web"]}]}}],
            "ports": ports,
        }],
    });
    if p.is_multiple_of(4) {
        spec["policyTypes"] = serde_json::json!(["Ingress", "Egress"]);
        spec["egress"] = serde_json::json!([{
            "to": [{"ipBlock": {"cidr": "198.18.0.0/15", "except": [format!("198.19.{}.0/24", p % 200)]}},
                   {"ipBlock": {"cidr": "fd00::/8", "except": [format!("fd00:20:{:x}::/48", p % 200)]}}],
        }]);
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("np{p}"), "namespace": format!("ns{ns}")},
        "spec": spec,
    }))
    .expect("valid policy")
}

struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// CPU time (user + system) of the waited-for children so far (`cutime + cstime` of /proc/self/stat, 10 ms ticks):
/// `ip netns exec` execs `nft` in place, so this is nft's own CPU time.
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after = stat.rsplit_once(") ").map(|(_, a)| a).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Duration::from_millis((f[13] + f[14]) * 10)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(7);
    let is_root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !is_root {
        eprintln!("SKIP firewall programming benchmark: needs root");
        return;
    }
    let namespaces: Vec<Namespace> = (0..NAMESPACES).map(namespace).collect();
    let mut pods: Vec<Pod> = (0..NAMESPACES)
        .flat_map(|n| (0..PODS_PER_NAMESPACE).map(move |j| pod(n, j)))
        .collect();
    let policies: Vec<NetworkPolicy> = (0..POLICIES).map(policy).collect();
    let options = Options {
        node_addresses: vec![
            "fd00:0:0:1::1".parse().unwrap(),
            "198.18.1.1".parse().unwrap(),
        ],
        ..Default::default()
    };
    let started = Instant::now();
    let built = build(
        Input {
            policies: &policies,
            pods: &pods,
            namespaces: &namespaces,
        },
        &options,
    );
    let model_time = started.elapsed();
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    let ruleset = built.ruleset;
    let script = to_nft_replace_script(&ruleset);
    let file = std::env::temp_dir().join(format!("fl-fwbench-{}.nft", std::process::id()));
    std::fs::write(&file, &script).expect("write nft script");
    if let Ok(path) = std::env::var("FL_FWBENCH_DUMP_JSON") {
        let batch = firewall::render::to_nftables_batch(&ruleset);
        std::fs::write(path, serde_json::to_string(&batch).unwrap()).expect("dump");
    }
    println!(
        "ruleset: {} policies, {} pods, {} sets, {} elements, {} rules; model build {:.1} ms; nft text {} KiB",
        POLICIES,
        pods.len(),
        ruleset.sets.len(),
        ruleset.element_count(),
        ruleset.rule_count(),
        ms(model_time),
        script.len() / 1024
    );

    let json_file = std::env::temp_dir().join(format!("fl-fwbench-{}.json", std::process::id()));
    let t = Instant::now();
    let json = serde_json::to_string(&firewall::render::to_nftables_batch(&ruleset)).expect("json");
    let render_time = t.elapsed();
    std::fs::write(&json_file, &json).expect("write json");
    println!(
        "fairlead JSON batch: {} KiB, rendered and serialised in {:.1} ms",
        json.len() / 1024,
        ms(render_time)
    );

    let prefix = format!("fl-fwbench{}", std::process::id());
    // 0: fairlead Dataplane::replace; 1: nft -f text; 2: nft -j -f of fairlead's batch from a file.
    let mut wall: [Vec<Duration>; 3] = Default::default();
    let mut cpu: [Vec<Duration>; 3] = Default::default();
    for run in 0..runs {
        // Rotate the order, so no variant profits from warm caches systematically.
        for k in 0..3 {
            let which = (run + k) % 3;
            let ns = Netns::new(format!("{prefix}-{run}-{which}"));
            let cpu0 = children_cpu();
            let t = Instant::now();
            if which == 0 {
                let mut dp = Dataplane::new(NftTarget::Netns(ns.0.clone()), TABLE_NAME);
                dp.replace(&ruleset).expect("fairlead replace");
            } else {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns.0, "nft"]);
                if which == 2 {
                    cmd.arg("-j");
                }
                let out = cmd
                    .arg("-f")
                    .arg(if which == 1 { &file } else { &json_file })
                    .output()
                    .expect("nft");
                assert!(
                    out.status.success(),
                    "nft: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            wall[which].push(t.elapsed());
            cpu[which].push(children_cpu() - cpu0);
            if run == 0 {
                // All three load the same table (the readback comparison is fairlead's own).
                let dp = Dataplane::new(NftTarget::Netns(ns.0.clone()), TABLE_NAME);
                assert_eq!(
                    dp.live_difference(&ruleset).expect("read back"),
                    None,
                    "variant {which}"
                );
            }
        }
    }
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&json_file);
    let names = [
        "fairlead `Dataplane::replace` (render JSON, `nft -j -f -`)",
        "`nft -f` of the same ruleset as text",
        "`nft -j -f` of fairlead's JSON batch (file)",
    ];
    let (base_wall, base_cpu) = (median(&mut wall[1].clone()), median(&mut cpu[1].clone()));
    println!();
    println!(
        "| what | wall median (ms) | wall min-max (ms) | vs nft -f | nft CPU median (ms) | vs nft -f | runs |"
    );
    println!("|---|---|---|---|---|---|---|");
    for k in [0usize, 1, 2] {
        let w = median(&mut wall[k]);
        let c = median(&mut cpu[k]);
        println!(
            "| {} | {:.0} | {:.0}-{:.0} | {:.2}x | {:.0} | {:.2}x | {runs} |",
            names[k],
            ms(w),
            ms(wall[k][0]),
            ms(wall[k][runs - 1]),
            w.as_secs_f64() / base_wall.as_secs_f64(),
            ms(c),
            c.as_secs_f64() / base_cpu.as_secs_f64().max(1e-9),
        );
    }

    // One pod added (ns0, app1): the element batch fairlead sends, timed on a loaded table.
    let ns = Netns::new(format!("{prefix}-add"));
    let mut dp = Dataplane::new(NftTarget::Netns(ns.0.clone()), TABLE_NAME);
    dp.replace(&ruleset).expect("load");
    pods.push(pod(0, 150));
    let grown = build(
        Input {
            policies: &policies,
            pods: &pods,
            namespaces: &namespaces,
        },
        &options,
    )
    .ruleset;
    let batch = element_batch(&ruleset, &grown).expect("pod add changes elements only");
    let t = Instant::now();
    let outcome = dp.sync(&grown).expect("element sync");
    let add_time = t.elapsed();
    assert!(
        matches!(outcome, SyncOutcome::Elements { .. }),
        "{outcome:?}"
    );
    assert_eq!(dp.live_difference(&grown).expect("read back"), None);
    println!();
    println!(
        "pod add (ns0/p150): {outcome:?} in {:.1} ms; batch sent:",
        ms(add_time)
    );
    println!("{}", serde_json::to_string(&batch).expect("json"));
}
