//! Drains of pre-produced events: the throughput, isolation, slow-endpoint
//! and two-replica runs. Events are produced first, then the replicas
//! start and the receiver counts what arrives.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::floor::Floor;
use crate::receiver::{Behaviour, lock};
use crate::replica::Replica;
use crate::stats::{median, per_second};
use crate::{Bench, Order, Report, percent};

/// What one drain does.
pub struct Drain<'a> {
    /// Names the run's topics and its progress lines.
    pub label: &'a str,
    pub replicas: usize,
    pub order: Order,
    pub tenants: usize,
    pub events: u64,
    /// The tenant whose endpoint answers 503. The others are counted: in
    /// key order every other tenant, in partition order only the tenants
    /// on other partitions (the failing tenant's partition is blocked
    /// behind it by design).
    pub failing: Option<usize>,
    /// How long the receiver takes to answer each request.
    pub delay: Duration,
    /// Deliveries are counted for at most this long after the first one
    /// arrived; the rate is taken over what arrived by then.
    pub measure_for: Duration,
}

/// One drain's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRun {
    pub replicas: usize,
    pub order: Order,
    /// Deliveries counted (to the selected tenants).
    pub deliveries: u64,
    /// Events the selected tenants were sent.
    pub expected: u64,
    /// First to last arrival.
    pub seconds: f64,
    pub per_second: f64,
    pub cpu_us_per_delivery: f64,
    pub peak_rss_mib: f64,
    pub produce_seconds: f64,
    /// The most requests the receiver held at once.
    pub receiver_peak_in_flight: u64,
}

/// The runs' figures, each the median over the runs; `None` for no runs.
pub fn median_run(runs: &[DeliveryRun]) -> Option<DeliveryRun> {
    let mut run = runs.get(runs.len() / 2)?.clone();
    let rates: Vec<f64> = runs.iter().map(|r| r.per_second).collect();
    let cpus: Vec<f64> = runs.iter().map(|r| r.cpu_us_per_delivery).collect();
    run.per_second = median(&rates).unwrap_or(0.0);
    run.cpu_us_per_delivery = median(&cpus).unwrap_or(0.0);
    Some(run)
}

/// The throughput rows of each order, and key against partition order;
/// returns the median run of the default (key) order, or of the only order
/// run, which the isolation and two-replica runs are compared with.
pub fn report_throughput(
    report: &mut Report,
    throughput: &[(Order, Vec<DeliveryRun>)],
    floor: Option<&Floor>,
) -> Option<DeliveryRun> {
    let medians: Vec<(Order, DeliveryRun)> = throughput
        .iter()
        .filter_map(|(order, runs)| Some((*order, median_run(runs)?)))
        .collect();
    for (order, run) in &medians {
        let ratio = floor.map(|f| run.cpu_us_per_delivery / f.per_delivery_us());
        report.row(
            format!("throughput, 1 replica, {order} order"),
            format!("{:.0} deliveries/s", run.per_second),
        );
        report.row(
            format!("CPU per delivery, {order} order"),
            format!("{:.1} µs", run.cpu_us_per_delivery),
        );
        report.goal(
            format!("CPU per delivery / floor, {order} order"),
            ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            "≤ 2x",
            ratio.map(|r| r <= 2.0),
        );
        report.row(
            format!("replica peak RSS, {order} order"),
            format!("{:.0} MiB", run.peak_rss_mib),
        );
    }
    let of = |wanted: Order| {
        medians
            .iter()
            .find(|(order, _)| *order == wanted)
            .map(|(_, run)| run)
    };
    let key_to_partition = of(Order::Key)
        .zip(of(Order::Partition))
        .map(|(key, partition)| key.per_second / partition.per_second);
    if key_to_partition.is_some() {
        report.goal(
            "throughput, key / partition order",
            percent(key_to_partition),
            "≥ 90%",
            key_to_partition.map(|r| r >= 0.9),
        );
    }
    if !medians.is_empty() {
        let orders: serde_json::Map<String, Value> = throughput
            .iter()
            .filter_map(|(order, runs)| {
                let median = median_run(runs)?;
                let cpu_to_floor = floor.map(|f| median.cpu_us_per_delivery / f.per_delivery_us());
                Some((
                    order.to_string(),
                    json!({"median": median, "runs": runs, "cpu_to_floor": cpu_to_floor}),
                ))
            })
            .collect();
        let mut value = Value::Object(orders);
        value["key_to_partition"] = json!(key_to_partition);
        report.insert("throughput", value);
    }
    of(Order::Key)
        .or(medians.first().map(|(_, run)| run))
        .cloned()
}

/// The longest a drain may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(900);

