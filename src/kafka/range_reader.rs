//! Reading a topic over a fixed range of offsets: each partition from where
//! a consumer group left off (or from the beginning) up to the high
//! watermark taken when the read starts. The partitions are assigned, not
//! subscribed, so the group is never joined and nothing rebalances; offsets
//! are committed only when the caller says, and only those it names.
//!
//! The dead-letter replay reads this way and commits what it replayed, so
//! that the next run of the same replay starts after it; the dead-letter
//! statistics read the whole topic and commit nothing.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::connection::ConnectionFailure;
use super::reading::{self, MetadataError, ReadingConsumer};
use super::record::{Record, RecordParts};
use crate::config::KafkaConfig;

/// How long to wait for a record before checking positions again: a
/// partition whose tail is only transaction markers delivers nothing, so
/// the read must not wait for a record to notice it is done.
const POSITION_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// How long reading the group's committed offsets may take.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RangeReaderError {
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
    #[error("cannot read the offsets committed by consumer group `{group}`: {source}")]
    Committed {
        group: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading `{topic}` failed: {source}")]
    Read {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("committing the offsets of consumer group `{group}` failed: {source}")]
    Commit {
        group: String,
        #[source]
        source: KafkaError,
    },
}

/// Where each partition's read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The group's committed offset; the beginning where it committed none.
    Committed,
    /// The beginning of every partition, whatever the group committed.
    Beginning,
}

/// A consumer assigned to the partitions of one topic, each over the range
/// of offsets it reads.
pub struct RangeReader {
    consumer: Arc<ReadingConsumer>,
    topic: Arc<str>,
    group: String,
    ranges: BTreeMap<i32, Range<i64>>,
    /// Whether the group had committed an offset of any partition.
    resumed: bool,
    /// Partitions not read to their end yet, with that end.
    pending: BTreeMap<i32, i64>,
}

