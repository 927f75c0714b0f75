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

/// A property whose key ends with this names a file that holds the value of
/// the property without it: `"sasl.password_file" = "/run/secrets/kafka"`
/// sets `sasl.password` to the file's text, so that a secret mounted as a
/// file (Kubernetes, Docker) never has to be written into the
/// configuration. No librdkafka property name ends with it.
const FILE_SUFFIX: &str = "_file";

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
        let given: BTreeMap<String, String> = self
            .properties
            .into_iter()
            .map(|(key, value)| (key, value.into_string()))
            .collect();
        let mut properties = BTreeMap::new();
        for (key, value) in &given {
            let at_key = |problem: String| at.invalid_at(&["kafka", "properties", key], problem);
            let Some(name) = key.strip_suffix(FILE_SUFFIX) else {
                if MANAGED_KAFKA_PROPERTIES.contains(&key.as_str()) {
                    return Err(at_key(
                        "is managed by hookline and cannot be set here".into(),
                    ));
                }
                properties.insert(key.clone(), value.clone());
                continue;
            };
            if name.is_empty() || MANAGED_KAFKA_PROPERTIES.contains(&name) {
                return Err(at_key(format!(
                    "names no property hookline passes on (`{name}`)"
                )));
            }
            if given.contains_key(name) {
                return Err(at_key(format!(
                    "`{name}` is set too; give the value or the file, not both"
                )));
            }
            let text = read_property_file(value).map_err(at_key)?;
            properties.insert(name.to_string(), text);
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

/// The value of a `*_file` property: the file's text without its trailing
/// line break. Problems name the file, never its content.
fn read_property_file(path: &str) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file {path}: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("the file {path} is not UTF-8 text"))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(format!("the file {path} is empty"));
    }
    Ok(value.to_string())
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

#[cfg(test)]
mod file_property_tests {
    use std::io::Write;

    use crate::config::testing::{err, err_env, load, load_env, printed};

    fn secret_file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents).unwrap();
        file
    }

    #[test]
    fn a_file_property_sets_the_property_from_the_file_without_its_line_break() {
        let file = secret_file(b"s3cret-pass\n");
        let config = load(&format!(
            "[kafka.properties]\n\"sasl.password_file\" = {:?}\n",
            file.path()
        ))
        .unwrap();
        let props = &config.kafka.properties;
        assert_eq!(props.get("sasl.password"), Some("s3cret-pass"));
        assert_eq!(props.get("sasl.password_file"), None);
        // Still redacted: the value came from a file, the key says secret.
        assert!(!format!("{config:?}").contains("s3cret-pass"));
    }

    #[test]
    fn only_trailing_line_breaks_are_trimmed() {
        let file = secret_file(b" pass word \r\n\n");
        let config = load(&format!(
            "[kafka.properties]\n\"sasl.password_file\" = {:?}\n",
            file.path()
        ))
        .unwrap();
        assert_eq!(
            config.kafka.properties.get("sasl.password"),
            Some(" pass word ")
        );
    }

    #[test]
    fn a_file_property_from_the_environment() {
        let file = secret_file(b"from-env\n");
        let path = file.path().to_str().unwrap();
        let config = load_env(
            "",
            &[("HOOKLINE__KAFKA__PROPERTIES__SASL.PASSWORD_FILE", path)],
        )
        .unwrap();
        assert_eq!(
            config.kafka.properties.get("sasl.password"),
            Some("from-env")
        );
    }

    #[test]
    fn an_unreadable_file_names_the_key_and_the_path() {
        let e =
            err("[kafka.properties]\n\"sasl.password_file\" = \"/nonexistent/kafka-password\"\n");
        assert!(e.contains("kafka.properties.\"sasl.password_file\""), "{e}");
        assert!(
            e.contains("cannot read the file /nonexistent/kafka-password"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn an_unreadable_file_from_the_environment_names_the_variable() {
        let e = err_env(&[(
            "HOOKLINE__KAFKA__PROPERTIES__SASL.PASSWORD_FILE",
            "/nonexistent/kafka-password",
        )]);
        assert!(
            e.starts_with("environment variable HOOKLINE__KAFKA__PROPERTIES__SASL.PASSWORD_FILE: "),
            "{e}"
        );
    }

    #[test]
    fn a_value_and_a_file_for_one_property_are_refused() {
        let file = secret_file(b"from-file\n");
        let e = err(&format!(
            "[kafka.properties]\n\"sasl.password\" = \"inline-secret\"\n\"sasl.password_file\" = {:?}\n",
            file.path()
        ));
        assert!(e.contains("kafka.properties.\"sasl.password_file\""), "{e}");
        assert!(e.contains("is set too"), "{e}");
        assert!(
            !e.contains("inline-secret") && !e.contains("from-file"),
            "{e}"
        );
    }

    #[test]
    fn a_value_in_the_file_and_a_file_in_the_environment_are_refused() {
        let file = secret_file(b"from-file\n");
        let result = load_env(
            "[kafka.properties]\n\"sasl.password\" = \"inline-secret\"\n",
            &[(
                "HOOKLINE__KAFKA__PROPERTIES__SASL.PASSWORD_FILE",
                file.path().to_str().unwrap(),
            )],
        );
        let e = printed(result.unwrap_err());
        assert!(e.contains("is set too"), "{e}");
        assert!(!e.contains("inline-secret"), "{e}");
    }

    #[test]
    fn an_empty_or_binary_file_is_refused_without_its_content() {
        let empty = secret_file(b"\n");
        let e = err(&format!(
            "[kafka.properties]\n\"sasl.password_file\" = {:?}\n",
            empty.path()
        ));
        assert!(e.contains("is empty"), "{e}");
        let binary = secret_file(b"\xff\xfesecret");
        let e = err(&format!(
            "[kafka.properties]\n\"ssl.key.password_file\" = {:?}\n",
            binary.path()
        ));
        assert!(e.contains("not UTF-8"), "{e}");
        assert!(!e.contains("secret\""), "{e}");
    }

    #[test]
    fn a_file_for_a_managed_property_is_refused() {
        let file = secret_file(b"other\n");
        let e = err(&format!(
            "[kafka.properties]\n\"group.id_file\" = {:?}\n",
            file.path()
        ));
        assert!(e.contains("kafka.properties.\"group.id_file\""), "{e}");
    }
}
