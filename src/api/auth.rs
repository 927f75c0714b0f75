//! Credentials: the operator's admin token, the producer token, and tenant
//! API keys.
//!
//! Tokens are compared through their SHA-256 digests in constant time, so
//! neither a token's contents nor its length shows in the timing. A tenant
//! API key is stored only as its SHA-256 (`api_key_sha256`); a request
//! presents the key, and its digest is compared with the record's.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use super::ApiError;
use super::records::{RecordTable, StoredRecord};
use crate::crypto::{constant_time_eq, fill_random, sha256, sha256_hex};

/// Prefix of every tenant API key, so that a leaked key is recognisable
/// (secret scanners match on it).
pub const API_KEY_PREFIX: &str = "hk_";

/// Longest credential looked at; anything longer cannot be one of ours.
const MAX_CREDENTIAL_BYTES: usize = 512;

/// A fresh tenant API key: `hk_` and 256 random bits, base64url.
pub fn generate_api_key() -> SecretString {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    let key = format!(
        "{API_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    SecretString::from(key)
}

/// The value stored in `api_key_sha256` for `key`.
pub fn api_key_sha256(key: &SecretString) -> String {
    sha256_hex(key.expose_secret().as_bytes())
}

/// The bearer credential of a request.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingCredentials)?
        .to_str()
        .map_err(|_| ApiError::BadCredentials)?;
    let (scheme, credential) = value.split_once(' ').ok_or(ApiError::MissingCredentials)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingCredentials);
    }
    let credential = credential.trim();
    if credential.is_empty() || credential.len() > MAX_CREDENTIAL_BYTES {
        return Err(ApiError::BadCredentials);
    }
    Ok(credential)
}

/// Checks that the request carries `token`.
pub fn require_token(headers: &HeaderMap, token: &SecretString) -> Result<(), ApiError> {
    let presented = bearer(headers)?;
    let expected = sha256(token.expose_secret().as_bytes());
    if constant_time_eq(&sha256(presented.as_bytes()), &expected) {
        Ok(())
    } else {
        Err(ApiError::BadCredentials)
    }
}

/// Checks that the request carries the API key of tenant `id` and returns
/// the tenant's record. A key of another tenant gets the same answer as a
/// tenant that does not exist (404); a key of no tenant at all is 401.
pub fn require_tenant_key(
    headers: &HeaderMap,
    table: &RecordTable,
    id: &str,
) -> Result<Arc<StoredRecord>, ApiError> {
    let presented = bearer(headers)?;
    if !presented.starts_with(API_KEY_PREFIX) {
        return Err(ApiError::BadCredentials);
    }
    let hash = sha256_hex(presented.as_bytes());
    if let Some(record) = table.get(id)
        && let Some(stored) = record.api_key_sha256()
        && constant_time_eq(stored.to_ascii_lowercase().as_bytes(), hash.as_bytes())
    {
        return Ok(record);
    }
    if table.has_key_hash(&hash) {
        Err(ApiError::TenantNotFound)
    } else {
        Err(ApiError::BadCredentials)
    }
}

/// Checks that the request carries the API key of tenant `id` or the
/// operator's token `admin`, and returns the tenant's record: for what both
/// the tenant and the operator may set. The admin token opens every tenant;
/// a key of another tenant gets 404, as in [`require_tenant_key`].
pub fn require_tenant_key_or_token(
    headers: &HeaderMap,
    table: &RecordTable,
    id: &str,
    admin: &SecretString,
) -> Result<Arc<StoredRecord>, ApiError> {
    if require_token(headers, admin).is_ok() {
        return table.get(id).ok_or(ApiError::TenantNotFound);
    }
    require_tenant_key(headers, table, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::table_reader::Change;
    use axum::http::HeaderValue;

    fn with_bearer(credential: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {credential}")).unwrap(),
        );
        headers
    }

    #[test]
    fn api_keys_are_prefixed_random_and_long() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert!(a.expose_secret().starts_with("hk_"));
        assert_eq!(a.expose_secret().len(), 3 + 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(api_key_sha256(&a).len(), 64);
    }

    #[test]
    fn tokens_must_match_exactly() {
        let token = SecretString::from("admin-token-0123456789");
        assert!(require_token(&with_bearer("admin-token-0123456789"), &token).is_ok());
        for wrong in ["admin-token-012345678", "admin-token-01234567890", "x"] {
            assert!(matches!(
                require_token(&with_bearer(wrong), &token),
                Err(ApiError::BadCredentials)
            ));
        }
        assert!(matches!(
            require_token(&HeaderMap::new(), &token),
            Err(ApiError::MissingCredentials)
        ));
        let mut basic = HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        assert!(matches!(
            require_token(&basic, &token),
            Err(ApiError::MissingCredentials)
        ));
    }

    /// A table of the tenants `a` and `b`, and their keys.
    fn two_tenants() -> (RecordTable, SecretString, SecretString) {
        let table = RecordTable::new();
        let (key_a, key_b) = (generate_api_key(), generate_api_key());
        for (offset, (id, key)) in [("a", &key_a), ("b", &key_b)].into_iter().enumerate() {
            let value = format!(r#"{{"api_key_sha256":"{}"}}"#, api_key_sha256(key));
            table.apply(Change {
                key: id.as_bytes(),
                value: Some(value.as_bytes()),
                partition: 0,
                offset: offset as i64,
            });
        }
        (table, key_a, key_b)
    }

    #[test]
    fn a_key_opens_its_own_tenant_only() {
        let (table, key_a, _) = two_tenants();
        let headers = with_bearer(key_a.expose_secret());
        assert!(require_tenant_key(&headers, &table, "a").is_ok());
        assert!(matches!(
            require_tenant_key(&headers, &table, "b"),
            Err(ApiError::TenantNotFound)
        ));
        assert!(matches!(
            require_tenant_key(&headers, &table, "nobody"),
            Err(ApiError::TenantNotFound)
        ));
        let unknown = with_bearer(generate_api_key().expose_secret());
        assert!(matches!(
            require_tenant_key(&unknown, &table, "a"),
            Err(ApiError::BadCredentials)
        ));
    }

    #[test]
    fn the_admin_token_opens_every_tenant_where_a_key_opens_its_own() {
        let (table, key_a, _) = two_tenants();
        let admin = SecretString::from("admin-token-0123456789");
        let opens = |credential: &str, id: &str| {
            require_tenant_key_or_token(&with_bearer(credential), &table, id, &admin)
        };
        for id in ["a", "b"] {
            assert!(opens("admin-token-0123456789", id).is_ok(), "{id}");
        }
        assert!(matches!(
            opens("admin-token-0123456789", "nobody"),
            Err(ApiError::TenantNotFound)
        ));
        assert!(opens(key_a.expose_secret(), "a").is_ok());
        assert!(matches!(
            opens(key_a.expose_secret(), "b"),
            Err(ApiError::TenantNotFound)
        ));
        assert!(matches!(
            opens("admin-token-012345678", "a"),
            Err(ApiError::BadCredentials)
        ));
    }
}
