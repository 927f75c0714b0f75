//! The replay engine: reads the dead-letter topic over the range that this
//! filter's consumer group has not read yet, writes the dead letters that
//! match back to the events topic in order, acknowledged, and commits how
//! far it got. `hookline dlq replay` wires its flags to [`replay`]; a
//! tenant's own recovery through the API is the same call with a filter
//! limited to that tenant.
//!
//! Order: the dead-letter topic is keyed by tenant, so a tenant's dead
//! letters sit in one partition, in the order they were dead-lettered,
//! which is the order of the events. They are enqueued on the producer in
//! that order, one at a time, and the idempotent producer keeps the order
//! of what was enqueued (retries included). Each goes back to the partition
//! its event was read from (`dlq.partition`), where the tenant's other
//! events are, whichever partitioner their producer used. Many records are in flight at once,
//! and their acknowledgements are awaited in the order they were sent.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tokio_util::sync::CancellationToken;

use super::filter::{DeadLetterFilter, Verdict};
use super::letter::{LetterInfo, original_partition, replay_headers, replay_of};
use super::positions::Positions;
use super::tally::Tallies;
use crate::config::KafkaConfig;
use crate::delivery::dead_letter::DlqReason;
use crate::error::error_chain;
use crate::kafka::producer::{AckedProducer, Acknowledged, PendingAck, ProduceError};
use crate::kafka::range_reader::{RangeReader, RangeReaderError, StartAt};
use crate::kafka::record::Record;
use crate::kafka::table_reader::CONNECT_TIMEOUT;
use crate::topology::Topology;

/// How long one replayed record may wait for its acknowledgement, retries
/// included.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many records are in flight (sent, not acknowledged yet).
const MAX_IN_FLIGHT: usize = 1_000;

/// And at most this many bytes of keys and values.
const MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

/// How often the progress callback is called (by the statistics too).
pub(super) const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// How often a long replay commits what it replayed so far, so that a run
/// that dies is continued close to where it stopped.
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Read(#[from] RangeReaderError),
    #[error("cannot replay")]
    Producer(#[source] ProduceError),
    #[error(
        "replaying stopped at dead letter {partition}:{offset} of `{topic}` ({}, and \
         remembered); the same command starts again from {partition}:{offset}",
        dead_letters_replayed(*replayed)
    )]
    Write {
        topic: String,
        partition: i32,
        offset: i64,
        replayed: u64,
        #[source]
        source: ProduceError,
    },
    #[error(
        "{}, but remembering how far the replay got failed, so the same command would \
         replay them again",
        dead_letters_replayed(*replayed)
    )]
    Remember {
        replayed: u64,
        #[source]
        source: RangeReaderError,
    },
    #[error(
        "interrupted: {} and remembered; the same command continues from there",
        dead_letters_replayed(*replayed)
    )]
    Interrupted { replayed: u64 },
}

/// `no dead letter replayed`, `1 dead letter replayed`, `3 dead letters
/// replayed`.
fn dead_letters_replayed(replayed: u64) -> String {
    match replayed {
        0 => "no dead letter replayed".to_string(),
        1 => "1 dead letter replayed".to_string(),
        n => format!("{n} dead letters replayed"),
    }
}

/// The topics a replay reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayTopics {
    pub dead_letters: String,
    pub events: String,
}

