//! The driver of one assigned partition: reads its records into the
//! [`Scheduler`]'s window, runs each record the scheduler hands out as a
//! task of its own, feeds the outcomes back, and stores the committable
//! offset with its [`CommitMetadata`].
//!
//! It knows the partition only through [`PartitionSource`] and the work
//! only through [`RecordProcessor`], so that it is tested with a scripted
//! source and processor under `tokio::time::pause`, as well as against the
//! real broker. `stop` asks it to read and start nothing more: attempts in
//! flight finish, backoff waits end at once, and the offset reached is
//! stored and committed. `abort` abandons whatever is in flight and stores
//! nothing more (the partition belongs to another member already).
//!
//! A record dead-lettered outside a transaction holds its lane until a
//! commit lists it as finished (see [`Scheduler`]): the driver commits at
//! once when a lane waits for that, and otherwise with its next tick. The
//! commit carries this member's generation, so a replica that lost the
//! partition while frozen is refused, and never delivers the next record.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Abandoned;
use super::commit_metadata::CommitMetadata;
use super::scheduler::{
    Admitted, Checkpoint, DlqPosition, Done, Job, Key, Scheduler, Settings, SuspendedBecause,
    SuspensionChange,
};
use crate::telemetry::metrics;

/// How often the reached offset is stored (the group commits stored
/// offsets every second) and a full window is looked at again.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// How often an explicit commit may carry metadata alone (finished records
/// above an offset that does not move, a new suspension).
const METADATA_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// How often the warning about a full window repeats while it stays full.
const WINDOW_WARNING_INTERVAL: Duration = Duration::from_secs(30);

/// How many tenants the warning about a full window names.
const WINDOW_HOLDERS_NAMED: usize = 3;

/// The partition is no longer assigned to this member: stop at once, the
/// new owner goes on from the last commit.
#[derive(Debug, thiserror::Error)]
#[error("partition {0} is no longer assigned to this member")]
pub struct PartitionLost(pub i32);

/// A record as the driver needs to see it.
pub trait SourceRecord: Send + Sync + 'static {
    fn offset(&self) -> i64;
    fn key(&self) -> Option<&[u8]>;
    /// Bytes held in memory: key, value and headers.
    fn size(&self) -> usize;
}

/// One assigned partition of the events topic.
pub trait PartitionSource: Send + Sync + 'static {
    type Record: SourceRecord;

    fn partition(&self) -> i32;

    /// The next record, in offset order. Waits while there is none; errors
    /// of the client are its own to log. Must be cancel-safe.
    fn next(&self) -> impl Future<Output = Self::Record> + Send;

    /// The offset and metadata the group committed for this partition, if
    /// the broker tells in time.
    fn committed(&self) -> impl Future<Output = Option<(i64, String)>> + Send;

    /// Stores `offset` (the next record to read) with `metadata`, to be
    /// committed by the group's next commit.
    fn store(&self, offset: i64, metadata: &str) -> Result<(), PartitionLost>;

    /// Commits `offset` with `metadata` now: the group's commits skip an
    /// offset that did not move, and with it metadata that did. Whether the
    /// broker took it.
    fn commit(&self, offset: i64, metadata: &str) -> impl Future<Output = bool> + Send;

    /// Records between `next_offset` and the high watermark, when the
    /// broker tells in time. Blocks.
    fn lag(&self, next_offset: i64) -> Option<i64>;
}

/// What carries one record to its outcome.
pub trait RecordProcessor<R>: Send + Sync + 'static {
    /// Works on `job` until its outcome is durable, or until `control`
    /// says to give it up.
    fn process(
        self: Arc<Self>,
        job: Job<R>,
        control: JobControl,
    ) -> impl Future<Output = Result<Done, Abandoned>> + Send;

    /// A tenant's least time between two events (its rate limit).
    fn spacing(&self, tenant: &[u8]) -> Option<Duration>;
}

