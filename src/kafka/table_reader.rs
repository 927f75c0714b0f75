//! Reading a compacted topic as a table, the way Kafka Streams restores a
//! GlobalKTable: every partition from the beginning up to the high watermark
//! seen at start, then following new records live.
//!
//! "Caught up" compares the consumer's position with the high watermark
//! rather than the last record's offset: compaction leaves gaps and
//! transaction markers occupy offsets that are never delivered, so the last
//! record of a partition may sit well below its high watermark.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::connection::ConnectionFailure;
use super::reading::{self, MetadataError, ReadingConsumer};
use crate::config::KafkaConfig;

/// How long [`TableReader::connect`] waits for the cluster to answer the
/// metadata request when its callers start up: a replica restoring the
/// tenant table, the tenant API, and the `tenants` commands.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for a record before checking positions again; a
/// partition whose tail is only transaction markers delivers nothing, so the
/// restore must not wait for a record to notice it is done.
const POSITION_CHECK_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum TableReaderError {
    #[error("cannot create a consumer: {0}")]
    Client(#[source] KafkaError),
    #[error("topic `{topic}` does not exist (run `hookline setup-topics`)")]
    MissingTopic { topic: String },
    /// The broker refused the credentials or the TLS handshake failed.
    #[error("{0}")]
    Connection(Arc<ConnectionFailure>),
    #[error("cannot reach the Kafka cluster to read `{topic}`: {source}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading `{topic}` failed: {source}")]
    Read {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

impl TableReaderError {
    /// Whether the cluster could not be reached or read for now, so the
    /// same request may succeed later (as opposed to a missing topic or a
    /// bad client configuration).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TableReaderError::Metadata { .. } | TableReaderError::Read { .. }
        )
    }
}

/// One record of the table topic: a new value for `key`, or its deletion
/// (a tombstone, `value == None`).
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
    pub partition: i32,
    pub offset: i64,
}

/// Where a restore stands, reported while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    pub records: u64,
    pub partitions_done: usize,
    pub partitions: usize,
}

/// What a finished restore read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreSummary {
    pub records: u64,
    pub partitions: usize,
    pub elapsed: Duration,
}

/// A consumer assigned to every partition of one topic, outside any consumer
/// group: each replica reads the whole table and commits nothing.
pub struct TableReader {
    consumer: Arc<ReadingConsumer>,
    topic: String,
    partitions: Vec<i32>,
}

impl TableReader {
    /// Connects and assigns every partition of `topic` from its beginning.
    /// `timeout` bounds the metadata request that finds the partitions.
    pub async fn connect(
        config: &KafkaConfig,
        topic: &str,
        timeout: Duration,
    ) -> Result<Self, TableReaderError> {
        // The group is never joined and nothing is committed to it: every
        // replica reads the whole table.
        let group = format!("{}.table-reader", config.group_id);
        let consumer = reading::create(config, &reading::assigning_consumer(config, &group))
            .map_err(TableReaderError::Client)?;
        let consumer = Arc::new(consumer);

        let partitions = reading::partitions_of(&consumer, topic, timeout)
            .await
            .map_err(|error| match error {
                MetadataError::Kafka(source) => TableReaderError::Metadata {
                    topic: topic.to_string(),
                    source,
                },
                MetadataError::Connection(failure) => TableReaderError::Connection(failure),
            })?
            .ok_or_else(|| TableReaderError::MissingTopic {
                topic: topic.to_string(),
            })?;

        let mut assignment = TopicPartitionList::new();
        for &partition in &partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(TableReaderError::Client)?;
        }
        consumer
            .assign(&assignment)
            .map_err(TableReaderError::Client)?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
            partitions,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Reads every partition up to the high watermark observed when the
    /// restore starts, handing each record to `apply`. Records produced
    /// later are left for [`TableReader::follow`].
    pub async fn restore_to_high_watermark(
        &self,
        mut apply: impl FnMut(Change<'_>),
        mut progress: impl FnMut(RestoreProgress),
    ) -> Result<RestoreSummary, TableReaderError> {
        let started = Instant::now();
        let targets = self.high_watermarks().await?;
        let mut pending: BTreeMap<i32, i64> = targets
            .into_iter()
            .filter(|&(_, (low, high))| high > low)
            .map(|(partition, (_, high))| (partition, high))
            .collect();
        let partitions = self.partitions.len();
        let mut records = 0u64;
        let mut last_report = Instant::now();

        while !pending.is_empty() {
            match tokio::time::timeout(POSITION_CHECK_INTERVAL, self.consumer.recv()).await {
                Ok(Ok(message)) => {
                    let partition = message.partition();
                    if let Some(&high) = pending.get(&partition) {
                        // Past the target, a record belongs to the live
                        // phase; it is applied all the same (the table only
                        // moves forward) and ends this partition's restore.
                        if message.offset() + 1 >= high {
                            pending.remove(&partition);
                        }
                    }
                    if let Some(key) = message.key() {
                        apply(Change {
                            key,
                            value: message.payload(),
                            partition,
                            offset: message.offset(),
                        });
                    }
                    records += 1;
                }
                Ok(Err(source)) => {
                    return Err(TableReaderError::Read {
                        topic: self.topic.clone(),
                        source,
                    });
                }
                Err(_elapsed) => self.drop_caught_up(&mut pending)?,
            }
            if last_report.elapsed() >= Duration::from_millis(500) {
                self.drop_caught_up(&mut pending)?;
                progress(RestoreProgress {
                    records,
                    partitions_done: partitions - pending.len(),
                    partitions,
                });
                last_report = Instant::now();
            }
        }
        progress(RestoreProgress {
            records,
            partitions_done: partitions,
            partitions,
        });
        Ok(RestoreSummary {
            records,
            partitions,
            elapsed: started.elapsed(),
        })
    }

    /// Applies records as they arrive until `shutdown` is cancelled.
    /// Transient read errors are logged and retried: the table stays as it
    /// was until the cluster answers again.
    pub async fn follow(&self, mut apply: impl FnMut(Change<'_>), shutdown: CancellationToken) {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = self.consumer.recv() => message,
            };
            match message {
                Ok(message) => {
                    if let Some(key) = message.key() {
                        apply(Change {
                            key,
                            value: message.payload(),
                            partition: message.partition(),
                            offset: message.offset(),
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "reading the table topic failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// `(low, high)` watermarks of every partition.
    async fn high_watermarks(&self) -> Result<BTreeMap<i32, (i64, i64)>, TableReaderError> {
        reading::watermarks(&self.consumer, &self.topic, &self.partitions)
            .await
            .map_err(|source| TableReaderError::Metadata {
                topic: self.topic.clone(),
                source,
            })
    }

    /// Removes from `pending` every partition whose position reached its
    /// target high watermark.
    fn drop_caught_up(&self, pending: &mut BTreeMap<i32, i64>) -> Result<(), TableReaderError> {
        reading::drop_caught_up(&self.consumer, &self.topic, pending)
            .map(|_| ())
            .map_err(|source| TableReaderError::Read {
                topic: self.topic.clone(),
                source,
            })
    }
}
