//! `/metrics`, `/healthz`, `/readyz` — served by every role.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, from 1 ms to 60 s: the goal is p99 under 0.25 s, the
/// promise under 2 s, and the tail beyond must still be visible.
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .expect("buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// Which components of this node are ready; `/readyz` answers 200 only when all are.
#[derive(Clone, Default)]
pub struct Readiness {
    parts: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    /// Registers a component as not ready yet.
    pub fn register(&self, name: &str) {
        self.set(name, false);
    }

    pub fn set(&self, name: &str, ready: bool) {
        self.parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), ready);
    }

    pub fn snapshot(&self) -> BTreeMap<String, bool> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn all_ready(&self) -> bool {
        let s = self.snapshot();
        !s.is_empty() && s.values().all(|r| *r)
    }
}

#[derive(Clone)]
struct ObsState {
    handle: PrometheusHandle,
    readiness: Readiness,
}

/// The observability routes.
pub fn router(handle: PrometheusHandle, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .with_state(ObsState { handle, readiness })
}

async fn metrics(State(s): State<ObsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.handle.render(),
    )
}

async fn readyz(State(s): State<ObsState>) -> impl IntoResponse {
    let parts = s.readiness.snapshot();
    let status = if s.readiness.all_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({ "ready": status == StatusCode::OK, "components": parts })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_registered_part() {
        let r = Readiness::default();
        assert!(!r.all_ready(), "nothing registered is not ready");
        r.register("ingest");
        r.register("sink");
        r.set("ingest", true);
        assert!(!r.all_ready());
        r.set("sink", true);
        assert!(r.all_ready());
    }
}
