//! Resuming a suspended tenant in order: its parked events first, then its
//! new ones.
//!
//! The replica does the ordering (`delivery::scheduler::Done`): once an
//! operator's suspension parked a tenant's events, its new events keep
//! being parked behind them until the replay of the newest parked one has
//! been delivered. This side replays: it writes the tenant's
//! `tenant_suspended` dead letters back to the events topic, waits until
//! the replica has finished what it wrote, and replays again what was
//! parked meanwhile, until a round finds nothing new. Then the replica has
//! delivered every parked event, in order, and delivers the tenant's next
//! events as usual.
//!
//! The rounds share the consumer group of `hookline dlq replay --tenant T
//! --reason tenant_suspended`, so each dead letter is replayed once whichever
//! of the two runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::filter::DeadLetterFilter;
use super::replay::{Progress, ReplayError, ReplayOptions, ReplayTopics, replay};
use crate::config::KafkaConfig;
use crate::delivery::commit_metadata::CommitMetadata;
use crate::delivery::dead_letter::DlqReason;
use crate::kafka::group::{CommittedError, CommittedReader};

/// How often the replica's committed progress is read while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long one read of the committed offsets may take.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

/// Rounds after which a resumption that keeps finding newly parked events
/// gives up: the tenant's events arrive faster than its endpoint takes
/// them, or its endpoint fails again and the replays are parked anew.
pub const MAX_ROUNDS: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("cannot tell whether the replicas delivered the replayed events")]
    Progress(#[source] CommittedError),
    #[error(
        "{replayed} parked events replayed, but the replicas (consumer group `{group}`) did not \
         deliver them within {}; the tenant's new events stay parked behind them: run the same \
         command again once the replicas are running",
        humantime::format_duration(*waited)
    )]
    NotDelivered {
        group: String,
        replayed: u64,
        waited: Duration,
    },
    #[error(
        "{replayed} parked events replayed in {rounds} rounds, and more keep being parked (is the \
         tenant's endpoint failing again? `hookline dlq stats --tenant {tenant}`); its new events \
         stay parked behind them: run the same command again once its endpoint answers"
    )]
    NotCaughtUp {
        tenant: String,
        rounds: u32,
        replayed: u64,
    },
    #[error("interrupted: {replayed} parked events replayed; the same command continues")]
    Interrupted { replayed: u64 },
}

/// Where a resumption stands.
#[derive(Debug, Clone, Copy)]
pub enum ResumeProgress {
    /// Replaying round `round`.
    Replaying { round: u32, progress: Progress },
    /// Waiting for the replicas to deliver what round `round` wrote.
    Waiting { round: u32, waited: Duration },
}

/// What a resumption did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeSummary {
    /// Parked events replayed in all.
    pub replayed: u64,
    /// Rounds of replay (the last one found nothing new).
    pub rounds: u32,
    /// The consumer group that remembers the replay.
    pub group: String,
    pub elapsed: Duration,
}

