//! The receiving side of a hookline webhook, as a customer would embed it:
//! verify the Standard Webhooks signature and timestamp, and only then
//! decrypt the JWE body and check the payload against the headers.
//!
//! [`Receiver::receive`] is a pure function of the request and the clock;
//! [`server`] wraps it in an HTTP endpoint, which `hookline receive` serves
//! and the demo embeds.
//!
//! ```no_run
//! use std::time::SystemTime;
//! use hookline::crypto::{KeyRing, PrivateKey, SigningSecret};
//! use hookline::receiver::{Receiver, WebhookHeaders};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = PrivateKey::parse(&std::fs::read_to_string("private.pem")?)?;
//! let keys: KeyRing = [key].into_iter().collect();
//! let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let receiver = Receiver::new(keys, Some(secret));
//! # let (id, timestamp, signature, body) = ("", "", "", b"");
//! let headers = WebhookHeaders {
//!     id: Some(id),
//!     timestamp: Some(timestamp),
//!     signature: Some(signature),
//!     content_type: Some("application/jose+json"),
//! };
//! match receiver.receive(&headers, body, SystemTime::now()) {
//!     Ok(delivery) => println!("{} {}", delivery.event_type, delivery.data),
//!     Err(rejection) => eprintln!("{}: {}", rejection.status(), rejection.reason()),
//! }
//! # Ok(())
//! # }
//! ```

pub mod server;

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::crypto::jwe::{self, JweError};
use crate::crypto::signature::DEFAULT_TOLERANCE;
use crate::crypto::{KeyRing, SigningSecret, VerifyError, verify_any};
use crate::error::error_chain;

/// The header carrying the stable message id.
pub const HEADER_ID: &str = "webhook-id";
/// The header carrying the attempt's Unix timestamp in seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying the `v1,<base64>` signature(s).
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// The content-type header.
pub const HEADER_CONTENT_TYPE: &str = "content-type";

/// What a receiver needs to open hookline deliveries.
#[derive(Clone, Debug)]
pub struct Receiver {
    /// The private keys by `kid`; several during a key rotation.
    pub keys: KeyRing,
    /// The tenant's signing secrets: a request is accepted when any of its
    /// `v1` signatures matches any of them (several while the tenant
    /// rotates its secret). None at all skips signature and timestamp
    /// verification entirely: use that for local testing only, since anyone
    /// who knows the public key can then forge deliveries.
    pub secrets: Vec<SigningSecret>,
    /// How far `webhook-timestamp` may be from the receiver's clock, in either
    /// direction (default 5 minutes, as the specification recommends).
    pub tolerance: Duration,
}

/// The headers of a request, as received (absent headers are `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct WebhookHeaders<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
    /// `content-type`.
    pub content_type: Option<&'a str>,
}

/// An authenticated, decrypted delivery.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    /// The stable message id (`webhook-id`, equal to the payload's `id`);
    /// the same across redeliveries, so it is the de-duplication key.
    pub webhook_id: String,
    /// The event type, e.g. `order.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The tenant the event belongs to.
    pub tenant: String,
    /// The event's timestamp (RFC 3339).
    pub timestamp: String,
    /// The event data.
    pub data: serde_json::Value,
    /// The `kid` of the private key that decrypted the body.
    pub kid: String,
}

/// The plaintext of a delivery. Unknown members are ignored so that new
/// fields do not break existing receivers.
#[derive(Deserialize)]
struct Payload {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    timestamp: String,
    tenant: String,
    data: serde_json::Value,
}

