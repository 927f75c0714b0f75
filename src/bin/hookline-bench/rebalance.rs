//! The replica runs: throughput with 1, 2, 3 and 4 replicas in one group
//! (each a `hookline run` process of its own), and what a rebalance costs
//! in a running group of each size: a replica joining, one leaving cleanly
//! (SIGTERM) and one killed (`kill -9`), at a steady produce rate.
//!
//! Who owns which partition is read from the replicas' logs ("partition
//! assigned", "partitions revoked", with their timestamps); when a moved
//! partition delivers again is seen at the receiver (tenant *i* is on
//! partition *i* mod partitions); a redelivery is an event whose sequence
//! number arrives a second time.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::delivery::{DeliveryRun, Drain};
use crate::handover::{
    Assignment, Change, Recovery, assigned_at, changes, complete, moved, owned_at, recovery,
    redelivered, revoked_between,
};
use crate::kafka::BulkProducer;
use crate::receiver::{Behaviour, LatencySample, lock};
use crate::replica::Replica;
use crate::stats::{median, per_second};
use crate::{Bench, Order, Report, Setup, unix_nanos};

/// `kafka.drain_timeout` of the replicas: their default, or less when the
/// session timeout asks for it (it must be shorter).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// An assignment counts as settled once no replica's changed for this long.
const QUIET: Duration = Duration::from_secs(1);

/// How long a join or a clean leave may take to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// After a rebalance settled, how long before the next event: the
/// redeliveries it causes arrive meanwhile.
const AFTER_SETTLED: Duration = Duration::from_secs(2);

/// The longest a formed group's drain may take.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// How long the run waits for the last events once production stopped.
const FINAL_GRACE: Duration = Duration::from_secs(30);

/// What started a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The group's first members start (not reported: nothing moves).
    Start,
    /// A replica starts and joins the running group.
    Join,
    /// A replica gets SIGTERM: it drains, commits and leaves the group.
    Leave,
    /// A replica gets SIGKILL: the group notices after the session timeout.
    Kill,
}

impl Event {
    fn describe(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Join => "join",
            Event::Leave => "SIGTERM",
            Event::Kill => "kill -9",
        }
    }
}

/// A replica of a rebalance run, by the name its log is read under.
struct Member {
    name: String,
    replica: Replica,
}

/// Each live member's assignment changes so far.
fn logged_changes(live: &[Member]) -> Vec<(String, Vec<(u128, Change)>)> {
    live.iter()
        .map(|m| {
            let log = std::fs::read_to_string(&m.replica.log).unwrap_or_default();
            (m.name.clone(), changes(&log))
        })
        .collect()
}

fn assignment_at(logged: &[(String, Vec<(u128, Change)>)], at_ns: u128) -> Assignment {
    logged
        .iter()
        .map(|(name, changes)| (name.clone(), owned_at(changes, at_ns)))
        .collect()
}

/// The arrival times (Unix ns) of each partition's deliveries, sorted.
fn arrivals_by_partition(
    samples: &[LatencySample],
    partition_of: impl Fn(usize) -> i32,
) -> BTreeMap<i32, Vec<u128>> {
    let mut by_partition: BTreeMap<i32, Vec<u128>> = BTreeMap::new();
    for s in samples {
        by_partition
            .entry(partition_of(s.tenant))
            .or_default()
            .push(arrived_ns(s));
    }
    for arrivals in by_partition.values_mut() {
        arrivals.sort_unstable();
    }
    by_partition
}

fn arrived_ns(s: &LatencySample) -> u128 {
    s.produced_unix_ns + u128::from(s.latency_us) * 1000
}

/// What the bench saw of one rebalance while it happened.
struct Observed {
    event: Event,
    before: usize,
    after: usize,
    event_ns: u128,
    /// When the assignment was complete, quiet, and every moved partition
    /// delivering again; `None` when that did not happen in time.
    settled_ns: Option<u128>,
    moved: Vec<i32>,
    /// When each moved partition was assigned to its new owner.
    assigned_ns: BTreeMap<i32, u128>,
    /// Partitions revoked from replicas that were members before and after.
    revoked_from_staying: usize,
}