impl RangeReader {
    /// Connects as `group`, finds the partitions of `topic`, takes their high
    /// watermarks as the end of the read, and assigns each partition that
    /// has something to read from `start`. `timeout` bounds the metadata
    /// request that finds the partitions.
    pub async fn open(
        config: &KafkaConfig,
        topic: &str,
        group: &str,
        start: StartAt,
        timeout: Duration,
    ) -> Result<Self, RangeReaderError> {
        let client = reading::assigning_consumer(config, group)
            // An offset that retention removed since it was committed reads
            // from the oldest record still there.
            .set("auto.offset.reset", "earliest")
            // Dead letters written in a transaction that was then aborted
            // (`delivery.transactional_dlq`) are not dead letters: only
            // committed records are read. librdkafka's default, said here
            // because replay and the listings depend on it.
            .set("isolation.level", "read_committed")
            .clone();
        let consumer = reading::create(config, &client).map_err(RangeReaderError::Client)?;
        let consumer = Arc::new(consumer);
        let metadata_error = |source| RangeReaderError::Metadata {
            topic: topic.to_string(),
            source,
        };
        let partitions = reading::partitions_of(&consumer, topic, timeout)
            .await
            .map_err(|error| match error {
                MetadataError::Kafka(source) => metadata_error(source),
                MetadataError::Connection(failure) => RangeReaderError::Connection(failure),
            })?
            .ok_or_else(|| RangeReaderError::MissingTopic {
                topic: topic.to_string(),
            })?;
        let watermarks = reading::watermarks(&consumer, topic, &partitions)
            .await
            .map_err(metadata_error)?;
        let committed = match start {
            StartAt::Beginning => BTreeMap::new(),
            StartAt::Committed => committed(&consumer, topic, group, &partitions).await?,
        };

        let mut ranges = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for (&partition, &(low, high)) in &watermarks {
            let first = match committed.get(&partition) {
                Some(&offset) if offset > high => {
                    // Only a topic deleted and created again under the same
                    // name has fewer records than the group read: what it
                    // holds now was never read.
                    tracing::warn!(
                        %topic, partition, group, committed = offset, high_watermark = high,
                        "the group committed an offset beyond the end of the partition; \
                         reading it from the beginning"
                    );
                    low
                }
                Some(&offset) => offset.max(low),
                None => low,
            };
            ranges.insert(partition, first..high);
            if first < high {
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(first))
                    .map_err(RangeReaderError::Client)?;
            }
        }
        consumer
            .assign(&assignment)
            .map_err(RangeReaderError::Client)?;
        let pending = ranges
            .iter()
            .filter(|(_, range)| !range.is_empty())
            .map(|(&partition, range)| (partition, range.end))
            .collect();
        Ok(Self {
            consumer,
            topic: Arc::from(topic),
            group: group.to_string(),
            ranges,
            resumed: !committed.is_empty(),
            pending,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The range of offsets each partition reads: from its start to the
    /// high watermark taken when the reader opened. Empty when the
    /// partition has nothing to read.
    pub fn ranges(&self) -> &BTreeMap<i32, Range<i64>> {
        &self.ranges
    }

    /// How many records the ranges span: what is left to read, at most
    /// (compaction and transaction markers leave offsets without a record).
    pub fn offsets_to_read(&self) -> u64 {
        self.ranges
            .values()
            .map(|range| u64::try_from(range.end - range.start).unwrap_or(0))
            .sum()
    }

    /// Whether the read starts where the group left off in some partition
    /// (as opposed to the beginning of every partition: the group committed
    /// nothing, or the reader was told to start there).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The next record, in offset order within its partition; `None` once
    /// every partition was read to the end of its range. Records written
    /// since the reader opened are not returned.
    pub async fn next(&mut self) -> Result<Option<Record>, RangeReaderError> {
        loop {
            if self.pending.is_empty() {
                return Ok(None);
            }
            let message =
                match tokio::time::timeout(POSITION_CHECK_INTERVAL, self.consumer.recv()).await {
                    Ok(Ok(message)) => message,
                    Ok(Err(source)) => return Err(self.read_error(source)),
                    Err(_elapsed) => {
                        let caught_up =
                            reading::drop_caught_up(&self.consumer, &self.topic, &mut self.pending)
                                .map_err(|source| self.read_error(source))?;
                        self.pause(&caught_up)?;
                        continue;
                    }
                };
            let (partition, offset) = (message.partition(), message.offset());
            // A record at or past the end was written after the reader
            // opened (prefetched before its partition was paused).
            let Some(&end) = self.pending.get(&partition) else {
                continue;
            };
            if offset + 1 >= end {
                self.pending.remove(&partition);
                self.pause(&[partition])?;
            }
            if offset >= end {
                continue;
            }
            let headers: Vec<(&str, Option<&[u8]>)> = message
                .headers()
                .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect())
                .unwrap_or_default();
            return Ok(Some(Record::new(RecordParts {
                topic: self.topic.clone(),
                partition,
                offset,
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key(),
                value: message.payload(),
                headers: &headers,
            })));
        }
    }

    /// Commits `offsets` (partition → the offset of the next record to read)
    /// for the reader's group, waiting for the broker's answer.
    pub async fn commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<(), RangeReaderError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let commit_error = |source| RangeReaderError::Commit {
            group: self.group.clone(),
            source,
        };
        let mut list = TopicPartitionList::new();
        for (&partition, &offset) in offsets {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                .map_err(commit_error)?;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .expect("a commit does not panic")
            .map_err(commit_error)
    }

    /// Stops fetching `partitions`, which were read to the end of their
    /// range, so that records written since are not fetched for nothing.
    fn pause(&self, partitions: &[i32]) -> Result<(), RangeReaderError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            list.add_partition(&self.topic, partition);
        }
        self.consumer
            .pause(&list)
            .map_err(|source| self.read_error(source))
    }

    fn read_error(&self, source: KafkaError) -> RangeReaderError {
        RangeReaderError::Read {
            topic: self.topic.to_string(),
            source,
        }
    }
}

/// The offsets `group` committed on `topic`, by partition; partitions
/// without one are left out.
async fn committed(
    consumer: &Arc<ReadingConsumer>,
    topic: &str,
    group: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, RangeReaderError> {
    let mut list = TopicPartitionList::new();
    for &partition in partitions {
        list.add_partition(topic, partition);
    }
    let consumer = consumer.clone();
    let committed =
        tokio::task::spawn_blocking(move || consumer.committed_offsets(list, COMMITTED_TIMEOUT))
            .await
            .expect("reading committed offsets does not panic")
            .map_err(|source| RangeReaderError::Committed {
                group: group.to_string(),
                source,
            })?;
    Ok(committed
        .elements_for_topic(topic)
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => Some((element.partition(), offset)),
            _ => None,
        })
        .collect())
}
