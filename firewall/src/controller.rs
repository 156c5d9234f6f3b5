//! Watches Pods, Namespaces and NetworkPolicies, recomputes the ruleset and keeps the kernel in sync.
//!
//! A pod added, changed or removed is first tried as a set-element delta (the table's structure
//! usually stays the same); a policy or namespace change, a relist and the periodic resync
//! replace the table in one transaction (the periodic resync reads back first and sends nothing
//! when the kernel already holds the desired table).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{Change, Changes, ClusterStores, Kind};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::dataplane::{Dataplane, DataplaneError, SyncOutcome};
use crate::model::{Built, Input, Options, build};

/// Default period of the full resync.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(300);

/// Counters and the last sync duration, readable while the controller runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub full_syncs: u64,
    pub element_syncs: u64,
    pub unchanged_syncs: u64,
    pub errors: u64,
    /// Objects the model skipped in the last computation.
    pub skipped_objects: usize,
    pub last_sync_duration: Option<Duration>,
    pub last_outcome: Option<SyncOutcome>,
}

/// What triggered a recomputation; decides between element delta and full replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// Only pods changed: try the element delta.
    Pods,
    /// Policies, namespaces, a relist or missed changes: full sync.
    Full,
    /// Timer: read back, replace only on difference.
    Resync,
}

/// The firewall controller of one node.
pub struct FirewallController {
    stores: ClusterStores,
    options: Options,
    dataplane: Arc<Mutex<Dataplane>>,
    resync: Duration,
    metrics: Arc<Mutex<Metrics>>,
}

impl FirewallController {
    pub fn new(stores: ClusterStores, options: Options, dataplane: Dataplane) -> Self {
        FirewallController {
            stores,
            options,
            dataplane: Arc::new(Mutex::new(dataplane)),
            resync: DEFAULT_RESYNC,
            metrics: Arc::new(Mutex::new(Metrics::default())),
        }
    }

    /// Sets the period of the full resync.
    pub fn with_resync(mut self, period: Duration) -> Self {
        self.resync = period;
        self
    }

    /// A handle to the metrics.
    pub fn metrics(&self) -> Arc<Mutex<Metrics>> {
        self.metrics.clone()
    }

    /// The ruleset from the stores' current content.
    pub fn compute(&self) -> Built {
        compute(&self.stores, &self.options)
    }

    /// Runs until the change stream ends. Call after subscribing (`changes`) and before or after
    /// the stores are ready: the first computation happens on the first `Relisted`/`Applied`.
    pub async fn run(self, mut changes: Changes) {
        // The first pass reads back (nothing known) and replaces only if the kernel differs.
        self.pass(Trigger::Resync).await;
        let mut timer = tokio::time::interval(self.resync);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer.tick().await;
        loop {
            let trigger = tokio::select! {
                change = changes.recv() => match change {
                    None => return,
                    Some(c) => {
                        // Coalesce what is already queued into one recomputation.
                        let mut t = classify(&c);
                        while let Some(more) = changes.try_recv() {
                            t = merge(t, classify(&more));
                        }
                        match t {
                            Some(t) => t,
                            None => continue,
                        }
                    }
                },
                _ = timer.tick() => Trigger::Resync,
            };
            self.pass(trigger).await;
        }
    }

