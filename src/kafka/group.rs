//! The events consumer: one member of the consumer group, its partitions
//! split into per-partition queues so that each partition is worked on by
//! its own task, in order, while the others keep flowing.
//!
//! rdkafka callbacks stay thin. On assignment the callback splits the queue
//! of every new partition *before* librdkafka starts fetching it (so no
//! record of that partition can reach the main queue) and hands the queues
//! to the coordinator. On revocation it hands the partitions over and waits,
//! at most the drain deadline, until the coordinator says their workers
//! stopped and stored their offsets; then it commits what was stored.
//!
//! The main queue must be polled continuously for rebalances, heartbeats and
//! `max.poll.interval.ms` to work while partitions back off, and a revoke
//! callback may block that poll for a while, so it runs on a thread of its
//! own.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::record::{Record, RecordParts};
use crate::config::KafkaConfig;

/// How long a partition worker waits on its queue before polling again.
/// The queue's wake-up callback can be missed (seen after a paused
/// partition is resumed and refetched); a bounded wait turns such a miss
/// into a short delay instead of a stall. An idle partition costs ten
/// wake-ups a second.
const QUEUE_REPOLL_INTERVAL: Duration = Duration::from_millis(100);

/// Prefetch per partition. Each assigned partition buffers at most this much
/// before its worker takes it; a backing-off partition is also paused, so
/// memory stays bounded by partitions × this.
const QUEUED_MAX_KBYTES_PER_PARTITION: usize = 1024;

/// How soon a partition whose prefetch was full is fetched again.
const FETCH_QUEUE_BACKOFF: Duration = Duration::from_millis(10);

type Inner = StreamConsumer<GroupContext>;

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("cannot create the group consumer: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot subscribe to `{topic}`: {source}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// What the coordinator hears from the group.
pub enum GroupEvent {
    /// Partitions newly assigned to this member, each with its own queue.
    Assigned(Vec<AssignedPartition>),
    /// Partitions taken away. `lost` means another member may already own
    /// them (this member was thrown out of the group): stop at once, store
    /// nothing. Send on `drained` once their workers have stopped.
    Revoked {
        partitions: Vec<i32>,
        lost: bool,
        drained: std_mpsc::SyncSender<()>,
    },
}

/// A partition's queue and the handle to store its offsets with.
pub struct AssignedPartition {
    pub queue: PartitionQueue,
    pub handle: PartitionHandle,
}

/// One partition's queue of records.
pub struct PartitionQueue {
    queue: StreamPartitionQueue<GroupContext>,
    topic: Arc<str>,
}

impl PartitionQueue {
    /// The next record of the partition, in offset order, copied out of
    /// librdkafka's fetch buffer (in one allocation) so that it can wait in
    /// the partition's window while the next ones are read. Cancel-safe:
    /// a record is taken from the queue only when it is returned.
    pub async fn next(&self) -> Result<Record, KafkaError> {
        loop {
            let Ok(result) = tokio::time::timeout(QUEUE_REPOLL_INTERVAL, self.queue.recv()).await
            else {
                continue;
            };
            let message = result?;
            let headers: Vec<(&str, Option<&[u8]>)> = message
                .headers()
                .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect())
                .unwrap_or_default();
            return Ok(Record::new(RecordParts {
                topic: self.topic.clone(),
                partition: message.partition(),
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key(),
                value: message.payload(),
                headers: &headers,
            }));
        }
    }
}

/// How long [`PartitionHandle::lag`] waits for the high watermark (a
/// zero timeout never gets the broker's answer).
pub const WATERMARK_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-partition operations on the consumer: offsets and flow control.
#[derive(Clone)]
pub struct PartitionHandle {
    consumer: Arc<Inner>,
    topic: Arc<str>,
    partition: i32,
}

impl PartitionHandle {
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Stores `next_offset` (the next record to read) with `metadata`,
    /// for the group's next commit. Fails when the partition is no longer
    /// assigned to this member, which is exactly when storing must not
    /// happen.
    pub fn store_with_metadata(&self, next_offset: i64, metadata: &str) -> Result<(), KafkaError> {
        self.consumer
            .store_offsets(&self.with_offset(next_offset, metadata)?)
    }

