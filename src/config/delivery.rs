//! `[delivery]`: HTTP attempts and the retry policy.

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::layers::Provenance;

/// Upper bound for `delivery.max_payload_bytes`: Kafka's own default record
/// limit is 1 MiB and no broker is configured for values this large.
const MAX_PAYLOAD_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Time allowed for one HTTP attempt. Above zero; default 30 s.
    pub timeout: Duration,
    /// Attempts per event, the first one included. At least 1; default 8.
    pub max_attempts: u32,
    /// Backoff before the second attempt. Above zero; default 1 s.
    pub initial_backoff: Duration,
    /// Longest backoff. Not shorter than `initial_backoff`; default 60 s.
    pub max_backoff: Duration,
    /// Failure statuses (300..=599) that are dead-lettered at once as
    /// `rejected`; default `[410]`.
    pub non_retryable_statuses: Vec<u16>,
    /// Lifts the destination guard, for development only; default `false`.
    pub allow_private_destinations: bool,
    /// Largest event value delivered, in bytes. 1 to 64 MiB; default 1 MiB.
    pub max_payload_bytes: usize,
}

/// `[delivery]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    max_attempts: u32,
    #[serde(with = "humantime_serde")]
    initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    max_backoff: Duration,
    non_retryable_statuses: Vec<u16>,
    allow_private_destinations: bool,
    max_payload_bytes: usize,
}

impl Raw {
    pub(super) fn validate(self, at: &Provenance) -> Result<DeliveryConfig, ConfigError> {
        if self.timeout.is_zero() {
            return Err(at.invalid("delivery.timeout", "must be above zero"));
        }
        if self.max_attempts == 0 {
            return Err(at.invalid("delivery.max_attempts", "must be at least 1"));
        }
        if self.initial_backoff.is_zero() {
            return Err(at.invalid("delivery.initial_backoff", "must be above zero"));
        }
        if self.max_backoff < self.initial_backoff {
            return Err(at.invalid(
                "delivery.max_backoff",
                format!(
                    "must not be shorter than delivery.initial_backoff ({})",
                    humantime::format_duration(self.initial_backoff)
                ),
            ));
        }
        if let Some(status) = self
            .non_retryable_statuses
            .iter()
            .find(|status| !(300..=599).contains(*status))
        {
            return Err(at.invalid(
                "delivery.non_retryable_statuses",
                format!("{status} is not an HTTP failure status (300..=599)"),
            ));
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > MAX_PAYLOAD_LIMIT {
            return Err(at.invalid(
                "delivery.max_payload_bytes",
                format!("must be between 1 and {MAX_PAYLOAD_LIMIT}"),
            ));
        }
        Ok(DeliveryConfig {
            timeout: self.timeout,
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            non_retryable_statuses: self.non_retryable_statuses,
            allow_private_destinations: self.allow_private_destinations,
            max_payload_bytes: self.max_payload_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{err, load};

    #[test]
    fn file_overrides_defaults_key_by_key() {
        let config = load("[delivery]\nmax_attempts = 3\n").unwrap();
        assert_eq!(config.delivery.max_attempts, 3);
        // Untouched keys of the same table keep their defaults.
        assert_eq!(config.delivery.timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_duration_is_named() {
        let e = err("[delivery]\ntimeout = \"5 parsecs\"\n");
        assert!(e.contains("delivery.timeout"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err("[delivery]\nmax_attempts = \"eight\"\n");
        assert!(e.contains("delivery.max_attempts"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn rule_timeout_above_zero() {
        assert!(err("[delivery]\ntimeout = \"0s\"\n").contains("delivery.timeout"));
    }

    #[test]
    fn rule_max_attempts_at_least_one() {
        assert!(err("[delivery]\nmax_attempts = 0\n").contains("delivery.max_attempts"));
    }

    #[test]
    fn rule_initial_backoff_above_zero() {
        assert!(err("[delivery]\ninitial_backoff = \"0s\"\n").contains("delivery.initial_backoff"));
    }

    #[test]
    fn rule_max_backoff_not_below_initial() {
        let e = err("[delivery]\ninitial_backoff = \"10s\"\nmax_backoff = \"5s\"\n");
        assert!(e.contains("delivery.max_backoff"), "{e}");
    }

    #[test]
    fn rule_non_retryable_statuses_are_failures() {
        let e = err("[delivery]\nnon_retryable_statuses = [410, 200]\n");
        assert!(e.contains("200 is not an HTTP failure status"), "{e}");
    }

    #[test]
    fn rule_max_payload_bytes_bounded() {
        assert!(err("[delivery]\nmax_payload_bytes = 0\n").contains("delivery.max_payload_bytes"));
        assert!(
            err("[delivery]\nmax_payload_bytes = 1000000000\n")
                .contains("delivery.max_payload_bytes")
        );
    }
}
