//! The restore runs: a replica, then the tenant API, starting over a large
//! tenants topic (100,000 and 1,000,000 records by default).
//!
//! Every record has a 2048-bit public key, a signing secret of its own and
//! two event patterns, and its URL points at the bench's receiver. The keys
//! come from a small pool of distinct keys (generating a million takes
//! hours), but every record carries its own copy of its key's PEM, as a
//! real record does, and the replica keeps one per tenant.
//!
//! Measured per size: the replica's restore (`total_ms` of its "tenant
//! table restored" line) and time to `/readyz`, its peak RSS (`VmHWM`) and
//! its RSS once ready (idle) and after one delivery to each of
//! `--restore-active` tenants (active), each as bytes per tenant over a
//! replica with no tenants; then `hookline api` over the same topic: its
//! restore, peak RSS and RSS, and a write acknowledged and read back (a
//! tenant created, then read with its API key), median of several.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hookline::crypto::{PrivateKey, SigningSecret};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::kafka::BulkProducer;
use crate::replica::hookline;
use crate::stats::{log_field, median, status_kib};
use crate::{Bench, Report};

/// Distinct public keys the records take turns with.
const KEY_POOL: usize = 8;

/// Writes read back through the API, for the median.
const API_WRITES: usize = 10;

/// The API's admin token in the bench (long enough for `api.admin_token`).
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";

/// One restore size.
#[derive(serde::Serialize)]
pub struct RestoreRun {
    tenants: u64,
    restore_seconds: Option<f64>,
    ready_seconds: f64,
    peak_rss_mib: f64,
    /// RSS once restored and ready, before any delivery.
    idle_rss_mib: f64,
    /// Tenants that got events (one each unless `--restore-events` says
    /// more), the events delivered, and the RSS after them.
    active_tenants: u64,
    active_delivered: u64,
    active_rss_mib: f64,
    /// RSS of a replica with no tenants, subtracted for bytes per tenant.
    empty_rss_mib: f64,
    api: Option<ApiRun>,
}

#[derive(serde::Serialize)]
struct ApiRun {
    restore_seconds: Option<f64>,
    ready_seconds: f64,
    peak_rss_mib: f64,
    rss_mib: f64,
    /// Creating a tenant (acknowledged by the broker and applied), then
    /// reading it back with its API key: medians.
    write_ms: Option<f64>,
    read_ms: Option<f64>,
}

impl RestoreRun {
    /// Bytes per tenant of `rss_mib` over a replica with no tenants.
    fn per_tenant(&self, rss_mib: f64) -> f64 {
        (rss_mib - self.empty_rss_mib).max(0.0) * 1024.0 * 1024.0 / self.tenants.max(1) as f64
    }

    pub fn report(runs: &[RestoreRun], report: &mut Report) {
        for run in runs {
            let n = run.tenants;
            let restored = run.restore_seconds.map_or("-".into(), |s| {
                format!("{s:.1} s (ready {:.1} s)", run.ready_seconds)
            });
            let big = n >= 1_000_000;
            report.goal(
                format!("restore {n} tenants"),
                restored,
                "≤ 10 s",
                run.restore_seconds.map(|s| s <= 10.0),
            );
            report.goal(
                format!("restore {n}: peak RSS"),
                format!("{:.0} MiB", run.peak_rss_mib),
                if big { "≤ 1 GiB" } else { "" },
                big.then_some(run.peak_rss_mib <= 1024.0),
            );
            report.row(
                format!("restore {n}: RSS idle / per tenant"),
                format!(
                    "{:.0} MiB / {:.0} B",
                    run.idle_rss_mib,
                    run.per_tenant(run.idle_rss_mib)
                ),
            );
            let active_extra = (run.active_rss_mib - run.idle_rss_mib).max(0.0) * 1024.0 * 1024.0
                / run.active_tenants.max(1) as f64;
            report.row(
                format!(
                    "restore {n}: RSS after {} events to {} tenants / more per active tenant",
                    run.active_delivered, run.active_tenants
                ),
                format!("{:.0} MiB / {active_extra:.0} B", run.active_rss_mib),
            );
            if let Some(api) = &run.api {
                let restored = api.restore_seconds.map_or("-".into(), |s| {
                    format!("{s:.1} s (ready {:.1} s)", api.ready_seconds)
                });
                report.row(format!("API over {n} tenants: restore"), restored);
                report.row(
                    format!("API over {n} tenants: peak RSS / RSS"),
                    format!("{:.0} MiB / {:.0} MiB", api.peak_rss_mib, api.rss_mib),
                );
                let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} ms"));
                report.row(
                    format!("API over {n} tenants: write acknowledged / read back"),
                    format!("{} / {}", ms(api.write_ms), ms(api.read_ms)),
                );
            }
        }
        report.insert("restore", json!(runs));
    }
}