impl Bench {
    /// Pre-produces the events, then lets the replicas drain them.
    pub async fn delivery_run(&self, drain: &Drain<'_>) -> Result<DeliveryRun, String> {
        let Drain {
            label,
            replicas,
            order,
            tenants,
            ..
        } = *drain;
        let setup = self.setup(label, tenants)?;
        let n = drain.events;
        eprintln!("{label}: producing {n} events");
        let produce_started = Instant::now();
        let selected = |tenant: usize| match (drain.failing, order) {
            (None, _) => true,
            (Some(failing), Order::Key) => tenant != failing,
            (Some(failing), Order::Partition) => {
                self.partition_of(tenant) != self.partition_of(failing)
            }
        };
        let expected = (0..n)
            .filter(|seq| selected((seq % tenants as u64) as usize))
            .count() as u64;
        self.produce_backlog(&setup.topics.events, tenants, n, &self.pad)?;
        let produce_seconds = produce_started.elapsed().as_secs_f64();

        let counts = self.receiver.counts.clone();
        counts.reset(Behaviour {
            failing: drain.failing,
            delay: drain.delay,
            ..Behaviour::default()
        });
        let mut running = Vec::new();
        for r in 0..replicas {
            running.push(
                self.start_replica(&setup, &format!("replica{r}"), &order.settings())
                    .map_err(|e| e.to_string())?,
            );
        }
        eprintln!("{label}: {replicas} replica(s) in {order} order delivering {expected} events");
        let started = Instant::now();
        let mut cpu_at_first: Option<Duration> = None;
        let mut last_report = Instant::now();
        loop {
            let delivered = counts.delivered_to(selected);
            if cpu_at_first.is_none() && counts.delivered.load(Relaxed) > 0 {
                cpu_at_first = Some(running.iter().map(|r| r.cpu(self.ticks)).sum());
            }
            let measured_enough =
                (*lock(&counts.first)).is_some_and(|first| first.elapsed() >= drain.measure_for);
            if delivered >= expected || measured_enough || started.elapsed() > DRAIN_TIMEOUT {
                break;
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!("{label}: {delivered}/{expected} delivered");
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let cpu_at_end: Duration = running.iter().map(|r| r.cpu(self.ticks)).sum();
        let deliveries = counts.delivered_to(selected);
        let all = counts.delivered.load(Relaxed);
        let window = match (*lock(&counts.first), *lock(&counts.last)) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        };
        let peak_rss_mib = running
            .iter()
            .map(Replica::peak_rss_mib)
            .fold(0.0, f64::max);
        for r in running {
            r.stop().await;
        }
        self.teardown(setup).await;
        if deliveries < expected {
            eprintln!(
                "{label}: {deliveries} of {expected} delivered in the {:?} measured",
                drain.measure_for.min(DRAIN_TIMEOUT)
            );
        }
        let cpu = cpu_at_end.saturating_sub(cpu_at_first.unwrap_or_default());
        let run = DeliveryRun {
            replicas,
            order,
            deliveries,
            expected,
            seconds: window.as_secs_f64(),
            per_second: per_second(deliveries, window),
            // Every 2xx the replica caused, uncounted tenants' too.
            cpu_us_per_delivery: cpu.as_secs_f64() * 1e6 / all.max(1) as f64,
            peak_rss_mib,
            produce_seconds,
            receiver_peak_in_flight: counts.peak_in_flight.load(Relaxed),
        };
        eprintln!("{label}: {run:?}");
        Ok(run)
    }

    /// 1,000 tenants whose endpoints take 100 ms: key order over
    /// `slow_events`, partition order over `slow_secs` (at ~120
    /// deliveries/s it would take minutes to drain as many). Returns the
    /// key-order run, if one ran.
    pub async fn slow_runs(&self, report: &mut Report) -> Result<Option<DeliveryRun>, String> {
        let delay = Duration::from_millis(self.args.slow_delay_ms);
        let measure_for = Duration::from_secs(self.args.slow_secs);
        let mut runs = Vec::new();
        for &order in &self.args.orders {
            let events = match order {
                Order::Key => self.args.slow_events,
                // Enough that the partitions do not run dry within the
                // measured time even at twice the expected rate.
                Order::Partition => {
                    (2 * u64::from(self.args.partitions) * measure_for.as_millis() as u64
                        / self.args.slow_delay_ms.max(1))
                    .min(self.args.slow_events)
                }
            };
            let label = format!("slow{}", &order.as_str()[..1]);
            let drain = Drain {
                tenants: self.args.slow_tenants,
                events,
                delay,
                measure_for,
                ..self.drain(&label, order)
            };
            runs.push(self.delivery_run(&drain).await?);
        }
        let what = format!(
            "{} ms endpoints, {} tenants",
            self.args.slow_delay_ms, self.args.slow_tenants
        );
        for run in &runs {
            let rate = format!(
                "{:.0} deliveries/s ({} in {:.1} s)",
                run.per_second, run.deliveries, run.seconds
            );
            if run.order == Order::Key {
                report.goal(
                    format!("{what}, key order"),
                    rate,
                    "≥ 2,000/s",
                    Some(run.per_second >= 2000.0),
                );
            } else {
                report.row(format!("{what}, {} order", run.order), rate);
            }
            report.row(
                format!("  CPU per delivery / peak RSS, {} order", run.order),
                format!(
                    "{:.1} µs / {:.0} MiB",
                    run.cpu_us_per_delivery, run.peak_rss_mib
                ),
            );
            report.row(
                format!("  receiver: most requests at once, {} order", run.order),
                run.receiver_peak_in_flight.to_string(),
            );
        }
        let rate_of = |wanted: Order| {
            runs.iter()
                .find(|r| r.order == wanted)
                .map(|r| r.per_second)
        };
        let ratio = rate_of(Order::Key)
            .zip(rate_of(Order::Partition))
            .map(|(k, p)| k / p);
        if let Some(ratio) = ratio {
            report.row(
                format!("{what}, key / partition order"),
                format!("{ratio:.1}x"),
            );
        }
        report.insert(
            "slow",
            json!({"tenants": self.args.slow_tenants, "delay_ms": self.args.slow_delay_ms,
                   "measured_at_most_seconds": measure_for.as_secs(), "runs": runs,
                   "key_to_partition": ratio}),
        );
        Ok(runs.into_iter().find(|r| r.order == Order::Key))
    }
}
