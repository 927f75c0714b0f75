//! The webhook HTTP client: HTTP/1.1 over hyper's connections, one
//! keep-alive pool shared by every partition and bounded per host and
//! across hosts (`super::pool`), no redirects, bounded responses, and the
//! destination guard.
//!
//! An attempt takes the connection to its host that was idle last, or
//! opens one, sends its request and reads the answer; a connection whose
//! answer was read whole goes back to the pool. Each connection is driven
//! by a task of its own for as long as it is open, and closes when the
//! pool or the attempt drops it.
//!
//! The guard lives in the connector: it connects only to the addresses it
//! resolved and checked, so the address that was checked is the address
//! that is connected to, and a DNS answer that changes between check and
//! connect (rebinding) cannot slip through. URLs whose host is an IP literal
//! are checked before anything else.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{
    CONTENT_TYPE, HOST, HeaderName, HeaderValue, InvalidHeaderValue, RETRY_AFTER, USER_AGENT,
};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls_platform_verifier::BuilderVerifierExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::{Host, Position, Url};

use super::destination::{BlockedRange, Destination, classify, host_ip};
use super::pool::{ConnectionPool, IdleConnections};
use super::retry::{AttemptOutcome, parse_retry_after};
use crate::error::error_chain;

/// The most of a response body that is read (and then discarded): enough
/// for keep-alive to work with small bodies, bounded against endpoints that
/// stream forever. A longer body closes its connection.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The longest a connection may take to be established (TCP, TLS), within
/// the attempt's timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

// The request's header names and fixed values, built once rather than
// parsed (and, for names that are not standard, allocated) per attempt.
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const JOSE_JSON: HeaderValue = HeaderValue::from_static("application/jose+json");
const HOOKLINE: HeaderValue =
    HeaderValue::from_static(concat!("hookline/", env!("CARGO_PKG_VERSION")));

/// What is sent for one attempt. The body is the exact bytes that were
/// signed.
pub struct WebhookRequest<'a> {
    pub url: &'a Url,
    pub webhook_id: &'a str,
    pub timestamp: i64,
    pub signature: Option<&'a str>,
    /// The delivery's W3C trace context, built once per delivery.
    pub traceparent: Option<&'a HeaderValue>,
    pub tracestate: Option<&'a HeaderValue>,
    pub body: Vec<u8>,
}

/// The client could not be set up: the system's certificate verifier
/// failed to load.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct ClientError(#[from] rustls::Error);

/// One side of a kept or new connection: requests go in, answers come out.
type Sender = SendRequest<Full<Bytes>>;

#[derive(Clone)]
pub struct WebhookClient {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<IdleConnections<Sender>>,
    connector: Connector,
    allow_private: bool,
    timeout: Duration,
}

impl WebhookClient {
    /// `timeout` bounds a whole attempt; `allow_private` lifts the
    /// destination guard (development only). Keep-alive as shipped
    /// ([`ConnectionPool::default`]).
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, ClientError> {
        Self::with_pool(timeout, allow_private, ConnectionPool::default())
    }

    /// [`WebhookClient::new`] with the keep-alive bounds of `pool`. Starts
    /// the task that closes expired idle connections, so it is called
    /// within a tokio runtime; the task ends with the last clone of the
    /// client.
    pub fn with_pool(
        timeout: Duration,
        allow_private: bool,
        pool: ConnectionPool,
    ) -> Result<Self, ClientError> {
        let inner = Arc::new(Inner {
            idle: Mutex::new(pool.idle()),
            connector: Connector::new(timeout.min(MAX_CONNECT_TIMEOUT), allow_private)?,
            allow_private,
            timeout,
        });
        tokio::spawn(close_expired(Arc::downgrade(&inner), pool.idle_timeout));
        Ok(Self { inner })
    }

    /// Makes one attempt and classifies its outcome. Never fails: every
    /// problem is an outcome for the retry policy to decide on.
    pub async fn post(&self, request: WebhookRequest<'_>) -> AttemptOutcome {
        let url = request.url;
        if !self.inner.allow_private
            && let Some(ip) = host_ip(url)
            && let Destination::Blocked(range) = classify(ip)
        {
            return AttemptOutcome::BlockedDestination { address: ip, range };
        }
        let message = match message(request) {
            Ok(message) => message,
            Err(error) => {
                return AttemptOutcome::Transport {
                    error: format!("invalid request: {error}"),
                };
            }
        };
        let timeout = self.inner.timeout;
        tokio::time::timeout(timeout, self.send(url, message))
            .await
            .unwrap_or(AttemptOutcome::Timeout { after: timeout })
    }

