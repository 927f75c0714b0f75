//! Connections that fail for a reason a retry cannot fix: the broker refused
//! the SASL credentials, or the TLS handshake failed (a CA that did not sign
//! the broker's certificate, a client certificate the broker refused).
//!
//! librdkafka reports these only as errors on the client (its error
//! callback, or the main queue of a client that serves no callbacks) and
//! keeps reconnecting, so a request waits for its timeout. [`classify`]
//! picks them out of those errors; [`WatchedContext`] records the first one
//! for clients that poll their callbacks, so that a command can stop at once
//! with one line saying which setting to check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::watch;

/// A connection refused for its credentials or its TLS settings. The
/// message names the broker and the properties to check, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionFailure {
    #[error(
        "kafka: SASL authentication failed for user `{user}` at {broker}: {reason} \
         (check sasl.username and sasl.password)"
    )]
    Sasl {
        /// `sasl.username`, or a note that none is set.
        user: String,
        broker: String,
        /// What the broker said, as librdkafka reports it.
        reason: String,
    },
    #[error("kafka: TLS handshake with {broker} failed: {reason} (check {hint})")]
    Tls {
        broker: String,
        /// OpenSSL's reason, e.g. "certificate verify failed".
        reason: String,
        /// Which properties to look at for this reason.
        hint: &'static str,
    },
}

/// How long one metadata request of a client's first contact waits before
/// the client's errors are looked at again: a failure of this kind ends the
/// wait within it, rather than at the request's timeout.
pub(super) const METADATA_SLICE: Duration = Duration::from_millis(500);

/// Whether a metadata request that failed with `code` may still succeed
/// within its timeout: the brokers were not reached yet.
pub(super) fn still_connecting(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
    )
}

/// The connection failure that a client error (`code`, `message` as
/// librdkafka reports them) stands for, if it is one; `user` is the
/// configured `sasl.username`.
pub fn classify(
    code: RDKafkaErrorCode,
    message: &str,
    user: Option<&str>,
) -> Option<ConnectionFailure> {
    let (broker, detail) = split_broker(message);
    if code == RDKafkaErrorCode::SSL || detail.contains("SSL handshake failed") {
        let reason = openssl_reason(detail).unwrap_or("the handshake did not complete");
        return Some(ConnectionFailure::Tls {
            broker,
            reason: reason.to_string(),
            hint: tls_hint(reason),
        });
    }
    // A refusal by the broker after our side of the handshake (TLS 1.3 lets
    // the server refuse the client's certificate only then) shows as an
    // alert on the first read; other TLS errors of a connection come as
    // transport failures with OpenSSL's reason.
    if let Some(reason) = openssl_reason(detail) {
        return Some(ConnectionFailure::Tls {
            broker,
            reason: reason.to_string(),
            hint: tls_hint(reason),
        });
    }
    if matches!(
        code,
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed
    ) || detail.starts_with("SASL authentication error")
    {
        let reason = detail
            .strip_prefix("SASL authentication error: ")
            .unwrap_or(detail);
        // librdkafka appends how long the attempt took and its state.
        let reason = reason.split(" (after ").next().unwrap_or(reason).trim();
        return Some(ConnectionFailure::Sasl {
            user: user.unwrap_or("(sasl.username is not set)").to_string(),
            broker,
            reason: reason.to_string(),
        });
    }
    None
}

/// Splits librdkafka's `sasl_ssl://host:port/bootstrap: detail` into the
/// broker's `host:port` and the detail.
fn split_broker(message: &str) -> (String, &str) {
    let Some((prefix, detail)) = message.split_once(": ") else {
        return ("the broker".to_string(), message);
    };
    let Some((_, address)) = prefix.split_once("://") else {
        return ("the broker".to_string(), message);
    };
    let address = address.split('/').next().unwrap_or(address);
    (address.to_string(), detail)
}

/// OpenSSL's reason in a librdkafka message:
/// `error:0A000086:SSL routines::certificate verify failed: ...` gives
/// `certificate verify failed`.
fn openssl_reason(detail: &str) -> Option<&str> {
    let (_, rest) = detail.split_once("SSL routines:")?;
    let rest = rest.trim_start_matches(':');
    let reason = rest.split(':').next().unwrap_or(rest);
    let reason = reason.split(" (after ").next().unwrap_or(reason).trim();
    (!reason.is_empty()).then_some(reason)
}

