//! The `endpoints` run: tenants spread over 10,000 distinct hosts, each a
//! loopback address 127.1.x.y with a listener of its own, answering after
//! a log-normal time (median 70 ms, a tail to seconds), a few of them never
//! within the replica's timeout.
//!
//! The listeners live in child processes (this binary again, started with
//! [`SERVE_VAR`] set), 2,500 hosts each: a process holds a descriptor per
//! listener and one per accepted connection, and 10,000 listeners with the
//! replica's connections would pass a limit of 20,000 in one process. Each
//! child prints one line per answered request on its stdout, which this
//! process reads.
//!
//! Phases, on one replica (its pool bounds set by the flags): a burst of
//! one event to each host, all of them new to the replica (time until each
//! host had its first request); a backlog across the tenants of the hosts
//! that answer (deliveries/s, CPU per delivery); a steady rate across all
//! tenants, stalled hosts included (latency, produce to arrival). The
//! replica's sockets to the hosts, descriptors and RSS are sampled all
//! along from `/proc`.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::delivery::DeliveryRun;
use crate::kafka::BulkProducer;
use crate::receiver::lock;
use crate::replica::Replica;
use crate::stats::{event_id_parts, human_us, per_second, percentile};
use crate::{Bench, Order, Report, unix_nanos};

/// Set in a child's environment to `first,count,seed,stall_ms`: serve
/// hosts `first..first + count`.
pub const SERVE_VAR: &str = "HOOKLINE_BENCH_SERVE_ENDPOINTS";

/// Hosts per child process.
const HOSTS_PER_CHILD: usize = 2_500;

/// The answer time: log-normal with this median and shape (σ of the
/// underlying normal), so p90 ≈ 250 ms, p99 ≈ 720 ms, p99.99 ≈ 2.9 s.
const MEDIAN_MS: f64 = 70.0;
const SIGMA: f64 = 1.0;

/// Every this many hosts, one never answers within the replica's timeout.
const STALL_EVERY: usize = 200;

/// The replica's attempt timeout, attempts and first backoff in this run:
/// an event to a stalled host is dead-lettered after two timeouts.
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: &str = "2";
const INITIAL_BACKOFF: &str = "1s";

/// The most a phase waits for its events' outcomes.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(clap::Args, Debug, Clone)]
pub struct EndpointArgs {
    /// Hosts of the endpoints run (distinct loopback addresses 127.1.x.y).
    #[arg(long, default_value_t = 10_000)]
    pub endpoint_hosts: usize,
    /// Tenants of the endpoints run, spread over its hosts.
    #[arg(long, default_value_t = 1_000_000)]
    pub endpoint_tenants: usize,
    /// Events of the endpoints run's backlog, across all tenants.
    #[arg(long, default_value_t = 50_000)]
    pub endpoint_events: u64,
    /// Events per second of the endpoints run's steady phase.
    #[arg(long, default_value_t = 1_500)]
    pub endpoint_rate: u64,
    /// Seconds of the endpoints run's steady phase.
    #[arg(long, default_value_t = 20)]
    pub endpoint_secs: u64,
    /// `delivery.pool_max_idle_per_host` of the endpoints run's replica.
    #[arg(long, default_value_t = 1)]
    pub endpoint_idle_per_host: usize,
    /// `delivery.pool_max_idle` of the endpoints run's replica.
    #[arg(long, default_value_t = 10_000)]
    pub endpoint_max_idle: usize,
}

/// Host `n`: 127.1.x.y (never 127.0.0.x, where the bench's own receiver
/// and the broker are).
fn host(n: usize) -> IpAddr {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    IpAddr::V4(Ipv4Addr::new(
        127,
        1 + (n / 62_500) as u8,
        (n / 250 % 250) as u8,
        (n % 250 + 1) as u8,
    ))
}

fn stalls(host: usize) -> bool {
    host % STALL_EVERY == STALL_EVERY - 1
}

