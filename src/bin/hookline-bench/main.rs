//! `hookline-bench`: how close hookline is to the physical limit of its
//! work, measured against the local broker (`make up`) and a receiver on
//! loopback. Prints a table and writes JSON; never fails on a figure.
//!
//! Runs, each on topics of its own (deleted afterwards):
//! - `floor`: the unavoidable per-delivery work, timed in this process;
//! - `throughput`: pre-produced events drained by one `hookline run`, in
//!   key and in partition order;
//! - `latency`: a steady rate, end to end (produce → receiver);
//! - `isolation`: as throughput, one tenant's endpoint answering 503;
//! - `slow`: 1,000 tenants whose endpoints take 100 ms, key vs partition
//!   order;
//! - `hol`: head of line: one tenant answering 503 at a steady rate, the
//!   latency of its partition-mates against the other partitions' tenants;
//! - `window`: the memory of a replica whose partitions' windows are full;
//! - `restore`: a replica starting over a large tenants topic;
//! - `replicas`: as throughput with 1, 2, 3 and 4 replicas on the same
//!   machine, and in a group of each size at a steady rate, what a
//!   replica joining, leaving (SIGTERM) and dying (`kill -9`) costs;
//! - `dlq`: every endpoint answering 410, `delivery.transactional_dlq` off
//!   against on: dead letters per second and CPU per dead letter;
//! - `endpoints`: 10,000 hosts with realistic answer times, up to a
//!   million tenants.
//!
//! Layout: `delivery` (drains of pre-produced events and their reports),
//! `steady` (a steady produce rate: latency and head of line), `window`,
//! `restore`, `floor`, `dead_letters`, `rebalance` (the replica runs);
//! `replica` runs `hookline`, `receiver` answers it, `kafka` produces;
//! `stats` and `handover` hold the pure helpers.
//!
//! A separate binary rather than a `harness = false` bench target because
//! `cargo test --all-targets` builds and runs bench targets, and these runs
//! take minutes and need the broker; a binary is only compiled there.

