//! A replica of `hookline run` inside the test process (the library's
//! runner, exactly what the binary runs), with its own topics, group and
//! tenants.

use std::time::{Duration, Instant};

use hookline::config::Config;
use hookline::crypto::{KeyRing, PrivateKey, SigningSecret};
use hookline::delivery::runner::{self, ReplicaState, Topics};
use hookline::receiver::Receiver as Opener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Broker, Received};

/// The topics of one test, created on the broker.
pub async fn create_topics(broker: &Broker, partitions: i32) -> Topics {
    let topics = Topics {
        events: broker.name("events"),
        tenants: broker.name("tenants"),
        dlq: broker.name("dlq"),
    };
    broker.create_topic(&topics.events, partitions, &[]).await;
    broker
        .create_topic(&topics.tenants, 1, &[("cleanup.policy", "compact")])
        .await;
    broker.create_topic(&topics.dlq, partitions, &[]).await;
    topics
}

/// Configuration for a test replica: quick backoffs, a short session, the
/// test's own group, loopback destinations allowed. `extra` adds
/// `SECTION__KEY` overrides.
pub fn replica_config(broker: &Broker, extra: &[(&str, &str)]) -> Config {
    let mut env = vec![
        (
            "KAFKA__BOOTSTRAP_SERVERS".to_string(),
            broker.bootstrap.clone(),
        ),
        ("KAFKA__GROUP_ID".to_string(), broker.name("group")),
        ("KAFKA__SESSION_TIMEOUT".to_string(), "6s".to_string()),
        ("KAFKA__DRAIN_TIMEOUT".to_string(), "3s".to_string()),
        ("DELIVERY__INITIAL_BACKOFF".to_string(), "50ms".to_string()),
        ("DELIVERY__MAX_BACKOFF".to_string(), "200ms".to_string()),
        ("DELIVERY__MAX_ATTEMPTS".to_string(), "4".to_string()),
        ("DELIVERY__TIMEOUT".to_string(), "5s".to_string()),
        (
            "DELIVERY__ALLOW_PRIVATE_DESTINATIONS".to_string(),
            "true".to_string(),
        ),
    ];
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    Config::load_from(
        None,
        env.into_iter().map(|(k, v)| (format!("HOOKLINE__{k}"), v)),
        &hookline::config::Overrides::default(),
    )
    .expect("test configuration is valid")
}

/// A running in-process replica.
pub struct Replica {
    pub state: ReplicaState,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Replica {
    pub async fn start(config: Config, topics: &Topics) -> Self {
        let state = ReplicaState::default();
        let shutdown = CancellationToken::new();
        let task = {
            let state = state.clone();
            let shutdown = shutdown.clone();
            let topics = topics.clone();
            tokio::spawn(async move {
                runner::run(&config, &topics, state, shutdown)
                    .await
                    .expect("replica runs");
            })
        };
        let replica = Self {
            state,
            shutdown,
            task: Some(task),
        };
        replica.wait_ready().await;
        replica
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.state.is_ready() {
            assert!(Instant::now() < deadline, "replica not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Graceful stop: drain, commit, leave the group.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("replica task");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A tenant of a test: its keys and secret, and the record that registers
/// it.
pub struct TestTenant {
    pub id: String,
    pub key: PrivateKey,
    pub secret: SigningSecret,
}

impl TestTenant {
    /// A tenant with a fresh secret and a key shared by all test tenants
    /// (generating RSA keys is slow and beside the point here).
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            key: shared_key().clone(),
            secret: SigningSecret::generate(),
        }
    }

    pub fn record(&self, url: &str) -> serde_json::Value {
        serde_json::json!({
            "url": url,
            "public_key": self.key.public_key().to_spki_pem(),
            "signing_secret": secrecy::ExposeSecret::expose_secret(&self.secret.to_whsec()),
        })
    }

    pub async fn register(&self, broker: &Broker, topics: &Topics, record: &serde_json::Value) {
        let value = serde_json::to_vec(record).unwrap();
        broker
            .produce(&topics.tenants, Some(self.id.as_bytes()), Some(&value), &[])
            .await;
    }

    /// Verifies and decrypts one received request, as the tenant would.
    pub fn open(&self, request: &Received) -> hookline::receiver::Delivery {
        let mut keys = KeyRing::new();
        keys.insert_with_thumbprint(self.key.clone());
        let opener = Opener::new(keys, Some(self.secret.clone()));
        let headers = request.webhook_headers();
        opener
            .receive(&headers, &request.body, std::time::SystemTime::now())
            .unwrap_or_else(|e| panic!("tenant {} cannot open a delivery: {}", self.id, e.reason()))
    }
}

fn shared_key() -> &'static PrivateKey {
    static KEY: std::sync::OnceLock<PrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(2048).expect("key generation"))
}

/// Writes a topology file naming `topics`, for commands run as processes.
pub fn write_topology(
    dir: &std::path::Path,
    topics: &Topics,
    partitions: u32,
) -> std::path::PathBuf {
    let path = dir.join("topics.toml");
    let text = format!(
        "[events]\nname = \"{}\"\npartitions = {partitions}\n\n\
         [tenants]\nname = \"{}\"\npartitions = 1\n[tenants.configs]\n\"cleanup.policy\" = \"compact\"\n\n\
         [dlq]\nname = \"{}\"\npartitions = {partitions}\n",
        topics.events, topics.tenants, topics.dlq
    );
    std::fs::write(&path, text).expect("write topology");
    path
}

/// Topic names for a test whose topics a `hookline` process creates; they
/// are deleted with the fixture.
pub fn topic_names(broker: &Broker) -> Topics {
    let topics = Topics {
        events: broker.name("events"),
        tenants: broker.name("tenants"),
        dlq: broker.name("dlq"),
    };
    for name in [&topics.events, &topics.tenants, &topics.dlq] {
        broker.adopt_topic(name);
    }
    topics
}
