//! hookline against a secured cluster, configured only through
//! `[kafka.properties]` exactly as `docs/operations.md` shows it: the two
//! examples are read from the guide, and only their paths and addresses are
//! replaced. For SASL_SSL (SCRAM-SHA-512, the password from a file, once
//! through the config key and once through the environment) and for TLS with
//! a client certificate: `setup-topics`, `tenants put`, `run` delivering one
//! event to a loopback receiver (sent with `hookline send`, over the same
//! listener), and `api` (a tenant created, then read back). Then what an
//! operator gets wrong: a refused password, a CA that did not sign the
//! broker's certificate, a client certificate the broker refuses; each is one
//! line naming it, exit 1, and no secret in the output.
//!
//! It runs a broker of its own with secure listeners (`KAFKA_SECURE=1
//! testcontainers/kafka.sh`; port `HOOKLINE_SECURE_KAFKA_PORT`, default
//! 9792, SASL_SSL on +2, SSL on +3) and stops it afterwards. The hookline
//! processes see only the secure listeners; the fixture that deletes the
//! test's topics uses the broker's PLAINTEXT listener.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::process::Spawned;
use crate::support::replica::{topic_names, write_topology};
use crate::support::{Broker, Receiver, hookline};

/// Bound on each `hookline` command that is expected to end.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const SCRAM_USER: &str = "hookline";
const SCRAM_PASSWORD: &str = "hookline-secret";
const ADMIN_TOKEN: &str = "secure-kafka-admin-token";

/// The paths and addresses of the guide's examples, replaced by the test's.
const DOC_SASL_BOOTSTRAP: &str = "broker-1:9093,broker-2:9093";
const DOC_SSL_BOOTSTRAP: &str = "broker-1:9094,broker-2:9094";
const DOC_PASSWORD_FILE: &str = "/run/secrets/kafka/password";
const DOC_CA: &str = "/etc/hookline/kafka-ca/ca.crt";
const DOC_CLIENT_CERT: &str = "/etc/hookline/kafka-client/tls.crt";
const DOC_CLIENT_KEY: &str = "/etc/hookline/kafka-client/tls.key";

/// A broker with secure listeners of the test's own, stopped and its data
/// deleted when dropped (also when the test fails).
struct SecureBroker {
    port: u16,
    run_dir: PathBuf,
}

impl SecureBroker {
    fn up() -> Self {
        let port: u16 = std::env::var("HOOKLINE_SECURE_KAFKA_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(9792);
        let cache = std::env::var_os("HOOKLINE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                    .join(".cache/hookline")
            });
        let broker = Self {
            port,
            run_dir: cache.join(format!("kafka-run-{port}")),
        };
        broker.kafka_sh("up");
        broker
    }

    fn kafka_sh(&self, action: &str) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testcontainers/kafka.sh");
        let output = Command::new("bash")
            .arg(script)
            .arg(action)
            .env("KAFKA_SECURE", "1")
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", (self.port + 1).to_string())
            .env("KAFKA_RUN_DIR", &self.run_dir)
            .env("KAFKA_SCRAM_USER", SCRAM_USER)
            .env("KAFKA_SCRAM_PASSWORD", SCRAM_PASSWORD)
            .output()
            .expect("run kafka.sh");
        assert!(
            output.status.success(),
            "KAFKA_SECURE=1 kafka.sh {action} on {} failed:\n{}",
            self.port,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn plaintext(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn sasl_ssl(&self) -> String {
        format!("127.0.0.1:{}", self.port + 2)
    }

    fn ssl(&self) -> String {
        format!("127.0.0.1:{}", self.port + 3)
    }

    fn tls(&self, file: &str) -> PathBuf {
        self.run_dir.join("tls").join(file)
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        self.kafka_sh("down");
    }
}

/// The fenced TOML example of the operations guide that sets
/// `"security.protocol" = "<protocol>"`.
fn guide_example(protocol: &str) -> String {
    let guide = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
    )
    .expect("read docs/operations.md");
    let wanted = format!("\"security.protocol\" = \"{protocol}\"");
    guide
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split_once("\n```").map(|(toml, _)| toml))
        .find(|toml| toml.lines().any(|line| line.trim() == wanted))
        .unwrap_or_else(|| panic!("docs/operations.md has no TOML example with {wanted}"))
        .to_string()
}