mod dead_letters;
mod delivery;
mod endpoints;
mod floor;
mod handover;
mod kafka;
mod rebalance;
mod receiver;
mod replica;
mod restore;
mod stats;
mod steady;
mod window;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hookline::crypto::{PrivateKey, SigningSecret};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::delivery::{DeliveryRun, Drain, median_run};
use crate::kafka::{BulkProducer, Topics};
use crate::receiver::Receiver;
use crate::replica::Replica;
use crate::steady::HolRun;
use crate::window::WindowRun;

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
    /// Tenants of the slow-endpoint run.
    #[arg(long, default_value_t = 1000)]
    slow_tenants: usize,
    /// Milliseconds each request takes the receiver in the slow-endpoint run.
    #[arg(long, default_value_t = 100)]
    slow_delay_ms: u64,
    /// Events of the slow-endpoint run in key order.
    #[arg(long, default_value_t = 20_000)]
    slow_events: u64,
    /// Seconds over which the slow-endpoint run measures partition order
    /// (and at most key order), from the first delivery on.
    #[arg(long, default_value_t = 30)]
    slow_secs: u64,
    /// Events per second of the head-of-line run.
    #[arg(long, default_value_t = 500)]
    hol_rate: u64,
    /// Measured seconds of the head-of-line run (after a warm-up).
    #[arg(long, default_value_t = 30)]
    hol_secs: u64,
    /// 64 KiB events of the full-window run.
    #[arg(long, default_value_t = 4000)]
    window_events: u64,
    /// Seconds the full-window run watches the memory once every window
    /// is full.
    #[arg(long, default_value_t = 5)]
    window_secs: u64,
    /// `delivery.partition_window_bytes` of the full-window runs, in MiB,
    /// comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "8,2")]
    window_mib: Vec<u64>,
    /// Events of each dead-letter run (all dead-lettered).
    #[arg(long, default_value_t = 2000)]
    dead_letter_events: u64,
    /// Group sizes of the replica runs, comma-separated: throughput with
    /// each, and the rebalance runs of those of two or more.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4",
          value_parser = clap::value_parser!(u16).range(1..))]
    replica_counts: Vec<u16>,
    /// Events drained by each formed group of the replica runs.
    #[arg(long, default_value_t = 100_000)]
    replica_events: u64,
    /// Events per second during the rebalance runs.
    #[arg(long, default_value_t = 500)]
    rebalance_rate: u64,
    /// `kafka.session_timeout` of the rebalance runs' replicas: how long a
    /// killed replica's partitions wait.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    session_timeout: Duration,
    /// librdkafka's `heartbeat.interval.ms` of the rebalance runs'
    /// replicas: how soon a member hears that the group rebalances.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// Tenant records of the restore runs, comma-separated: one run each.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    restore_tenants: Vec<u64>,
    /// Tenants of each restore run that then get one delivery each, for
    /// the memory of active tenants.
    #[arg(long, default_value_t = 100_000)]
    restore_active: u64,
    /// Events the active tenants of each restore run get, round-robin (0:
    /// one each), to tell memory per tenant from memory per event.
    #[arg(long, default_value_t = 0)]
    restore_events: u64,
    /// Times the throughput and isolation runs are repeated, alternately
    /// (medians are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Delivery orders of the throughput, slow-endpoint and head-of-line
    /// runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "key,partition")]
    orders: Vec<Order>,
    /// Scales everything down for a quick look (20,000 events, one run
    /// each, 10 s of latency, 5 s of slow endpoints and of head of line,
    /// one window size, 10,000 tenants restored, 500 dead letters, groups of 1
    /// and 2 replicas draining 20,000 events); not for
    /// reported figures.
    #[arg(long)]
    quick: bool,
    /// Runs to do, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,throughput,latency,isolation,slow,hol,window,restore,replicas,dlq,endpoints"
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
    #[command(flatten)]
    endpoints: endpoints::EndpointArgs,
}

impl Args {
    fn scale_down(&mut self) {
        self.events = self.events.min(20_000);
        self.repeat = 1;
        self.latency_secs = self.latency_secs.min(10);
        self.slow_events = self.slow_events.min(5_000);
        self.slow_secs = self.slow_secs.min(5);
        self.hol_secs = self.hol_secs.min(5);
        self.window_events = self.window_events.min(2_000);
        self.window_secs = self.window_secs.min(3);
        self.window_mib.truncate(1);
        self.restore_tenants = vec![10_000];
        self.restore_active = self.restore_active.min(1_000);
        self.dead_letter_events = self.dead_letter_events.min(500);
        self.replica_events = self.replica_events.min(20_000);
        self.replica_counts.retain(|&n| n <= 2);
    }
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

/// `delivery.ordering` of the replicas of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Key,
    Partition,
}

