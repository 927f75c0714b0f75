//! Which of a partition's records may be worked on now, and which offset
//! may be committed: the key-ordered scheduler of one partition.
//!
//! Records are read ahead into a bounded window. Each record belongs to a
//! *lane*: in key order the lane is its key (its tenant), so records of
//! different tenants are worked on concurrently while one tenant's records
//! stay strictly sequential; in partition order every record shares one lane,
//! which is the old one-at-a-time behaviour. A lane's next record is handed
//! out only after the previous one finished, so a tenant that backs off
//! holds back only itself.
//!
//! The committed offset of the partition is its lowest unfinished record;
//! records finished above it are listed in the [`Checkpoint`] so that a
//! restart does not deliver them again. The window is the span from that
//! lowest unfinished record to the newest one read: when it is full (or the
//! records it holds reach the byte limit), the partition reads nothing more
//! until its lowest record finishes.
//!
//! A lane whose record was dead-lettered hands out its next record for
//! delivery only once a commit lists the dead-lettered one as finished
//! ([`Scheduler::finish_unconfirmed`], [`Scheduler::confirm`]). Until then
//! the finish lives only in this replica: were it to die, or to lose the
//! partition while frozen, the next owner would deliver the dead-lettered
//! record after the later one its receiver already has. A record that is
//! dead-lettered too (its tenant suspended) does not wait: it reaches no
//! receiver.
//!
//! It also keeps, per tenant, the circuit breaker (suspension after
//! consecutive exhausted events, a probe every interval), the spacing of
//! a rate-limited tenant's events, and what an in-order resumption owes:
//! the newest dead letter parked while an operator suspended the tenant,
//! until its replay comes back (see [`Done`]).
//!
//! A plain data structure: no I/O, no clock, no random numbers. The caller
//! passes the time in, so that a property test can drive it with random
//! arrivals and outcomes and check its invariants.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use super::dead_letter::DlqPosition;

/// A record key, shared between the record's lane and its tenant state.
pub type Key = Arc<[u8]>;

/// How a partition's records are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// One lane per record key (tenant): the order kept is per tenant.
    PerKey,
    /// One lane for the whole partition: the order kept is the partition's.
    PerPartition,
}

/// The scheduler's bounds and the circuit breaker's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub lanes: Lanes,
    /// Offsets from the lowest unfinished record to the newest read, at most.
    pub window: usize,
    /// Bytes of the unfinished records held, at most (a single larger
    /// record is still taken, alone).
    pub window_bytes: usize,
    /// Consecutive exhausted events after which a tenant is suspended; 0
    /// never suspends.
    pub suspend_after: u32,
    /// How often a suspended tenant's next event gets a real attempt.
    pub probe_interval: Duration,
}

#[cfg(test)]
impl Settings {
    /// Roomy bounds and the default circuit breaker, for tests.
    pub(crate) fn for_tests(lanes: Lanes) -> Self {
        Self {
            lanes,
            window: 100,
            window_bytes: 1 << 20,
            suspend_after: 3,
            probe_interval: Duration::from_secs(300),
        }
    }
}

/// How a record handed out is to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Delivered as usual, retries and all.
    Deliver,
    /// The tenant is suspended and its probe is due: one real attempt; a
    /// success ends the suspension.
    Probe,
    /// The tenant is suspended: dead-lettered at once, without attempts.
    Suspended,
}

/// How a record ended, as far as the circuit breaker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Delivered to the tenant's endpoint (a 2xx).
    Delivered,
    /// Dead-lettered after the retry policy ran out of attempts.
    RetriesExhausted,
    /// Anything else: filtered out, or dead-lettered for another reason
    /// (including a failed probe). Changes nothing for the circuit breaker.
    Other,
}

/// A record handed out to be worked on.
#[derive(Debug)]
pub struct Job<R> {
    pub offset: i64,
    pub key: Option<Key>,
    pub record: R,
    pub admission: Admission,
    /// The tenant's newest parked dead letter not replayed yet: a record
    /// that is not a replay is parked behind it, so that the tenant's
    /// events reach it in their order once the parked ones are replayed.
    pub owed: Option<DlqPosition>,
}

