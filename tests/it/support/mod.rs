//! Shared fixtures: a per-test view of the broker, a recording HTTP
//! receiver, the schema registry and an Avro producer, and a handle on the
//! `hookline` binary.

#![allow(dead_code)] // each test uses its own subset of the helpers

pub mod broker;
pub mod process;
pub mod proxy;
pub mod receiver;
pub mod registry;
pub mod replica;

use std::path::PathBuf;
use std::process::Command;

#[allow(unused_imports)] // re-exported for the tests that need them
pub use broker::{Broker, Record};
#[allow(unused_imports)]
pub use receiver::{Behaviour, Received, Receiver};

/// The `hookline` binary built for this test run.
pub fn hookline_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hookline"))
}

/// A `hookline` command pointed at the test broker, with the environment
/// cleared of `HOOKLINE__` overrides that a developer may have exported.
pub fn hookline(bootstrap: &str) -> Command {
    let mut command = Command::new(hookline_bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("HOOKLINE__") {
            command.env_remove(key);
        }
    }
    command.env("HOOKLINE__KAFKA__BOOTSTRAP_SERVERS", bootstrap);
    command
}

/// A validated configuration for in-process tests: the shipped defaults with
/// the test broker as bootstrap server.
pub fn config(bootstrap: &str) -> hookline::config::Config {
    hookline::config::Config::load_from(
        None,
        [(
            "HOOKLINE__KAFKA__BOOTSTRAP_SERVERS".to_string(),
            bootstrap.to_string(),
        )],
        &hookline::config::Overrides::default(),
    )
    .expect("the shipped configuration is valid")
}

/// A broker of the test's own, started (or reused) on the port that the
/// environment variable `port_var` names, else `default_port`; returns the
/// port and a fixture on it.
pub fn own_broker(test: &str, port_var: &str, default_port: u16) -> (u16, Broker) {
    let port: u16 = std::env::var(port_var)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default_port);
    own_kafka("up", port);
    (port, Broker::at(test, format!("127.0.0.1:{port}")))
}

/// Runs `testcontainers/kafka.sh ACTION` for a broker of the test's own on
/// `port` (controller on `port + 1`): tests that stop or restart a broker
/// must never touch the shared one. `stop` and `start` keep its data.
pub fn own_kafka(action: &str, port: u16) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testcontainers/kafka.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg(action)
        .env("KAFKA_PORT", port.to_string())
        .env("KAFKA_CONTROLLER_PORT", (port + 1).to_string())
        .output()
        .expect("run kafka.sh");
    assert!(
        output.status.success(),
        "kafka.sh {action} on {port} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