impl From<&Topology> for ReplayTopics {
    fn from(topology: &Topology) -> Self {
        Self {
            dead_letters: topology.dlq.name.clone(),
            events: topology.events.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Read and count, but send and commit nothing.
    pub dry_run: bool,
    /// Read from the beginning of the topic, whatever the group committed.
    pub again: bool,
}

/// Where a run stands, reported while it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Dead letters read so far, and to read in all.
    pub read: u64,
    pub to_read: u64,
    /// Of those read, the ones that match the filter.
    pub matched: u64,
    /// Of those, the ones acknowledged on the events topic (in a dry run,
    /// the ones that would be sent).
    pub replayed: u64,
    pub elapsed: Duration,
}

impl Progress {
    /// Dead letters read per second so far.
    pub fn read_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.read as f64 / seconds
        } else {
            0.0
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// The consumer group that remembers this filter's replays.
    pub group: String,
    /// Whether the run started where an earlier one stopped (false: from
    /// the beginning, the first time or with `--again`).
    pub resumed: bool,
    pub dry_run: bool,
    /// Dead letters read.
    pub read: u64,
    /// Replayed (acknowledged) or, in a dry run, to replay, by tenant and
    /// reason.
    pub replayed: Tallies,
    /// Dead letters that match but are newer than an `--until` given as a
    /// duration: the next run reads them again.
    pub deferred: u64,
    /// The newest record written, by events partition: once the replica
    /// has finished these, it has finished everything this run wrote.
    pub written: BTreeMap<i32, i64>,
    pub elapsed: Duration,
}

/// Replays the dead letters of `topics.dead_letters` that match `filter`
/// to `topics.events`, from where this filter's last run stopped (from the
/// beginning with `options.again`) to the end of the topic as it is when
/// the run starts. Stops at the first failed write, or soon after `stop` is
/// cancelled; either way what was acknowledged is remembered. `progress` is
/// called about once a second.
pub async fn replay(
    kafka: &KafkaConfig,
    topics: &ReplayTopics,
    filter: &DeadLetterFilter,
    options: ReplayOptions,
    stop: &CancellationToken,
    mut progress: impl FnMut(&Progress),
) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let group = filter.replay_group(&kafka.group_id);
    let start = if options.again {
        StartAt::Beginning
    } else {
        StartAt::Committed
    };
    let mut reader =
        RangeReader::open(kafka, &topics.dead_letters, &group, start, CONNECT_TIMEOUT).await?;
    let producer = if options.dry_run {
        None
    } else {
        Some(AckedProducer::new(kafka, WRITE_TIMEOUT).map_err(ReplayError::Producer)?)
    };
    let mut run = Run::new(&reader);
    let mut last_report = Instant::now();
    let mut last_commit = Instant::now();
    let mut interrupted = false;
    let mut read_error = None;

    while run.failure.is_none() {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => {
                interrupted = true;
                break;
            }
            next = reader.next() => next,
        };
        let record = match next {
            Ok(Some(record)) => record,
            Ok(None) => break,
            // What was sent before is still settled and remembered below.
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        run.read += 1;
        let (partition, offset) = (record.partition(), record.offset());
        let letter = LetterInfo::of(&record);
        match filter.verdict(&letter) {
            Verdict::Pass => run.positions.passed(partition, offset),
            Verdict::NotYet => {
                run.positions.stop(partition, offset);
                run.deferred += 1;
            }
            // Behind a dead letter left for a later run, a matching one is
            // left too, so that the later run replays them in order.
            Verdict::Take if run.positions.is_stopped(partition) => run.deferred += 1,
            Verdict::Take => {
                run.matched += 1;
                match &producer {
                    Some(producer) => run.send(producer, &topics.events, &record, letter).await,
                    None => {
                        run.replayed.add(&letter);
                        run.positions.passed(partition, offset);
                    }
                }
            }
        }
        run.settle_ready();
        while run.failure.is_none() && run.window_full() {
            run.settle_front().await;
        }
        if last_report.elapsed() >= PROGRESS_INTERVAL {
            progress(&run.progress(started));
            last_report = Instant::now();
        }
        if producer.is_some() && last_commit.elapsed() >= COMMIT_INTERVAL {
            // A failed intermediate commit is not fatal: the final one
            // covers it, and its failure is.
            if let Err(e) = run.commit(&reader).await {
                tracing::warn!(
                    error = %error_chain(&e),
                    "committing the replay's progress failed; retrying later"
                );
            }
            last_commit = Instant::now();
        }
    }

    while !run.in_flight.is_empty() {
        run.settle_front().await;
    }
    let replayed = run.replayed.total().count;
    if producer.is_some()
        && let Err(source) = run.commit(&reader).await
    {
        // Only one error can be the command's: the one that makes the next
        // run replay these again. A write that failed too is logged.
        if let Some(failure) = &run.failure {
            tracing::warn!(
                partition = failure.partition,
                offset = failure.offset,
                error = %error_chain(&failure.source),
                "replaying a dead letter failed"
            );
        }
        return Err(ReplayError::Remember { replayed, source });
    }
    if let Some(failure) = run.failure {
        return Err(ReplayError::Write {
            topic: topics.dead_letters.clone(),
            partition: failure.partition,
            offset: failure.offset,
            replayed,
            source: failure.source,
        });
    }
    if let Some(e) = read_error {
        return Err(e.into());
    }
    if interrupted {
        return Err(ReplayError::Interrupted { replayed });
    }
    Ok(ReplaySummary {
        group,
        resumed: reader.resumed(),
        dry_run: options.dry_run,
        read: run.read,
        replayed: run.replayed,
        deferred: run.deferred,
        written: run.written,
        elapsed: started.elapsed(),
    })
}

