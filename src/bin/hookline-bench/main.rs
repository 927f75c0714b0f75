//! `hookline-bench`: how close hookline is to the physical limit of its
//! work, measured against the local broker (`make up`) and a receiver on
//! loopback. Prints a table and writes JSON; never fails on a figure.
//!
//! Runs, each on topics of its own (deleted afterwards):
//! - `floor`: the unavoidable per-delivery work, timed in this process;
//! - `throughput`: pre-produced events drained by one `hookline run`;
//! - `latency`: a steady rate, end to end (produce → receiver);
//! - `isolation`: as throughput, one tenant's endpoint answering 503;
//! - `restore`: a replica starting over a large tenants topic;
//! - `replicas`: as throughput with two replicas on the same machine.
//!
//! A separate binary rather than a `harness = false` bench target because
//! `cargo test --all-targets` builds and runs bench targets, and these runs
//! take minutes and need the broker; a binary is only compiled there.

mod floor;
mod kafka;
mod receiver;
mod replica;
mod stats;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hookline::crypto::{PrivateKey, SigningSecret};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::kafka::{BulkProducer, Topics};
use crate::receiver::{LatencySample, Receiver, lock};
use crate::replica::Replica;
use crate::stats::{log_field, median, per_second, percentile};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks hookline against the local broker and a loopback receiver")]
struct Args {
    /// Events pre-produced for the throughput, isolation and replica runs.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Tenants of the delivery runs (one shared 2048-bit key).
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Partitions of the events topic.
    #[arg(long, default_value_t = 12)]
    partitions: u32,
    /// Events per second of the latency run.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 60)]
    latency_secs: u64,
    /// Tenant records of the restore run.
    #[arg(long, default_value_t = 100_000)]
    restore_tenants: u64,
    /// Times the throughput and isolation runs are repeated, alternately
    /// (medians are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Scales everything down for a quick look (20,000 events, one run
    /// each, 10 s of latency, 10,000 tenants); not for reported figures.
    #[arg(long)]
    quick: bool,
    /// Runs to do, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,throughput,latency,isolation,restore,replicas"
    )]
    only: Vec<String>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// A command the replicas run under, for profiling, e.g.
    /// `--replica-wrapper 'valgrind --tool=callgrind'` (figures are then
    /// the profiler's, not hookline's).
    #[arg(long, value_parser = parse_wrapper)]
    replica_wrapper: Option<Wrapper>,
}

/// A command prefix, split on whitespace.
#[derive(Debug, Clone, Default)]
struct Wrapper(Vec<String>);

fn parse_wrapper(text: &str) -> Result<Wrapper, String> {
    let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if words.is_empty() {
        return Err("the wrapper command is empty".into());
    }
    Ok(Wrapper(words))
}

/// Seconds of the latency run's unmeasured warm-up.
const LATENCY_WARMUP_SECS: u64 = 3;

/// One delivery run's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct DeliveryRun {
    replicas: usize,
    /// Deliveries counted (to the selected tenants).
    deliveries: u64,
    seconds: f64,
    per_second: f64,
    cpu_us_per_delivery: f64,
    peak_rss_mib: f64,
    produce_seconds: f64,
}

