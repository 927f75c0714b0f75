//! The tenant record (the value on the `tenants` topic) and its validation
//! into a [`Tenant`] that is ready to use: URL parsed, public key parsed and
//! prepared, patterns compiled, rate limit checked. This happens once per
//! record version, never per delivered event.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

use crate::crypto::jwe::Recipient;
use crate::crypto::{CompactPublicKey, KeyError, SigningSecret};
use crate::events::timestamp::format_system_time;
use crate::tenants::pattern::{Pattern, PatternError, PatternSets};
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
    /// The signing secret that a rotation replaced (`whsec_…`). Until
    /// `previous_signing_secret_expires_at`, every request is signed with
    /// it too, after the current one, so that the tenant's receiver can
    /// switch to the new secret in its own time. Needs `signing_secret` and
    /// the expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_secret: Option<String>,
    /// When `previous_signing_secret` stops signing: RFC 3339, e.g.
    /// `2026-11-29T10:00:00Z`. A past expiry is valid (the previous secret
    /// is then simply no longer used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_secret_expires_at: Option<String>,
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
    #[error("previous_signing_secret: {0}")]
    PreviousSigningSecret(String),
    #[error("previous_signing_secret_expires_at: {0}")]
    PreviousSigningSecretExpiresAt(String),
    #[error("events: {0}")]
    Events(#[source] PatternError),
    #[error("api_key_sha256: must be 64 hexadecimal characters")]
    ApiKeyHash,
    #[error("rate_limit: {0}")]
    RateLimit(#[source] RateLimitError),
}

/// The signing secret a rotation replaced, and when it stops signing.
#[derive(Debug, Clone)]
pub struct PreviousSigningSecret {
    pub secret: SigningSecret,
    /// The first instant at which it no longer signs.
    pub expires_at: SystemTime,
}

/// A validated tenant, kept compactly: a replica holds one per tenant of
/// the topic, a million of them on one small replica, so what only an
/// active tenant needs (the aws-lc key, the JWE header, the parsed URL) is
/// prepared on demand ([`Tenant::prepare`]) and cached for the recently
/// active ones by the table, not kept here. See BENCHMARKS.md for the
/// bytes per tenant.
#[derive(Debug)]
pub struct Tenant {
    pub id: Box<str>,
    /// The URL as the `url` crate writes it once parsed (normalised).
    url: Box<str>,
    public_key: CompactPublicKey,
    /// The record's `key_id`; `None`: the key's RFC 7638 thumbprint.
    key_id: Option<Box<str>>,
    pub signing_secret: Option<SigningSecret>,
    /// The secret a rotation replaced, signing too until its expiry. Boxed:
    /// rare, and twice the size of the pointer.
    pub previous_signing_secret: Option<Box<PreviousSigningSecret>>,
    /// Event-type patterns; `None` subscribes to every event. Tenants with
    /// the same list share one (see [`PatternSets`]).
    events: Option<Arc<[Pattern]>>,
    pub enabled: bool,
    /// Suspended by an operator (`hookline tenants suspend`).
    pub suspended: bool,
    pub api_key_sha256: Option<Box<str>>,
    /// At most this many events per second to this tenant; `None`:
    /// unlimited. Already validated.
    pub rate_limit: Option<RateLimit>,
    /// Tells this record version apart from every other one in the
    /// process: the key of its prepared form in the table's cache, so that
    /// a new version (a rotated key, a new URL) never finds the old one's.
    serial: u64,
    // No copy of the record itself: with 100,000 tenants its PEM text and
    // strings were a third of the table's memory, and everything shown
    // (`hookline tenants`) is derived from the fields above. The tenant API
    // keeps its own view of the raw records.
}

/// What a delivery needs of a tenant, prepared from its [`Tenant`]: the
/// aws-lc key with the JWE protected header for its `kid`, and the parsed
/// URL. About 2 KB once its key has encrypted (aws-lc then caches the key's
/// Montgomery context), hence prepared only for active tenants.
#[derive(Debug)]
pub struct PreparedTenant {
    pub recipient: Recipient,
    pub url: Url,
}

/// Distinct for each record version validated in this process. A counter
/// and nothing else: it carries no state that could go stale.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0);

impl Tenant {
    /// The webhook URL (validated, normalised).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The tenant's public key, as kept.
    pub fn public_key(&self) -> &CompactPublicKey {
        &self.public_key
    }

    /// The JWE `kid`: the record's `key_id`, or the key's RFC 7638
    /// thumbprint.
    pub fn key_id(&self) -> Cow<'_, str> {
        match &self.key_id {
            Some(kid) => Cow::Borrowed(kid),
            None => Cow::Owned(self.public_key.thumbprint()),
        }
    }

    /// Event-type patterns; `None` subscribes to every event.
    pub fn events(&self) -> Option<&[Pattern]> {
        self.events.as_deref()
    }

    /// This record version's identity (see the field).
    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }

    /// Prepares what a delivery needs: the aws-lc key, the JWE header, the
    /// URL. A few microseconds; the table caches the result for recently
    /// active tenants ([`super::TenantTable::prepared`]).
    pub fn prepare(&self) -> Result<PreparedTenant, TenantError> {
        let key = self.public_key.prepare().map_err(TenantError::PublicKey)?;
        let url = Url::parse(&self.url).map_err(|e| TenantError::Url(e.to_string()))?;
        // The prepared key has its thumbprint already: not worked out again
        // as `key_id` would.
        let recipient = match &self.key_id {
            Some(kid) => Recipient::new(key, kid),
            None => {
                let kid = key.thumbprint();
                Recipient::new(key, &kid)
            }
        };
        Ok(PreparedTenant { recipient, url })
    }

    /// The secrets that sign a request made at `now`: the current one, then
    /// the previous one while `now` is before its expiry.
    pub fn signing_secrets(&self, now: SystemTime) -> impl Iterator<Item = &SigningSecret> {
        let previous = self
            .previous_signing_secret
            .as_ref()
            .filter(|previous| now < previous.expires_at)
            .map(|previous| &previous.secret);
        self.signing_secret.iter().chain(previous)
    }

    /// The `webhook-signature` of a request made at `now`: one `v1,`
    /// signature per secret of [`Tenant::signing_secrets`], space-separated;
    /// `None` when the tenant has no signing secret.
    pub fn signature(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        now: SystemTime,
    ) -> Option<String> {
        crate::crypto::sign_all(self.signing_secrets(now), msg_id, timestamp, body)
    }

    /// Parses and validates a record value read from the topic.
    pub fn from_bytes(id: &str, value: &[u8]) -> Result<Self, TenantError> {
        Self::from_bytes_sharing(id, value, &PatternSets::default())
    }

    /// [`Tenant::from_bytes`], sharing pattern lists through `patterns`.
    pub fn from_bytes_sharing(
        id: &str,
        value: &[u8],
        patterns: &PatternSets,
    ) -> Result<Self, TenantError> {
        if value.len() > MAX_RECORD_BYTES {
            return Err(TenantError::TooLarge(value.len()));
        }
        let record: TenantRecord = serde_json::from_slice(value).map_err(TenantError::NotJson)?;
        Self::from_record_sharing(id, record, patterns)
    }

    /// Validates a record and keeps what delivery needs.
    pub fn from_record(id: &str, record: TenantRecord) -> Result<Self, TenantError> {
        Self::from_record_sharing(id, record, &PatternSets::default())
    }

    /// [`Tenant::from_record`], sharing pattern lists through `patterns`.
    pub fn from_record_sharing(
        id: &str,
        record: TenantRecord,
        patterns: &PatternSets,
    ) -> Result<Self, TenantError> {
        validate_id(id)?;
        let url = validate_url(&record.url)?;
        let public_key =
            CompactPublicKey::parse(&record.public_key).map_err(TenantError::PublicKey)?;
        if let Some(kid) = &record.key_id {
            let printable = kid.bytes().all(|b| b.is_ascii_graphic());
            if kid.is_empty() || kid.len() > 128 || !printable {
                return Err(TenantError::KeyId);
            }
        }
        let signing_secret = record
            .signing_secret
            .as_deref()
            .map(SigningSecret::parse)
            .transpose()
            .map_err(|e| TenantError::SigningSecret(e.to_string()))?;
        let previous_signing_secret = validate_previous_signing_secret(&record)?.map(Box::new);
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
            .map_err(TenantError::Events)?
            .map(|list| patterns.share(list));
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
            id: id.into(),
            url: String::from(url).into_boxed_str(),
            public_key,
            key_id: record.key_id.map(String::into_boxed_str),
            signing_secret,
            previous_signing_secret,
            events,
            enabled: record.enabled,
            suspended: record.suspended,
            api_key_sha256: record.api_key_sha256.map(String::into_boxed_str),
            rate_limit,
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
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

/// How long a signing secret replaced by a rotation keeps signing, unless
/// the rotation says otherwise.
pub const DEFAULT_SIGNING_SECRET_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// The `previous_signing_secret_expires_at` of a rotation made at `now`
/// that keeps the previous secret for `grace`: `None` for a zero grace (the
/// previous secret is dropped at once).
pub fn previous_signing_secret_expiry(
    now: SystemTime,
    grace: Duration,
) -> Result<Option<String>, TenantError> {
    if grace.is_zero() {
        return Ok(None);
    }
    now.checked_add(grace)
        .and_then(format_system_time)
        .map(Some)
        .ok_or_else(|| {
            TenantError::PreviousSigningSecretExpiresAt(format!(
                "a grace of {} ends after the year 9999",
                humantime::format_duration(grace)
            ))
        })
}

/// Checks the previous signing secret of a rotation and its expiry: both
/// or neither, and only next to a current secret.
fn validate_previous_signing_secret(
    record: &TenantRecord,
) -> Result<Option<PreviousSigningSecret>, TenantError> {
    let (secret, expires_at) = match (
        &record.previous_signing_secret,
        &record.previous_signing_secret_expires_at,
    ) {
        (None, None) => return Ok(None),
        (Some(secret), Some(expires_at)) => (secret, expires_at),
        (Some(_), None) => {
            return Err(TenantError::PreviousSigningSecretExpiresAt(
                "required with previous_signing_secret".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(TenantError::PreviousSigningSecretExpiresAt(
                "set without previous_signing_secret".into(),
            ));
        }
    };
    if record.signing_secret.is_none() {
        return Err(TenantError::PreviousSigningSecret(
            "set without a signing_secret".into(),
        ));
    }
    let secret = SigningSecret::parse(secret)
        .map_err(|e| TenantError::PreviousSigningSecret(e.to_string()))?;
    let expires_at = OffsetDateTime::parse(expires_at, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|_| {
            TenantError::PreviousSigningSecretExpiresAt(format!(
                "`{expires_at}` is not an RFC 3339 date and time"
            ))
        })?;
    Ok(Some(PreviousSigningSecret { secret, expires_at }))
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
            let prepared = tenant.prepare().unwrap();
            assert_eq!(prepared.url.host_str(), Some(host), "{url}");
        }
    }

    #[test]
    fn a_prepared_tenant_announces_its_key_id_or_else_its_keys_thumbprint() {
        let thumbprint = crate::crypto::PublicKey::parse(test_keys::RSA2048_SPKI)
            .unwrap()
            .thumbprint();
        let plain = Tenant::from_bytes("acme", &record("https://example.com/")).unwrap();
        assert_eq!(plain.prepare().unwrap().recipient.kid(), thumbprint);
        assert_eq!(plain.key_id(), thumbprint);

        let value = serde_json::to_vec(&serde_json::json!({
            "url": "https://example.com/",
            "public_key": test_keys::RSA2048_SPKI,
            "key_id": "2026-q4",
        }))
        .unwrap();
        let named = Tenant::from_bytes("acme", &value).unwrap();
        assert_eq!(named.prepare().unwrap().recipient.kid(), "2026-q4");
        assert_eq!(named.key_id(), "2026-q4");
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

    const CURRENT: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const PREVIOUS: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn record_with_secrets(fields: serde_json::Value) -> Vec<u8> {
        let mut record = serde_json::json!({
            "url": "https://example.com/",
            "public_key": test_keys::RSA2048_SPKI,
        });
        for (name, value) in fields.as_object().unwrap() {
            record[name] = value.clone();
        }
        serde_json::to_vec(&record).unwrap()
    }

    fn at(rfc3339: &str) -> SystemTime {
        OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap().into()
    }

    #[test]
    fn the_previous_secret_signs_until_its_expiry_and_not_from_it() {
        let value = record_with_secrets(serde_json::json!({
            "signing_secret": CURRENT,
            "previous_signing_secret": PREVIOUS,
            "previous_signing_secret_expires_at": "2026-11-29T10:00:00Z",
        }));
        let tenant = Tenant::from_bytes("acme", &value).unwrap();
        let current = SigningSecret::parse(CURRENT)
            .unwrap()
            .sign("msg_1", 7, b"{}");
        let previous = SigningSecret::parse(PREVIOUS)
            .unwrap()
            .sign("msg_1", 7, b"{}");
        let before = at("2026-11-29T09:59:59.999Z");
        assert_eq!(
            tenant.signature("msg_1", 7, b"{}", before),
            Some(format!("{current} {previous}"))
        );
        for after in [at("2026-11-29T10:00:00Z"), at("2026-11-30T00:00:00Z")] {
            assert_eq!(
                tenant.signature("msg_1", 7, b"{}", after),
                Some(current.clone())
            );
        }
        assert_eq!(tenant.signing_secrets(before).count(), 2);
    }

    #[test]
    fn a_record_without_a_previous_secret_signs_with_the_current_one_or_none() {
        let now = SystemTime::now();
        let tenant = Tenant::from_bytes(
            "acme",
            &record_with_secrets(serde_json::json!({
                "signing_secret": CURRENT,
            })),
        )
        .unwrap();
        assert!(tenant.previous_signing_secret.is_none());
        assert_eq!(
            tenant.signature("m", 1, b"x", now),
            Some(SigningSecret::parse(CURRENT).unwrap().sign("m", 1, b"x"))
        );
        let unsigned = Tenant::from_bytes("acme", &record("https://example.com/")).unwrap();
        assert_eq!(unsigned.signature("m", 1, b"x", now), None);
    }

    #[test]
    fn a_bad_previous_secret_or_expiry_makes_the_record_invalid_naming_the_field() {
        for (fields, field) in [
            (
                serde_json::json!({"signing_secret": CURRENT, "previous_signing_secret": PREVIOUS}),
                "previous_signing_secret_expires_at: ",
            ),
            (
                serde_json::json!({"signing_secret": CURRENT,
                    "previous_signing_secret_expires_at": "2026-11-29T10:00:00Z"}),
                "previous_signing_secret_expires_at: ",
            ),
            (
                serde_json::json!({"previous_signing_secret": PREVIOUS,
                    "previous_signing_secret_expires_at": "2026-11-29T10:00:00Z"}),
                "previous_signing_secret: ",
            ),
            (
                serde_json::json!({"signing_secret": CURRENT, "previous_signing_secret": "whsec_short",
                    "previous_signing_secret_expires_at": "2026-11-29T10:00:00Z"}),
                "previous_signing_secret: ",
            ),
            (
                serde_json::json!({"signing_secret": CURRENT, "previous_signing_secret": PREVIOUS,
                    "previous_signing_secret_expires_at": "tomorrow"}),
                "previous_signing_secret_expires_at: ",
            ),
        ] {
            let error = Tenant::from_bytes("acme", &record_with_secrets(fields.clone()))
                .expect_err("refused");
            let message = error.to_string();
            assert!(message.starts_with(field), "{fields}: {message}");
            assert!(
                !message.contains("MfKQ9r8G") && !message.contains("AAECAwQF"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_rotation_expiry_is_now_plus_the_grace_and_none_without_one() {
        let now = at("2026-11-28T10:00:00Z");
        assert_eq!(
            previous_signing_secret_expiry(now, DEFAULT_SIGNING_SECRET_GRACE).unwrap(),
            Some("2026-11-29T10:00:00.000Z".to_string())
        );
        assert_eq!(
            previous_signing_secret_expiry(now, Duration::ZERO).unwrap(),
            None
        );
        let err = previous_signing_secret_expiry(now, Duration::from_secs(10_000 * 366 * 86_400))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("previous_signing_secret_expires_at: "),
            "{err}"
        );
    }

    #[test]
    fn a_previous_secret_past_its_expiry_is_valid_and_round_trips() {
        let value = record_with_secrets(serde_json::json!({
            "signing_secret": CURRENT,
            "previous_signing_secret": PREVIOUS,
            "previous_signing_secret_expires_at": "2000-01-01T00:00:00Z",
        }));
        let tenant = Tenant::from_bytes("acme", &value).unwrap();
        assert_eq!(tenant.signing_secrets(SystemTime::now()).count(), 1);
        let record: TenantRecord = serde_json::from_slice(&value).unwrap();
        let written: TenantRecord =
            serde_json::from_slice(&serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(written, record);
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
                let url = tenant.prepare().unwrap().url;
                prop_assert!(matches!(url.scheme(), "http" | "https"));
                prop_assert!(url.host().is_some());
                prop_assert!(url.username().is_empty() && url.password().is_none());
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