impl Bench {
    /// Every size of `--restore-tenants`, over one pool of keys.
    pub async fn restore_runs(&self, report: &mut Report) -> Result<(), String> {
        eprintln!("restore: generating {KEY_POOL} keys");
        let keys = (0..KEY_POOL)
            .map(|_| PrivateKey::generate(2048).map(|k| k.public_key().to_spki_pem()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let empty_rss_mib = self.empty_replica_rss().await?;
        let mut runs = Vec::new();
        for &n in &self.args.restore_tenants {
            runs.push(self.restore_run(n, &keys, empty_rss_mib).await?);
        }
        RestoreRun::report(&runs, report);
        Ok(())
    }

    /// RSS of a ready replica over an empty tenants topic.
    async fn empty_replica_rss(&self) -> Result<f64, String> {
        let setup = self.setup("restore0", 0)?;
        let mut replica = self
            .start_replica(&setup, "replica", &[])
            .map_err(|e| e.to_string())?;
        let ready = replica.wait_ready(Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = replica.rss_mib();
        replica.stop().await;
        self.teardown(setup).await;
        ready?;
        Ok(rss)
    }

    /// A replica, then the API, starting over `n` tenant records.
    async fn restore_run(
        &self,
        n: u64,
        keys: &[String],
        empty_rss_mib: f64,
    ) -> Result<RestoreRun, String> {
        let setup = self.setup(&format!("restore{n}"), 0)?;
        eprintln!("restore: producing {n} tenant records");
        let producer = BulkProducer::new(5).map_err(|e| e.to_string())?;
        for i in 0..n {
            let record = json!({
                "url": self.receiver.url(i as usize),
                "public_key": keys[i as usize % keys.len()],
                "signing_secret": SigningSecret::generate().to_whsec().expose_secret(),
                "events": ["order.*", "invoice.paid"],
            });
            producer
                .send(
                    &setup.topics.tenants,
                    None,
                    restore_tenant_id(i).as_bytes(),
                    record.to_string().as_bytes(),
                )
                .map_err(|e| e.to_string())?;
        }
        producer.flush().map_err(|e| e.to_string())?;

        eprintln!("restore: a replica over {n} tenants");
        let mut replica = self
            .start_replica(&setup, "replica", &[])
            .map_err(|e| e.to_string())?;
        let ready = match replica.wait_ready(Duration::from_secs(300)).await {
            Ok(ready) => ready,
            Err(e) => {
                replica.stop().await;
                self.teardown(setup).await;
                return Err(e);
            }
        };
        let peak_rss_mib = replica.peak_rss_mib();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_rss_mib = replica.rss_mib();

        let active = self.args.restore_active.min(n);
        let events = match self.args.restore_events {
            0 => active,
            events => events,
        };
        let active_delivered = self.deliver_round_robin(&setup, active, events).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let active_rss_mib = replica.rss_mib();
        let log = replica.log.clone();
        replica.stop().await;
        let restore_ms = first_log_field(&log, "tenant table restored", "total_ms");

        eprintln!("restore: the API over {n} tenants");
        let api = match self.api_run(&setup, keys).await {
            Ok(api) => Some(api),
            Err(e) => {
                eprintln!("restore: the API run failed: {e}");
                None
            }
        };
        self.teardown(setup).await;
        Ok(RestoreRun {
            tenants: n,
            restore_seconds: restore_ms.map(|ms| ms as f64 / 1000.0),
            ready_seconds: ready.as_secs_f64(),
            peak_rss_mib,
            idle_rss_mib,
            active_tenants: active,
            active_delivered,
            active_rss_mib,
            empty_rss_mib,
            api,
        })
    }

    /// `events` events to the first `tenants` tenants, round-robin; waits
    /// (at most two minutes) until the receiver has them all, and returns
    /// how many it got.
    async fn deliver_round_robin(
        &self,
        setup: &crate::Setup,
        tenants: u64,
        events: u64,
    ) -> Result<u64, String> {
        let counts = &self.receiver.counts;
        counts.reset(Default::default());
        let producer = BulkProducer::new(5).map_err(|e| e.to_string())?;
        for i in 0..events {
            let value = format!(
                r#"{{"id":"r{i}","type":"order.created","data":{{"seq":{i},"pad":"{}"}}}}"#,
                &self.pad[..64]
            );
            producer
                .send(
                    &setup.topics.events,
                    None,
                    restore_tenant_id(i % tenants.max(1)).as_bytes(),
                    value.as_bytes(),
                )
                .map_err(|e| e.to_string())?;
        }
        producer.flush().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let delivered = || counts.delivered.load(std::sync::atomic::Ordering::Relaxed);
        while delivered() < events && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(delivered())
    }

    /// `hookline api` over the run's topics: restore, memory, and writes
    /// read back.
    async fn api_run(&self, setup: &crate::Setup, keys: &[String]) -> Result<ApiRun, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        drop(listener);
        let log = setup.dir.join("api.log");
        let started = Instant::now();
        let child = hookline(&setup.dir)
            .args(["api", "--listen", &addr.to_string()])
            .env("HOOKLINE__TOPOLOGY", &setup.topology)
            .env("HOOKLINE__API__ADMIN_TOKEN", ADMIN_TOKEN)
            .env("HOOKLINE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut api = ApiProcess(child);
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let base = format!("http://{addr}");
        let ready = loop {
            if let Ok(Some(status)) = api.0.try_wait() {
                return Err(format!(
                    "the API exited with {status}; see {}",
                    log.display()
                ));
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err(format!("the API not ready; see {}", log.display()));
            }
            if let Ok(r) = client.get(format!("{base}/openapi.json")).send().await
                && r.status().is_success()
            {
                break started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let peak_rss_mib = api.status_mib("VmHWM");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_mib = api.status_mib("VmRSS");

        let (mut writes, mut reads) = (Vec::new(), Vec::new());
        for i in 0..API_WRITES {
            let id = format!("api-written-{i}");
            let clock = Instant::now();
            let created = client
                .post(format!("{base}/v1/tenants"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({
                    "id": id,
                    "url": self.receiver.url(0),
                    "public_key": keys[i % keys.len()],
                    "events": ["order.*", "invoice.paid"],
                }))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if created.status() != reqwest::StatusCode::CREATED {
                return Err(format!("creating a tenant: {}", created.status()));
            }
            let body: Value = created.json().await.map_err(|e| e.to_string())?;
            writes.push(clock.elapsed().as_secs_f64() * 1000.0);
            let api_key = body["api_key"].as_str().unwrap_or_default().to_string();
            let clock = Instant::now();
            let read = client
                .get(format!("{base}/v1/tenants/{id}"))
                .bearer_auth(api_key)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !read.status().is_success() {
                return Err(format!("reading a tenant back: {}", read.status()));
            }
            let _ = read.bytes().await;
            reads.push(clock.elapsed().as_secs_f64() * 1000.0);
        }
        drop(api);
        let restore_ms = first_log_field(&log, "tenant records restored", "elapsed_ms");
        Ok(ApiRun {
            restore_seconds: restore_ms.map(|ms| ms as f64 / 1000.0),
            ready_seconds: ready.as_secs_f64(),
            peak_rss_mib,
            rss_mib,
            write_ms: median(&writes),
            read_ms: median(&reads),
        })
    }
}

/// Tenant *i* of the restore runs.
fn restore_tenant_id(i: u64) -> String {
    format!("tenant-{i:07}")
}

/// `field=` of the first line of `log` that contains `message`.
fn first_log_field(log: &std::path::Path, message: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(log).ok().and_then(|text| {
        text.lines()
            .find(|l| l.contains(message))
            .and_then(|l| log_field(l, field))
    })
}

/// The API process; killed when dropped (it holds no state worth a drain).
struct ApiProcess(Child);

impl ApiProcess {
    fn status_mib(&self, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .ok()
            .and_then(|s| status_kib(&s, field))
            .unwrap_or(0) as f64
            / 1024.0
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