struct Bench {
    args: Args,
    receiver: Receiver,
    public_key_pem: String,
    secret: String,
    ticks: u64,
    run_id: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.quick {
        args.events = args.events.min(20_000);
        args.repeat = 1;
        args.latency_secs = args.latency_secs.min(10);
        args.restore_tenants = args.restore_tenants.min(10_000);
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookline-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    let receiver = Receiver::start(args.tenants)
        .await
        .map_err(|e| format!("cannot start the receiver: {e}"))?;
    let key = PrivateKey::generate(2048).map_err(|e| e.to_string())?;
    let bench = Bench {
        public_key_pem: key.public_key().to_spki_pem(),
        secret: SigningSecret::generate()
            .to_whsec()
            .expose_secret()
            .to_string(),
        receiver,
        ticks: replica::clock_ticks(),
        run_id: unix_nanos() as u64 / 1_000_000_000,
        args,
    };
    let wants = |name: &str| bench.args.only.iter().any(|o| o == name);
    let mut results = serde_json::Map::new();
    let mut rows: Vec<[String; 3]> = Vec::new();

    let floor = if wants("floor") || wants("throughput") {
        eprintln!("floor: timing the primitives");
        let floor = floor::measure(&bench.receiver.url(0), Duration::from_secs(1)).await?;
        let items = [
            (
                "RSA-OAEP-256 wrap, 2048 bits",
                floor.rsa_oaep_wrap_2048_us,
                1,
            ),
            (
                "RSA-OAEP-256 wrap, 4096 bits",
                floor.rsa_oaep_wrap_4096_us,
                1,
            ),
            ("AES-256-GCM, 1 KiB", floor.aes_256_gcm_1kib_us, 2),
            ("signature (HMAC-SHA256)", floor.signature_us, 2),
            ("keep-alive POST, loopback", floor.keepalive_post_us, 1),
            (
                "keep-alive POST, CPU (client + receiver)",
                floor.keepalive_post_cpu_us,
                1,
            ),
            ("JWE of 1 KiB (library)", floor.jwe_encrypt_1kib_us, 1),
            ("floor per delivery", floor.per_delivery_us(), 1),
        ];
        for (measure, us, decimals) in items {
            rows.push(row(measure, format!("{us:.decimals$} µs"), ""));
        }
        results.insert(
            "floor".into(),
            json!({"items": floor, "per_delivery_us": floor.per_delivery_us()}),
        );
        Some(floor)
    } else {
        None
    };

    // The healthy and the isolation runs alternate, so that a slow spell
    // of the machine weighs on both alike; each reports its median.
    let mut healthy_runs = Vec::new();
    let mut isolation_runs = Vec::new();
    for i in 0..bench.args.repeat {
        if wants("throughput") {
            healthy_runs.push(bench.delivery_run(&format!("tput{i}"), 1, None).await?);
        }
        if wants("isolation") {
            isolation_runs.push(bench.delivery_run(&format!("isol{i}"), 1, Some(0)).await?);
        }
    }

    let mut healthy: Option<DeliveryRun> = None;
    if let Some(run) = median_run(&healthy_runs) {
        let runs = &healthy_runs;
        let ratio = floor
            .as_ref()
            .map(|f| run.cpu_us_per_delivery / f.per_delivery_us());
        rows.push(row(
            "throughput, 1 replica",
            format!("{:.0} deliveries/s", run.per_second),
            "",
        ));
        rows.push(row(
            "CPU per delivery",
            format!("{:.1} µs", run.cpu_us_per_delivery),
            "",
        ));
        rows.push(row(
            "CPU per delivery / floor",
            ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            "≤ 2x",
        ));
        rows.push(row(
            "replica peak RSS",
            format!("{:.0} MiB", run.peak_rss_mib),
            "",
        ));
        results.insert(
            "throughput".into(),
            json!({"median": run, "runs": runs, "cpu_to_floor": ratio}),
        );
        healthy = Some(run);
    }

    if wants("latency") {
        let (p50, p99, p999, count, cpu) = bench.latency_run().await?;
        let ms =
            |us: Option<u64>| us.map_or("-".into(), |u| format!("{:.1} ms", u as f64 / 1000.0));
        rows.push(row(
            &format!("latency p50 at {}/s", bench.args.rate),
            ms(p50),
            "",
        ));
        rows.push(row(
            &format!("latency p99 at {}/s", bench.args.rate),
            ms(p99),
            "≤ 50 ms",
        ));
        rows.push(row(
            &format!("latency p99.9 at {}/s", bench.args.rate),
            ms(p999),
            "",
        ));
        results.insert(
            "latency".into(),
            json!({"rate": bench.args.rate, "seconds": bench.args.latency_secs,
                   "warmup_seconds": LATENCY_WARMUP_SECS, "delivered": count,
                   "p50_us": p50, "p99_us": p99, "p999_us": p999, "cpu_us_per_delivery": cpu}),
        );
    }

    if let Some(run) = median_run(&isolation_runs) {
        let relative = healthy.as_ref().map(|h| run.per_second / h.per_second);
        rows.push(row(
            "isolation: others' throughput",
            format!("{:.0} deliveries/s", run.per_second),
            "",
        ));
        rows.push(row(
            "isolation / healthy",
            relative.map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
            "≥ 90%",
        ));
        results.insert(
            "isolation".into(),
            json!({"median": run, "runs": isolation_runs, "relative_to_healthy": relative}),
        );
    }

    if wants("restore") {
        let (restore_s, ready_s, rss) = bench.restore_run().await?;
        rows.push(row(
            &format!("restore {} tenants", bench.args.restore_tenants),
            restore_s.map_or("-".into(), |s| format!("{s:.1} s (ready {ready_s:.1} s)")),
            "≤ 10 s",
        ));
        rows.push(row("restore peak RSS", format!("{rss:.0} MiB"), "≤ 300 MB"));
        results.insert(
            "restore".into(),
            json!({"tenants": bench.args.restore_tenants, "restore_seconds": restore_s,
                   "ready_seconds": ready_s, "peak_rss_mib": rss}),
        );
    }

    if wants("replicas") {
        let run = bench.delivery_run("two", 2, None).await?;
        let relative = healthy.as_ref().map(|h| run.per_second / h.per_second);
        rows.push(row(
            "throughput, 2 replicas",
            format!("{:.0} deliveries/s", run.per_second),
            "",
        ));
        rows.push(row(
            "2 replicas / 1 replica",
            relative.map_or("-".into(), |r| format!("{r:.2}x")),
            "2 cores",
        ));
        results.insert(
            "two_replicas".into(),
            json!({"run": run, "relative_to_one": relative}),
        );
    }

    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["measure", "result", "target"]);
    for r in rows {
        table.add_row(r);
    }
    println!("{table}");
    let elapsed = started.elapsed().as_secs_f64();
    println!("bench took {elapsed:.0} s");
    results.insert(
        "machine".into(),
        json!({"cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
               "shared": true, "events": bench.args.events, "tenants": bench.args.tenants,
               "partitions": bench.args.partitions, "bench_seconds": elapsed,
               "unix_time": bench.run_id}),
    );
    if let Some(parent) = bench.args.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let text = serde_json::to_string_pretty(&Value::Object(results)).map_err(|e| e.to_string())?;
    std::fs::write(&bench.args.out, text)
        .map_err(|e| format!("{}: {e}", bench.args.out.display()))?;
    println!("results written to {}", bench.args.out.display());
    Ok(())
}