/// A replayed record whose acknowledgement is awaited.
struct InFlight {
    partition: i32,
    offset: i64,
    bytes: usize,
    /// What the tallies count once it is acknowledged, owned: the record it
    /// was read from is gone by then.
    tenant: Option<String>,
    reason: Option<DlqReason>,
    timestamp_ms: Option<i64>,
    ack: PendingAck,
}

/// The first write that failed.
struct Failure {
    partition: i32,
    offset: i64,
    source: ProduceError,
}

/// The state of one run.
struct Run {
    to_read: u64,
    read: u64,
    matched: u64,
    deferred: u64,
    replayed: Tallies,
    positions: Positions,
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: usize,
    failure: Option<Failure>,
    written: BTreeMap<i32, i64>,
}

impl Run {
    fn new(reader: &RangeReader) -> Self {
        Self {
            to_read: reader.offsets_to_read(),
            read: 0,
            matched: 0,
            deferred: 0,
            replayed: Tallies::default(),
            positions: Positions::new(reader.ranges()),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            failure: None,
            written: BTreeMap::new(),
        }
    }

    /// Hands the record that replays `dead_letter` to the producer; it is
    /// counted once acknowledged.
    async fn send(
        &mut self,
        producer: &AckedProducer,
        events: &str,
        dead_letter: &Record,
        letter: LetterInfo<'_>,
    ) {
        let (partition, offset) = (dead_letter.partition(), dead_letter.offset());
        let replay_of = replay_of(partition, offset);
        let headers = replay_headers(dead_letter, &replay_of);
        let (key, value) = (dead_letter.key(), dead_letter.value());
        let target = original_partition(dead_letter, events);
        match producer
            .enqueue_record(events, target, key, value, &headers)
            .await
        {
            Ok(ack) => {
                self.positions.sent(partition, offset);
                let bytes = key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
                self.in_flight_bytes += bytes;
                self.in_flight.push_back(InFlight {
                    partition,
                    offset,
                    bytes,
                    tenant: letter.tenant.map(str::to_string),
                    reason: letter.reason,
                    timestamp_ms: letter.timestamp_ms,
                    ack,
                });
            }
            Err(source) => self.fail(partition, offset, source),
        }
    }

    fn window_full(&self) -> bool {
        self.in_flight.len() >= MAX_IN_FLIGHT || self.in_flight_bytes >= MAX_IN_FLIGHT_BYTES
    }

    /// Settles the acknowledgements that have arrived, oldest first,
    /// without waiting.
    fn settle_ready(&mut self) {
        while let Some(front) = self.in_flight.front_mut() {
            let Some(outcome) = (&mut front.ack).now_or_never() else {
                return;
            };
            self.settle(outcome);
        }
    }

    /// Waits for the oldest record in flight and settles it.
    async fn settle_front(&mut self) {
        if let Some(front) = self.in_flight.front_mut() {
            let outcome = (&mut front.ack).await;
            self.settle(outcome);
        }
    }

    /// Counts the oldest record in flight as replayed, or as the failure.
    fn settle(&mut self, outcome: Result<Acknowledged, ProduceError>) {
        let Some(done) = self.in_flight.pop_front() else {
            return;
        };
        self.in_flight_bytes -= done.bytes;
        match outcome {
            Ok(ack) => {
                let newest = self.written.entry(ack.partition).or_insert(ack.offset);
                *newest = (*newest).max(ack.offset);
                self.positions.acknowledged(done.partition, done.offset);
                self.replayed.add(&LetterInfo {
                    tenant: done.tenant.as_deref(),
                    reason: done.reason,
                    timestamp_ms: done.timestamp_ms,
                });
            }
            Err(source) => self.fail(done.partition, done.offset, source),
        }
    }

    /// The write of the record from `partition`/`offset` failed: nothing
    /// more is sent, and its partition's position stays below it.
    fn fail(&mut self, partition: i32, offset: i64, source: ProduceError) {
        self.positions.stop(partition, offset);
        if self.failure.is_none() {
            self.failure = Some(Failure {
                partition,
                offset,
                source,
            });
        }
    }

    async fn commit(&mut self, reader: &RangeReader) -> Result<(), RangeReaderError> {
        let offsets = self.positions.committable();
        reader.commit(&offsets).await?;
        self.positions.committed(&offsets);
        Ok(())
    }

    fn progress(&self, started: Instant) -> Progress {
        Progress {
            read: self.read,
            to_read: self.to_read,
            matched: self.matched,
            replayed: self.replayed.total().count,
            elapsed: started.elapsed(),
        }
    }
}