/// How the driver steers a record's task, and hears from it.
#[derive(Debug, Clone)]
pub struct JobControl {
    offset: i64,
    /// Take nothing new: no new attempt, no backoff wait.
    pub stop: CancellationToken,
    /// Give up at once, even an attempt in flight.
    pub abort: CancellationToken,
    /// The tenant was suspended while this record waits for its next
    /// attempt: dead-letter it now.
    pub suspended: CancellationToken,
    status: mpsc::UnboundedSender<(i64, bool)>,
    hand_off: mpsc::UnboundedSender<HandOff>,
}

/// The checkpoint of the partition as it will be once a record has
/// finished: what a dead letter's transaction commits with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The next offset to read.
    pub offset: i64,
    pub metadata: String,
}

/// A record's task asking the driver about a dead letter written in a
/// transaction.
#[derive(Debug)]
enum HandOff {
    /// The checkpoint once the record finished as `done`. The driver stores
    /// nothing more until the record's task returns or withdraws.
    Propose {
        offset: i64,
        done: Done,
        reply: oneshot::Sender<Option<Proposal>>,
    },
    /// The transaction was aborted: the proposal will not be committed.
    Withdraw { offset: i64 },
}

impl JobControl {
    /// Asks for the checkpoint to commit with this record's dead letter in
    /// one transaction, as it will be once the record finished as `done`.
    /// From the answer on, the driver stores and commits nothing of its own
    /// until this task returns (the transaction committed: return the
    /// outcome) or calls [`JobControl::withdraw`] (it was aborted). A task
    /// that returns [`Abandoned`] without withdrawing leaves the
    /// transaction in doubt, and the partition stops without storing more.
    /// `None` when the driver cannot answer now (its pending offsets could
    /// not be committed first) or is stopping: abort and try again later.
    pub async fn propose(&self, done: Done) -> Option<Proposal> {
        let (reply, answer) = oneshot::channel();
        self.hand_off
            .send(HandOff::Propose {
                offset: self.offset,
                done,
                reply,
            })
            .ok()?;
        tokio::select! {
            _ = self.abort.cancelled() => None,
            answer = answer => answer.ok().flatten(),
        }
    }

    /// The transaction of the proposal was aborted: the driver may store
    /// its own checkpoints again.
    pub fn withdraw(&self) {
        // The driver outlives its tasks; a send fails only while it stops.
        let _ = self.hand_off.send(HandOff::Withdraw {
            offset: self.offset,
        });
    }

    /// Tells the driver that the record is (or no longer is) waiting
    /// between two attempts.
    pub fn backing_off(&self, backing_off: bool) {
        // The driver outlives its tasks; a send fails only while it stops.
        let _ = self.status.send((self.offset, backing_off));
    }
}

/// This partition's share of the replica's gauges, taken back when the
/// driver stops.
#[derive(Default)]
struct Gauges {
    suspended: i64,
    resuming: i64,
    backing_off: i64,
    lowest_backing_off: bool,
    window_full: bool,
}

impl Gauges {
    /// Follows the scheduler's counts.
    fn set<R>(&mut self, scheduler: &Scheduler<R>) {
        let suspended = scheduler.suspended_count() as i64;
        let backing_off = scheduler.backing_off() as i64;
        let resuming = scheduler.owing_count() as i64;
        metrics::tenants_suspended_changed(suspended - self.suspended);
        metrics::tenants_resuming_changed(resuming - self.resuming);
        metrics::tenants_backing_off_changed(backing_off - self.backing_off);
        let lowest = scheduler.lowest_backing_off();
        if lowest != self.lowest_backing_off {
            metrics::partitions_backing_off_changed(if lowest { 1 } else { -1 });
        }
        // Field by field: assigning a whole `Gauges` would drop the old
        // one, and with it take this partition's share back.
        self.suspended = suspended;
        self.resuming = resuming;
        self.backing_off = backing_off;
        self.lowest_backing_off = lowest;
    }

    fn set_window_full(&mut self, window_full: bool) {
        if window_full != self.window_full {
            metrics::partitions_window_full_changed(if window_full { 1 } else { -1 });
        }
        self.window_full = window_full;
    }
}

impl Drop for Gauges {
    fn drop(&mut self) {
        metrics::tenants_suspended_changed(-self.suspended);
        metrics::tenants_resuming_changed(-self.resuming);
        metrics::tenants_backing_off_changed(-self.backing_off);
        if self.lowest_backing_off {
            metrics::partitions_backing_off_changed(-1);
        }
        if self.window_full {
            metrics::partitions_window_full_changed(-1);
        }
    }
}

