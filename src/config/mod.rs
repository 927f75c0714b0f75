//! Configuration: layered sources → raw serde structs → a validated [`Config`].
//!
//! Layers, later ones winning: the shipped `config/hookline.toml` embedded in
//! the binary, the user's file, `HOOKLINE__SECTION__KEY` environment
//! variables, command-line flags. Each section of the file has a module of
//! its own: its raw struct denies unknown keys, and its `validate` checks the
//! section's keys and produces the typed section, so code that holds a
//! `Config` never re-checks them. Every error names the layer the value at
//! fault came from and its key ([`ConfigError`]).
//!
//! # Layout
//! - `kafka`, `delivery`, `telemetry`, `schema_registry`, `api`: one section
//!   each, re-exported here.
//! - `layers`: the figment providers of the layers (the environment-variable
//!   layer among them), and the way back from a value to the layer that set
//!   it.
//! - `error`: [`ConfigError`] and [`Origin`].

use std::path::{Path, PathBuf};

use figment::Figment;
use serde::Deserialize;

mod api;
mod delivery;
mod error;
mod kafka;
mod layers;
mod schema_registry;
mod telemetry;
#[cfg(test)]
mod testing;

pub use api::{ApiConfig, MIN_API_TOKEN_CHARS};
pub use delivery::{DeliveryConfig, DeliveryOrdering};
pub use error::{ConfigError, Origin};
pub use kafka::{KafkaConfig, KafkaProperties};
pub use schema_registry::SchemaRegistryConfig;
pub use telemetry::{LogFormat, TelemetryConfig, TraceExportConfig};

use layers::Provenance;

/// The shipped configuration file; it doubles as the built-in defaults.
pub const DEFAULTS: &str = include_str!("../../config/hookline.toml");

/// Where `--config` points when it is not given.
pub const DEFAULT_PATH: &str = "config/hookline.toml";

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "HOOKLINE__";

/// The `topology` value of the shipped configuration.
const DEFAULT_TOPOLOGY_PATH: &str = "topology/topics.toml";

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

/// The configuration as written: every field present thanks to the embedded
/// defaults, nothing validated beyond its type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    topology: PathBuf,
    kafka: kafka::Raw,
    delivery: delivery::Raw,
    telemetry: telemetry::Raw,
    schema_registry: Option<schema_registry::Raw>,
    #[serde(default)]
    api: api::Raw,
}

/// A scalar that is used as a string: librdkafka takes every property as a
/// string, and an API token may consist of digits, while TOML (and values
/// parsed from the environment) may spell numbers and booleans natively.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Self::String(s) => s,
            Self::Integer(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
            Self::Bool(b) => b.to_string(),
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
        let env: Vec<(String, String)> = env.into_iter().collect();
        let otel = telemetry::OtelEnv::from_vars(&env);
        let file = match file {
            Some(path) if !path.is_file() => {
                return Err(ConfigError::FileNotFound {
                    path: path.to_path_buf(),
                });
            }
            Some(path) => Some(path),
            None => Some(Path::new(DEFAULT_PATH)).filter(|p| p.is_file()),
        };
        let mut figment = Figment::new().merge(layers::defaults());
        if let Some(path) = file {
            figment = figment.merge(layers::file(path)?);
        }
        let figment = figment
            .merge(layers::environment(env))
            .merge(layers::flags(overrides));
        let raw: RawConfig = figment.extract().map_err(layers::extraction_error)?;
        Self::validate(raw, otel, &Provenance::new(&figment))
    }

    /// Each section validates its own keys. A rule that relates keys of two
    /// sections belongs here; none does today.
    fn validate(
        raw: RawConfig,
        otel: telemetry::OtelEnv,
        at: &Provenance,
    ) -> Result<Self, ConfigError> {
        Ok(Config {
            topology: topology_path(raw.topology),
            kafka: raw.kafka.validate(at)?,
            delivery: raw.delivery.validate(at)?,
            telemetry: raw.telemetry.validate(otel, at)?,
            schema_registry: raw
                .schema_registry
                .map(|registry| registry.validate(at))
                .transpose()?,
            api: raw.api.validate(at)?,
        })
    }
}

/// The shipped default path may be absent (an installed binary run
/// elsewhere): then the embedded topology applies.
fn topology_path(path: PathBuf) -> Option<PathBuf> {
    if path == Path::new(DEFAULT_TOPOLOGY_PATH) {
        Some(path).filter(|p| p.is_file())
    } else {
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::time::Duration;

    use super::testing::{config_file, err, err_env, load, load_env, printed};
    use super::*;

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
    fn unknown_key_is_named_with_its_file() {
        let file = config_file(b"[delivery]\nmax_retries = 3\n");
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
        let e = err_env(&[("HOOKLINE__DELIVERY__RETRIES", "3")]);
        assert_eq!(
            e,
            "environment variable HOOKLINE__DELIVERY__RETRIES: delivery.retries: unknown key"
        );
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
    fn unreadable_file_keeps_the_io_error_as_its_source() {
        let file = config_file(b"topology = \"\xff\"\n");
        let error = Config::load_from(Some(file.path()), [], &Overrides::default()).unwrap_err();
        assert!(matches!(error, ConfigError::ReadFile { .. }), "{error:?}");
        let e = printed(error);
        assert!(e.contains("cannot read the configuration file: "), "{e}");
        assert!(e.contains("valid UTF-8"), "{e}");
    }

    #[test]
    fn parser_account_is_the_source_and_is_printed_once() {
        let error = load("[delivery]\nmax_attempts = \"eight\"\n").unwrap_err();
        let source = error
            .source()
            .expect("the deserializer's account")
            .to_string();
        assert_eq!(source, "invalid type: found string \"eight\", expected u32");
        assert!(
            error
                .to_string()
                .ends_with("delivery.max_attempts: cannot be parsed")
        );
        let e = printed(error);
        assert_eq!(e.matches("invalid type").count(), 1, "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn rule_broken_by_an_environment_variable_names_the_variable() {
        let e = load_env(
            "[delivery]\ntimeout = \"5s\"\n",
            &[("HOOKLINE__DELIVERY__TIMEOUT", "0s")],
        )
        .unwrap_err();
        assert!(
            matches!(
                &e,
                ConfigError::Invalid { origin: Origin::Env(name), key, .. }
                    if name == "HOOKLINE__DELIVERY__TIMEOUT" && key == "delivery.timeout"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn rule_broken_by_a_default_names_the_defaults() {
        // The file shortens the session timeout below the default drain
        // timeout: the value at fault is the default one.
        let e = err("[kafka]\nsession_timeout = \"10s\"\n");
        assert!(
            e.starts_with("built-in defaults: kafka.drain_timeout: "),
            "{e}"
        );
    }

    #[test]
    fn rule_broken_by_a_flag_names_the_flag() {
        let overrides = Overrides {
            bootstrap_servers: Some(" ".into()),
        };
        let e = Config::load_from(None, [], &overrides)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "command-line flag --bootstrap-servers: kafka.bootstrap_servers: must not be empty"
        );
    }

    #[test]
    fn rule_broken_in_the_file_names_the_file() {
        let file = config_file(b"[delivery]\nmax_attempts = 0\n");
        let e = Config::load_from(Some(file.path()), [], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "{}: delivery.max_attempts: must be at least 1",
                file.path().display()
            )
        );
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
