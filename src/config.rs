//! Configuration: layered sources → raw serde structs → a validated [`Config`].
//!
//! Layers, later ones winning: the shipped `config/hookline.toml` embedded in
//! the binary, the user's file, `HOOKLINE__SECTION__KEY` environment
//! variables, command-line flags. The raw structs deny unknown keys; the
//! validated `Config` encodes the cross-field rules, so code that holds a
//! `Config` never re-checks them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// The shipped configuration file; it doubles as the built-in defaults.
pub const DEFAULTS: &str = include_str!("../config/hookline.toml");

/// Where `--config` points when it is not given.
pub const DEFAULT_PATH: &str = "config/hookline.toml";

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "HOOKLINE__";

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

/// A configuration that could not be loaded; its message is one line that
/// names the source, the key and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Values from the command line that take precedence over every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bootstrap_servers: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Topology file to read; `None` means the embedded topology.
    pub topology: Option<PathBuf>,
    pub kafka: KafkaConfig,
    pub delivery: DeliveryConfig,
    pub telemetry: TelemetryConfig,
    pub schema_registry: Option<SchemaRegistryConfig>,
    pub api: ApiConfig,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub session_timeout: Duration,
    pub drain_timeout: Duration,
    /// How long one administrative request (describing, creating or
    /// altering topics) may take, reaching the cluster included; a cluster
    /// that does not answer in time is reported as unreachable. Above zero;
    /// default 10 s.
    pub admin_timeout: Duration,
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

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub timeout: Duration,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub non_retryable_statuses: Vec<u16>,
    pub allow_private_destinations: bool,
    pub max_payload_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Address of the HTTP listener for `/metrics`, `/healthz` and
    /// `/readyz` (default `127.0.0.1:9464`; port 0 picks a free port).
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// Adds a `tenant` label to the delivery counters (default `false`).
    /// Off by default because every tenant multiplies the series.
    pub tenant_labels: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct SchemaRegistryConfig {
    pub url: Url,
}

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

/// Shortest accepted API token: a guessable token would protect nothing.
pub const MIN_API_TOKEN_CHARS: usize = 16;

/// Upper bound for `delivery.max_payload_bytes`: Kafka's own default record
/// limit is 1 MiB and no broker is configured for values this large.
const MAX_PAYLOAD_LIMIT: usize = 64 * 1024 * 1024;

mod raw {
    //! The configuration as written: every field present thanks to the
    //! embedded defaults, nothing validated beyond its type.
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        pub topology: PathBuf,
        pub kafka: Kafka,
        pub delivery: Delivery,
        pub telemetry: Telemetry,
        pub schema_registry: Option<SchemaRegistry>,
        #[serde(default)]
        pub api: Api,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Kafka {
        pub bootstrap_servers: String,
        pub group_id: String,
        #[serde(with = "humantime_serde")]
        pub session_timeout: Duration,
        #[serde(with = "humantime_serde")]
        pub drain_timeout: Duration,
        #[serde(with = "humantime_serde")]
        pub admin_timeout: Duration,
        #[serde(default)]
        pub properties: BTreeMap<String, PropertyValue>,
    }

