//! The restore run: a replica starting over a large tenants topic.

use std::time::Duration;

use serde_json::json;

use crate::kafka::BulkProducer;
use crate::stats::log_field;
use crate::{Bench, Report};

/// The restore's own time (from the replica's log), the time until
/// `/readyz` (which also waits for the group join) and the peak RSS.
pub struct RestoreRun {
    tenants: u64,
    restore_seconds: Option<f64>,
    ready_seconds: f64,
    peak_rss_mib: f64,
}

impl RestoreRun {
    pub fn report(&self, report: &mut Report) {
        let restored = self.restore_seconds.map_or("-".into(), |s| {
            format!("{s:.1} s (ready {:.1} s)", self.ready_seconds)
        });
        report.goal(
            format!("restore {} tenants", self.tenants),
            restored,
            "≤ 10 s",
            self.restore_seconds.map(|s| s <= 10.0),
        );
        let megabytes = self.peak_rss_mib * 1024.0 * 1024.0 / 1e6;
        report.goal(
            "restore peak RSS",
            format!("{:.0} MiB", self.peak_rss_mib),
            "≤ 300 MB",
            Some(megabytes <= 300.0),
        );
        report.insert(
            "restore",
            json!({"tenants": self.tenants, "restore_seconds": self.restore_seconds,
                   "ready_seconds": self.ready_seconds, "peak_rss_mib": self.peak_rss_mib}),
        );
    }
}

impl Bench {
    /// A replica starting over `restore_tenants` records.
    pub async fn restore_run(&self) -> Result<RestoreRun, String> {
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
        let mut replica = self
            .start_replica(&setup, "replica", &[])
            .map_err(|e| e.to_string())?;
        let ready = replica.wait_ready(Duration::from_secs(120)).await;
        let peak_rss_mib = replica.peak_rss_mib();
        let log = replica.log.clone();
        replica.stop().await;
        let restore_ms = std::fs::read_to_string(&log).ok().and_then(|text| {
            text.lines()
                .find(|l| l.contains("tenant table restored"))
                .and_then(|l| log_field(l, "total_ms"))
        });
        self.teardown(setup).await;
        let ready = ready?;
        Ok(RestoreRun {
            tenants: n,
            restore_seconds: restore_ms.map(|ms| ms as f64 / 1000.0),
            ready_seconds: ready.as_secs_f64(),
            peak_rss_mib,
        })
    }
}
