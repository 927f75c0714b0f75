//! Request and response bodies, the tenant view, and the validation every
//! write goes through before it reaches the topic.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;
use utoipa::ToSchema;

use super::ApiError;
use super::records::{StoredRecord, Version};
use crate::crypto::PublicKey;
use crate::delivery::destination::{classify, host_ip};
use crate::tenants::record::validate_url;
use crate::tenants::{Tenant, TenantRecord};

/// Where a tenant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// A valid record; events are delivered.
    Active,
    /// A valid record with `enabled: false`; events are dead-lettered as
    /// `tenant_disabled`.
    Disabled,
    /// A valid record that an operator suspended (`suspended: true`):
    /// events are parked on the dead-letter topic as `tenant_suspended`
    /// until the tenant is resumed, which delivers them in order.
    Suspended,
    /// Created, but its URL or public key is not set yet; events are
    /// dead-lettered as `invalid_tenant` until both are.
    Pending,
    /// The record does not validate; events are dead-lettered as
    /// `invalid_tenant`.
    Invalid,
}

/// A tenant's record as its owner may see it: secrets are never shown,
/// only whether they are set.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub status: TenantStatus,
    /// Why the tenant is pending or invalid.
    pub problem: Option<String>,
    pub url: Option<String>,
    /// The public key as stored (PEM).
    pub public_key: Option<String>,
    /// The JWE `kid` deliveries carry: the record's `key_id`, or the RFC
    /// 7638 thumbprint of the key.
    pub key_id: Option<String>,
    pub key_bits: Option<u32>,
    /// Event-type patterns; `null` receives every event type.
    pub events: Option<Vec<String>>,
    pub enabled: bool,
    pub signing_secret_set: bool,
    /// During a signing-secret rotation, until when the replaced secret
    /// signs too (RFC 3339); `null` when there is none.
    pub previous_signing_secret_expires_at: Option<String>,
    /// Events per second delivered at most; `null`: unlimited.
    pub rate_limit: Option<f64>,
    /// The record version, also sent as the `ETag` header.
    pub version: String,
}

impl TenantView {
    pub fn of(id: &str, record: &StoredRecord) -> Self {
        Self::of_fields(id, record.fields().as_ref(), record.version)
    }

    /// The view of a record given as its fields (`None`: not a JSON
    /// object) and version.
    pub fn of_fields(id: &str, fields: Option<&Map<String, Value>>, version: Version) -> Self {
        let version = version.etag();
        let Some(fields) = fields else {
            return TenantView {
                id: id.to_string(),
                status: TenantStatus::Invalid,
                problem: Some("the record is not a JSON object".into()),
                url: None,
                public_key: None,
                key_id: None,
                key_bits: None,
                events: None,
                enabled: false,
                signing_secret_set: false,
                previous_signing_secret_expires_at: None,
                rate_limit: None,
                version,
            };
        };
        let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
        let events = fields.get("events").and_then(Value::as_array).map(|list| {
            list.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        });
        let enabled = fields
            .get("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let mut view = TenantView {
            id: id.to_string(),
            status: TenantStatus::Pending,
            problem: None,
            url: text("url"),
            public_key: text("public_key"),
            key_id: text("key_id"),
            key_bits: None,
            events,
            enabled,
            signing_secret_set: fields.contains_key("signing_secret"),
            previous_signing_secret_expires_at: text("previous_signing_secret_expires_at"),
            rate_limit: fields.get("rate_limit").and_then(Value::as_f64),
            version,
        };
        let missing: Vec<&str> = ["url", "public_key"]
            .into_iter()
            .filter(|name| !fields.contains_key(*name))
            .collect();
        if !missing.is_empty() {
            view.problem = Some(format!("not set yet: {}", missing.join(", ")));
            // The key alone already determines the kid deliveries will carry.
            if let Some(key) = view
                .public_key
                .as_deref()
                .and_then(|pem| PublicKey::parse(pem).ok())
            {
                view.key_bits = u32::try_from(key.bits()).ok();
                view.key_id = view.key_id.or_else(|| Some(key.thumbprint()));
            }
            return view;
        }
        match complete_tenant(id, fields) {
            Ok(tenant) => {
                view.status = match (tenant.enabled, tenant.suspended) {
                    (false, _) => TenantStatus::Disabled,
                    (true, true) => TenantStatus::Suspended,
                    (true, false) => TenantStatus::Active,
                };
                view.key_id = Some(tenant.key_id().into_owned());
                view.key_bits = u32::try_from(tenant.public_key().bits()).ok();
            }
            Err(problem) => {
                view.status = TenantStatus::Invalid;
                view.problem = Some(problem);
            }
        }
        view
    }
}

