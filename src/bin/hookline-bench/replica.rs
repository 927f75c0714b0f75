//! `hookline` processes: the real release binary, run as a separate process
//! so that its CPU time and peak RSS can be read from `/proc` without the
//! bench's own producer and receiver in the figures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::stats::{cpu_ticks, prometheus_value, status_kib};

/// How often [`Replica::watch`] scrapes the replica's metrics.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// The `hookline` binary next to this one (both come from the same
/// `cargo build --release`).
pub fn hookline_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("hookline")
}

/// A `hookline` command with a clean environment: no inherited
/// `HOOKLINE__` overrides, logs at `info` as in production.
pub fn hookline(dir: &Path) -> Command {
    wrapped(&[], dir)
}

/// [`hookline`], run by the command `wrapper` when it is not empty
/// (`valgrind --tool=callgrind`, `strace -c`).
pub fn wrapped(wrapper: &[String], dir: &Path) -> Command {
    let mut command = match wrapper {
        [] => Command::new(hookline_bin()),
        [program, args @ ..] => {
            let mut command = Command::new(program);
            command.args(args).arg(hookline_bin());
            command
        }
    };
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HOOKLINE__") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .env(
            "HOOKLINE__KAFKA__BOOTSTRAP_SERVERS",
            crate::kafka::BOOTSTRAP,
        )
        .env("RUST_LOG", "info");
    command
}

/// Clock ticks per second of `/proc/PID/stat`.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// A running replica.
pub struct Replica {
    pub child: Child,
    pub listen: String,
    pub log: PathBuf,
    /// For `/readyz` and `/metrics`.
    client: reqwest::Client,
}

impl Replica {
    /// Starts `hookline run` with the run's topics and group, and the
    /// `[delivery]` settings in `delivery` (key, value) on top of the
    /// defaults, e.g. `("ORDERING", "partition")`.
    pub fn start(
        wrapper: &[String],
        dir: &Path,
        name: &str,
        topology: &Path,
        group: &str,
        delivery: &[(&str, String)],
    ) -> std::io::Result<Self> {
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let log = dir.join(format!("{name}.log"));
        let mut command = wrapped(wrapper, dir);
        command
            .args(["run", "--topology"])
            .arg(topology)
            .env("HOOKLINE__KAFKA__GROUP_ID", group)
            .env("HOOKLINE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true")
            .env("HOOKLINE__TELEMETRY__LISTEN", &listen);
        for (key, value) in delivery {
            command.env(format!("HOOKLINE__DELIVERY__{key}"), value);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            child,
            listen,
            log,
            client,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) used so far.
    pub fn cpu(&self, ticks_per_second: u64) -> Duration {
        let ticks = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .ok()
            .and_then(|s| cpu_ticks(&s))
            .unwrap_or(0);
        Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64)
    }

    /// Peak resident set size so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM")
    }

    /// Resident set size now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS")
    }

    fn status_mib(&self, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| status_kib(&s, field))
            .unwrap_or(0) as f64
            / 1024.0
    }

    /// The values of unlabelled series on the replica's `/metrics`, in the
    /// order of `names`; `None` when it does not answer.
    pub async fn metrics(&self, names: &[&str]) -> Option<Vec<f64>> {
        let url = format!("http://{}/metrics", self.listen);
        let text = self.client.get(&url).send().await.ok()?.text().await.ok()?;
        names
            .iter()
            .map(|name| prometheus_value(&text, name))
            .collect()
    }

    /// Samples the unlabelled series `names` every [`WATCH_INTERVAL`] until
    /// `stop`: (seconds since `started`, their values). A scrape that
    /// fails is skipped.
    pub async fn watch(
        &self,
        names: &[&str],
        started: Instant,
        stop: &CancellationToken,
    ) -> Vec<(f64, Vec<f64>)> {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return samples,
                _ = tick.tick() => {}
            }
            if let Some(values) = self.metrics(names).await {
                samples.push((started.elapsed().as_secs_f64(), values));
            }
        }
    }

    /// Waits until `/readyz` answers 200, at most `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let url = format!("http://{}/readyz", self.listen);
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "replica exited with {status}; see {}",
                    self.log.display()
                ));
            }
            if let Ok(r) = self.client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!(
            "replica not ready after {timeout:?}; see {}",
            self.log.display()
        ))
    }

    /// SIGTERM, then SIGKILL if it has not drained within 30 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now, for the replica's telemetry.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Creates the run's topics with the real binary.
pub fn setup_topics(dir: &Path, topology: &Path) -> Result<(), String> {
    let out = hookline(dir)
        .args(["setup-topics", "--topology"])
        .arg(topology)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "setup-topics failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