    /// Idle connections kept now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        lock(&self.inner.idle).len()
    }

    async fn send(&self, url: &Url, mut message: Request<Full<Bytes>>) -> AttemptOutcome {
        // The pool's key: scheme, host and port, as the URL spells them.
        let origin = &url[..Position::BeforePath];
        // A kept connection first. One that the server closed meanwhile
        // gives the request back unsent, and the next is tried.
        while let Some(mut sender) = self.kept(origin) {
            match sender.try_send_request(message).await {
                Ok(response) => return self.answered(origin, sender, response).await,
                Err(mut error) => match error.take_message() {
                    Some(unsent) => message = unsent,
                    None => return transport(&error.into_error()),
                },
            }
        }
        // Boxed: opening a connection (resolving, TCP, TLS) takes most of
        // the attempt's future, and every delivery task would carry that
        // space, also while it waits for its turn, for a path most attempts
        // do not take.
        let mut sender = match Box::pin(self.inner.connector.connect(url)).await {
            Ok(sender) => sender,
            Err(outcome) => return outcome,
        };
        match sender.send_request(message).await {
            Ok(response) => self.answered(origin, sender, response).await,
            Err(error) => transport(&error),
        }
    }

    /// The connection to `origin` that was idle last and is still open.
    fn kept(&self, origin: &str) -> Option<Sender> {
        let mut idle = lock(&self.inner.idle);
        let now = Instant::now();
        std::iter::from_fn(|| idle.take(origin, now)).find(Sender::is_ready)
    }

    /// The outcome of `response`, read whole or up to its bound; its
    /// connection goes back to the pool if it can take another request.
    async fn answered(
        &self,
        origin: &str,
        sender: Sender,
        response: Response<Incoming>,
    ) -> AttemptOutcome {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        if drain_bounded(response.into_body()).await {
            self.keep(origin, sender);
        }
        AttemptOutcome::from_response(status, retry_after)
    }

    /// Gives `sender` back to the pool once its connection is ready for
    /// the next request, which it usually is as soon as the answer was
    /// read; a connection the server closes is dropped.
    fn keep(&self, origin: &str, mut sender: Sender) {
        if sender.is_ready() {
            lock(&self.inner.idle).put(origin, sender, Instant::now());
        } else if !sender.is_closed() {
            // Rare: the connection's task has not yet taken in the end of
            // the answer. Waiting here would count against the attempt.
            let origin = origin.to_owned();
            let inner = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                if sender.ready().await.is_ok()
                    && let Some(idle) = inner.upgrade()
                {
                    lock(&idle.idle).put(&origin, sender, Instant::now());
                }
            });
        }
    }
}

/// Reads and drops at most `MAX_RESPONSE_BYTES` of `body`; whether it was
/// read to its end, so that its connection can be reused.
async fn drain_bounded(mut body: Incoming) -> bool {
    let mut read = 0;
    while read <= MAX_RESPONSE_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(_)) => return false,
            None => return true,
        }
    }
    false
}

/// The HTTP message of `request`: origin-form target, `Host`, the webhook
/// headers and the body.
fn message(request: WebhookRequest<'_>) -> Result<Request<Full<Bytes>>, MessageError> {
    let url = request.url;
    let target = Uri::try_from(&url[Position::BeforePath..Position::AfterQuery])?;
    let mut message = Request::new(Full::new(Bytes::from(request.body)));
    *message.method_mut() = Method::POST;
    *message.uri_mut() = target;
    let headers = message.headers_mut();
    headers.insert(
        HOST,
        HeaderValue::from_str(&url[Position::BeforeHost..Position::AfterPort])?,
    );
    headers.insert(USER_AGENT, HOOKLINE);
    headers.insert(CONTENT_TYPE, JOSE_JSON);
    headers.insert(WEBHOOK_ID, HeaderValue::from_str(request.webhook_id)?);
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(request.timestamp));
    if let Some(signature) = request.signature {
        headers.insert(WEBHOOK_SIGNATURE, HeaderValue::from_str(signature)?);
    }
    if let Some(traceparent) = request.traceparent {
        headers.insert(TRACEPARENT, traceparent.clone());
    }
    if let Some(tracestate) = request.tracestate {
        headers.insert(TRACESTATE, tracestate.clone());
    }
    Ok(message)
}

