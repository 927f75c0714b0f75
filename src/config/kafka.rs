//! `[kafka]`: the cluster, the consumer group and the pass-through
//! librdkafka properties.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::Scalar;
use super::error::ConfigError;
use super::layers::Provenance;

/// librdkafka properties that hookline sets itself; letting a user override
/// them would break delivery guarantees (offset storage) or the
/// configuration's single source of truth (bootstrap servers, group id).
const MANAGED_KAFKA_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "partition.assignment.strategy",
    "session.timeout.ms",
];

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from; not
    /// empty.
    pub bootstrap_servers: String,
    /// Consumer group shared by every replica; not empty.
    pub group_id: String,
    /// How long the broker waits for a heartbeat before it hands a
    /// replica's partitions to the others. At least 1 s; default 30 s.
    pub session_timeout: Duration,
    /// How long in-flight deliveries may take to finish on shutdown or
    /// revocation. Above zero and shorter than `session_timeout`; default
    /// 20 s.
    pub drain_timeout: Duration,
    /// How long one administrative request (describing, creating or
    /// altering topics) may take, reaching the cluster included; a cluster
    /// that does not answer in time is reported as unreachable. Above zero;
    /// default 10 s.
    pub admin_timeout: Duration,
    /// Pass-through librdkafka properties, none of those hookline manages.
    pub properties: KafkaProperties,
}

/// Pass-through librdkafka properties. `Debug` hides values that look
/// secret, so a logged configuration never leaks a SASL password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let looks_secret = |k: &str| {
            ["password", "secret", "token", "jaas"]
                .iter()
                .any(|s| k.contains(s))
        };
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, if looks_secret(k) { "<redacted>" } else { v })),
            )
            .finish()
    }
}

/// `[kafka]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    bootstrap_servers: String,
    group_id: String,
    #[serde(with = "humantime_serde")]
    session_timeout: Duration,
    #[serde(with = "humantime_serde")]
    drain_timeout: Duration,
    #[serde(with = "humantime_serde")]
    admin_timeout: Duration,
    #[serde(default)]
    properties: BTreeMap<String, Scalar>,
}

impl Raw {
    pub(super) fn validate(self, at: &Provenance) -> Result<KafkaConfig, ConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(at.invalid("kafka.bootstrap_servers", "must not be empty"));
        }
        if self.group_id.trim().is_empty() {
            return Err(at.invalid("kafka.group_id", "must not be empty"));
        }
        if self.session_timeout < Duration::from_secs(1) {
            return Err(at.invalid("kafka.session_timeout", "must be at least 1s"));
        }
        if self.drain_timeout.is_zero() || self.drain_timeout >= self.session_timeout {
            return Err(at.invalid(
                "kafka.drain_timeout",
                format!(
                    "must be above zero and shorter than kafka.session_timeout ({}), \
                     or a draining replica is thrown out of its group",
                    humantime::format_duration(self.session_timeout)
                ),
            ));
        }
        if self.admin_timeout.is_zero() {
            return Err(at.invalid("kafka.admin_timeout", "must be above zero"));
        }
        let mut properties = BTreeMap::new();
        for (key, value) in self.properties {
            if MANAGED_KAFKA_PROPERTIES.contains(&key.as_str()) {
                return Err(at.invalid_at(
                    &["kafka", "properties", &key],
                    "is managed by hookline and cannot be set here",
                ));
            }
            properties.insert(key, value.into_string());
        }
        Ok(KafkaConfig {
            bootstrap_servers: self.bootstrap_servers,
            group_id: self.group_id,
            session_timeout: self.session_timeout,
            drain_timeout: self.drain_timeout,
            admin_timeout: self.admin_timeout,
            properties: KafkaProperties(properties),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{err, err_env, load};

    #[test]
    fn rule_bootstrap_servers_not_empty() {
        assert!(err("[kafka]\nbootstrap_servers = \" \"\n").contains("kafka.bootstrap_servers"));
    }

    #[test]
    fn rule_group_id_not_empty() {
        assert!(err("[kafka]\ngroup_id = \"\"\n").contains("kafka.group_id"));
    }

    #[test]
    fn rule_session_timeout_at_least_one_second() {
        let e = err("[kafka]\nsession_timeout = \"500ms\"\ndrain_timeout = \"100ms\"\n");
        assert!(e.contains("kafka.session_timeout"), "{e}");
    }

    #[test]
    fn rule_drain_timeout_shorter_than_session_timeout() {
        let e = err("[kafka]\nsession_timeout = \"10s\"\ndrain_timeout = \"10s\"\n");
        assert!(e.contains("kafka.drain_timeout"), "{e}");
        assert!(
            e.contains("shorter than kafka.session_timeout (10s)"),
            "{e}"
        );
        assert!(load("[kafka]\nsession_timeout = \"10s\"\ndrain_timeout = \"9s\"\n").is_ok());
    }

    #[test]
    fn rule_admin_timeout_above_zero() {
        assert!(err("[kafka]\nadmin_timeout = \"0s\"\n").contains("kafka.admin_timeout"));
        let config = load("[kafka]\nadmin_timeout = \"3s\"\n").unwrap();
        assert_eq!(config.kafka.admin_timeout, Duration::from_secs(3));
    }

    #[test]
    fn rule_managed_kafka_properties_refused() {
        let e = err("[kafka.properties]\n\"enable.auto.offset.store\" = true\n");
        assert!(
            e.contains("kafka.properties.\"enable.auto.offset.store\""),
            "{e}"
        );
        assert!(e.contains("managed by hookline"), "{e}");
    }

    #[test]
    fn managed_property_from_the_environment_names_the_variable() {
        let e = err_env(&[("HOOKLINE__KAFKA__PROPERTIES__GROUP.ID", "other")]);
        assert_eq!(
            e,
            "environment variable HOOKLINE__KAFKA__PROPERTIES__GROUP.ID: \
             kafka.properties.\"group.id\": is managed by hookline and cannot be set here"
        );
    }

    #[test]
    fn kafka_properties_pass_through_as_strings() {
        let config = load(
            "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"fetch.max.bytes\" = 1000\n\"enable.ssl.certificate.verification\" = false\n",
        )
        .unwrap();
        let props = &config.kafka.properties;
        assert_eq!(props.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(props.get("fetch.max.bytes"), Some("1000"));
        assert_eq!(
            props.get("enable.ssl.certificate.verification"),
            Some("false")
        );
    }

    #[test]
    fn secret_looking_properties_are_redacted_in_debug() {
        let config = load("[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n").unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