/// `POST /v1/tenants`: a new tenant, optionally with part of its record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The tenant id: the key of its events and of its record. 1 to 255
    /// bytes of UTF-8 without control characters.
    #[schema(min_length = 1, max_length = 255)]
    pub id: String,
    pub url: Option<String>,
    pub public_key: Option<String>,
    pub key_id: Option<String>,
    pub events: Option<Vec<String>>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Events per second at most; default unlimited.
    #[schema(minimum = 0.000001, maximum = 1000000)]
    pub rate_limit: Option<f64>,
}

/// The answer to a create: the tenant, and its credentials, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedTenant {
    pub tenant: TenantView,
    /// The tenant's API key (`hk_…`). Shown once: only its SHA-256 is kept.
    pub api_key: String,
    /// The Standard Webhooks secret deliveries are signed with
    /// (`whsec_…`). Shown once.
    pub signing_secret: String,
}

/// A newly issued API key, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedApiKey {
    pub api_key: String,
    pub tenant: TenantView,
}

/// A newly generated signing secret, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedSigningSecret {
    pub signing_secret: String,
    pub tenant: TenantView,
}

/// `POST /v1/tenants/{id}/signing-secret`: how the replaced secret is
/// kept. The body is optional; without one, the default grace applies.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSigningSecret {
    /// How long the replaced secret keeps signing deliveries next to the
    /// new one, so that the receiver can switch in its own time: a
    /// duration such as `"24h"` (the default), `"90m"` or `"7d"`; `"0s"`
    /// drops it at once.
    #[serde(default, deserialize_with = "grace_duration")]
    #[schema(value_type = Option<String>, example = "24h")]
    pub grace: Option<std::time::Duration>,
}

/// Reads `grace` with humantime, with a message that names the field.
fn grace_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    humantime_serde::deserialize(deserializer).map_err(|e: D::Error| {
        serde::de::Error::custom(format_args!(
            "grace: must be a duration such as \"24h\" or \"0s\" ({e})"
        ))
    })
}

/// `PUT /v1/tenants/{id}/public-key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPublicKey {
    /// RSA, at least 2048 bits, PEM (SPKI `PUBLIC KEY` or PKCS#1 `RSA
    /// PUBLIC KEY`) or base64 of such a PEM.
    pub public_key: String,
    /// The JWE `kid`; when absent, the RFC 7638 thumbprint of the key. A
    /// `key_id` set with an earlier key is dropped.
    pub key_id: Option<String>,
}

/// `PUT /v1/tenants/{id}/url`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetUrl {
    /// Absolute http or https URL without credentials.
    pub url: String,
}

/// `PUT /v1/tenants/{id}/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetEvents {
    /// Event-type patterns (`*` matches any run of characters); `null`
    /// receives every event type, `[]` none.
    pub events: Option<Vec<String>>,
}

/// `PUT /v1/tenants/{id}/rate-limit`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRateLimit {
    /// Events per second delivered at most, from 0.000001 to 1000000
    /// (fractions allowed: 0.5 is one event every 2 s); `null` removes the
    /// limit. The tenant's events are spaced at least `1 / rate_limit`
    /// seconds apart; other tenants are not affected.
    #[schema(minimum = 0.000001, maximum = 1000000)]
    pub rate_limit: Option<f64>,
}

/// `POST /v1/events`: one event for one tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishEvent {
    /// The tenant id; it becomes the record key.
    pub tenant: String,
    /// The event as DESIGN §5 defines it: `type` and `data` required, `id`
    /// and `timestamp` optional. Written to the events topic as given.
    #[schema(value_type = Object)]
    pub event: Value,
}

/// Where an accepted event was written.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PublishedEvent {
    pub partition: i32,
    pub offset: i64,
}

/// Validates the record the API is about to write, as completely as the
/// record allows: a record with a URL and a public key goes through
/// [`Tenant::from_record`] (exactly what `tenants put` and every replica
/// apply); a pending record has each field it does hold checked the same
/// way. The URL must also pass the destination policy.
pub fn validate_record(
    id: &str,
    fields: &Map<String, Value>,
    allow_private_destinations: bool,
) -> Result<(), ApiError> {
    if let Some(url) = fields.get("url").and_then(Value::as_str) {
        let url = validate_url(url).map_err(|e| ApiError::Invalid(e.to_string()))?;
        check_destination(&url, allow_private_destinations)?;
    }
    let mut probe = fields.clone();
    // A pending record lacks one of the two; a placeholder lets the rest be
    // validated by the one function that defines validity. The placeholder
    // never reaches the topic.
    if !probe.contains_key("url") {
        probe.insert("url".into(), Value::from("https://pending.invalid/"));
    }
    if !probe.contains_key("public_key") {
        probe.insert("public_key".into(), Value::from(PLACEHOLDER_PUBLIC_KEY));
    }
    complete_tenant(id, &probe)
        .map(drop)
        .map_err(ApiError::Invalid)
}