#[derive(Debug, thiserror::Error)]
enum MessageError {
    #[error("URL path: {0}")]
    Target(#[from] hyper::http::uri::InvalidUri),
    #[error("header value: {0}")]
    Header(#[from] InvalidHeaderValue),
}

fn transport(error: &hyper::Error) -> AttemptOutcome {
    AttemptOutcome::Transport {
        error: error_chain(error),
    }
}

/// Closes expired idle connections every `idle_timeout` (at most every
/// second), until the client is gone.
async fn close_expired(inner: std::sync::Weak<Inner>, idle_timeout: Duration) {
    let period = idle_timeout.clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        lock(&inner.idle).expire(Instant::now());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Opens connections: resolves with the system resolver, keeps only the
/// addresses the guard allows, connects to them in turn, adds TLS for
/// `https` (the system's trusted roots, HTTP/1.1 by ALPN) and starts the
/// connection's task.
struct Connector {
    tls: TlsConnector,
    timeout: Duration,
    allow_private: bool,
}

impl Connector {
    fn new(timeout: Duration, allow_private: bool) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_platform_verifier()?
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
            allow_private,
        })
    }

    /// A new connection to `url`'s host, ready for a request; a failure is
    /// the attempt's outcome.
    async fn connect(&self, url: &Url) -> Result<Sender, AttemptOutcome> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        match tokio::time::timeout_at(deadline, self.open(url, deadline)).await {
            Ok(Ok(sender)) => Ok(sender),
            Ok(Err(Failure::Blocked { address, range })) => {
                Err(AttemptOutcome::BlockedDestination { address, range })
            }
            Ok(Err(Failure::Connect(error))) => Err(AttemptOutcome::Connect { error }),
            Err(_) => Err(AttemptOutcome::Connect {
                error: format!(
                    "connecting timed out after {}",
                    humantime::format_duration(self.timeout)
                ),
            }),
        }
    }

    /// Connects to `url`'s host by `deadline`.
    async fn open(&self, url: &Url, deadline: tokio::time::Instant) -> Result<Sender, Failure> {
        let port = url.port_or_known_default().unwrap_or(80);
        let host = url
            .host()
            .ok_or_else(|| Failure::Connect(format!("{url} has no host")))?;
        let addresses = match host {
            Host::Ipv4(ip) => vec![SocketAddr::new(ip.into(), port)],
            Host::Ipv6(ip) => vec![SocketAddr::new(ip.into(), port)],
            Host::Domain(name) => self.resolve(name, port).await?,
        };
        let tcp = connect_any(&addresses, deadline).await?;
        tcp.set_nodelay(true).map_err(Failure::io("TCP_NODELAY"))?;
        if url.scheme() == "https" {
            let name = match host {
                Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(ip).into()),
                Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(ip).into()),
                Host::Domain(name) => ServerName::try_from(name.to_owned())
                    .map_err(|e| Failure::Connect(format!("TLS server name {name}: {e}")))?,
            };
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(Failure::io("TLS handshake"))?;
            handshake(tls).await
        } else {
            handshake(tcp).await
        }
    }

    /// The allowed addresses of `name`; when the guard left none,
    /// [`Failure::Blocked`] with the first it refused.
    async fn resolve(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
        let resolved = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| Failure::Connect(format!("resolving {name}: {e}")))?;
        let mut blocked = None;
        let allowed: Vec<SocketAddr> = resolved
            .filter(|a| match classify(a.ip()) {
                Destination::Blocked(range) if !self.allow_private => {
                    blocked.get_or_insert(Failure::Blocked {
                        address: a.ip(),
                        range,
                    });
                    false
                }
                _ => true,
            })
            .collect();
        match (allowed.is_empty(), blocked) {
            (true, Some(blocked)) => Err(blocked),
            (true, None) => Err(Failure::Connect(format!("{name} resolved to no address"))),
            _ => Ok(allowed),
        }
    }
}

