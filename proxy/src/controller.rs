//! The proxy's loop: current Services + EndpointSlices -> model -> dataplane, timed, with a periodic resync.
//!
//! Kubernetes watching is wired by the daemon: it calls [`ProxyController::sync`] with the objects of its
//! reflector stores (or sends them to [`ProxyController::run`]). A restart is a new controller: its first sync
//! reads IPVS back and diffs; nothing is flushed.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use ipnet::IpNet;
pub use k8s_openapi::api::core::v1::Service;
pub use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::dataplane::{ApplyReport, DataplaneConfig, DataplaneError, NftState, ProxyDataplane};
use crate::model::{self, NodeContext, ServiceRef};

/// Everything the controller needs to know about this node and cluster.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// This node (name, zone, addresses, `--nodeport-addresses`).
    pub node: NodeContext,
    /// The cluster's pod CIDRs (both families): traffic from elsewhere to a ClusterIP is masqueraded.
    pub cluster_cidrs: Vec<IpNet>,
    /// The dataplane's settings.
    pub dataplane: DataplaneConfig,
    /// How often [`ProxyController::run`] resyncs when nothing changed (also sweeps drained destinations).
    pub resync_period: Duration,
}

/// Upper bounds (seconds) of the sync duration histogram, Prometheus-style (`le`), the last bucket is +Inf.
pub const SYNC_DURATION_BUCKETS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Counters of the controller, ready for a Prometheus exporter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncMetrics {
    /// Syncs done.
    pub syncs: u64,
    /// Cumulative counts per bucket of [`SYNC_DURATION_BUCKETS`], plus one for +Inf.
    pub duration_buckets: [u64; SYNC_DURATION_BUCKETS.len() + 1],
    /// Sum of all sync durations.
    pub duration_sum: Duration,
    /// Duration of the last sync.
    pub last_duration: Duration,
    /// Failures by [`DataplaneError::metric_label`].
    pub errors: std::collections::BTreeMap<&'static str, u64>,
    /// Model warnings (invalid objects skipped) in the last sync.
    pub last_warnings: usize,
}

impl SyncMetrics {
    fn observe(&mut self, duration: Duration, report: &ApplyReport, warnings: usize) {
        self.syncs += 1;
        self.duration_sum += duration;
        self.last_duration = duration;
        self.last_warnings = warnings;
        let secs = duration.as_secs_f64();
        for (i, le) in SYNC_DURATION_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.duration_buckets[i] += 1;
            }
        }
        self.duration_buckets[SYNC_DURATION_BUCKETS.len()] += 1;
        for e in &report.errors {
            *self.errors.entry(e.metric_label()).or_default() += 1;
        }
    }
}

/// The outcome of one sync.
#[derive(Debug)]
pub struct SyncOutcome {
    /// How long the sync took (model + dataplane).
    pub duration: Duration,
    /// What the dataplane did, and what failed.
    pub report: ApplyReport,
    /// The model's warnings (each names its object).
    pub warnings: Vec<model::Warning>,
}

/// One update from the cluster source: the full current set of objects.
#[derive(Clone, Debug, Default)]
pub struct ClusterObjects {
    /// All Services.
    pub services: Vec<Service>,
    /// All EndpointSlices.
    pub slices: Vec<EndpointSlice>,
}

/// Recomputes the proxy's desired state and applies it, in the network namespace it was created in.
pub struct ProxyController {
    config: ProxyConfig,
    dataplane: ProxyDataplane,
    last: Option<ClusterObjects>,
    metrics: SyncMetrics,
}

impl ProxyController {
    /// Opens the dataplane in the calling thread's network namespace. Nothing is changed until the first sync.
    pub fn new(config: ProxyConfig) -> Result<Self, DataplaneError> {
        let dataplane = ProxyDataplane::new(config.dataplane.clone())?;
        Ok(Self {
            config,
            dataplane,
            last: None,
            metrics: SyncMetrics::default(),
        })
    }

    /// The dataplane (for inspection).
    pub fn dataplane(&mut self) -> &mut ProxyDataplane {
        &mut self.dataplane
    }

    /// The metrics so far.
    pub fn metrics(&self) -> &SyncMetrics {
        &self.metrics
    }

