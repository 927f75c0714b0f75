//! The replica: restores the tenant table, joins the consumer group, runs a
//! worker per assigned partition, and drains on revocation and shutdown.
//!
//! The coordinator loop here is the only owner of the workers. The group's
//! rebalance callback hands it assignments and revocations; for a
//! revocation the callback waits until the coordinator reports the
//! partitions drained, so offsets stored by their workers are committed
//! before another member takes the partitions over.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dead_letter::writer::DeadLetterWriter;
use super::http::WebhookClient;
use super::partition;
use super::pool::ConnectionPool;
use super::reconnect::ReconnectBackoff;
use super::retry::RetryPolicy;
use super::scheduler::{Lanes, Settings};
use super::source::KafkaPartition;
use super::worker::Pipeline;
use crate::config::{Config, DeliveryConfig, DeliveryOrdering};
use crate::events::EventDecoder;
use crate::kafka::group::{BrokerProbe, GroupConsumer, GroupEvent};
use crate::kafka::producer::AckedProducer;
use crate::kafka::table_reader::{CONNECT_TIMEOUT, TableReader, TableReaderError};
use crate::kafka::transactional::TransactionalProducer;
use crate::telemetry::metrics::{self, DeliveryMetrics};
use crate::telemetry::traces::SpanExport;
use crate::tenants::TenantTable;
use crate::tenants::sync;

/// How often a running replica checks that the cluster answers.
const BROKER_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// How long one check waits for an answer.
const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Failed checks in a row after which the cluster counts as unreachable.
/// One slow answer (a broker busy with a rebalance) must not flap readiness;
/// two take five to ten seconds, well inside a probe's failure threshold.
const BROKER_PROBE_FAILURES: u32 = 2;

/// How long a dead-letter write may wait for one acknowledgement before it
/// is retried.
const DLQ_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The topic names a replica works with.
#[derive(Debug, Clone)]
pub struct Topics {
    pub events: String,
    pub tenants: String,
    pub dlq: String,
}

/// What the replica exposes while it runs: readiness, the tenant table,
/// and counts of what happened to its partitions.
#[derive(Clone, Default)]
pub struct ReplicaState {
    pub table: TenantTable,
    joined: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    /// Stored inverted so that the default (`false`) means reachable: a
    /// replica has just talked to the cluster when it joins the group.
    broker_unreachable: Arc<AtomicBool>,
    assigned: Arc<AtomicU64>,
    revoked: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
}

impl ReplicaState {
    /// The state of a replica that keeps its tenants in `table`.
    pub fn with_table(table: TenantTable) -> Self {
        Self {
            table,
            ..Self::default()
        }
    }

    /// Ready = tenant table restored, group joined, the cluster answering
    /// (the last checks did not all fail), not draining.
    ///
    /// While the cluster is away the replica keeps running: attempts in
    /// flight finish, dead letters and commits wait for it. It is only not
    /// ready, so that a load balancer or an operator sees the outage.
    pub fn is_ready(&self) -> bool {
        self.table.is_restored()
            && self.joined.load(Relaxed)
            && !self.broker_unreachable.load(Relaxed)
            && !self.draining.load(Relaxed)
    }

    /// Whether the cluster answered the replica's recent checks.
    pub fn broker_reachable(&self) -> bool {
        !self.broker_unreachable.load(Relaxed)
    }

    /// Records the result of the cluster checks; logs each change.
    fn set_broker_reachable(&self, reachable: bool) {
        let was_unreachable = self.broker_unreachable.swap(!reachable, Relaxed);
        if was_unreachable && reachable {
            tracing::info!("Kafka answers again; ready");
        } else if !was_unreachable && !reachable {
            tracing::warn!(
                "Kafka does not answer; not ready until it does (deliveries continue, dead letters and commits wait for it)"
            );
        }
    }

    /// Records that the group has been joined; logs it the first time.
    fn mark_joined(&self) {
        if !self.joined.swap(true, Relaxed) {
            tracing::info!("joined the consumer group; ready");
        }
    }

    /// Partitions assigned to this replica since it started.
    pub fn partitions_assigned(&self) -> u64 {
        self.assigned.load(Relaxed)
    }

    /// Partitions revoked in an orderly rebalance since start.
    pub fn partitions_revoked(&self) -> u64 {
        self.revoked.load(Relaxed)
    }