    /// Commits `next_offset` with `metadata` and waits for the broker's
    /// answer. The group's own commits send only offsets that moved; this
    /// carries metadata whose offset did not. Blocks.
    pub fn commit_with_metadata(&self, next_offset: i64, metadata: &str) -> Result<(), KafkaError> {
        self.consumer
            .commit(&self.with_offset(next_offset, metadata)?, CommitMode::Sync)
    }

    /// The group's committed offset of this partition and its metadata;
    /// `None` when nothing was committed. Blocks up to `timeout`.
    pub fn committed(&self, timeout: Duration) -> Result<Option<(i64, String)>, KafkaError> {
        let committed = self.consumer.committed_offsets(self.single(), timeout)?;
        Ok(committed
            .find_partition(&self.topic, self.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(offset) => Some((offset, e.metadata().to_string())),
                _ => None,
            }))
    }

    fn with_offset(
        &self,
        next_offset: i64,
        metadata: &str,
    ) -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        let mut element = tpl.add_partition(&self.topic, self.partition);
        element.set_offset(Offset::Offset(next_offset))?;
        element.set_metadata(metadata);
        Ok(tpl)
    }

    /// Consumer lag: high watermark minus the next offset to process, or
    /// `None` when the broker does not tell the watermark in time. Asks the
    /// partition's leader, so it blocks for up to [`WATERMARK_TIMEOUT`].
    pub fn lag(&self, next_offset: i64) -> Option<i64> {
        let (_, high) = self
            .consumer
            .client()
            .fetch_watermarks(&self.topic, self.partition, WATERMARK_TIMEOUT)
            .ok()?;
        Some((high - next_offset).max(0))
    }

    fn single(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, self.partition);
        tpl
    }
}

/// The member's identity in the group (id and generation), read afresh for
/// each transactional offset commit: the broker refuses the commit of a
/// member that is no longer in the generation it names (KIP-447), so a
/// replica that lost its partitions in a rebalance cannot commit for them.
#[derive(Clone)]
pub struct GroupFence {
    consumer: Weak<Inner>,
}

impl GroupFence {
    /// `None` once the consumer is gone.
    pub(super) fn metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.consumer.upgrade()?.group_metadata()
    }
}

