//! The full-window run: the memory of a replica whose partitions' windows
//! are all full. A ready replica (key order, the window settings below) is
//! sent a backlog of 64 KiB events for tenants whose endpoint takes 1 s,
//! so that each partition has a few records in flight and its window fills
//! up to `partition_window_bytes` and stays full while the backlog lasts.
//! Its RSS is read when it is ready, while every window is full, and at its
//! peak (`VmHWM`); the growth is compared with the bound the settings give,
//! partitions × `partition_window_bytes`. Two window sizes (8 MiB, the
//! default, and 2 MiB) tell the part of the growth that follows the window
//! from the part that does not (records in flight, the client's buffers).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::receiver::Behaviour;
use crate::{Bench, Order, Report};

/// The data of each event, in KiB.
const VALUE_KIB: usize = 64;

/// How long the receiver takes to answer: long enough that the windows
/// stay full while the backlog is worked through.
const DELAY: Duration = Duration::from_secs(1);

/// The other window settings of the run (the defaults), set explicitly so
/// that the figures go with them.
const PARTITION_WINDOW: u64 = 1000;
const MAX_IN_FLIGHT: u64 = 512;

/// How long the run waits for every window to be full.
const FILL_TIMEOUT: Duration = Duration::from_secs(60);

const WINDOW_FULL: &str = "hookline_partitions_window_full";

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowRun {
    events: u64,
    value_kib: usize,
    tenants: usize,
    delay_ms: u128,
    partitions: u32,
    partition_window: u64,
    partition_window_bytes: u64,
    max_in_flight: u64,
    /// partitions × partition_window_bytes.
    bound_mib: f64,
    /// RSS when the replica was ready, before any event.
    ready_rss_mib: f64,
    /// The most RSS sampled while every window was full.
    full_rss_mib: f64,
    peak_rss_mib: f64,
    /// Seconds from the first event produced until every window was full.
    all_full_after: Option<f64>,
    /// Seconds watched from then on.
    watched_seconds: f64,
    /// The share of the samples taken since in which every window was full.
    all_full_share: f64,
    /// The most windows full at once.
    most_full: f64,
}

impl WindowRun {
    /// Each run's rows, and the RSS that one MiB more of window bound costs
    /// (between the first two runs).
    pub fn report(runs: &[WindowRun], report: &mut Report) {
        for run in runs {
            run.rows(report);
        }
        let per_mib = match runs {
            [a, b, ..] if a.bound_mib != b.bound_mib => {
                Some((a.peak_rss_mib - b.peak_rss_mib) / (a.bound_mib - b.bound_mib))
            }
            _ => None,
        };
        if let Some(per_mib) = per_mib {
            report.row(
                "full windows: peak RSS per MiB of window bound",
                format!("{per_mib:.2} MiB"),
            );
        }
        report.insert(
            "window",
            json!({"runs": runs, "peak_rss_per_bound_mib": per_mib}),
        );
    }

    fn rows(&self, report: &mut Report) {
        let settings = format!(
            "{} × {:.0} MiB windows, {} KiB events",
            self.partitions,
            self.partition_window_bytes as f64 / MIB,
            self.value_kib
        );
        report.row(
            format!("full windows ({settings}): RSS ready → peak"),
            format!(
                "{:.0} MiB → {:.0} MiB",
                self.ready_rss_mib, self.peak_rss_mib
            ),
        );
        report.row(
            "  growth / window bound",
            format!(
                "{:.0} MiB / {:.0} MiB",
                self.peak_rss_mib - self.ready_rss_mib,
                self.bound_mib
            ),
        );
        report.row(
            "  every window full after; then for",
            match self.all_full_after {
                Some(after) => format!(
                    "{after:.1} s; {:.0}% of {:.0} s",
                    self.all_full_share * 100.0,
                    self.watched_seconds
                ),
                None => format!("never (at most {:.0} full)", self.most_full),
            },
        );
    }
}

impl Bench {
    /// A backlog of large events to a replica whose windows hold
    /// `window_mib` MiB each.
    pub async fn window_run(&self, window_mib: u64) -> Result<WindowRun, String> {
        let tenants = self.args.tenants;
        let partitions = self.args.partitions;
        let window_bytes = window_mib * 1024 * 1024;
        let setup = self.setup(&format!("window{window_mib}"), tenants)?;
        self.receiver.counts.reset(Behaviour {
            delay: DELAY,
            ..Behaviour::default()
        });
        let mut settings = Order::Key.settings();
        settings.extend([
            ("PARTITION_WINDOW", PARTITION_WINDOW.to_string()),
            ("PARTITION_WINDOW_BYTES", window_bytes.to_string()),
            ("MAX_IN_FLIGHT", MAX_IN_FLIGHT.to_string()),
        ]);
        let replica = self.ready_replica(&setup, &settings).await?;
        let ready_rss_mib = replica.rss_mib();
        let n = self.args.window_events;
        eprintln!(
            "window: producing {n} events of {VALUE_KIB} KiB to a replica with {window_mib} MiB \
             windows, answered in {DELAY:?}"
        );
        let started = Instant::now();
        let pad = "x".repeat(VALUE_KIB * 1024 - 24);
        // The receiver in this process keeps answering on the other worker.
        let produced = tokio::task::block_in_place(|| {
            self.produce_backlog(&setup.topics.events, tenants, n, &pad)
        });
        // The gauge reads "not full" for a moment after each record
        // finishes, until the partition reads the next one; so the run
        // watches for a fixed time from when every window was first full
        // and tells in how many samples they all were.
        let watch = Duration::from_secs(self.args.window_secs);
        let mut all_full_since: Option<Instant> = None;
        let mut all_full_after = None;
        let (mut samples, mut all_full_samples) = (0u32, 0u32);
        let mut most_full = 0.0f64;
        let mut full_rss_mib = 0.0f64;
        while produced.is_ok() {
            let full = replica
                .metrics(&[WINDOW_FULL])
                .await
                .and_then(|v| v.first().copied())
                .unwrap_or(0.0);
            most_full = most_full.max(full);
            let all_full = full >= f64::from(partitions);
            if all_full && all_full_since.is_none() {
                all_full_since = Some(Instant::now());
                all_full_after = Some(started.elapsed().as_secs_f64());
            }
            if let Some(since) = all_full_since {
                samples += 1;
                all_full_samples += u32::from(all_full);
                full_rss_mib = full_rss_mib.max(replica.rss_mib());
                if since.elapsed() >= watch {
                    break;
                }
            } else if started.elapsed() > FILL_TIMEOUT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let watched_seconds = all_full_since.map_or(0.0, |s| s.elapsed().as_secs_f64());
        // The kernel folds each thread's RSS into the process's lazily, so
        // a VmRSS read can pass the VmHWM read after it by a few pages.
        let peak_rss_mib = replica.peak_rss_mib().max(full_rss_mib);
        replica.stop().await;
        self.teardown(setup).await;
        produced?;
        let run = WindowRun {
            events: n,
            value_kib: VALUE_KIB,
            tenants,
            delay_ms: DELAY.as_millis(),
            partitions,
            partition_window: PARTITION_WINDOW,
            partition_window_bytes: window_bytes,
            max_in_flight: MAX_IN_FLIGHT,
            bound_mib: f64::from(partitions) * window_bytes as f64 / MIB,
            ready_rss_mib,
            full_rss_mib,
            peak_rss_mib,
            all_full_after,
            watched_seconds,
            all_full_share: f64::from(all_full_samples) / f64::from(samples.max(1)),
            most_full,
        };
        eprintln!("window: {run:?}");
        Ok(run)
    }
}