fn tls_hint(reason: &str) -> &'static str {
    if reason.contains("certificate verify failed") {
        "ssl.ca.location: the broker's certificate must be signed by that CA \
         and name the host in bootstrap_servers"
    } else if [
        "bad certificate",
        "certificate required",
        "unknown ca",
        "certificate unknown",
        "certificate expired",
        "certificate revoked",
    ]
    .iter()
    .any(|alert| reason.contains(alert))
    {
        "ssl.certificate.location and ssl.key.location: the broker refused the client certificate"
    } else {
        "security.protocol and the ssl.* properties"
    }
}

/// A client context that records the first [`ConnectionFailure`] among the
/// client's errors. Other errors and librdkafka's logs go to the log as
/// rdkafka's own context would send them. While `quiet` (a client whose
/// first contact stops on such a failure, which its caller reports), the
/// failure's own log lines, and everything the client logs after it, go to
/// debug, so that the caller's error is the one line shown; once connected,
/// a refusal is logged like any error.
pub struct WatchedContext {
    user: Option<String>,
    quiet: AtomicBool,
    failure: watch::Sender<Option<Arc<ConnectionFailure>>>,
}

impl WatchedContext {
    pub fn new(user: Option<&str>, quiet: bool) -> Self {
        Self {
            user: user.map(str::to_string),
            quiet: AtomicBool::new(quiet),
            failure: watch::Sender::new(None),
        }
    }

    /// The client got through: from now on a refusal is logged in full.
    pub fn connected(&self) {
        self.quiet.store(false, Ordering::Relaxed);
    }

    fn quiet(&self) -> bool {
        self.quiet.load(Ordering::Relaxed)
    }

    /// Resolves with the first connection failure, once there is one.
    pub fn failures(&self) -> watch::Receiver<Option<Arc<ConnectionFailure>>> {
        self.failure.subscribe()
    }

    fn record(&self, code: RDKafkaErrorCode, message: &str) -> bool {
        let Some(failure) = classify(code, message, self.user.as_deref()) else {
            return false;
        };
        self.failure.send_if_modified(|first| {
            if first.is_some() {
                return false;
            }
            *first = Some(Arc::new(failure));
            true
        });
        true
    }
}

impl ClientContext for WatchedContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // The failure's log line carries the same message as its error,
        // after the thread's name.
        let logged = match message.split_once("]: ") {
            Some((thread, rest)) if thread.starts_with("[thrd:") => rest,
            _ => message,
        };
        // Once the failure is recorded, the client's caller is about to
        // report it and drop the client: what it logs until then is noise.
        let failed = self.failure.borrow().is_some();
        if self.quiet() && (failed || classify(RDKafkaErrorCode::Fail, logged, None).is_some()) {
            tracing::debug!(target: "librdkafka", facility, "{message}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        let failed = self.record(code, reason);
        // Once the failure is recorded, the other errors only repeat it.
        if self.quiet() && (failed || self.failure.borrow().is_some()) {
            tracing::debug!(target: "rdkafka::client", error = %error, "{reason}");
        } else {
            tracing::error!(target: "rdkafka::client", "librdkafka: {error}: {reason}");
        }
    }
}

/// The readers that assign partitions themselves join no group: nothing
/// of a consumer's own context is needed.
impl ConsumerContext for WatchedContext {}

#[cfg(test)]
mod tests {
    use super::*;