/// The group member. Dropping it leaves the group.
pub struct GroupConsumer {
    consumer: Arc<Inner>,
    stop_polling: CancellationToken,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl GroupConsumer {
    /// Joins the group and subscribes to `topic`. Assignment and revocation
    /// arrive on the returned channel.
    pub fn subscribe(
        config: &KafkaConfig,
        topic: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<GroupEvent>), GroupError> {
        let (events, receiver) = mpsc::unbounded_channel();
        let context = GroupContext {
            events,
            consumer: OnceLock::new(),
            topic: topic.to_string(),
            drain_timeout: config.drain_timeout,
        };
        let consumer: Inner = super::client_config(config)
            .set("group.id", &config.group_id)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            // Offsets are stored by the workers, only once an event's
            // outcome is durable; the stored ones are committed in the
            // background and on every revocation and shutdown.
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .set(
                "queued.max.messages.kbytes",
                QUEUED_MAX_KBYTES_PER_PARTITION.to_string(),
            )
            // Once a partition's prefetch is full, librdkafka postpones its
            // next fetch by this much (1 s by default), longer than a busy
            // worker takes to work through 1 MB: the partition would idle.
            .set(
                "fetch.queue.backoff.ms",
                FETCH_QUEUE_BACKOFF.as_millis().to_string(),
            )
            .set_log_level(RDKafkaLogLevel::Warning)
            .create_with_context(context)
            .map_err(GroupError::Client)?;
        let consumer = Arc::new(consumer);
        // The context needs the consumer to split queues in the callback; a
        // weak reference avoids a cycle (queues already hold the consumer).
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        consumer
            .subscribe(&[topic])
            .map_err(|source| GroupError::Subscribe {
                topic: topic.to_string(),
                source,
            })?;

        let stop_polling = CancellationToken::new();
        let poller = {
            let consumer = consumer.clone();
            let stop = stop_polling.clone();
            std::thread::Builder::new()
                .name("hookline-group".into())
                .spawn(move || poll_main_queue(consumer, stop))
                .map_err(|e| GroupError::Client(KafkaError::Subscription(e.to_string())))?
        };
        Ok((
            Self {
                consumer,
                stop_polling,
                poller: Some(poller),
            },
            receiver,
        ))
    }

    /// Whether the member currently belongs to the group with partitions
    /// assigned (or is a member without any, when there are more members
    /// than partitions).
    pub fn has_joined(&self) -> bool {
        !matches!(
            self.consumer.rebalance_protocol(),
            rdkafka::consumer::RebalanceProtocol::None
        )
    }

    /// A handle that asks the cluster whether it answers, for readiness.
    /// It holds the consumer weakly, so it never keeps the member alive
    /// after [`GroupConsumer::close`].
    pub fn broker_probe(&self) -> BrokerProbe {
        BrokerProbe {
            consumer: Arc::downgrade(&self.consumer),
            topic: self.consumer.context().topic.clone(),
        }
    }

    /// What fences this member's transactional offset commits: the group
    /// generation it belongs to now. Holds the consumer weakly.
    pub fn fence(&self) -> GroupFence {
        GroupFence {
            consumer: Arc::downgrade(&self.consumer),
        }
    }

    /// Commits the stored offsets and waits for the broker's answer.
    pub fn commit_stored(&self) -> Result<(), KafkaError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is not a failure.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => Ok(()),
            other => other,
        }
    }

    /// Leaves the group. Polling stops first; dropping the last reference
    /// to the consumer then closes it, which runs the final revocation in
    /// this thread and sends the group a leave request, so the partitions
    /// move to the other members at once instead of after the session
    /// timeout. Blocks: call it from a blocking thread.
    pub fn close(mut self) {
        self.stop_polling.cancel();
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

/// Asks the cluster, through the group member's own connections, whether a
/// broker answers. librdkafka reconnects on its own and never says that the
/// cluster is back, so readiness asks instead of listening for errors.
pub struct BrokerProbe {
    consumer: Weak<Inner>,
    topic: String,
}

impl BrokerProbe {
    /// Whether a broker answered a metadata request for the subscribed
    /// topic within `timeout`; `false` once the member is closed. Blocks:
    /// call it from a blocking thread.
    pub fn broker_answers(&self, timeout: Duration) -> bool {
        let Some(consumer) = self.consumer.upgrade() else {
            return false;
        };
        consumer.fetch_metadata(Some(&self.topic), timeout).is_ok()
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.stop_polling.cancel();
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

/// Serves the main queue: rebalance callbacks, heartbeats, commit results.
/// Records never arrive here because every partition's queue is split off
/// before it is fetched; should one arrive anyway, it is left unprocessed
/// and unstored (it will be delivered again by whoever owns it next).
fn poll_main_queue(consumer: Arc<Inner>, stop: CancellationToken) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the group polling thread");
            return;
        }
    };
    runtime.block_on(async {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                message = consumer.recv() => match message {
                    Ok(m) => tracing::error!(
                        partition = m.partition(),
                        offset = m.offset(),
                        "a record reached the main queue; it is left for redelivery"
                    ),
                    Err(e) => tracing::warn!(error = %e, "consumer error"),
                },
            }
        }
    });
}

struct GroupContext {
    events: mpsc::UnboundedSender<GroupEvent>,
    consumer: OnceLock<Weak<Inner>>,
    topic: String,
    drain_timeout: Duration,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(facility, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(facility, "{message}"),
            _ => tracing::debug!(facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, "kafka: {reason}");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.assign(tpl),
            Rebalance::Revoke(tpl) => self.revoke(base, tpl),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(())
            | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; it is retried with the next one")
            }
        }
    }
}

