//! `hookline dlq stats`: the whole dead-letter topic counted by tenant and
//! reason, with the oldest and newest of each. It reads as a consumer
//! group of its own that never commits, so it changes nothing.

use std::time::Instant;

use super::filter::{DeadLetterFilter, Verdict};
use super::letter::LetterInfo;
use super::replay::{PROGRESS_INTERVAL, Progress};
use super::tally::Tallies;
use crate::config::KafkaConfig;
use crate::kafka::range_reader::{RangeReader, RangeReaderError, StartAt};
use crate::kafka::table_reader::CONNECT_TIMEOUT;

/// What the statistics found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterStats {
    /// Dead letters read: the whole topic.
    pub read: u64,
    /// Those that match the filter, by tenant and reason.
    pub tallies: Tallies,
}

/// Reads `topic` from the beginning to its end as it is when the call
/// starts and tallies the dead letters that `filter` takes. `progress` is
/// called about once a second, with `matched` the dead letters counted.
pub async fn dead_letter_stats(
    kafka: &KafkaConfig,
    topic: &str,
    filter: &DeadLetterFilter,
    mut progress: impl FnMut(&Progress),
) -> Result<DeadLetterStats, RangeReaderError> {
    let started = Instant::now();
    // A group of its own, which it never commits to: librdkafka wants one.
    let group = format!("{}.dlq-stats", kafka.group_id);
    let mut reader =
        RangeReader::open(kafka, topic, &group, StartAt::Beginning, CONNECT_TIMEOUT).await?;
    let to_read = reader.offsets_to_read();
    let mut stats = DeadLetterStats {
        read: 0,
        tallies: Tallies::default(),
    };
    let mut matched = 0;
    let mut last_report = Instant::now();
    while let Some(record) = reader.next().await? {
        stats.read += 1;
        let letter = LetterInfo::of(&record);
        if filter.verdict(&letter) == Verdict::Take {
            stats.tallies.add(&letter);
            matched += 1;
        }
        if last_report.elapsed() >= PROGRESS_INTERVAL {
            progress(&Progress {
                read: stats.read,
                to_read,
                matched,
                replayed: 0,
                elapsed: started.elapsed(),
            });
            last_report = Instant::now();
        }
    }
    Ok(stats)
}