    // Messages as librdkafka 2.12 reports them against Kafka 4.4.
    const SASL: &str = "sasl_ssl://127.0.0.1:9794/bootstrap: SASL authentication error: \
        Authentication failed during authentication due to invalid credentials with SASL \
        mechanism SCRAM-SHA-512 (after 327ms in state AUTH_REQ)";
    const UNKNOWN_CA: &str = "sasl_ssl://127.0.0.1:9794/bootstrap: SSL handshake failed: \
        error:0A000086:SSL routines::certificate verify failed: broker certificate could not \
        be verified, verify that ssl.ca.location is correctly configured or root CA \
        certificates are installed (install ca-certificates package) (after 58ms in state \
        SSL_HANDSHAKE)";
    const CLIENT_CERT_REFUSED: &str = "ssl://127.0.0.1:9795/bootstrap: Receive failed: \
        error:0A000412:SSL routines::ssl/tls alert bad certificate: SSL alert number 42 \
        (after 1ms in state APIVERSION_QUERY)";

    #[test]
    fn a_refused_password_names_the_user_and_the_properties() {
        let failure = classify(RDKafkaErrorCode::Authentication, SASL, Some("hookline")).unwrap();
        assert_eq!(
            failure.to_string(),
            "kafka: SASL authentication failed for user `hookline` at 127.0.0.1:9794: \
             Authentication failed during authentication due to invalid credentials with SASL \
             mechanism SCRAM-SHA-512 (check sasl.username and sasl.password)"
        );
    }

    #[test]
    fn an_unknown_ca_points_at_the_ca_location() {
        for code in [
            RDKafkaErrorCode::SSL,
            RDKafkaErrorCode::BrokerTransportFailure,
        ] {
            let failure = classify(code, UNKNOWN_CA, None).unwrap();
            let line = failure.to_string();
            assert!(
                line.starts_with(
                    "kafka: TLS handshake with 127.0.0.1:9794 failed: certificate verify failed \
                     (check ssl.ca.location"
                ),
                "{line}"
            );
        }
    }

    #[test]
    fn a_refused_client_certificate_points_at_the_certificate() {
        let failure = classify(
            RDKafkaErrorCode::BrokerTransportFailure,
            CLIENT_CERT_REFUSED,
            None,
        )
        .unwrap();
        assert_eq!(
            failure.to_string(),
            "kafka: TLS handshake with 127.0.0.1:9795 failed: ssl/tls alert bad certificate \
             (check ssl.certificate.location and ssl.key.location: the broker refused the \
             client certificate)"
        );
    }

    #[test]
    fn a_transport_failure_with_a_tls_reason_is_a_tls_failure() {
        let failure = classify(
            RDKafkaErrorCode::BrokerTransportFailure,
            "sasl_ssl://127.0.0.1:9794/bootstrap: error:0A000086:SSL routines::certificate \
             verify failed (after 5ms in state SSL_HANDSHAKE)",
            None,
        )
        .unwrap();
        assert!(
            failure
                .to_string()
                .starts_with("kafka: TLS handshake with 127.0.0.1:9794 failed: certificate verify failed (check ssl.ca.location"),
            "{failure}"
        );
        // TLS spoken to a listener that does not speak it.
        let failure = classify(
            RDKafkaErrorCode::BrokerTransportFailure,
            "ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: error:0A00010B:SSL \
             routines::wrong version number (after 2ms in state SSL_HANDSHAKE)",
            None,
        )
        .unwrap();
        assert_eq!(
            failure.to_string(),
            "kafka: TLS handshake with 127.0.0.1:9092 failed: wrong version number \
             (check security.protocol and the ssl.* properties)"
        );
    }

    #[test]
    fn other_connection_errors_are_not_failures_of_this_kind() {
        for (code, message) in [
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused",
            ),
            (RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down"),
            (
                RDKafkaErrorCode::Resolve,
                "nope:9092/bootstrap: Failed to resolve 'nope:9092'",
            ),
        ] {
            assert_eq!(classify(code, message, None), None, "{message}");
        }
    }

    #[test]
    fn the_first_failure_is_kept() {
        let context = WatchedContext::new(Some("hookline"), true);
        let failures = context.failures();
        assert!(!context.record(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down"));
        assert!(failures.borrow().is_none());
        assert!(context.record(RDKafkaErrorCode::Authentication, SASL));
        assert!(context.record(RDKafkaErrorCode::SSL, UNKNOWN_CA));
        let first = failures.borrow().clone().unwrap();
        assert!(matches!(*first, ConnectionFailure::Sasl { .. }), "{first}");
    }
}
