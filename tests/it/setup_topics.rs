//! `hookline setup-topics` and the topic check of `hookline run`, against
//! the real broker. Every test declares topics with names of its own in a
//! topology file of its own, runs the real binary, and inspects the result
//! with an admin client of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::support::process::Spawned;
use crate::support::{Broker, hookline};

/// A test's topics, its topology files, and a way to look at the cluster.
struct Fixture {
    broker: Broker,
    dir: tempfile::TempDir,
    admin: AdminClient<DefaultClientContext>,
    events: String,
    tenants: String,
    dlq: String,
}

/// What a `hookline` run printed and how it exited.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// A topic as the test's own admin client sees it.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    partitions: usize,
    replication_factor: usize,
}

impl Fixture {
    fn new(test: &str) -> Self {
        let broker = Broker::new(test);
        let admin = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("allow.auto.create.topics", "false")
            .create()
            .expect("admin client");
        let (events, tenants, dlq) = (
            broker.name("events"),
            broker.name("tenants"),
            broker.name("dlq"),
        );
        // Whatever a test makes `hookline` create is deleted with the
        // fixture, whether or not it was created.
        for topic in [&events, &tenants, &dlq] {
            broker.adopt_topic(topic);
        }
        Self {
            broker,
            dir: tempfile::tempdir().expect("temporary directory"),
            admin,
            events,
            tenants,
            dlq,
        }
    }

    /// A topology over this fixture's topic names. `events_keys` goes into
    /// the events table (partitions, replication factor), `events_configs`
    /// into its configs.
    fn topology(&self, file: &str, events_keys: &str, events_configs: &str) -> PathBuf {
        let text = format!(
            r#"
[events]
name = "{events}"
{events_keys}
[events.configs]
{events_configs}

[tenants]
name = "{tenants}"
partitions = 1
[tenants.configs]
"cleanup.policy" = "compact"
"min.cleanable.dirty.ratio" = 0.1

[dlq]
name = "{dlq}"
partitions = 2
"#,
            events = self.events,
            tenants = self.tenants,
            dlq = self.dlq,
        );
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("write topology");
        path
    }

    /// The usual topology: 3 event partitions, replication factor 1, a
    /// seven-day retention.
    fn default_topology(&self) -> PathBuf {
        self.topology(
            "topics.toml",
            "partitions = 3\nreplication_factor = 1",
            "\"retention.ms\" = 604800000",
        )
    }