/// Why a record was parked on the dead-letter topic as `tenant_suspended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkedBecause {
    /// The tenant record says an operator suspended the tenant.
    Operator,
    /// The tenant owes the replay of earlier parked events.
    Owed,
    /// The circuit breaker suspended the tenant.
    Breaker,
}

/// How a record ended: what the circuit breaker sees ([`Ending`]) and what
/// an in-order resumption needs to know.
///
/// Events parked while an operator suspends a tenant are owed to it: the
/// scheduler keeps the newest one's position, and until a record replaying
/// it (or a later one) finishes, the tenant's records that are not replays
/// are parked behind them, also owed. The replays, written back to the
/// events topic in dead-letter order, are delivered; the last one clears
/// the debt, and the tenant's next events are delivered as usual. So the
/// receiver sees the tenant's events in their order across a suspension,
/// however long the replay takes and whatever arrives meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub ending: Ending,
    /// The record replays the dead letter at this position
    /// (`hookline.replay-of`).
    pub replay_of: Option<DlqPosition>,
    /// The record was parked as `tenant_suspended` at this position.
    pub parked: Option<(DlqPosition, ParkedBecause)>,
    /// The tenant no longer exists: whatever it owed is forgotten.
    pub tenant_gone: bool,
    /// The record went to the dead-letter topic.
    pub dead_lettered: bool,
}

impl From<Ending> for Done {
    fn from(ending: Ending) -> Self {
        Self {
            ending,
            replay_of: None,
            parked: None,
            tenant_gone: false,
            dead_lettered: ending == Ending::RetriesExhausted,
        }
    }
}

/// What taking a record in did.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Held until its lane gets to it.
    Held,
    /// Finished before a restart (the commit metadata said so): passed over.
    AlreadyFinished,
}

/// Why a tenant was suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspendedBecause {
    /// `suspend_after` events in a row ran out of attempts.
    ConsecutiveFailures(u32),
    /// It backs off while its records fill the partition's window.
    WindowFull,
}

/// A change of a tenant's suspension, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuspensionChange {
    Suspended {
        tenant: Key,
        because: SuspendedBecause,
    },
    Resumed {
        tenant: Key,
    },
}

/// What finishing a record changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// The committable offset moved.
    pub committable_moved: bool,
    pub suspension: Option<SuspensionChange>,
    /// The tenant owed no more: the replay of its newest parked dead
    /// letter finished, and its next events are delivered.
    pub caught_up: Option<Key>,
}

/// What to commit for the partition: the offset of its lowest unfinished
/// record (the next to read after a restart), the records already finished
/// above it, and the suspended tenants with their next probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub offset: i64,
    /// Ascending, all above `offset`.
    pub finished_above: Vec<i64>,
    pub suspended: Vec<(Key, Instant)>,
    /// Tenants owing the replay of parked dead letters, with the newest.
    pub owed: Vec<(Key, DlqPosition)>,
    /// The finishes it includes: once it is committed,
    /// [`Scheduler::confirm`] with this releases the lanes that wait for
    /// them.
    pub covers: u64,
}

/// Who holds a partition's window.
#[derive(Debug, PartialEq, Eq)]
pub struct WindowHolders {
    /// The key of the lowest unfinished record, and its offset.
    pub lowest: Option<(Option<Key>, i64)>,
    /// The keys holding the most unfinished records, with their counts.
    pub most: Vec<(Option<Key>, usize)>,
}

/// A record read and not finished yet.
#[derive(Debug)]
struct Held {
    bytes: usize,
    key: Option<Key>,
    /// Handed out and being worked on.
    started: bool,
    /// Its attempt failed and it waits for the next one.
    backing_off: bool,
}

/// One lane's records waiting their turn, oldest first.
#[derive(Debug)]
struct Lane<R> {
    waiting: VecDeque<Waiting<R>>,
    /// A record of this lane is being worked on.
    busy: bool,
}