/// Why a connection was not opened.
enum Failure {
    /// Every address of the host is one deliveries may not reach.
    Blocked {
        address: IpAddr,
        range: BlockedRange,
    },
    Connect(String),
}

impl Failure {
    fn io(what: &'static str) -> impl Fn(std::io::Error) -> Failure {
        move |e| Failure::Connect(format!("{what}: {e}"))
    }
}

/// A TCP connection to the first of `addresses` that accepts one by
/// `deadline`. Each address gets an equal share of the time left, so that
/// one that does not answer leaves time for the next.
async fn connect_any(
    addresses: &[SocketAddr],
    deadline: tokio::time::Instant,
) -> Result<TcpStream, Failure> {
    let mut last = None;
    for (tried, address) in addresses.iter().enumerate() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let share = left / u32::try_from(addresses.len() - tried).unwrap_or(u32::MAX);
        match tokio::time::timeout(share, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Some(format!("connecting to {address}: {e}")),
            Err(_) => last = Some(format!("connecting to {address}: timed out")),
        }
    }
    Err(Failure::Connect(
        last.unwrap_or_else(|| "no address".into()),
    ))
}

/// Starts HTTP/1.1 on `io`, its connection driven by a task of its own.
async fn handshake<T>(io: T) -> Result<Sender, Failure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure::Connect(format!("HTTP handshake: {}", error_chain(&e))))?;
    tokio::spawn(async move {
        // Its end (closed by either side, or failed) is the attempt's
        // outcome, or of no interest once the connection is idle.
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// Nothing here may leave the machine even if the guard were broken:
    /// every URL is a loopback form, and the ports are ones nothing listens
    /// on, so a wrongly allowed attempt ends in a connection error.
    async fn attempt(url: &str, allow_private: bool) -> AttemptOutcome {
        let client = WebhookClient::new(Duration::from_secs(5), allow_private).unwrap();
        post(&client, url).await
    }

    fn blocked_loopback(outcome: &AttemptOutcome) -> IpAddr {
        match outcome {
            AttemptOutcome::BlockedDestination {
                address,
                range: BlockedRange::Loopback,
            } => *address,
            other => panic!("expected a blocked loopback destination, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn ip_literals_in_every_spelling_are_refused_before_connecting() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for (url, address) in [
            ("http://127.0.0.1:9/", v4),
            (
                "http://127.1.2.3:9/",
                IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3)),
            ),
            ("http://2130706433:9/", v4),
            ("http://0177.0.0.1:9/", v4),
            ("http://0x7f.1:9/", v4),
            ("http://[::1]:9/", IpAddr::V6(Ipv6Addr::LOCALHOST)),
            (
                "http://[::ffff:127.0.0.1]:9/",
                "::ffff:127.0.0.1".parse().unwrap(),
            ),
            (
                "http://[64:ff9b::7f00:1]:9/",
                "64:ff9b::7f00:1".parse().unwrap(),
            ),
        ] {
            assert_eq!(
                blocked_loopback(&attempt(url, false).await),
                address,
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_by_the_resolver() {
        // `localhost` is not an IP literal: only the resolver sees what it
        // stands for, and the refusal must survive reqwest's error wrapping
        // to become a blocked destination rather than a retried connect error.
        let address = blocked_loopback(&attempt("http://localhost:9/", false).await);
        assert!(address.is_loopback(), "{address}");
    }

    #[tokio::test]
    async fn allowing_private_destinations_lets_loopback_through() {
        // Port 9 (discard) is closed here: the attempt gets as far as a
        // refused connection, which proves it was not blocked.
        for url in ["http://127.0.0.1:9/", "http://localhost:9/"] {
            let outcome = attempt(url, true).await;
            assert!(
                matches!(outcome, AttemptOutcome::Connect { .. }),
                "{url}: {outcome:?}"
            );
        }
    }

    /// A loopback server that answers every request `200` with an empty
    /// body and counts the connections it accepted; with `close_after`,
    /// it closes each connection after its first answer, saying nothing.
    async fn server(close_after: bool) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/in", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    loop {
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let lower = line.to_ascii_lowercase();
                            if let Some(value) = lower.strip_prefix("content-length:") {
                                length = value.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; length];
                        stream.read_exact(&mut body).await.unwrap();
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        stream.get_mut().write_all(answer).await.unwrap();
                        if close_after {
                            return;
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    fn request(url: &Url) -> WebhookRequest<'_> {
        WebhookRequest {
            url,
            webhook_id: "msg_1",
            timestamp: 0,
            signature: None,
            traceparent: None,
            tracestate: None,
            body: b"{}".to_vec(),
        }
    }

    async fn post(client: &WebhookClient, url: &str) -> AttemptOutcome {
        let url = Url::parse(url).unwrap();
        client.post(request(&url)).await
    }

    async fn delivered(client: &WebhookClient, url: &str) {
        let outcome = post(client, url).await;
        assert!(
            matches!(outcome, AttemptOutcome::Delivered { status: 200 }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn attempts_one_after_another_keep_one_connection() {
        let (url, accepted) = server(false).await;
        let client = WebhookClient::new(Duration::from_secs(5), true).unwrap();
        for _ in 0..3 {
            delivered(&client, &url).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(client.idle(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_used_again() {
        let (url, accepted) = server(true).await;
        let client = WebhookClient::new(Duration::from_secs(5), true).unwrap();
        for _ in 0..3 {
            delivered(&client, &url).await;
            // Time for the connection's task to see the server's close.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn no_keep_alive_closes_each_connection_after_its_answer() {
        let (url, accepted) = server(false).await;
        let pool = ConnectionPool {
            max_idle_per_host: 0,
            ..ConnectionPool::default()
        };
        let client = WebhookClient::with_pool(Duration::from_secs(5), true, pool).unwrap();
        for _ in 0..2 {
            delivered(&client, &url).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(client.idle(), 0);
    }

    #[tokio::test]
    async fn an_https_url_is_sent_over_tls_only() {
        // The server speaks plain HTTP: had the request gone out without
        // TLS it would have been answered 200.
        let (url, _) = server(false).await;
        let outcome = post(
            &WebhookClient::new(Duration::from_secs(5), true).unwrap(),
            &url.replace("http://", "https://"),
        )
        .await;
        match outcome {
            AttemptOutcome::Connect { error } => assert!(error.contains("TLS"), "{error}"),
            other => panic!("expected a failed TLS handshake, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_endpoint_that_never_answers_times_out_the_attempt() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let client = WebhookClient::new(Duration::from_millis(300), true).unwrap();
        let outcome = post(&client, &url).await;
        assert!(
            matches!(outcome, AttemptOutcome::Timeout { .. }),
            "{outcome:?}"
        );
        drop(listener);
    }

    /// A delivery task holds its attempt's future also while it waits for
    /// a place among `max_in_flight`, and thousands may wait: opening a
    /// connection, the largest part and the one most attempts skip, is kept
    /// out of it.
    #[tokio::test]
    async fn an_attempt_does_not_carry_the_space_of_opening_a_connection() {
        let client = WebhookClient::new(Duration::from_secs(5), true).unwrap();
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let attempt = client.post(request(&url));
        let opening = client.inner.connector.connect(&url);
        let (attempt, opening) = (size_of_val(&attempt), size_of_val(&opening));
        assert!(
            attempt < opening,
            "an attempt takes {attempt} bytes, opening a connection {opening}"
        );
    }

    #[tokio::test]
    async fn an_address_that_does_not_answer_leaves_time_for_the_next() {
        // A listener whose backlog is full and that accepts nothing: the
        // kernel drops further handshakes, so a connect to it hangs.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let full = socket.listen(0).unwrap();
        let stuck = full.local_addr().unwrap();
        let mut waiting = Vec::new();
        while let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(stuck)).await
        {
            waiting.push(stream);
        }
        let answering = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = answering.local_addr().unwrap();

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        match connect_any(&[stuck, good], deadline).await {
            Ok(stream) => assert_eq!(stream.peer_addr().unwrap(), good),
            Err(_) => panic!("the answering address was not tried in time"),
        }
        assert!(tokio::time::Instant::now() < deadline);
    }

    #[test]
    fn ipv6_zone_ids_are_not_valid_url_hosts() {
        // A zone id would pick an interface for a link-local address; the URL
        // parser refuses the syntax, so no tenant URL can carry one.
        for url in [
            "http://[fe80::1%25eth0]/",
            "http://[fe80::1%eth0]/",
            "http://[::1%25lo]/",
        ] {
            assert!(Url::parse(url).is_err(), "{url}");
        }
    }
}
