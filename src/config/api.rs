//! `[api]`: the credentials of `hookline api`.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::Scalar;
use super::error::ConfigError;
use super::layers::Provenance;

/// Shortest accepted API token: a guessable token would protect nothing.
pub const MIN_API_TOKEN_CHARS: usize = 16;

/// Credentials of `hookline api`. Both are secrets: `Debug` shows them
/// redacted and nothing logs them.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// The operator's token (create and delete tenants, issue API keys);
    /// `hookline api` refuses to start without it. At least
    /// [`MIN_API_TOKEN_CHARS`] characters.
    pub admin_token: Option<SecretString>,
    /// The token of producers that publish events over HTTP; without it
    /// `POST /v1/events` is disabled. At least [`MIN_API_TOKEN_CHARS`]
    /// characters.
    pub producer_token: Option<SecretString>,
}

/// `[api]` as written. Tokens are read as [`Scalar`]s because an environment
/// variable holding only digits arrives as a number.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    #[serde(default)]
    admin_token: Option<Scalar>,
    #[serde(default)]
    producer_token: Option<Scalar>,
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Api { <redacted> }")
    }
}

impl Raw {
    pub(super) fn validate(self, at: &Provenance) -> Result<ApiConfig, ConfigError> {
        Ok(ApiConfig {
            admin_token: token(at, "api.admin_token", self.admin_token)?,
            producer_token: token(at, "api.producer_token", self.producer_token)?,
        })
    }
}

/// A token long enough to protect something. The error never quotes it.
fn token(
    at: &Provenance,
    key: &str,
    value: Option<Scalar>,
) -> Result<Option<SecretString>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let token = SecretString::from(value.into_string());
    if token.expose_secret().chars().count() < MIN_API_TOKEN_CHARS {
        return Err(at.invalid(
            key,
            format!("must be at least {MIN_API_TOKEN_CHARS} characters"),
        ));
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use crate::config::testing::{err, load, load_env};

    #[test]
    fn api_tokens_come_from_the_environment_and_stay_redacted() {
        let config = load_env(
            "",
            &[
                ("HOOKLINE__API__ADMIN_TOKEN", "admin-0123456789abcdef"),
                ("HOOKLINE__API__PRODUCER_TOKEN", "12345678901234567"),
            ],
        )
        .unwrap();
        let token = config.api.admin_token.as_ref().unwrap();
        assert_eq!(token.expose_secret(), "admin-0123456789abcdef");
        let producer = config.api.producer_token.as_ref().unwrap();
        assert_eq!(producer.expose_secret(), "12345678901234567");
        let debug = format!("{config:?}");
        assert!(!debug.contains("admin-0123456789abcdef"), "{debug}");
        assert!(load("").unwrap().api.admin_token.is_none());
    }

    #[test]
    fn rule_api_tokens_are_long_enough() {
        let e = err("[api]\nadmin_token = \"short\"\n");
        assert!(e.contains("api.admin_token"), "{e}");
        assert!(e.contains("at least 16 characters"), "{e}");
        assert!(!e.contains("short"), "the token itself is not echoed: {e}");
        let e = err("[api]\nproducer_token = \"\"\n");
        assert!(e.contains("api.producer_token"), "{e}");
    }
}
