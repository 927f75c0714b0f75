//! `hookline demo`: runs [`crate::demo`] and shows it: stages and live
//! progress on stderr, the summary table and a decrypted sample on stdout.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::cli::DemoArgs;
use crate::config::LogFormat;
use crate::demo::latency::short;
use crate::demo::{Demo, DemoOptions, DemoSummary, TenantProgress};
use crate::telemetry;

/// More tenants than this only makes key generation slow.
const MAX_TENANTS: u32 = 50;

/// Exit code after Ctrl-C before the summary (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// How often a progress line is printed when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    // The demo's own output is the point: the replica's warnings (each dead
    // letter is one) would drown it, so only errors are logged unless
    // RUST_LOG says otherwise. librdkafka's own log reports the mock's
    // connections closing at shutdown, which is expected here.
    telemetry::init_logging_with_default(LogFormat::Text, "error,rdkafka=off");
    if args.tenants == 0 || args.tenants > MAX_TENANTS {
        bail!("--tenants must be between 1 and {MAX_TENANTS}");
    }
    let options = DemoOptions {
        events: u64::from(args.events),
        tenants: args.tenants as usize,
    };

    let interrupted = CancellationToken::new();
    tokio::spawn({
        let interrupted = interrupted.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.cancel();
            }
        }
    });

    eprintln!(
        "starting an embedded Kafka cluster, {} tenants with fresh 2048-bit keys and their local \
         receivers (RUST_LOG=info shows the replica's logs)",
        options.tenants
    );
    let mut demo = Demo::start(&options)
        .await
        .context("cannot start the demo")?;
    eprintln!(
        "replica ready on {}; producing {} events",
        demo.bootstrap_servers(),
        options.events
    );
    let mut progress = Progress::new();
    let finished = tokio::select! {
        result = async {
            demo.produce(options.events, |p| progress.show(p)).await?;
            demo.wait_until_done(|p| progress.show(p)).await
        } => Some(result),
        _ = interrupted.cancelled() => None,
    };
    let summary = match finished {
        Some(Ok(summary)) => summary,
        Some(Err(e)) => {
            let _ = demo.stop().await;
            return Err(e).context("the demo failed");
        }
        None => {
            eprintln!("interrupted; stopping");
            demo.stop().await.context("stopping the demo")?;
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    };
    progress.finish();
    print!("{}", render_summary(&summary));
    std::io::stdout().flush().context("writing the summary")?;

    if args.keep_running {
        eprintln!("still delivering one event every half second; Ctrl-C stops");
        let mut progress = Progress::new();
        let result = demo
            .keep_running(interrupted.clone(), |p| progress.show(p))
            .await;
        progress.finish();
        if let Err(e) = result {
            let _ = demo.stop().await;
            return Err(e).context("the demo failed");
        }
    }
    demo.stop().await.context("stopping the demo")?;
    Ok(ExitCode::SUCCESS)
}

/// Live progress on stderr: a table redrawn in place on a terminal, a line
/// per second otherwise (logs, CI).
struct Progress {
    terminal: bool,
    drawn_lines: usize,
    last_line: Option<Instant>,
    /// The latest plain line, when the once-a-second limit held it back.
    pending: Option<String>,
}

impl Progress {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            drawn_lines: 0,
            last_line: None,
            pending: None,
        }
    }

    fn show(&mut self, tenants: &[TenantProgress]) {
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let table = progress_table(tenants);
            let mut out = String::new();
            if self.drawn_lines > 0 {
                // Back to the first line of the previous drawing.
                let _ = write!(out, "\x1b[{}A", self.drawn_lines);
            }
            for line in table.lines() {
                let _ = writeln!(out, "\r\x1b[2K{line}");
            }
            self.drawn_lines = table.lines().count();
            let _ = stderr.write_all(out.as_bytes());
        } else {
            let line = progress_line(tenants);
            if self
                .last_line
                .is_none_or(|at| at.elapsed() >= PLAIN_PROGRESS_EVERY)
            {
                self.last_line = Some(Instant::now());
                self.pending = None;
                let _ = writeln!(stderr, "{line}");
            } else {
                self.pending = Some(line);
            }
        }
        let _ = stderr.flush();
    }

    /// Leaves the last drawing in place; a plain log gets its final line.
    fn finish(&mut self) {
        if let Some(line) = self.pending.take() {
            eprintln!("{line}");
        }
        self.drawn_lines = 0;
    }
}