/// The destination policy of DESIGN §6, applied to what can be decided
/// without resolving the host: an IP literal in a blocked range, or a
/// `localhost` name (RFC 6761 reserves it for loopback). Names are checked
/// again, against the resolved address, at every delivery.
fn check_destination(url: &Url, allow_private_destinations: bool) -> Result<(), ApiError> {
    if allow_private_destinations {
        return Ok(());
    }
    if let Some(ip) = host_ip(url)
        && let crate::delivery::destination::Destination::Blocked(range) = classify(ip)
    {
        return Err(ApiError::Invalid(format!(
            "url: the host is a {range}, which deliveries may not reach \
             (delivery.allow_private_destinations is false)"
        )));
    }
    if let Some(url::Host::Domain(name)) = url.host() {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            return Err(ApiError::Invalid(
                "url: `localhost` is a loopback name, which deliveries may not reach \
                 (delivery.allow_private_destinations is false)"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Validates a record that holds every required field.
fn complete_tenant(id: &str, fields: &Map<String, Value>) -> Result<Tenant, String> {
    let record: TenantRecord = serde_json::from_value(Value::Object(fields.clone()))
        .map_err(|e| format!("record is not a valid tenant record: {e}"))?;
    Tenant::from_record(id, record).map_err(|e| e.to_string())
}

/// A valid 2048-bit RSA public key standing in for a key not set yet, so
/// that the other fields of a pending record can be validated by
/// [`Tenant::from_record`].
const PLACEHOLDER_PUBLIC_KEY: &str = include_str!("placeholder-public-key.pem");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::records::Version;

    fn fields(json: serde_json::Value) -> Map<String, Value> {
        match json {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn stored(json: serde_json::Value) -> StoredRecord {
        StoredRecord::of_fields(
            &fields(json),
            Version {
                partition: 0,
                offset: 4,
            },
        )
    }

    #[test]
    fn placeholder_key_is_valid() {
        crate::crypto::PublicKey::parse(PLACEHOLDER_PUBLIC_KEY).unwrap();
    }

    #[test]
    fn pending_record_validates_what_it_holds() {
        assert!(validate_record("acme", &fields(serde_json::json!({})), false).is_ok());
        let e = validate_record(
            "acme",
            &fields(serde_json::json!({"events": ["ok.*", ""]})),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("events"), "{e}");
        let e = validate_record(
            "acme",
            &fields(serde_json::json!({"public_key": "nope"})),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("public_key"), "{e}");
    }

    #[test]
    fn destination_policy_refuses_blocked_literals_unless_allowed() {
        for url in [
            "http://127.0.0.1/hook",
            "http://169.254.169.254/latest",
            "http://[::1]/",
            "http://2130706433/",
            "http://10.0.0.1/",
            "http://localhost:8080/",
            "http://api.localhost./",
        ] {
            let record = fields(serde_json::json!({ "url": url }));
            let e = validate_record("acme", &record, false).unwrap_err();
            assert!(
                e.to_string().contains("allow_private_destinations"),
                "{url}: {e}"
            );
            assert!(validate_record("acme", &record, true).is_ok(), "{url}");
        }
        let public = fields(serde_json::json!({"url": "https://hooks.example.com/x"}));
        assert!(validate_record("acme", &public, false).is_ok());
    }

    #[test]
    fn view_of_a_pending_tenant_says_what_is_missing_and_hides_secrets() {
        let view = TenantView::of(
            "acme",
            &stored(serde_json::json!({
                "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "api_key_sha256": "a".repeat(64),
                "url": "https://hooks.example.com/x",
            })),
        );
        assert_eq!(view.status, TenantStatus::Pending);
        assert_eq!(view.problem.as_deref(), Some("not set yet: public_key"));
        assert!(view.signing_secret_set);
        assert_eq!(view.version, "\"0-4\"");
        let json = serde_json::to_string(&view).unwrap();
        assert!(!json.contains("whsec_"), "{json}");
        assert!(!json.contains(&"a".repeat(64)), "{json}");
    }

    #[test]
    fn view_of_a_complete_tenant_is_active_with_its_thumbprint() {
        let view = TenantView::of(
            "acme",
            &stored(serde_json::json!({
                "url": "https://hooks.example.com/x",
                "public_key": PLACEHOLDER_PUBLIC_KEY,
            })),
        );
        assert_eq!(view.status, TenantStatus::Active, "{:?}", view.problem);
        assert_eq!(view.key_bits, Some(2048));
        let key = crate::crypto::PublicKey::parse(PLACEHOLDER_PUBLIC_KEY).unwrap();
        assert_eq!(view.key_id, Some(key.thumbprint()));
    }
}