/// splitmix64: the answer times are random but repeatable.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A log-normal answer time for request `key` (Box-Muller from two
/// uniform draws), at most 10 s.
fn answer_time(key: u64) -> Duration {
    let uniform = |x: u64| ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let (a, b) = (uniform(mix(key)), uniform(mix(key ^ 0x5555_5555)));
    let normal = (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos();
    Duration::from_secs_f64((MEDIAN_MS * (SIGMA * normal).exp() / 1000.0).min(10.0))
}

/// The child's side: serve hosts as `SERVE_VAR` says until stdin closes.
/// Prints `L <host> <port>` per listener, `R` when all listen, then
/// `D <host> <seq> <produced_ns> <arrived_ns>` per 2xx answered.
pub async fn serve_child(spec: &str) -> Result<(), String> {
    let parts: Vec<u64> = spec
        .split(',')
        .map(|p| p.parse().map_err(|_| format!("bad {SERVE_VAR}: {spec}")))
        .collect::<Result<_, _>>()?;
    let [first, count, stall_ms] = parts[..] else {
        return Err(format!("bad {SERVE_VAR}: {spec}"));
    };
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::increase_nofile_limit(hard);
    }
    let (lines, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
        while let Some(line) = rx.recv().await {
            if out.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            if rx.is_empty() && out.flush().await.is_err() {
                break;
            }
        }
    });
    for n in first..first + count {
        let n = n as usize;
        let listener = tokio::net::TcpListener::bind((host(n), 0))
            .await
            .map_err(|e| format!("binding {}: {e}", host(n)))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let _ = lines.send(format!("L {n} {port}\n"));
        let state = Endpoint {
            host: n,
            stall: Duration::from_millis(stall_ms),
            lines: lines.clone(),
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::new(state));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    let _ = lines.send("R\n".to_string());
    // The parent closes stdin (or dies) when the run is over.
    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdin, &mut sink).await;
    drop(lines);
    writer.abort();
    Ok(())
}

struct Endpoint {
    host: usize,
    stall: Duration,
    lines: tokio::sync::mpsc::UnboundedSender<String>,
}

async fn answer(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> StatusCode {
    let arrived = unix_nanos();
    let (produced, seq) = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .and_then(event_id_parts)
        .unwrap_or((0, 0));
    let delay = if stalls(endpoint.host) {
        endpoint.stall
    } else {
        answer_time(seq ^ ((endpoint.host as u64) << 40))
    };
    tokio::time::sleep(delay).await;
    let _ = endpoint
        .lines
        .send(format!("D {} {seq} {produced} {arrived}\n", endpoint.host));
    StatusCode::NO_CONTENT
}

/// One 2xx answered by a child.
#[derive(Debug, Clone, Copy)]
struct Answer {
    host: usize,
    produced_ns: u128,
    arrived_ns: u128,
}

/// The children and what they answered.
struct Hosts {
    children: Vec<tokio::process::Child>,
    ports: Vec<u16>,
    answers: Arc<Mutex<Vec<Answer>>>,
    /// Unix nanoseconds of each host's first request answered, 0 for none.
    first: Arc<Vec<AtomicU64>>,
}

impl Hosts {
    async fn start(hosts: usize) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let answers = Arc::new(Mutex::new(Vec::new()));
        let first: Arc<Vec<AtomicU64>> = Arc::new((0..hosts).map(|_| AtomicU64::new(0)).collect());
        let ports = Arc::new(Mutex::new(vec![0u16; hosts]));
        let mut children = Vec::new();
        let mut ready = Vec::new();
        for start in (0..hosts).step_by(HOSTS_PER_CHILD) {
            let count = HOSTS_PER_CHILD.min(hosts - start);
            let stall_ms = 3 * TIMEOUT.as_millis();
            let mut child = tokio::process::Command::new(&exe)
                .env(SERVE_VAR, format!("{start},{count},{stall_ms}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("starting an endpoint process: {e}"))?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            ready.push(rx);
            let (answers, first, ports) = (answers.clone(), first.clone(), ports.clone());
            tokio::spawn(async move {
                let mut tx = Some(tx);
                let mut reader = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let words: Vec<&str> = line.split(' ').collect();
                    match words[..] {
                        ["L", n, port] => {
                            if let (Ok(n), Ok(port)) = (n.parse::<usize>(), port.parse()) {
                                lock(&ports)[n] = port;
                            }
                        }
                        ["R"] => {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        ["D", n, _, produced, arrived] => {
                            let (Ok(n), Ok(produced), Ok(arrived)) = (
                                n.parse::<usize>(),
                                produced.parse(),
                                arrived.parse::<u128>(),
                            ) else {
                                continue;
                            };
                            let _ = first[n].compare_exchange(0, arrived as u64, Relaxed, Relaxed);
                            lock(&answers).push(Answer {
                                host: n,
                                produced_ns: produced,
                                arrived_ns: arrived,
                            });
                        }
                        _ => {}
                    }
                }
            });
            children.push(child);
        }
        for rx in ready {
            rx.await
                .map_err(|_| "an endpoint process stopped before listening")?;
        }
        let ports = lock(&ports).clone();
        Ok(Self {
            children,
            ports,
            answers,
            first,
        })
    }

    fn url(&self, n: usize) -> String {
        format!("http://{}:{}/hook", host(n), self.ports[n])
    }

    async fn stop(mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// The replica's sockets to endpoint hosts (remote 127.1.0.0/10 and up),
/// its open descriptors, and its RSS, from `/proc`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Sample {
    connections: usize,
    descriptors: usize,
    rss_mib: f64,
}

fn sample(pid: u32) -> Sample {
    let mut sockets = HashSet::new();
    let mut descriptors = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            descriptors += 1;
            if let Ok(target) = std::fs::read_link(entry.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
            {
                sockets.insert(inode.to_string());
            }
        }
    }
    let connections = std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 9 && sockets.contains(fields[9]) && remote_is_endpoint(fields[2])
        })
        .count();
    let rss_mib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| crate::stats::status_kib(&s, "VmRSS"))
        .unwrap_or(0) as f64
        / 1024.0;
    Sample {
        connections,
        descriptors,
        rss_mib,
    }
}

