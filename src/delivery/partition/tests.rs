//! The driver against a scripted partition and processor, in paused time:
//! every sleep below advances a virtual clock at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use super::*;
use crate::delivery::scheduler::{Admission, Ending, Lanes};

const ATTEMPT: Duration = Duration::from_millis(50);
const BACKOFF: Duration = Duration::from_secs(1);

struct FakeRecord {
    offset: i64,
    key: Vec<u8>,
}

impl SourceRecord for FakeRecord {
    fn offset(&self) -> i64 {
        self.offset
    }
    fn key(&self) -> Option<&[u8]> {
        Some(&self.key)
    }
    fn size(&self) -> usize {
        self.key.len() + 100
    }
}

/// What the source and the processor did, in the order they did it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Stored(i64, String),
    Committed(i64, String),
    /// A dead letter's transaction got this proposal for its record.
    Proposed(i64, Proposal),
    /// The transaction of the record ended: committed or withdrawn.
    Settled(i64),
    /// The processor started on the record.
    Started(i64),
    /// A commit the broker refused.
    Refused(i64, String),
}

type Log = Arc<Mutex<Vec<Entry>>>;

/// A partition fed by the test; it remembers what was stored and committed.
struct FakeSource {
    records: tokio::sync::Mutex<mpsc::UnboundedReceiver<FakeRecord>>,
    committed: Option<(i64, String)>,
    stored: Arc<Mutex<Vec<(i64, String)>>>,
    commits: Arc<Mutex<Vec<(i64, String)>>>,
    /// The broker refuses commits, as it does those of a member that is
    /// no longer in the group.
    refuse_commits: Arc<AtomicBool>,
    log: Log,
}

impl PartitionSource for FakeSource {
    type Record = FakeRecord;

    fn partition(&self) -> i32 {
        0
    }

    async fn next(&self) -> FakeRecord {
        let mut records = self.records.lock().await;
        match records.recv().await {
            Some(record) => record,
            None => std::future::pending().await,
        }
    }

    async fn committed(&self) -> Option<(i64, String)> {
        self.committed.clone()
    }

    fn store(&self, offset: i64, metadata: &str) -> Result<(), PartitionLost> {
        self.stored
            .lock()
            .unwrap()
            .push((offset, metadata.to_string()));
        self.log
            .lock()
            .unwrap()
            .push(Entry::Stored(offset, metadata.to_string()));
        Ok(())
    }

    async fn commit(&self, offset: i64, metadata: &str) -> bool {
        // A round trip to the broker.
        tokio::time::sleep(Duration::from_millis(5)).await;
        if self.refuse_commits.load(AtomicOrdering::SeqCst) {
            self.log
                .lock()
                .unwrap()
                .push(Entry::Refused(offset, metadata.to_string()));
            return false;
        }
        self.commits
            .lock()
            .unwrap()
            .push((offset, metadata.to_string()));
        self.log
            .lock()
            .unwrap()
            .push(Entry::Committed(offset, metadata.to_string()));
        true
    }

    fn lag(&self, _next_offset: i64) -> Option<i64> {
        None
    }
}

/// How a tenant's endpoint behaves.
#[derive(Clone, Copy)]
enum Endpoint {
    /// Answers 2xx after one attempt.
    Healthy,
    /// Fails every attempt; the record is dead-lettered after `attempts`.
    Failing { attempts: u32 },
    /// Rejects at once: dead-lettered in a transaction that takes
    /// `commit` from the proposal to its end, and is aborted (withdrawn)
    /// the first `aborts` times.
    Transactional { commit: Duration, aborts: u32 },
}

/// One record's run through the processor.
#[derive(Debug, Clone)]
struct Run {
    offset: i64,
    key: String,
    admission: Admission,
    owed: Option<DlqPosition>,
    started: Instant,
    ended: Option<(Instant, Result<Ending, Abandoned>)>,
}

#[derive(Default)]
struct FakeProcessor {
    endpoints: Mutex<HashMap<Vec<u8>, Endpoint>>,
    spacing: HashMap<Vec<u8>, Duration>,
    runs: Mutex<Vec<Run>>,
    log: Log,
}

impl FakeProcessor {
    fn endpoint(&self, key: &[u8]) -> Endpoint {
        self.endpoints
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(Endpoint::Healthy)
    }