    fn hookline(&self, args: &[&str], topology: &Path) -> Outcome {
        let output = hookline(&self.broker.bootstrap)
            .args(args)
            .arg("--topology")
            .arg(topology)
            .output()
            .expect("run hookline");
        Outcome {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }

    fn setup_topics(&self, topology: &Path, flags: &[&str]) -> Outcome {
        let mut args = vec!["setup-topics"];
        args.extend_from_slice(flags);
        self.hookline(&args, topology)
    }

    /// Partitions and replication factor of `topic`, `None` when it does not
    /// exist.
    fn shape(&self, topic: &str) -> Option<Shape> {
        let metadata = self
            .admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let found = metadata.topics().iter().find(|t| t.name() == topic)?;
        if found.error().is_some() {
            return None;
        }
        Some(Shape {
            partitions: found.partitions().len(),
            replication_factor: found
                .partitions()
                .iter()
                .map(|p| p.replicas().len())
                .min()
                .unwrap_or(0),
        })
    }

    /// The configs set on `topic` itself (dynamic topic configs).
    async fn topic_configs(&self, topic: &str) -> BTreeMap<String, String> {
        let results = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
            .await
            .expect("describe configs");
        let resource = results
            .into_iter()
            .next()
            .expect("one result")
            .expect("topic configs");
        resource
            .entries
            .into_iter()
            .filter(|e| e.source == ConfigSource::DynamicTopic)
            .filter_map(|e| Some((e.name, e.value?)))
            .collect()
    }

    /// Creates one of the fixture's topics directly, as something other
    /// than hookline would.
    async fn create_topic(&self, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
        let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            new_topic = new_topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .expect("create topics")
        {
            result.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
        }
    }

    /// Changes configs by hand the way an operator's tool might: with the
    /// legacy AlterConfigs, which replaces the topic's whole config.
    async fn replace_topic_configs(&self, topic: &str, configs: &[(&str, &str)]) {
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
        for (key, value) in configs {
            alter = alter.set(key, value);
        }
        let results = self
            .admin
            .alter_configs([&alter], &AdminOptions::new())
            .await
            .expect("alter configs");
        for result in results {
            result.unwrap_or_else(|(r, e)| panic!("altering {r:?}: {e}"));
        }
        // The controller acknowledges the change before every broker's
        // metadata has it; wait until what a describe reads shows it.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let current = self.topic_configs(topic).await;
            let applied = configs
                .iter()
                .all(|(key, value)| current.get(*key).map(String::as_str) == Some(*value));
            if applied {
                return;
            }
            assert!(Instant::now() < deadline, "{topic}: still {current:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn fresh_cluster_gets_every_topic_as_declared_and_a_second_run_changes_nothing() {
    let fx = Fixture::new("fresh");
    let topology = fx.default_topology();

    let first = fx.setup_topics(&topology, &[]);
    assert_eq!(first.code, Some(0), "{first:?}");
    for topic in [&fx.events, &fx.tenants, &fx.dlq] {
        let row = first.stdout.lines().find(|l| l.starts_with(topic.as_str()));
        assert!(
            row.is_some_and(|r| r.contains("create")),
            "{topic}: {first:?}"
        );
    }
    assert!(first.stdout.contains("Applied: 3 created."), "{first:?}");

    assert_eq!(
        fx.shape(&fx.events),
        Some(Shape {
            partitions: 3,
            replication_factor: 1
        })
    );
    assert_eq!(fx.shape(&fx.tenants).map(|s| s.partitions), Some(1));
    assert_eq!(fx.shape(&fx.dlq).map(|s| s.partitions), Some(2));
    let events = fx.topic_configs(&fx.events).await;
    assert_eq!(
        events.get("retention.ms").map(String::as_str),
        Some("604800000")
    );
    let tenants = fx.topic_configs(&fx.tenants).await;
    assert_eq!(
        tenants.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(
        tenants.get("min.cleanable.dirty.ratio").map(String::as_str),
        Some("0.1")
    );

    let second = fx.setup_topics(&topology, &[]);
    assert_eq!(second.code, Some(0), "{second:?}");
    assert!(
        second
            .stdout
            .contains("In sync: all 3 topics match the topology, nothing to change."),
        "{second:?}"
    );
    assert!(!second.stderr.contains("creating"), "{second:?}");

    let check = fx.setup_topics(&topology, &["--check"]);
    assert_eq!(check.code, Some(0), "{check:?}");
}

#[tokio::test]
async fn shipped_topology_is_accepted_by_kafka_and_converges() {
    let fx = Fixture::new("shipped");
    let shipped = ::hookline::topology::EMBEDDED
        .replace("name = \"events\"", &format!("name = \"{}\"", fx.events))
        .replace("name = \"tenants\"", &format!("name = \"{}\"", fx.tenants))
        .replace("name = \"webhook.dlq\"", &format!("name = \"{}\"", fx.dlq));
    let path = fx.dir.path().join("shipped.toml");
    std::fs::write(&path, shipped).unwrap();

    let apply = fx.setup_topics(&path, &[]);
    assert_eq!(apply.code, Some(0), "{apply:?}");
    assert!(apply.stdout.contains("Applied: 3 created."), "{apply:?}");
    // Kafka spells every shipped value the way the file does (or an
    // equivalent way), so the shipped topology is in sync right after.
    let check = fx.setup_topics(&path, &["--check"]);
    assert_eq!(check.code, Some(0), "{check:?}");
    let tenants = fx.topic_configs(&fx.tenants).await;
    assert_eq!(
        tenants.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(fx.shape(&fx.events).map(|s| s.partitions), Some(12));
}

#[tokio::test]
async fn dry_run_and_check_print_the_plan_and_create_nothing() {
    let fx = Fixture::new("dry-run");
    let topology = fx.default_topology();

    let dry_run = fx.setup_topics(&topology, &["--dry-run"]);
    assert_eq!(dry_run.code, Some(0), "{dry_run:?}");
    assert!(dry_run.stdout.contains(&fx.events), "{dry_run:?}");
    assert!(
        dry_run
            .stdout
            .contains("Dry run, nothing changed: 3 to create."),
        "{dry_run:?}"
    );

    let check = fx.setup_topics(&topology, &["--check"]);
    assert_eq!(check.code, Some(2), "{check:?}");
    assert!(
        check.stdout.contains("Differs from the topology"),
        "{check:?}"
    );

    for topic in [&fx.events, &fx.tenants, &fx.dlq] {
        assert_eq!(fx.shape(topic), None, "{topic} was created");
    }
}

#[tokio::test]
async fn config_changed_by_hand_is_caught_by_check_and_fixed_keeping_unmanaged_configs() {
    let fx = Fixture::new("drift");
    let topology = fx.default_topology();
    assert_eq!(fx.setup_topics(&topology, &[]).code, Some(0));

    // An operator shortens the retention and, on purpose, raises the
    // record size limit, which the topology does not manage.
    fx.replace_topic_configs(
        &fx.events,
        &[("retention.ms", "1000"), ("max.message.bytes", "5000000")],
    )
    .await;
    let changed = fx.topic_configs(&fx.events).await;
    assert_eq!(
        changed.get("retention.ms").map(String::as_str),
        Some("1000")
    );

    let check = fx.setup_topics(&topology, &["--check"]);
    assert_eq!(check.code, Some(2), "{check:?}");
    let row = check
        .stdout
        .lines()
        .find(|l| l.starts_with(fx.events.as_str()))
        .unwrap_or_default();
    assert!(row.contains("alter configs"), "{check:?}");
    assert!(row.contains("retention.ms: 1000 -> 604800000"), "{check:?}");
    assert!(!check.stdout.contains("max.message.bytes"), "{check:?}");

    let apply = fx.setup_topics(&topology, &[]);
    assert_eq!(apply.code, Some(0), "{apply:?}");
    assert!(
        apply.stdout.contains("Applied: 1 reconfigured"),
        "{apply:?}"
    );

    let fixed = fx.topic_configs(&fx.events).await;
    assert_eq!(
        fixed.get("retention.ms").map(String::as_str),
        Some("604800000")
    );
    assert_eq!(
        fixed.get("max.message.bytes").map(String::as_str),
        Some("5000000"),
        "the unmanaged config must survive the fix: {fixed:?}"
    );
    assert_eq!(fx.setup_topics(&topology, &["--check"]).code, Some(0));
}

#[tokio::test]
async fn config_change_the_broker_refuses_is_an_error_with_its_reason() {
    let fx = Fixture::new("bad-config");
    let topology = fx.default_topology();
    assert_eq!(fx.setup_topics(&topology, &[]).code, Some(0));

    let bad = fx.topology(
        "bad.toml",
        "partitions = 3\nreplication_factor = 1",
        "\"retention.ms\" = \"soon\"",
    );
    let outcome = fx.setup_topics(&bad, &[]);
    assert_eq!(outcome.code, Some(1), "{outcome:?}");
    let error = outcome
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        error.contains(&format!(
            "altering the configs of topic `{}` failed",
            fx.events
        )),
        "{outcome:?}"
    );
    assert!(error.contains("retention.ms"), "{outcome:?}");
    let configs = fx.topic_configs(&fx.events).await;
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("604800000")
    );
}

#[tokio::test]
async fn partitions_grow_when_the_topology_declares_more() {
    let fx = Fixture::new("grow");
    let small = fx.topology("small.toml", "partitions = 2", "");
    assert_eq!(fx.setup_topics(&small, &[]).code, Some(0));
    assert_eq!(fx.shape(&fx.events).map(|s| s.partitions), Some(2));

    let large = fx.topology("large.toml", "partitions = 5", "");
    let check = fx.setup_topics(&large, &["--check"]);
    assert_eq!(check.code, Some(2), "{check:?}");
    let apply = fx.setup_topics(&large, &[]);
    assert_eq!(apply.code, Some(0), "{apply:?}");
    assert!(apply.stdout.contains("2 -> 5 partitions"), "{apply:?}");
    assert!(
        apply
            .stdout
            .contains("Applied: 1 grown, 2 already in sync."),
        "{apply:?}"
    );
    assert_eq!(fx.shape(&fx.events).map(|s| s.partitions), Some(5));
    assert_eq!(fx.setup_topics(&large, &["--check"]).code, Some(0));
}

#[tokio::test]
async fn shrinking_is_refused_naming_topic_and_counts_and_nothing_is_changed() {
    let fx = Fixture::new("shrink");
    let four = fx.topology(
        "four.toml",
        "partitions = 4",
        "\"retention.ms\" = 604800000",
    );
    assert_eq!(fx.setup_topics(&four, &[]).code, Some(0));

    // Fewer partitions, and a config change that must not be applied either.
    let two = fx.topology("two.toml", "partitions = 2", "\"retention.ms\" = 3600000");
    let outcome = fx.setup_topics(&two, &[]);
    assert_eq!(outcome.code, Some(1), "{outcome:?}");
    assert_eq!(outcome.stderr.lines().count(), 1, "{outcome:?}");
    let expected = format!(
        "topic `{}` has 4 partitions and the topology wants 2, but Kafka cannot remove partitions",
        fx.events
    );
    assert!(outcome.stderr.contains(&expected), "{outcome:?}");
    assert!(outcome.stdout.contains("shrink refused"), "{outcome:?}");

    assert_eq!(fx.shape(&fx.events).map(|s| s.partitions), Some(4));
    let configs = fx.topic_configs(&fx.events).await;
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("604800000")
    );
}

#[tokio::test]
async fn replication_factor_difference_is_reported_and_left_alone() {
    let fx = Fixture::new("rf-mismatch");
    let one = fx.default_topology();
    assert_eq!(fx.setup_topics(&one, &[]).code, Some(0));

    let two = fx.topology(
        "rf2.toml",
        "partitions = 3\nreplication_factor = 2",
        "\"retention.ms\" = 604800000",
    );
    let apply = fx.setup_topics(&two, &[]);
    assert_eq!(apply.code, Some(0), "{apply:?}");
    let row = apply
        .stdout
        .lines()
        .find(|l| l.starts_with(fx.events.as_str()))
        .unwrap_or_default();
    assert!(row.contains("replication factor differs"), "{apply:?}");
    assert!(row.contains("1 on the cluster, 2 declared"), "{apply:?}");
    assert!(apply.stdout.contains("Nothing to change"), "{apply:?}");

    let check = fx.setup_topics(&two, &["--check"]);
    assert_eq!(check.code, Some(2), "{check:?}");
    assert_eq!(fx.shape(&fx.events).map(|s| s.replication_factor), Some(1));
}

#[tokio::test]
async fn creating_a_topic_with_more_replicas_than_brokers_fails_clearly() {
    let fx = Fixture::new("rf-too-high");
    let topology = fx.topology(
        "rf2.toml",
        "partitions = 3\nreplication_factor = 2",
        "\"retention.ms\" = 604800000",
    );
    let outcome = fx.setup_topics(&topology, &[]);
    assert_eq!(outcome.code, Some(1), "{outcome:?}");
    let error = outcome
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        error.contains(&format!("creating topic `{}` failed", fx.events)),
        "{outcome:?}"
    );
    assert!(error.contains("replication factor of 2"), "{outcome:?}");
    assert_eq!(fx.shape(&fx.events), None);
}

#[test]
fn invalid_topology_file_is_one_line_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topics.toml");
    let embedded = ::hookline::topology::EMBEDDED;
    std::fs::write(
        &path,
        embedded.replacen("partitions = 12", "partitions = 0", 1),
    )
    .unwrap();
    // The file is refused before any connection: the address is unused.
    let output = hookline("127.0.0.1:1")
        .args(["setup-topics", "--topology"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("events.partitions: must be at least 1"),
        "{stderr}"
    );

    let missing = dir.path().join("absent.toml");
    let output = hookline("127.0.0.1:1")
        .args(["run", "--topology"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("absent.toml: cannot read the topology file"),
        "{stderr}"
    );
}

#[test]
fn unreachable_broker_is_one_line_and_exit_1() {
    // Nothing listens on port 1; a short timeout keeps the test quick.
    let output = hookline("127.0.0.1:1")
        .env("HOOKLINE__KAFKA__ADMIN_TIMEOUT", "2s")
        .args(["setup-topics", "--check"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot reach Kafka at 127.0.0.1:1 within 2s"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn run_refuses_to_start_without_its_topics() {
    let fx = Fixture::new("run-missing");
    let topology = fx.default_topology();
    let outcome = fx.hookline(&["run"], &topology);
    assert_eq!(outcome.code, Some(1), "{outcome:?}");
    assert_eq!(outcome.stderr.lines().count(), 1, "{outcome:?}");
    for (role, topic) in [
        ("events", &fx.events),
        ("tenants", &fx.tenants),
        ("dlq", &fx.dlq),
    ] {
        assert!(
            outcome
                .stderr
                .contains(&format!("the {role} topic `{topic}` does not exist")),
            "{outcome:?}"
        );
    }
    assert!(
        outcome.stderr.contains("run `hookline setup-topics`"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn run_refuses_to_start_with_an_uncompacted_tenants_topic() {
    let fx = Fixture::new("run-uncompacted");
    fx.create_topic(&fx.events, 3, &[]).await;
    fx.create_topic(&fx.tenants, 1, &[("cleanup.policy", "delete")])
        .await;
    fx.create_topic(&fx.dlq, 2, &[]).await;
    let topology = fx.default_topology();

    let outcome = fx.hookline(&["run"], &topology);
    assert_eq!(outcome.code, Some(1), "{outcome:?}");
    assert!(
        outcome.stderr.contains(&format!(
            "the tenants topic `{}` is not compacted (cleanup.policy=delete",
            fx.tenants
        )),
        "{outcome:?}"
    );
    assert!(
        outcome.stderr.contains("run `hookline setup-topics`"),
        "{outcome:?}"
    );
    assert!(!outcome.stderr.contains("does not exist"), "{outcome:?}");

    // setup-topics fixes it, after which the replica starts, and stops
    // cleanly on SIGTERM.
    assert_eq!(fx.setup_topics(&topology, &[]).code, Some(0));
    let mut command = hookline(&fx.broker.bootstrap);
    command
        .env("HOOKLINE__KAFKA__GROUP_ID", fx.broker.name("group"))
        .args(["run", "--topology"])
        .arg(&topology);
    let mut replica = Spawned::start(command);
    replica
        .wait_for_log("replica started", Duration::from_secs(30))
        .await;
    assert!(
        !replica.stderr().contains("not ready"),
        "{}",
        replica.stderr()
    );
    replica.signal("TERM");
    let status = replica.wait(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", replica.stderr());
    assert!(replica.stderr().contains("stopped"), "{}", replica.stderr());
}
