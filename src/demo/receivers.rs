//! The tenants' endpoints: one per tenant on 127.0.0.1 (port 0), each the
//! [`crate::receiver::server`] that `hookline receive` serves, verifying and
//! decrypting with that tenant's secret and private key, and counting what
//! it saw and when. Counting on the receivers' side means the demo needs no
//! metrics to report deliveries, retries and latencies.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::receiver::Receiver;
use crate::receiver::server::{self, Output};

/// What one tenant's endpoint has seen so far.
#[derive(Default)]
pub struct EndpointCounts {
    /// Ids of the deliveries verified, decrypted and acknowledged, with when
    /// each first arrived. A redelivery (at-least-once) is neither counted
    /// twice nor moves the time.
    delivered: Mutex<HashMap<String, Instant>>,
    /// Requests answered with anything but 2xx; each makes hookline retry
    /// (or, after the last attempt, dead-letter).
    failed: AtomicU64,
    /// When the first of them was answered.
    first_failure: OnceLock<Instant>,
    /// The first delivery as the receiver printed it (verified, decrypted).
    first: Mutex<Option<serde_json::Value>>,
}

impl EndpointCounts {
    pub fn delivered(&self) -> u64 {
        lock(&self.delivered).len() as u64
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Relaxed)
    }

    /// Every delivery's id and when it arrived.
    pub fn delivery_times(&self) -> Vec<(String, Instant)> {
        lock(&self.delivered)
            .iter()
            .map(|(id, at)| (id.clone(), *at))
            .collect()
    }

    /// How long the endpoint failed: from its first failed request to the
    /// first delivery it accepted after it. `None` when it never failed, or
    /// has not recovered yet.
    pub fn failing_for(&self) -> Option<Duration> {
        let failed_at = *self.first_failure.get()?;
        lock(&self.delivered)
            .values()
            .filter(|&&at| at > failed_at)
            .min()
            .map(|at| at.duration_since(failed_at))
    }

    pub fn first_delivery(&self) -> Option<serde_json::Value> {
        lock(&self.first).clone()
    }
}

/// The running endpoints, by tenant id.
#[derive(Default)]
pub struct Endpoints {
    by_tenant: BTreeMap<String, (SocketAddr, Arc<EndpointCounts>)>,
    stop: CancellationToken,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Endpoints {
    /// Starts `tenant`'s endpoint. `failures` requests are answered with
    /// 503 before the endpoint starts accepting deliveries.
    pub async fn start(
        &mut self,
        tenant: &str,
        receiver: Receiver,
        failures: u32,
    ) -> std::io::Result<SocketAddr> {
        let counts = Arc::new(EndpointCounts::default());
        let output: Output = Arc::new(Mutex::new(Recorder {
            counts: counts.clone(),
            line: Vec::new(),
        }));
        let gate = Arc::new(Gate {
            failures_left: AtomicU32::new(failures),
            counts: counts.clone(),
        });
        let app = server::router(receiver, output).layer(from_fn_with_state(gate, gate_request));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let stop = self.stop.clone();
        self.servers.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }));
        self.by_tenant.insert(tenant.to_string(), (address, counts));
        Ok(address)
    }

    pub fn counts(&self, tenant: &str) -> Option<&EndpointCounts> {
        self.by_tenant.get(tenant).map(|(_, counts)| &**counts)
    }

    /// Stops every endpoint once its requests in flight are answered.
    pub async fn stop(self) {
        self.stop.cancel();
        for server in self.servers {
            if let Ok(Err(e)) = server.await {
                tracing::warn!(error = %e, "a demo receiver failed");
            }
        }
    }
}

/// In front of the receiver: the flaky phase, and the count of failures.
struct Gate {
    failures_left: AtomicU32,
    counts: Arc<EndpointCounts>,
}

async fn gate_request(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let flaky = gate
        .failures_left
        .fetch_update(Relaxed, Relaxed, |left| left.checked_sub(1))
        .is_ok();
    let response = if flaky {
        (StatusCode::SERVICE_UNAVAILABLE, "warming up\n").into_response()
    } else {
        next.run(request).await
    };
    if !response.status().is_success() {
        gate.counts.first_failure.get_or_init(Instant::now);
        gate.counts.failed.fetch_add(1, Relaxed);
    }
    response
}

/// The receiver's output: one JSON line per accepted delivery, recorded
/// instead of printed.
struct Recorder {
    counts: Arc<EndpointCounts>,
    line: Vec<u8>,
}

impl Write for Recorder {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=end).collect();
            let delivery: serde_json::Value = serde_json::from_slice(&line)?;
            if let Some(id) = delivery["webhook_id"].as_str() {
                lock(&self.counts.delivered)
                    .entry(id.to_string())
                    .or_insert_with(Instant::now);
            }
            lock(&self.counts.first).get_or_insert(delivery);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counters stay usable after a panic elsewhere: they are only ever
/// inserted into, so a poisoned lock still holds consistent data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