impl GroupContext {
    /// Splits the queue of every newly assigned partition; runs before
    /// librdkafka assigns them, so the first fetched record already lands
    /// in the split queue.
    fn assign(&self, tpl: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let topic: Arc<str> = Arc::from(self.topic.as_str());
        let assigned: Vec<AssignedPartition> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .filter_map(|element| {
                let partition = element.partition();
                let queue = consumer.split_partition_queue(&self.topic, partition)?;
                Some(AssignedPartition {
                    queue: PartitionQueue {
                        queue,
                        topic: topic.clone(),
                    },
                    handle: PartitionHandle {
                        consumer: consumer.clone(),
                        topic: topic.clone(),
                        partition,
                    },
                })
            })
            .collect();
        if !assigned.is_empty() {
            let _ = self.events.send(GroupEvent::Assigned(assigned));
        }
    }

    /// Hands revoked partitions to the coordinator and waits, at most the
    /// drain deadline, for their workers to stop; then commits.
    fn revoke(&self, base: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        if partitions.is_empty() {
            return;
        }
        let lost = base.assignment_lost();
        let (drained, done) = std_mpsc::sync_channel(1);
        if self
            .events
            .send(GroupEvent::Revoked {
                partitions: partitions.clone(),
                lost,
                drained,
            })
            .is_ok()
            && done.recv_timeout(self.drain_timeout).is_err()
        {
            tracing::warn!(?partitions, "revoked partitions did not drain in time");
        }
        if !lost
            && let Err(e) = base.commit_consumer_state(CommitMode::Sync)
            && !matches!(
                e,
                KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)
            )
        {
            tracing::warn!(error = %e, "commit on revocation failed");
        }
    }
}

/// Reading another group's committed offsets failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the offsets committed by consumer group `{group}`")]
pub struct CommittedError {
    pub group: String,
    #[source]
    pub source: KafkaError,
}

/// A committed offset and the metadata committed with it.
pub type Committed = (i64, String);

/// Reads what another consumer group committed, with one client kept for
/// repeated reads (a caller waiting for the group's progress polls it).
pub struct CommittedReader {
    consumer: Arc<BaseConsumer>,
    group: String,
}

impl CommittedReader {
    pub fn new(config: &KafkaConfig, group: &str) -> Result<Self, CommittedError> {
        let consumer: BaseConsumer = super::client_config(config)
            .set("group.id", group)
            .create()
            .map_err(|source| CommittedError {
                group: group.to_string(),
                source,
            })?;
        Ok(Self {
            consumer: Arc::new(consumer),
            group: group.to_string(),
        })
    }

    /// What the group committed on `topic`'s `partitions`: the offset and
    /// its metadata, by partition (`None` where it committed nothing).
    /// Waits for up to `timeout` on a blocking thread.
    pub async fn read(
        &self,
        topic: &str,
        partitions: &[i32],
        timeout: Duration,
    ) -> Result<Vec<(i32, Option<Committed>)>, CommittedError> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(topic, p);
        }
        let consumer = self.consumer.clone();
        let committed =
            tokio::task::spawn_blocking(move || consumer.committed_offsets(tpl, timeout))
                .await
                .expect("reading committed offsets does not panic")
                .map_err(|source| CommittedError {
                    group: self.group.clone(),
                    source,
                })?;
        Ok(committed
            .elements_for_topic(topic)
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), Some((o, e.metadata().to_string()))),
                _ => (e.partition(), None),
            })
            .collect())
    }
}

/// Offsets for tests and tools: the group's committed offset per partition.
pub fn committed_offsets(
    config: &KafkaConfig,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<Vec<(i32, Option<i64>)>, KafkaError> {
    let consumer: BaseConsumer = super::client_config(config)
        .set("group.id", &config.group_id)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    Ok(committed
        .elements_for_topic(topic)
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), Some(o)),
            _ => (e.partition(), None),
        })
        .collect())
}
