//! Writing dead letters, the I/O half of [`super`]: the original key, value and headers plus the
//! `dlq.*` headers, acknowledged by the broker before the source offset may
//! be stored. A failing write is retried until it succeeds or the partition
//! is taken away; it is never skipped.
//!
//! With `delivery.transactional_dlq`, the dead letter and the commit of its
//! source offset go in one transaction: the record's task writes the dead
//! letter, asks the partition's driver for the checkpoint as it will be once
//! the record finished ([`JobControl::propose`]), and commits both. A replica
//! that dies in between leaves an open transaction, which the broker aborts:
//! the record is dead-lettered again by the next owner, and only that dead
//! letter is ever visible to `read_committed` readers.

use std::sync::Arc;
use std::time::Duration;

use super::{DeadLetter, DlqPosition};
use crate::delivery::Abandoned;
use crate::delivery::fault;
use crate::delivery::partition::JobControl;
use crate::delivery::scheduler::Done;
use crate::kafka::producer::{AckedProducer, ProduceError};
use crate::kafka::record::Record;
use crate::kafka::transactional::{TransactionError, TransactionalProducer};

/// Pause between two attempts at a failing dead-letter write.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct DeadLetterWriter {
    producer: AckedProducer,
    /// Present with `delivery.transactional_dlq`.
    transactional: Option<Arc<TransactionalProducer>>,
    topic: String,
}

/// Why one transactional try did not commit.
enum TryFailed {
    /// Nothing of it will be committed: try again.
    Retry(String),
    /// It may yet commit: give the record up, and the partition with it.
    InDoubt(TransactionError),
}

impl DeadLetterWriter {
    pub fn new(producer: AckedProducer, topic: impl Into<String>) -> Self {
        Self {
            producer,
            transactional: None,
            topic: topic.into(),
        }
    }

    /// Writes every dead letter in a transaction with its source offset.
    pub fn transactional(mut self, producer: TransactionalProducer) -> Self {
        self.transactional = Some(Arc::new(producer));
        self
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `record` with the headers of `letter`, retrying until the
    /// broker acknowledges it or `control.abort` is cancelled. Returns where
    /// the dead letter landed. In a transaction, it also commits the
    /// partition's checkpoint once the record finished as `done` says for
    /// that position.
    pub async fn write(
        &self,
        record: &Record,
        letter: &DeadLetter,
        control: &JobControl,
        done: impl Fn(DlqPosition) -> Done,
    ) -> Result<DlqPosition, Abandoned> {
        let added = letter.headers();
        loop {
            let failed = match &self.transactional {
                None => match self.write_once(record, &added).await {
                    Ok(at) => {
                        fault::dead_letter_written();
                        return Ok(at);
                    }
                    Err(e) => e.to_string(),
                },
                Some(producer) => {
                    match self
                        .write_in_transaction(producer, record, &added, control, &done)
                        .await
                    {
                        Ok(at) => return Ok(at),
                        Err(TryFailed::Retry(e)) => e,
                        Err(TryFailed::InDoubt(e)) => {
                            tracing::error!(
                                partition = record.partition(),
                                offset = record.offset(),
                                error = %e,
                                "dead-letter transaction in doubt; giving the record up"
                            );
                            return Err(Abandoned);
                        }
                    }
                }
            };
            tracing::warn!(
                partition = record.partition(),
                offset = record.offset(),
                error = %failed,
                "dead-letter write failed; retrying"
            );
            tokio::select! {
                _ = control.abort.cancelled() => return Err(Abandoned),
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
            }
        }
    }

    async fn write_once(
        &self,
        record: &Record,
        added: &[(&'static str, String)],
    ) -> Result<DlqPosition, ProduceError> {
        let mut headers = record.headers();
        headers.extend(added.iter().map(|(k, v)| (*k, Some(v.as_bytes()))));
        self.producer
            .send_record(&self.topic, record.key(), record.value(), &headers)
            .await
            .map(|ack| DlqPosition {
                partition: ack.partition,
                offset: ack.offset,
            })
    }

    /// One transaction: the dead letter, then the checkpoint the driver
    /// proposes for the record finished, then the commit. Whatever fails
    /// before the commit aborts it (dropping the transaction aborts it too,
    /// so an abort of the task mid-way leaves nothing behind).
    async fn write_in_transaction(
        &self,
        producer: &TransactionalProducer,
        record: &Record,
        added: &[(&'static str, String)],
        control: &JobControl,
        done: &impl Fn(DlqPosition) -> Done,
    ) -> Result<DlqPosition, TryFailed> {
        let mut transaction = tokio::select! {
            _ = control.abort.cancelled() => return Err(TryFailed::Retry("abandoned".into())),
            begun = producer.begin() => begun.map_err(|e| TryFailed::Retry(e.to_string()))?,
        };
        let mut headers = record.headers();
        headers.extend(added.iter().map(|(k, v)| (*k, Some(v.as_bytes()))));
        let at = match transaction
            .send_record(&self.topic, record.key(), record.value(), &headers)
            .await
        {
            Ok(ack) => DlqPosition {
                partition: ack.partition,
                offset: ack.offset,
            },
            Err(e) => {
                transaction.abort().await;
                return Err(TryFailed::Retry(format!(
                    "writing to `{}`: {e}",
                    self.topic
                )));
            }
        };
        fault::dead_letter_written();
        let Some(proposal) = control.propose(done(at)).await else {
            transaction.abort().await;
            return Err(TryFailed::Retry(
                "the partition's pending offsets could not be committed first".into(),
            ));
        };
        match transaction
            .commit(
                record.topic(),
                record.partition(),
                proposal.offset,
                &proposal.metadata,
            )
            .await
        {
            Ok(()) => Ok(at),
            Err(e @ TransactionError::InDoubt(_)) => Err(TryFailed::InDoubt(e)),
            Err(e) => {
                control.withdraw();
                Err(TryFailed::Retry(e.to_string()))
            }
        }
    }
}