#[derive(Debug)]
struct Waiting<R> {
    offset: i64,
    record: R,
}

#[derive(Debug, Default, Clone)]
struct TenantState {
    consecutive_exhausted: u32,
    /// When suspended: the earliest time of its next probe.
    next_probe: Option<Instant>,
    /// A rate-limited tenant's next event starts no earlier than this.
    not_before: Option<Instant>,
    /// Its newest parked dead letter that must come back as a replay
    /// before its new events are delivered (see [`Done`]).
    owed: Option<DlqPosition>,
}

/// What a finished record did to its tenant's circuit breaker.
enum BreakerStep {
    Resumed,
    /// Suspended after this many events in a row ran out of attempts.
    Suspended(u32),
}

impl TenantState {
    /// The circuit breaker's step for a record of this tenant that ended
    /// as `ending`.
    fn breaker_step(
        &mut self,
        ending: Ending,
        settings: &Settings,
        now: Instant,
    ) -> Option<BreakerStep> {
        match ending {
            Ending::Delivered => {
                self.consecutive_exhausted = 0;
                self.next_probe.take().map(|_| BreakerStep::Resumed)
            }
            Ending::RetriesExhausted => {
                self.consecutive_exhausted = self.consecutive_exhausted.saturating_add(1);
                (settings.suspend_after > 0
                    && self.consecutive_exhausted >= settings.suspend_after
                    && self.next_probe.is_none())
                .then(|| {
                    self.next_probe = Some(now + settings.probe_interval);
                    BreakerStep::Suspended(self.consecutive_exhausted)
                })
            }
            Ending::Other => None,
        }
    }

    /// Nothing worth keeping: the entry can go.
    fn is_idle(&self, now: Instant) -> bool {
        self.consecutive_exhausted == 0
            && self.next_probe.is_none()
            && self.owed.is_none()
            && self.not_before.is_none_or(|t| t <= now)
    }
}

/// The scheduler of one partition; `R` is the record it hands out.
#[derive(Debug)]
pub struct Scheduler<R> {
    settings: Settings,
    /// Records read and not finished, by offset.
    held: BTreeMap<i64, Held>,
    /// Finished records above the lowest unfinished one.
    finished_ahead: BTreeSet<i64>,
    /// One past the newest record read.
    next_offset: Option<i64>,
    bytes: usize,
    lanes: HashMap<Key, Lane<R>>,
    /// Lanes with a record waiting and none being worked on, in the order
    /// they became so (a rate-limited head moves to `throttled`).
    ready: VecDeque<Key>,
    /// Ready lanes whose head waits for its tenant's rate limit.
    throttled: BTreeSet<(Instant, Key)>,
    tenants: HashMap<Key, TenantState>,
    /// When `tenants` holds this many entries, the idle ones are removed
    /// (see [`Scheduler::sweep_idle_tenants`]).
    sweep_at: usize,
    /// Records finished before a restart, above the committed offset.
    finished_before: BTreeSet<i64>,
    /// Records finished so far: each finish's number.
    finishes: u64,
    /// Lanes whose newest finished record was dead-lettered and is not
    /// known to be committed as finished, with that finish's number.
    unconfirmed: HashMap<Key, u64>,
    /// Lanes among those whose next record waits for that commit.
    awaiting_commit: HashSet<Key>,
    /// Held records backing off, and suspended tenants, counted as they
    /// change: the gauges read them after every record.
    backing_off: usize,
    suspended: usize,
    owing: usize,
}

/// A tenant's debt of parked dead letters after one of its records ended
/// as `done`: a replay of the newest one (or of a later one) clears it; a
/// record parked under an operator's suspension, or while the debt lasts,
/// becomes the newest. Also whether the tenant caught up.
fn debt_after(owed: Option<DlqPosition>, done: &Done) -> (Option<DlqPosition>, bool) {
    let mut caught_up = false;
    let mut now_owed = owed;
    if let (Some(of), Some(position)) = (done.replay_of, owed)
        && of.reaches(position)
    {
        now_owed = None;
        caught_up = true;
    }
    if done.tenant_gone {
        now_owed = None;
    }
    // A record parked while the debt lasted is owed, even when it was a
    // replay that settled the debt and was parked again.
    if let Some((at, because)) = done.parked
        && (because != ParkedBecause::Breaker || owed.is_some())
    {
        now_owed = Some(at);
        caught_up = false;
    }
    (now_owed, caught_up)
}