    fn set(&self, key: &str, endpoint: Endpoint) {
        self.endpoints
            .lock()
            .unwrap()
            .insert(key.as_bytes().to_vec(), endpoint);
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    /// The attempts of one record: what the real worker does, with
    /// sleeps for HTTP and backoff.
    async fn attempts(
        &self,
        job: &Job<FakeRecord>,
        control: &JobControl,
    ) -> Result<Ending, Abandoned> {
        let endpoint = self.endpoint(&job.record.key);
        match job.admission {
            Admission::Suspended => return Ok(Ending::Other),
            Admission::Probe => {
                tokio::time::sleep(ATTEMPT).await;
                return Ok(match endpoint {
                    Endpoint::Healthy => Ending::Delivered,
                    Endpoint::Failing { .. } | Endpoint::Transactional { .. } => Ending::Other,
                });
            }
            Admission::Deliver => {}
        }
        if let Endpoint::Transactional { commit, aborts } = endpoint {
            return self.transaction(job.offset, control, commit, aborts).await;
        }
        let mut attempt = 0;
        loop {
            if control.stop.is_cancelled() {
                return Err(Abandoned);
            }
            attempt += 1;
            tokio::select! {
                _ = control.abort.cancelled() => return Err(Abandoned),
                _ = tokio::time::sleep(ATTEMPT) => {}
            }
            match self.endpoint(&job.record.key) {
                Endpoint::Healthy => return Ok(Ending::Delivered),
                Endpoint::Failing { attempts } if attempt >= attempts => {
                    return Ok(Ending::RetriesExhausted);
                }
                Endpoint::Failing { .. } | Endpoint::Transactional { .. } => {}
            }
            control.backing_off(true);
            let waited = tokio::select! {
                _ = control.stop.cancelled() => Err(Abandoned),
                _ = control.abort.cancelled() => Err(Abandoned),
                _ = control.suspended.cancelled() => Ok(false),
                _ = tokio::time::sleep(BACKOFF) => Ok(true),
            };
            control.backing_off(false);
            if !waited? {
                // Suspended while waiting: dead-lettered at once.
                return Ok(Ending::Other);
            }
        }
    }
}

impl FakeProcessor {
    /// What the dead-letter writer does in a transaction, with a sleep for
    /// the commit.
    async fn transaction(
        &self,
        offset: i64,
        control: &JobControl,
        commit: Duration,
        mut aborts: u32,
    ) -> Result<Ending, Abandoned> {
        loop {
            // Quicker than an attempt: the proposal comes before the other
            // records of the test finish.
            tokio::time::sleep(Duration::from_millis(10)).await;
            let Some(proposal) = control.propose(Ending::Other.into()).await else {
                return Err(Abandoned);
            };
            self.log
                .lock()
                .unwrap()
                .push(Entry::Proposed(offset, proposal));
            tokio::time::sleep(commit).await;
            self.log.lock().unwrap().push(Entry::Settled(offset));
            if aborts == 0 {
                return Ok(Ending::Other);
            }
            aborts -= 1;
            control.withdraw();
        }
    }
}

impl RecordProcessor<FakeRecord> for FakeProcessor {
    async fn process(
        self: Arc<Self>,
        job: Job<FakeRecord>,
        control: JobControl,
    ) -> Result<Done, Abandoned> {
        self.log.lock().unwrap().push(Entry::Started(job.offset));
        let index = {
            let mut runs = self.runs.lock().unwrap();
            runs.push(Run {
                offset: job.offset,
                key: String::from_utf8_lossy(&job.record.key).into_owned(),
                admission: job.admission,
                owed: job.owed,
                started: Instant::now(),
                ended: None,
            });
            runs.len() - 1
        };
        let result = self.attempts(&job, &control).await;
        self.runs.lock().unwrap()[index].ended = Some((Instant::now(), result));
        result.map(Done::from)
    }