/// `example` with each `(from, to)` replaced; every `from` must be there,
/// so that the guide cannot drift from what is tested.
fn adapt(example: &str, replacements: &[(&str, &str)]) -> String {
    let mut text = example.to_string();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "the guide's example no longer has `{from}`:\n{example}"
        );
        text = text.replace(from, to);
    }
    text
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

/// A CA of no one's, and a client certificate it signed, made with openssl
/// in `dir`: (ca.crt, client.crt, client.key).
fn stranger_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (scripts/setup.sh test)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=stranger CA",
        "-keyout",
        "stranger-ca.key",
        "-out",
        "stranger-ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=hookline",
        "-keyout",
        "stranger-client.key",
        "-out",
        "stranger-client.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        "stranger-client.csr",
        "-CA",
        "stranger-ca.crt",
        "-CAkey",
        "stranger-ca.key",
        "-CAcreateserial",
        "-out",
        "stranger-client.crt",
    ]);
    (
        dir.join("stranger-ca.crt"),
        dir.join("stranger-client.crt"),
        dir.join("stranger-client.key"),
    )
}

/// How the test's `hookline` processes are set up: its topology, group,
/// loopback destinations allowed; the Kafka security comes from `config`.
struct Setup<'a> {
    broker: &'a Broker,
    topology: &'a Path,
    bootstrap: &'a str,
}

impl Setup<'_> {
    fn command(&self, config: &Path, args: &[&str]) -> Command {
        let mut command = hookline(self.bootstrap);
        command
            .arg("--config")
            .arg(config)
            .args(args)
            .env("HOOKLINE__TOPOLOGY", self.topology)
            .env("HOOKLINE__KAFKA__GROUP_ID", self.broker.name("group"))
            .env("HOOKLINE__KAFKA__SESSION_TIMEOUT", "6s")
            .env("HOOKLINE__KAFKA__DRAIN_TIMEOUT", "3s")
            .env("HOOKLINE__KAFKA__ADMIN_TIMEOUT", "20s")
            .env("HOOKLINE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true")
            .env("HOOKLINE__TELEMETRY__LISTEN", "127.0.0.1:0")
            .env("HOOKLINE__API__ADMIN_TOKEN", ADMIN_TOKEN);
        command
    }
}

/// Runs `command` to its end, within [`COMMAND_TIMEOUT`]: exit code,
/// stdout, stderr.
async fn finish(command: Command) -> (Option<i32>, String, String) {
    let mut process = Spawned::start(command);
    let status = process.wait(COMMAND_TIMEOUT).await;
    // The pipes are read on threads of their own: let them catch up.
    tokio::time::sleep(Duration::from_millis(100)).await;
    (
        status.code(),
        process.stdout_lines().join("\n"),
        process.stderr(),
    )
}

/// Runs a command that must succeed; returns its stdout.
async fn succeeds(what: &str, command: Command) -> String {
    let (code, stdout, stderr) = finish(command).await;
    assert_eq!(code, Some(0), "{what}:\n{stdout}\n{stderr}");
    stdout
}

/// Runs a command that must fail on its Kafka connection: exit 1, and its
/// last line on stderr is the one-line error starting with `error_start`;
/// librdkafka's `reason` for it is in that line only (not logged besides).
/// No `secret` anywhere in the output.
async fn refused(what: &str, command: Command, error_start: &str, reason: &str, secret: &str) {
    let (code, stdout, stderr) = finish(command).await;
    assert_eq!(code, Some(1), "{what}:\n{stdout}\n{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with(error_start) && last.contains(reason),
        "{what}: the last line is not `{error_start}…{reason}…`:\n{stderr}"
    );
    assert_eq!(
        stderr.matches(reason).count(),
        1,
        "{what}: `{reason}` is logged besides the error:\n{stderr}"
    );
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "{what}: the secret is in the output:\n{stdout}\n{stderr}"
    );
}