/// Replays `tenant`'s parked events until the replicas of `delivery_group`
/// have delivered all of them and nothing new is parked. `deliver_within`
/// bounds each wait for the replicas.
pub async fn resume(
    kafka: &KafkaConfig,
    topics: &ReplayTopics,
    tenant: &str,
    deliver_within: Duration,
    stop: &CancellationToken,
    mut progress: impl FnMut(ResumeProgress),
) -> Result<ResumeSummary, ResumeError> {
    let started = Instant::now();
    let filter = DeadLetterFilter::new(
        [tenant.to_string()],
        [DlqReason::TenantSuspended],
        None,
        None,
    )
    .expect("a tenant id checked by the caller and one reason make a valid filter");
    let mut replayed = 0;
    for round in 1..=MAX_ROUNDS {
        let summary = replay(
            kafka,
            topics,
            &filter,
            ReplayOptions::default(),
            stop,
            |p| {
                progress(ResumeProgress::Replaying {
                    round,
                    progress: *p,
                });
            },
        )
        .await
        .map_err(|e| match e {
            ReplayError::Interrupted { replayed: now } => ResumeError::Interrupted {
                replayed: replayed + now,
            },
            e => e.into(),
        })?;
        replayed += summary.replayed.total().count;
        if summary.written.is_empty() {
            return Ok(ResumeSummary {
                replayed,
                rounds: round,
                group: summary.group,
                elapsed: started.elapsed(),
            });
        }
        wait_delivered(
            kafka,
            &topics.events,
            &summary.written,
            deliver_within,
            stop,
            |waited| progress(ResumeProgress::Waiting { round, waited }),
        )
        .await
        .map_err(|e| match e {
            Wait::Interrupted => ResumeError::Interrupted { replayed },
            Wait::TimedOut(waited) => ResumeError::NotDelivered {
                group: kafka.group_id.clone(),
                replayed,
                waited,
            },
            Wait::Progress(source) => ResumeError::Progress(source),
        })?;
    }
    Err(ResumeError::NotCaughtUp {
        tenant: tenant.to_string(),
        rounds: MAX_ROUNDS,
        replayed,
    })
}

enum Wait {
    Interrupted,
    TimedOut(Duration),
    Progress(CommittedError),
}

/// Waits until the delivery group has finished the record at each
/// `written` offset of `events` (delivered, filtered or dead-lettered).
async fn wait_delivered(
    kafka: &KafkaConfig,
    events: &str,
    written: &BTreeMap<i32, i64>,
    within: Duration,
    stop: &CancellationToken,
    mut progress: impl FnMut(Duration),
) -> Result<(), Wait> {
    let started = Instant::now();
    let reader = CommittedReader::new(kafka, &kafka.group_id).map_err(Wait::Progress)?;
    let partitions: Vec<i32> = written.keys().copied().collect();
    let mut last_report = Instant::now();
    loop {
        let committed = reader
            .read(events, &partitions, COMMITTED_TIMEOUT)
            .await
            .map_err(Wait::Progress)?;
        let committed: BTreeMap<i32, (i64, String)> = committed
            .into_iter()
            .filter_map(|(partition, c)| c.map(|c| (partition, c)))
            .collect();
        let done = written.iter().all(|(partition, &offset)| {
            committed
                .get(partition)
                .is_some_and(|(at, metadata)| is_finished(offset, *at, metadata))
        });
        if done {
            return Ok(());
        }
        let waited = started.elapsed();
        if waited >= within {
            return Err(Wait::TimedOut(waited));
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            progress(waited);
            last_report = Instant::now();
        }
        tokio::select! {
            () = stop.cancelled() => return Err(Wait::Interrupted),
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

/// Whether the record at `offset` is finished, given the partition's
/// committed offset and its metadata: below the committed offset, or
/// listed as finished above it.
fn is_finished(offset: i64, committed: i64, metadata: &str) -> bool {
    offset < committed
        || CommitMetadata::decode(metadata).is_some_and(|m| {
            m.offset == committed && m.finished_above.binary_search(&offset).is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_below_the_committed_offset_is_finished() {
        assert!(is_finished(9, 10, ""));
        assert!(!is_finished(10, 10, ""));
        assert!(!is_finished(11, 10, ""));
    }

    #[test]
    fn a_record_above_it_is_finished_when_the_metadata_lists_it() {
        let (metadata, _) = CommitMetadata {
            offset: 10,
            finished_above: vec![12, 14],
            ..Default::default()
        }
        .encode();
        assert!(is_finished(12, 10, &metadata));
        assert!(is_finished(14, 10, &metadata));
        assert!(!is_finished(13, 10, &metadata));
        assert!(!is_finished(10, 10, &metadata));
        // Metadata written with another offset says nothing about this one.
        assert!(!is_finished(12, 11, &metadata));
        assert!(!is_finished(12, 10, "some tool's note"));
    }
}