    /// Partitions lost (taken away without a drain, e.g. after this
    /// replica missed the session timeout) since start.
    pub fn partitions_lost(&self) -> u64 {
        self.lost.load(Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Tenants(#[from] crate::kafka::table_reader::TableReaderError),
    #[error(transparent)]
    Group(#[from] crate::kafka::group::GroupError),
    #[error(transparent)]
    Producer(#[from] crate::kafka::producer::ProduceError),
    #[error(transparent)]
    SchemaRegistry(#[from] crate::schema_registry::RegistryError),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[source] super::http::ClientError),
    #[error(transparent)]
    Traces(#[from] crate::telemetry::traces::TraceExportError),
}

struct Worker {
    stop: CancellationToken,
    abort: CancellationToken,
    task: JoinHandle<()>,
}

/// Runs one replica until `shutdown` is cancelled, then drains: workers
/// stop taking records, attempts in flight get until `kafka.drain_timeout`
/// to finish, stored offsets are committed, the member leaves the group.
pub async fn run(
    config: &Config,
    topics: &Topics,
    state: ReplicaState,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let Some(reader) = restore_tenants(config, topics, &state, &shutdown).await? else {
        tracing::info!("stopped before the tenant table was restored");
        return Ok(());
    };
    let follower = tokio::spawn(sync::follow(
        state.table.clone(),
        reader,
        shutdown.child_token(),
    ));

    // Subscribed before the pipeline is built, whose transactional dead
    // letters are fenced with the member's identity; assignments wait in
    // the channel meanwhile.
    let (consumer, mut events) = GroupConsumer::subscribe(&config.kafka, &topics.events)?;
    let producer = AckedProducer::new(&config.kafka, DLQ_WRITE_TIMEOUT)?;
    let mut dead_letters = DeadLetterWriter::new(producer, &topics.dlq);
    if config.delivery.transactional_dlq {
        let id = transactional_id(&config.kafka.group_id);
        tracing::info!(transactional_id = %id, "dead letters are written in transactions with their source offsets");
        dead_letters = dead_letters.transactional(TransactionalProducer::new(
            &config.kafka,
            id,
            consumer.fence(),
        ));
    }
    let pipeline = Arc::new(Pipeline {
        table: state.table.clone(),
        client: WebhookClient::with_pool(
            config.delivery.timeout,
            config.delivery.allow_private_destinations,
            ConnectionPool::from_config(&config.delivery),
        )
        .map_err(RunError::Http)?,
        policy: RetryPolicy::from_config(&config.delivery),
        decoder: EventDecoder::new(config.schema_registry.as_ref())?,
        dead_letters,
        max_payload_bytes: config.delivery.max_payload_bytes,
        metrics: DeliveryMetrics::new(config.telemetry.tenant_labels),
        in_flight: Arc::new(tokio::sync::Semaphore::new(config.delivery.max_in_flight)),
        spans: config
            .telemetry
            .traces
            .as_ref()
            .map(SpanExport::start)
            .transpose()?,
    });
    let settings = scheduling(&config.delivery);
    tracing::info!(topic = %topics.events, group = %config.kafka.group_id, "replica started");
    let stop_watching = CancellationToken::new();
    let broker_watch = tokio::spawn(watch_broker(
        consumer.broker_probe(),
        state.clone(),
        stop_watching.clone(),
    ));

    let drain_timeout = config.kafka.drain_timeout;
    let mut workers: HashMap<i32, Worker> = HashMap::new();
    // A member with no partitions (more replicas than partitions) is in the
    // group all the same; the protocol tells once it has joined.
    let mut membership = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = membership.tick(), if !state.joined.load(Relaxed) => {
                if consumer.has_joined() {
                    state.mark_joined();
                }
            }
            event = events.recv() => match event {
                Some(GroupEvent::Assigned(partitions)) => {
                    state.assigned.fetch_add(partitions.len() as u64, Relaxed);
                    state.mark_joined();
                    for assigned in partitions {
                        let partition = assigned.handle.partition();
                        let stop = CancellationToken::new();
                        let abort = CancellationToken::new();
                        let task = tokio::spawn(partition::run(
                            KafkaPartition::new(assigned.queue, assigned.handle),
                            pipeline.clone(),
                            settings,
                            stop.clone(),
                            abort.clone(),
                        ));
                        tracing::info!(partition, "partition assigned");
                        if let Some(old) = workers.insert(partition, Worker { stop, abort, task }) {
                            // An assignment without the revocation before
                            // it: the old worker must not keep going.
                            old.abort.cancel();
                        }
                    }
                    metrics::partitions_assigned(workers.len());
                }
                Some(GroupEvent::Revoked { partitions, lost, drained }) => {
                    let revoked: Vec<Worker> = partitions
                        .iter()
                        .filter_map(|p| workers.remove(p))
                        .collect();
                    tracing::info!(?partitions, lost, "partitions revoked");
                    let counter = if lost { &state.lost } else { &state.revoked };
                    counter.fetch_add(partitions.len() as u64, Relaxed);
                    metrics::partitions_assigned(workers.len());
                    drain(revoked, lost, drain_timeout).await;
                    let _ = drained.send(());
                }
                None => break,
            },
        }
    }

    state.draining.store(true, Relaxed);
    tracing::info!(partitions = workers.len(), "draining");
    drain(workers.into_values().collect(), false, drain_timeout).await;
    metrics::partitions_assigned(0);
    // The probe must be done with the consumer before it is closed.
    stop_watching.cancel();
    let _ = broker_watch.await;
    if let Err(e) = consumer.commit_stored() {
        tracing::warn!(error = %e, "final commit failed; the last deliveries may be repeated");
    }
    // Every worker has stopped, so the revocation that leaving triggers has
    // nothing to wait for: with the channel closed, the callback commits and
    // returns at once instead of waiting the drain timeout for an answer
    // this loop would never give.
    drop(events);
    // Closing blocks until the group has been left: a blocking thread.
    let _ = tokio::task::spawn_blocking(move || consumer.close()).await;
    let _ = follower.await;
    // Every delivery has ended: export the spans still queued.
    if pipeline.spans.is_some() {
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(spans) = &pipeline.spans {
                spans.shutdown();
            }
        })
        .await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// This replica's `transactional.id`: the group's name and a random part,
/// so that replicas never share one (two live producers with one id fence
/// each other). A replica that dies leaves its open transaction to the
/// broker, which aborts it after `kafka::transactional::TRANSACTION_TIMEOUT`.
fn transactional_id(group_id: &str) -> String {
    let mut random = [0u8; 8];
    crate::crypto::fill_random(&mut random);
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{group_id}.dead-letters.{suffix}")
}

/// The scheduler's settings from `[delivery]`.
fn scheduling(delivery: &DeliveryConfig) -> Settings {
    Settings {
        lanes: match delivery.ordering {
            DeliveryOrdering::Key => Lanes::PerKey,
            DeliveryOrdering::Partition => Lanes::PerPartition,
        },
        window: delivery.partition_window,
        window_bytes: delivery.partition_window_bytes,
        suspend_after: delivery.suspend_after,
        probe_interval: delivery.suspension_probe_interval,
    }
}

/// Connects to the tenants topic and restores the table, waiting with a
/// bounded backoff while the cluster cannot be reached or read, so that a
/// replica started before its broker (or during an outage) waits instead of
/// exiting. `None` when `shutdown` came first.
async fn restore_tenants(
    config: &Config,
    topics: &Topics,
    state: &ReplicaState,
    shutdown: &CancellationToken,
) -> Result<Option<TableReader>, RunError> {
    let mut backoff = ReconnectBackoff::default();
    loop {
        let attempt = async {
            let reader =
                TableReader::connect(&config.kafka, &topics.tenants, CONNECT_TIMEOUT).await?;
            sync::restore(&state.table, &reader, |p| {
                tracing::info!(
                    records = p.records,
                    partitions_done = p.partitions_done,
                    partitions = p.partitions,
                    "restoring tenants"
                );
            })
            .await?;
            Ok::<_, TableReaderError>(reader)
        };
        let error = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            result = attempt => match result {
                Ok(reader) => return Ok(Some(reader)),
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e.into()),
            },
        };
        let wait = backoff.next_wait();
        tracing::warn!(
            error = %error,
            tries = backoff.failures(),
            "cannot restore the tenant table; trying again in {}",
            humantime::format_duration(wait)
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Checks every [`BROKER_PROBE_INTERVAL`] that the cluster answers, and
/// records it in `state` for readiness, until `stop`.
async fn watch_broker(probe: BrokerProbe, state: ReplicaState, stop: CancellationToken) {
    let probe = Arc::new(probe);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(BROKER_PROBE_INTERVAL) => {}
        }
        let answered = {
            let probe = probe.clone();
            tokio::task::spawn_blocking(move || probe.broker_answers(BROKER_PROBE_TIMEOUT))
                .await
                .unwrap_or(false)
        };
        failures = if answered {
            0
        } else {
            failures.saturating_add(1)
        };
        if answered {
            state.set_broker_reachable(true);
        } else if failures >= BROKER_PROBE_FAILURES {
            state.set_broker_reachable(false);
        }
    }
}

/// Stops `workers`: at once when the partitions are lost, otherwise letting
/// attempts in flight finish within `deadline`.
async fn drain(workers: Vec<Worker>, lost: bool, deadline: Duration) {
    for worker in &workers {
        worker.stop.cancel();
        if lost {
            worker.abort.cancel();
        }
    }
    let deadline = tokio::time::Instant::now() + deadline;
    for worker in workers {
        let mut task = worker.task;
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            worker.abort.cancel();
            let _ = task.await;
        }
    }
}
