//! Telemetry of the real binary: `/metrics` counts what happened,
//! `/readyz` follows the replica's life, and logs keep payloads and
//! secrets out.
//!
//! These tests run `hookline run` as a process: the metrics recorder is
//! global per process, so counters asserted in the test process would mix
//! with every other test's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use secrecy::ExposeSecret;

use crate::support::process::Spawned;
use hookline::delivery::dead_letter::DlqReason;
use hookline::delivery::runner::Topics;
use hookline::telemetry::metrics::{OUTCOME_LABELS, RESULT_LABELS};

use crate::support::replica::{TestTenant, create_topics, write_topology};
use crate::support::{Broker, Receiver, hookline};

/// `hookline run` for this test: its topology and group, loopback
/// destinations, quick retries, telemetry on a free port.
fn run_command(broker: &Broker, topology: &Path) -> Command {
    let mut command = hookline(&broker.bootstrap);
    command
        .arg("run")
        .env("HOOKLINE__TOPOLOGY", topology)
        .env("HOOKLINE__KAFKA__GROUP_ID", broker.name("group"))
        .env("HOOKLINE__KAFKA__SESSION_TIMEOUT", "6s")
        .env("HOOKLINE__KAFKA__DRAIN_TIMEOUT", "5s")
        .env("HOOKLINE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("HOOKLINE__DELIVERY__INITIAL_BACKOFF", "50ms")
        .env("HOOKLINE__DELIVERY__MAX_BACKOFF", "200ms")
        .env("HOOKLINE__DELIVERY__MAX_ATTEMPTS", "3")
        .env("HOOKLINE__TELEMETRY__LISTEN", "127.0.0.1:0")
        .env_remove("RUST_LOG");
    command
}

/// Topics with `partitions` partitions and a topology file naming them.
async fn setup(broker: &Broker, dir: &Path, partitions: i32) -> (Topics, PathBuf) {
    let topics = create_topics(broker, partitions).await;
    let topology = write_topology(dir, &topics, partitions as u32);
    (topics, topology)
}

/// Waits for the "telemetry listening on ADDR" line and returns ADDR.
async fn telemetry_addr(replica: &Spawned) -> SocketAddr {
    const NEEDLE: &str = "telemetry listening on ";
    replica.wait_for_log(NEEDLE, Duration::from_secs(30)).await;
    let stderr = replica.stderr();
    let line = stderr.lines().find(|l| l.contains(NEEDLE)).unwrap();
    let rest = &line[line.find(NEEDLE).unwrap() + NEEDLE.len()..];
    let addr = rest
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap();
    addr.parse()
        .unwrap_or_else(|e| panic!("`{addr}` in `{line}`: {e}"))
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The value of the sample `series` (name with its labels, as rendered) in
/// Prometheus text; 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Polls `/readyz` until it says 200, or fails after 30 s.
async fn wait_until_ready(addr: SocketAddr, replica: &Spawned) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(addr, "/readyz").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "never ready:\n{}",
            replica.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scrapes until `done` holds for the text, or fails after `timeout`.
async fn scrape_until(addr: SocketAddr, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, text) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got there:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn event(id: &str, event_type: &str, data: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": id, "type": event_type, "data": data})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_deliveries_dead_letters_and_attempts() {
    let broker = Broker::new("tm-metrics");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = setup(&broker, dir.path(), 1).await;
    let receiver = Receiver::start(Arc::new(|_, request| match request.path.as_str() {
        "/ok" => StatusCode::OK,
        "/gone" => StatusCode::GONE,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }))
    .await;
    let ok = TestTenant::new("ok");
    let mut record = ok.record(&receiver.url("/ok"));
    record["events"] = serde_json::json!(["order.*"]);
    ok.register(&broker, &topics, &record).await;
    let down = TestTenant::new("down");
    down.register(&broker, &topics, &down.record(&receiver.url("/down")))
        .await;
    let gone = TestTenant::new("gone");
    gone.register(&broker, &topics, &gone.record(&receiver.url("/gone")))
        .await;

    let replica = Spawned::start(run_command(&broker, &topology));
    let addr = telemetry_addr(&replica).await;

    let produce = |key: &'static str, value: Vec<u8>| {
        let broker = &broker;
        let topic = topics.events.clone();
        async move {
            broker
                .produce(&topic, Some(key.as_bytes()), Some(&value), &[])
                .await;
        }
    };
    produce("ok", event("m-1", "order.created", serde_json::json!(1))).await;
    produce("ok", event("m-2", "invoice.paid", serde_json::json!(2))).await;
    produce("down", event("m-3", "order.created", serde_json::json!(3))).await;
    produce("gone", event("m-4", "order.created", serde_json::json!(4))).await;
    produce(
        "nobody",
        event("m-5", "order.created", serde_json::json!(5)),
    )
    .await;
    produce("ok", b"{not json".to_vec()).await;
    produce("ok", event("m-7", "order.paid", serde_json::json!(7))).await;

    let text = scrape_until(addr, Duration::from_secs(60), |t| {
        sample(t, r#"hookline_deliveries_total{outcome="delivered"}"#)
            + sample(t, r#"hookline_deliveries_total{outcome="filtered"}"#)
            + sample(t, r#"hookline_deliveries_total{outcome="dead_lettered"}"#)
            >= 7.0
    })
    .await;
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), value, "{series} in:\n{text}");
    };
    expect(r#"hookline_deliveries_total{outcome="delivered"}"#, 2.0);
    expect(r#"hookline_deliveries_total{outcome="filtered"}"#, 1.0);
    expect(r#"hookline_deliveries_total{outcome="dead_lettered"}"#, 4.0);
    // Two deliveries on the first try, three failed tries to `down`, one
    // rejected try to `gone`.
    expect(
        r#"hookline_delivery_attempts_total{result="delivered"}"#,
        2.0,
    );
    expect(
        r#"hookline_delivery_attempts_total{result="http_error"}"#,
        4.0,
    );
    expect(
        r#"hookline_dead_letters_total{reason="retries_exhausted"}"#,
        1.0,
    );
    expect(r#"hookline_dead_letters_total{reason="rejected"}"#, 1.0);
    expect(
        r#"hookline_dead_letters_total{reason="unknown_tenant"}"#,
        1.0,
    );
    expect(
        r#"hookline_dead_letters_total{reason="invalid_event"}"#,
        1.0,
    );
    expect("hookline_delivery_attempt_duration_seconds_count", 6.0);
    expect("hookline_end_to_end_latency_seconds_count", 2.0);
    expect("hookline_tenants", 3.0);
    expect("hookline_partitions_assigned", 1.0);
    assert!(
        text.contains(r#"hookline_end_to_end_latency_seconds_bucket{le="+Inf"} 2"#),
        "{text}"
    );
    // No tenant label unless configured, and never a URL.
    assert!(!text.contains("tenant="), "{text}");
    assert!(!text.contains("127.0.0.1"), "{text}");

    // The partition's gauges follow its records' outcomes a moment later:
    // `down` backed off and no longer does; nobody was suspended.
    let text = scrape_until(addr, Duration::from_secs(10), |t| {
        sample(t, "hookline_partitions_backing_off") == 0.0
            && sample(t, "hookline_tenants_backing_off") == 0.0
    })
    .await;
    for gauge in [
        "hookline_partitions_backing_off",
        "hookline_tenants_backing_off",
        "hookline_tenants_suspended",
        "hookline_tenants_resuming",
        "hookline_partitions_window_full",
    ] {
        let zero = format!("{gauge} 0");
        assert!(text.lines().any(|l| l == zero), "{gauge} in:\n{text}");
    }

    // The lag is sampled every few seconds; all seven records are done.
    scrape_until(addr, Duration::from_secs(20), |t| {
        t.contains(r#"hookline_consumer_lag{partition="0"} 0"#)
    })
    .await;
    assert_eq!(receiver.received().len(), 6);
    // Text logs into a pipe carry no colour codes.
    assert!(!replica.stderr().contains('\x1b'), "{}", replica.stderr());
}

/// Every counter whose labels are known in advance is exported at 0 by a
/// replica that has delivered nothing yet, so that `rate()` and an alert on
/// one dead-letter reason work before the first such event. (A scrape of a
/// replica that had not dead-lettered anything once lacked the series.) With
/// tenant labels on, only the tenant-less series are created ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_with_known_labels_are_exported_at_zero_from_the_start() {
    let broker = Broker::new("tm-zero");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = setup(&broker, dir.path(), 1).await;
    let tenant = TestTenant::new("known");
    tenant
        .register(
            &broker,
            &topics,
            &tenant.record("http://127.0.0.1:9/unused"),
        )
        .await;
    let mut command = run_command(&broker, &topology);
    command.env("HOOKLINE__TELEMETRY__TENANT_LABELS", "true");
    let replica = Spawned::start(command);
    let addr = telemetry_addr(&replica).await;

    let mut series: Vec<String> = OUTCOME_LABELS
        .iter()
        .map(|outcome| format!(r#"hookline_deliveries_total{{outcome="{outcome}"}}"#))
        .collect();
    series.extend(
        RESULT_LABELS
            .iter()
            .map(|result| format!(r#"hookline_delivery_attempts_total{{result="{result}"}}"#)),
    );
    series.extend(
        DlqReason::ALL
            .iter()
            .map(|reason| format!(r#"hookline_dead_letters_total{{reason="{reason}"}}"#)),
    );
    let all_at_zero = |text: &str| {
        for series in &series {
            assert!(
                text.lines().any(|line| line == format!("{series} 0")),
                "{series} is not exported at 0:\n{text}"
            );
        }
        // The tenant in the table gets no series of its own ahead.
        assert!(!text.contains("tenant="), "{text}");
    };
    // At once, while the replica may still be restoring its tenant table,
    // and again once it is ready.
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    all_at_zero(&text);
    wait_until_ready(addr, &replica).await;
    all_at_zero(&get(addr, "/metrics").await.1);
}

/// A receiver that answers 200 after holding each request for `hold`, and
/// counts the requests it has started to answer.
async fn holding_receiver(hold: Duration) -> (String, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().fallback({
        let seen = seen.clone();
        move || {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                StatusCode::OK
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hold", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_restored_and_joined_and_again_while_draining() {
    let broker = Broker::new("tm-ready");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = setup(&broker, dir.path(), 1).await;
    let (url, seen) = holding_receiver(Duration::from_secs(3)).await;
    let tenant = TestTenant::new("held");
    tenant
        .register(&broker, &topics, &tenant.record(&url))
        .await;

    // The broker answers each fetch only after `fetch.wait.max.ms`, since
    // the minimum size is never reached: the tenant restore takes at least
    // that long, which keeps the replica unready long enough to be seen.
    let mut command = run_command(&broker, &topology);
    command
        .env("HOOKLINE__KAFKA__PROPERTIES__FETCH.MIN.BYTES", "50000000")
        .env("HOOKLINE__KAFKA__PROPERTIES__FETCH.WAIT.MAX.MS", "2000");
    let mut replica = Spawned::start(command);
    let addr = telemetry_addr(&replica).await;
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(
        get(addr, "/readyz").await.0,
        503,
        "ready before the restore"
    );

    wait_until_ready(addr, &replica).await;
    assert!(replica.stderr().contains("tenant table restored"));

    // One delivery in flight, held by the receiver; then SIGTERM.
    broker
        .produce(
            &topics.events,
            Some(b"held"),
            Some(&event("r-1", "x", serde_json::json!(1))),
            &[],
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "no delivery:\n{}",
            replica.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replica.signal("TERM");
    replica
        .wait_for_log("draining", Duration::from_secs(5))
        .await;
    // The attempt is still held: the process is draining, not gone.
    assert_eq!(get(addr, "/readyz").await.0, 503);
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("hookline_partitions_assigned"), "{text}");

    let status = replica.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}:\n{}", replica.stderr());
    // The held attempt finished inside the drain, so nothing was retried.
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "the listener closes with the process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_carry_no_payload_key_or_secret() {
    let broker = Broker::new("tm-logs");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = setup(&broker, dir.path(), 1).await;
    let receiver = Receiver::start(Arc::new(|_, request| {
        if request.path == "/gone" {
            StatusCode::GONE
        } else {
            StatusCode::OK
        }
    }))
    .await;
    let tenant = TestTenant::new("quiet");
    let record = tenant.record(&receiver.url("/in"));
    tenant.register(&broker, &topics, &record).await;
    let rejecting = TestTenant::new("rejecting");
    rejecting
        .register(&broker, &topics, &rejecting.record(&receiver.url("/gone")))
        .await;
    let whsec = tenant.secret.to_whsec();
    let secret = whsec.expose_secret().to_string();
    let secret_body = secret.trim_start_matches("whsec_").to_string();
    let public_key = record["public_key"].as_str().unwrap().to_string();
    let key_body: String = public_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let marker = "card-4111-1111-1111-1111";

    let mut command = run_command(&broker, &topology);
    command
        .env("RUST_LOG", "debug")
        .env("HOOKLINE__TELEMETRY__LOG_FORMAT", "json");
    let mut replica = Spawned::start(command);
    telemetry_addr(&replica).await;
    for (key, id) in [("quiet", "l-1"), ("rejecting", "l-2")] {
        broker
            .produce(
                &topics.events,
                Some(key.as_bytes()),
                Some(&event(
                    id,
                    "order.created",
                    serde_json::json!({"card": marker}),
                )),
                &[],
            )
            .await;
    }
    let received = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 2);
    let quiet = received.iter().find(|r| r.path == "/in").unwrap();
    assert_eq!(tenant.open(quiet).data["card"], marker);
    let dead = broker
        .consume(&topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 1);
    replica.signal("TERM");
    assert!(replica.wait(Duration::from_secs(20)).await.success());

    let stderr = replica.stderr();
    assert!(stderr.contains("dead-lettering"), "{stderr}");
    for (what, needle) in [
        ("payload", marker),
        ("signing secret", secret.as_str()),
        ("signing secret body", secret_body.as_str()),
        ("public key", &key_body[..40]),
    ] {
        assert!(
            !stderr.contains(needle),
            "the {what} is in the logs:\n{stderr}"
        );
    }

    // JSON lines only, and the delivery span names tenant, partition,
    // offset and attempt.
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let span = lines
        .iter()
        .filter_map(|l| l.get("span"))
        .find(|s| s["name"] == "delivery" && s["tenant"] == "quiet" && s.get("attempt").is_some())
        .unwrap_or_else(|| panic!("no delivery span with an attempt:\n{stderr}"));
    assert_eq!(span["partition"], 0);
    assert_eq!(span["attempt"], 1);
    assert!(span["offset"].is_i64(), "{span}");
}
