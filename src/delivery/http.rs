//! The webhook HTTP client: one keep-alive pool shared by every partition,
//! bounded per host and across hosts (`super::pool`), no redirects, bounded
//! responses, and the destination guard.
//!
//! The guard lives in the resolver: reqwest connects only to the addresses
//! the resolver returns, so the address that was checked is the address
//! that is connected to, and a DNS answer that changes between check and
//! connect (rebinding) cannot slip through. URLs whose host is an IP literal
//! never reach a resolver and are checked before the request is sent.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use url::Url;

use super::destination::{BlockedRange, Destination, classify, host_ip};
use super::pool::{Admitted, ConnectionPool, KeptHosts};
use super::retry::{AttemptOutcome, parse_retry_after};
use crate::error::error_chain;

/// The most of a response body that is read (and then discarded): enough
/// for keep-alive to work with small bodies, bounded against endpoints that
/// stream forever.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

// The request's header names and fixed value, built once rather than
// parsed (and, for names that are not standard, allocated) per attempt.
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const JOSE_JSON: HeaderValue = HeaderValue::from_static("application/jose+json");

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

#[derive(Debug, thiserror::Error)]
#[error("destination {address} is blocked: {range}")]
struct BlockedAddress {
    address: IpAddr,
    range: BlockedRange,
}

#[derive(Clone)]
pub struct WebhookClient {
    client: Clients,
    allow_private: bool,
    timeout: Duration,
}

impl WebhookClient {
    /// `timeout` bounds a whole attempt; `allow_private` lifts the
    /// destination guard (development only). Keep-alive as shipped
    /// ([`ConnectionPool::default`]).
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, reqwest::Error> {
        Self::with_pool(timeout, allow_private, ConnectionPool::default())
    }

    /// [`WebhookClient::new`] with the keep-alive bounds of `pool`.
    pub fn with_pool(
        timeout: Duration,
        allow_private: bool,
        pool: ConnectionPool,
    ) -> Result<Self, reqwest::Error> {
        let kept = client_builder(timeout, allow_private)
            .pool_idle_timeout(pool.idle_timeout)
            .pool_max_idle_per_host(pool.max_idle_per_host)
            .build()?;
        // No pool: the connection of each attempt is closed after its
        // response, and the endpoint is told so.
        let fresh = client_builder(timeout, allow_private)
            .pool_max_idle_per_host(0)
            .default_headers(reqwest::header::HeaderMap::from_iter([(
                reqwest::header::CONNECTION,
                HeaderValue::from_static("close"),
            )]))
            .build()?;
        Ok(Self {
            client: Clients {
                kept,
                fresh,
                hosts: Arc::new(Mutex::new(pool.places(timeout))),
            },
            allow_private,
            timeout,
        })
    }

    /// Makes one attempt and classifies its outcome. Never fails: every
    /// problem is an outcome for the retry policy to decide on.
    pub async fn post(&self, request: WebhookRequest<'_>) -> AttemptOutcome {
        if !self.allow_private
            && let Some(ip) = host_ip(request.url)
            && let Destination::Blocked(range) = classify(ip)
        {
            return AttemptOutcome::BlockedDestination { address: ip, range };
        }
        // The place is given back when the attempt is over, its answer read
        // or dropped (on every return below).
        let (builder, _place) = self.client.post(request.url.clone());
        let mut builder = builder
            .header(CONTENT_TYPE, JOSE_JSON)
            .header(WEBHOOK_ID, request.webhook_id)
            .header(WEBHOOK_TIMESTAMP, request.timestamp);
        if let Some(signature) = request.signature {
            builder = builder.header(WEBHOOK_SIGNATURE, signature);
        }
        if let Some(traceparent) = request.traceparent {
            builder = builder.header(TRACEPARENT, traceparent.clone());
        }
        if let Some(tracestate) = request.tracestate {
            builder = builder.header(TRACESTATE, tracestate.clone());
        }
        let response = match builder.body(request.body).send().await {
            Ok(response) => response,
            Err(e) => return classify_error(&e, self.timeout),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        drain_bounded(response).await;
        AttemptOutcome::from_response(status, retry_after)
    }
}

/// Reads and drops at most `MAX_RESPONSE_BYTES` of the body, so that the
/// connection can be reused when the body is small.
async fn drain_bounded(mut response: reqwest::Response) {
    let mut read = 0;
    while read < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
}

fn classify_error(error: &reqwest::Error, timeout: Duration) -> AttemptOutcome {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(blocked) = e.downcast_ref::<BlockedAddress>() {
            return AttemptOutcome::BlockedDestination {
                address: blocked.address,
                range: blocked.range,
            };
        }
        source = e.source();
    }
    if error.is_timeout() {
        AttemptOutcome::Timeout { after: timeout }
    } else if error.is_connect() {
        AttemptOutcome::Connect {
            error: error_chain(error),
        }
    } else {
        AttemptOutcome::Transport {
            error: error_chain(error),
        }
    }
}

/// What both clients share: no redirects, no proxy, no retries of their
/// own, the attempt's timeouts, and the guarded resolver.
fn client_builder(timeout: Duration, allow_private: bool) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("hookline/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .no_proxy()
        // Retrying is the retry policy's job, attempt by attempt; the
        // client's own replays (of refused HTTP/2 streams) would also
        // clone every request in case it needs one.
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
}

/// The keep-alive client, for the hosts [`KeptHosts`] admits, and a client
/// without a pool for the others; see [`super::pool`] for why.
#[derive(Clone)]
struct Clients {
    kept: reqwest::Client,
    fresh: reqwest::Client,
    hosts: Arc<Mutex<KeptHosts>>,
}

impl Clients {
    /// A POST to `url` through the client its host may use now, and the
    /// place its connection takes in the keep-alive pool, if any.
    fn post(&self, url: Url) -> (reqwest::RequestBuilder, Place<'_>) {
        // The pool's own key: scheme and authority.
        let host = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        );
        let attempt = lock(&self.hosts).admit(host, Instant::now());
        let builder = if attempt.is_some() {
            self.kept.post(url)
        } else {
            self.fresh.post(url)
        };
        let place = Place {
            hosts: &self.hosts,
            attempt,
        };
        (builder, place)
    }
}

/// An attempt's place in the keep-alive pool, given back when dropped.
struct Place<'a> {
    hosts: &'a Mutex<KeptHosts>,
    attempt: Option<Admitted>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(attempt) = self.attempt.take() {
            lock(self.hosts).finish(attempt);
        }
    }
}

fn lock(hosts: &Mutex<KeptHosts>) -> std::sync::MutexGuard<'_, KeptHosts> {
    hosts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Resolves with the system resolver and keeps only addresses the guard
/// allows; when none is left, resolution fails with `BlockedAddress`.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut blocked = None;
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| match classify(a.ip()) {
                    Destination::Blocked(range) if !allow_private => {
                        blocked.get_or_insert(BlockedAddress {
                            address: a.ip(),
                            range,
                        });
                        false
                    }
                    _ => true,
                })
                .collect();
            match (allowed.is_empty(), blocked) {
                (true, Some(blocked)) => {
                    Err(Box::new(blocked) as Box<dyn std::error::Error + Send + Sync>)
                }
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
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
        let url = Url::parse(url).unwrap();
        client
            .post(WebhookRequest {
                url: &url,
                webhook_id: "msg_1",
                timestamp: 0,
                signature: None,
                traceparent: None,
                tracestate: None,
                body: b"{}".to_vec(),
            })
            .await
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
