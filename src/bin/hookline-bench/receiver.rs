//! The bench's receiver: an axum server on 127.0.0.1 that answers 204 (or
//! 503 for the one failing tenant of the isolation and head-of-line runs,
//! or 410 to everyone in the dead-letter runs) without decrypting, and counts what arrived. Verifying and decrypting
//! would charge the receiver's work to the machine the replica shares.
//!
//! It can answer slowly, like a real endpoint: every request then waits
//! its delay asynchronously, so that hundreds are answered concurrently
//! (hyper serves each HTTP/1.1 connection as a task of its own; the
//! replica opens one connection per attempt in flight). It counts the
//! requests it holds at once, to show that the concurrency was there.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use crate::stats::event_id_parts;

/// One delivery of a latency or head-of-line run.
#[derive(Debug, Clone, Copy)]
pub struct LatencySample {
    /// When the event was produced (from its id).
    pub produced_unix_ns: u128,
    /// The event's sequence number (from its id).
    pub seq: u64,
    pub tenant: usize,
    /// Produced → received.
    pub latency_us: u64,
}

/// What the receiver has seen since the last reset.
pub struct Counts {
    /// 2xx answers per tenant index.
    pub per_tenant: Vec<AtomicU64>,
    pub delivered: AtomicU64,
    pub refused: AtomicU64,
    /// When the first and the latest delivery arrived.
    pub first: Mutex<Option<Instant>>,
    pub last: Mutex<Option<Instant>>,
    /// End-to-end latencies, collected when enabled.
    pub latencies: Mutex<Vec<LatencySample>>,
    pub record_latency: AtomicBool,
    /// The tenant index answered with 503, `usize::MAX` for none.
    pub failing: AtomicUsize,
    /// Every request is answered 410 (dead-lettered at once).
    pub gone: AtomicBool,
    /// How long every request waits before it is answered, in microseconds.
    delay_us: AtomicU64,
    /// Requests being answered now, and the most at once since the reset.
    in_flight: AtomicU64,
    pub peak_in_flight: AtomicU64,
}

/// How the receiver answers during a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// The tenant answered with 503.
    pub failing: Option<usize>,
    /// Every request waits this long before its answer.
    pub delay: Duration,
    /// Whether end-to-end latencies are collected.
    pub record_latency: bool,
    /// Every tenant's endpoint answers 410, which dead-letters at once.
    pub gone: bool,
}

impl Counts {
    fn new(tenants: usize) -> Self {
        Self {
            per_tenant: (0..tenants).map(|_| AtomicU64::new(0)).collect(),
            delivered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            first: Mutex::new(None),
            last: Mutex::new(None),
            latencies: Mutex::new(Vec::new()),
            record_latency: AtomicBool::new(false),
            failing: AtomicUsize::new(usize::MAX),
            gone: AtomicBool::new(false),
            delay_us: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
        }
    }

    /// Clears every count before a run and sets how to answer.
    pub fn reset(&self, behaviour: Behaviour) {
        for count in &self.per_tenant {
            count.store(0, Relaxed);
        }
        self.delivered.store(0, Relaxed);
        self.refused.store(0, Relaxed);
        *lock(&self.first) = None;
        *lock(&self.last) = None;
        lock(&self.latencies).clear();
        self.record_latency.store(behaviour.record_latency, Relaxed);
        self.failing
            .store(behaviour.failing.unwrap_or(usize::MAX), Relaxed);
        self.gone.store(behaviour.gone, Relaxed);
        self.delay_us.store(
            u64::try_from(behaviour.delay.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
        self.peak_in_flight
            .store(self.in_flight.load(Relaxed), Relaxed);
    }

    /// Deliveries to the tenants for which `select` is true.
    pub fn delivered_to(&self, select: impl Fn(usize) -> bool) -> u64 {
        self.per_tenant
            .iter()
            .enumerate()
            .filter(|(i, _)| select(*i))
            .map(|(_, c)| c.load(Relaxed))
            .sum()
    }
}

/// A poisoned lock only means a handler panicked mid-update of a counter;
/// the figures are still usable.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
}

impl Receiver {
    pub async fn start(tenants: usize) -> std::io::Result<Self> {
        let counts = Arc::new(Counts::new(tenants));
        let app = axum::Router::new()
            .route("/{tenant}", post(receive))
            .with_state(counts.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("receiver stopped: {e}");
            }
        });
        Ok(Self { addr, counts })
    }

    pub fn url(&self, tenant: usize) -> String {
        format!("http://{}/{tenant}", self.addr)
    }
}

async fn receive(
    State(counts): State<Arc<Counts>>,
    Path(tenant): Path<usize>,
    headers: HeaderMap,
    _body: axum::body::Bytes,
) -> StatusCode {
    let _held = Holding::new(&counts);
    let delay = counts.delay_us.load(Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_micros(delay)).await;
    }
    answer(&counts, tenant, &headers)
}

/// One request being answered; counted out when dropped, also when the
/// client goes away during the delay (hyper then drops the handler).
struct Holding<'a>(&'a Counts);

impl<'a> Holding<'a> {
    fn new(counts: &'a Counts) -> Self {
        let holding = counts.in_flight.fetch_add(1, Relaxed) + 1;
        counts.peak_in_flight.fetch_max(holding, Relaxed);
        Self(counts)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Counts a request once its delay is over, and chooses the answer.
fn answer(counts: &Counts, tenant: usize, headers: &HeaderMap) -> StatusCode {
    if counts.failing.load(Relaxed) == tenant {
        counts.refused.fetch_add(1, Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if counts.gone.load(Relaxed) {
        counts.refused.fetch_add(1, Relaxed);
        return StatusCode::GONE;
    }
    let now = Instant::now();
    if counts.record_latency.load(Relaxed)
        && let Some(sent) = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .and_then(event_id_parts)
    {
        let (sent, seq) = sent;
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        lock(&counts.latencies).push(LatencySample {
            produced_unix_ns: sent,
            seq,
            tenant,
            latency_us: u64::try_from(now_ns.saturating_sub(sent) / 1000).unwrap_or(u64::MAX),
        });
    }
    if let Some(count) = counts.per_tenant.get(tenant) {
        count.fetch_add(1, Relaxed);
    }
    counts.delivered.fetch_add(1, Relaxed);
    lock(&counts.first).get_or_insert(now);
    *lock(&counts.last) = Some(now);
    StatusCode::NO_CONTENT
}
