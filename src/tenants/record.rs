//! The tenant record (the value on the `tenants` topic) and its validation
//! into a [`Tenant`] that is ready to use: URL parsed, public key parsed and
//! prepared, patterns compiled, rate limit checked. This happens once per
//! record version, never per delivered event.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use url::Url;

use crate::crypto::jwe::Recipient;
use crate::crypto::{KeyError, PublicKey, SigningSecret};
use crate::tenants::pattern::{Pattern, PatternError};
use crate::tenants::rate_limit::{RateLimit, RateLimitError};

/// Largest tenant record accepted. A real record is a URL, a PEM public key
/// of at most a few kilobytes and a short list of patterns; anything far
/// larger is a mistake or an attack, and is refused before parsing.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Longest tenant id, in bytes. Ids end up in logs, headers and metrics.
pub const MAX_TENANT_ID_BYTES: usize = 255;

/// Longest webhook URL accepted.
const MAX_URL_BYTES: usize = 2048;

/// The record as stored on the `tenants` topic (JSON). Unknown fields are
/// ignored so that newer writers do not break older readers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantRecord {
    pub url: String,
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// An operator suspended the tenant: its events are parked on the
    /// dead-letter topic as `tenant_suspended`, to be delivered in order on
    /// resumption. Missing: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_sha256: Option<String>,
    /// Events per second at most (fractions allowed: 0.5 is one event
    /// every 2 s); missing or `null`: unlimited. See [`RateLimit`] for the
    /// bounds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "rate_limit_number"
    )]
    pub rate_limit: Option<f64>,
}

fn enabled_by_default() -> bool {
    true
}

/// Reads `rate_limit` as any JSON value first, so that a value of the wrong
/// type is refused with a message that names the field: serde's own
/// message names only the type it expected.
fn rate_limit_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let kind = match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(number)) => {
            // Every JSON number reads as an f64 unless serde_json keeps
            // numbers as text (its `arbitrary_precision` feature), where one
            // beyond the range of an f64 does not.
            return number.as_f64().map(Some).ok_or_else(|| {
                D::Error::custom(format_args!("rate_limit: `{number}` is not a number"))
            });
        }
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "an array",
        Some(Value::Object(_)) => "an object",
    };
    Err(D::Error::custom(format_args!(
        "rate_limit: must be a number of events per second, not {kind}"
    )))
}

