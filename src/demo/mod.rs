//! `hookline demo`: the whole flow in one process, on librdkafka's mock
//! cluster. Nothing here delivers anything itself: the demo sets the stage
//! (topics, tenants with generated keys, local receivers, sample events)
//! and runs the real replica, [`crate::delivery::runner::run`], against it.
//!
//! - [`scenario`]: the tenants, how each behaves, and the sample events.
//! - [`receivers`]: the tenants' endpoints, which count what they receive
//!   and when.
//! - [`latency`]: what the timings say: each tenant's latency, and whether
//!   the flaky tenant held back the tenants on its partition.
//!
//! Outcomes are counted without metrics: deliveries and failed attempts on
//! the receivers' side, dead letters by reading the DLQ topic, and filtered
//! events as what remains once the group's committed offsets have reached
//! the end of every partition (each event then has a durable outcome). A
//! delivery's latency runs from the moment its event was handed to the
//! producer to the moment its receiver accepted it; a tenant's partition is
//! the one its events' acknowledgements name.

pub mod latency;
pub mod receivers;
pub mod scenario;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use secrecy::ExposeSecret as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::latency::{Isolation, Latency, TenantTimings};
use self::receivers::Endpoints;
use self::scenario::{DemoTenant, FLAKY_FAILURES, PARTIAL_SUBSCRIPTION, Role};
use crate::config::{Config, ConfigError, Overrides};
use crate::crypto::{KeyError, KeyRing, PrivateKey, SigningSecret};
use crate::delivery::runner::{self, ReplicaState, RunError, Topics};
use crate::kafka::group::committed_offsets;
use crate::kafka::mock::{MockError, MockKafka};
use crate::kafka::producer::{AckedProducer, ProduceError};
use crate::kafka::table_reader::{TableReader, TableReaderError};
use crate::receiver::Receiver;
use crate::tenants::{Tenant, TenantError, TenantRecord};
use crate::topology::Topology;

/// RSA modulus size of the generated tenant keys (the production minimum).
const KEY_BITS: u32 = 2048;

/// How long one produce may wait for its acknowledgement.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the replica may take to restore the tenants and join the group.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the demo waits for every event to reach an outcome. With the
/// demo's short backoffs a few hundred events take seconds; this only
/// bounds a demo that is stuck.
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);

/// How often progress is reported and the committed offsets are checked.
pub const TICK: Duration = Duration::from_millis(500);

/// Events produced concurrently (each send still waits for its ack).
const PRODUCE_CONCURRENCY: usize = 64;

/// The sample events are produced evenly over this long rather than all at
/// once, as events arrive in production: a tenant's latency then measures
/// delivery, not its place in a burst (its events are delivered one at a
/// time). Shorter than the flaky tenant's failures (at least 1.75 s with the
/// backoffs of [`DEMO_SETTINGS`]), so that its partition-mate's events all
/// arrive while they last.
const PRODUCE_SPREAD: Duration = Duration::from_millis(1500);

