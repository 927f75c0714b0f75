//! Runs at a steady produce rate against a replica that is already ready:
//! `latency` (every tenant healthy).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::kafka::BulkProducer;
use crate::receiver::{Behaviour, LatencySample, lock};
use crate::replica::Replica;
use crate::stats::{human_us, percentile};
use crate::{Bench, Report, unix_nanos};

/// Seconds of a steady run's unmeasured warm-up.
const WARMUP_SECS: u64 = 3;

/// How long the latency run waits for its last events after producing.
const LATENCY_GRACE: Duration = Duration::from_secs(60);

/// What a steady run produced.
struct Steady {
    /// Events produced, warm-up included.
    total: u64,
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
                self.send_event(&producer, topic, tenants, sent, at_ns, &self.pad)?;
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