/// Why a tenant record is not usable. The message names the field.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(
        "tenant id must be 1 to {MAX_TENANT_ID_BYTES} bytes of UTF-8 without control characters"
    )]
    InvalidId,
    #[error("record is {0} bytes, more than the {MAX_RECORD_BYTES} allowed")]
    TooLarge(usize),
    #[error("record is not a valid tenant record: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("url: {0}")]
    Url(String),
    #[error("public_key: {0}")]
    PublicKey(#[source] KeyError),
    #[error("key_id: must be 1 to 128 printable ASCII characters")]
    KeyId,
    #[error("signing_secret: {0}")]
    SigningSecret(String),
    #[error("events: {0}")]
    Events(#[source] PatternError),
    #[error("api_key_sha256: must be 64 hexadecimal characters")]
    ApiKeyHash,
    #[error("rate_limit: {0}")]
    RateLimit(#[source] RateLimitError),
}

/// A validated tenant, prepared for delivery.
#[derive(Debug)]
pub struct Tenant {
    pub id: String,
    pub url: Url,
    /// The public key and the JWE `kid` (the record's `key_id`, or the
    /// key's RFC 7638 thumbprint), prepared for encryption (protected
    /// header built once per record version). [`Tenant::public_key`] and
    /// [`Tenant::key_id`] read them from here rather than from copies.
    pub recipient: Recipient,
    pub signing_secret: Option<SigningSecret>,
    /// Event-type patterns; `None` subscribes to every event.
    pub events: Option<Vec<Pattern>>,
    pub enabled: bool,
    /// Suspended by an operator (`hookline tenants suspend`).
    pub suspended: bool,
    pub api_key_sha256: Option<String>,
    /// At most this many events per second to this tenant; `None`:
    /// unlimited. Already validated.
    pub rate_limit: Option<RateLimit>,
    // No copy of the record itself: with 100,000 tenants its PEM text and
    // strings were a third of the table's memory, and everything shown
    // (`hookline tenants`) is derived from the prepared fields above. The
    // tenant API keeps its own view of the raw records.
}

impl Tenant {
    /// The tenant's public key.
    pub fn public_key(&self) -> &PublicKey {
        self.recipient.key()
    }

    /// The JWE `kid`: the record's `key_id`, or the key's RFC 7638
    /// thumbprint.
    pub fn key_id(&self) -> &str {
        self.recipient.kid()
    }

    /// Parses and validates a record value read from the topic.
    pub fn from_bytes(id: &str, value: &[u8]) -> Result<Self, TenantError> {
        if value.len() > MAX_RECORD_BYTES {
            return Err(TenantError::TooLarge(value.len()));
        }
        let record: TenantRecord = serde_json::from_slice(value).map_err(TenantError::NotJson)?;
        Self::from_record(id, record)
    }

    /// Validates a record and prepares everything delivery needs.
    pub fn from_record(id: &str, record: TenantRecord) -> Result<Self, TenantError> {
        validate_id(id)?;
        let url = validate_url(&record.url)?;
        let public_key = PublicKey::parse(&record.public_key).map_err(TenantError::PublicKey)?;
        let thumbprint;
        let key_id = match &record.key_id {
            Some(kid) => {
                let printable = kid.bytes().all(|b| b.is_ascii_graphic());
                if kid.is_empty() || kid.len() > 128 || !printable {
                    return Err(TenantError::KeyId);
                }
                kid.as_str()
            }
            None => {
                thumbprint = public_key.thumbprint();
                thumbprint.as_str()
            }
        };
        let signing_secret = record
            .signing_secret
            .as_deref()
            .map(SigningSecret::parse)
            .transpose()
            .map_err(|e| TenantError::SigningSecret(e.to_string()))?;
        let events = record
            .events
            .as_ref()
            .map(|patterns| {
                patterns
                    .iter()
                    .map(|p| Pattern::parse(p))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(TenantError::Events)?;
        if let Some(hash) = &record.api_key_sha256
            && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(TenantError::ApiKeyHash);
        }
        let rate_limit = record
            .rate_limit
            .map(RateLimit::new)
            .transpose()
            .map_err(TenantError::RateLimit)?;
        Ok(Self {
            id: id.to_string(),
            url,
            recipient: Recipient::new(public_key, key_id),
            signing_secret,
            events,
            enabled: record.enabled,
            suspended: record.suspended,
            api_key_sha256: record.api_key_sha256,
            rate_limit,
        })
    }

    /// Whether this tenant wants events of `event_type`.
    pub fn is_subscribed(&self, event_type: &str) -> bool {
        match &self.events {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(event_type)),
        }
    }
}

/// Checks a tenant id (the record key of its events and of its record).
pub fn validate_id(id: &str) -> Result<(), TenantError> {
    if id.is_empty() || id.len() > MAX_TENANT_ID_BYTES || id.chars().any(char::is_control) {
        return Err(TenantError::InvalidId);
    }
    Ok(())
}

/// Checks a webhook URL: absolute http or https with a host, no
/// credentials. Whether its destination may be reached is decided at
/// delivery time, against the address actually connected to.
pub fn validate_url(text: &str) -> Result<Url, TenantError> {
    if text.len() > MAX_URL_BYTES {
        return Err(TenantError::Url(format!(
            "longer than {MAX_URL_BYTES} bytes"
        )));
    }
    let url =
        Url::parse(text).map_err(|e| TenantError::Url(format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TenantError::Url(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(TenantError::Url("has no host".into()));
    }
    // Credentials in a URL end up in logs and proxies; a tenant that needs
    // authentication verifies the signature instead.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TenantError::Url("must not contain credentials".into()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_keys;
    use proptest::prelude::*;
    use std::time::Duration;

    fn record(url: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "url": url,
            "public_key": test_keys::RSA2048_SPKI,
        }))
        .unwrap()
    }

    #[test]
    fn a_record_above_the_size_limit_is_refused_before_parsing() {
        let mut value = record("https://example.com/");
        value.resize(MAX_RECORD_BYTES + 1, b' ');
        assert!(matches!(
            Tenant::from_bytes("acme", &value),
            Err(TenantError::TooLarge(n)) if n == MAX_RECORD_BYTES + 1
        ));
    }

    #[test]
    fn tricky_urls_are_refused_or_normalised() {
        for url in [
            "http://user:pass@127.0.0.1/",
            "http://user@example.com/",
            "http://[fe80::1%25eth0]/",
            "http://[::1%lo]/",
            "ftp://example.com/",
            "http://",
        ] {
            assert!(Tenant::from_bytes("acme", &record(url)).is_err(), "{url}");
        }
        for (url, host) in [
            ("http://2130706433/", "127.0.0.1"),
            ("http://0177.0.0.01/", "127.0.0.1"),
            ("http://0x7f.1/", "127.0.0.1"),
        ] {
            let tenant = Tenant::from_bytes("acme", &record(url)).unwrap();
            assert_eq!(tenant.url.host_str(), Some(host), "{url}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let value = serde_json::to_vec(&serde_json::json!({
            "url": "https://example.com/",
            "public_key": test_keys::RSA2048_SPKI,
            "max_attempts": 3,
            "future": {"nested": [1, 2]},
        }))
        .unwrap();
        assert!(Tenant::from_bytes("acme", &value).is_ok());
    }

    fn record_with_rate_limit(rate_limit: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "url": "https://example.com/",
            "public_key": test_keys::RSA2048_SPKI,
            "rate_limit": rate_limit,
        }))
        .unwrap()
    }

    #[test]
    fn a_record_without_a_rate_limit_or_with_null_is_unlimited() {
        let old = Tenant::from_bytes("acme", &record("https://example.com/")).unwrap();
        assert_eq!(old.rate_limit, None);
        let null = Tenant::from_bytes("acme", &record_with_rate_limit(Value::Null)).unwrap();
        assert_eq!(null.rate_limit, None);
    }

    #[test]
    fn a_rate_limit_is_prepared_with_its_interval() {
        for (rate, interval) in [
            (serde_json::json!(0.5), Duration::from_secs(2)),
            (serde_json::json!(10), Duration::from_millis(100)),
            (serde_json::json!(1_000_000), Duration::from_micros(1)),
        ] {
            let tenant = Tenant::from_bytes("acme", &record_with_rate_limit(rate.clone())).unwrap();
            let limit = tenant.rate_limit.expect("a rate limit");
            assert_eq!(Some(limit.per_second()), rate.as_f64());
            assert_eq!(limit.interval(), interval, "{rate}");
        }
    }

    #[test]
    fn a_bad_rate_limit_makes_the_record_invalid_naming_the_field() {
        for bad in [
            serde_json::json!(0),
            serde_json::json!(-1),
            serde_json::json!(1_000_001),
            serde_json::json!(1e-7),
            serde_json::json!("10"),
            serde_json::json!(true),
            serde_json::json!([1]),
            serde_json::json!({"per_second": 1}),
        ] {
            let error = Tenant::from_bytes("acme", &record_with_rate_limit(bad.clone()))
                .expect_err("a bad rate limit is refused");
            assert!(error.to_string().contains("rate_limit: "), "{bad}: {error}");
        }
    }

    #[test]
    fn the_rate_limit_is_written_only_when_set() {
        let mut record: TenantRecord =
            serde_json::from_slice(&record("https://example.com/")).unwrap();
        assert!(
            !serde_json::to_string(&record)
                .unwrap()
                .contains("rate_limit")
        );
        record.rate_limit = Some(0.5);
        let written = serde_json::to_vec(&record).unwrap();
        let read: TenantRecord = serde_json::from_slice(&written).unwrap();
        assert_eq!(read.rate_limit, Some(0.5));
    }

    proptest! {
        // The same properties as the `tenant_record` fuzz target, so that
        // every CI run exercises them even without a nightly toolchain.
        #[test]
        fn arbitrary_records_never_panic(id in "\\PC{0,8}", value in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Tenant::from_bytes(&id, &value);
        }

        #[test]
        fn an_accepted_url_is_http_with_a_host_and_no_credentials(
            scheme in "(https?|ftp|HTTP|javascript)",
            userinfo in proptest::option::of("[a-z:]{0,6}@"),
            host in "([a-z0-9.\\-]{0,12}|\\[[0-9a-f:%.]{0,16}\\]|[0-9x.]{1,16})",
            port in proptest::option::of(0u32..70_000),
            path in "[/a-z%?#]{0,8}",
        ) {
            let url = format!(
                "{scheme}://{}{host}{}{path}",
                userinfo.unwrap_or_default(),
                port.map(|p| format!(":{p}")).unwrap_or_default()
            );
            if let Ok(tenant) = Tenant::from_bytes("acme", &record(&url)) {
                prop_assert!(matches!(tenant.url.scheme(), "http" | "https"));
                prop_assert!(tenant.url.host().is_some());
                prop_assert!(tenant.url.username().is_empty() && tenant.url.password().is_none());
            }
        }

        #[test]
        fn a_rate_limit_is_either_prepared_as_given_or_refused_naming_the_field(
            rate in prop_oneof![any::<f64>(), -10.0..2e6f64, 0.0..1e-5f64],
        ) {
            // Not-a-number and the infinities have no JSON form: they are
            // written as `null`, which is no limit.
            let written = serde_json::json!(rate);
            let value = record_with_rate_limit(written.clone());
            // What a reader sees, which may be a unit in the last place
            // away from what was written.
            let read: TenantRecord = serde_json::from_slice(&value).unwrap();
            match (Tenant::from_bytes("acme", &value), read.rate_limit) {
                (Ok(tenant), Some(read)) => {
                    let limit = tenant.rate_limit.expect("a rate limit");
                    prop_assert_eq!(limit.per_second(), read);
                    prop_assert!(limit.interval() > Duration::ZERO);
                }
                (Ok(tenant), None) => {
                    prop_assert!(written.is_null());
                    prop_assert!(tenant.rate_limit.is_none());
                }
                (Err(error), _) => prop_assert!(error.to_string().starts_with("rate_limit: "), "{}", error),
            }
        }
    }
}