fn progress_table(tenants: &[TenantProgress]) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header([
            "TENANT",
            "PRODUCED",
            "DELIVERED",
            "RETRIES",
            "DEAD-LETTERED",
        ]);
    for t in tenants {
        table.add_row([
            t.tenant.clone(),
            t.produced.to_string(),
            t.delivered.to_string(),
            t.retries.to_string(),
            t.dead_lettered.to_string(),
        ]);
    }
    right_align_numbers(&mut table, 1..5);
    table.to_string()
}

fn progress_line(tenants: &[TenantProgress]) -> String {
    let sum = |f: fn(&TenantProgress) -> u64| tenants.iter().map(f).sum::<u64>();
    format!(
        "progress: {} produced, {} delivered, {} retries, {} dead-lettered",
        sum(|t| t.produced),
        sum(|t| t.delivered),
        sum(|t| t.retries),
        sum(|t| t.dead_lettered),
    )
}

/// The summary printed on stdout: one row per tenant, a total, whether the
/// flaky tenant held back its partition-mates, and the sample delivery.
pub fn render_summary(summary: &DemoSummary) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header([
            "TENANT",
            "PARTITION",
            "BEHAVIOUR",
            "PRODUCED",
            "DELIVERED",
            "FILTERED",
            "DEAD-LETTERED",
            "RETRIES",
            "LATENCY P50",
            "MAX",
        ]);
    let mut total = [0u64; 5];
    for t in &summary.tenants {
        let numbers = [
            t.produced,
            t.delivered,
            t.filtered,
            t.dead_lettered,
            t.retries,
        ];
        for (sum, n) in total.iter_mut().zip(numbers) {
            *sum += n;
        }
        let partition = t.partition.map_or_else(String::new, |p| p.to_string());
        let mut row = vec![t.tenant.clone(), partition, t.role.describe()];
        row.extend(numbers.iter().map(u64::to_string));
        row.extend(match t.latency {
            Some(latency) => [short(latency.p50), short(latency.max)],
            None => ["-".to_string(), "-".to_string()],
        });
        table.add_row(row);
    }
    let mut row = vec!["total".to_string(), String::new(), String::new()];
    row.extend(total.iter().map(u64::to_string));
    table.add_row(row);
    right_align_numbers(&mut table, 1..2);
    right_align_numbers(&mut table, 3..10);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nhookline demo: {} events for {} tenants, every one delivered, filtered or \
         dead-lettered in {:.1}s\n",
        total[0],
        summary.tenants.len(),
        summary.elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "{table}");
    let _ = writeln!(
        out,
        "\nLatency: from an event's produce to its delivery, as its receiver saw it."
    );
    if let Some(isolation) = &summary.isolation {
        let _ = writeln!(out, "{isolation}");
    }
    if let Some(sample) = &summary.sample {
        let tenant = sample["tenant"].as_str().unwrap_or("a tenant");
        let _ = writeln!(
            out,
            "\nOne delivery, as {tenant}'s receiver verified its signature and decrypted it:"
        );
        // Pretty-printing a `serde_json::Value` cannot fail.
        let pretty = serde_json::to_string_pretty(sample).expect("a JSON value serialises");
        let _ = writeln!(out, "{pretty}");
    }
    out
}

fn right_align_numbers(table: &mut comfy_table::Table, columns: std::ops::Range<usize>) {
    for index in columns {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
}