/// The runs' figures, each the median over the runs; `None` for no runs.
fn median_run(runs: &[DeliveryRun]) -> Option<DeliveryRun> {
    let mut run = runs.get(runs.len() / 2)?.clone();
    let rates: Vec<f64> = runs.iter().map(|r| r.per_second).collect();
    let cpus: Vec<f64> = runs.iter().map(|r| r.cpu_us_per_delivery).collect();
    run.per_second = median(&rates).unwrap_or(0.0);
    run.cpu_us_per_delivery = median(&cpus).unwrap_or(0.0);
    Some(run)
}

fn row(measure: &str, result: String, target: &str) -> [String; 3] {
    [measure.to_string(), result, target.to_string()]
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A run's working directory and topics.
struct Setup {
    dir: PathBuf,
    topics: Topics,
    topology: PathBuf,
    group: String,
}

impl Bench {
    fn wrapper(&self) -> &[String] {
        self.args.replica_wrapper.as_ref().map_or(&[], |w| &w.0)
    }

    fn tenant_id(i: usize) -> String {
        format!("bench-t{i:03}")
    }

    /// Creates the run's topics and registers the delivery tenants.
    fn setup(&self, label: &str, tenants: usize) -> Result<Setup, String> {
        let prefix = format!("bench-{}-{label}", self.run_id);
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let topics = Topics::named(&prefix);
        let topology = dir.join("topics.toml");
        std::fs::write(&topology, topics.topology(self.args.partitions))
            .map_err(|e| e.to_string())?;
        replica::setup_topics(&dir, &topology)?;
        let producer = BulkProducer::new(5).map_err(|e| e.to_string())?;
        for i in 0..tenants {
            let record = json!({
                "url": self.receiver.url(i),
                "public_key": self.public_key_pem,
                "signing_secret": self.secret,
            });
            producer
                .send(
                    &topics.tenants,
                    None,
                    Self::tenant_id(i).as_bytes(),
                    record.to_string().as_bytes(),
                )
                .map_err(|e| e.to_string())?;
        }
        producer.flush().map_err(|e| e.to_string())?;
        Ok(Setup {
            dir,
            topics,
            topology,
            group: format!("{prefix}-group"),
        })
    }

    /// The value of one bench event: an id carrying the produce time and
    /// 1 KiB of data.
    fn event(&self, seq: u64, pad: &str) -> Vec<u8> {
        format!(
            r#"{{"id":"b{}-{seq}","type":"bench.event","data":{{"seq":{seq},"pad":"{pad}"}}}}"#,
            unix_nanos()
        )
        .into_bytes()
    }

    fn partition_of(&self, tenant: usize) -> i32 {
        (tenant % self.args.partitions as usize) as i32
    }

    /// Pre-produces the events, then lets `replicas` drain them. With a
    /// failing tenant, counts only the tenants on other partitions (the
    /// failing tenant's partition is blocked behind it, by design).
    async fn delivery_run(
        &self,
        label: &str,
        replicas: usize,
        failing: Option<usize>,
    ) -> Result<DeliveryRun, String> {
        let tenants = self.args.tenants;
        let setup = self.setup(label, tenants)?;
        let n = self.args.events;
        eprintln!("{label}: producing {n} events");
        let produce_started = Instant::now();
        let producer = BulkProducer::new(5).map_err(|e| e.to_string())?;
        // 1 KiB of data in all: the pad plus `{"seq":N,"pad":""}`.
        let pad = "x".repeat(1024 - 24);
        let blocked = failing.map(|f| self.partition_of(f));
        let selected = |tenant: usize| Some(self.partition_of(tenant)) != blocked;
        let mut expected = 0u64;
        for seq in 0..n {
            let tenant = (seq % tenants as u64) as usize;
            if selected(tenant) {
                expected += 1;
            }
            producer
                .send(
                    &setup.topics.events,
                    Some(self.partition_of(tenant)),
                    Self::tenant_id(tenant).as_bytes(),
                    &self.event(seq, &pad),
                )
                .map_err(|e| e.to_string())?;
        }
        producer.flush().map_err(|e| e.to_string())?;
        let produce_seconds = produce_started.elapsed().as_secs_f64();

        let counts = self.receiver.counts.clone();
        counts.reset(failing, false);
        let mut running = Vec::new();
        for r in 0..replicas {
            running.push(
                Replica::start(
                    self.wrapper(),
                    &setup.dir,
                    &format!("replica{r}"),
                    &setup.topology,
                    &setup.group,
                )
                .map_err(|e| e.to_string())?,
            );
        }
        eprintln!("{label}: {replicas} replica(s) delivering {expected} events");
        let timeout = Duration::from_secs(900);
        let started = Instant::now();
        let mut cpu_at_first: Option<Duration> = None;
        let mut last_report = Instant::now();
        loop {
            let delivered = counts.delivered_to(selected);
            if cpu_at_first.is_none() && counts.delivered.load(Relaxed) > 0 {
                cpu_at_first = Some(running.iter().map(|r| r.cpu(self.ticks)).sum());
            }
            if delivered >= expected || started.elapsed() > timeout {
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
        kafka::delete_topics(&setup.topics).await;
        let _ = std::fs::remove_dir_all(&setup.dir);
        if deliveries < expected {
            eprintln!("{label}: only {deliveries} of {expected} delivered before the timeout");
        }
        let cpu = cpu_at_end.saturating_sub(cpu_at_first.unwrap_or_default());
        let run = DeliveryRun {
            replicas,
            deliveries,
            seconds: window.as_secs_f64(),
            per_second: per_second(deliveries, window),
            // Every 2xx the replica caused, the blocked partition's too.
            cpu_us_per_delivery: cpu.as_secs_f64() * 1e6 / all.max(1) as f64,
            peak_rss_mib,
            produce_seconds,
        };
        eprintln!("{label}: {run:?}");
        Ok(run)
    }

    /// A steady rate for `latency_secs` against a replica that is already
    /// ready; latency is produce time (in the event id) to arrival.
    async fn latency_run(
        &self,
    ) -> Result<(Option<u64>, Option<u64>, Option<u64>, u64, f64), String> {
        let tenants = self.args.tenants;
        let setup = self.setup("lat", tenants)?;
        let counts = self.receiver.counts.clone();
        counts.reset(None, true);
        let mut replica = Replica::start(
            self.wrapper(),
            &setup.dir,
            "replica",
            &setup.topology,
            &setup.group,
        )
        .map_err(|e| e.to_string())?;
        replica.wait_ready(Duration::from_secs(60)).await?;
        // Readiness comes with the group join; the assignment follows.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let producer = BulkProducer::new(0).map_err(|e| e.to_string())?;
        let pad = "x".repeat(1024 - 24);
        // A warm-up at the same rate first: the producer's first sends
        // wait for its metadata and connections, the replica's for its
        // first fetches and its connections to the receiver. Only events
        // produced after it are measured.
        let warmup = self.args.rate * LATENCY_WARMUP_SECS;
        let total = warmup + self.args.rate * self.args.latency_secs;
        eprintln!(
            "latency: {} events/s for {} s (after {LATENCY_WARMUP_SECS} s of warm-up)",
            self.args.rate, self.args.latency_secs
        );
        let mut cpu_before = replica.cpu(self.ticks);
        let mut measured_from: Option<u128> = None;
        let started = Instant::now();
        let tick = Duration::from_millis(10);
        let mut sent = 0u64;
        while sent < total {
            // Catch up to the schedule, so a late tick does not lower the rate.
            let due = (started.elapsed().as_secs_f64() * self.args.rate as f64) as u64;
            while sent < due.min(total) {
                if sent == warmup && measured_from.is_none() {
                    measured_from = Some(unix_nanos());
                    cpu_before = replica.cpu(self.ticks);
                }
                let tenant = (sent % tenants as u64) as usize;
                producer
                    .send(
                        &setup.topics.events,
                        Some(self.partition_of(tenant)),
                        Self::tenant_id(tenant).as_bytes(),
                        &self.event(sent, &pad),
                    )
                    .map_err(|e| e.to_string())?;
                sent += 1;
            }
            tokio::time::sleep(tick).await;
        }
        producer.flush().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while counts.delivered.load(Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cpu = replica.cpu(self.ticks).saturating_sub(cpu_before);
        replica.stop().await;
        kafka::delete_topics(&setup.topics).await;
        let _ = std::fs::remove_dir_all(&setup.dir);
        let from = measured_from.unwrap_or(0);
        let samples: Vec<LatencySample> = std::mem::take(&mut *lock(&counts.latencies))
            .into_iter()
            .filter(|s| s.produced_unix_ns >= from)
            .collect();
        self.write_latency_samples(&samples);
        let mut latencies: Vec<u64> = samples.iter().map(|s| s.latency_us).collect();
        latencies.sort_unstable();
        let delivered = latencies.len() as u64;
        Ok((
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
            delivered,
            cpu.as_secs_f64() * 1e6 / delivered.max(1) as f64,
        ))
    }

    /// Every sample of the latency run, as CSV next to the JSON results,
    /// for looking at the tail: when it happened, on which partition.
    fn write_latency_samples(&self, samples: &[LatencySample]) {
        let path = self.args.out.with_file_name("latency.csv");
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
            Ok(()) => eprintln!("latency: samples written to {}", path.display()),
            Err(e) => eprintln!("latency: cannot write {}: {e}", path.display()),
        }
    }

    /// A replica starting over `restore_tenants` records: the restore's own
    /// time (from its log), the time until `/readyz` (which also waits for
    /// the group join) and the peak RSS.
    async fn restore_run(&self) -> Result<(Option<f64>, f64, f64), String> {
        let setup = self.setup("restore", 0)?;
        let n = self.args.restore_tenants;
        eprintln!("restore: producing {n} tenant records");
        let producer = BulkProducer::new(5).map_err(|e| e.to_string())?;
        for i in 0..n {
            let record = json!({
                "url": format!("https://hooks.example.com/tenant/{i}"),
                "public_key": self.public_key_pem,
                "signing_secret": self.secret,
                "events": ["order.*", "invoice.paid"],
            });
            producer
                .send(
                    &setup.topics.tenants,
                    None,
                    format!("tenant-{i:06}").as_bytes(),
                    record.to_string().as_bytes(),
                )
                .map_err(|e| e.to_string())?;
        }
        producer.flush().map_err(|e| e.to_string())?;
        let mut replica = Replica::start(
            self.wrapper(),
            &setup.dir,
            "replica",
            &setup.topology,
            &setup.group,
        )
        .map_err(|e| e.to_string())?;
        let ready = replica.wait_ready(Duration::from_secs(120)).await;
        let rss = replica.peak_rss_mib();
        let log = replica.log.clone();
        replica.stop().await;
        let restore_ms = std::fs::read_to_string(&log).ok().and_then(|text| {
            text.lines()
                .find(|l| l.contains("tenant table restored"))
                .and_then(|l| log_field(l, "total_ms"))
        });
        kafka::delete_topics(&setup.topics).await;
        let _ = std::fs::remove_dir_all(&setup.dir);
        let ready = ready?;
        Ok((
            restore_ms.map(|ms| ms as f64 / 1000.0),
            ready.as_secs_f64(),
            rss,
        ))
    }
}
