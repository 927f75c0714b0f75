//! Runs at a steady produce rate against a replica that is already ready:
//! `latency` (every tenant healthy) and `hol`, head of line (one tenant's
//! endpoint answering 503, the latency of its partition-mates against
//! that of the other partitions' tenants).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::kafka::BulkProducer;
use crate::receiver::{Behaviour, LatencySample, lock};
use crate::replica::Replica;
use crate::stats::{
    Quantile, first_reached, human_us, percentile, seconds_reached, wait_quantile, waits,
};
use crate::{Bench, Order, Report, unix_nanos};

/// Seconds of a steady run's unmeasured warm-up.
const WARMUP_SECS: u64 = 3;

/// How long the latency run waits for its last events after producing.
const LATENCY_GRACE: Duration = Duration::from_secs(60);

/// How long the head-of-line run waits for its healthy tenants' last
/// events after producing, at most (and at most its measured time); what
/// has not arrived by then counts as having waited at least until then.
const HOL_GRACE: Duration = Duration::from_secs(5);

/// The tenant whose endpoint fails in the head-of-line run.
const HOL_FAILING: usize = 0;

/// The replica's gauges sampled during the head-of-line run.
const WINDOW_FULL: &str = "hookline_partitions_window_full";
const SUSPENDED: &str = "hookline_tenants_suspended";

/// The replica's retry and window settings in the head-of-line run (its
/// defaults), stated with the figures.
const HOL_POLICY: &str = "defaults: initial_backoff 1s doubling to max_backoff 60s, \
     max_attempts 8, suspend_after 3, partition_window 1000";

/// One event produced after the warm-up.
#[derive(Debug, Clone, Copy)]
struct Produced {
    seq: u64,
    tenant: usize,
    at_ns: u128,
}

/// What a steady run produced.
struct Steady {
    /// Events produced, warm-up included.
    total: u64,
    /// The events produced after the warm-up.
    measured: Vec<Produced>,
    /// When the measured events began, in Unix nanoseconds.
    from_ns: u128,
    /// The replica's CPU time then.
    cpu_at_from: Duration,
}

/// The latency run's figures.
pub struct LatencyRun {
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    p999_us: Option<u64>,
    delivered: u64,
    cpu_us_per_delivery: f64,
    seconds: u64,
}

impl LatencyRun {
    pub fn report(&self, report: &mut Report, rate: u64) {
        let ms = |us: Option<u64>| us.map_or("-".into(), human_us);
        report.row(format!("latency p50 at {rate}/s"), ms(self.p50_us));
        report.goal(
            format!("latency p99 at {rate}/s"),
            ms(self.p99_us),
            "≤ 50 ms",
            self.p99_us.map(|us| us <= 50_000),
        );
        report.row(format!("latency p99.9 at {rate}/s"), ms(self.p999_us));
        report.insert(
            "latency",
            json!({"rate": rate, "seconds": self.seconds,
                   "warmup_seconds": WARMUP_SECS, "delivered": self.delivered,
                   "p50_us": self.p50_us, "p99_us": self.p99_us, "p999_us": self.p999_us,
                   "cpu_us_per_delivery": self.cpu_us_per_delivery}),
        );
    }
}

/// The waits of one group of tenants in the head-of-line run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Group {
    tenants: usize,
    /// Events produced after the warm-up.
    produced: usize,
    /// Of which arrived before the run ended.
    delivered: usize,
    p50: Option<Quantile>,
    p99: Option<Quantile>,
}

impl Group {
    fn p50_p99(&self) -> String {
        let show = |q: Option<Quantile>| {
            q.map_or("-".into(), |q| {
                format!("{}{}", if q.at_least { "≥ " } else { "" }, human_us(q.us))
            })
        };
        format!("{} / {}", show(self.p50), show(self.p99))
    }
}

/// The head-of-line run's figures in one order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HolRun {
    order: Order,
    rate: u64,
    seconds: u64,
    /// The failing tenant's partition-mates (healthy).
    mates: Group,
    /// The tenants on every other partition.
    others: Group,
    /// 503 answers to the failing tenant.
    refused: u64,
    /// Seconds after the first event when a partition's window was first
    /// full, and for how long one was in all.
    window_full_at: Option<f64>,
    window_full_seconds: f64,
    /// Seconds after the first event when a tenant was first suspended.
    suspended_at: Option<f64>,
    /// How long the healthy tenants' last events were waited for.
    grace_seconds: u64,
    /// The sampled gauges: seconds, windows full, tenants suspended.
    gauges: Vec<(f64, f64, f64)>,
}

impl HolRun {
    /// The mates' p99 over the others'; whether that is exact.
    fn p99_ratio(&self) -> Option<(f64, bool)> {
        let mates = self.mates.p99?;
        let others = self.others.p99?;
        Some((
            mates.us as f64 / others.us.max(1) as f64,
            !mates.at_least && !others.at_least,
        ))
    }

