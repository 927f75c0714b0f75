//! `hookline dlq replay|stats`: the operator's view of the dead-letter
//! topic. The work is `recovery`'s; this module turns flags into a filter,
//! shows progress on stderr and prints the result on stdout.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Result;
use comfy_table::{CellAlignment, Table};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::count;
use crate::cli::{DlqCommand, DlqReplayArgs, DlqStatsArgs};
use crate::config::Config;
use crate::delivery::dead_letter::DlqReason;
use crate::events::timestamp::format_unix_millis;
use crate::recovery::{
    self, DeadLetterFilter, LetterKey, Progress, ReplayOptions, ReplaySummary, ReplayTopics,
    Tallies, Tally, TimeBound,
};

pub async fn run(command: DlqCommand, config: &Config) -> Result<ExitCode> {
    match command {
        DlqCommand::Replay(args) => replay(args, config).await,
        DlqCommand::Stats(args) => stats(args, config).await,
    }
}

async fn replay(args: DlqReplayArgs, config: &Config) -> Result<ExitCode> {
    // One instant for both bounds, so that `--since 2h --until 1h` is
    // exactly an hour.
    let now = SystemTime::now();
    let bound = |name, given: Option<String>| {
        given
            .map(|given| TimeBound::parse(name, &given, now))
            .transpose()
    };
    let since = bound("--since", args.since)?;
    let until = bound("--until", args.until)?;
    let filter = DeadLetterFilter::new(args.tenants, args.reasons, since, until)?;
    let (topology, _) = super::load_topology(None, config)?;
    let topics = ReplayTopics::from(&topology);
    let options = ReplayOptions {
        dry_run: args.dry_run,
        again: args.again,
    };

    // The first signal lets the records in flight be acknowledged and
    // remembered; a second one exits at once.
    let stop = CancellationToken::new();
    super::signals::cancel_on_signal(
        stop.clone(),
        "the replay",
        "stopping the replay once the dead letters in flight are acknowledged",
    );
    let doing = if options.dry_run {
        "to replay"
    } else {
        "replayed"
    };
    let summary = recovery::replay(&config.kafka, &topics, &filter, options, &stop, |p| {
        eprintln!(
            "replaying dead letters: {}, {} {doing}",
            read_progress(p),
            p.matched
        );
    })
    .await?;

    let mut out = String::new();
    if !summary.replayed.is_empty() {
        let header = if summary.dry_run {
            "TO REPLAY"
        } else {
            "REPLAYED"
        };
        out.push_str(&render_tallies(&summary.replayed, header, false));
    }
    out.push_str(&replay_total_line(&summary, &filter, &topics));
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

async fn stats(args: DlqStatsArgs, config: &Config) -> Result<ExitCode> {
    let filter = DeadLetterFilter::new(args.tenants, [], None, None)?;
    let (topology, _) = super::load_topology(None, config)?;
    let topic = &topology.dlq.name;
    let stats = recovery::dead_letter_stats(&config.kafka, topic, &filter, |p| {
        eprintln!("reading dead letters: {}", read_progress(p));
    })
    .await?;

    if args.json {
        let rows: Vec<serde_json::Value> = stats
            .tallies
            .iter()
            .map(|(key, tally)| {
                let mut row = json!({
                    "tenant": key.tenant,
                    "reason": key.reason.map(DlqReason::as_str),
                });
                row.as_object_mut()
                    .expect("built as an object")
                    .extend(tally_json(tally));
                row
            })
            .collect();
        let document = json!({
            "topic": topic,
            "read": stats.read,
            "dead_letters": rows,
            "total": serde_json::Value::Object(tally_json(&stats.tallies.total()).collect()),
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else if stats.tallies.is_empty() {
        let whose = if filter.tenants().next().is_some() {
            format!(" of {}", filter.describe())
        } else {
            String::new()
        };
        println!(
            "No dead letters{whose} in `{topic}` ({} read).",
            count(stats.read, "dead letter")
        );
    } else {
        print!("{}", render_tallies(&stats.tallies, "COUNT", true));
    }
    Ok(ExitCode::SUCCESS)
}

/// `1200/5000 read, 4000/s`: how far a read of the dead-letter topic got.
fn read_progress(progress: &Progress) -> String {
    format!(
        "{}/{} read, {:.0}/s",
        progress.read,
        progress.to_read,
        progress.read_per_second()
    )
}

/// `count`, `oldest` and `newest` as JSON fields.
fn tally_json(tally: &Tally) -> impl Iterator<Item = (String, serde_json::Value)> {
    [
        ("count", json!(tally.count)),
        (
            "oldest",
            json!(tally.oldest_ms.and_then(format_unix_millis)),
        ),
        (
            "newest",
            json!(tally.newest_ms.and_then(format_unix_millis)),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
}

/// The tallies as a table: tenant, reason, the count under `count_header`,
/// oldest and newest; with `total`, a last row adding them up.
fn render_tallies(tallies: &Tallies, count_header: &str, total: bool) -> String {
    let mut table = Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(["TENANT", "REASON", count_header, "OLDEST", "NEWEST"]);
    let row = |tenant: &str, reason: &str, tally: &Tally| {
        let time = |ms: Option<i64>| ms.and_then(format_unix_millis).unwrap_or("-".into());
        [
            tenant.to_string(),
            reason.to_string(),
            tally.count.to_string(),
            time(tally.oldest_ms),
            time(tally.newest_ms),
        ]
    };
    for (LetterKey { tenant, reason }, tally) in tallies.iter() {
        table.add_row(row(
            tenant.as_deref().unwrap_or("-"),
            reason.map_or("-", DlqReason::as_str),
            tally,
        ));
    }
    if total {
        table.add_row(row("total", "", &tallies.total()));
    }
    if let Some(column) = table.column_mut(2) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    let mut out = String::new();
    for line in table.to_string().lines() {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The one line that ends a replay's output.
fn replay_total_line(
    summary: &ReplaySummary,
    filter: &DeadLetterFilter,
    topics: &ReplayTopics,
) -> String {
    let replayed = summary.replayed.total().count;
    let scope = if summary.resumed {
        "written since this replay last ran"
    } else {
        "in the topic"
    };
    let read = format!(
        "{replayed} of {} {scope} match {}",
        count(summary.read, "dead letter"),
        filter.describe()
    );
    let group = &summary.group;
    let mut line = if summary.dry_run {
        format!(
            "Dry run: would replay {} from `{}` to `{}` ({read}); nothing sent, nothing \
             remembered in consumer group `{group}`.",
            count(replayed, "dead letter"),
            topics.dead_letters,
            topics.events,
        )
    } else if summary.read == 0 {
        format!(
            "Nothing to replay: no dead letter was written {}; consumer group `{group}` \
             remembers how far it got, --again replays from the beginning.",
            if summary.resumed {
                "since this replay last ran"
            } else {
                "yet"
            }
        )
    } else if replayed == 0 {
        format!("Nothing to replay ({read}); consumer group `{group}`.")
    } else {
        format!(
            "Replayed {} from `{}` to `{}` ({read}); remembered in consumer group `{group}`: \
             the same command replays only dead letters written since, --again replays these \
             again.",
            count(replayed, "dead letter"),
            topics.dead_letters,
            topics.events,
        )
    };
    if summary.deferred > 0 {
        let _ = write!(
            line,
            " {} newer than --until left for a later run.",
            count(summary.deferred, "dead letter")
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::recovery::letter::LetterInfo;

    fn tallies() -> Tallies {
        let mut tallies = Tallies::default();
        for (tenant, reason, at) in [
            ("acme", DlqReason::RetriesExhausted, 1_795_860_000_000),
            ("acme", DlqReason::RetriesExhausted, 1_795_860_001_500),
            ("acme", DlqReason::TenantSuspended, 1_795_860_002_000),
        ] {
            tallies.add(&LetterInfo {
                tenant: Some(tenant),
                reason: Some(reason),
                timestamp_ms: Some(at),
            });
        }
        tallies
    }

    fn summary(dry_run: bool, resumed: bool, replayed: Tallies, deferred: u64) -> ReplaySummary {
        ReplaySummary {
            group: "hookline.replay.24ee4509".into(),
            resumed,
            dry_run,
            read: 5,
            replayed,
            deferred,
            written: Default::default(),
            elapsed: Duration::from_millis(300),
        }
    }

    fn topics() -> ReplayTopics {
        ReplayTopics {
            dead_letters: "webhook.dlq".into(),
            events: "events".into(),
        }
    }

    fn acme() -> DeadLetterFilter {
        DeadLetterFilter::new(["acme".to_string()], [], None, None).unwrap()
    }

    #[test]
    fn the_table_lists_tenant_reason_count_oldest_newest_and_a_total() {
        let table = render_tallies(&tallies(), "COUNT", true);
        let lines: Vec<&str> = table.lines().map(str::trim).collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("TENANT") && lines[0].ends_with("NEWEST"));
        assert!(
            lines[1].starts_with("acme")
                && lines[1].contains("retries_exhausted")
                && lines[1].contains(" 2 ")
                && lines[1].contains("2026-11-28T10:00:00.000Z")
                && lines[1].ends_with("2026-11-28T10:00:01.500Z"),
            "{table}"
        );
        assert!(lines[2].contains("tenant_suspended"), "{table}");
        assert!(
            lines[3].starts_with("total")
                && lines[3].contains(" 3 ")
                && lines[3].ends_with("2026-11-28T10:00:02.000Z"),
            "{table}"
        );
    }

    #[test]
    fn the_total_line_says_what_was_replayed_and_where_it_is_remembered() {
        let line = replay_total_line(&summary(false, false, tallies(), 0), &acme(), &topics());
        assert_eq!(
            line,
            "Replayed 3 dead letters from `webhook.dlq` to `events` (3 of 5 dead letters in \
             the topic match tenant acme); remembered in consumer group \
             `hookline.replay.24ee4509`: the same command replays only dead letters written \
             since, --again replays these again."
        );
    }

    #[test]
    fn a_dry_run_says_nothing_was_sent() {
        let line = replay_total_line(&summary(true, false, tallies(), 0), &acme(), &topics());
        assert!(
            line.starts_with("Dry run: would replay 3 dead letters"),
            "{line}"
        );
        assert!(line.contains("nothing sent, nothing remembered"), "{line}");
    }

    #[test]
    fn a_run_that_matches_nothing_says_so_and_counts_what_waits() {
        let line = replay_total_line(
            &summary(false, true, Tallies::default(), 2),
            &acme(),
            &topics(),
        );
        assert_eq!(
            line,
            "Nothing to replay (0 of 5 dead letters written since this replay last ran match \
             tenant acme); consumer group `hookline.replay.24ee4509`. 2 dead letters newer \
             than --until left for a later run."
        );
    }

    #[test]
    fn a_second_run_with_nothing_new_says_so() {
        let mut second = summary(false, true, Tallies::default(), 0);
        second.read = 0;
        assert_eq!(
            replay_total_line(&second, &acme(), &topics()),
            "Nothing to replay: no dead letter was written since this replay last ran; \
             consumer group `hookline.replay.24ee4509` remembers how far it got, --again \
             replays from the beginning."
        );
    }
}
