//! Helpers of the configuration tests: load a file's text, with environment
//! variables, and read an error as `main` prints it.

use std::io::Write;

use tempfile::NamedTempFile;

use super::{Config, ConfigError, Overrides};

pub(super) fn load(toml: &str) -> Result<Config, ConfigError> {
    load_env(toml, &[])
}

/// A configuration file holding `contents`, removed when dropped.
pub(super) fn config_file(contents: &[u8]) -> NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(contents).unwrap();
    file
}

/// Loads `toml` as the user's file, with `env` as the only environment.
pub(super) fn load_env(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = config_file(toml.as_bytes());
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load_from(Some(file.path()), env, &Overrides::default())
}

/// The error of loading `toml`, as `main` prints it.
pub(super) fn err(toml: &str) -> String {
    printed(load(toml).unwrap_err())
}

/// The error of loading an empty file with `env`, as `main` prints it.
pub(super) fn err_env(env: &[(&str, &str)]) -> String {
    printed(load_env("", env).unwrap_err())
}

/// An error and its sources on one line, the way `main` prints them
/// (`{:#}` of an `anyhow::Error`).
pub(super) fn printed(error: ConfigError) -> String {
    format!("{:#}", anyhow::Error::from(error))
}