    async fn pass(&self, trigger: Trigger) {
        let built = self.compute();
        for s in &built.skipped {
            tracing::warn!(kind = s.kind, namespace = %s.namespace, name = %s.name, error = %s.error,
                "object skipped");
        }
        let dataplane = self.dataplane.clone();
        let started = Instant::now();
        let ruleset = built.ruleset;
        let result = tokio::task::spawn_blocking(move || {
            let mut dp = dataplane.lock().unwrap_or_else(|p| p.into_inner());
            match trigger {
                Trigger::Pods => dp.sync(&ruleset),
                // A change that leaves the ruleset as it is (a label nobody selects on) sends nothing.
                Trigger::Full if dp.known() == Some(&ruleset) => Ok(SyncOutcome::Unchanged),
                Trigger::Full => dp
                    .replace(&ruleset)
                    .map(|()| SyncOutcome::Replaced("policy or namespace change".into())),
                Trigger::Resync => {
                    dp.forget();
                    dp.sync(&ruleset)
                }
            }
        })
        .await
        .unwrap_or_else(|e| {
            Err(DataplaneError::BridgeSysctl {
                sysctl: "-".into(),
                detail: format!("sync task failed: {e}"),
            })
        });
        let elapsed = started.elapsed();
        let mut m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.skipped_objects = built.skipped.len();
        m.last_sync_duration = Some(elapsed);
        match result {
            Ok(outcome) => {
                match &outcome {
                    SyncOutcome::Unchanged => m.unchanged_syncs += 1,
                    SyncOutcome::Elements { .. } => m.element_syncs += 1,
                    SyncOutcome::Replaced(_) => m.full_syncs += 1,
                }
                tracing::info!(?trigger, ?outcome, ?elapsed, "firewall synced");
                m.last_outcome = Some(outcome);
            }
            Err(e) => {
                m.errors += 1;
                tracing::error!(?trigger, error = %e, "firewall sync failed");
            }
        }
    }
}

/// The model over the stores' content.
pub fn compute(stores: &ClusterStores, options: &Options) -> Built {
    let policies: Vec<NetworkPolicy> = stores
        .network_policies
        .state()
        .iter()
        .map(|p| (**p).clone())
        .collect();
    let pods: Vec<Pod> = stores.pods.state().iter().map(|p| (**p).clone()).collect();
    let namespaces: Vec<Namespace> = stores
        .namespaces
        .state()
        .iter()
        .map(|n| (**n).clone())
        .collect();
    build(
        Input {
            policies: &policies,
            pods: &pods,
            namespaces: &namespaces,
        },
        options,
    )
}

fn classify(change: &Change) -> Option<Trigger> {
    match change {
        Change::Applied {
            kind: Kind::Pod, ..
        }
        | Change::Deleted {
            kind: Kind::Pod, ..
        } => Some(Trigger::Pods),
        Change::Missed { .. } => Some(Trigger::Full),
        c => match c.kind() {
            Some(Kind::Pod | Kind::Namespace | Kind::NetworkPolicy) => Some(Trigger::Full),
            _ => None,
        },
    }
}

fn merge(a: Option<Trigger>, b: Option<Trigger>) -> Option<Trigger> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(Trigger::Pods), Some(Trigger::Pods)) => Some(Trigger::Pods),
        _ => Some(Trigger::Full),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(kind: Kind) -> Change {
        Change::Applied {
            kind,
            key: cluster::ObjectKey::namespaced("x", "a"),
        }
    }

    #[test]
    fn pod_changes_are_element_deltas_everything_else_is_full() {
        assert_eq!(classify(&applied(Kind::Pod)), Some(Trigger::Pods));
        assert_eq!(
            classify(&Change::Deleted {
                kind: Kind::Pod,
                key: cluster::ObjectKey::namespaced("x", "a"),
            }),
            Some(Trigger::Pods)
        );
        assert_eq!(classify(&applied(Kind::Namespace)), Some(Trigger::Full));
        assert_eq!(classify(&applied(Kind::NetworkPolicy)), Some(Trigger::Full));
        assert_eq!(
            classify(&Change::Relisted { kind: Kind::Pod }),
            Some(Trigger::Full)
        );
        assert_eq!(classify(&Change::Missed { count: 3 }), Some(Trigger::Full));
        assert_eq!(classify(&applied(Kind::Service)), None);
        assert_eq!(classify(&applied(Kind::Node)), None);
        assert_eq!(
            merge(Some(Trigger::Pods), Some(Trigger::Pods)),
            Some(Trigger::Pods)
        );
        assert_eq!(
            merge(Some(Trigger::Pods), Some(Trigger::Full)),
            Some(Trigger::Full)
        );
        assert_eq!(merge(None, Some(Trigger::Pods)), Some(Trigger::Pods));
        assert_eq!(merge(Some(Trigger::Full), None), Some(Trigger::Full));
    }
}