    /// librdkafka takes every property as a string; TOML (and values parsed
    /// from the environment) may spell numbers and booleans natively.
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    pub enum PropertyValue {
        String(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }

    impl PropertyValue {
        pub fn into_string(self) -> String {
            match self {
                Self::String(s) => s,
                Self::Integer(i) => i.to_string(),
                Self::Float(f) => f.to_string(),
                Self::Bool(b) => b.to_string(),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Delivery {
        #[serde(with = "humantime_serde")]
        pub timeout: Duration,
        pub max_attempts: u32,
        #[serde(with = "humantime_serde")]
        pub initial_backoff: Duration,
        #[serde(with = "humantime_serde")]
        pub max_backoff: Duration,
        pub non_retryable_statuses: Vec<u16>,
        pub allow_private_destinations: bool,
        pub max_payload_bytes: usize,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Telemetry {
        pub listen: SocketAddr,
        pub log_format: LogFormat,
        pub tenant_labels: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SchemaRegistry {
        pub url: Url,
    }

    /// Tokens are read like librdkafka properties because an environment
    /// variable holding only digits arrives as a number.
    #[derive(Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Api {
        #[serde(default)]
        pub admin_token: Option<PropertyValue>,
        #[serde(default)]
        pub producer_token: Option<PropertyValue>,
    }

    impl fmt::Debug for Api {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Api { <redacted> }")
        }
    }
}

impl Config {
    /// Loads the configuration from every layer and validates it.
    ///
    /// `file` is the `--config` flag: an explicit file must exist, while the
    /// default path is read only when present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, env, overrides)
    }

    /// [`Config::load`] with the environment passed in, so that tests do not
    /// touch the process environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::new().merge(Toml::string(DEFAULTS));
        let file_name = match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError(format!(
                        "{}: configuration file not found",
                        path.display()
                    )));
                }
                Some(path.to_path_buf())
            }
            None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.is_file()),
        };
        if let Some(path) = &file_name {
            // Read the file ourselves so that a syntax error names it.
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
            if let Err(e) = text.parse::<toml::Table>() {
                let line = e
                    .span()
                    .map(|s| text[..s.start].lines().count().max(1))
                    .map(|n| format!(" (line {n})"))
                    .unwrap_or_default();
                return Err(ConfigError(format!(
                    "{}: invalid TOML{line}: {}",
                    path.display(),
                    e.message()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(EnvLayer::from_vars(env));
        if let Some(servers) = &overrides.bootstrap_servers {
            figment = figment.merge(("kafka.bootstrap_servers", servers));
        }
        let raw: raw::Config = figment.extract().map_err(|e| describe(&e))?;
        Self::validate(raw, file_name.as_deref())
    }

    fn validate(raw: raw::Config, file: Option<&Path>) -> Result<Self, ConfigError> {
        let fail = |key: &str, problem: String| {
            let source = file
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "configuration".into());
            ConfigError(format!("{source}: {key}: {problem}"))
        };

        let kafka = raw.kafka;
        if kafka.bootstrap_servers.trim().is_empty() {
            return Err(fail("kafka.bootstrap_servers", "must not be empty".into()));
        }
        if kafka.group_id.trim().is_empty() {
            return Err(fail("kafka.group_id", "must not be empty".into()));
        }
        if kafka.session_timeout < Duration::from_secs(1) {
            return Err(fail("kafka.session_timeout", "must be at least 1s".into()));
        }
        if kafka.drain_timeout.is_zero() || kafka.drain_timeout >= kafka.session_timeout {
            return Err(fail(
                "kafka.drain_timeout",
                format!(
                    "must be above zero and shorter than kafka.session_timeout ({}), \
                     or a draining replica is thrown out of its group",
                    humantime::format_duration(kafka.session_timeout)
                ),
            ));
        }
        if kafka.admin_timeout.is_zero() {
            return Err(fail("kafka.admin_timeout", "must be above zero".into()));
        }
        let mut properties = BTreeMap::new();
        for (key, value) in kafka.properties {
            if MANAGED_KAFKA_PROPERTIES.contains(&key.as_str()) {
                return Err(fail(
                    &format!("kafka.properties.\"{key}\""),
                    "is managed by hookline and cannot be set here".into(),
                ));
            }
            properties.insert(key, value.into_string());
        }

        let d = raw.delivery;
        if d.timeout.is_zero() {
            return Err(fail("delivery.timeout", "must be above zero".into()));
        }
        if d.max_attempts == 0 {
            return Err(fail("delivery.max_attempts", "must be at least 1".into()));
        }
        if d.initial_backoff.is_zero() {
            return Err(fail(
                "delivery.initial_backoff",
                "must be above zero".into(),
            ));
        }
        if d.max_backoff < d.initial_backoff {
            return Err(fail(
                "delivery.max_backoff",
                format!(
                    "must not be shorter than delivery.initial_backoff ({})",
                    humantime::format_duration(d.initial_backoff)
                ),
            ));
        }
        for &status in &d.non_retryable_statuses {
            if !(300..=599).contains(&status) {
                return Err(fail(
                    "delivery.non_retryable_statuses",
                    format!("{status} is not an HTTP failure status (300..=599)"),
                ));
            }
        }
        if d.max_payload_bytes == 0 || d.max_payload_bytes > MAX_PAYLOAD_LIMIT {
            return Err(fail(
                "delivery.max_payload_bytes",
                format!("must be between 1 and {MAX_PAYLOAD_LIMIT}"),
            ));
        }

        let schema_registry = match raw.schema_registry {
            Some(sr) if !matches!(sr.url.scheme(), "http" | "https") => {
                return Err(fail(
                    "schema_registry.url",
                    format!("scheme `{}` is not http or https", sr.url.scheme()),
                ));
            }
            Some(sr) => Some(SchemaRegistryConfig { url: sr.url }),
            None => None,
        };

        let token = |key: &str, value: Option<raw::PropertyValue>| {
            let Some(value) = value else {
                return Ok(None);
            };
            let token = SecretString::from(value.into_string());
            if token.expose_secret().chars().count() < MIN_API_TOKEN_CHARS {
                return Err(fail(
                    key,
                    format!("must be at least {MIN_API_TOKEN_CHARS} characters"),
                ));
            }
            Ok(Some(token))
        };
        let api = ApiConfig {
            admin_token: token("api.admin_token", raw.api.admin_token)?,
            producer_token: token("api.producer_token", raw.api.producer_token)?,
        };

        // The shipped default path may be absent (an installed binary run
        // elsewhere): then the embedded topology applies.
        let topology = if raw.topology == Path::new(default_topology_path()) {
            Some(raw.topology).filter(|p| p.is_file())
        } else {
            Some(raw.topology)
        };

        Ok(Config {
            topology,
            kafka: KafkaConfig {
                bootstrap_servers: kafka.bootstrap_servers,
                group_id: kafka.group_id,
                session_timeout: kafka.session_timeout,
                drain_timeout: kafka.drain_timeout,
                admin_timeout: kafka.admin_timeout,
                properties: KafkaProperties(properties),
            },
            delivery: DeliveryConfig {
                timeout: d.timeout,
                max_attempts: d.max_attempts,
                initial_backoff: d.initial_backoff,
                max_backoff: d.max_backoff,
                non_retryable_statuses: d.non_retryable_statuses,
                allow_private_destinations: d.allow_private_destinations,
                max_payload_bytes: d.max_payload_bytes,
            },
            telemetry: TelemetryConfig {
                listen: raw.telemetry.listen,
                log_format: raw.telemetry.log_format,
                tenant_labels: raw.telemetry.tenant_labels,
            },
            schema_registry,
            api,
        })
    }
}

/// The `HOOKLINE__SECTION__KEY` layer. Written out rather than figment's
/// `Env` so that the variables can be passed in (tests never touch the
/// process environment) and so that `kafka.properties` keys keep their dots:
/// `HOOKLINE__KAFKA__PROPERTIES__SASL.PASSWORD` sets `"sasl.password"`.
struct EnvLayer(Dict);

impl EnvLayer {
    fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut dict = Dict::new();
        for (name, value) in vars {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
            // Parsing a string into a figment value never fails: what is not
            // a number, a boolean or an array stays a string.
            let value: Value = value.parse().unwrap_or_else(|_| Value::from(value));
            insert_at(&mut dict, &path, value);
        }
        Self(dict)
    }
}

fn insert_at(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_at(inner, rest, value);
            }
        }
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variables")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, self.0.clone())]))
    }
}

