//! A local HTTP endpoint on 127.0.0.1, port 0, that records every request
//! and answers as the test tells it to.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    /// The Standard Webhooks headers, as a tenant's receiver reads them.
    pub fn webhook_headers(&self) -> hookline::receiver::WebhookHeaders<'_> {
        hookline::receiver::WebhookHeaders {
            id: self.header("webhook-id"),
            timestamp: self.header("webhook-timestamp"),
            signature: self.header("webhook-signature"),
            content_type: self.header("content-type"),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the receiver answers: given the number of requests received before
/// this one and the request, the status to return.
pub type Behaviour = Arc<dyn Fn(usize, &Received) -> StatusCode + Send + Sync>;

/// Like [`Behaviour`], for answers that need more than a status (headers
/// such as `Retry-After`).
pub type Responder = Arc<dyn Fn(usize, &Received) -> Response + Send + Sync>;

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    responder: Responder,
    /// How long each answer takes, like a real endpoint's.
    delay: Duration,
    concurrency: Arc<Concurrency>,
}

/// Requests being answered now, and the most seen at once.
#[derive(Default)]
struct Concurrency {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    concurrency: Arc<Concurrency>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver that answers 200 to everything.
    pub async fn ok() -> Self {
        Self::start(Arc::new(|_, _| StatusCode::OK)).await
    }

    pub async fn start(behaviour: Behaviour) -> Self {
        Self::slow(Duration::ZERO, behaviour).await
    }

    /// A receiver that takes `delay` to answer each request, as real
    /// endpoints do (tens to hundreds of milliseconds).
    pub async fn slow(delay: Duration, behaviour: Behaviour) -> Self {
        Self::responding(delay, status_only(behaviour)).await
    }

    /// A receiver whose answers are whole responses, headers included,
    /// each taking `delay`.
    pub async fn responding(delay: Duration, responder: Responder) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        Self::serve(listener, responder, delay)
    }

    /// A receiver that answers 200, on another loopback address (any of
    /// 127.0.0.0/8, or `[::1]`), port 0. `None` when the address cannot be
    /// bound (a machine without IPv6 loopback).
    pub async fn ok_on(ip: std::net::IpAddr) -> Option<Self> {
        assert!(ip.is_loopback(), "test receivers listen on loopback only");
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.ok()?;
        Some(Self::serve(
            listener,
            status_only(Arc::new(|_, _| StatusCode::OK)),
            Duration::ZERO,
        ))
    }

    fn serve(listener: tokio::net::TcpListener, responder: Responder, delay: Duration) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Default::default();
        let concurrency: Arc<Concurrency> = Default::default();
        let shared = Shared {
            received: received.clone(),
            responder,
            delay,
            concurrency: concurrency.clone(),
        };
        // Bodies of 1 MiB events exceed axum's 2 MB default once encrypted
        // and base64url-encoded, with larger configured limits.
        let app = axum::Router::new()
            .fallback(record)
            .with_state(shared)
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024));
        let addr = listener.local_addr().expect("receiver address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver server");
        });
        Self {
            addr,
            received,
            concurrency,
            server,
        }
    }

    /// The most requests this receiver was answering at one time.
    pub fn most_concurrent(&self) -> usize {
        self.concurrency
            .most
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The `webhook-id`s of the requests on `path`, in arrival order.
    pub fn webhook_ids(&self, path: &str) -> Vec<String> {
        self.received()
            .iter()
            .filter(|r| r.path == path)
            .filter_map(|r| r.header("webhook-id").map(str::to_string))
            .collect()
    }

    /// Waits until `path` received at least `count` requests or `timeout`
    /// passed; returns their `webhook-id`s so far, in arrival order.
    pub async fn wait_webhook_ids(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let ids = self.webhook_ids(path);
            if ids.len() >= count || Instant::now() >= deadline {
                return ids;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until at least `count` requests arrived or `timeout` passed;
    /// returns everything received so far.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= count || Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The requests that `ok` accepts, by tenant (the path of its URL): ids in
/// arrival order, each once.
pub fn delivered_by_tenant(
    received: &[Received],
    ok: impl Fn(&Received) -> bool,
) -> std::collections::HashMap<String, Vec<String>> {
    let mut by_tenant: std::collections::HashMap<String, Vec<String>> = Default::default();
    for request in received.iter().filter(|r| ok(r)) {
        let id = request.header("webhook-id").unwrap().to_string();
        let ids = by_tenant.entry(request.path.clone()).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    by_tenant
}

fn status_only(behaviour: Behaviour) -> Responder {
    Arc::new(move |count, request| behaviour(count, request).into_response())
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Received {
        method,
        path: uri.path().to_string(),
        headers,
        body,
        at: Instant::now(),
    };
    use std::sync::atomic::Ordering::SeqCst;
    let now = shared.concurrency.now.fetch_add(1, SeqCst) + 1;
    shared.concurrency.most.fetch_max(now, SeqCst);
    let response = {
        let mut received = shared.received.lock().unwrap();
        let response = (shared.responder)(received.len(), &request);
        received.push(request);
        response
    };
    if !shared.delay.is_zero() {
        tokio::time::sleep(shared.delay).await;
    }
    shared.concurrency.now.fetch_sub(1, SeqCst);
    response
}