/// Tenant states below which the idle ones are not swept.
const MIN_SWEEP: usize = 64;

/// The lane of all records in partition order, and of records without a
/// key in key order (those are dead-lettered at once).
fn shared_lane() -> Key {
    Arc::from(&[][..])
}

impl<R> Scheduler<R> {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            held: BTreeMap::new(),
            finished_ahead: BTreeSet::new(),
            next_offset: None,
            bytes: 0,
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            throttled: BTreeSet::new(),
            tenants: HashMap::new(),
            sweep_at: MIN_SWEEP,
            finished_before: BTreeSet::new(),
            finishes: 0,
            unconfirmed: HashMap::new(),
            awaiting_commit: HashSet::new(),
            backing_off: 0,
            suspended: 0,
            owing: 0,
        }
    }

    /// The settings the scheduler was made with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Carries over what the partition's previous owner committed: records
    /// it finished above the committed offset (passed over when they
    /// arrive) and the tenants it had suspended. Call before the first
    /// [`Scheduler::admit`].
    pub fn restore(
        &mut self,
        finished_above: impl IntoIterator<Item = i64>,
        suspended: impl IntoIterator<Item = (Key, Instant)>,
    ) {
        self.finished_before.extend(finished_above);
        for (tenant, next_probe) in suspended {
            let state = self.tenants.entry(tenant).or_default();
            if state.next_probe.replace(next_probe).is_none() {
                self.suspended += 1;
            }
        }
    }

    /// Carries over the tenants that owed the replay of parked dead
    /// letters when the partition was last committed.
    pub fn restore_owed(&mut self, owed: impl IntoIterator<Item = (Key, DlqPosition)>) {
        for (tenant, position) in owed {
            let state = self.tenants.entry(tenant).or_default();
            if state.owed.replace(position).is_none() {
                self.owing += 1;
            }
        }
    }

    /// Whether another record may be read: the window has room, or holds
    /// nothing at all (so a record larger than the byte limit still passes).
    pub fn has_room(&self) -> bool {
        let Some((&lowest, _)) = self.held.first_key_value() else {
            return true;
        };
        let next = self.next_offset.unwrap_or(lowest);
        let span = usize::try_from(next - lowest).unwrap_or(usize::MAX);
        span < self.settings.window && self.bytes < self.settings.window_bytes
    }

    /// Takes in the next record read from the partition (offsets ascend).
    pub fn admit(&mut self, offset: i64, key: Option<&[u8]>, bytes: usize, record: R) -> Admitted {
        let key = key.map(|k| self.key(k));
        self.admit_keyed(offset, key, bytes, record)
    }

    /// [`Scheduler::admit`] with the key already shared (see
    /// [`Scheduler::key`]), so that the record can move in while its key
    /// is borrowed from it.
    pub fn admit_keyed(
        &mut self,
        offset: i64,
        key: Option<Key>,
        bytes: usize,
        record: R,
    ) -> Admitted {
        self.next_offset = Some(offset + 1);
        // Offsets below this one will never arrive (retention, compaction).
        while self.finished_before.first().is_some_and(|&o| o < offset) {
            self.finished_before.pop_first();
        }
        if self.finished_before.remove(&offset) {
            if !self.held.is_empty() {
                self.finished_ahead.insert(offset);
            }
            return Admitted::AlreadyFinished;
        }
        let lane = match (self.settings.lanes, &key) {
            (Lanes::PerKey, Some(key)) => key.clone(),
            _ => shared_lane(),
        };
        self.held.insert(
            offset,
            Held {
                bytes,
                key,
                started: false,
                backing_off: false,
            },
        );
        self.bytes += bytes;
        let entry = self.lanes.entry(lane.clone()).or_insert_with(|| Lane {
            waiting: VecDeque::new(),
            busy: false,
        });
        entry.waiting.push_back(Waiting { offset, record });
        if !entry.busy && entry.waiting.len() == 1 {
            self.ready.push_back(lane);
        }
        Admitted::Held
    }

    /// `key` as the scheduler keeps it: the allocation of a tenant or lane
    /// already known, so that a tenant's records share one copy of its key.
    pub fn key(&self, key: &[u8]) -> Key {
        if let Some((k, _)) = self.tenants.get_key_value(key) {
            return k.clone();
        }
        if let Some((k, _)) = self.lanes.get_key_value(key) {
            return k.clone();
        }
        Arc::from(key)
    }

    /// The next record that may be worked on now, if any. `spacing` gives a
    /// tenant's minimum time between two events (its rate limit).
    pub fn next_job(
        &mut self,
        now: Instant,
        spacing: impl Fn(&[u8]) -> Option<Duration>,
    ) -> Option<Job<R>> {
        self.release_throttled(now);
        while let Some(lane_key) = self.ready.pop_front() {
            let Some(lane) = self.lanes.get_mut(&lane_key) else {
                continue;
            };
            let Some(head) = lane.waiting.front() else {
                continue;
            };
            let offset = head.offset;
            let key = self.held.get(&offset).and_then(|h| h.key.clone());
            let admission = key
                .as_ref()
                .map_or(Admission::Deliver, |k| self.admission(k, now));
            if admission != Admission::Suspended && self.unconfirmed.contains_key(&lane_key) {
                self.awaiting_commit.insert(lane_key);
                continue;
            }
            if admission != Admission::Suspended
                && let Some(key) = &key
                && let Some(not_before) = self.tenants.get(key).and_then(|t| t.not_before)
                && not_before > now
            {
                self.throttled.insert((not_before, lane_key));
                continue;
            }
            let lane = self.lanes.get_mut(&lane_key).expect("looked up above");
            let waiting = lane.waiting.pop_front().expect("checked above");
            lane.busy = true;
            if let Some(held) = self.held.get_mut(&offset) {
                held.started = true;
            }
            if let Some(key) = &key {
                let interval = match admission {
                    // A dead letter does not reach the tenant's endpoint.
                    Admission::Suspended => None,
                    Admission::Deliver | Admission::Probe => spacing(key),
                };
                let probe_interval = self.settings.probe_interval;
                if interval.is_some() || admission == Admission::Probe {
                    let tenant = self.tenants.entry(key.clone()).or_default();
                    if let Some(interval) = interval {
                        tenant.not_before = Some(now + interval);
                    }
                    if admission == Admission::Probe {
                        tenant.next_probe = Some(now + probe_interval);
                    }
                }
            }
            let owed = key
                .as_ref()
                .and_then(|k| self.tenants.get(k))
                .and_then(|t| t.owed);
            return Some(Job {
                offset,
                key,
                record: waiting.record,
                admission,
                owed,
            });
        }
        None
    }

    fn admission(&self, tenant: &[u8], now: Instant) -> Admission {
        match self.tenants.get(tenant).and_then(|t| t.next_probe) {
            None => Admission::Deliver,
            Some(probe) if probe <= now => Admission::Probe,
            Some(_) => Admission::Suspended,
        }
    }

    /// Moves lanes whose rate limit has passed back to the ready ones.
    fn release_throttled(&mut self, now: Instant) {
        while let Some((at, _)) = self.throttled.first() {
            if *at > now {
                break;
            }
            let (_, lane) = self.throttled.pop_first().expect("checked above");
            self.ready.push_back(lane);
        }
    }

    /// When a throttled lane may go next, if one waits.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.throttled.first().map(|(at, _)| *at)
    }

    /// Whether a record handed out is backing off between attempts.
    pub fn set_backing_off(&mut self, offset: i64, backing_off: bool) {
        if let Some(held) = self.held.get_mut(&offset)
            && held.started
            && held.backing_off != backing_off
        {
            held.backing_off = backing_off;
            if backing_off {
                self.backing_off += 1;
            } else {
                self.backing_off -= 1;
            }
        }
    }

    /// A record handed out has reached its outcome, which is durable, and
    /// is committed as finished with the next checkpoint.
    pub fn finish(&mut self, offset: i64, done: impl Into<Done>, now: Instant) -> Finished {
        self.finish_as(offset, done.into(), now, true)
    }

    /// [`Scheduler::finish`] for a record dead-lettered outside the commit
    /// of its offset: its lane delivers nothing more until a checkpoint
    /// that covers this finish is committed ([`Scheduler::confirm`]).
    pub fn finish_unconfirmed(
        &mut self,
        offset: i64,
        done: impl Into<Done>,
        now: Instant,
    ) -> Finished {
        self.finish_as(offset, done.into(), now, false)
    }

    fn finish_as(&mut self, offset: i64, done: Done, now: Instant, confirmed: bool) -> Finished {
        let Some(held) = self.held.get(&offset) else {
            return Finished::default();
        };
        if !held.started {
            return Finished::default();
        }
        let held = self.held.remove(&offset).expect("looked up above");
        self.bytes -= held.bytes;
        if held.backing_off {
            self.backing_off -= 1;
        }
        let was_lowest = self
            .held
            .first_key_value()
            .is_none_or(|(&low, _)| low > offset);
        if was_lowest {
            // Everything finished below the new lowest unfinished record is
            // now covered by the committable offset.
            let low = self
                .held
                .first_key_value()
                .map_or(i64::MAX, |(&low, _)| low);
            while self.finished_ahead.first().is_some_and(|&o| o < low) {
                self.finished_ahead.pop_first();
            }
        } else {
            self.finished_ahead.insert(offset);
        }

        let lane_key = match (self.settings.lanes, &held.key) {
            (Lanes::PerKey, Some(key)) => key.clone(),
            _ => shared_lane(),
        };
        self.finishes += 1;
        if !confirmed {
            self.unconfirmed.insert(lane_key.clone(), self.finishes);
        }
        if let Some(lane) = self.lanes.get_mut(&lane_key) {
            lane.busy = false;
            if lane.waiting.is_empty() {
                self.lanes.remove(&lane_key);
            } else {
                self.ready.push_back(lane_key);
            }
        }

        let caught_up = held.key.as_ref().and_then(|t| self.settle_debt(t, &done));
        let suspension = held
            .key
            .and_then(|tenant| self.circuit_breaker(tenant, done.ending, now));
        Finished {
            committable_moved: was_lowest,
            suspension,
            caught_up,
        }
    }

    /// What a finished record of `tenant` does to its debt of parked dead
    /// letters: a replay of the newest one (or of a later one) clears it;
    /// a record parked under an operator's suspension, or while the debt
    /// lasts, becomes the newest. Returns the tenant when it caught up.
    fn settle_debt(&mut self, tenant: &Key, done: &Done) -> Option<Key> {
        let owed = self.tenants.get(tenant).and_then(|s| s.owed);
        let (now_owed, caught_up) = debt_after(owed, done);
        if now_owed == owed {
            return None;
        }
        match (owed, now_owed) {
            (None, Some(_)) => self.owing += 1,
            (Some(_), None) => self.owing -= 1,
            _ => {}
        }
        self.tenants.entry(tenant.clone()).or_default().owed = now_owed;
        // An idle entry goes in `circuit_breaker`, which runs next.
        caught_up.then(|| tenant.clone())
    }

    fn circuit_breaker(
        &mut self,
        tenant: Key,
        ending: Ending,
        now: Instant,
    ) -> Option<SuspensionChange> {
        let settings = self.settings;
        let state = self.tenants.entry(tenant.clone()).or_default();
        let change = match state.breaker_step(ending, &settings, now) {
            Some(BreakerStep::Resumed) => {
                self.suspended -= 1;
                Some(SuspensionChange::Resumed {
                    tenant: tenant.clone(),
                })
            }
            Some(BreakerStep::Suspended(n)) => {
                self.suspended += 1;
                Some(SuspensionChange::Suspended {
                    tenant: tenant.clone(),
                    because: SuspendedBecause::ConsecutiveFailures(n),
                })
            }
            None => None,
        };
        if state.is_idle(now) {
            self.tenants.remove(&tenant);
        }
        self.sweep_idle_tenants(now);
        change
    }

    /// Removes the state of tenants that keep nothing any more. A
    /// rate-limited tenant's state outlives its last record until its
    /// spacing has passed, and no later record of it may come to remove it:
    /// across many tenants these would pile up for good. So once the map
    /// has doubled since the last sweep, the idle entries go (a spacing
    /// passed is no spacing; suspensions and debts are never idle), which
    /// keeps it within twice the tenants that need one, at a constant cost
    /// per record on average.
    fn sweep_idle_tenants(&mut self, now: Instant) {
        if self.tenants.len() < self.sweep_at {
            return;
        }
        self.tenants.retain(|_, state| !state.is_idle(now));
        self.sweep_at = (2 * self.tenants.len()).max(MIN_SWEEP);
        if self.tenants.capacity() > 4 * self.sweep_at {
            self.tenants.shrink_to(self.sweep_at);
        }
    }

    /// When the window is full, the tenant of its lowest record is backing
    /// off, and the window holds nothing unfinished but the records of
    /// tenants that are backing off, failing tenants' backlogs fill the
    /// window: the lowest one's tenant would hold the partition for as long
    /// as its endpoint fails, and is suspended. While any other tenant's
    /// records are still unfinished, the window is merely full of a backlog
    /// (in partition order it always is, reading ahead), and a failed
    /// attempt waits for its retry like any other. Returns the tenant and
    /// the offset of its record in flight, whose backoff should end at once.
    pub fn suspend_window_holder(&mut self, now: Instant) -> Option<(Key, i64)> {
        if self.has_room() || self.settings.suspend_after == 0 {
            return None;
        }
        let (&offset, held) = self.held.first_key_value()?;
        if !held.backing_off {
            return None;
        }
        let tenant = held.key.clone()?;
        if self.is_suspended(&tenant) {
            return None;
        }
        let failing: HashSet<&Key> = self
            .held
            .values()
            .filter(|h| h.backing_off)
            .filter_map(|h| h.key.as_ref())
            .collect();
        let others_unfinished = self
            .held
            .values()
            .any(|h| h.key.as_ref().is_none_or(|key| !failing.contains(key)));
        if others_unfinished {
            return None;
        }
        self.tenants.entry(tenant.clone()).or_default().next_probe =
            Some(now + self.settings.probe_interval);
        self.suspended += 1;
        Some((tenant, offset))
    }

    /// The offset to commit: the lowest unfinished record, or one past the
    /// newest read when all are finished; `None` before the first record.
    pub fn committable(&self) -> Option<i64> {
        self.held
            .first_key_value()
            .map(|(&offset, _)| offset)
            .or(self.next_offset)
    }

    /// What to commit, with the records finished above the committable
    /// offset and the suspended tenants.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let offset = self.committable()?;
        Some(Checkpoint {
            offset,
            finished_above: self.finished_ahead.iter().copied().collect(),
            suspended: self.suspended().collect(),
            owed: self.owed().collect(),
            covers: self.finishes,
        })
    }

    /// A checkpoint that covers `covers` finishes was committed: the lanes
    /// that waited for it hand out their next records again.
    pub fn confirm(&mut self, covers: u64) {
        let (ready, awaiting) = (&mut self.ready, &mut self.awaiting_commit);
        self.unconfirmed.retain(|lane, finish| {
            if *finish > covers {
                return true;
            }
            if awaiting.remove(lane) {
                ready.push_back(lane.clone());
            }
            false
        });
    }

    /// Dead-lettered records are finished but not known to be committed.
    pub fn has_unconfirmed(&self) -> bool {
        !self.unconfirmed.is_empty()
    }

    /// A lane's next record waits for the commit of a dead-lettered one.
    pub fn awaits_commit(&self) -> bool {
        !self.awaiting_commit.is_empty()
    }

    /// The checkpoint as it will be once the record at `offset`, handed
    /// out and not finished, has finished as `done` at `now`: what
    /// [`Scheduler::finish`] followed by [`Scheduler::checkpoint`] would
    /// give, without finishing it. A dead letter written in a transaction
    /// commits this with it, before the record is finished here. `None`
    /// when the record is not being worked on.
    pub fn checkpoint_after(
        &self,
        offset: i64,
        done: impl Into<Done>,
        now: Instant,
    ) -> Option<Checkpoint> {
        let done = done.into();
        let held = self.held.get(&offset).filter(|h| h.started)?;
        let mut checkpoint = self.checkpoint()?;
        checkpoint.covers += 1;
        checkpoint.offset = self
            .held
            .keys()
            .copied()
            .find(|&o| o != offset)
            .or(self.next_offset)?;
        let low = checkpoint.offset;
        checkpoint.finished_above = self
            .finished_ahead
            .iter()
            .copied()
            .chain(std::iter::once(offset))
            .filter(|&o| o > low)
            .collect::<BTreeSet<i64>>()
            .into_iter()
            .collect();
        if let Some(tenant) = &held.key {
            let mut state = self.tenants.get(tenant).cloned().unwrap_or_default();
            state.owed = debt_after(state.owed, &done).0;
            state.breaker_step(done.ending, &self.settings, now);
            checkpoint.suspended.retain(|(k, _)| k != tenant);
            checkpoint
                .suspended
                .extend(state.next_probe.map(|p| (tenant.clone(), p)));
            checkpoint.owed.retain(|(k, _)| k != tenant);
            checkpoint
                .owed
                .extend(state.owed.map(|o| (tenant.clone(), o)));
        }
        Some(checkpoint)
    }

    /// The suspended tenants and when each may next be probed.
    pub fn suspended(&self) -> impl Iterator<Item = (Key, Instant)> + '_ {
        self.tenants
            .iter()
            .filter_map(|(k, t)| t.next_probe.map(|p| (k.clone(), p)))
    }

    /// The tenants owing the replay of parked dead letters, with the
    /// newest one.
    pub fn owed(&self) -> impl Iterator<Item = (Key, DlqPosition)> + '_ {
        self.tenants
            .iter()
            .filter_map(|(k, t)| t.owed.map(|o| (k.clone(), o)))
    }

    /// Tenants owing the replay of parked dead letters.
    pub fn owing_count(&self) -> usize {
        self.owing
    }

    /// Whether `tenant` is suspended.
    pub fn is_suspended(&self, tenant: &[u8]) -> bool {
        self.tenants
            .get(tenant)
            .is_some_and(|t| t.next_probe.is_some())
    }

    /// Records read and not finished.
    pub fn unfinished(&self) -> usize {
        self.held.len()
    }

    /// Bytes of the records read and not finished.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records handed out and backing off between attempts.
    pub fn backing_off(&self) -> usize {
        self.backing_off
    }

    /// Suspended tenants.
    pub fn suspended_count(&self) -> usize {
        self.suspended
    }

    /// Whether the lowest unfinished record is backing off: the committed
    /// offset waits for a failing endpoint.
    pub fn lowest_backing_off(&self) -> bool {
        self.held
            .first_key_value()
            .is_some_and(|(_, h)| h.backing_off)
    }

    /// Who holds the window, for the warning when it is full.
    pub fn window_holders(&self, most: usize) -> WindowHolders {
        let lowest = self
            .held
            .first_key_value()
            .map(|(&offset, h)| (h.key.clone(), offset));
        let mut counts: HashMap<Option<&Key>, usize> = HashMap::new();
        for held in self.held.values() {
            *counts.entry(held.key.as_ref()).or_default() += 1;
        }
        let mut counts: Vec<(Option<Key>, usize)> =
            counts.into_iter().map(|(k, n)| (k.cloned(), n)).collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts.truncate(most);
        WindowHolders {
            lowest,
            most: counts,
        }
    }
}

#[cfg(test)]
mod tests;