impl Order {
    fn as_str(self) -> &'static str {
        match self {
            Order::Key => "key",
            Order::Partition => "partition",
        }
    }

    /// The replica's `[delivery]` settings for this order.
    pub fn settings(self) -> Vec<(&'static str, String)> {
        vec![("ORDERING", self.as_str().to_string())]
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The printed table and the JSON document, filled run by run.
#[derive(Default)]
pub struct Report {
    rows: Vec<[String; 3]>,
    results: serde_json::Map<String, Value>,
}

impl Report {
    /// A row without a target.
    pub fn row(&mut self, measure: impl Into<String>, result: String) {
        self.rows.push([measure.into(), result, String::new()]);
    }

    /// A row with its target, marked ✔ or ✘ when the result is known.
    pub fn goal(
        &mut self,
        measure: impl Into<String>,
        result: String,
        target: &str,
        met: Option<bool>,
    ) {
        let mark = match met {
            Some(true) => " ✔",
            Some(false) => " ✘",
            None => "",
        };
        self.rows
            .push([measure.into(), result, format!("{target}{mark}")]);
    }

    pub fn insert(&mut self, key: &str, value: Value) {
        self.results.insert(key.to_string(), value);
    }
}

/// A ratio as a percentage, `-` when unknown.
pub fn percent(ratio: Option<f64>) -> String {
    ratio.map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
}

struct Bench {
    args: Args,
    receiver: Receiver,
    public_key_pem: String,
    secret: String,
    ticks: u64,
    run_id: u64,
    /// The `pad` of a 1 KiB event (`{"seq":N,"pad":"…"}` is 1 KiB).
    pad: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    // The endpoints run's hosts are this binary again, in processes of their own.
    if let Ok(spec) = std::env::var(endpoints::SERVE_VAR) {
        return match endpoints::serve_child(&spec).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hookline-bench endpoints: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut args = Args::parse();
    if args.quick {
        args.scale_down();
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
    let receiver = Receiver::start(args.tenants.max(args.slow_tenants))
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
        pad: "x".repeat(1024 - 24),
        args,
    };
    let wants = |name: &str| bench.args.only.iter().any(|o| o == name);
    let mut report = Report::default();

    let floor = if wants("floor") || wants("throughput") {
        eprintln!("floor: timing the primitives");
        let floor = floor::measure(&bench.receiver.url(0), Duration::from_secs(1)).await?;
        floor.report(&mut report);
        Some(floor)
    } else {
        None
    };

    // The runs of each order and the isolation runs alternate, so that a
    // slow spell of the machine weighs on all alike (the orders take turns
    // at going first); each reports its median.
    let mut throughput: Vec<(Order, Vec<DeliveryRun>)> =
        bench.args.orders.iter().map(|&o| (o, Vec::new())).collect();
    let mut isolation_runs = Vec::new();
    for i in 0..bench.args.repeat {
        if wants("throughput") {
            let mut turn: Vec<_> = throughput.iter_mut().collect();
            if i % 2 == 1 {
                turn.reverse();
            }
            for (order, runs) in turn {
                let label = match order {
                    Order::Key => format!("tput{i}"),
                    Order::Partition => format!("tputp{i}"),
                };
                runs.push(bench.delivery_run(&bench.drain(&label, *order)).await?);
            }
        }
        if wants("isolation") {
            let label = format!("isol{i}");
            let drain = Drain {
                failing: Some(0),
                ..bench.drain(&label, Order::Key)
            };
            isolation_runs.push(bench.delivery_run(&drain).await?);
        }
    }
    let healthy = delivery::report_throughput(&mut report, &throughput, floor.as_ref());

    if wants("latency") {
        bench
            .latency_run()
            .await?
            .report(&mut report, bench.args.rate);
    }

    if let Some(run) = median_run(&isolation_runs) {
        let relative = healthy.as_ref().map(|h| run.per_second / h.per_second);
        report.row(
            "isolation: healthy tenants' throughput (key order)",
            format!("{:.0} deliveries/s", run.per_second),
        );
        report.goal(
            "isolation / healthy",
            percent(relative),
            "≥ 90%",
            relative.map(|r| r >= 0.9),
        );
        report.insert(
            "isolation",
            json!({"median": run, "runs": isolation_runs, "relative_to_healthy": relative}),
        );
    }

    let slow = if wants("slow") {
        bench.slow_runs(&mut report).await?
    } else {
        None
    };

    if wants("hol") {
        let mut runs = Vec::new();
        for &order in &bench.args.orders {
            runs.push(bench.hol_run(order).await?);
        }
        HolRun::report(&runs, &mut report);
    }

    if wants("window") {
        let mut runs = Vec::new();
        for &mib in &bench.args.window_mib {
            runs.push(bench.window_run(mib).await?);
        }
        WindowRun::report(&runs, &mut report);
    }

    if wants("restore") {
        bench.restore_runs(&mut report).await?;
    }

    if wants("replicas") {
        bench.replica_runs(&mut report, healthy.as_ref()).await?;
    }

    if wants("dlq") {
        bench.dead_letter_runs(&mut report).await?;
    }

    if wants("endpoints") {
        bench
            .endpoints_run(&mut report, healthy.as_ref(), slow.as_ref())
            .await?;
    }

    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["measure", "result", "target"]);
    for r in report.rows {
        table.add_row(r);
    }
    println!("{table}");
    let elapsed = started.elapsed().as_secs_f64();
    println!("bench took {elapsed:.0} s");
    let mut results = report.results;
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

    /// A drain of `--events` 1 KiB events to `--tenants` tenants answering
    /// at once, in `order`; the other fields at their defaults.
    fn drain<'a>(&self, label: &'a str, order: Order) -> Drain<'a> {
        Drain {
            label,
            replicas: 1,
            order,
            tenants: self.args.tenants,
            events: self.args.events,
            failing: None,
            delay: Duration::ZERO,
            measure_for: Duration::MAX,
        }
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

    /// Deletes the run's topics and working directory.
    async fn teardown(&self, setup: Setup) {
        kafka::delete_topics(&setup.topics).await;
        let _ = std::fs::remove_dir_all(&setup.dir);
    }

    /// One `hookline run` on the run's topics, with `delivery` settings.
    fn start_replica(
        &self,
        setup: &Setup,
        name: &str,
        delivery: &[(&str, String)],
    ) -> std::io::Result<Replica> {
        Replica::start(
            self.wrapper(),
            &setup.dir,
            name,
            &setup.topology,
            &setup.group,
            delivery,
        )
    }

    /// A replica on the run's topics, ready and (after a pause for the
    /// assignment that follows the join) working.
    pub async fn ready_replica(
        &self,
        setup: &Setup,
        delivery: &[(&str, String)],
    ) -> Result<Replica, String> {
        let mut replica = self
            .start_replica(setup, "replica", delivery)
            .map_err(|e| e.to_string())?;
        if let Err(e) = replica.wait_ready(Duration::from_secs(60)).await {
            replica.stop().await;
            return Err(e);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(replica)
    }

    /// The value of one bench event: an id carrying the produce time
    /// (`produced_ns`) and the data `{"seq":N,"pad":"…"}`.
    fn event(seq: u64, produced_ns: u128, pad: &str) -> Vec<u8> {
        format!(
            r#"{{"id":"b{produced_ns}-{seq}","type":"bench.event","data":{{"seq":{seq},"pad":"{pad}"}}}}"#,
        )
        .into_bytes()
    }

    /// Produces `n` events with `pad`, tenants round-robin, each to its
    /// tenant's partition, and waits for their acknowledgement.
    fn produce_backlog(
        &self,
        topic: &str,
        tenants: usize,
        n: u64,
        pad: &str,
    ) -> Result<(), String> {
        let producer = BulkProducer::new(5).map_err(|e| e.to_string())?;
        for seq in 0..n {
            self.send_event(&producer, topic, tenants, seq, unix_nanos(), pad)?;
        }
        producer.flush().map_err(|e| e.to_string())
    }

    /// Queues event `seq`, produced at `at_ns`, for tenant `seq` mod
    /// `tenants` on that tenant's partition; returns the tenant.
    fn send_event(
        &self,
        producer: &BulkProducer,
        topic: &str,
        tenants: usize,
        seq: u64,
        at_ns: u128,
        pad: &str,
    ) -> Result<usize, String> {
        let tenant = (seq % tenants as u64) as usize;
        producer
            .send(
                topic,
                Some(self.partition_of(tenant)),
                Self::tenant_id(tenant).as_bytes(),
                &Self::event(seq, at_ns, pad),
            )
            .map_err(|e| e.to_string())?;
        Ok(tenant)
    }

    /// Tenant *i* is on partition *i* mod partitions.
    fn partition_of(&self, tenant: usize) -> i32 {
        (tenant % self.args.partitions as usize) as i32
    }
}