/// The settings that make the demo quick: short backoffs and timeouts, and
/// the local receivers allowed as destinations. Everything else is the
/// shipped default.
const DEMO_SETTINGS: [(&str, &str); 9] = [
    ("HOOKLINE__KAFKA__GROUP_ID", "hookline-demo"),
    // The mock cluster answers a fetch with nothing new only after this
    // wait, even when records arrive meanwhile (a broker answers as soon as
    // they do); at librdkafka's 500 ms it would dominate every latency the
    // summary shows.
    ("HOOKLINE__KAFKA__PROPERTIES__FETCH.WAIT.MAX.MS", "20"),
    ("HOOKLINE__KAFKA__SESSION_TIMEOUT", "10s"),
    ("HOOKLINE__KAFKA__DRAIN_TIMEOUT", "5s"),
    ("HOOKLINE__DELIVERY__TIMEOUT", "5s"),
    ("HOOKLINE__DELIVERY__MAX_ATTEMPTS", "8"),
    ("HOOKLINE__DELIVERY__INITIAL_BACKOFF", "100ms"),
    ("HOOKLINE__DELIVERY__MAX_BACKOFF", "1s"),
    // The receivers listen on 127.0.0.1, which production refuses.
    ("HOOKLINE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true"),
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Mock(#[from] MockError),
    #[error("the demo configuration is invalid: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot generate a tenant key: {0}")]
    Key(#[from] KeyError),
    #[error("the demo tenant `{tenant}` is invalid: {source}")]
    Tenant {
        tenant: String,
        #[source]
        source: TenantError,
    },
    #[error(transparent)]
    Produce(#[from] ProduceError),
    #[error(transparent)]
    Read(#[from] TableReaderError),
    #[error("cannot start a local receiver: {0}")]
    Listen(#[source] std::io::Error),
    #[error("the replica stopped: {0}")]
    Replica(#[source] RunError),
    #[error("the replica stopped unexpectedly")]
    ReplicaGone,
    #[error("the replica was not ready within {0:?}")]
    NotReady(Duration),
    #[error("the events had no outcome within {0:?}")]
    Unfinished(Duration),
}

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// Sample events to produce.
    pub events: u64,
    /// Tenants (at least 1).
    pub tenants: usize,
}

/// Where one tenant stands while the demo runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantProgress {
    pub tenant: String,
    pub produced: u64,
    pub delivered: u64,
    /// Failed attempts so far (each one retried, or dead-lettered when it
    /// was the last).
    pub retries: u64,
    pub dead_lettered: u64,
}

/// One tenant's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSummary {
    pub tenant: String,
    pub role: Role,
    /// The partition of the events topic its events went to.
    pub partition: Option<i32>,
    pub produced: u64,
    pub delivered: u64,
    pub filtered: u64,
    pub dead_lettered: u64,
    pub retries: u64,
    /// From produce to delivery, over its delivered events.
    pub latency: Option<Latency>,
    /// From its endpoint's first failed request to the first delivery it
    /// accepted after it; `None` for an endpoint that never failed.
    pub failing_for: Option<Duration>,
}

/// What the demo did, once every event reached its outcome.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub tenants: Vec<TenantSummary>,
    /// Whether the flaky tenant held back the tenants on its partition.
    pub isolation: Option<Isolation>,
    /// One delivery as its receiver verified and decrypted it.
    pub sample: Option<serde_json::Value>,
    /// From start to the last outcome.
    pub elapsed: Duration,
}

/// A running demo: the mock cluster, the tenants' endpoints and the
/// replica. [`Demo::stop`] takes it down in order.
pub struct Demo {
    started: Instant,
    config: Config,
    topics: Topics,
    partitions: u32,
    tenants: Vec<DemoTenant>,
    endpoints: Endpoints,
    producer: AckedProducer,
    /// Per tenant, events produced.
    produced: Vec<u64>,
    /// Per tenant, the partition its events went to (the key decides).
    tenant_partitions: Vec<Option<i32>>,
    /// When each event (by id) was handed to the producer.
    sent_at: HashMap<String, Instant>,
    /// Per partition of the events topic, the offset after the last event
    /// produced: where the committed offset stands once all are done.
    ends: BTreeMap<i32, i64>,
    next_event: u64,
    dead_letters: Arc<Mutex<HashMap<String, u64>>>,
    dlq_follower: JoinHandle<()>,
    replica: JoinHandle<Result<(), RunError>>,
    shutdown: CancellationToken,
    // Declared last and dropped in `stop` after every client: destroying
    // the cluster under a connected client makes the client log errors.
    mock: MockKafka,
}

impl Demo {
    /// Starts the cluster, creates the topics, registers the tenants,
    /// starts their endpoints and the replica, and waits until the replica
    /// is ready.
    pub async fn start(options: &DemoOptions) -> Result<Demo, DemoError> {
        let started = Instant::now();
        let mock = MockKafka::start(1)?;
        let topology = Topology::embedded();
        for (_, topic) in topology.topics() {
            // The mock ignores topic configs, so the tenants topic is not
            // compacted here; the demo writes each tenant once, so nothing
            // depends on compaction.
            mock.create_topic(&topic.name, topic.partitions)?;
        }
        let topics = Topics {
            events: topology.events.name.clone(),
            tenants: topology.tenants.name.clone(),
            dlq: topology.dlq.name.clone(),
        };
        let config = demo_config(mock.bootstrap_servers())?;
        let producer = AckedProducer::new(&config.kafka, PRODUCE_TIMEOUT)?;

        let tenants = scenario::tenants(options.tenants.max(1));
        let mut endpoints = Endpoints::default();
        register_tenants(&tenants, &mut endpoints, &producer, &topics.tenants).await?;

        let dead_letters: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let shutdown = CancellationToken::new();
        let dlq_follower = {
            let reader = TableReader::connect(&config.kafka, &topics.dlq, READY_TIMEOUT).await?;
            let counts = dead_letters.clone();
            let stop = shutdown.child_token();
            tokio::spawn(async move {
                reader
                    .follow(|change| count_key(&counts, change.key), stop)
                    .await;
            })
        };

        let state = ReplicaState::default();
        let replica = {
            let (config, topics, state, shutdown) = (
                config.clone(),
                topics.clone(),
                state.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move { runner::run(&config, &topics, state, shutdown).await })
        };
        let demo = Demo {
            started,
            config,
            topics,
            partitions: topology.events.partitions,
            produced: vec![0; tenants.len()],
            tenant_partitions: vec![None; tenants.len()],
            sent_at: HashMap::new(),
            tenants,
            endpoints,
            producer,
            ends: BTreeMap::new(),
            next_event: 0,
            dead_letters,
            dlq_follower,
            replica,
            shutdown,
            mock,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !state.is_ready() {
            if demo.replica.is_finished() {
                return Err(demo.stop().await.err().unwrap_or(DemoError::ReplicaGone));
            }
            if Instant::now() > deadline {
                let _ = demo.stop().await;
                return Err(DemoError::NotReady(READY_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(demo)
    }

    /// The embedded cluster's bootstrap servers.
    pub fn bootstrap_servers(&self) -> &str {
        self.mock.bootstrap_servers()
    }

    /// Produces the next `count` sample events, round-robin over the
    /// tenants and spread evenly over [`PRODUCE_SPREAD`], calling
    /// `on_progress` every [`TICK`]; returns once all are acknowledged.
    pub async fn produce(
        &mut self,
        count: u64,
        mut on_progress: impl FnMut(&[TenantProgress]),
    ) -> Result<(), DemoError> {
        let first = self.next_event;
        self.next_event += count;
        let tenants = self.tenants.len();
        let events = &self.topics.events;
        let producer = &self.producer;
        let ids = &self.tenants;
        let start = tokio::time::Instant::now();
        let mut acks = futures::stream::iter(0..count)
            .map(|i| {
                let event = scenario::event(first + i, tenants);
                let due = start + PRODUCE_SPREAD.mul_f64(i as f64 / count as f64);
                async move {
                    tokio::time::sleep_until(due).await;
                    let key = ids[event.tenant].id.as_bytes();
                    let sent = Instant::now();
                    let ack = producer.send(events, key, Some(&event.value)).await?;
                    Ok::<_, ProduceError>((event, sent, ack))
                }
            })
            .buffer_unordered(PRODUCE_CONCURRENCY);
        let mut tick = tokio::time::interval(TICK);
        loop {
            let result = tokio::select! {
                result = acks.next() => match result {
                    Some(result) => result,
                    None => break,
                },
                _ = tick.tick() => {
                    on_progress(&self.progress());
                    continue;
                }
            };
            let (event, sent, ack) = result?;
            self.produced[event.tenant] += 1;
            self.tenant_partitions[event.tenant] = Some(ack.partition);
            self.sent_at.insert(event.id, sent);
            let end = self.ends.entry(ack.partition).or_insert(0);
            *end = (*end).max(ack.offset + 1);
        }
        Ok(())
    }

    /// Where every tenant stands now.
    pub fn progress(&self) -> Vec<TenantProgress> {
        let dead_letters = lock(&self.dead_letters);
        self.tenants
            .iter()
            .zip(&self.produced)
            .map(|(tenant, &produced)| {
                let counts = self.endpoints.counts(&tenant.id);
                TenantProgress {
                    tenant: tenant.id.clone(),
                    produced,
                    delivered: counts.map_or(0, |c| c.delivered()),
                    retries: counts.map_or(0, |c| c.failed()),
                    dead_lettered: dead_letters.get(&tenant.id).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    /// Waits until every produced event has its outcome, calling
    /// `on_progress` every [`TICK`], then counts the outcomes.
    pub async fn wait_until_done(
        &self,
        mut on_progress: impl FnMut(&[TenantProgress]),
    ) -> Result<DemoSummary, DemoError> {
        let deadline = Instant::now() + FINISH_TIMEOUT;
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            on_progress(&self.progress());
            if self.replica.is_finished() {
                return Err(DemoError::ReplicaGone);
            }
            if self.all_committed().await {
                break;
            }
            if Instant::now() > deadline {
                return Err(DemoError::Unfinished(FINISH_TIMEOUT));
            }
        }
        on_progress(&self.progress());
        self.summarise().await
    }

    /// Keeps producing one event per tick, reporting progress, until
    /// `until` is cancelled.
    pub async fn keep_running(
        &mut self,
        until: CancellationToken,
        mut on_progress: impl FnMut(&[TenantProgress]),
    ) -> Result<(), DemoError> {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = until.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            if self.replica.is_finished() {
                return Err(DemoError::ReplicaGone);
            }
            self.produce(1, |_| {}).await?;
            on_progress(&self.progress());
        }
    }

    /// Stops the replica (drain, commit, leave the group), the DLQ reader
    /// and the endpoints, then destroys the cluster. The error is the
    /// replica's, when it failed.
    pub async fn stop(self) -> Result<(), DemoError> {
        self.shutdown.cancel();
        let replica = match self.replica.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DemoError::Replica(e)),
            Err(_) => Err(DemoError::ReplicaGone),
        };
        let _ = self.dlq_follower.await;
        self.endpoints.stop().await;
        drop(self.producer);
        drop(self.mock);
        replica
    }

    /// Whether the group's committed offset reached the end of every
    /// partition that received events.
    async fn all_committed(&self) -> bool {
        let kafka = self.config.kafka.clone();
        let topic = self.topics.events.clone();
        let partitions: Vec<i32> = (0..self.partitions as i32).collect();
        let committed = tokio::task::spawn_blocking(move || {
            committed_offsets(&kafka, &topic, &partitions, Duration::from_secs(5))
        })
        .await;
        let Ok(Ok(committed)) = committed else {
            // Not answered this time; asked again on the next tick.
            return false;
        };
        let committed: HashMap<i32, i64> = committed
            .into_iter()
            .filter_map(|(partition, offset)| offset.map(|o| (partition, o)))
            .collect();
        self.ends
            .iter()
            .all(|(partition, end)| committed.get(partition).is_some_and(|c| c >= end))
    }

    /// Counts the outcomes: dead letters read from the DLQ topic up to its
    /// end (complete, since a dead letter is acknowledged before its
    /// event's offset is stored), the rest from the receivers.
    async fn summarise(&self) -> Result<DemoSummary, DemoError> {
        let reader =
            TableReader::connect(&self.config.kafka, &self.topics.dlq, READY_TIMEOUT).await?;
        let mut dead_letters: HashMap<String, u64> = HashMap::new();
        reader
            .restore_to_high_watermark(
                |change| {
                    let tenant = String::from_utf8_lossy(change.key).into_owned();
                    *dead_letters.entry(tenant).or_insert(0) += 1;
                },
                |_| {},
            )
            .await?;
        drop(reader);

        let latencies: Vec<Vec<Duration>> = self
            .tenants
            .iter()
            .map(|tenant| self.latencies(&tenant.id))
            .collect();
        let mut sample = None;
        let tenants = self
            .tenants
            .iter()
            .zip(&self.produced)
            .zip(&self.tenant_partitions)
            .zip(&latencies)
            .map(|(((tenant, &produced), &partition), latencies)| {
                let counts = self.endpoints.counts(&tenant.id);
                let delivered = counts.map_or(0, |c| c.delivered());
                let dead_lettered = dead_letters.get(&tenant.id).copied().unwrap_or(0);
                if sample.is_none() {
                    sample = counts.and_then(|c| c.first_delivery());
                }
                TenantSummary {
                    tenant: tenant.id.clone(),
                    role: tenant.role,
                    partition,
                    produced,
                    delivered,
                    filtered: produced.saturating_sub(delivered + dead_lettered),
                    dead_lettered,
                    retries: counts.map_or(0, |c| c.failed()),
                    latency: Latency::of(latencies),
                    failing_for: counts.and_then(|c| c.failing_for()),
                }
            })
            .collect::<Vec<_>>();
        let isolation = tenants
            .iter()
            .find(|t| t.role == Role::Flaky)
            .and_then(|flaky| {
                let timings: Vec<TenantTimings<'_>> = tenants
                    .iter()
                    .zip(&latencies)
                    .map(|(t, latencies)| TenantTimings {
                        tenant: &t.tenant,
                        partition: t.partition,
                        latencies,
                    })
                    .collect();
                Isolation::measure(&flaky.tenant, flaky.failing_for, &timings)
            });
        Ok(DemoSummary {
            tenants,
            isolation,
            sample,
            elapsed: self.started.elapsed(),
        })
    }

    /// Produce-to-delivery latency of each of `tenant`'s deliveries.
    fn latencies(&self, tenant: &str) -> Vec<Duration> {
        let Some(counts) = self.endpoints.counts(tenant) else {
            return Vec::new();
        };
        counts
            .delivery_times()
            .into_iter()
            .filter_map(|(id, delivered)| {
                let sent = self.sent_at.get(&id)?;
                Some(delivered.saturating_duration_since(*sent))
            })
            .collect()
    }
}

/// Runs the demo to completion and stops it: what the test suite and a
/// plain `hookline demo` do.
pub async fn run(
    options: &DemoOptions,
    mut on_progress: impl FnMut(&[TenantProgress]),
) -> Result<DemoSummary, DemoError> {
    let mut demo = Demo::start(options).await?;
    let result = match demo.produce(options.events, &mut on_progress).await {
        Ok(()) => demo.wait_until_done(on_progress).await,
        Err(e) => Err(e),
    };
    let stopped = demo.stop().await;
    let summary = result?;
    stopped?;
    Ok(summary)
}

/// The shipped defaults with [`DEMO_SETTINGS`], pointed at the mock.
fn demo_config(bootstrap_servers: &str) -> Result<Config, ConfigError> {
    let settings = DEMO_SETTINGS
        .iter()
        .map(|(key, value)| ((*key).to_string(), (*value).to_string()));
    Config::load_from(
        None,
        settings,
        &Overrides {
            bootstrap_servers: Some(bootstrap_servers.to_string()),
        },
    )
}

/// Generates each tenant's key pair and signing secret, starts its
/// endpoint and writes its record to the tenants topic.
async fn register_tenants(
    tenants: &[DemoTenant],
    endpoints: &mut Endpoints,
    producer: &AckedProducer,
    topic: &str,
) -> Result<(), DemoError> {
    let count = tenants.len();
    // RSA key generation takes a noticeable moment of CPU each; it runs off
    // the async workers.
    let keys = tokio::task::spawn_blocking(move || {
        (0..count)
            .map(|_| PrivateKey::generate(KEY_BITS))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .expect("key generation does not panic")?;
    for (tenant, key) in tenants.iter().zip(keys) {
        let secret = SigningSecret::generate();
        let public_key = key.public_key().to_spki_pem();
        let mut ring = KeyRing::new();
        ring.insert_with_thumbprint(key);
        let failures = if tenant.role == Role::Flaky {
            FLAKY_FAILURES
        } else {
            0
        };
        let address = endpoints
            .start(
                &tenant.id,
                Receiver::new(ring, Some(secret.clone())),
                failures,
            )
            .await
            .map_err(DemoError::Listen)?;
        let record = TenantRecord {
            url: format!("http://{address}/webhooks/{}", tenant.id),
            public_key,
            key_id: None,
            signing_secret: Some(secret.to_whsec().expose_secret().to_string()),
            previous_signing_secret: None,
            previous_signing_secret_expires_at: None,
            events: (tenant.role == Role::PartiallySubscribed)
                .then(|| vec![PARTIAL_SUBSCRIPTION.to_string()]),
            enabled: tenant.role != Role::Disabled,
            suspended: false,
            api_key_sha256: None,
            rate_limit: None,
        };
        // The validation a replica applies when it reads the record.
        Tenant::from_record(&tenant.id, record.clone()).map_err(|source| DemoError::Tenant {
            tenant: tenant.id.clone(),
            source,
        })?;
        // Serialising a record of strings and booleans cannot fail.
        let value = serde_json::to_vec(&record).expect("a tenant record serialises");
        producer
            .send(topic, tenant.id.as_bytes(), Some(&value))
            .await?;
    }
    Ok(())
}

fn count_key(counts: &Mutex<HashMap<String, u64>>, key: &[u8]) {
    let tenant = String::from_utf8_lossy(key).into_owned();
    *lock(counts).entry(tenant).or_insert(0) += 1;
}

/// The counters are only ever incremented, so a poisoned lock still holds
/// consistent data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
