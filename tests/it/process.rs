//! The real binary: commands end to end, and a replica killed with SIGKILL
//! mid-stream.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hookline::delivery::runner::Topics;

use crate::support::process::{Spawned, command, output};
use crate::support::receiver::delivered_by_tenant;
use crate::support::replica::{TestTenant, topic_names, write_topology};
use crate::support::{Broker, Received, Receiver, hookline};

/// Topics named for this test, created by `setup-topics` with
/// `partitions` partitions, and the topology file naming them.
fn set_up_topics(
    broker: &Broker,
    dir: &std::path::Path,
    partitions: u32,
) -> (Topics, std::path::PathBuf) {
    let topics = topic_names(broker);
    let topology = write_topology(dir, &topics, partitions);
    let (code, _, stderr) = output(command(broker, &topology), &["setup-topics"]);
    assert_eq!(code, Some(0), "{stderr}");
    (topics, topology)
}

/// `hookline run` for this test, once it has started.
async fn start_replica(broker: &Broker, topology: &std::path::Path) -> Spawned {
    let mut run = command(broker, topology);
    run.arg("run");
    let replica = Spawned::start(run);
    replica
        .wait_for_log("replica started", Duration::from_secs(30))
        .await;
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_commands_round_trip_with_a_keygen_key() {
    let broker = Broker::new("tenants-cli");
    let dir = tempfile::tempdir().unwrap();
    let (_, topology) = set_up_topics(&broker, dir.path(), 1);

    let keys = dir.path().join("keys");
    let (code, stdout, stderr) = output(
        command(&broker, &topology),
        &["keygen", "--out", keys.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let public = keys.join("public.pem");
    assert!(public.is_file(), "{stdout}");

    let (code, stdout, stderr) = output(
        command(&broker, &topology),
        &[
            "tenants",
            "put",
            "acme",
            "--url",
            "https://hooks.acme.example/in",
            "--public-key",
            public.to_str().unwrap(),
            "--events",
            "order.*,invoice.paid",
            "--generate-secret",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("tenant acme written"), "{stdout}");
    let secret = stdout
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("whsec_")))
        .expect("the generated secret is printed once");

    let (code, stdout, stderr) = output(command(&broker, &topology), &["tenants", "get", "acme"]);
    assert_eq!(code, Some(0), "{stderr}");
    let record: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(record["url"], "https://hooks.acme.example/in");
    assert_eq!(
        record["events"],
        serde_json::json!(["order.*", "invoice.paid"])
    );
    assert_eq!(record["status"], "enabled");
    assert_eq!(record["key_bits"], 2048);
    assert!(!stdout.contains(secret), "get must not print the secret");

    let (code, stdout, _) = output(command(&broker, &topology), &["tenants", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("acme") && l.contains("enabled")),
        "{stdout}"
    );
    let (_, stdout, _) = output(command(&broker, &topology), &["tenants", "list", "--json"]);
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["id"], "acme");

    // Bad input: one line naming the problem, exit 1, nothing written.
    let (code, _, stderr) = output(
        command(&broker, &topology),
        &[
            "tenants",
            "put",
            "bad",
            "--url",
            "ftp://x.example",
            "--public-key",
            public.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("url"), "{stderr}");
    let (code, _, stderr) = output(command(&broker, &topology), &["tenants", "get", "bad"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("does not exist"), "{stderr}");

    let (code, stdout, stderr) =
        output(command(&broker, &topology), &["tenants", "delete", "acme"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("deleted"));
    let (code, _, stderr) = output(command(&broker, &topology), &["tenants", "get", "acme"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("tenant `acme` does not exist"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_stream_loses_nothing_and_keeps_ids_stable() {
    let broker = Broker::new("kill9");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = set_up_topics(&broker, dir.path(), 3);

    let receiver = Receiver::ok().await;
    let tenants: Vec<TestTenant> = (0..5).map(|i| TestTenant::new(&format!("k{i}"))).collect();
    for tenant in &tenants {
        tenant
            .register(&broker, &topics, &tenant.record(&receiver.url("/")))
            .await;
    }
    let mut replica = start_replica(&broker, &topology).await;

    // Half the events carry no id: theirs is derived from the record
    // position, and must be just as stable across redeliveries.
    let total = 2000u32;
    for n in 0..total {
        let tenant = &tenants[(n % 5) as usize];
        let value = if n % 2 == 0 {
            serde_json::json!({"id": format!("kill-{n}"), "type": "x", "data": n})
        } else {
            serde_json::json!({"type": "x", "data": n})
        };
        broker
            .produce(
                &topics.events,
                Some(tenant.id.as_bytes()),
                Some(&serde_json::to_vec(&value).unwrap()),
                &[],
            )
            .await;
    }
    receiver.wait_for(300, Duration::from_secs(60)).await;
    replica.signal("KILL");
    replica.wait(Duration::from_secs(10)).await;
    let before_kill = receiver.received().len();

    let _restarted = start_replica(&broker, &topology).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let distinct = || -> HashSet<String> {
        receiver
            .received()
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_string))
            .collect()
    };
    while distinct().len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ids = distinct();
    assert_eq!(
        ids.len(),
        total as usize,
        "events lost after kill -9 (had {before_kill} before)"
    );
    let received = receiver.received().len();
    // Redeliveries are allowed (at-least-once) but each one repeats an id
    // already counted above, so `ids` did not grow past `total`.
    assert!(received >= total as usize);
    let dead = broker.consume(&topics.dlq, 1, Duration::from_secs(2)).await;
    assert!(dead.is_empty(), "nothing should be dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_with_a_backlog_in_its_windows_loses_nothing_and_keeps_each_tenant_in_order()
 {
    let broker = Broker::new("kill9-backlog");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = set_up_topics(&broker, dir.path(), 3);
    // Endpoints that take 100 ms to answer: a tenant gets 10 events a
    // second, so each partition reads far ahead of its deliveries and its
    // window holds a backlog of many tenants' events when the kill comes.
    let receiver =
        Receiver::slow(Duration::from_millis(100), Arc::new(|_, _| StatusCode::OK)).await;
    let tenants: Vec<TestTenant> = (0..50).map(|i| TestTenant::new(&format!("w{i}"))).collect();
    for tenant in &tenants {
        let url = receiver.url(&format!("/{}", tenant.id));
        tenant
            .register(&broker, &topics, &tenant.record(&url))
            .await;
    }
    let mut replica = start_replica(&broker, &topology).await;

    // 60 events per tenant, in rounds of one per tenant so that each
    // tenant's order is the order of the rounds. Every other event carries
    // no id: its id is derived from the record's position.
    let mut produced: HashMap<String, Vec<String>> = HashMap::new();
    for n in 0..60 {
        let round = tenants.iter().map(|tenant| {
            let value = if n % 2 == 0 {
                serde_json::json!({"id": format!("{}-{n}", tenant.id), "type": "x", "data": n})
            } else {
                serde_json::json!({"type": "x", "data": n})
            };
            let (broker, topic) = (&broker, &topics.events);
            async move {
                let value = serde_json::to_vec(&value).unwrap();
                let (partition, offset) = broker
                    .produce(topic, Some(tenant.id.as_bytes()), Some(&value), &[])
                    .await;
                let id = match n % 2 {
                    0 => format!("{}-{n}", tenant.id),
                    _ => hookline::events::derived_id(topic, partition, offset),
                };
                (tenant.id.clone(), id)
            }
        });
        for (tenant, id) in futures::future::join_all(round).await {
            produced.entry(tenant).or_default().push(id);
        }
    }
    let total: usize = produced.values().map(Vec::len).sum();
    let distinct = |received: &[Received]| -> HashSet<String> {
        received
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_string))
            .collect()
    };

    let deadline = Instant::now() + Duration::from_secs(60);
    while distinct(&receiver.received()).len() < total / 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica.signal("KILL");
    replica.wait(Duration::from_secs(10)).await;
    let before_kill = distinct(&receiver.received()).len();
    assert!(
        before_kill < total,
        "the backlog was delivered before the kill ({before_kill} of {total})"
    );

    let _restarted = start_replica(&broker, &topology).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while distinct(&receiver.received()).len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let received = receiver.received();
    let ids = distinct(&received);
    let report = format!(
        "{} of {total} events delivered, {before_kill} before the kill; {} requests, so {} \
         deliveries again",
        ids.len(),
        received.len(),
        received.len() - ids.len()
    );
    let all: HashSet<String> = produced.values().flatten().cloned().collect();
    let lost: Vec<&String> = all.difference(&ids).collect();
    assert!(lost.is_empty(), "lost after kill -9: {lost:?}; {report}");
    // Stable ids: a redelivery under another id would be an id never
    // produced.
    let unknown: Vec<&String> = ids.difference(&all).collect();
    assert!(
        unknown.is_empty(),
        "ids never produced: {unknown:?}; {report}"
    );
    let arrived = delivered_by_tenant(&received, |_| true);
    for (tenant, ids) in &produced {
        assert_eq!(
            arrived[&format!("/{tenant}")],
            *ids,
            "{tenant}'s order; {report}"
        );
    }
    let dead = broker.consume(&topics.dlq, 1, Duration::from_secs(2)).await;
    assert!(dead.is_empty(), "nothing should be dead-lettered; {report}");
    eprintln!("kill -9 with a backlog: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_produces_an_event_that_a_replica_delivers() {
    let broker = Broker::new("send");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = set_up_topics(&broker, dir.path(), 2);
    let receiver = Receiver::ok().await;
    let tenant = TestTenant::new("sender");
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/hook")))
        .await;

    let (code, stdout, stderr) = output(
        command(&broker, &topology),
        &[
            "send",
            "sender",
            "--type",
            "order.created",
            "--data",
            r#"{"order":42}"#,
            "--id",
            "evt_1",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("event sent"), "{stdout}");
    let (code, _, stderr) = output(
        command(&broker, &topology),
        &["send", "sender", "--type", "x", "--data", "{not json"],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--data is not JSON"), "{stderr}");

    let _replica = start_replica(&broker, &topology).await;
    let received = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 1);
    let delivery = tenant.open(&received[0]);
    assert_eq!(delivery.webhook_id, "evt_1");
    assert_eq!(delivery.event_type, "order.created");
    assert_eq!(delivery.data, serde_json::json!({"order": 42}));
}

/// The signal handling that `run`, `api` and `receive` share, seen on
/// `receive`, which needs no broker: the first SIGINT waits for the request
/// in flight, a second one ends the process at once with exit code 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_a_graceful_stop_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let (code, _, stderr) = output(
        hookline("127.0.0.1:1"),
        &["keygen", "--out", keys.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let mut receive = hookline("127.0.0.1:1");
    receive.args([
        "receive",
        "--listen",
        "127.0.0.1:0",
        "--private-key",
        keys.join("private.pem").to_str().unwrap(),
    ]);
    let mut receiver = Spawned::start(receive);
    let address = receiver
        .address_after("listening on ", Duration::from_secs(30))
        .await;

    // A request whose body never arrives in full stays in flight, which
    // holds the graceful stop.
    let mut request = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut request,
        b"POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\npartial",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    receiver.signal("INT");
    receiver
        .wait_for_log("signal again to exit at once", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.exited().is_none(),
        "stopped with a request in flight:\n{}",
        receiver.stderr()
    );
    receiver.signal("INT");
    let status = receiver.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(130), "{}", receiver.stderr());
    drop(request);
}

/// A replica killed just after it dead-lettered a tenant's event and sent
/// the tenant's next one: the dead letter's finish was committed before
/// the next event left, so the next owner does not deliver the
/// dead-lettered event after the one the receiver already has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_after_a_dead_letter_never_delivers_it_after_the_next_event() {
    let broker = Broker::new("kill9-dead-letter");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = set_up_topics(&broker, dir.path(), 1);
    // The first replica's pid: the receiver kills it the moment the
    // tenant's second event arrives. Its first event fails while that
    // replica runs, and would be accepted afterwards.
    let victim = Arc::new(AtomicU32::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start(Arc::new({
        let (victim, killed) = (victim.clone(), killed.clone());
        move |_, request| match request.header("webhook-id") {
            Some("dl-0") if !killed.load(Ordering::SeqCst) => StatusCode::SERVICE_UNAVAILABLE,
            Some("dl-1") if !killed.swap(true, Ordering::SeqCst) => {
                let pid = victim.load(Ordering::SeqCst);
                let status = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .expect("run kill");
                assert!(status.success());
                StatusCode::OK
            }
            _ => StatusCode::OK,
        }
    }))
    .await;
    let tenant = TestTenant::new("dl");
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/dl")))
        .await;
    let replica = |max_attempts: &str| {
        let mut run = command(&broker, &topology);
        run.env("HOOKLINE__DELIVERY__MAX_ATTEMPTS", max_attempts)
            .arg("run");
        Spawned::start(run)
    };
    let mut first = replica("1");
    victim.store(first.pid(), Ordering::SeqCst);
    first
        .wait_for_log("replica started", Duration::from_secs(30))
        .await;
    let produce = |n: usize| {
        let value = serde_json::json!({"id": format!("dl-{n}"), "type": "x", "data": n});
        let (broker, topic) = (&broker, &topics.events);
        async move {
            let value = serde_json::to_vec(&value).unwrap();
            broker.produce(topic, Some(b"dl"), Some(&value), &[]).await;
        }
    };
    produce(0).await;
    produce(1).await;
    first.wait(Duration::from_secs(30)).await;
    assert!(killed.load(Ordering::SeqCst));

    let second = replica("5");
    second
        .wait_for_log("replica started", Duration::from_secs(30))
        .await;
    produce(2).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !receiver.webhook_ids("/dl").iter().any(|id| id == "dl-2") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = receiver.webhook_ids("/dl");
    assert!(ids.iter().any(|id| id == "dl-2"), "{ids:?}");
    // dl-0 was tried once, by the first replica, and dead-lettered; the
    // second replica went on from after it.
    assert_eq!(
        ids.iter().filter(|id| *id == "dl-0").count(),
        1,
        "dl-0 was delivered again after dl-1: {ids:?}"
    );
    let dead = broker.consume(&topics.dlq, 2, Duration::from_secs(3)).await;
    assert_eq!(dead.len(), 1, "one dead letter");
    drop(second);
}