/// One rebalance's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Handover {
    pub event: Event,
    pub replicas_before: usize,
    pub replicas_after: usize,
    /// Partitions whose owner changed.
    pub moved: Vec<i32>,
    /// Partitions revoked from replicas that stayed in the group (with a
    /// cooperative strategy only those handed to a newcomer; with an eager
    /// one, all of them).
    pub revoked_from_staying: usize,
    /// From the event until the assignment was complete and quiet.
    pub settled_seconds: Option<f64>,
    /// From the event until the last moved partition was assigned to its
    /// new owner (the rest, until it delivered, is the new owner reading
    /// the committed progress and fetching).
    pub assigned_seconds: Option<f64>,
    /// From the event until every moved partition had delivered again;
    /// `None` when one had not by the end of the run.
    pub all_delivering_seconds: Option<f64>,
    pub median_delivering_seconds: Option<f64>,
    /// The longest a moved partition's tenants heard nothing.
    pub longest_pause_seconds: Option<f64>,
    /// Deliveries of events that had already arrived, from the event until
    /// the next one.
    pub redelivered: u64,
    pub recoveries: BTreeMap<i32, Recovery>,
}

impl Handover {
    fn summary(&self) -> String {
        let s = |v: Option<f64>| v.map_or("not in time".into(), |v| format!("{v:.1} s"));
        format!(
            "{} moved ({} revoked from others) / {} (pause ≤ {}) / {}",
            self.moved.len(),
            self.revoked_from_staying,
            s(self.all_delivering_seconds),
            s(self.longest_pause_seconds),
            self.redelivered
        )
    }
}

/// A drain by a group formed before the events were produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupDrain {
    pub run: DeliveryRun,
    /// From the start of the replicas until the group was formed.
    pub formed_seconds: f64,
    /// How many partitions each replica owned.
    pub partitions_per_replica: Vec<usize>,
}

/// A rebalance run: one group taken through a leave, a join and a kill.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RebalanceRun {
    /// The group's size once full.
    pub replicas: usize,
    pub rate: u64,
    pub session_timeout_seconds: f64,
    pub heartbeat_interval_seconds: f64,
    pub drain_timeout_seconds: f64,
    pub handovers: Vec<Handover>,
    pub produced: u64,
    /// Distinct events delivered by the end.
    pub delivered: u64,
    pub seconds: f64,
}

impl Bench {
    /// The two-replica drain as it always ran (both replicas started on
    /// the backlog), a drain by a formed group of each of
    /// `--replica-counts`, then a rebalance run for each group of two or
    /// more.
    pub async fn replica_runs(
        &self,
        report: &mut Report,
        one: Option<&DeliveryRun>,
    ) -> Result<(), String> {
        let cold = Drain {
            replicas: 2,
            ..self.drain("two", Order::Key)
        };
        let two = self.delivery_run(&cold).await?;
        let relative = one.map(|h| two.per_second / h.per_second);
        report.row(
            "throughput, 2 replicas (key order)",
            format!("{:.0} deliveries/s", two.per_second),
        );
        report.goal(
            "2 replicas / 1 replica",
            relative.map_or("-".into(), |r| format!("{r:.2}x")),
            "2 cores",
            None,
        );
        report.insert(
            "two_replicas",
            json!({"run": two, "relative_to_one": relative}),
        );

        let counts: Vec<usize> = self
            .args
            .replica_counts
            .iter()
            .map(|&n| usize::from(n))
            .collect();
        let mut groups = Vec::new();
        for &n in &counts {
            groups.push(self.group_drain(n).await?);
        }
        let mut rebalances = Vec::new();
        for &n in counts.iter().filter(|&&n| n >= 2) {
            rebalances.push(self.rebalance_run(n).await?);
        }

        let alone = groups.iter().find(|g| g.run.replicas == 1);
        for group in &groups {
            let n = group.run.replicas;
            let of_one = alone.filter(|_| n > 1).map_or(String::new(), |a| {
                format!(
                    "; {:.2}x / {:.2}x of one",
                    group.run.per_second / a.run.per_second,
                    group.run.cpu_us_per_delivery / a.run.cpu_us_per_delivery
                )
            });
            report.row(
                format!("formed group of {n}: throughput / CPU per delivery (summed)"),
                format!(
                    "{:.0} deliveries/s / {:.1} µs{of_one}",
                    group.run.per_second, group.run.cpu_us_per_delivery
                ),
            );
        }
        for run in &rebalances {
            for h in run.handovers.iter().filter(|h| h.event != Event::Start) {
                let what = match h.event {
                    Event::Kill => format!(
                        "kill -9 (session_timeout {} s)",
                        run.session_timeout_seconds
                    ),
                    event => event.describe().to_string(),
                };
                report.row(
                    format!(
                        "rebalance {}→{}, {what}: moved / all delivering after / redelivered",
                        h.replicas_before, h.replicas_after
                    ),
                    h.summary(),
                );
            }
        }
        report.insert(
            "replicas",
            json!({"events": self.args.replica_events, "groups": groups,
                   "rebalance": rebalances, "rebalance_rate": self.args.rebalance_rate,
                   "partitions": self.args.partitions}),
        );
        Ok(())
    }