/// Why a request was refused; [`Rejection::status`] gives the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// A header needed for authentication is missing (401).
    #[error("missing `{0}` header")]
    MissingAuthentication(&'static str),

    /// The signature or the timestamp did not verify (401).
    #[error("signature verification failed")]
    Signature(#[from] VerifyError),

    /// A header needed to interpret the request is missing (400).
    #[error("missing `{0}` header")]
    MissingHeader(&'static str),

    /// The body is not announced as a JWE in JSON serialization (400).
    #[error("content-type must be `{expected}`, found {found:?}", expected = jwe::CONTENT_TYPE)]
    ContentType {
        /// The content-type received.
        found: String,
    },

    /// The body could not be decrypted (400).
    #[error("cannot decrypt the body")]
    Decryption(#[from] JweError),

    /// The plaintext is not the payload object of the contract (400).
    #[error("the decrypted payload is not a valid event object")]
    Payload(#[source] serde_json::Error),

    /// The payload's `id` differs from `webhook-id` (400).
    #[error("payload id {payload:?} does not match `webhook-id` {header:?}")]
    IdMismatch {
        /// `webhook-id`.
        header: String,
        /// The payload's `id`.
        payload: String,
    },
}

impl Rejection {
    /// The HTTP status to answer with: 401 when the request is not
    /// authenticated, 400 when it is malformed or cannot be decrypted.
    pub fn status(&self) -> u16 {
        if self.is_unauthenticated() { 401 } else { 400 }
    }

    /// Whether the request failed authentication (signature or timestamp).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            Rejection::MissingAuthentication(_) | Rejection::Signature(_)
        )
    }

    /// The error and its causes on one line, as a short response body.
    pub fn reason(&self) -> String {
        error_chain(self)
    }
}

impl Receiver {
    /// A receiver with one signing secret (or none) and the default
    /// 5-minute tolerance.
    pub fn new(keys: KeyRing, secret: Option<SigningSecret>) -> Receiver {
        Receiver::with_secrets(keys, secret.into_iter().collect())
    }

    /// A receiver that accepts a signature made with any of `secrets` (the
    /// old and the new one while they are rotated), with the default
    /// 5-minute tolerance.
    pub fn with_secrets(keys: KeyRing, secrets: Vec<SigningSecret>) -> Receiver {
        Receiver {
            keys,
            secrets,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Authenticates, then decrypts one request. Nothing of the body is
    /// parsed or decrypted before the signature has verified, so forged
    /// requests cost one HMAC and cannot probe the decryption.
    pub fn receive(
        &self,
        headers: &WebhookHeaders<'_>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Delivery, Rejection> {
        let id = match (self.secrets.is_empty(), headers.id) {
            (false, id) => {
                let id = id.ok_or(Rejection::MissingAuthentication(HEADER_ID))?;
                let timestamp = headers
                    .timestamp
                    .ok_or(Rejection::MissingAuthentication(HEADER_TIMESTAMP))?;
                let signature = headers
                    .signature
                    .ok_or(Rejection::MissingAuthentication(HEADER_SIGNATURE))?;
                verify_any(
                    &self.secrets,
                    id,
                    timestamp,
                    signature,
                    body,
                    now,
                    self.tolerance,
                )?;
                id
            }
            (true, id) => id.ok_or(Rejection::MissingHeader(HEADER_ID))?,
        };

        check_content_type(headers.content_type)?;
        let decrypted = jwe::decrypt(&self.keys, body)?;
        let payload: Payload =
            serde_json::from_slice(&decrypted.plaintext).map_err(Rejection::Payload)?;
        // The id is signed in the header and encrypted in the payload; a
        // mismatch means a payload replayed under another id.
        if payload.id != id {
            return Err(Rejection::IdMismatch {
                header: id.to_owned(),
                payload: payload.id,
            });
        }
        Ok(Delivery {
            webhook_id: payload.id,
            event_type: payload.event_type,
            tenant: payload.tenant,
            timestamp: payload.timestamp,
            data: payload.data,
            kid: decrypted.kid,
        })
    }
}

/// Accepts `application/jose+json`, in any case, with or without parameters.
fn check_content_type(content_type: Option<&str>) -> Result<(), Rejection> {
    let found = content_type.ok_or(Rejection::MissingHeader(HEADER_CONTENT_TYPE))?;
    let essence = found.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case(jwe::CONTENT_TYPE) {
        Ok(())
    } else {
        Err(Rejection::ContentType {
            found: found.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