/// Whether a `/proc/net/tcp` remote address (`0302017F:1F90`, the address
/// in network order printed as a native integer) is an endpoint host.
fn remote_is_endpoint(text: &str) -> bool {
    let Some((ip, _)) = text.split_once(':') else {
        return false;
    };
    let Ok(ip) = u32::from_str_radix(ip, 16) else {
        return false;
    };
    let [a, b, ..] = ip.to_ne_bytes();
    a == 127 && b >= 1
}

/// Samples the replica every 250 ms until `stop`; returns the peaks and
/// the last sample.
async fn watch(pid: u32, stop: Arc<AtomicBool>) -> (Sample, Sample) {
    let mut peak = Sample::default();
    let mut last = Sample::default();
    while !stop.load(Relaxed) {
        last = tokio::task::spawn_blocking(move || sample(pid))
            .await
            .unwrap_or_default();
        peak.connections = peak.connections.max(last.connections);
        peak.descriptors = peak.descriptors.max(last.descriptors);
        peak.rss_mib = peak.rss_mib.max(last.rss_mib);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (peak, last)
}

/// The replica's count of records that ended as delivered and as
/// dead-lettered.
async fn outcomes(replica: &Replica) -> Option<(f64, f64)> {
    let names = [
        r#"hookline_deliveries_total{outcome="delivered"}"#,
        r#"hookline_deliveries_total{outcome="dead_lettered"}"#,
    ];
    let values = replica.metrics(&names).await?;
    Some((values[0], values[1]))
}

/// What a phase ended with: the replica's outcome counts, and its CPU time
/// when the last delivery it would make was counted (the events to stalled
/// hosts are dead-lettered seconds later, while the replica idles).
struct Ended {
    delivered: f64,
    dead_lettered: f64,
    cpu: Duration,
}

/// Waits until the replica counts `total` outcomes (delivered or
/// dead-lettered), at most [`PHASE_TIMEOUT`]; notes its CPU time when
/// `deliverable` were delivered.
async fn wait_outcomes(
    replica: &Replica,
    ticks: u64,
    total: f64,
    deliverable: f64,
    label: &str,
) -> Ended {
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut cpu = None;
    loop {
        let (delivered, dead_lettered) = outcomes(replica).await.unwrap_or((0.0, 0.0));
        if cpu.is_none() && delivered >= deliverable {
            cpu = Some(replica.cpu(ticks));
        }
        if delivered + dead_lettered >= total || started.elapsed() > PHASE_TIMEOUT {
            return Ended {
                delivered,
                dead_lettered,
                cpu: cpu.unwrap_or_else(|| replica.cpu(ticks)),
            };
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "endpoints {label}: {delivered} delivered, {dead_lettered} dead-lettered of {total}"
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A phase's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Phase {
    events: u64,
    delivered: f64,
    dead_lettered: f64,
    /// First to last 2xx answer of the phase.
    seconds: f64,
    per_second: f64,
    cpu_us_per_delivery: f64,
    latency_p50_us: Option<u64>,
    latency_p99_us: Option<u64>,
}

impl Bench {
    /// The endpoints run; `baseline` is this invocation's throughput run
    /// (key order), or `None` to run a small one here for the ratio.
    /// `slow` is this invocation's 100 ms endpoints run (key order), if it
    /// ran: slow endpoints at small scale, which tells the cost of scale
    /// apart from that of slow endpoints.
    pub async fn endpoints_run(
        &self,
        report: &mut Report,
        baseline: Option<&DeliveryRun>,
        slow: Option<&DeliveryRun>,
    ) -> Result<(), String> {
        let mut args = self.args.endpoints.clone();
        if self.args.quick {
            args.endpoint_hosts = args.endpoint_hosts.min(2_000);
            args.endpoint_tenants = args.endpoint_tenants.min(20_000);
            args.endpoint_events = args.endpoint_events.min(10_000);
            args.endpoint_secs = args.endpoint_secs.min(5);
        }
        let hosts_n = args.endpoint_hosts.max(1);
        let tenants = args.endpoint_tenants.max(hosts_n);
        let baseline = match baseline {
            Some(run) => run.clone(),
            None => {
                eprintln!("endpoints: a throughput run (key order) for the baseline");
                let drain = crate::delivery::Drain {
                    events: self.args.events.min(50_000),
                    ..self.drain("epbase", Order::Key)
                };
                self.delivery_run(&drain).await?
            }
        };

        let dns = dns_burst(hosts_n).await;
        eprintln!("endpoints: starting {hosts_n} endpoint hosts");
        let hosts = Hosts::start(hosts_n).await?;
        let setup = self.setup("endpoints", 0)?;
        eprintln!("endpoints: registering {tenants} tenants over {hosts_n} hosts");
        let registered = Instant::now();
        let producer = BulkProducer::new(5).map_err(|e| e.to_string())?;
        for i in 0..tenants {
            let record = json!({
                "url": hosts.url(i % hosts_n),
                "public_key": self.public_key_pem,
                "signing_secret": self.secret,
            });
            producer
                .send(
                    &setup.topics.tenants,
                    None,
                    tenant_id(i).as_bytes(),
                    record.to_string().as_bytes(),
                )
                .map_err(|e| e.to_string())?;
        }
        producer.flush().map_err(|e| e.to_string())?;
        let register_seconds = registered.elapsed().as_secs_f64();
        let settings = vec![
            ("TIMEOUT", humantime::format_duration(TIMEOUT).to_string()),
            ("MAX_ATTEMPTS", MAX_ATTEMPTS.to_string()),
            ("INITIAL_BACKOFF", INITIAL_BACKOFF.to_string()),
            (
                "POOL_MAX_IDLE_PER_HOST",
                args.endpoint_idle_per_host.to_string(),
            ),
            ("POOL_MAX_IDLE", args.endpoint_max_idle.to_string()),
        ];
        let started = Instant::now();
        let mut replica = self
            .start_replica(&setup, "replica", &settings)
            .map_err(|e| e.to_string())?;
        if let Err(e) = replica.wait_ready(Duration::from_secs(900)).await {
            replica.stop().await;
            hosts.stop().await;
            return Err(e);
        }
        let ready_seconds = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = sample(replica.pid());
        let stop_watch = Arc::new(AtomicBool::new(false));
        let watcher = tokio::spawn(watch(replica.pid(), stop_watch.clone()));

        // Burst: one event to each host, every host new to the replica.
        let mut seq = 0u64;
        let mut produced_total = 0u64;
        // Events to hosts that answer in time, so far.
        let mut deliverable = 0u64;
        let burst_from = unix_nanos();
        let mark = hosts_mark(&hosts);
        let cpu_before = replica.cpu(self.ticks);
        for n in 0..hosts_n {
            self.send_to(&producer, &setup.topics.events, n, seq)?;
            deliverable += u64::from(!stalls(n));
            seq += 1;
        }
        producer.flush().map_err(|e| e.to_string())?;
        produced_total += hosts_n as u64;
        let ended = wait_outcomes(
            &replica,
            self.ticks,
            produced_total as f64,
            deliverable as f64,
            "burst",
        )
        .await;
        let burst = phase(&hosts, mark, cpu_before, hosts_n as u64, &ended, (0.0, 0.0));
        let firsts: Vec<u64> = {
            let mut t: Vec<u64> = (0..hosts_n)
                .filter(|&n| !stalls(n))
                .map(|n| hosts.first[n].load(Relaxed))
                .filter(|&t| t > 0)
                .map(|t| ((u128::from(t)).saturating_sub(burst_from) / 1000) as u64)
                .collect();
            t.sort_unstable();
            t
        };
        let answering = (0..hosts_n).filter(|&n| !stalls(n)).count();
        let after_burst = sample(replica.pid());

        // Backlog across all tenants.
        eprintln!("endpoints: a backlog of {} events", args.endpoint_events);
        let before = outcomes(&replica).await.unwrap_or_default();
        let mark = hosts_mark(&hosts);
        let cpu_before = replica.cpu(self.ticks);
        for _ in 0..args.endpoint_events {
            let mut tenant = (mix(seq) % tenants as u64) as usize;
            // Only hosts that answer: an event to a stalled host holds its
            // partition's lowest offset for two timeouts, and the windows
            // behind such events would measure those, not the replica.
            while stalls(tenant % hosts_n) {
                tenant = (tenant + 1) % tenants;
            }
            self.send_to(&producer, &setup.topics.events, tenant, seq)?;
            deliverable += 1;
            seq += 1;
        }
        producer.flush().map_err(|e| e.to_string())?;
        produced_total += args.endpoint_events;
        let ended = wait_outcomes(
            &replica,
            self.ticks,
            produced_total as f64,
            deliverable as f64,
            "backlog",
        )
        .await;
        let backlog = phase(
            &hosts,
            mark,
            cpu_before,
            args.endpoint_events,
            &ended,
            before,
        );

        // Steady rate, for latency.
        eprintln!(
            "endpoints: {}/s for {} s",
            args.endpoint_rate, args.endpoint_secs
        );
        let before = outcomes(&replica).await.unwrap_or_default();
        let mark = hosts_mark(&hosts);
        let cpu_before = replica.cpu(self.ticks);
        let steady_producer = BulkProducer::new(0).map_err(|e| e.to_string())?;
        let n = args.endpoint_rate * args.endpoint_secs;
        let interval = Duration::from_secs(1).div_f64(args.endpoint_rate.max(1) as f64);
        let from = Instant::now();
        for i in 0..n {
            let due = from + interval.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let tenant = (mix(seq) % tenants as u64) as usize;
            self.send_to(&steady_producer, &setup.topics.events, tenant, seq)?;
            deliverable += u64::from(!stalls(tenant % hosts_n));
            seq += 1;
        }
        steady_producer.flush().map_err(|e| e.to_string())?;
        produced_total += n;
        let ended = wait_outcomes(
            &replica,
            self.ticks,
            produced_total as f64,
            deliverable as f64,
            "steady",
        )
        .await;
        let steady = phase(&hosts, mark, cpu_before, n, &ended, before);

        stop_watch.store(true, Relaxed);
        let (peak, _) = watcher.await.unwrap_or_default();
        let end = sample(replica.pid());
        let peak_rss_mib = replica.peak_rss_mib();
        replica.stop().await;
        hosts.stop().await;
        self.teardown(setup).await;

        let ratio = backlog.cpu_us_per_delivery / baseline.cpu_us_per_delivery;
        let slow_ratio = slow.map(|run| backlog.cpu_us_per_delivery / run.cpu_us_per_delivery);
        let stalled = (0..hosts_n).filter(|&n| stalls(n)).count();
        let what = format!("{hosts_n} hosts, {tenants} tenants");
        report.row(
            format!("endpoints: {what}"),
            format!(
                "answers log-normal (median {MEDIAN_MS} ms, σ {SIGMA}); {stalled} hosts stall past the {}s timeout",
                TIMEOUT.as_secs()
            ),
        );
        report.row(
            "  pool bounds: idle per host / idle in all",
            format!(
                "{} / {}",
                args.endpoint_idle_per_host, args.endpoint_max_idle
            ),
        );
        report.row(
            "  tenants registered / replica ready",
            format!("{register_seconds:.1} s / {ready_seconds:.1} s"),
        );
        let ms = |us: Option<u64>| us.map_or("-".into(), human_us);
        report.row(
            format!("  burst to {hosts_n} new hosts: first delivery, p50 / p99 / all {answering}"),
            format!(
                "{} / {} / {} ({} of {answering} hosts)",
                ms(percentile(&firsts, 0.5)),
                ms(percentile(&firsts, 0.99)),
                ms(firsts.last().copied()),
                firsts.len()
            ),
        );
        report.row(
            "  burst: deliveries/s, dead-lettered",
            format!("{:.0}, {:.0}", burst.per_second, burst.dead_lettered),
        );
        report.row(
            format!(
                "  backlog of {} (answering hosts): deliveries/s",
                args.endpoint_events
            ),
            format!(
                "{:.0} ({:.0} delivered, {:.0} dead-lettered)",
                backlog.per_second, backlog.delivered, backlog.dead_lettered
            ),
        );
        report.row(
            format!(
                "  steady {}/s: latency p50 / p99 (produce → endpoint)",
                args.endpoint_rate
            ),
            format!(
                "{} / {}",
                ms(steady.latency_p50_us),
                ms(steady.latency_p99_us)
            ),
        );
        report.row(
            "  CPU per delivery: backlog / steady",
            format!(
                "{:.1} µs / {:.1} µs",
                backlog.cpu_us_per_delivery, steady.cpu_us_per_delivery
            ),
        );
        report.goal(
            "  CPU per delivery at scale / throughput run",
            format!(
                "{ratio:.2}x ({:.1} µs / {:.1} µs)",
                backlog.cpu_us_per_delivery, baseline.cpu_us_per_delivery
            ),
            "≤ 1.5x",
            Some(ratio <= 1.5),
        );
        if let (Some(run), Some(slow_ratio)) = (slow, slow_ratio) {
            report.row(
                format!(
                    "  CPU per delivery at scale / {} ms endpoints run ({} tenants, one host)",
                    self.args.slow_delay_ms, self.args.slow_tenants
                ),
                format!(
                    "{slow_ratio:.2}x ({:.1} µs / {:.1} µs)",
                    backlog.cpu_us_per_delivery, run.cpu_us_per_delivery
                ),
            );
        }
        report.row(
            "  replica connections to hosts: idle / after burst / peak / end",
            format!(
                "{} / {} / {} / {}",
                idle.connections, after_burst.connections, peak.connections, end.connections
            ),
        );
        report.row(
            "  replica descriptors: idle / peak; RSS idle / peak",
            format!(
                "{} / {}; {:.0} MiB / {:.0} MiB",
                idle.descriptors, peak.descriptors, idle.rss_mib, peak_rss_mib
            ),
        );
        report.row(
            format!("  {} lookups of localhost, 512 at once", dns.0),
            format!("{:.0} ms", dns.1 * 1000.0),
        );
        report.insert(
            "endpoints",
            json!({
                "hosts": hosts_n, "tenants": tenants, "stalled_hosts": stalled,
                "answer_median_ms": MEDIAN_MS, "answer_sigma": SIGMA,
                "timeout_s": TIMEOUT.as_secs(), "max_attempts": MAX_ATTEMPTS,
                "pool_max_idle_per_host": args.endpoint_idle_per_host,
                "pool_max_idle": args.endpoint_max_idle,
                "register_seconds": register_seconds, "ready_seconds": ready_seconds,
                "burst": burst, "first_delivery_us": {
                    "p50": percentile(&firsts, 0.5), "p99": percentile(&firsts, 0.99),
                    "max": firsts.last(), "hosts_reached": firsts.len(), "hosts_answering": answering,
                },
                "backlog": backlog, "steady": steady, "steady_rate": args.endpoint_rate,
                "baseline_cpu_us_per_delivery": baseline.cpu_us_per_delivery,
                "cpu_ratio_to_throughput": ratio,
                "slow_cpu_us_per_delivery": slow.map(|run| run.cpu_us_per_delivery),
                "cpu_ratio_to_slow": slow_ratio,
                "samples": {"idle": idle, "after_burst": after_burst, "peak": peak, "end": end},
                "peak_rss_mib": peak_rss_mib,
                "localhost_lookups": {"count": dns.0, "seconds": dns.1},
            }),
        );
        Ok(())
    }

    /// Queues event `seq` for tenant `tenant` on its partition.
    fn send_to(
        &self,
        producer: &BulkProducer,
        topic: &str,
        tenant: usize,
        seq: u64,
    ) -> Result<(), String> {
        producer
            .send(
                topic,
                Some(self.partition_of(tenant)),
                tenant_id(tenant).as_bytes(),
                &Self::event(seq, unix_nanos(), &self.pad),
            )
            .map_err(|e| e.to_string())
    }
}

/// A phase's figures from the answers after `mark` and the replica's
/// outcome counts and CPU time when it `ended`.
fn phase(
    hosts: &Hosts,
    mark: usize,
    cpu_before: Duration,
    events: u64,
    ended: &Ended,
    (delivered_before, dead_before): (f64, f64),
) -> Phase {
    let cpu = ended.cpu.saturating_sub(cpu_before);
    // A stalled host's late answers reached no one: the replica had
    // given up on them.
    let answers: Vec<Answer> = lock(&hosts.answers)[mark..]
        .iter()
        .filter(|a| !stalls(a.host))
        .copied()
        .collect();
    let mut latencies: Vec<u64> = answers
        .iter()
        .map(|a| (a.arrived_ns.saturating_sub(a.produced_ns) / 1000) as u64)
        .collect();
    latencies.sort_unstable();
    let first = answers.iter().map(|a| a.arrived_ns).min().unwrap_or(0);
    let last = answers.iter().map(|a| a.arrived_ns).max().unwrap_or(0);
    let window = Duration::from_nanos((last.saturating_sub(first)) as u64);
    let delivered = ended.delivered - delivered_before;
    Phase {
        events,
        delivered,
        dead_lettered: ended.dead_lettered - dead_before,
        seconds: window.as_secs_f64(),
        per_second: per_second(answers.len() as u64, window),
        cpu_us_per_delivery: cpu.as_secs_f64() * 1e6 / delivered.max(1.0),
        latency_p50_us: percentile(&latencies, 0.5),
        latency_p99_us: percentile(&latencies, 0.99),
    }
}

/// How many answers have arrived so far: a phase counts those after it.
fn hosts_mark(hosts: &Hosts) -> usize {
    lock(&hosts.answers).len()
}

fn tenant_id(i: usize) -> String {
    format!("ep-t{i:07}")
}

/// `n` lookups of `localhost` through the system resolver (what the
/// replica's resolver calls, on the blocking pool), at most 512 at once:
/// (lookups, seconds).
async fn dns_burst(n: usize) -> (usize, f64) {
    let permits = Arc::new(tokio::sync::Semaphore::new(512));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let _ = tokio::net::lookup_host(("localhost", 80)).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    (n, started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_distinct_loopback_addresses_off_127_0() {
        let all: HashSet<IpAddr> = (0..100_000).map(host).collect();
        assert_eq!(all.len(), 100_000);
        for ip in &all {
            let IpAddr::V4(v4) = ip else { panic!() };
            assert_eq!(v4.octets()[0], 127);
            assert!(v4.octets()[1] >= 1, "{ip}");
            assert_ne!(v4.octets()[3], 0, "{ip}");
        }
    }

    #[test]
    fn answer_times_are_log_normal_around_the_median() {
        let mut times: Vec<u64> = (0..100_000u64)
            .map(|k| answer_time(k).as_micros() as u64)
            .collect();
        times.sort_unstable();
        let p50 = percentile(&times, 0.5).unwrap() as f64 / 1000.0;
        let p99 = percentile(&times, 0.99).unwrap() as f64 / 1000.0;
        assert!((60.0..80.0).contains(&p50), "{p50}");
        // e^(2.326 σ) × the median.
        assert!((600.0..850.0).contains(&p99), "{p99}");
    }

    #[test]
    fn remote_endpoint_addresses_are_read_from_proc() {
        // 127.1.2.3 as /proc/net/tcp prints it on a little-endian machine.
        let text = format!("{:08X}:1F90", u32::from_ne_bytes([127, 1, 2, 3]));
        assert!(remote_is_endpoint(&text));
        let broker = format!("{:08X}:2384", u32::from_ne_bytes([127, 0, 0, 1]));
        assert!(!remote_is_endpoint(&broker));
    }
}