/// The `topology` value of the shipped configuration.
fn default_topology_path() -> &'static str {
    "topology/topics.toml"
}

/// Turns a figment error into one line: where the value came from, which key,
/// what is wrong with it.
fn describe(error: &figment::Error) -> ConfigError {
    use figment::error::Kind;

    // For an unknown key, figment's path already ends with the key itself.
    let path = &error.path;
    let key = if path.is_empty() {
        "(top level)".to_string()
    } else {
        path.join(".")
    };
    let source = match &error.metadata {
        Some(meta) => match &meta.source {
            Some(figment::Source::File(file)) => file.display().to_string(),
            _ if meta.name.contains("environment") => {
                format!(
                    "environment variable {ENV_PREFIX}{}",
                    path.join("__").to_uppercase()
                )
            }
            _ if meta.name.contains("TOML") => "built-in defaults".into(),
            _ => "command line".into(),
        },
        None => "configuration".into(),
    };
    let problem = match &error.kind {
        Kind::UnknownField(..) => "unknown key".to_string(),
        Kind::MissingField(field) => format!("missing key `{field}`"),
        other => other.to_string(),
    };
    ConfigError(format!("{source}: {key}: {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(toml: &str) -> Result<Config, ConfigError> {
        load_env(toml, &[])
    }

    fn load_env(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(toml.as_bytes()).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_from(Some(file.path()), env, &Overrides::default())
    }

    fn err(toml: &str) -> String {
        load(toml).unwrap_err().to_string()
    }

    #[test]
    fn shipped_defaults_validate() {
        let config = load("").unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(config.kafka.group_id, "hookline");
        assert_eq!(config.kafka.admin_timeout, Duration::from_secs(10));
        assert_eq!(config.delivery.timeout, Duration::from_secs(30));
        assert_eq!(config.delivery.max_attempts, 8);
        assert_eq!(config.delivery.initial_backoff, Duration::from_secs(1));
        assert_eq!(config.delivery.max_backoff, Duration::from_secs(60));
        assert_eq!(config.delivery.non_retryable_statuses, vec![410]);
        assert!(!config.delivery.allow_private_destinations);
        assert_eq!(config.delivery.max_payload_bytes, 1_048_576);
        assert_eq!(config.telemetry.listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(config.telemetry.log_format, LogFormat::Text);
        assert!(!config.telemetry.tenant_labels);
        assert!(config.schema_registry.is_none());
    }

    #[test]
    fn tenant_labels_are_opt_in() {
        let config = load("[telemetry]\ntenant_labels = true\n").unwrap();
        assert!(config.telemetry.tenant_labels);
        let e = load("[telemetry]\ntenant_labels = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("telemetry.tenant_labels"), "{e}");
    }

    #[test]
    fn file_overrides_defaults_key_by_key() {
        let config = load("[delivery]\nmax_attempts = 3\n").unwrap();
        assert_eq!(config.delivery.max_attempts, 3);
        // Untouched keys of the same table keep their defaults.
        assert_eq!(config.delivery.timeout, Duration::from_secs(30));
    }

    #[test]
    fn environment_overrides_file() {
        let config = load_env(
            "[delivery]\nmax_attempts = 3\n",
            &[
                ("HOOKLINE__DELIVERY__MAX_ATTEMPTS", "5"),
                ("HOOKLINE__KAFKA__GROUP_ID", "hooks"),
                ("HOOKLINE__DELIVERY__TIMEOUT", "750ms"),
                ("UNRELATED__DELIVERY__MAX_ATTEMPTS", "9"),
            ],
        )
        .unwrap();
        assert_eq!(config.delivery.max_attempts, 5);
        assert_eq!(config.kafka.group_id, "hooks");
        assert_eq!(config.delivery.timeout, Duration::from_millis(750));
    }

    #[test]
    fn command_line_overrides_environment() {
        let env = [(
            "HOOKLINE__KAFKA__BOOTSTRAP_SERVERS".to_string(),
            "env:9092".to_string(),
        )];
        let overrides = Overrides {
            bootstrap_servers: Some("flag:9092".into()),
        };
        let config = Config::load_from(None, env, &overrides).unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "flag:9092");
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

    #[test]
    fn unknown_key_is_named_with_its_file() {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(b"[delivery]\nmax_retries = 3\n").unwrap();
        let e = Config::load_from(Some(file.path()), [], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&file.path().display().to_string()), "{e}");
        assert!(e.contains("delivery.max_retries"), "{e}");
        assert!(e.contains("unknown key"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn unknown_top_level_section_is_rejected() {
        let e = err("[deliveries]\ntimeout = \"1s\"\n");
        assert!(e.contains("deliveries: unknown key"), "{e}");
    }

    #[test]
    fn unknown_environment_key_names_the_variable() {
        let e = load_env("", &[("HOOKLINE__DELIVERY__RETRIES", "3")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("HOOKLINE__DELIVERY__RETRIES"), "{e}");
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
    fn toml_syntax_error_names_file_and_line() {
        let e = err("[delivery]\nmax_attempts = = 3\n");
        assert!(e.contains("invalid TOML (line 2)"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = Config::load_from(
            Some(Path::new("/nonexistent/hookline.toml")),
            [],
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "/nonexistent/hookline.toml: configuration file not found"
        );
    }

    #[test]
    fn bad_log_format_is_named() {
        let e = err("[telemetry]\nlog_format = \"xml\"\n");
        assert!(e.contains("telemetry.log_format"), "{e}");
    }

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
        assert!(e.contains("enable.auto.offset.store"), "{e}");
        assert!(e.contains("managed by hookline"), "{e}");
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

    #[test]
    fn rule_schema_registry_url_is_http() {
        let e = err("[schema_registry]\nurl = \"ftp://registry\"\n");
        assert!(e.contains("schema_registry.url"), "{e}");
        let ok =
            load("[schema_registry]\nurl = \"http://127.0.0.1:8081/apis/ccompat/v7\"\n").unwrap();
        assert!(ok.schema_registry.is_some());
    }

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

    #[test]
    fn explicit_topology_path_is_kept() {
        let config = load("topology = \"elsewhere/topics.toml\"\n").unwrap();
        assert_eq!(
            config.topology,
            Some(PathBuf::from("elsewhere/topics.toml"))
        );
    }
}
