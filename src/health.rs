//! Liveness and readiness of the controller loops, as `/healthz` and `/readyz` report them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loop is stalled when it made no progress within this many resync periods (it resyncs at least once a
/// period when healthy, so a few missed periods mean it is stuck, not merely idle).
pub const STALL_PERIODS: u32 = 3;

#[derive(Debug)]
struct Loop {
    period: Duration,
    last_progress: Instant,
    synced: bool,
}

/// The registry every controller loop reports its progress to; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Health {
    loops: Arc<Mutex<BTreeMap<&'static str, Loop>>>,
}

/// One loop's handle for reporting progress.
#[derive(Clone, Debug)]
pub struct Reporter {
    health: Health,
    name: &'static str,
}

impl Health {
    /// Registers a loop that resyncs at least every `period`; not ready until its first [`Reporter::synced`].
    pub fn register(&self, name: &'static str, period: Duration) -> Reporter {
        self.lock().insert(
            name,
            Loop {
                period,
                last_progress: Instant::now(),
                synced: false,
            },
        );
        Reporter {
            health: self.clone(),
            name,
        }
    }

    /// Removes a loop (a controller that failed to start is no longer watched).
    pub fn unregister(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Loop>> {
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Ok` when every loop progressed within [`STALL_PERIODS`] of its period, else the stalled ones.
    pub fn live(&self, now: Instant) -> Result<(), Vec<&'static str>> {
        let stalled: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, l)| {
                now.saturating_duration_since(l.last_progress) > l.period * STALL_PERIODS
            })
            .map(|(n, _)| *n)
            .collect();
        if stalled.is_empty() {
            Ok(())
        } else {
            Err(stalled)
        }
    }

    /// `Ok` once every loop finished its first sync, else the ones still waiting.
    pub fn ready(&self) -> Result<(), Vec<&'static str>> {
        let waiting: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, l)| !l.synced)
            .map(|(n, _)| *n)
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting)
        }
    }
}

impl Reporter {
    /// The loop finished a sync (successful or not: it is alive and will retry).
    pub fn synced(&self) {
        if let Some(l) = self.health.lock().get_mut(self.name) {
            l.last_progress = Instant::now();
            l.synced = true;
        }
    }

    /// The loop is alive but has not synced (e.g. still waiting for its input).
    pub fn alive(&self) {
        if let Some(l) = self.health.lock().get_mut(self.name) {
            l.last_progress = Instant::now();
        }
    }
}

/// Binds `port` on every address (both families when the kernel has IPv6, else IPv4): kubelet probes and
/// Prometheus scrape the node's own addresses.
pub async fn bind_all(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, port)).await {
        Ok(l) => Ok(l),
        Err(_) => tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await,
    }
}

/// `/healthz` (200, or 503 naming the stalled loops) and `/readyz` (200 once every loop synced once).
pub fn router(health: Health) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    let live = health.clone();
    axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let health = live.clone();
                async move {
                    match health.live(Instant::now()) {
                        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
                        Err(stalled) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("stalled: {}\n", stalled.join(", ")),
                        ),
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    match health.ready() {
                        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
                        Err(waiting) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("first sync pending: {}\n", waiting.join(", ")),
                        ),
                    }
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_every_loop_and_liveness_names_the_stalled_one() {
        let health = Health::default();
        let a = health.register("proxy", Duration::from_secs(1));
        let _b = health.register("firewall", Duration::from_secs(1));
        assert_eq!(health.ready(), Err(vec!["firewall", "proxy"]));
        a.synced();
        assert_eq!(health.ready(), Err(vec!["firewall"]));
        let later = Instant::now() + Duration::from_secs(10);
        assert_eq!(health.live(Instant::now()), Ok(()));
        a.synced();
        assert_eq!(health.live(later), Err(vec!["firewall", "proxy"]));
        health.unregister("firewall");
        assert_eq!(health.ready(), Ok(()));
    }
}
