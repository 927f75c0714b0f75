//! Writing dead letters, the I/O half of [`super`]: the original key, value and headers plus the
//! `dlq.*` headers, acknowledged by the broker before the source offset may
//! be stored. A failing write is retried until it succeeds or the partition
//! is taken away; it is never skipped.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{DeadLetter, DlqPosition};
use crate::delivery::Abandoned;
use crate::kafka::producer::{AckedProducer, ProduceError};
use crate::kafka::record::Record;

/// Pause between two attempts at a failing dead-letter write.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct DeadLetterWriter {
    producer: AckedProducer,
    topic: String,
}

impl DeadLetterWriter {
    pub fn new(producer: AckedProducer, topic: impl Into<String>) -> Self {
        Self {
            producer,
            topic: topic.into(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `record` with the headers of `letter`, retrying until the
    /// broker acknowledges it or `abort` is cancelled. Returns where the
    /// dead letter landed.
    pub async fn write(
        &self,
        record: &Record,
        letter: &DeadLetter,
        abort: &CancellationToken,
    ) -> Result<DlqPosition, Abandoned> {
        let added = letter.headers();
        loop {
            match self.write_once(record, &added).await {
                Ok(at) => return Ok(at),
                Err(e) => {
                    tracing::warn!(
                        partition = record.partition(),
                        offset = record.offset(),
                        error = %e,
                        "dead-letter write failed; retrying"
                    );
                }
            }
            tokio::select! {
                _ = abort.cancelled() => return Err(Abandoned),
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
}
