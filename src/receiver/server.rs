//! The receiving endpoint over HTTP: POST on any path, verified and
//! decrypted with [`Receiver`], each accepted delivery written as one JSON
//! line to an [`Output`]. `hookline receive` serves it with stdout as the
//! output; the demo embeds the [`router`] behind layers of its own.
//!
//! A 2xx is returned only once the delivery is decrypted and its line is
//! written, so that anything less makes hookline retry.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

use super::{
    Delivery, HEADER_CONTENT_TYPE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Receiver,
    WebhookHeaders,
};

/// The largest request body accepted. hookline caps event values at 1 MiB by
/// default; base64 and the JWE envelope add about a third, so this leaves
/// room for larger configured limits too.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Where accepted deliveries are written, one JSON line each.
pub type Output = Arc<Mutex<dyn Write + Send>>;

/// Serves `receiver` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    receiver: Receiver,
    output: Output,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(receiver, output))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The endpoint as an axum router, for embedding it with layers of one's
/// own (the demo puts a flaky phase in front of one receiver).
pub fn router(receiver: Receiver, output: Output) -> Router {
    let state = Arc::new(AppState { receiver, output });
    Router::new()
        .fallback(handle)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

struct AppState {
    receiver: Receiver,
    output: Output,
}

async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "only POST is accepted\n",
        )
            .into_response();
    }
    // A header that is not visible ASCII is treated as absent: it cannot be
    // a valid id, timestamp, signature or media type.
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let id = text(HEADER_ID);
    let timestamp = text(HEADER_TIMESTAMP);
    let signature = text(HEADER_SIGNATURE);
    let content_type = text(HEADER_CONTENT_TYPE);

    // RSA decryption takes milliseconds of CPU; it runs off the async
    // workers so that other connections keep being served.
    let outcome = tokio::task::spawn_blocking(move || {
        let headers = WebhookHeaders {
            id: id.as_deref(),
            timestamp: timestamp.as_deref(),
            signature: signature.as_deref(),
            content_type: content_type.as_deref(),
        };
        let result = state
            .receiver
            .receive(&headers, &body, SystemTime::now());
        match result {
            Ok(delivery) => match print_delivery(&state.output, &delivery) {
                Ok(()) => {
                    tracing::info!(webhook_id = %delivery.webhook_id, kid = %delivery.kid, "delivery accepted");
                    (StatusCode::OK, String::from("ok\n"))
                }
                Err(e) => {
                    // Not recorded means not accepted: the sender retries.
                    tracing::error!(error = %e, "cannot write the delivery to stdout");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        String::from("cannot record the delivery\n"),
                    )
                }
            },
            Err(rejection) => {
                let reason = rejection.reason();
                tracing::warn!(
                    status = rejection.status(),
                    webhook_id = id.as_deref().unwrap_or("-"),
                    %reason,
                    "delivery rejected"
                );
                let status = StatusCode::from_u16(rejection.status())
                    .unwrap_or(StatusCode::BAD_REQUEST);
                (status, format!("{reason}\n"))
            }
        }
    })
    .await;
    match outcome {
        Ok(response) => response.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the receiving task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Writes one delivery as a JSON line and flushes it, so that a consumer of
/// stdout sees each delivery as soon as it is acknowledged.
fn print_delivery(output: &Output, delivery: &Delivery) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(delivery)?;
    line.push(b'\n');
    // A panic while holding the lock cannot leave a half-written line that
    // matters more than refusing all later deliveries, so a poisoned lock is
    // used as is.
    let mut output = output
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    output.write_all(&line)?;
    output.flush()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;
    use crate::crypto::signature::unix_seconds;
    use crate::crypto::{KeyRing, PrivateKey, SigningSecret, jwe, test_keys};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// A `Write` whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }
    }

    struct Server {
        address: SocketAddr,
        captured: Captured,
        key: PrivateKey,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start() -> Server {
        let key = PrivateKey::parse(test_keys::RSA2048_PRIVATE).unwrap();
        let keys: KeyRing = [key.clone()].into_iter().collect();
        let receiver = Receiver::new(keys, Some(SigningSecret::parse(SECRET).unwrap()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let captured = Captured::default();
        let output: Output = Arc::new(Mutex::new(captured.clone()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve(listener, receiver, output, async {
            let _ = stopped.await;
        }));
        Server {
            address,
            captured,
            key,
            stop,
            task,
        }
    }

    /// A minimal HTTP/1.1 exchange, to test the server as any client sees it.
    async fn request(
        address: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (u16, String) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8(response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn signed(
        key: &PrivateKey,
        id: &str,
        content_type: &str,
    ) -> (Vec<(&'static str, String)>, Vec<u8>) {
        let plaintext = serde_json::json!({
            "id": id,
            "type": "invoice.paid",
            "timestamp": "2026-11-28T10:00:00Z",
            "tenant": "acme",
            "data": {"invoice": 7},
        });
        let body = jwe::encrypt(
            &key.public_key(),
            &key.thumbprint(),
            &serde_json::to_vec(&plaintext).unwrap(),
        )
        .unwrap();
        let timestamp = unix_seconds(SystemTime::now());
        let signature = SigningSecret::parse(SECRET)
            .unwrap()
            .sign(id, timestamp, &body);
        let headers = vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
            ("content-type", content_type.to_owned()),
        ];
        (headers, body)
    }

    #[tokio::test]
    async fn prints_one_line_per_accepted_delivery_and_refuses_the_rest() {
        let server = start().await;
        let (headers, body) = signed(&server.key, "evt_1", jwe::CONTENT_TYPE);

        let (status, _) = request(server.address, "POST", "/any/path", &headers, &body).await;
        assert_eq!(status, 200);
        let lines = server.captured.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0],
            serde_json::json!({
                "webhook_id": "evt_1",
                "type": "invoice.paid",
                "tenant": "acme",
                "timestamp": "2026-11-28T10:00:00Z",
                "data": {"invoice": 7},
                "kid": server.key.thumbprint(),
            })
        );

        // A tampered body: 401 with a short reason, nothing printed.
        let mut tampered = body.clone();
        let middle = tampered.len() / 2;
        tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
        let (status, reason) = request(server.address, "POST", "/", &headers, &tampered).await;
        assert_eq!(status, 401);
        assert!(reason.contains("signature"), "{reason}");

        // Signed, but announced as plain JSON: 400.
        let (headers, body) = signed(&server.key, "evt_2", "application/json");
        let (status, _) = request(server.address, "POST", "/", &headers, &body).await;
        assert_eq!(status, 400);

        let (status, _) = request(server.address, "GET", "/", &[], b"").await;
        assert_eq!(status, 405);

        assert_eq!(server.captured.lines().len(), 1);

        server.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server.task)
            .await
            .expect("the server stops when asked")
            .unwrap()
            .unwrap();
    }
}