/// Converts between the scheduler's monotonic instants and the wall-clock
/// milliseconds that commit metadata carries.
#[derive(Clone, Copy)]
struct Clock {
    instant: Instant,
    unix_ms: i64,
}

impl Clock {
    fn now() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self {
            instant: Instant::now(),
            unix_ms,
        }
    }

    fn to_unix_ms(self, at: Instant) -> i64 {
        let ahead = at.saturating_duration_since(self.instant).as_millis();
        self.unix_ms
            .saturating_add(i64::try_from(ahead).unwrap_or(i64::MAX))
    }

    fn to_instant(self, unix_ms: i64) -> Instant {
        let ahead = u64::try_from(unix_ms.saturating_sub(self.unix_ms)).unwrap_or(0);
        self.instant + Duration::from_millis(ahead)
    }
}

/// What was last stored and committed, so that a checkpoint is only
/// written when it says something new.
#[derive(Default)]
struct Checkpoints {
    stored: Option<(i64, String)>,
    last_metadata_commit: Option<Instant>,
    /// What was last handed to the source's store, which the group's
    /// commits may send at any time (and do on revocation and shutdown).
    in_store: Option<(i64, String)>,
    /// What this driver last committed itself: when it is what the store
    /// holds, the group's commits skip the store.
    commit_sent: Option<(i64, String)>,
    /// The record whose dead letter's transaction was given a proposal,
    /// and the proposal: nothing is stored until it settles.
    held: Option<(i64, Proposal)>,
    /// Proposals asked for while another one is held, oldest first.
    waiting: VecDeque<(i64, Done, oneshot::Sender<Option<Proposal>>)>,
}

/// A commit of the checkpoint that confirms dead-lettered records, in
/// flight while the driver goes on.
struct Confirmation {
    /// The finishes the checkpoint covers.
    covers: u64,
    committing: (i64, String),
    commit: Pin<Box<dyn Future<Output = bool> + Send>>,
}

/// The driver's state, with the source and processor it works with.
struct Driver<S: PartitionSource, P> {
    source: Arc<S>,
    processor: Arc<P>,
    scheduler: Scheduler<S::Record>,
    tasks: JoinSet<(i64, Result<Done, Abandoned>)>,
    /// The `suspended` token of each record in flight.
    in_flight: HashMap<i64, CancellationToken>,
    status: mpsc::UnboundedSender<(i64, bool)>,
    hand_off: mpsc::UnboundedSender<HandOff>,
    stop: CancellationToken,
    abort: CancellationToken,
    gauges: Gauges,
    checkpoints: Checkpoints,
    confirmation: Option<Confirmation>,
    /// The last confirmation failed: the next waits for a tick.
    confirmation_failed: bool,
    window_warned: Option<Instant>,
    /// The window was full at some moment since the last tick: the gauge
    /// says so for the whole tick, rather than flickering with every
    /// record that frees a place for a moment.
    window_filled: bool,
    lag: LagSampler,
}

/// Works on one partition until `stop` or `abort` is cancelled or the
/// partition turns out to be no longer assigned.
pub async fn run<S, P>(
    source: S,
    processor: Arc<P>,
    settings: Settings,
    stop: CancellationToken,
    abort: CancellationToken,
) where
    S: PartitionSource,
    P: RecordProcessor<S::Record>,
{
    let source = Arc::new(source);
    let partition = source.partition();
    let (status, statuses) = mpsc::unbounded_channel();
    let (hand_off, hand_offs) = mpsc::unbounded_channel();
    let mut inbox = Inbox {
        statuses,
        hand_offs,
    };
    let mut driver = Driver {
        hand_off,
        lag: LagSampler::start(source.clone()),
        source,
        processor,
        scheduler: Scheduler::new(settings),
        tasks: JoinSet::new(),
        in_flight: HashMap::new(),
        status,
        stop,
        abort,
        gauges: Gauges::default(),
        checkpoints: Checkpoints::default(),
        confirmation: None,
        confirmation_failed: false,
        window_warned: None,
        window_filled: false,
    };
    driver.restore().await;
    if let Err(lost) = driver.work(&mut inbox).await {
        tracing::warn!(partition, error = %lost, "stopping the partition's worker");
        driver.abort.cancel();
    }
    driver.drain(&mut inbox).await;
}