    /// `n` replicas form their group on empty topics; then `--replica-events`
    /// are produced and the group drains them. Rate and CPU (summed over
    /// the replicas) from the first arrival to the last, so the group's
    /// forming is not in the figures.
    async fn group_drain(&self, n: usize) -> Result<GroupDrain, String> {
        let label = format!("group{n}");
        let setup = self.setup(&label, self.args.tenants)?;
        let counts = self.receiver.counts.clone();
        counts.reset(Behaviour::default());
        let mut live = Vec::new();
        let formed = self.form_group(&setup, n, &mut live).await;
        let events = self.args.replica_events;
        let drained = match formed {
            Ok(formed) => {
                eprintln!("{label}: formed in {formed:.1} s; draining {events} events");
                let produce_started = Instant::now();
                let produced = tokio::task::block_in_place(|| {
                    self.produce_backlog(&setup.topics.events, self.args.tenants, events, &self.pad)
                });
                let produce_seconds = produce_started.elapsed().as_secs_f64();
                let mut cpu_at_first: Option<Duration> = None;
                let started = Instant::now();
                while produced.is_ok()
                    && counts.delivered.load(Relaxed) < events
                    && started.elapsed() < DRAIN_LIMIT
                {
                    if cpu_at_first.is_none() && counts.delivered.load(Relaxed) > 0 {
                        cpu_at_first = Some(live.iter().map(|m| m.replica.cpu(self.ticks)).sum());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let cpu_at_end: Duration = live.iter().map(|m| m.replica.cpu(self.ticks)).sum();
                let peak_rss_mib = live
                    .iter()
                    .map(|m| m.replica.peak_rss_mib())
                    .fold(0.0, f64::max);
                let partitions: Vec<usize> = assignment_at(&logged_changes(&live), unix_nanos())
                    .values()
                    .map(|owned| owned.len())
                    .collect();
                produced.map(|()| {
                    (
                        formed,
                        produce_seconds,
                        cpu_at_first,
                        cpu_at_end,
                        peak_rss_mib,
                        partitions,
                    )
                })
            }
            Err(e) => Err(e),
        };
        for member in live {
            member.replica.stop().await;
        }
        self.teardown(setup).await;
        let (formed_seconds, produce_seconds, cpu_at_first, cpu_at_end, peak_rss_mib, partitions) =
            drained?;
        let deliveries = counts.delivered.load(Relaxed);
        let window = match (*lock(&counts.first), *lock(&counts.last)) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        };
        let cpu = cpu_at_end.saturating_sub(cpu_at_first.unwrap_or_default());
        let group = GroupDrain {
            run: DeliveryRun {
                replicas: n,
                order: Order::Key,
                deliveries,
                expected: events,
                seconds: window.as_secs_f64(),
                per_second: per_second(deliveries, window),
                cpu_us_per_delivery: cpu.as_secs_f64() * 1e6 / deliveries.max(1) as f64,
                peak_rss_mib,
                produce_seconds,
                receiver_peak_in_flight: counts.peak_in_flight.load(Relaxed),
            },
            formed_seconds,
            partitions_per_replica: partitions,
        };
        eprintln!("{label}: {group:?}");
        Ok(group)
    }

    /// Starts `n` replicas (into `live`) and waits until their group is
    /// formed: each has partitions (while there are enough), every
    /// partition has one owner, and nothing changed for [`QUIET`]. Returns
    /// the seconds that took.
    async fn form_group(
        &self,
        setup: &Setup,
        n: usize,
        live: &mut Vec<Member>,
    ) -> Result<f64, String> {
        let started = Instant::now();
        for i in 0..n {
            let name = format!("r{i}");
            let replica = self
                .start_replica(setup, &name, &Order::Key.settings())
                .map_err(|e| e.to_string())?;
            live.push(Member { name, replica });
        }
        for member in live.iter_mut() {
            member.replica.wait_ready(SETTLE_TIMEOUT).await?;
        }
        let partitions = i32::try_from(self.args.partitions).unwrap_or(i32::MAX);
        while started.elapsed() < SETTLE_TIMEOUT {
            let now = unix_nanos();
            let logged = logged_changes(live);
            let assignment = assignment_at(&logged, now);
            let last_change = logged
                .iter()
                .filter_map(|(_, changes)| changes.last().map(|(at, _)| *at))
                .max()
                .unwrap_or(0);
            let everyone = assignment.len() == n
                && assignment
                    .values()
                    .all(|owned| !owned.is_empty() || n > self.args.partitions as usize);
            if complete(&assignment, partitions)
                && everyone
                && now.saturating_sub(last_change) >= QUIET.as_nanos()
            {
                return Ok(started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "a group of {n} did not form within {SETTLE_TIMEOUT:?}"
        ))
    }

    /// A group of `n` replicas at a steady rate: they start, one leaves
    /// (SIGTERM), one joins, one is killed (SIGKILL).
    async fn rebalance_run(&self, n: usize) -> Result<RebalanceRun, String> {
        let label = format!("reb{n}");
        let setup = self.setup(&label, self.args.tenants)?;
        let session_timeout = self.args.session_timeout;
        let heartbeat = self.args.heartbeat_interval;
        let drain_timeout = DRAIN_TIMEOUT.min(session_timeout * 2 / 3);
        // The replicas read `config/hookline.toml` in their directory.
        let config = setup.dir.join("config");
        std::fs::create_dir_all(&config).map_err(|e| e.to_string())?;
        std::fs::write(
            config.join("hookline.toml"),
            format!(
                "[kafka]\nsession_timeout = \"{}ms\"\ndrain_timeout = \"{}ms\"\n\n\
                 [kafka.properties]\n\"heartbeat.interval.ms\" = \"{}\"\n",
                session_timeout.as_millis(),
                drain_timeout.as_millis(),
                heartbeat.as_millis()
            ),
        )
        .map_err(|e| e.to_string())?;
        let counts = self.receiver.counts.clone();
        counts.reset(Behaviour {
            record_latency: true,
            ..Behaviour::default()
        });
        let rate = self.args.rebalance_rate;
        eprintln!(
            "{label}: {rate} events/s; {n} replicas, then SIGTERM, join, kill -9 \
             (session_timeout {session_timeout:?}, heartbeat.interval.ms {})",
            heartbeat.as_millis()
        );
        let started = Instant::now();
        let stop = CancellationToken::new();
        let mut live = Vec::new();
        let (produced, observed) = tokio::join!(
            self.produce_until(&setup.topics.events, rate, &stop),
            async {
                let observed = self
                    .handovers(&setup, n, (session_timeout, heartbeat), &mut live)
                    .await;
                stop.cancel();
                observed
            }
        );
        if let Ok(produced) = produced {
            let deadline = Instant::now() + FINAL_GRACE;
            while distinct_delivered(&lock(&counts.latencies)) < produced
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let end_ns = unix_nanos();
        for member in live {
            member.replica.stop().await;
        }
        self.teardown(setup).await;
        let (produced, observed) = (produced?, observed?);

        let samples = std::mem::take(&mut *lock(&counts.latencies));
        let arrivals = arrivals_by_partition(&samples, |t| self.partition_of(t));
        let sequenced: Vec<(u64, u128)> = samples.iter().map(|s| (s.seq, arrived_ns(s))).collect();
        let ends: Vec<u128> = observed
            .iter()
            .skip(1)
            .map(|o| o.event_ns)
            .chain([end_ns])
            .collect();
        let seconds = |ns: u128| ns as f64 / 1e9;
        let handovers = observed
            .iter()
            .zip(ends)
            .map(|(o, until_ns)| {
                let recoveries: BTreeMap<i32, Recovery> = o
                    .moved
                    .iter()
                    .filter_map(|p| {
                        let assigned = *o.assigned_ns.get(p).unwrap_or(&o.event_ns);
                        let arrivals = arrivals.get(p).map_or(&[][..], Vec::as_slice);
                        Some((*p, recovery(arrivals, assigned, o.event_ns)?))
                    })
                    .collect();
                let after: Vec<f64> = recoveries
                    .values()
                    .map(|r| r.after_event_us as f64 / 1e6)
                    .collect();
                let all = (recoveries.len() == o.moved.len())
                    .then(|| after.iter().copied().fold(0.0, f64::max));
                Handover {
                    event: o.event,
                    replicas_before: o.before,
                    replicas_after: o.after,
                    moved: o.moved.clone(),
                    revoked_from_staying: o.revoked_from_staying,
                    settled_seconds: o.settled_ns.map(|at| seconds(at - o.event_ns)),
                    assigned_seconds: (o.assigned_ns.len() == o.moved.len())
                        .then(|| {
                            o.assigned_ns
                                .values()
                                .max()
                                .map(|at| seconds(at - o.event_ns))
                        })
                        .flatten(),
                    all_delivering_seconds: all,
                    median_delivering_seconds: median(&after),
                    longest_pause_seconds: recoveries
                        .values()
                        .map(|r| r.pause_us as f64 / 1e6)
                        .reduce(f64::max),
                    redelivered: redelivered(&sequenced, o.event_ns, until_ns),
                    recoveries,
                }
            })
            .collect::<Vec<_>>();
        let run = RebalanceRun {
            replicas: n,
            rate,
            session_timeout_seconds: session_timeout.as_secs_f64(),
            heartbeat_interval_seconds: heartbeat.as_secs_f64(),
            drain_timeout_seconds: drain_timeout.as_secs_f64(),
            handovers,
            produced,
            delivered: distinct_delivered(&samples),
            seconds: started.elapsed().as_secs_f64(),
        };
        for h in &run.handovers {
            eprintln!(
                "{label}: {} {}→{}: {} (settled {:?} s)",
                h.event.describe(),
                h.replicas_before,
                h.replicas_after,
                h.summary(),
                h.settled_seconds
            );
        }
        if run.delivered < run.produced {
            eprintln!(
                "{label}: {} of {} events delivered by the end",
                run.delivered, run.produced
            );
        }
        Ok(run)
    }

    /// Takes the group through its rebalances; `live` holds the members
    /// still running, for the caller to stop.
    async fn handovers(
        &self,
        setup: &Setup,
        n: usize,
        (session_timeout, heartbeat): (Duration, Duration),
        live: &mut Vec<Member>,
    ) -> Result<Vec<Observed>, String> {
        let mut started = 0;
        let mut start = |live: &mut Vec<Member>| -> Result<String, String> {
            let name = format!("r{started}");
            started += 1;
            let replica = self
                .start_replica(setup, &name, &Order::Key.settings())
                .map_err(|e| e.to_string())?;
            live.push(Member {
                name: name.clone(),
                replica,
            });
            Ok(name)
        };
        let mut observed = Vec::new();

        let event_ns = unix_nanos();
        for _ in 0..n {
            start(live)?;
        }
        for member in live.iter_mut() {
            member.replica.wait_ready(SETTLE_TIMEOUT).await?;
        }
        let before = Assignment::new();
        let timeout = |event| match event {
            Event::Kill => session_timeout + SETTLE_TIMEOUT,
            _ => SETTLE_TIMEOUT,
        };
        let start_event = (Event::Start, event_ns, timeout(Event::Start));
        observed.push(self.settle(live, &before, start_event, None).await);

        for event in [Event::Leave, Event::Join, Event::Kill] {
            // Members heartbeat every `heartbeat` from their last join, and
            // hear of a rebalance with the next heartbeat. Settling takes a
            // nearly fixed time, so without this pause every event would
            // fall at the same point of that cycle.
            tokio::time::sleep(phase(heartbeat)).await;
            let before = assignment_at(&logged_changes(live), unix_nanos());
            let event_ns = unix_nanos();
            let newcomer = match event {
                Event::Join => Some(start(live)?),
                Event::Leave => {
                    live.remove(0).replica.stop().await;
                    None
                }
                Event::Kill => {
                    let mut member = live.remove(0);
                    let _ = member.replica.child.kill();
                    let _ = member.replica.child.wait();
                    None
                }
                Event::Start => None,
            };
            let settled = self
                .settle(
                    live,
                    &before,
                    (event, event_ns, timeout(event)),
                    newcomer.as_deref(),
                )
                .await;
            observed.push(settled);
        }
        Ok(observed)
    }

    /// After `event` at `event_ns`, waits (at most `timeout`) until the
    /// assignment of the `live` members is complete, has
    /// not changed for [`QUIET`], gives the newcomer partitions, and every
    /// partition that moved since `before` has delivered again; then
    /// [`AFTER_SETTLED`] more.
    async fn settle(
        &self,
        live: &[Member],
        before: &Assignment,
        (event, event_ns, timeout): (Event, u128, Duration),
        newcomer: Option<&str>,
    ) -> Observed {
        let deadline = Instant::now() + timeout;
        let partitions = i32::try_from(self.args.partitions).unwrap_or(i32::MAX);
        let counts = &self.receiver.counts;
        loop {
            let now = unix_nanos();
            let logged = logged_changes(live);
            let after = assignment_at(&logged, now);
            let moved = moved(before, &after);
            let assigned_ns: BTreeMap<i32, u128> = moved
                .iter()
                .filter_map(|&p| {
                    let (_, changes) = logged.iter().find(|(name, _)| {
                        after.get(name).is_some_and(|owned| owned.contains(&p))
                    })?;
                    Some((p, assigned_at(changes, p, event_ns, now)?))
                })
                .collect();
            let last_change = logged
                .iter()
                .filter_map(|(_, changes)| changes.last().map(|(at, _)| *at))
                .max()
                .unwrap_or(0);
            let joined = newcomer.is_none_or(|name| after.get(name).is_some_and(|p| !p.is_empty()))
                && (live.len() > self.args.partitions as usize
                    || after.values().all(|owned| !owned.is_empty()));
            let quiet = now.saturating_sub(last_change) >= QUIET.as_nanos();
            let settled = complete(&after, partitions) && joined && quiet && {
                let arrivals =
                    arrivals_by_partition(&lock(&counts.latencies), |t| self.partition_of(t));
                moved.iter().all(|p| {
                    let assigned = *assigned_ns.get(p).unwrap_or(&event_ns);
                    let arrivals = arrivals.get(p).map_or(&[][..], Vec::as_slice);
                    recovery(arrivals, assigned, event_ns).is_some()
                })
            };
            if settled || Instant::now() >= deadline {
                let staying: Vec<&String> =
                    before.keys().filter(|m| after.contains_key(*m)).collect();
                let revoked_from_staying = logged
                    .iter()
                    .filter(|(name, _)| staying.contains(&name))
                    .map(|(_, changes)| revoked_between(changes, event_ns, now))
                    .sum();
                if !settled {
                    eprintln!(
                        "{} did not settle within {timeout:?}: {after:?}",
                        event.describe()
                    );
                }
                tokio::time::sleep(AFTER_SETTLED).await;
                return Observed {
                    event,
                    before: before.len(),
                    after: after.len(),
                    event_ns,
                    settled_ns: settled.then_some(last_change.max(event_ns)),
                    moved: moved.into_iter().collect(),
                    assigned_ns,
                    revoked_from_staying,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Produces `rate` 1 KiB events a second to the tenants round-robin
    /// until `stop`; returns how many.
    async fn produce_until(
        &self,
        topic: &str,
        rate: u64,
        stop: &CancellationToken,
    ) -> Result<u64, String> {
        let producer = BulkProducer::new(0).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut sent = 0u64;
        while !stop.is_cancelled() {
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                self.send_event(
                    &producer,
                    topic,
                    self.args.tenants,
                    sent,
                    unix_nanos(),
                    &self.pad,
                )?;
                sent += 1;
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        producer.flush().map_err(|e| e.to_string())?;
        Ok(sent)
    }
}

/// A pause shorter than `cycle`, different each time (the clock's
/// nanoseconds are as good as random for this).
fn phase(cycle: Duration) -> Duration {
    let nanos = cycle.as_nanos().max(1);
    Duration::from_nanos(u64::try_from(unix_nanos() % nanos).unwrap_or(0))
}

/// Distinct events among the deliveries.
fn distinct_delivered(samples: &[LatencySample]) -> u64 {
    samples
        .iter()
        .map(|s| s.seq)
        .collect::<std::collections::HashSet<_>>()
        .len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64, tenant: usize, produced_unix_ns: u128, latency_us: u64) -> LatencySample {
        LatencySample {
            produced_unix_ns,
            seq,
            tenant,
            latency_us,
        }
    }

    #[test]
    fn arrivals_are_grouped_by_the_tenants_partition_and_sorted() {
        let samples = [
            sample(0, 0, 5_000, 2),
            sample(1, 1, 1_000, 1),
            sample(2, 2, 1_000, 1),
            sample(3, 3, 1_000, 3),
        ];
        let by_partition = arrivals_by_partition(&samples, |t| (t % 2) as i32);
        assert_eq!(
            by_partition,
            BTreeMap::from([(0, vec![2_000, 7_000]), (1, vec![2_000, 4_000])])
        );
    }

    #[test]
    fn distinct_deliveries_count_each_event_once() {
        let samples = [sample(0, 0, 0, 1), sample(1, 1, 0, 1), sample(0, 0, 0, 9)];
        assert_eq!(distinct_delivered(&samples), 2);
        assert_eq!(distinct_delivered(&[]), 0);
    }
}
