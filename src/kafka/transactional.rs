//! Dead letters written in one Kafka transaction with the commit of their
//! source record's offset (`delivery.transactional_dlq`).
//!
//! One transactional producer per replica. A producer runs one transaction
//! at a time, so [`TransactionalProducer::begin`] takes it for the caller
//! until the [`Transaction`] commits, aborts or is dropped (which aborts
//! it). The offsets are committed with the consumer's group metadata, read
//! afresh for every commit: the broker refuses them from a member that is
//! no longer in the generation it names (KIP-447), so a replica that lost
//! its partitions cannot commit for them.
//!
//! librdkafka's transactional calls block; they run on blocking threads,
//! each holding the producer for as long as it takes.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::group::GroupFence;
use super::producer::{Acknowledged, future_record};
use crate::config::KafkaConfig;

/// How long the broker lets a transaction stay open before it aborts it
/// (`transaction.timeout.ms`). A dead letter's transaction takes
/// milliseconds; this is how long the open transaction of a replica that
/// died holds back `read_committed` readers of its dead-letter partition,
/// and a new owner's read of the committed offset it would commit.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one transactional call (init, offsets, commit, abort) may wait.
const CALL_TIMEOUT: Duration = TRANSACTION_TIMEOUT;

/// How often a commit that timed out is tried again before it is aborted.
const COMMIT_TRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// Nothing of the transaction will ever be committed: it was aborted,
    /// or never got as far as its commit. The dead letter may be written
    /// again.
    #[error("dead-letter transaction not committed: {0}")]
    NotCommitted(#[source] KafkaError),
    /// The commit was sent and failed in a way that leaves its outcome
    /// unknown: the dead letter and its offset may yet be committed.
    #[error("dead-letter transaction in doubt: {0}")]
    InDoubt(#[source] KafkaError),
    /// The consumer has left the group: there is nothing to fence with.
    #[error("dead-letter transaction not committed: the consumer has left the group")]
    NotInGroup,
}

/// The replica's transactional producer.
pub struct TransactionalProducer {
    slot: Arc<Mutex<Slot>>,
    config: KafkaConfig,
    transactional_id: String,
    fence: GroupFence,
}

/// The producer, created (and its transactions initialised) on first use,
/// and again after a fatal error.
struct Slot {
    producer: Option<FutureProducer>,
}

impl TransactionalProducer {
    /// A producer with `transactional_id`, unique to this replica (two live
    /// producers with one id fence each other), committing offsets for the
    /// member `fence` names. Connects on first use.
    pub fn new(config: &KafkaConfig, transactional_id: String, fence: GroupFence) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Slot { producer: None })),
            config: config.clone(),
            transactional_id,
            fence,
        }
    }

    /// Waits for the producer, then begins a transaction on it.
    pub async fn begin(&self) -> Result<Transaction, TransactionError> {
        let mut slot = self.slot.clone().lock_owned().await;
        let producer = match &slot.producer {
            Some(producer) => producer.clone(),
            None => {
                let producer = self.create().map_err(TransactionError::NotCommitted)?;
                let init = producer.clone();
                blocking(move || init.init_transactions(CALL_TIMEOUT))
                    .await
                    .map_err(TransactionError::NotCommitted)?;
                slot.producer = Some(producer.clone());
                producer
            }
        };
        if let Err(e) = producer.begin_transaction() {
            drop_producer(&mut slot, &e);
            return Err(TransactionError::NotCommitted(e));
        }
        Ok(Transaction {
            slot: Some(slot),
            producer,
            fence: self.fence.clone(),
        })
    }

    fn create(&self) -> Result<FutureProducer, KafkaError> {
        super::client_config(&self.config)
            .set("transactional.id", &self.transactional_id)
            .set(
                "transaction.timeout.ms",
                TRANSACTION_TIMEOUT.as_millis().to_string(),
            )
            .set("acks", "all")
            .set("enable.idempotence", "true")
            // A transaction holds one record: waiting for others to batch
            // with it (librdkafka's default 5 ms) only delays the commit.
            .set("linger.ms", "0")
            .set(
                "message.timeout.ms",
                TRANSACTION_TIMEOUT.as_millis().to_string(),
            )
            // As for the acknowledged producer: a dead letter carries an
            // event value up to the topic's own limit.
            .set("message.max.bytes", "1000000000")
            .create()
    }
}

/// An open transaction, holding the replica's transactional producer.
/// Dropped before [`Transaction::commit`] or [`Transaction::abort`], it is
/// aborted on a blocking thread, and the producer waits for that.
pub struct Transaction {
    slot: Option<OwnedMutexGuard<Slot>>,
    producer: FutureProducer,
    fence: GroupFence,
}