/// What the record tasks tell the driver.
struct Inbox {
    /// A record started or ended waiting between two attempts.
    statuses: mpsc::UnboundedReceiver<(i64, bool)>,
    hand_offs: mpsc::UnboundedReceiver<HandOff>,
}

impl<S, P> Driver<S, P>
where
    S: PartitionSource,
    P: RecordProcessor<S::Record>,
{
    fn partition(&self) -> i32 {
        self.source.partition()
    }

    /// Carries over the previous owner's finished records and suspensions.
    async fn restore(&mut self) {
        let committed = tokio::select! {
            _ = self.stop.cancelled() => return,
            committed = self.source.committed() => committed,
        };
        let Some((offset, text)) = committed else {
            return;
        };
        let Some(metadata) = CommitMetadata::decode(&text) else {
            return;
        };
        let clock = Clock::now();
        // Finished records count only above the offset they were listed
        // with; a commit made by something else since (an offset reset)
        // makes the list meaningless.
        let finished = if metadata.offset == offset {
            metadata.finished_above
        } else {
            Vec::new()
        };
        tracing::info!(
            partition = self.partition(),
            offset,
            finished_above = finished.len(),
            suspended = metadata.suspended.len(),
            owing = metadata.owed.len(),
            "carrying over the committed progress"
        );
        self.scheduler.restore_owed(metadata.owed.into_iter().map(
            |(tenant, partition, offset)| {
                (
                    Key::from(tenant.as_bytes()),
                    DlqPosition { partition, offset },
                )
            },
        ));
        let suspended = metadata
            .suspended
            .into_iter()
            .map(|(tenant, probe)| (Key::from(tenant.as_bytes()), clock.to_instant(probe)));
        self.scheduler.restore(finished, suspended);
        self.checkpoints.stored = Some((offset, text));
        self.gauges.set(&self.scheduler);
    }

    /// The main loop, until `stop` or `abort`.
    async fn work(&mut self, inbox: &mut Inbox) -> Result<(), PartitionLost> {
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.answer_proposals().await;
            if self.abort.is_cancelled() {
                return Ok(());
            }
            self.start_ready_jobs();
            if self.scheduler.awaits_commit() {
                self.confirm(false)?;
            }
            if !self.scheduler.has_room() {
                self.window_filled = true;
                // Records finish and arrive while the window stays full:
                // whether failing tenants alone are left holding it is
                // looked at each time, not only when a backoff starts.
                self.suspend_window_holder();
            }
            let wakeup = self.scheduler.next_wakeup();
            let source = self.source.clone();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Ok(()),
                _ = self.abort.cancelled() => return Ok(()),
                // Before the tasks: a task withdraws before it returns.
                Some(hand_off) = inbox.hand_offs.recv() => self.hand_off(hand_off),
                Some(done) = self.tasks.join_next() => self.finished(done),
                committed = confirmation(&mut self.confirmation) => self.confirmed(committed),
                Some((offset, backing_off)) = inbox.statuses.recv() => {
                    self.scheduler.set_backing_off(offset, backing_off);
                    self.gauges.set(&self.scheduler);
                }
                record = source.next(), if self.scheduler.has_room() => self.admit(record),
                _ = tokio::time::sleep_until(wakeup.unwrap_or_else(Instant::now)), if wakeup.is_some() => {}
                _ = tick.tick() => {
                    self.checkpoint(false).await?;
                    if self.scheduler.has_unconfirmed() {
                        self.confirm(true)?;
                    }
                    self.watch_window();
                }
            }
        }
    }

    fn admit(&mut self, record: S::Record) {
        let offset = record.offset();
        let key = record.key().map(|k| self.scheduler.key(k));
        let size = record.size();
        if self.scheduler.admit_keyed(offset, key, size, record) == Admitted::AlreadyFinished {
            tracing::debug!(
                partition = self.partition(),
                offset,
                "finished before the partition changed hands; passed over"
            );
        }
    }

    fn start_ready_jobs(&mut self) {
        let now = Instant::now();
        let processor = self.processor.clone();
        while let Some(job) = self
            .scheduler
            .next_job(now, |tenant| processor.spacing(tenant))
        {
            let suspended = CancellationToken::new();
            self.in_flight.insert(job.offset, suspended.clone());
            let control = JobControl {
                offset: job.offset,
                stop: self.stop.clone(),
                abort: self.abort.clone(),
                suspended,
                status: self.status.clone(),
                hand_off: self.hand_off.clone(),
            };
            let processor = self.processor.clone();
            self.tasks.spawn(async move {
                let offset = job.offset;
                (offset, processor.process(job, control).await)
            });
        }
    }

    fn finished(&mut self, done: Result<(i64, Result<Done, Abandoned>), tokio::task::JoinError>) {
        let (offset, result) = match done {
            Ok(done) => done,
            Err(e) => {
                // A task that panicked leaves its record unfinished; the
                // partition cannot commit past it, so it stops and the
                // record is delivered again after the next rebalance.
                tracing::error!(partition = self.partition(), error = %e, "a delivery task failed");
                self.stop.cancel();
                return;
            }
        };
        self.in_flight.remove(&offset);
        let settled = self
            .checkpoints
            .held
            .take_if(|(held, _)| *held == offset)
            .map(|(_, proposal)| proposal);
        let Ok(done) = result else {
            if settled.is_some() {
                // Its transaction may still commit the proposal, which
                // lists this record as finished; anything stored from now
                // on would not. Whoever owns the partition next reads the
                // broker's word.
                tracing::error!(
                    partition = self.partition(),
                    offset,
                    "a dead letter's transaction is in doubt; the partition stops without storing more"
                );
                self.abort.cancel();
            }
            return;
        };
        let transacted = settled.is_some();
        if let Some(proposal) = settled {
            // The transaction committed the proposal. The store still holds
            // an older checkpoint, which the group would commit on a
            // revocation or shutdown, taking back this record's finished
            // mark: the proposal replaces it (a commit of it repeats what
            // the broker holds).
            let committed = (proposal.offset, proposal.metadata);
            if let Err(lost) = self.source.store(committed.0, &committed.1) {
                tracing::warn!(partition = self.partition(), error = %lost, "stopping the partition's worker");
                self.abort.cancel();
            }
            self.checkpoints.stored = Some(committed.clone());
            self.checkpoints.in_store = Some(committed);
        }
        // A transaction committed the dead letter with its record's finish;
        // any other dead letter is only acknowledged.
        let finished = if done.dead_lettered && !transacted {
            self.scheduler
                .finish_unconfirmed(offset, done, Instant::now())
        } else {
            self.scheduler.finish(offset, done, Instant::now())
        };
        if let Some(change) = finished.suspension {
            self.log_suspension(&change);
        }
        if let Some(tenant) = finished.caught_up {
            tracing::info!(
                partition = self.partition(),
                tenant = %String::from_utf8_lossy(&tenant),
                "the tenant's parked events are replayed; its new events are delivered again"
            );
        }
        self.gauges.set(&self.scheduler);
    }

    fn log_suspension(&self, change: &SuspensionChange) {
        let partition = self.partition();
        match change {
            SuspensionChange::Suspended { tenant, because } => {
                let tenant = String::from_utf8_lossy(tenant);
                let probe = humantime::format_duration(self.processor_probe_interval());
                match because {
                    SuspendedBecause::ConsecutiveFailures(n) => tracing::warn!(
                        %tenant,
                        partition,
                        "tenant suspended after {n} events in a row ran out of attempts; its events go to the dead-letter topic as tenant_suspended, with a real attempt every {probe}"
                    ),
                    SuspendedBecause::WindowFull => tracing::warn!(
                        %tenant,
                        partition,
                        "tenant suspended: the partition's window is full of failing tenants' events, its own first; its events go to the dead-letter topic as tenant_suspended, with a real attempt every {probe}"
                    ),
                }
            }
            SuspensionChange::Resumed { tenant } => {
                let tenant = String::from_utf8_lossy(tenant);
                tracing::info!(%tenant, partition, "tenant resumed: a probe was delivered");
            }
        }
    }

    fn processor_probe_interval(&self) -> Duration {
        self.scheduler.settings().probe_interval
    }

    /// A tenant backing off while its backlog fills the window would hold
    /// the whole partition for as long as its endpoint fails: it is
    /// suspended, and its record waiting for an attempt is dead-lettered at
    /// once.
    fn suspend_window_holder(&mut self) {
        if let Some((tenant, offset)) = self.scheduler.suspend_window_holder(Instant::now()) {
            self.log_suspension(&SuspensionChange::Suspended {
                tenant,
                because: SuspendedBecause::WindowFull,
            });
            if let Some(token) = self.in_flight.get(&offset) {
                token.cancel();
            }
        }
    }

    /// Keeps the full-window gauge and warning current.
    fn watch_window(&mut self) {
        let full_now = !self.scheduler.has_room();
        self.gauges.set_window_full(self.window_filled || full_now);
        self.window_filled = full_now;
        if !full_now {
            self.window_warned = None;
            return;
        }
        let now = Instant::now();
        if self
            .window_warned
            .is_some_and(|at| now.duration_since(at) < WINDOW_WARNING_INTERVAL)
        {
            return;
        }
        self.window_warned = Some(now);
        let holders = self.scheduler.window_holders(WINDOW_HOLDERS_NAMED);
        let name = |key: &Option<Key>| {
            key.as_deref().map_or_else(
                || "(no key)".to_string(),
                |k| String::from_utf8_lossy(k).into_owned(),
            )
        };
        let holding: Vec<String> = holders
            .most
            .iter()
            .map(|(key, n)| format!("{} ({n})", name(key)))
            .collect();
        let (waiting_for, offset) = holders
            .lowest
            .map(|(key, offset)| (name(&key), offset))
            .unwrap_or_default();
        tracing::warn!(
            partition = self.partition(),
            offset,
            waiting_for = %waiting_for,
            holding = %holding.join(", "),
            unfinished = self.scheduler.unfinished(),
            bytes = self.scheduler.bytes(),
            "the partition's window is full: nothing more is read until its lowest record finishes"
        );
    }

    fn hand_off(&mut self, hand_off: HandOff) {
        match hand_off {
            HandOff::Propose {
                offset,
                done,
                reply,
            } => self.checkpoints.waiting.push_back((offset, done, reply)),
            HandOff::Withdraw { offset } => {
                self.checkpoints.held.take_if(|(held, _)| *held == offset);
            }
        }
    }

    /// Answers the proposals asked for, one at a time: the next only once
    /// the previous one settled, so that each includes the records finished
    /// by the transactions before it.
    async fn answer_proposals(&mut self) {
        while self.checkpoints.held.is_none() {
            let Some((offset, done, reply)) = self.checkpoints.waiting.pop_front() else {
                return;
            };
            if reply.is_closed() {
                continue;
            }
            let proposal = self.propose(offset, done).await;
            if let Some(proposal) = &proposal {
                self.checkpoints.held = Some((offset, proposal.clone()));
            }
            if reply.send(proposal).is_err() {
                self.checkpoints.held = None;
            }
        }
    }

    /// The checkpoint once `offset` finished as `done`, after committing
    /// what was stored (unless this driver committed it already): the
    /// group's commits then skip it, where one arriving after the
    /// transaction would take back the record's finished mark.
    async fn propose(&mut self, offset: i64, done: Done) -> Option<Proposal> {
        if self.abort.is_cancelled() {
            return None;
        }
        let checkpoint = self
            .scheduler
            .checkpoint_after(offset, done, Instant::now())?;
        let metadata = self.metadata(checkpoint);
        let (text, _) = metadata.encode();
        if let Some(stored) = self
            .checkpoints
            .in_store
            .clone()
            .filter(|stored| self.checkpoints.commit_sent.as_ref() != Some(stored))
        {
            if !self.source.commit(stored.0, &stored.1).await {
                return None;
            }
            self.checkpoints.commit_sent = Some(stored);
        }
        Some(Proposal {
            offset: metadata.offset,
            metadata: text,
        })
    }

    /// Commits the checkpoint now, so that the lanes holding dead-lettered
    /// records may go on once it is taken; the commit runs while the driver
    /// goes on. One at a time, and after a failure not before the next
    /// tick (`at_tick`), nor while a dead letter's transaction holds the
    /// checkpoints.
    fn confirm(&mut self, at_tick: bool) -> Result<(), PartitionLost> {
        if self.confirmation.is_some()
            || self.checkpoints.held.is_some()
            || (self.confirmation_failed && !at_tick)
        {
            return Ok(());
        }
        let Some(checkpoint) = self.scheduler.checkpoint() else {
            return Ok(());
        };
        let covers = checkpoint.covers;
        let metadata = self.metadata(checkpoint);
        let offset = metadata.offset;
        let (text, _) = metadata.encode();
        // The store holds it too, so that the group's own commits never
        // send an older checkpoint after this one.
        self.source.store(offset, &text)?;
        self.checkpoints.in_store = Some((offset, text.clone()));
        self.checkpoints.stored = Some((offset, text.clone()));
        let source = self.source.clone();
        let committing = (offset, text.clone());
        self.confirmation = Some(Confirmation {
            covers,
            committing,
            commit: Box::pin(async move { source.commit(offset, &text).await }),
        });
        Ok(())
    }

    /// The confirming commit ended: on success the lanes it covers go on;
    /// otherwise it is tried again with the next tick.
    fn confirmed(&mut self, committed: bool) {
        let Some(confirmation) = self.confirmation.take() else {
            return;
        };
        if committed {
            self.confirmation_failed = false;
            self.scheduler.confirm(confirmation.covers);
            self.checkpoints.commit_sent = Some(confirmation.committing);
        } else {
            self.confirmation_failed = true;
            // Stored but not committed: the next tick stores (and, if only
            // the metadata changed, commits) it again.
            self.checkpoints.stored = None;
        }
    }

    /// Stores the offset reached, with its metadata, when it says
    /// something new; commits it at once when only the metadata changed
    /// (at most every [`METADATA_COMMIT_INTERVAL`], or now when `last`).
    async fn checkpoint(&mut self, last: bool) -> Result<(), PartitionLost> {
        if self.checkpoints.held.is_some() {
            // A dead letter's transaction is committing a checkpoint that
            // lists its record as finished; this one would not.
            return Ok(());
        }
        let Some(checkpoint) = self.scheduler.checkpoint() else {
            return Ok(());
        };
        self.lag.at(checkpoint.offset);
        let metadata = self.metadata(checkpoint);
        let (text, left_out) = metadata.encode();
        if left_out.owed > 0 {
            tracing::warn!(
                partition = self.partition(),
                left_out = left_out.owed,
                "tenants owing replays beyond the commit metadata's size are not carried over: after a restart, their new events would be delivered before their parked ones are replayed"
            );
        }
        if left_out.suspended > 0 {
            tracing::debug!(
                partition = self.partition(),
                left_out = left_out.suspended,
                "suspended tenants beyond the commit metadata's size are not carried over"
            );
        }
        let offset = metadata.offset;
        let unchanged = self
            .checkpoints
            .stored
            .as_ref()
            .is_some_and(|(o, t)| *o == offset && *t == text);
        if unchanged {
            return Ok(());
        }
        let offset_moved = self
            .checkpoints
            .stored
            .as_ref()
            .is_none_or(|(o, _)| *o != offset);
        self.source.store(offset, &text)?;
        self.checkpoints.in_store = Some((offset, text.clone()));
        let now = Instant::now();
        // Not beside a confirming commit, which could then land after this
        // newer one.
        let commit_now = self.confirmation.is_none()
            && !offset_moved
            && (last
                || self
                    .checkpoints
                    .last_metadata_commit
                    .is_none_or(|at| now.duration_since(at) >= METADATA_COMMIT_INTERVAL));
        if commit_now {
            self.checkpoints.last_metadata_commit = Some(now);
            if self.source.commit(offset, &text).await {
                self.checkpoints.commit_sent = Some((offset, text.clone()));
                self.checkpoints.stored = Some((offset, text));
            }
        } else if offset_moved {
            self.checkpoints.stored = Some((offset, text));
        }
        // Otherwise the stored metadata waits for its explicit commit, and
        // `stored` keeps the committed text so that a later tick tries again.
        Ok(())
    }

    fn metadata(&self, checkpoint: Checkpoint) -> CommitMetadata {
        let clock = Clock::now();
        let mut suspended: Vec<(String, i64)> = checkpoint
            .suspended
            .into_iter()
            .map(|(tenant, probe)| {
                (
                    String::from_utf8_lossy(&tenant).into_owned(),
                    clock.to_unix_ms(probe),
                )
            })
            .collect();
        // Deterministic, and the soonest probes first should the metadata
        // not hold them all.
        suspended.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let mut owed: Vec<(String, i32, i64)> = checkpoint
            .owed
            .into_iter()
            .map(|(tenant, at)| {
                (
                    String::from_utf8_lossy(&tenant).into_owned(),
                    at.partition,
                    at.offset,
                )
            })
            .collect();
        owed.sort();
        CommitMetadata {
            offset: checkpoint.offset,
            finished_above: checkpoint.finished_above,
            suspended,
            owed,
        }
    }

    /// Lets the records in flight finish (or give up, on `abort`), then
    /// stores and commits the offset reached, unless the partition is lost.
    async fn drain(mut self, inbox: &mut Inbox) {
        self.stop.cancel();
        loop {
            // A dead letter in flight is still written and committed.
            self.answer_proposals().await;
            tokio::select! {
                biased;
                // Before the tasks: a task withdraws before it returns.
                Some(hand_off) = inbox.hand_offs.recv() => self.hand_off(hand_off),
                done = self.tasks.join_next() => match done {
                    Some(done) => self.finished(done),
                    None => break,
                },
                Some((offset, backing_off)) = inbox.statuses.recv() => {
                    self.scheduler.set_backing_off(offset, backing_off);
                }
            }
        }
        if !self.abort.is_cancelled() && self.confirmation.is_some() {
            // It lands before the last commit, not after it.
            let committed = confirmation(&mut self.confirmation).await;
            self.confirmed(committed);
        }
        if !self.abort.is_cancelled()
            && let Err(e) = self.checkpoint(true).await
        {
            tracing::warn!(partition = self.partition(), error = %e, "final offset not stored");
        }
    }
}

