//! `hookline dlq replay` and `hookline dlq stats`, the real binary against a
//! dead-letter topic that a replica filled during an outage of one tenant's
//! endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use hookline::delivery::runner::Topics;

use crate::support::broker::Record;
use crate::support::process::{command, output};
use crate::support::replica::{Replica, TestTenant, create_topics, replica_config, write_topology};
use crate::support::{Broker, Receiver, hookline};

/// A header every event carries, which a replayed record must keep.
const ORIGIN_HEADER: &str = "x-origin";

/// One tenant's endpoint (`down`) answered 503 for a while, another's
/// (`gone`) still does. With two attempts per event and suspension after
/// three exhausted events, the dead-letter topic holds, in this order:
/// down-0..2 (`retries_exhausted`), then, after the instant `mid`, down-3..5
/// (`tenant_suspended`) and gone-0..1 (`retries_exhausted`). `end` is an
/// instant after all of them.
struct Outage {
    broker: Broker,
    _dir: tempfile::TempDir,
    topics: Topics,
    topology: std::path::PathBuf,
    receiver: Receiver,
    healthy: Arc<AtomicBool>,
    down: TestTenant,
    _replica: Replica,
    mid: String,
    end: String,
}

impl Outage {
    async fn start(test: &str) -> Self {
        let broker = Broker::new(test);
        let dir = tempfile::tempdir().unwrap();
        let topics = create_topics(&broker, 2).await;
        let topology = write_topology(dir.path(), &topics, 2);
        let healthy = Arc::new(AtomicBool::new(false));
        let receiver = Receiver::start(Arc::new({
            let healthy = healthy.clone();
            move |_, request| match request.path.as_str() {
                "/down" if healthy.load(Ordering::SeqCst) => StatusCode::OK,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            }
        }))
        .await;
        let down = TestTenant::new("down");
        let gone = TestTenant::new("gone");
        for tenant in [&down, &gone] {
            let url = receiver.url(&format!("/{}", tenant.id));
            tenant
                .register(&broker, &topics, &tenant.record(&url))
                .await;
        }
        // A failed probe of a suspended tenant is `tenant_suspended` only
        // when attempts are left, hence two; probes every second, so that
        // the endpoint's recovery ends the suspension soon.
        let config = replica_config(
            &broker,
            &[
                ("DELIVERY__MAX_ATTEMPTS", "2"),
                ("DELIVERY__SUSPEND_AFTER", "3"),
                ("DELIVERY__SUSPENSION_PROBE_INTERVAL", "1s"),
            ],
        );
        let replica = Replica::start(config, &topics).await;

        for n in 0..3 {
            produce(&broker, &topics, "down", &format!("down-{n}")).await;
        }
        wait_for_dead_letters(&broker, &topics, 3).await;
        let mid = rfc3339_now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        for n in 3..6 {
            produce(&broker, &topics, "down", &format!("down-{n}")).await;
        }
        for n in 0..2 {
            produce(&broker, &topics, "gone", &format!("gone-{n}")).await;
        }
        wait_for_dead_letters(&broker, &topics, 8).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let end = rfc3339_now();
        Self {
            broker,
            _dir: dir,
            topics,
            topology,
            receiver,
            healthy,
            down,
            _replica: replica,
            mid,
            end,
        }
    }

    /// The dead letters, as the replica wrote them.
    async fn dead_letters(&self) -> Vec<Record> {
        self.broker
            .consume(&self.topics.dlq, 8, Duration::from_secs(10))
            .await
    }