    pub fn report(runs: &[HolRun], report: &mut Report) {
        for run in runs {
            let order = run.order;
            report.row(
                format!("head of line, {order} order: partition-mates p50 / p99"),
                run.mates.p50_p99(),
            );
            report.row(
                format!("head of line, {order} order: other partitions p50 / p99"),
                run.others.p50_p99(),
            );
            let ratio = run.p99_ratio();
            let shown = ratio.map_or("-".into(), |(r, exact)| {
                format!("{}{r:.1}x", if exact { "" } else { "≥ " })
            });
            let measure = format!("head of line, {order} order: mates' p99 / others' p99");
            if order == Order::Key {
                report.goal(measure, shown, "≤ 2x", ratio.map(|(r, e)| e && r <= 2.0));
            } else {
                report.row(measure, shown);
            }
            let at = |s: Option<f64>| s.map_or("never".into(), |s| format!("{s:.1} s"));
            let full = match run.window_full_at {
                Some(_) => format!(
                    "{} (for {:.1} s)",
                    at(run.window_full_at),
                    run.window_full_seconds
                ),
                None => at(None),
            };
            report.row(
                format!("  {order} order: a window full at / tenant suspended at"),
                format!("{full} / {}", at(run.suspended_at)),
            );
        }
        if let Some(run) = runs.first() {
            report.insert(
                "hol",
                json!({"rate": run.rate, "seconds": run.seconds, "warmup_seconds": WARMUP_SECS,
                       "failing_tenant": HOL_FAILING,
                       "policy": HOL_POLICY, "runs": runs}),
            );
        }
    }
}

impl Bench {
    /// Produces `rate` 1 KiB events a second to `tenants` round-robin, for
    /// a warm-up and then `secs` (linger 0). The warm-up is there because
    /// the producer's first sends wait for its metadata and connections,
    /// the replica's for its first fetches and its connections to the
    /// receiver; only events produced after it are measured.
    async fn produce_steady(
        &self,
        topic: &str,
        rate: u64,
        secs: u64,
        replica: &Replica,
    ) -> Result<Steady, String> {
        let tenants = self.args.tenants;
        let producer = BulkProducer::new(0).map_err(|e| e.to_string())?;
        let warmup = rate * WARMUP_SECS;
        let total = warmup + rate * secs;
        let mut steady = Steady {
            total,
            measured: Vec::with_capacity(usize::try_from(rate * secs).unwrap_or(0)),
            from_ns: 0,
            cpu_at_from: replica.cpu(self.ticks),
        };
        let started = Instant::now();
        let tick = Duration::from_millis(10);
        let mut sent = 0u64;
        while sent < total {
            // Catch up to the schedule, so a late tick does not lower the rate.
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due.min(total) {
                let at_ns = unix_nanos();
                if sent == warmup {
                    steady.from_ns = at_ns;
                    steady.cpu_at_from = replica.cpu(self.ticks);
                }
                let tenant = self.send_event(&producer, topic, tenants, sent, at_ns, &self.pad)?;
                if sent >= warmup {
                    steady.measured.push(Produced {
                        seq: sent,
                        tenant,
                        at_ns,
                    });
                }
                sent += 1;
            }
            tokio::time::sleep(tick).await;
        }
        producer.flush().map_err(|e| e.to_string())?;
        Ok(steady)
    }

