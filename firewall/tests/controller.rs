//! The controller over real reflector stores and a real table (root only, in a namespace of its own): a restart
//! that finds the desired table sends nothing, a pod added is an element change, a policy change a full sync, and
//! the kernel ends equal to the model each time.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster::ClusterStores;
use firewall::controller::{FirewallController, Metrics, compute};
use firewall::dataplane::{Dataplane, NftTarget};
use firewall::model::{Options, TABLE_NAME};
use kube::runtime::watcher::Event;
use support::*;

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Waits (bounded) until the metrics satisfy `done` and the live table equals the model of the stores.
async fn wait_for(
    what: &str,
    metrics: &std::sync::Mutex<Metrics>,
    stores: &ClusterStores,
    options: &Options,
    target: &NftTarget,
    done: impl Fn(&Metrics) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics.lock().unwrap().clone();
        if done(&m) {
            let desired = compute(stores, options).ruleset;
            let dp = Dataplane::new(target.clone(), TABLE_NAME);
            if dp.live_difference(&desired).unwrap().is_none() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached, metrics {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_pod_add_and_policy_change() {
    if !is_root() {
        eprintln!("SKIP restart_pod_add_and_policy_change: needs root");
        return;
    }
    let ns = Netns(format!("fl-fwctl{}", std::process::id()));
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success()
    );
    let target = NftTarget::Netns(ns.0.clone());
    let options = Options {
        node_addresses: node_addresses(),
        ..Default::default()
    };

    let (stores, mut writers) = ClusterStores::new();
    let all = pods(Addressing::DualStackIpv6Primary);
    writers.namespaces.apply(&Event::Init);
    for n in namespaces() {
        writers.namespaces.apply(&Event::InitApply(n));
    }
    writers.namespaces.apply(&Event::InitDone);
    writers.pods.apply(&Event::Init);
    for p in &all[1..] {
        writers.pods.apply(&Event::InitApply(p.clone()));
    }
    writers.pods.apply(&Event::InitDone);
    writers.network_policies.apply(&Event::Init);
    for p in load_policies("deny-all-both") {
        writers.network_policies.apply(&Event::InitApply(p));
    }
    writers.network_policies.apply(&Event::InitDone);

    // A previous run left exactly the desired table: the restart reads it back and sends nothing.
    let mut previous = Dataplane::new(target.clone(), TABLE_NAME);
    previous
        .replace(&compute(&stores, &options).ruleset)
        .unwrap();

    let controller = FirewallController::new(
        stores.clone(),
        options.clone(),
        Dataplane::new(target.clone(), TABLE_NAME),
    )
    .with_resync(Duration::from_secs(3600));
    let metrics = controller.metrics();
    let changes = stores.changes();
    let task = tokio::spawn(controller.run(changes));

    wait_for("restart", &metrics, &stores, &options, &target, |m| {
        m.unchanged_syncs == 1
    })
    .await;
    assert_eq!(metrics.lock().unwrap().full_syncs, 0, "restart flushed");

    // Pod x/a appears: elements only.
    writers.pods.apply(&Event::Apply(all[0].clone()));
    wait_for("pod add", &metrics, &stores, &options, &target, |m| {
        m.element_syncs == 1
    })
    .await;
    {
        let m = metrics.lock().unwrap();
        assert_eq!(m.full_syncs, 0, "{m:?}");
        assert!(m.last_sync_duration.is_some());
    }

    // A policy change: one full sync.
    for p in load_policies("port-80-tcp") {
        writers.network_policies.apply(&Event::Apply(p));
    }
    wait_for("policy change", &metrics, &stores, &options, &target, |m| {
        m.full_syncs == 1
    })
    .await;

    // The pod goes away: elements only again.
    writers.pods.apply(&Event::Delete(all[0].clone()));
    wait_for("pod delete", &metrics, &stores, &options, &target, |m| {
        m.element_syncs == 2
    })
    .await;
    let m = metrics.lock().unwrap().clone();
    assert_eq!((m.full_syncs, m.errors), (1, 0), "{m:?}");
    task.abort();
}