    /// The endpoint comes back, and a new event of `down` is delivered: its
    /// suspension is over, so that replayed events are attempted.
    async fn recover(&self) {
        self.healthy.store(true, Ordering::SeqCst);
        // The probe interval is 1 s: the next event after it is attempted.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        produce(&self.broker, &self.topics, "down", "down-live").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.delivered("/down").contains(&"down-live".to_string()) {
            assert!(Instant::now() < deadline, "down-live was not delivered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `hookline dlq ARGS…`: exit code, stdout, stderr.
    fn dlq(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut full = vec!["dlq"];
        full.extend_from_slice(args);
        output(command(&self.broker, &self.topology), &full)
    }

    /// `hookline dlq ARGS…`, which must succeed; its stdout.
    fn dlq_ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.dlq(args);
        assert_eq!(code, Some(0), "dlq {args:?}: {stderr}");
        stdout
    }

    /// The webhook ids of the requests on `path`, in arrival order: once
    /// the endpoint is healthy, its deliveries.
    fn delivered(&self, path: &str) -> Vec<String> {
        self.receiver.webhook_ids(path)
    }

    /// Waits until `path` accepted `count` deliveries in all.
    async fn wait_delivered(&self, path: &str, count: usize) -> Vec<String> {
        self.receiver
            .wait_webhook_ids(path, count, Duration::from_secs(30))
            .await
    }

    /// Waits a moment and checks that `path` accepted nothing beyond
    /// `count`.
    async fn assert_nothing_more(&self, path: &str, count: usize, what: &str) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let delivered = self.delivered(path);
        assert_eq!(delivered.len(), count, "{what}: {delivered:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_an_outage_delivers_each_dead_letter_once_in_order_and_a_second_sends_nothing()
 {
    let outage = Outage::start("dlq-replay").await;
    let dead = outage.dead_letters().await;
    let reasons: Vec<(Option<&str>, Option<&str>)> = dead
        .iter()
        .map(|r| (r.header("dlq.tenant"), r.header("dlq.reason")))
        .collect();
    let down = |reason| (Some("down"), Some(reason));
    assert_eq!(
        reasons
            .iter()
            .filter(|&&r| r == down("retries_exhausted"))
            .count(),
        3,
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|&&r| r == down("tenant_suspended"))
            .count(),
        3,
        "{reasons:?}"
    );
    outage.recover().await;
    let before = outage.delivered("/down").len();

    // A dry run prints the counts and sends nothing.
    let stdout = outage.dlq_ok(&["replay", "--tenant", "down", "--dry-run"]);
    assert!(
        stdout.contains("Dry run: would replay 6 dead letters"),
        "{stdout}"
    );
    assert_eq!(
        row(&stdout, "down", "retries_exhausted")[2],
        "3",
        "{stdout}"
    );
    assert_eq!(row(&stdout, "down", "tenant_suspended")[2], "3", "{stdout}");
    outage
        .assert_nothing_more("/down", before, "a dry run sent something")
        .await;

    let stdout = outage.dlq_ok(&["replay", "--tenant", "down"]);
    assert!(stdout.contains("Replayed 6 dead letters"), "{stdout}");
    assert!(stdout.contains(".replay."), "names its group: {stdout}");
    assert_eq!(
        row(&stdout, "down", "retries_exhausted")[2],
        "3",
        "{stdout}"
    );
    let expected: Vec<String> = (0..6).map(|n| format!("down-{n}")).collect();
    let delivered = outage.wait_delivered("/down", before + 6).await;
    assert_eq!(delivered[before..], expected, "once each, in order");

    // The receiver sees a delivery like any other: the original id, and
    // no Kafka header of the replay; the tenant can open it.
    let received = outage.receiver.received();
    assert!(
        received
            .iter()
            .all(|r| r.headers.keys().all(|k| {
                !k.as_str().starts_with("hookline.") && !k.as_str().starts_with("dlq.")
            })),
        "a Kafka header reached the receiver"
    );
    let replayed_first = received
        .iter()
        .rfind(|r| r.path == "/down" && r.header("webhook-id") == Some("down-0"))
        .unwrap();
    assert_eq!(outage.down.open(replayed_first).webhook_id, "down-0");

    // On the events topic, each replayed record names its dead letter,
    // keeps the original headers and drops the `dlq.*` ones.
    let replays = replayed_records(&outage).await;
    let down_letters: Vec<&Record> = dead
        .iter()
        .filter(|r| r.header("dlq.tenant") == Some("down"))
        .collect();
    let named: Vec<String> = replays
        .iter()
        .map(|r| r.header("hookline.replay-of").unwrap().to_string())
        .collect();
    let letters: Vec<String> = down_letters
        .iter()
        .map(|r| format!("{}:{}", r.partition, r.offset))
        .collect();
    assert_eq!(named, letters);
    for (replay, letter) in replays.iter().zip(&down_letters) {
        assert_eq!(replay.key.as_deref(), Some(&b"down"[..]));
        assert_eq!(replay.value, letter.value, "the value is unchanged");
        assert_eq!(replay.header(ORIGIN_HEADER), Some("billing"));
        assert!(
            replay.headers.iter().all(|(k, _)| !k.starts_with("dlq.")),
            "{:?}",
            replay.headers
        );
    }

    // The same command again sends nothing: the group remembers.
    let stdout = outage.dlq_ok(&["replay", "--tenant", "down"]);
    assert!(
        stdout.contains("Nothing to replay: no dead letter was written since this replay"),
        "{stdout}"
    );
    outage
        .assert_nothing_more("/down", before + 6, "a second replay sent something")
        .await;

    // --again replays them again, in order, and is remembered as usual.
    let stdout = outage.dlq_ok(&["replay", "--tenant", "down", "--again"]);
    assert!(stdout.contains("Replayed 6 dead letters"), "{stdout}");
    let delivered = outage.wait_delivered("/down", before + 12).await;
    assert_eq!(delivered[before + 6..], expected, "again, in order");
    let stdout = outage.dlq_ok(&["replay", "--tenant", "down"]);
    assert!(stdout.contains("Nothing to replay"), "{stdout}");

    // `gone` was never replayed: its endpoint saw its two events' attempts
    // only.
    assert_eq!(outage.delivered("/gone").len(), 4);
    assert!(
        replayed_records(&outage)
            .await
            .iter()
            .all(|r| r.key.as_deref() == Some(&b"down"[..]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_filters_by_reason_and_by_time() {
    let outage = Outage::start("dlq-filters").await;
    outage.recover().await;
    let before = outage.delivered("/down").len();
    let ids = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|n| format!("down-{n}")).collect()
    };

    // The suspended ones only: down-3..5 (gone has none).
    let stdout = outage.dlq_ok(&["replay", "--reason", "tenant_suspended"]);
    assert!(stdout.contains("Replayed 3 dead letters"), "{stdout}");
    let delivered = outage.wait_delivered("/down", before + 3).await;
    assert_eq!(delivered[before..], ids(3..6));

    // Dead-lettered before `mid`: down-0..2, the exhausted ones.
    let stdout = outage.dlq_ok(&["replay", "--tenant", "down", "--until", &outage.mid]);
    assert!(stdout.contains("Replayed 3 dead letters"), "{stdout}");
    assert_eq!(
        row(&stdout, "down", "retries_exhausted")[2],
        "3",
        "{stdout}"
    );
    let delivered = outage.wait_delivered("/down", before + 6).await;
    assert_eq!(delivered[before + 3..], ids(0..3));

    // Between `mid` and `end`, a filter of its own: it overlaps the reason
    // filter's replay and replays the overlap again, as documented.
    let (since, until) = (outage.mid.as_str(), outage.end.as_str());
    let stdout = outage.dlq_ok(&[
        "replay", "--tenant", "down", "--since", since, "--until", until,
    ]);
    assert!(stdout.contains("Replayed 3 dead letters"), "{stdout}");
    let delivered = outage.wait_delivered("/down", before + 9).await;
    assert_eq!(delivered[before + 6..], ids(3..6));

    // After `end`, nothing; gone's two since `mid`, in a dry run.
    let stdout = outage.dlq_ok(&["replay", "--since", until, "--dry-run"]);
    assert!(
        stdout.contains("Dry run: would replay 0 dead letters"),
        "{stdout}"
    );
    let stdout = outage.dlq_ok(&["replay", "--tenant", "gone", "--since", since, "--dry-run"]);
    assert!(
        stdout.contains("Dry run: would replay 2 dead letters"),
        "{stdout}"
    );
    outage
        .assert_nothing_more("/down", before + 9, "a filter sent too much")
        .await;
    assert_eq!(
        outage.delivered("/gone").len(),
        4,
        "only the outage's attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_dead_letters_per_tenant_and_reason_with_oldest_and_newest() {
    let outage = Outage::start("dlq-stats").await;
    let dead = outage.dead_letters().await;
    let time = |tenant: &str, reason: &str, pick: fn(i64, i64) -> i64| {
        let at = dead
            .iter()
            .filter(|r| r.header("dlq.tenant") == Some(tenant))
            .filter(|r| r.header("dlq.reason") == Some(reason))
            .map(|r| r.timestamp_ms.expect("dead letters have a timestamp"))
            .reduce(pick)
            .unwrap();
        hookline::events::timestamp::format_unix_millis(at).unwrap()
    };

    let stdout = outage.dlq_ok(&["stats"]);
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines.iter().map(|l| l[..2].to_vec()).collect::<Vec<_>>(),
        [
            vec!["TENANT", "REASON"],
            vec!["down", "retries_exhausted"],
            vec!["down", "tenant_suspended"],
            vec!["gone", "retries_exhausted"],
            vec!["total", "8"],
        ],
        "sorted by tenant, then reason:\n{stdout}"
    );
    let exhausted = row(&stdout, "down", "retries_exhausted");
    assert_eq!(
        exhausted[2..],
        [
            "3".to_string(),
            time("down", "retries_exhausted", i64::min),
            time("down", "retries_exhausted", i64::max),
        ],
        "{stdout}"
    );
    assert_eq!(row(&stdout, "down", "tenant_suspended")[2], "3");
    assert_eq!(row(&stdout, "gone", "retries_exhausted")[2], "2");

    let (code, stdout, stderr) = outage.dlq(&["stats", "--tenant", "gone", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let document: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(document["topic"], outage.topics.dlq.as_str());
    assert_eq!(
        document["dead_letters"],
        serde_json::json!([{
            "tenant": "gone",
            "reason": "retries_exhausted",
            "count": 2,
            "oldest": time("gone", "retries_exhausted", i64::min),
            "newest": time("gone", "retries_exhausted", i64::max),
        }])
    );
    assert_eq!(document["total"]["count"], 2);

    let stdout = outage.dlq_ok(&["stats", "--tenant", "nobody"]);
    assert!(
        stdout.starts_with("No dead letters of tenant nobody in"),
        "{stdout}"
    );
    // Statistics change nothing: a replay still finds every dead letter.
    let stdout = outage.dlq_ok(&["replay", "--dry-run"]);
    assert!(stdout.contains("would replay 8 dead letters"), "{stdout}");
}

/// A write the events topic refuses (a record above its
/// `max.message.bytes`) stops the replay there: exit 1, one line naming the
/// dead letter it stopped at and how many were replayed before it, and the
/// group remembers only those, so the next run starts at the refused one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_stops_the_replay_and_only_what_was_acknowledged_is_remembered() {
    let broker = Broker::new("dlq-refused");
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics {
        events: broker.name("events"),
        tenants: broker.name("tenants"),
        dlq: broker.name("dlq"),
    };
    broker
        .create_topic(&topics.events, 1, &[("max.message.bytes", "4096")])
        .await;
    broker
        .create_topic(&topics.tenants, 1, &[("cleanup.policy", "compact")])
        .await;
    broker.create_topic(&topics.dlq, 1, &[]).await;
    let topology = write_topology(dir.path(), &topics, 1);
    // Dead letters as the writer makes them; the third is too large for the
    // events topic.
    for n in 0..5 {
        let data = if n == 2 {
            "x".repeat(8192)
        } else {
            n.to_string()
        };
        let value = serde_json::json!({"id": format!("acme-{n}"), "type": "t", "data": data});
        broker
            .produce(
                &topics.dlq,
                Some(b"acme"),
                Some(&serde_json::to_vec(&value).unwrap()),
                &[
                    ("dlq.reason", b"retries_exhausted"),
                    ("dlq.tenant", b"acme"),
                ],
            )
            .await;
    }
    let replay = |args: &[&str]| {
        let mut full = vec!["dlq", "replay", "--tenant", "acme"];
        full.extend_from_slice(args);
        output(command(&broker, &topology), &full)
    };

    let (code, stdout, stderr) = replay(&[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    // Records queued together may be refused together: the replay stops at
    // the first refused one, the large one at the latest.
    let stopped_at: i64 = between(&stderr, "stopped at dead letter 0:", " of ")
        .parse()
        .unwrap();
    let replayed = between(&stderr, " (", " replayed");
    assert!(stopped_at <= 2, "{stderr}");
    let expected = match stopped_at {
        0 => "no dead letter",
        1 => "1 dead letter",
        _ => "2 dead letters",
    };
    assert_eq!(
        replayed, expected,
        "as many as before the refused one: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "starts again from 0:{stopped_at}: writing to `{}`",
            topics.events
        )),
        "{stderr}"
    );
    let replay_of = |records: Vec<Record>| -> Vec<String> {
        records
            .iter()
            .filter_map(|r| r.header("hookline.replay-of").map(str::to_string))
            .collect()
    };
    let written = replay_of(
        broker
            .consume(&topics.events, 5, Duration::from_secs(3))
            .await,
    );
    let acknowledged: Vec<String> = (0..stopped_at).map(|o| format!("0:{o}")).collect();
    assert_eq!(written, acknowledged);

    // The group remembers the acknowledged ones only: the next run starts
    // at the refused dead letter and stops there again, sending nothing
    // twice.
    let (code, stdout, _) = replay(&["--dry-run"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains(&format!("would replay {} dead letters", 5 - stopped_at)),
        "{stdout}"
    );
    let (code, _, stderr) = replay(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("stopped at dead letter 0:{stopped_at} ")),
        "{stderr}"
    );
    let written = replay_of(
        broker
            .consume(&topics.events, 5, Duration::from_secs(3))
            .await,
    );
    assert_eq!(written, acknowledged);
}

/// Bad input is refused before anything is read: one line naming the
/// problem, exit 1 (no broker listens at the address given).
#[test]
fn bad_input_is_one_line_with_exit_1() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["replay", "--reason", "gremlins"],
            "unknown dead-letter reason `gremlins` (expected one of: retries_exhausted",
        ),
        (
            &["replay", "--since", "1h", "--until", "2h"],
            "--until 2h (",
        ),
        (
            &["replay", "--since", "yesterday"],
            "--since `yesterday` is neither an RFC 3339 instant",
        ),
        (
            &["replay", "--until", "2026-11-28 10:00"],
            "--until `2026-11-28 10:00` is neither",
        ),
        (&["stats", "--tenant", ""], "tenant ``: tenant id must be"),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = output(hookline("127.0.0.1:1"), &[&["dlq"], args].concat());
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}

async fn produce(broker: &Broker, topics: &Topics, tenant: &str, id: &str) {
    let value = serde_json::json!({"id": id, "type": "order.created", "data": {"id": id}});
    broker
        .produce(
            &topics.events,
            Some(tenant.as_bytes()),
            Some(&serde_json::to_vec(&value).unwrap()),
            &[(ORIGIN_HEADER, b"billing")],
        )
        .await;
}

async fn wait_for_dead_letters(broker: &Broker, topics: &Topics, count: usize) {
    let dead = broker
        .consume(&topics.dlq, count, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), count, "dead letters");
}

/// The records on the events topic that replay a dead letter, in the
/// order of their partition (a tenant's are all on one).
async fn replayed_records(outage: &Outage) -> Vec<Record> {
    let mut records = outage
        .broker
        .consume(&outage.topics.events, usize::MAX, Duration::from_secs(3))
        .await;
    records.retain(|r| r.header("hookline.replay-of").is_some());
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// The cells of the table row of `tenant` and `reason` in `stdout`.
fn row(stdout: &str, tenant: &str, reason: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.len() > 2 && cells[0] == tenant && cells[1] == reason)
        .unwrap_or_else(|| panic!("no row for {tenant} {reason} in:\n{stdout}"))
}

/// The text of `line` between `before` and the next `after`.
fn between<'a>(line: &'a str, before: &str, after: &str) -> &'a str {
    let start = line
        .find(before)
        .unwrap_or_else(|| panic!("no {before:?} in {line}"))
        + before.len();
    let length = line[start..]
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in {line}"));
    &line[start..start + length]
}

/// Now, in RFC 3339 with milliseconds (UTC).
fn rfc3339_now() -> String {
    hookline::events::timestamp::format_system_time(SystemTime::now()).unwrap()
}
