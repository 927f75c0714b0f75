//! The schema registry of the Avro tests (testcontainers/apicurio.sh), and
//! the third-party Avro producer (tests/avro/produce.py, Python
//! confluent-kafka with its AvroSerializer).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use url::Url;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `testcontainers/apicurio.sh COMMAND` for the registry on `port`,
/// panicking with the script's own one-line error when it fails.
fn apicurio(command: &str, port: u16) {
    let output = Command::new("bash")
        .arg(repo_root().join("testcontainers/apicurio.sh"))
        .arg(command)
        .env("APICURIO_PORT", port.to_string())
        .output()
        .expect("running testcontainers/apicurio.sh");
    assert!(
        output.status.success(),
        "apicurio.sh {command} (port {port}) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A registry's Confluent-compatible base URL.
fn ccompat_url(port: u16) -> Url {
    Url::parse(&format!("http://127.0.0.1:{port}/apis/ccompat/v7")).expect("a valid URL")
}

/// A schema registry on loopback.
pub struct Registry {
    pub url: Url,
    port: u16,
    /// Private registries belong to one test, which may stop them; they are
    /// removed when dropped. The shared one stays up for other tests.
    private: bool,
}

impl Registry {
    /// The registry every test may share (`HOOKLINE_TEST_REGISTRY_PORT`,
    /// default 8081), started on first use if it is not running. Tests
    /// that share it use subjects of their own and never stop it.
    pub fn shared() -> Registry {
        static STARTED: OnceLock<u16> = OnceLock::new();
        let port = *STARTED.get_or_init(|| {
            let port = std::env::var("HOOKLINE_TEST_REGISTRY_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(8081);
            apicurio("up", port);
            port
        });
        Registry {
            url: ccompat_url(port),
            port,
            private: false,
        }
    }

    /// A registry of the caller's own, on a free port, for a test that
    /// stops and starts it.
    pub fn private() -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        apicurio("up", port);
        Registry {
            url: ccompat_url(port),
            port,
            private: true,
        }
    }

    pub fn stop(&self) {
        assert!(self.private, "only a private registry may be stopped");
        apicurio("stop", self.port);
    }

    pub fn start(&self) {
        apicurio("start", self.port);
    }

    /// Sets the compatibility rule of `subject` (e.g. "BACKWARD"), which a
    /// fresh Apicurio does not enforce by default.
    pub async fn set_compatibility(&self, subject: &str, level: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/config/{subject}", self.url))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(format!(r#"{{"compatibility":"{level}"}}"#))
            .send()
            .await
            .expect("PUT /config/{subject}");
        assert!(
            response.status().is_success(),
            "setting {level} on {subject}: {}",
            response.status()
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if self.private {
            // Best effort: a leftover registry on a random port harms no
            // other test, and panicking in drop would hide the real failure.
            let _ = Command::new("bash")
                .arg(repo_root().join("testcontainers/apicurio.sh"))
                .arg("down")
                .env("APICURIO_PORT", self.port.to_string())
                .output();
        }
    }
}

/// The python of the Avro producer's venv, created on first use by
/// tests/avro/setup.sh.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo_root().join("tests/avro/setup.sh"))
            .output()
            .expect("running tests/avro/setup.sh");
        assert!(
            output.status.success(),
            "tests/avro/setup.sh failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// Produces `records` (tenant key, Avro value as JSON) to `topic` with
/// Python confluent-kafka's AvroSerializer and `schema`, which must be
/// registered under the topic's value subject. Returns where each record
/// landed.
pub fn produce_avro(
    bootstrap: &str,
    registry: &Url,
    topic: &str,
    schema: &str,
    records: &[(&str, serde_json::Value)],
) -> Vec<(i32, i64)> {
    let spec = serde_json::json!({
        "bootstrap": bootstrap,
        "registry": registry.as_str(),
        "topic": topic,
        "schema": schema,
        "records": records
            .iter()
            .map(|(key, value)| serde_json::json!({ "key": key, "value": value }))
            .collect::<Vec<_>>(),
    });
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/avro/produce.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting produce.py");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(spec.to_string().as_bytes())
        .expect("writing the spec to produce.py");
    let output = child.wait_with_output().expect("waiting for produce.py");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let ack: serde_json::Value = serde_json::from_str(line).expect("an ack line");
            (
                ack["partition"].as_i64().expect("partition") as i32,
                ack["offset"].as_i64().expect("offset"),
            )
        })
        .collect()
}