    fn spacing(&self, tenant: &[u8]) -> Option<Duration> {
        self.spacing.get(tenant).copied()
    }
}

/// A running driver and the handles to feed and watch it.
struct Harness {
    feed: mpsc::UnboundedSender<FakeRecord>,
    next_offset: i64,
    processor: Arc<FakeProcessor>,
    stored: Arc<Mutex<Vec<(i64, String)>>>,
    commits: Arc<Mutex<Vec<(i64, String)>>>,
    refuse_commits: Arc<AtomicBool>,
    stop: CancellationToken,
    driver: tokio::task::JoinHandle<()>,
    t0: Instant,
}

fn settings(lanes: Lanes) -> Settings {
    Settings {
        probe_interval: Duration::from_secs(60),
        ..Settings::for_tests(lanes)
    }
}

impl Harness {
    fn start(
        settings: Settings,
        processor: FakeProcessor,
        committed: Option<(i64, String)>,
    ) -> Self {
        let (feed, records) = mpsc::unbounded_channel();
        let stored = Arc::new(Mutex::new(Vec::new()));
        let commits = Arc::new(Mutex::new(Vec::new()));
        let refuse_commits = Arc::new(AtomicBool::new(false));
        let source = FakeSource {
            records: tokio::sync::Mutex::new(records),
            committed: committed.clone(),
            stored: stored.clone(),
            commits: commits.clone(),
            refuse_commits: refuse_commits.clone(),
            log: processor.log.clone(),
        };
        let processor = Arc::new(processor);
        let stop = CancellationToken::new();
        let driver = tokio::spawn(run(
            source,
            processor.clone(),
            settings,
            stop.clone(),
            CancellationToken::new(),
        ));
        Self {
            feed,
            next_offset: committed.map_or(0, |(o, _)| o),
            processor,
            stored,
            commits,
            refuse_commits,
            stop,
            driver,
            t0: Instant::now(),
        }
    }

    fn produce(&mut self, keys: &[&str]) {
        for key in keys {
            self.feed
                .send(FakeRecord {
                    offset: self.next_offset,
                    key: key.as_bytes().to_vec(),
                })
                .unwrap();
            self.next_offset += 1;
        }
    }

    /// The offset stored last, as the group would commit it.
    fn stored_offset(&self) -> Option<i64> {
        self.stored.lock().unwrap().last().map(|(o, _)| *o)
    }

    fn runs_of(&self, key: &str) -> Vec<Run> {
        self.processor
            .runs()
            .into_iter()
            .filter(|r| r.key == key)
            .collect()
    }

    /// Runs that ended, of every tenant.
    fn ended(&self) -> usize {
        self.processor
            .runs()
            .iter()
            .filter(|r| r.ended.is_some())
            .count()
    }

    /// When each run of `key` ended, after the start of the test.
    fn ends_of(&self, key: &str) -> Vec<Duration> {
        self.runs_of(key)
            .iter()
            .filter_map(|r| r.ended.map(|(at, _)| at - self.t0))
            .collect()
    }

    async fn stop(self) -> Self {
        self.stop.cancel();
        let driver = self.driver;
        driver.await.unwrap();
        Self {
            driver: tokio::spawn(async {}),
            ..self
        }
    }
}

/// Waits until `done` holds, in virtual time (a minute at the most).
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..60_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("not done after a minute of virtual time");
}