/// `setup-topics`, `tenants put`, `run` delivering an event sent with
/// `hookline send`, and the tenant API, all with `config`; `run_config`
/// for the replica.
async fn round_trip(setup: &Setup<'_>, dir: &Path, config: &Path, run_config: &Command) {
    std::fs::create_dir_all(dir).unwrap();
    let applied = succeeds("setup-topics", setup.command(config, &["setup-topics"])).await;
    assert!(applied.contains("Applied"), "{applied}");
    succeeds(
        "setup-topics --check",
        setup.command(config, &["setup-topics", "--check"]),
    )
    .await;

    let receiver = Receiver::ok().await;
    let key = hookline::crypto::PrivateKey::generate(2048).unwrap();
    let public_key = write(&dir.join("public.pem"), &key.public_key().to_spki_pem());
    let put = succeeds(
        "tenants put",
        setup.command(
            config,
            &[
                "tenants",
                "put",
                "acme",
                "--url",
                &receiver.url("/acme"),
                "--public-key",
                public_key.to_str().unwrap(),
                "--generate-secret",
            ],
        ),
    )
    .await;
    assert!(put.contains("tenant acme written"), "{put}");

    let mut replica = Spawned::start(clone_command(run_config));
    replica
        .wait_for_log("replica started", Duration::from_secs(60))
        .await;
    succeeds(
        "send",
        setup.command(
            config,
            &[
                "send",
                "acme",
                "--type",
                "order.created",
                "--data",
                r#"{"order": 42}"#,
                "--id",
                "evt-secure-1",
            ],
        ),
    )
    .await;
    let ids = receiver
        .wait_webhook_ids("/acme", 1, Duration::from_secs(60))
        .await;
    assert_eq!(ids, ["evt-secure-1"], "{}", replica.stderr());
    replica.signal("TERM");
    let exit = replica.wait(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}:\n{}", replica.stderr());

    let api = Spawned::start(setup.command(config, &["api", "--listen", "127.0.0.1:0"]));
    let addr = api
        .address_after("tenant API listening addr=", Duration::from_secs(60))
        .await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("http://{addr}/v1/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"id": "beta", "url": receiver.url("/beta")}))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(created.status().as_u16(), 201, "{}", api.stderr());
    let created: serde_json::Value = created.json().await.unwrap();
    let api_key = created["api_key"].as_str().expect("an API key").to_string();
    let read = client
        .get(format!("http://{addr}/v1/tenants/beta"))
        .bearer_auth(&api_key)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(read.status().as_u16(), 200, "{}", api.stderr());
    let read: serde_json::Value = read.json().await.unwrap();
    assert_eq!(read["url"], receiver.url("/beta"), "{read}");
    api.signal("TERM");
}

/// `Command` is not `Clone`; the replica's command is rebuilt from its
/// program, arguments and environment.
fn clone_command(command: &Command) -> Command {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => copy.env(name, value),
            None => copy.env_remove(name),
        };
    }
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_and_mtls_configured_as_the_guide_shows() {
    let started = Instant::now();
    let secure = SecureBroker::up();
    let broker = Broker::at("secure", secure.plaintext());
    let dir = tempfile::tempdir().unwrap();
    let (stranger_ca, stranger_cert, stranger_key) = stranger_ca(dir.path());
    let ca = secure.tls("ca.crt");

    // SASL_SSL, the password in a file named in the configuration.
    let password_file = write(
        &dir.path().join("kafka-password"),
        &format!("{SCRAM_PASSWORD}\n"),
    );
    let sasl_example = guide_example("SASL_SSL");
    let sasl_bootstrap = secure.sasl_ssl();
    let sasl = |password: &Path, ca: &Path| {
        adapt(
            &sasl_example,
            &[
                (DOC_SASL_BOOTSTRAP, &sasl_bootstrap),
                (DOC_PASSWORD_FILE, password.to_str().unwrap()),
                (DOC_CA, ca.to_str().unwrap()),
            ],
        )
    };
    let sasl_config = write(&dir.path().join("sasl.toml"), &sasl(&password_file, &ca));
    let topics = topic_names(&broker);
    let topology = write_topology(dir.path(), &topics, 2);
    let setup = Setup {
        broker: &broker,
        topology: &topology,
        bootstrap: &sasl_bootstrap,
    };
    // The replica takes the password file from the environment instead, as
    // the guide shows too.
    let without_password: String = sasl(&password_file, &ca)
        .lines()
        .filter(|line| !line.contains("sasl.password_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    let env_config = write(&dir.path().join("sasl-env.toml"), &without_password);
    let mut run = setup.command(&env_config, &["run"]);
    run.env(
        "HOOKLINE__KAFKA__PROPERTIES__SASL.PASSWORD_FILE",
        &password_file,
    );
    round_trip(&setup, &dir.path().join("sasl"), &sasl_config, &run).await;

    // The mistakes, each with every command that must report it.
    let wrong_password = "not-the-password-0451";
    let wrong_file = write(
        &dir.path().join("wrong-password"),
        &format!("{wrong_password}\n"),
    );
    let wrong_config = write(&dir.path().join("wrong.toml"), &sasl(&wrong_file, &ca));
    let sasl_refused = format!("error: kafka: SASL authentication failed for user `{SCRAM_USER}`");
    for args in [
        &["setup-topics"][..],
        &[
            "tenants",
            "put",
            "acme",
            "--url",
            "http://127.0.0.1:9/x",
            "--public-key",
        ],
        &["run"],
        &["api", "--listen", "127.0.0.1:0"],
        &["tenants", "get", "acme"],
        &["dlq", "stats"],
    ] {
        let mut args = args.to_vec();
        let public_key = dir.path().join("sasl/public.pem");
        if args.contains(&"put") {
            args.push(public_key.to_str().unwrap());
        }
        refused(
            &format!("wrong password: {args:?}"),
            setup.command(&wrong_config, &args),
            &sasl_refused,
            "invalid credentials",
            wrong_password,
        )
        .await;
    }
    let stranger_config = write(
        &dir.path().join("stranger.toml"),
        &sasl(&password_file, &stranger_ca),
    );
    for args in [&["setup-topics"][..], &["run"], &["tenants", "get", "acme"]] {
        refused(
            &format!("a CA that did not sign the broker: {args:?}"),
            setup.command(&stranger_config, args),
            "error: kafka: TLS handshake with 127.0.0.1:",
            "certificate verify failed",
            SCRAM_PASSWORD,
        )
        .await;
    }
    let (_, _, stderr) = finish(setup.command(&stranger_config, &["setup-topics"])).await;
    assert!(
        stderr.contains("failed: certificate verify failed (check ssl.ca.location"),
        "{stderr}"
    );

    // TLS with a client certificate, on topics of its own.
    let ssl_bootstrap = secure.ssl();
    let ssl_example = guide_example("SSL");
    let mtls = |cert: &Path, key: &Path| {
        adapt(
            &ssl_example,
            &[
                (DOC_SSL_BOOTSTRAP, &ssl_bootstrap),
                (DOC_CA, ca.to_str().unwrap()),
                (DOC_CLIENT_CERT, cert.to_str().unwrap()),
                (DOC_CLIENT_KEY, key.to_str().unwrap()),
            ],
        )
    };
    let mtls_config = write(
        &dir.path().join("mtls.toml"),
        &mtls(&secure.tls("client.crt"), &secure.tls("client.key")),
    );
    let mtls_broker = Broker::at("secure-mtls", secure.plaintext());
    let mtls_topics = topic_names(&mtls_broker);
    let mtls_dir = dir.path().join("mtls");
    std::fs::create_dir_all(&mtls_dir).unwrap();
    let mtls_topology = write_topology(&mtls_dir, &mtls_topics, 2);
    let mtls_setup = Setup {
        broker: &mtls_broker,
        topology: &mtls_topology,
        bootstrap: &ssl_bootstrap,
    };
    let run = mtls_setup.command(&mtls_config, &["run"]);
    round_trip(&mtls_setup, &mtls_dir, &mtls_config, &run).await;

    let refused_config = write(
        &dir.path().join("mtls-stranger.toml"),
        &mtls(&stranger_cert, &stranger_key),
    );
    for args in [&["setup-topics"][..], &["run"], &["tenants", "get", "acme"]] {
        refused(
            &format!("a client certificate the broker refuses: {args:?}"),
            mtls_setup.command(&refused_config, args),
            "error: kafka: TLS handshake with 127.0.0.1:",
            "alert bad certificate",
            "PRIVATE KEY",
        )
        .await;
    }
    let (_, _, stderr) = finish(mtls_setup.command(&refused_config, &["setup-topics"])).await;
    assert!(
        stderr.contains("the broker refused the client certificate"),
        "{stderr}"
    );
    eprintln!("secure_kafka: done in {:?}", started.elapsed());
    drop((broker, mtls_broker));
}
