//! The cost of a dead letter with `delivery.transactional_dlq` off and on:
//! every endpoint answers 410, so each pre-produced event gets one attempt
//! and is dead-lettered at once. Dead letters per second and replica CPU
//! per dead letter, read from the replica's `hookline_dead_letters_total`
//! and `/proc`, from the first dead letter to the last.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::receiver::Behaviour;
use crate::stats::{median, per_second};
use crate::{Bench, Report};

/// The series the replica counts these dead letters in.
const REJECTED: &str = r#"hookline_dead_letters_total{reason="rejected"}"#;

/// How often the replica's count is read.
const POLL: Duration = Duration::from_millis(50);

/// The longest a run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// One run's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetterRun {
    pub transactional: bool,
    pub dead_letters: u64,
    /// First to last dead letter seen.
    pub seconds: f64,
    pub per_second: f64,
    pub cpu_us_per_dead_letter: f64,
    pub peak_rss_mib: f64,
}

impl Bench {
    /// Pre-produces `--dead-letter-events` events to `--tenants` tenants
    /// whose endpoints answer 410, then lets one replica dead-letter them.
    pub async fn dead_letter_run(
        &self,
        label: &str,
        transactional: bool,
    ) -> Result<DeadLetterRun, String> {
        let tenants = self.args.tenants;
        let setup = self.setup(label, tenants)?;
        let n = self.args.dead_letter_events;
        eprintln!("{label}: producing {n} events");
        self.produce_backlog(&setup.topics.events, tenants, n, &self.pad)?;
        self.receiver.counts.reset(Behaviour {
            gone: true,
            ..Behaviour::default()
        });
        let delivery = [("TRANSACTIONAL_DLQ", transactional.to_string())];
        let replica = self
            .start_replica(&setup, "replica", &delivery)
            .map_err(|e| e.to_string())?;
        eprintln!("{label}: dead-lettering {n} events (transactional: {transactional})");
        let started = Instant::now();
        let mut first: Option<(Instant, Duration)> = None;
        let mut done = 0;
        let mut last_report = Instant::now();
        while started.elapsed() < RUN_TIMEOUT {
            if let Some(values) = replica.metrics(&[REJECTED]).await {
                done = values[0] as u64;
                if done > 0 && first.is_none() {
                    first = Some((Instant::now(), replica.cpu(self.ticks)));
                }
                if done >= n {
                    break;
                }
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!("{label}: {done}/{n} dead-lettered");
                last_report = Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
        let (ended, cpu_at_end) = (Instant::now(), replica.cpu(self.ticks));
        let peak_rss_mib = replica.peak_rss_mib();
        replica.stop().await;
        self.teardown(setup).await;
        let (window, cpu) = match first {
            Some((at, cpu_at_first)) => (ended - at, cpu_at_end.saturating_sub(cpu_at_first)),
            None => (Duration::ZERO, Duration::ZERO),
        };
        // The first dead letter seen opens the window, so it is not counted.
        let counted = done.saturating_sub(1).max(1);
        let run = DeadLetterRun {
            transactional,
            dead_letters: done,
            seconds: window.as_secs_f64(),
            per_second: per_second(counted, window),
            cpu_us_per_dead_letter: cpu.as_secs_f64() * 1e6 / counted as f64,
            peak_rss_mib,
        };
        eprintln!("{label}: {run:?}");
        Ok(run)
    }

    /// Off and on, alternately, `--repeat` times each; medians reported.
    pub async fn dead_letter_runs(&self, report: &mut Report) -> Result<(), String> {
        let mut off = Vec::new();
        let mut on = Vec::new();
        for i in 0..self.args.repeat {
            // Alternating which goes first spreads a slow spell of the
            // machine over both.
            let order = if i % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for transactional in order {
                let label = format!("dlq{}{i}", if transactional { "t" } else { "p" });
                let run = self.dead_letter_run(&label, transactional).await?;
                if transactional { &mut on } else { &mut off }.push(run);
            }
        }
        let medians = |runs: &[DeadLetterRun]| {
            let rates: Vec<f64> = runs.iter().map(|r| r.per_second).collect();
            let cpus: Vec<f64> = runs.iter().map(|r| r.cpu_us_per_dead_letter).collect();
            (median(&rates).unwrap_or(0.0), median(&cpus).unwrap_or(0.0))
        };
        let (off_rate, off_cpu) = medians(&off);
        let (on_rate, on_cpu) = medians(&on);
        for (what, rate, cpu) in [
            ("transactional_dlq = false", off_rate, off_cpu),
            ("transactional_dlq = true", on_rate, on_cpu),
        ] {
            report.row(
                format!("dead letters, {what}"),
                format!("{rate:.0} dead letters/s, {cpu:.0} µs CPU each"),
            );
        }
        let slower = (on_rate > 0.0).then(|| off_rate / on_rate);
        report.row(
            "dead letters, off / on",
            slower.map_or("-".into(), |r| format!("{r:.1}x the rate")),
        );
        report.insert(
            "dead_letters",
            json!({"events": self.args.dead_letter_events, "tenants": self.args.tenants,
                   "off": {"per_second": off_rate, "cpu_us_per_dead_letter": off_cpu, "runs": off},
                   "on": {"per_second": on_rate, "cpu_us_per_dead_letter": on_cpu, "runs": on}}),
        );
        Ok(())
    }
}