    /// Recomputes the desired state from the current objects and applies it; invalid objects are logged by
    /// name and skipped, dataplane failures are logged and reported, and the next sync retries them.
    pub fn sync(&mut self, services: &[Service], slices: &[EndpointSlice]) -> SyncOutcome {
        let start = Instant::now();
        // Addresses already on fairlead-vip are VIPs (maybe stale ones), never NodePort addresses.
        let on_vip_interface = self.dataplane.vips().unwrap_or_default();
        let mut node = self.config.node.clone();
        node.addresses.retain(|a| !on_vip_interface.contains(a));
        let desired = model::desired_state(services, slices, &node);
        for w in &desired.warnings {
            tracing::warn!(warning = %w, "invalid Kubernetes object skipped");
        }
        let nft = NftState::from_desired(
            &desired,
            &local_external_services(services),
            &self.config.cluster_cidrs,
        );
        let node_addresses: Vec<IpAddr> = node.addresses.clone();
        let report = self.dataplane.apply(&desired, &nft, &node_addresses);
        for e in &report.errors {
            tracing::warn!(error = %e, "proxy dataplane");
        }
        let duration = start.elapsed();
        self.metrics
            .observe(duration, &report, desired.warnings.len());
        tracing::debug!(
            ?duration,
            operations = report.operations,
            errors = report.errors.len(),
            "proxy sync"
        );
        self.last = Some(ClusterObjects {
            services: services.to_vec(),
            slices: slices.to_vec(),
        });
        SyncOutcome {
            duration,
            report,
            warnings: desired.warnings,
        }
    }

    /// Syncs again with the last objects (repairs drift, sweeps drained destinations); `None` before any sync.
    pub fn resync(&mut self) -> Option<SyncOutcome> {
        let last = self.last.take()?;
        let outcome = self.sync(&last.services, &last.slices);
        Some(outcome)
    }

    /// Syncs on every update received, and resyncs every `resync_period` without one; returns when the
    /// sender is dropped.
    pub fn run(&mut self, updates: Receiver<ClusterObjects>) {
        loop {
            match updates.recv_timeout(self.config.resync_period) {
                Ok(objects) => {
                    self.sync(&objects.services, &objects.slices);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.resync();
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Services whose external virtual servers keep the client address (`externalTrafficPolicy: Local`).
pub fn local_external_services(services: &[Service]) -> BTreeSet<ServiceRef> {
    services
        .iter()
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|spec| spec.external_traffic_policy.as_deref())
                == Some("Local")
        })
        .filter_map(|s| {
            Some(ServiceRef {
                namespace: s
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
                name: s.metadata.name.clone()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fill_cumulative_buckets() {
        let mut m = SyncMetrics::default();
        let report = ApplyReport::default();
        m.observe(Duration::from_millis(3), &report, 0);
        m.observe(Duration::from_millis(300), &report, 2);
        m.observe(Duration::from_secs(2), &report, 0);
        assert_eq!(m.syncs, 3);
        // le: 1ms 2.5ms 5ms 10ms 25ms 50ms 100ms 250ms 500ms 1s +Inf
        assert_eq!(m.duration_buckets, [0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 3]);
        assert_eq!(m.duration_sum, Duration::from_millis(2303));
        assert_eq!(m.last_duration, Duration::from_secs(2));
        assert_eq!(m.last_warnings, 0);
    }

    #[test]
    fn errors_are_counted_by_label() {
        let mut m = SyncMetrics::default();
        let report = ApplyReport {
            errors: vec![
                DataplaneError::Runtime(std::io::Error::other("x")),
                DataplaneError::Runtime(std::io::Error::other("y")),
            ],
            ..ApplyReport::default()
        };
        m.observe(Duration::ZERO, &report, 0);
        assert_eq!(m.errors.get("runtime"), Some(&2));
    }

    #[test]
    fn local_external_services_are_named() {
        let services: Vec<Service> = serde_json::from_value(serde_json::json!([
            {"metadata": {"name": "a", "namespace": "ns"}, "spec": {"externalTrafficPolicy": "Local"}},
            {"metadata": {"name": "b"}, "spec": {"externalTrafficPolicy": "Local"}},
            {"metadata": {"name": "c", "namespace": "ns"}, "spec": {"externalTrafficPolicy": "Cluster"}},
            {"metadata": {"name": "d", "namespace": "ns"}, "spec": {}},
            {"metadata": {"namespace": "ns"}, "spec": {"externalTrafficPolicy": "Local"}},
        ]))
        .unwrap();
        let names: Vec<String> = local_external_services(&services)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["default/b", "ns/a"]);
    }
}