#[tokio::test(start_paused = true)]
async fn a_failing_tenant_holds_back_only_itself() {
    let processor = FakeProcessor::default();
    processor.set("bad", Endpoint::Failing { attempts: 3 });
    let mut h = Harness::start(settings(Lanes::PerKey), processor, None);
    h.produce(&["bad", "a", "b", "a", "c", "b", "a", "bad", "c"]);

    until(|| h.stored_offset() == Some(9)).await;
    for key in ["a", "b", "c"] {
        // Each healthy tenant's events one after the other, at once.
        for end in h.ends_of(key) {
            assert!(end <= ATTEMPT * 4, "{key} ended after {end:?}");
        }
    }
    // bad: three attempts and two backoffs, then its second event.
    let bad = h.ends_of("bad");
    assert!(bad[0] >= BACKOFF * 2, "{bad:?}");
    assert!(
        bad[1] >= bad[0] + BACKOFF * 2,
        "bad's events one after the other"
    );

    // Until bad's first event was dead-lettered, the stored offset stayed
    // below it, with the others' finished records in the metadata.
    let stored = h.stored.lock().unwrap().clone();
    let while_stuck: Vec<&(i64, String)> = stored.iter().filter(|(o, _)| *o == 0).collect();
    let finished = while_stuck
        .iter()
        .filter_map(|(_, text)| CommitMetadata::decode(text))
        .map(|m| m.finished_above)
        .max_by_key(Vec::len)
        .unwrap();
    assert_eq!(finished, [1, 2, 3, 4, 5, 6, 8]);
    // The offset did not move, so the group would not commit it: the
    // driver committed the metadata itself.
    assert!(h.commits.lock().unwrap().iter().any(|(o, _)| *o == 0));
    assert_eq!(
        stored.last().unwrap().0,
        9,
        "all done: past the last record"
    );
    assert!(
        stored.windows(2).all(|w| w[0].0 <= w[1].0),
        "the stored offset never goes back"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn partition_order_makes_partition_mates_wait() {
    let processor = FakeProcessor::default();
    processor.set("bad", Endpoint::Failing { attempts: 3 });
    let mut h = Harness::start(settings(Lanes::PerPartition), processor, None);
    h.produce(&["bad", "a", "b"]);

    until(|| h.ended() == 3).await;
    let bad = h.ends_of("bad")[0];
    for key in ["a", "b"] {
        assert!(h.ends_of(key)[0] > bad, "{key} waited for bad");
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_tenant_is_suspended_after_consecutive_failures_and_resumed_by_a_probe() {
    let processor = FakeProcessor::default();
    processor.set("bad", Endpoint::Failing { attempts: 2 });
    let mut h = Harness::start(settings(Lanes::PerKey), processor, None);
    h.produce(&["bad"; 5]);
    until(|| h.ends_of("bad").len() == 5).await;
    let admissions: Vec<Admission> = h.runs_of("bad").iter().map(|r| r.admission).collect();
    use Admission::*;
    assert_eq!(
        admissions,
        [Deliver, Deliver, Deliver, Suspended, Suspended]
    );
    let suspended_at = h.runs_of("bad")[2].ended.unwrap().0;
    // The suspended events went to the dead-letter topic at once.
    assert_eq!(h.runs_of("bad")[4].ended.unwrap().0, suspended_at);
    // The suspension is in the commit metadata.
    until(|| h.stored_offset() == Some(5)).await;
    let (_, text) = h.stored.lock().unwrap().last().cloned().unwrap();
    let metadata = CommitMetadata::decode(&text).unwrap();
    assert_eq!(metadata.suspended.len(), 1);
    assert_eq!(metadata.suspended[0].0, "bad");

    // Before the probe interval: still suspended. After it: one probe,
    // which fails; then the endpoint recovers and the next probe succeeds.
    tokio::time::sleep_until(suspended_at + Duration::from_secs(30)).await;
    h.produce(&["bad"]);
    tokio::time::sleep_until(suspended_at + Duration::from_secs(61)).await;
    h.produce(&["bad"]);
    tokio::time::sleep_until(suspended_at + Duration::from_secs(90)).await;
    h.processor.set("bad", Endpoint::Healthy);
    h.produce(&["bad"]);
    tokio::time::sleep_until(suspended_at + Duration::from_secs(122)).await;
    h.produce(&["bad", "bad"]);
    until(|| h.ends_of("bad").len() == 10).await;
    let admissions: Vec<Admission> = h.runs_of("bad")[5..].iter().map(|r| r.admission).collect();
    assert_eq!(admissions, [Suspended, Probe, Suspended, Probe, Deliver]);
    let last = h.runs_of("bad")[9].ended.unwrap().1;
    assert_eq!(last, Ok(Ending::Delivered));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn records_finished_before_a_restart_are_not_delivered_again() {
    let probe_in_a_minute = Clock::now().to_unix_ms(Instant::now() + Duration::from_secs(60));
    let metadata = CommitMetadata {
        offset: 5,
        finished_above: vec![6, 8],
        suspended: vec![("sus".into(), probe_in_a_minute)],
        owed: vec![("owing".into(), 2, 40)],
    };
    let committed = Some((5, metadata.encode().0));
    let mut h = Harness::start(settings(Lanes::PerKey), FakeProcessor::default(), committed);
    h.produce(&["a", "b", "a", "b", "sus", "owing"]);
    until(|| h.stored_offset() == Some(11)).await;
    let runs = h.processor.runs();
    let offsets: Vec<i64> = runs.iter().map(|r| r.offset).collect();
    assert_eq!(offsets.iter().filter(|o| **o == 6 || **o == 8).count(), 0);
    assert_eq!(runs.len(), 4, "{offsets:?}");
    assert_eq!(h.runs_of("sus")[0].admission, Admission::Suspended);
    assert_eq!(
        h.runs_of("owing")[0].owed,
        Some(DlqPosition {
            partition: 2,
            offset: 40
        }),
        "the debt of a resumption survives the restart"
    );
    assert_eq!(h.runs_of("a")[0].owed, None);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn metadata_for_another_offset_keeps_only_the_suspensions() {
    let metadata = CommitMetadata {
        offset: 3,
        finished_above: vec![6],
        suspended: vec![],
        owed: vec![],
    };
    let committed = Some((5, metadata.encode().0));
    let mut h = Harness::start(settings(Lanes::PerKey), FakeProcessor::default(), committed);
    h.produce(&["a", "b"]);
    until(|| h.stored_offset() == Some(7)).await;
    assert_eq!(
        h.processor.runs().len(),
        2,
        "6 is delivered: the list was not for 5"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_tenant_backing_off_in_a_full_window_is_suspended() {
    let processor = FakeProcessor::default();
    processor.set("bad", Endpoint::Failing { attempts: 100 });
    let mut h = Harness::start(
        Settings {
            window: 5,
            ..settings(Lanes::PerKey)
        },
        processor,
        None,
    );
    h.produce(&["bad", "bad", "bad", "bad", "bad", "ok", "ok"]);
    until(|| h.ended() == 7).await;
    let bad = h.runs_of("bad");
    assert_eq!(bad[0].ended.unwrap().1, Ok(Ending::Other), "cut short");
    assert!(bad[1..].iter().all(|r| r.admission == Admission::Suspended));
    // Long before 100 attempts with their backoffs.
    assert!(h.ends_of("ok")[1] < BACKOFF * 3, "{:?}", h.ends_of("ok"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_lets_attempts_finish_and_stores_the_lowest_unfinished_offset() {
    let processor = FakeProcessor::default();
    processor.set("bad", Endpoint::Failing { attempts: 100 });
    let mut h = Harness::start(settings(Lanes::PerKey), processor, None);
    h.produce(&["ok", "bad", "ok", "ok"]);
    until(|| h.ends_of("ok").len() == 3).await;
    h.produce(&["ok2"]);
    // Stop while bad waits for its next attempt and ok2's attempt is sent.
    tokio::time::sleep(ATTEMPT / 2).await;
    let h = h.stop().await;
    let bad = h.runs_of("bad");
    assert_eq!(bad[0].ended.unwrap().1, Err(Abandoned));
    assert_eq!(h.runs_of("ok2")[0].ended.unwrap().1, Ok(Ending::Delivered));
    let (offset, text) = h.stored.lock().unwrap().last().cloned().unwrap();
    assert_eq!(offset, 1, "bad's record is delivered again after a restart");
    assert_eq!(
        CommitMetadata::decode(&text).unwrap().finished_above,
        [2, 3, 4]
    );
}

#[tokio::test(start_paused = true)]
async fn metadata_that_changes_above_a_stuck_offset_is_committed() {
    let processor = FakeProcessor::default();
    processor.set("bad", Endpoint::Failing { attempts: 100 });
    let mut h = Harness::start(settings(Lanes::PerKey), processor, None);
    h.produce(&["bad", "ok"]);
    until(|| {
        h.stored
            .lock()
            .unwrap()
            .iter()
            .any(|(o, t)| *o == 0 && !t.is_empty())
    })
    .await;
    h.produce(&["ok"]);
    until(|| h.ends_of("ok").len() == 2).await;
    // The group skips an offset it committed already: the finished record
    // 2 reaches the broker only through the driver's own commit.
    let h = h.stop().await;
    let (offset, text) = h.commits.lock().unwrap().last().cloned().unwrap();
    assert_eq!(offset, 0);
    assert_eq!(
        CommitMetadata::decode(&text).unwrap().finished_above,
        [1, 2]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_tenant_is_spaced_and_holds_back_nobody() {
    let processor = FakeProcessor {
        spacing: HashMap::from([(b"slow".to_vec(), Duration::from_secs(1))]),
        ..Default::default()
    };
    let mut h = Harness::start(settings(Lanes::PerKey), processor, None);
    h.produce(&["slow", "slow", "slow", "fast", "fast", "fast"]);
    until(|| h.ended() == 6).await;
    let starts: Vec<Duration> = h.runs_of("slow").iter().map(|r| r.started - h.t0).collect();
    assert!(
        starts[1] - starts[0] >= Duration::from_secs(1),
        "{starts:?}"
    );
    assert!(
        starts[2] - starts[1] >= Duration::from_secs(1),
        "{starts:?}"
    );
    assert!(h.ends_of("fast")[2] <= ATTEMPT * 4);
    h.stop().await;
}

/// Regression: updating the gauges replaced the whole `Gauges` value,
/// whose drop took the partition's share back each time, so the exported
/// gauges went negative.
#[test]
fn a_partitions_gauges_add_up_while_it_runs_and_return_to_zero_after() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let value = |name: &str| -> f64 {
        handle
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    ::metrics::with_local_recorder(&recorder, || {
        let now = Instant::now();
        let mut scheduler = Scheduler::new(settings(Lanes::PerKey));
        for (offset, key) in [(0, "a"), (1, "b")] {
            scheduler.admit(offset, Some(key.as_bytes()), 1, ());
            scheduler.next_job(now, |_| None).unwrap();
            scheduler.set_backing_off(offset, true);
        }
        let mut gauges = Gauges::default();
        gauges.set(&scheduler);
        gauges.set(&scheduler);
        gauges.set_window_full(true);
        assert_eq!(value(metrics::TENANTS_BACKING_OFF), 2.0);
        assert_eq!(value(metrics::PARTITIONS_BACKING_OFF), 1.0);
        assert_eq!(value(metrics::PARTITIONS_WINDOW_FULL), 1.0);
        scheduler.finish(0, Ending::Delivered, now);
        gauges.set(&scheduler);
        gauges.set_window_full(false);
        assert_eq!(value(metrics::TENANTS_BACKING_OFF), 1.0);
        assert_eq!(
            value(metrics::PARTITIONS_BACKING_OFF),
            1.0,
            "b is now the lowest"
        );
        assert_eq!(value(metrics::PARTITIONS_WINDOW_FULL), 0.0);
        drop(gauges);
        assert_eq!(value(metrics::TENANTS_BACKING_OFF), 0.0);
        assert_eq!(value(metrics::PARTITIONS_BACKING_OFF), 0.0);
    });
}

/// Regression: the window was looked at only when a backoff started or
/// ended, so a tenant already waiting when the others' records finished
/// held the partition until its next attempt.
#[tokio::test(start_paused = true)]
async fn a_failing_tenant_left_alone_in_a_full_window_is_suspended_at_once() {
    let processor = FakeProcessor::default();
    processor.set("bad", Endpoint::Failing { attempts: 100 });
    let mut h = Harness::start(
        Settings {
            window: 5,
            ..settings(Lanes::PerKey)
        },
        processor,
        None,
    );
    // bad's first attempt fails at once and it starts waiting; the others
    // finish afterwards, leaving it alone in the full window.
    h.produce(&["bad", "ok", "ok", "ok", "ok"]);
    h.produce(&["late", "late"]);
    until(|| h.ends_of("late").len() == 2).await;
    let bad = h.runs_of("bad");
    assert_eq!(bad[0].ended.unwrap().1, Ok(Ending::Other), "suspended");
    // Long before bad's next attempt (a backoff of BACKOFF after the first).
    assert!(h.ends_of("late")[1] < BACKOFF, "{:?}", h.ends_of("late"));
    h.stop().await;
}

/// The log's entries, and the metadata of a checkpoint decoded.
fn finished_above(metadata: &str) -> Vec<i64> {
    CommitMetadata::decode(metadata).map_or_else(Vec::new, |m| m.finished_above)
}

/// A dead letter's transaction commits the checkpoint with its record
/// finished: above the lowest unfinished record (which backs off), it is
/// listed as finished. What was stored before is committed before the
/// proposal is made, and nothing is stored or committed while the
/// transaction runs, though other records finish meanwhile; the next
/// checkpoint stored after it includes its record and theirs.
#[tokio::test(start_paused = true)]
async fn a_dead_letter_transaction_commits_its_checkpoint_and_holds_the_drivers_own() {
    let processor = FakeProcessor::default();
    processor.set("slow", Endpoint::Failing { attempts: 100 });
    processor.set(
        "tx",
        Endpoint::Transactional {
            commit: Duration::from_secs(2),
            aborts: 0,
        },
    );
    let mut h = Harness::start(settings(Lanes::PerKey), processor, None);
    h.produce(&["slow", "a"]);
    // Something is stored (offset 0, 1 finished above) before the
    // transaction starts.
    until(|| h.ends_of("a").len() == 1).await;
    tokio::time::sleep(CHECKPOINT_INTERVAL).await;
    assert_eq!(
        h.stored
            .lock()
            .unwrap()
            .last()
            .map(|(_, m)| finished_above(m)),
        Some(vec![1])
    );
    h.produce(&["tx", "b", "c"]);
    until(|| h.ends_of("c").len() == 1 && h.ends_of("tx").len() == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = h.processor.log.lock().unwrap().clone();

    let proposed = log
        .iter()
        .position(|e| matches!(e, Entry::Proposed(2, _)))
        .expect("a proposal for the dead letter");
    let Entry::Proposed(_, proposal) = &log[proposed] else {
        unreachable!()
    };
    assert_eq!(proposal.offset, 0, "the lowest unfinished record stays");
    assert_eq!(finished_above(&proposal.metadata), vec![1, 2], "{log:?}");
    // The last store before the proposal was committed before it.
    let last_store = log[..proposed]
        .iter()
        .rposition(|e| matches!(e, Entry::Stored(..)))
        .expect("a store before the transaction");
    let Entry::Stored(offset, metadata) = &log[last_store] else {
        unreachable!()
    };
    assert!(
        log[last_store..proposed].contains(&Entry::Committed(*offset, metadata.clone())),
        "the store was not committed before the proposal: {log:?}"
    );
    // Nothing of the driver's own between the proposal and the settling.
    let settled = log
        .iter()
        .position(|e| *e == Entry::Settled(2))
        .expect("the transaction ended");
    let between = &log[proposed + 1..settled];
    assert!(
        between
            .iter()
            .all(|e| !matches!(e, Entry::Stored(..) | Entry::Committed(..))),
        "stored or committed during the transaction: {between:?}"
    );
    // Records 3 and 4 finished during the transaction; the checkpoint
    // stored after it carries them and the dead-lettered one.
    let after: Vec<Vec<i64>> = log[settled..]
        .iter()
        .filter_map(|e| match e {
            Entry::Stored(0, m) | Entry::Committed(0, m) => Some(finished_above(m)),
            _ => None,
        })
        .collect();
    assert_eq!(after.last(), Some(&vec![1, 2, 3, 4]), "{log:?}");
    assert!(
        after.iter().all(|f| f.contains(&2)),
        "a checkpoint after the transaction lost its record: {log:?}"
    );
    h.stop().await;
}

/// An aborted transaction is withdrawn: the driver stores its own
/// checkpoints again (without the record), and the next try gets a
/// proposal of its own; the record finishes once, when a try commits.
#[tokio::test(start_paused = true)]
async fn a_withdrawn_transaction_releases_the_driver_and_is_tried_again() {
    let processor = FakeProcessor::default();
    processor.set("slow", Endpoint::Failing { attempts: 100 });
    processor.set(
        "tx",
        Endpoint::Transactional {
            commit: Duration::from_millis(100),
            aborts: 1,
        },
    );
    let mut h = Harness::start(settings(Lanes::PerKey), processor, None);
    h.produce(&["slow", "tx", "a"]);
    until(|| h.ends_of("tx").len() == 1 && h.ends_of("a").len() == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = h.processor.log.lock().unwrap().clone();
    let proposals: Vec<&Proposal> = log
        .iter()
        .filter_map(|e| match e {
            Entry::Proposed(1, p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(proposals.len(), 2, "{log:?}");
    for proposal in proposals {
        assert_eq!(proposal.offset, 0);
        assert!(finished_above(&proposal.metadata).contains(&1));
    }
    // Between the withdrawn try and the next, anything stored does not
    // claim the record finished.
    let first = log.iter().position(|e| *e == Entry::Settled(1)).unwrap();
    let second = first
        + log[first..]
            .iter()
            .position(|e| matches!(e, Entry::Proposed(1, _)))
            .unwrap();
    for entry in &log[first..second] {
        if let Entry::Stored(_, m) | Entry::Committed(_, m) = entry {
            assert!(!finished_above(m).contains(&1), "{log:?}");
        }
    }
    assert_eq!(h.runs_of("tx").len(), 1, "one run, two tries inside it");
    h.stop().await;
}

/// Regression test: the commit made before a second transaction sent the
/// checkpoint stored before the first one again, which took back the first
/// dead-lettered record's finished mark (a restart dead-lettered it again).
#[tokio::test(start_paused = true)]
async fn consecutive_dead_letter_transactions_never_commit_an_older_checkpoint() {
    let processor = FakeProcessor::default();
    processor.set("slow", Endpoint::Failing { attempts: 100 });
    processor.set(
        "tx",
        Endpoint::Transactional {
            commit: Duration::from_secs(1),
            aborts: 0,
        },
    );
    let mut h = Harness::start(settings(Lanes::PerKey), processor, None);
    h.produce(&["slow", "a"]);
    until(|| h.ends_of("a").len() == 1).await;
    tokio::time::sleep(CHECKPOINT_INTERVAL).await;
    h.produce(&["tx", "tx"]);
    until(|| h.ends_of("tx").len() == 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = h.processor.log.lock().unwrap().clone();
    let first = log
        .iter()
        .position(|e| *e == Entry::Settled(2))
        .expect("the first transaction ended");
    for entry in &log[first..] {
        if let Entry::Stored(_, m)
        | Entry::Committed(_, m)
        | Entry::Proposed(_, Proposal { metadata: m, .. }) = entry
        {
            let finished = finished_above(m);
            assert!(
                finished.contains(&1) && finished.contains(&2),
                "{entry:?} after the first transaction: {log:?}"
            );
        }
    }
    assert!(
        log.iter().any(|e| matches!(e, Entry::Proposed(3, _))),
        "{log:?}"
    );
    h.stop().await;
}

/// Whether a checkpoint lists `offset` as finished: past it, or above.
fn lists_finished(offset: i64, committed: i64, metadata: &str) -> bool {
    committed > offset || finished_above(metadata).contains(&offset)
}

/// A tenant's record dead-lettered outside a transaction is committed as
/// finished before the tenant's next record starts: a replica that died
/// in between would leave the dead-lettered record to the next owner,
/// which would deliver it after the next one. In key order the other
/// tenants go on meanwhile; in partition order the partition waits.
#[tokio::test(start_paused = true)]
async fn a_dead_letter_is_committed_before_its_lanes_next_record_starts() {
    for lanes in [Lanes::PerKey, Lanes::PerPartition] {
        let processor = FakeProcessor::default();
        processor.set("bad", Endpoint::Failing { attempts: 1 });
        // A slow record of another tenant keeps the offset below the dead
        // letter, which is then committed in the metadata.
        processor.set("slow", Endpoint::Failing { attempts: 3 });
        let mut h = Harness::start(settings(lanes), processor, None);
        let (first, next) = match lanes {
            Lanes::PerKey => {
                h.produce(&["slow", "bad", "bad"]);
                (1, 2)
            }
            Lanes::PerPartition => {
                h.produce(&["bad", "a"]);
                (0, 1)
            }
        };
        until(|| h.processor.runs().iter().any(|r| r.offset == next)).await;
        let log = h.processor.log.lock().unwrap().clone();
        let started = log.iter().position(|e| *e == Entry::Started(next)).unwrap();
        assert!(
            log[..started].iter().any(|e| matches!(
                e,
                Entry::Committed(o, m) if lists_finished(first, *o, m)
            )),
            "{lanes:?}: {next} started before {first} was committed as finished: {log:?}"
        );
        h.stop().await;
    }
}

/// While the broker refuses the commit (the member lost the partition
/// while it was frozen), the tenant's next record never starts; other
/// tenants go on. Once a commit is taken, it starts.
#[tokio::test(start_paused = true)]
async fn a_refused_commit_keeps_the_dead_letters_tenant_waiting() {
    let processor = FakeProcessor::default();
    processor.set("bad", Endpoint::Failing { attempts: 1 });
    let mut h = Harness::start(settings(Lanes::PerKey), processor, None);
    h.refuse_commits.store(true, AtomicOrdering::SeqCst);
    h.produce(&["bad", "bad", "a"]);
    until(|| h.ends_of("bad").len() == 1 && h.ends_of("a").len() == 1).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(h.runs_of("bad").len(), 1, "bad's next record started");
    let refused = h
        .processor
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Entry::Refused(..)))
        .count();
    // Tried again with each tick, not in a busy loop.
    let ticks = (Duration::from_secs(10).as_millis() / CHECKPOINT_INTERVAL.as_millis()) as usize;
    assert!(
        (ticks / 2..=ticks + 2).contains(&refused),
        "{refused} refused commits in {ticks} ticks"
    );

    h.refuse_commits.store(false, AtomicOrdering::SeqCst);
    until(|| h.runs_of("bad").len() == 2).await;
    let (offset, metadata) = h.commits.lock().unwrap().last().cloned().unwrap();
    assert!(lists_finished(0, offset, &metadata));
    h.stop().await;
}
