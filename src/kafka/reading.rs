//! What the readers that assign partitions themselves share (the table
//! reader and the range reader): their consumer configuration, finding a
//! topic's partitions, its watermarks, and noticing that a partition's
//! position reached a target offset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset};

use crate::config::KafkaConfig;

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
/// topic. `timeout` bounds the metadata request.
pub(super) async fn partitions_of(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Vec<i32>>, KafkaError> {
    let consumer = consumer.clone();
    let name = topic.to_string();
    let metadata =
        tokio::task::spawn_blocking(move || consumer.fetch_metadata(Some(&name), timeout))
            .await
            .expect("the metadata request does not panic")?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .filter(|p| !p.is_empty()))
}

/// `(low, high)` watermarks of each of `partitions`.
pub(super) async fn watermarks(
    consumer: &Arc<StreamConsumer>,
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
    consumer: &StreamConsumer,
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
