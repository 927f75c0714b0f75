//! The broker goes away: `hookline run` started while its broker is down
//! waits for it (no exit, no crash loop; `/healthz` 200, `/readyz` 503),
//! then delivers; and a broker stopped in the middle of a run makes the
//! replica not ready, never kills it, and loses nothing: every produced
//! event ends delivered or dead-lettered once the broker is back, events
//! produced during the outage included.
//!
//! It runs a broker of its own (port `HOOKLINE_OUTAGE_KAFKA_PORT`, default
//! 9692), since it stops it. The mid-run outage lasts
//! `HOOKLINE_OUTAGE_SECS` seconds: 60 under `HOOKLINE_SOAK=full` (`make
//! soak`), 20 by default, which already spans several readiness checks, the
//! session timeout and many reconnection attempts, while keeping `make test`
//! about a minute shorter.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::support::process::Spawned;
use crate::support::replica::{topic_names, write_topology};
use crate::support::{Broker, Receiver, hookline, own_broker, own_kafka};

fn outage() -> Duration {
    let default = if std::env::var("HOOKLINE_SOAK").as_deref() == Ok("full") {
        60
    } else {
        20
    };
    let secs = std::env::var("HOOKLINE_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

async fn status(addr: SocketAddr, path: &str) -> u16 {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .status()
        .as_u16()
}

/// Polls `/readyz` until it answers `want`, failing after `timeout` or as
/// soon as the replica exits.
async fn wait_ready_status(replica: &mut Spawned, addr: SocketAddr, want: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        assert_eq!(
            replica.exited(),
            None,
            "the replica exited:\n{}",
            replica.stderr()
        );
        if status(addr, "/readyz").await == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never said {want} within {timeout:?}:\n{}",
            replica.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": id, "type": "outage", "data": {"id": id}}))
        .unwrap()
}

/// Produces `count` events for each of the tenants `ok` and `gone`, ids
/// `{tenant}-{batch}-{n}`, and returns the ids.
async fn produce_batch(broker: &Broker, topic: &str, batch: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        for tenant in ["ok", "gone"] {
            let id = format!("{tenant}-{batch}-{n}");
            broker
                .produce(topic, Some(tenant.as_bytes()), Some(&event(&id)), &[])
                .await;
            ids.push(id);
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_at_start_and_mid_run_nothing_is_lost() {
    let outage = outage();
    let (port, broker) = own_broker("outage", "HOOKLINE_OUTAGE_KAFKA_PORT", 9692);
    let bootstrap = broker.bootstrap.clone();
    let dir = tempfile::tempdir().unwrap();
    let topics = topic_names(&broker);
    let topology = write_topology(dir.path(), &topics, 3);
    let command = |args: &[&str]| {
        let mut command = hookline(&bootstrap);
        command
            .env("HOOKLINE__TOPOLOGY", &topology)
            .env("HOOKLINE__KAFKA__GROUP_ID", broker.name("group"))
            .env("HOOKLINE__KAFKA__SESSION_TIMEOUT", "6s")
            .env("HOOKLINE__KAFKA__DRAIN_TIMEOUT", "3s")
            .env("HOOKLINE__KAFKA__ADMIN_TIMEOUT", "2s")
            .env("HOOKLINE__DELIVERY__MAX_ATTEMPTS", "3")
            .env("HOOKLINE__DELIVERY__INITIAL_BACKOFF", "100ms")
            .env("HOOKLINE__DELIVERY__MAX_BACKOFF", "500ms")
            .env("HOOKLINE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true")
            .env("HOOKLINE__TELEMETRY__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info,rdkafka=warn")
            .args(args);
        command
    };
    let setup = command(&["setup-topics"]).output().unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );

    // `ok` accepts everything; `gone` answers 410, so its events are
    // dead-lettered, which needs the broker.
    let receiver = Receiver::start(Arc::new(|_, request| match request.path.as_str() {
        "/gone" => StatusCode::GONE,
        _ => StatusCode::OK,
    }))
    .await;
    let key = hookline::crypto::PrivateKey::generate(2048).unwrap();
    for tenant in ["ok", "gone"] {
        let record = serde_json::json!({
            "url": receiver.url(&format!("/{tenant}")),
            "public_key": key.public_key().to_spki_pem(),
        });
        broker
            .produce(
                &topics.tenants,
                Some(tenant.as_bytes()),
                Some(&serde_json::to_vec(&record).unwrap()),
                &[],
            )
            .await;
    }
    let mut produced = produce_batch(&broker, &topics.events, "before-start", 10).await;

    // At start: the broker is down. The replica waits, alive but not ready.
    own_kafka("stop", port);
    let mut replica = Spawned::start(command(&["run"]));
    let telemetry = replica.telemetry_addr(Duration::from_secs(30)).await;
    let waiting = Instant::now() + Duration::from_secs(30);
    while replica.count_log("waiting for Kafka") < 2 {
        assert_eq!(replica.exited(), None, "exited:\n{}", replica.stderr());
        assert!(
            Instant::now() < waiting,
            "no second try:\n{}",
            replica.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(telemetry, "/healthz").await, 200);
    assert_eq!(status(telemetry, "/readyz").await, 503);

    own_kafka("start", port);
    wait_ready_status(&mut replica, telemetry, 200, Duration::from_secs(90)).await;

    // Mid-run: events in flight when the broker stops, more produced while
    // it is away (the producer buffers them until it is back).
    produced.extend(produce_batch(&broker, &topics.events, "before-outage", 20).await);
    own_kafka("stop", port);
    let stopped_at = Instant::now();
    let during = {
        let broker = Broker::at("outage-producer", bootstrap.clone());
        let topic = topics.events.clone();
        tokio::spawn(async move { produce_batch(&broker, &topic, "during-outage", 10).await })
    };
    wait_ready_status(&mut replica, telemetry, 503, outage).await;
    assert_eq!(status(telemetry, "/healthz").await, 200);
    while stopped_at.elapsed() < outage {
        assert_eq!(replica.exited(), None, "exited:\n{}", replica.stderr());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    own_kafka("start", port);
    wait_ready_status(&mut replica, telemetry, 200, Duration::from_secs(120)).await;
    produced.extend(during.await.unwrap());
    produced.extend(produce_batch(&broker, &topics.events, "after-outage", 10).await);

    // Everything ends delivered (ok) or dead-lettered (gone).
    let want_delivered: HashSet<&str> = produced
        .iter()
        .filter(|id| id.starts_with("ok-"))
        .map(String::as_str)
        .collect();
    let want_dead: HashSet<&str> = produced
        .iter()
        .filter(|id| id.starts_with("gone-"))
        .map(String::as_str)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let (delivered, dead) = loop {
        let delivered: HashSet<String> = receiver
            .received()
            .iter()
            .filter(|r| r.path == "/ok")
            .filter_map(|r| r.header("webhook-id").map(str::to_string))
            .collect();
        // At-least-once: a dead letter written before a partition was lost
        // is written again by its next owner, so read past the count.
        let dlq = broker
            .consume(&topics.dlq, usize::MAX, Duration::from_secs(5))
            .await;
        let dead: HashSet<String> = dlq
            .iter()
            .filter(|r| r.header("dlq.reason") == Some("rejected"))
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(r.value.as_deref()?).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect();
        let done = want_delivered.iter().all(|id| delivered.contains(*id))
            && want_dead.iter().all(|id| dead.contains(*id));
        if done || Instant::now() >= deadline {
            break (delivered, dead);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let lost: Vec<&&str> = want_delivered
        .iter()
        .filter(|id| !delivered.contains(**id))
        .chain(want_dead.iter().filter(|id| !dead.contains(**id)))
        .collect();
    let log = replica.stderr();
    assert!(lost.is_empty(), "lost: {lost:?}\n{log}");
    assert!(log.contains("Kafka does not answer; not ready"), "{log}");
    assert!(log.contains("Kafka answers again; ready"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    replica.signal("TERM");
    let exit = replica.wait(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}:\n{}", replica.stderr());
    drop(broker);
    own_kafka("down", port);
}

/// A replica waiting for a cluster that never answers is alive, not ready,
/// keeps trying, and still stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_waiting_for_kafka_is_not_ready_and_stops_on_sigterm() {
    // Port 1 on loopback: nothing listens, so every connection is refused.
    let mut command = hookline("127.0.0.1:1");
    command
        .arg("run")
        .env("HOOKLINE__KAFKA__ADMIN_TIMEOUT", "1s")
        .env("HOOKLINE__TELEMETRY__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info,rdkafka=off,librdkafka=off");
    let mut replica = Spawned::start(command);
    let telemetry = replica.telemetry_addr(Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica.count_log("waiting for Kafka, next try in") < 3 {
        assert_eq!(replica.exited(), None, "exited:\n{}", replica.stderr());
        assert!(Instant::now() < deadline, "{}", replica.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(telemetry, "/healthz").await, 200);
    assert_eq!(status(telemetry, "/readyz").await, 503);
    let log = replica.stderr();
    for wait in ["next try in 1s", "next try in 2s", "next try in 4s"] {
        assert!(log.contains(wait), "{wait}:\n{log}");
    }

    replica.signal("TERM");
    let exit = replica.wait(Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit:?}:\n{}", replica.stderr());
    assert!(replica.stderr().contains("stopped while waiting for Kafka"));
}