impl Transaction {
    /// Writes a record exactly as given within the transaction; returns
    /// where it landed once the broker acknowledged it (invisible to
    /// `read_committed` readers until the transaction commits).
    pub async fn send_record(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Result<Acknowledged, KafkaError> {
        let record = future_record(topic, key, value, headers);
        match self
            .producer
            .send(record, Timeout::After(TRANSACTION_TIMEOUT))
            .await
        {
            Ok(delivery) => Ok(Acknowledged {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((e, _)) => Err(e),
        }
    }

    /// Commits `next_offset` with `metadata` for `topic`/`partition` as this
    /// consumer group member, and the transaction with it. On
    /// [`TransactionError::NotCommitted`] the transaction has been aborted.
    pub async fn commit(
        mut self,
        topic: &str,
        partition: i32,
        next_offset: i64,
        metadata: &str,
    ) -> Result<(), TransactionError> {
        let mut slot = self.slot.take().expect("a transaction holds its producer");
        let Some(group) = self.fence.metadata() else {
            abort_on(slot).await;
            return Err(TransactionError::NotInGroup);
        };
        let offsets = match source_offsets(topic, partition, next_offset, metadata) {
            Ok(offsets) => offsets,
            Err(e) => {
                abort_on(slot).await;
                return Err(TransactionError::NotCommitted(e));
            }
        };
        let producer = self.producer.clone();
        let (slot, result) = tokio::task::spawn_blocking(move || {
            let (result, unusable) = commit_blocking(&producer, &offsets, &group);
            if let (true, Err(e)) = (unusable, &result) {
                drop_producer(&mut slot, e);
            }
            (slot, result)
        })
        .await
        .expect("a transactional call does not panic");
        drop(slot);
        result
    }

    /// Aborts the transaction: nothing written in it becomes visible to
    /// `read_committed` readers.
    pub async fn abort(mut self) {
        if let Some(slot) = self.slot.take() {
            abort_on(slot).await;
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // The producer stays taken until the abort is done; without a
            // runtime (the process is ending) it is dropped with the rest.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(abort_on(slot));
            }
        }
    }
}

/// The source offset with its metadata, as the transaction commits it.
fn source_offsets(
    topic: &str,
    partition: i32,
    next_offset: i64,
    metadata: &str,
) -> Result<TopicPartitionList, KafkaError> {
    let mut offsets = TopicPartitionList::new();
    let mut element = offsets.add_partition(topic, partition);
    element.set_offset(Offset::Offset(next_offset))?;
    element.set_metadata(metadata);
    Ok(offsets)
}

/// Offsets, then the commit, retried while it only timed out; aborted when
/// librdkafka says it must be. Also whether the producer is unusable now
/// (a fatal error, or a transaction it could not abort).
fn commit_blocking(
    producer: &FutureProducer,
    offsets: &TopicPartitionList,
    group: &rdkafka::consumer::ConsumerGroupMetadata,
) -> (Result<(), TransactionError>, bool) {
    if let Err(e) = producer.send_offsets_to_transaction(offsets, group, CALL_TIMEOUT) {
        // Not committed: the commit was never sent. A transaction this
        // producer cannot abort is left to the broker, which aborts it when
        // it times out, and to the next producer with the same id.
        let unusable = producer.abort_transaction(CALL_TIMEOUT).is_err();
        return (Err(TransactionError::NotCommitted(e)), unusable);
    }
    let mut tries = 0;
    loop {
        tries += 1;
        let error = match producer.commit_transaction(CALL_TIMEOUT) {
            Ok(()) => return (Ok(()), false),
            Err(e) => e,
        };
        let (retriable, requires_abort) = classify(&error);
        if requires_abort {
            // The broker did not take the commit; aborting only tidies up.
            let unusable = producer.abort_transaction(CALL_TIMEOUT).is_err();
            return (Err(TransactionError::NotCommitted(error)), unusable);
        }
        if !retriable || tries >= COMMIT_TRIES {
            return (Err(TransactionError::InDoubt(error)), true);
        }
    }
}

/// Whether a transactional call may be retried, and whether the
/// transaction must be aborted.
fn classify(error: &KafkaError) -> (bool, bool) {
    match error {
        KafkaError::Transaction(e) => (e.is_retriable(), e.txn_requires_abort()),
        _ => (false, false),
    }
}

/// Drops the producer after `error`: the next transaction starts on a new
/// one with the same id, whose initialisation fences the old one and
/// aborts whatever it left open.
fn drop_producer(slot: &mut Slot, error: &dyn std::fmt::Display) {
    tracing::warn!(error = %error, "the transactional producer is replaced");
    slot.producer = None;
}

/// Aborts the open transaction of the producer in `slot`, on a blocking
/// thread, releasing the producer afterwards.
async fn abort_on(mut slot: OwnedMutexGuard<Slot>) {
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(producer) = &slot.producer
            && let Err(e) = producer.abort_transaction(CALL_TIMEOUT)
        {
            drop_producer(&mut slot, &e);
        }
    })
    .await;
}

async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(call)
        .await
        .expect("a transactional call does not panic")
}