    /// A steady rate for `latency_secs` against a ready replica; latency is
    /// produce time (in the event id) to arrival.
    pub async fn latency_run(&self) -> Result<LatencyRun, String> {
        let setup = self.setup("lat", self.args.tenants)?;
        let counts = self.receiver.counts.clone();
        counts.reset(Behaviour {
            record_latency: true,
            ..Behaviour::default()
        });
        let replica = self.ready_replica(&setup, &[]).await?;
        let (rate, secs) = (self.args.rate, self.args.latency_secs);
        eprintln!("latency: {rate} events/s for {secs} s (after {WARMUP_SECS} s of warm-up)");
        let steady = self
            .produce_steady(&setup.topics.events, rate, secs, &replica)
            .await;
        if let Ok(steady) = &steady {
            let deadline = Instant::now() + LATENCY_GRACE;
            while counts.delivered.load(Relaxed) < steady.total && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let cpu = replica.cpu(self.ticks);
        replica.stop().await;
        self.teardown(setup).await;
        let steady = steady?;
        let cpu = cpu.saturating_sub(steady.cpu_at_from);
        let samples: Vec<LatencySample> = std::mem::take(&mut *lock(&counts.latencies))
            .into_iter()
            .filter(|s| s.produced_unix_ns >= steady.from_ns)
            .collect();
        self.write_samples("latency.csv", &samples);
        let mut latencies: Vec<u64> = samples.iter().map(|s| s.latency_us).collect();
        latencies.sort_unstable();
        let delivered = latencies.len() as u64;
        Ok(LatencyRun {
            p50_us: percentile(&latencies, 0.50),
            p99_us: percentile(&latencies, 0.99),
            p999_us: percentile(&latencies, 0.999),
            delivered,
            cpu_us_per_delivery: cpu.as_secs_f64() * 1e6 / delivered.max(1) as f64,
            seconds: secs,
        })
    }

    /// Head of line in `order`: `hol_rate` events a second to `tenants`,
    /// tenant 0's endpoint answering 503 throughout, for a warm-up and
    /// `hol_secs`; then up to [`HOL_GRACE`] for the healthy tenants' last
    /// events (at most `hol_secs`). Each measured event's wait is its
    /// latency, or for one that had not arrived by then, the time from its
    /// production until then.
    pub async fn hol_run(&self, order: Order) -> Result<HolRun, String> {
        let tenants = self.args.tenants;
        let label = format!("hol{}", &order.to_string()[..1]);
        let setup = self.setup(&label, tenants)?;
        let counts = self.receiver.counts.clone();
        counts.reset(Behaviour {
            failing: Some(HOL_FAILING),
            delay: Duration::ZERO,
            record_latency: true,
            ..Behaviour::default()
        });
        let replica = self.ready_replica(&setup, &order.settings()).await?;
        let (rate, secs) = (self.args.hol_rate, self.args.hol_secs);
        eprintln!(
            "{label}: {rate} events/s for {secs} s (after {WARMUP_SECS} s of warm-up), \
             tenant {HOL_FAILING} answering 503, {order} order"
        );
        let healthy = |tenant: usize| tenant != HOL_FAILING;
        let grace = HOL_GRACE.min(Duration::from_secs(secs));
        let sampling = CancellationToken::new();
        let started = Instant::now();
        let (steady, gauges) = tokio::join!(
            async {
                let steady = self
                    .produce_steady(&setup.topics.events, rate, secs, &replica)
                    .await;
                if let Ok(steady) = &steady {
                    let expected = (0..steady.total)
                        .filter(|seq| healthy((seq % tenants as u64) as usize))
                        .count() as u64;
                    let deadline = Instant::now() + grace;
                    while counts.delivered_to(healthy) < expected && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                sampling.cancel();
                steady
            },
            replica.watch(&[WINDOW_FULL, SUSPENDED], started, &sampling),
        );
        let end_ns = unix_nanos();
        replica.stop().await;
        self.teardown(setup).await;
        let steady = steady?;
        let samples: Vec<LatencySample> = std::mem::take(&mut *lock(&counts.latencies))
            .into_iter()
            .filter(|s| s.produced_unix_ns >= steady.from_ns)
            .collect();
        self.write_samples(&format!("hol-{order}.csv"), &samples);
        let mut arrived: HashMap<u64, u64> = HashMap::new();
        for s in &samples {
            arrived.entry(s.seq).or_insert(s.latency_us);
        }
        let failing_partition = self.partition_of(HOL_FAILING);
        let group = |member: &dyn Fn(usize) -> bool| {
            let produced: Vec<(u64, u128)> = steady
                .measured
                .iter()
                .filter(|p| member(p.tenant))
                .map(|p| (p.seq, p.at_ns))
                .collect();
            let waits = waits(&produced, &arrived, end_ns);
            Group {
                tenants: (0..tenants).filter(|&t| member(t)).count(),
                produced: waits.len(),
                delivered: waits.iter().filter(|w| w.delivered).count(),
                p50: wait_quantile(&waits, 0.50),
                p99: wait_quantile(&waits, 0.99),
            }
        };
        let mates = group(&|t| t != HOL_FAILING && self.partition_of(t) == failing_partition);
        let others = group(&|t| self.partition_of(t) != failing_partition);
        let gauge = |i: usize| -> Vec<(f64, f64)> {
            gauges.iter().map(|(t, values)| (*t, values[i])).collect()
        };
        let (window_full, suspended) = (gauge(0), gauge(1));
        let run = HolRun {
            order,
            rate,
            seconds: secs,
            mates,
            others,
            refused: counts.refused.load(Relaxed),
            grace_seconds: grace.as_secs(),
            window_full_at: first_reached(&window_full, 1.0),
            window_full_seconds: seconds_reached(&window_full, 1.0),
            suspended_at: first_reached(&suspended, 1.0),
            gauges: gauges
                .iter()
                .map(|(t, values)| (*t, values[0], values[1]))
                .collect(),
        };
        eprintln!(
            "{label}: mates {} ({} of {} arrived), others {} ({} of {})",
            run.mates.p50_p99(),
            run.mates.delivered,
            run.mates.produced,
            run.others.p50_p99(),
            run.others.delivered,
            run.others.produced
        );
        Ok(run)
    }

    /// The samples of a steady run as CSV next to the JSON results, for
    /// looking at the tail: when it happened, on which partition.
    fn write_samples(&self, name: &str, samples: &[LatencySample]) {
        let path = self.args.out.with_file_name(name);
        let first = samples
            .iter()
            .map(|s| s.produced_unix_ns)
            .min()
            .unwrap_or(0);
        let mut text = String::from("produced_ms,partition,tenant,latency_us\n");
        for s in samples {
            let _ = writeln!(
                text,
                "{:.3},{},{},{}",
                (s.produced_unix_ns - first) as f64 / 1e6,
                self.partition_of(s.tenant),
                s.tenant,
                s.latency_us
            );
        }
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        match std::fs::write(&path, text) {
            Ok(()) => eprintln!("samples written to {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}
