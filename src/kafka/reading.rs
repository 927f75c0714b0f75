//! What the readers that assign partitions themselves share (the table
//! reader and the range reader): their consumer configuration, finding a
//! topic's partitions, its watermarks, and noticing that a partition's
//! position reached a target offset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset};

use super::connection::{self, ConnectionFailure, METADATA_SLICE, WatchedContext};
use crate::config::KafkaConfig;

/// The consumer of the readers; its context notices a connection refused
/// for its credentials or TLS settings.
pub(super) type ReadingConsumer = StreamConsumer<WatchedContext>;

/// Why the partitions of a topic could not be found.
pub(super) enum MetadataError {
    Kafka(KafkaError),
    /// The broker refused the credentials or the TLS handshake failed.
    Connection(Arc<ConnectionFailure>),
}

/// Creates a reading consumer from `client` (made by
/// [`assigning_consumer`]).
pub(super) fn create(
    config: &KafkaConfig,
    client: &ClientConfig,
) -> Result<ReadingConsumer, KafkaError> {
    client.create_with_context(WatchedContext::new(
        config.properties.get("sasl.username"),
        true,
    ))
}

/// How long one watermark request may take.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// The configuration of a consumer that is assigned partitions rather than
/// subscribed, under `group`, and stores or commits nothing unless told.
pub(super) fn assigning_consumer(config: &KafkaConfig, group: &str) -> ClientConfig {
    let mut client = super::client_config(config);
    client
        // librdkafka wants a group id even for a manual assignment; the
        // group is never joined, because nothing subscribes.
        .set("group.id", group)
        // The same session timeout as the group consumer, so that
        // pass-through properties checked against it (such as
        // max.poll.interval.ms) are valid for every client.
        .set(
            "session.timeout.ms",
            config.session_timeout.as_millis().to_string(),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // Prefetched records are memory on top of what the reader builds;
        // librdkafka's default prefetch is 64 MB. 8 MB still keeps the
        // fetches large.
        .set("queued.max.messages.kbytes", "8192")
        // Once that prefetch is full, librdkafka postpones the next fetch by
        // this much (1 s by default), which a reader drains in a fraction of
        // that: without it, reading 100,000 records stalled for a second
        // every 8 MB.
        .set("fetch.queue.backoff.ms", "10");
    client
}

/// The partitions of `topic`, or `None` when the cluster does not know the
/// topic. `timeout` bounds the metadata request; a connection refused for
/// its credentials or TLS settings ends it at once. It must be the first
/// request of a reader, made before anything is assigned.
pub(super) async fn partitions_of(
    consumer: &Arc<ReadingConsumer>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Vec<i32>>, MetadataError> {
    let mut failures = consumer.context().failures();
    let deadline = Instant::now() + timeout;
    // In slices, so that the blocking thread is free soon after a failure.
    let fetch = async {
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(METADATA_SLICE);
            let fetching = consumer.clone();
            let name = topic.to_string();
            let fetched =
                tokio::task::spawn_blocking(move || fetching.fetch_metadata(Some(&name), slice))
                    .await
                    .expect("the metadata request does not panic");
            match fetched {
                Err(KafkaError::MetadataFetch(code))
                    if connection::still_connecting(code) && Instant::now() < deadline => {}
                fetched => return fetched,
            }
        }
    };
    // The client's errors reach its context only when its queue is
    // served. Nothing is assigned before this first request, so serving it
    // takes no record: it holds only errors and logs.
    let serve = async {
        loop {
            let _ = consumer.recv().await;
        }
    };
    let metadata = tokio::select! {
        never = serve => never,
        fetched = fetch => match fetched {
            Ok(metadata) => metadata,
            // A failure seen as the last slice ended says more than it.
            Err(error) => {
                let failure = consumer.context().failures().borrow().clone();
                return Err(failure.map_or(MetadataError::Kafka(error), MetadataError::Connection));
            }
        },
        // The sender lives in the consumer's context, which `consumer`
        // holds: the watch cannot close while this waits.
        Ok(failure) = failures.wait_for(Option::is_some) => {
            let failure = failure.clone().expect("wait_for saw Some");
            return Err(MetadataError::Connection(failure));
        }
    };
    consumer.context().connected();
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .filter(|p| !p.is_empty()))
}

/// `(low, high)` watermarks of each of `partitions`.
pub(super) async fn watermarks(
    consumer: &Arc<ReadingConsumer>,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, (i64, i64)>, KafkaError> {
    let consumer = consumer.clone();
    let topic = topic.to_string();
    let partitions = partitions.to_vec();
    tokio::task::spawn_blocking(move || {
        partitions
            .into_iter()
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic, p, WATERMARK_TIMEOUT)
                    .map(|w| (p, w))
            })
            .collect()
    })
    .await
    .expect("the watermark requests do not panic")
}

/// Removes from `pending` (partition → target offset) every partition whose
/// consumer position reached its target, and returns them. The position,
/// not the last record seen, tells: compaction leaves gaps, and transaction
/// markers occupy offsets that are never delivered, so the last record of a
/// partition may sit well below its high watermark.
pub(super) fn drop_caught_up(
    consumer: &ReadingConsumer,
    topic: &str,
    pending: &mut BTreeMap<i32, i64>,
) -> Result<Vec<i32>, KafkaError> {
    let positions = consumer.position()?;
    let mut caught_up = Vec::new();
    for element in positions.elements_for_topic(topic) {
        if let Offset::Offset(position) = element.offset()
            && pending
                .get(&element.partition())
                .is_some_and(|&target| position >= target)
        {
            pending.remove(&element.partition());
            caught_up.push(element.partition());
        }
    }
    Ok(caught_up)
}