/// The confirming commit in flight, if any; pending while there is none.
async fn confirmation(confirmation: &mut Option<Confirmation>) -> bool {
    match confirmation {
        Some(confirmation) => (&mut confirmation.commit).await,
        None => std::future::pending().await,
    }
}

/// How often a partition's consumer lag is sampled.
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples the consumer lag of one partition from its committable offset;
/// stops (and reports no lag for the partition) when dropped.
struct LagSampler {
    /// The committable offset, -1 before the first record.
    position: Arc<std::sync::atomic::AtomicI64>,
    partition: i32,
    task: tokio::task::JoinHandle<()>,
}

impl LagSampler {
    fn start<S: PartitionSource>(source: Arc<S>) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let position = Arc::new(std::sync::atomic::AtomicI64::new(-1));
        let partition = source.partition();
        let task = tokio::spawn({
            let position = position.clone();
            async move {
                let mut tick = tokio::time::interval(LAG_SAMPLE_INTERVAL);
                loop {
                    tick.tick().await;
                    let next = position.load(Relaxed);
                    if next < 0 {
                        continue;
                    }
                    // Asking the broker for the watermark blocks.
                    let source = source.clone();
                    if let Ok(Some(lag)) =
                        tokio::task::spawn_blocking(move || source.lag(next)).await
                    {
                        metrics::consumer_lag(partition, lag);
                    }
                }
            }
        });
        Self {
            position,
            partition,
            task,
        }
    }

    fn at(&self, offset: i64) {
        self.position
            .store(offset, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for LagSampler {
    fn drop(&mut self) {
        self.task.abort();
        // The partition may have moved to another replica, which reports
        // its lag from now on.
        metrics::consumer_lag(self.partition, 0);
    }
}

#[cfg(test)]
mod tests;
