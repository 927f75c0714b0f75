//! The real `hookline` binary as a child process, for tests where a process
//! must start, be signalled, or die.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `hookline` command for this test: its topology, its group, loopback
/// destinations allowed, quick retries.
pub fn command(broker: &super::Broker, topology: &std::path::Path) -> Command {
    let mut command = super::hookline(&broker.bootstrap);
    command
        .env("HOOKLINE__TOPOLOGY", topology)
        .env("HOOKLINE__KAFKA__GROUP_ID", broker.name("group"))
        .env("HOOKLINE__KAFKA__SESSION_TIMEOUT", "6s")
        .env("HOOKLINE__KAFKA__DRAIN_TIMEOUT", "3s")
        .env("HOOKLINE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("HOOKLINE__DELIVERY__INITIAL_BACKOFF", "50ms")
        .env("HOOKLINE__DELIVERY__MAX_BACKOFF", "200ms")
        .env("HOOKLINE__TELEMETRY__LISTEN", "127.0.0.1:0");
    command
}

/// Runs `command` with `args` to its end: exit code, stdout and stderr.
pub fn output(mut command: Command, args: &[&str]) -> (Option<i32>, String, String) {
    let out = command.args(args).output().expect("run hookline");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `hookline` whose stdout and stderr are collected line by line.
pub struct Spawned {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    pub fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hookline");
        let stdout = collect_lines(child.stdout.take().expect("stdout is piped"));
        let stderr = collect_lines(child.stderr.take().expect("stderr is piped"));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// The lines written to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until a stderr line contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{needle}` not logged within {timeout:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status if the process has exited, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll hookline")
    }

    /// Waits for the "telemetry listening on ADDR" line and returns ADDR.
    pub async fn telemetry_addr(&self, timeout: Duration) -> std::net::SocketAddr {
        self.address_after("telemetry listening on ", timeout).await
    }

    /// Waits for a stderr line with `needle` followed by an address, as
    /// servers bound to port 0 log it, and returns the address.
    pub async fn address_after(&self, needle: &str, timeout: Duration) -> std::net::SocketAddr {
        self.wait_for_log(needle, timeout).await;
        let stderr = self.stderr();
        let line = stderr
            .lines()
            .find(|l| l.contains(needle))
            .expect("the line just seen");
        let rest = &line[line.find(needle).expect("the needle just seen") + needle.len()..];
        let addr = rest
            .split(|c: char| c.is_whitespace() || c == '"')
            .next()
            .unwrap_or_default();
        addr.parse()
            .unwrap_or_else(|e| panic!("`{addr}` in `{line}`: {e}"))
    }

    /// How many stderr lines contain `needle` so far.
    pub fn count_log(&self, needle: &str) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for hookline") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hookline did not exit within {timeout:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `pipe` line by line on a thread of its own (so that a full pipe
/// never blocks the child) into a shared list.
fn collect_lines(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines: Arc<Mutex<Vec<String>>> = Default::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}
