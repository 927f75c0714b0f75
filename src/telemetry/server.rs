//! The telemetry HTTP listener: `/metrics` (Prometheus text), `/healthz`
//! (200 while the process is alive) and `/readyz` (200 only while ready).
//!
//! The server knows nothing of the replica: `run` hands it a readiness
//! probe and a hook that refreshes scrape-time gauges, so this module
//! depends on no delivery code.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often histograms are folded even when nobody scrapes, so that their
/// pending samples do not grow without bound.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What the endpoints answer from.
#[derive(Clone)]
pub struct Endpoints {
    /// Renders the process's metrics.
    pub metrics: PrometheusHandle,
    /// Whether `/readyz` answers 200.
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Called before each `/metrics` render, to set gauges that are cheaper
    /// to read at scrape time than to keep current (the tenant count).
    pub refresh: Arc<dyn Fn() + Send + Sync>,
}

/// The router of the three endpoints.
pub fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(endpoints)
}

/// Serves `endpoints` on `listener` until `stop` is cancelled. `stop` is
/// not the replica's shutdown signal: the endpoints must keep answering
/// (`/readyz` with 503) while the replica drains.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let upkeep = {
        let handle = endpoints.metrics.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        })
    };
    let result = axum::serve(listener, router(endpoints))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    upkeep.abort();
    result
}

async fn metrics(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    (endpoints.refresh)();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        endpoints.metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(endpoints): State<Endpoints>) -> (StatusCode, &'static str) {
    if (endpoints.ready)() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    #[tokio::test]
    async fn readyz_follows_the_probe_and_metrics_refreshes_first() {
        let ready = Arc::new(AtomicBool::new(false));
        let refreshed = Arc::new(AtomicUsize::new(0));
        let endpoints = Endpoints {
            metrics: crate::telemetry::metrics::install(&[]).unwrap(),
            ready: {
                let ready = ready.clone();
                Arc::new(move || ready.load(Ordering::Relaxed))
            },
            refresh: {
                let refreshed = refreshed.clone();
                Arc::new(move || {
                    refreshed.fetch_add(1, Ordering::Relaxed);
                })
            },
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, endpoints, stop.clone()));

        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let (status, text) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(text.contains("hookline_partitions_assigned"), "{text}");
        assert_eq!(refreshed.load(Ordering::Relaxed), 1);
        assert_eq!(get(addr, "/nothing").await.0, 404);

        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
