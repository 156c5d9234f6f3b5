//! fairlead's Prometheus series (names and labels from `manifests/METRICS.md`), rendered in the text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Bucket upper bounds of `fairlead_sync_duration_seconds` (the contract's list; +Inf is implicit).
pub const SYNC_BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Cumulative per bucket of [`SYNC_BUCKETS`].
    buckets: [u64; SYNC_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Per controller (`controller` label) sync durations, process-wide: controllers run on threads of their own.
static SYNCS: Mutex<BTreeMap<&'static str, Histogram>> = Mutex::new(BTreeMap::new());

/// Records one sync pass of `controller` (`router`, `service_proxy`, `firewall`).
pub fn observe_sync(controller: &'static str, duration: Duration) {
    let secs = duration.as_secs_f64();
    let mut all = SYNCS.lock().unwrap_or_else(|p| p.into_inner());
    let h = all.entry(controller).or_default();
    for (i, le) in SYNC_BUCKETS.iter().enumerate() {
        if secs <= *le {
            h.buckets[i] += 1;
        }
    }
    h.count += 1;
    h.sum += secs;
}

/// Declares a controller so its histogram is exported (all zero) before its first pass.
pub fn declare_controller(controller: &'static str) {
    SYNCS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(controller)
        .or_default();
}

/// Appends the sync-duration histogram family to `out`.
pub fn render_syncs(out: &mut String) {
    let all = SYNCS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let _ = writeln!(
        out,
        "# HELP fairlead_sync_duration_seconds One recompute-diff-apply pass, watch event or resync to done."
    );
    let _ = writeln!(out, "# TYPE fairlead_sync_duration_seconds histogram");
    for (controller, h) in &all {
        for (le, n) in SYNC_BUCKETS.iter().zip(h.buckets) {
            let _ = writeln!(
                out,
                "fairlead_sync_duration_seconds_bucket{{controller=\"{controller}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "fairlead_sync_duration_seconds_bucket{{controller=\"{controller}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "fairlead_sync_duration_seconds_sum{{controller=\"{controller}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "fairlead_sync_duration_seconds_count{{controller=\"{controller}\"}} {}",
            h.count
        );
    }
}
