//! The delivery core against the real broker and real local HTTP
//! receivers: order, isolation, dead letters, rebalances, shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::support::replica::{Replica, TestTenant, create_topics, replica_config};
use crate::support::{Broker, Receiver, Record};

fn event(id: &str, event_type: &str, data: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": id, "type": event_type, "data": data})).unwrap()
}

/// The ids of `requests`, in arrival order, each counted once (a retry of
/// an id already seen is not a new arrival).
fn distinct_ids(requests: &[crate::support::Received]) -> Vec<String> {
    let mut seen = HashSet::new();
    requests
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_string))
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_order_is_kept_while_first_attempts_fail() {
    order_is_kept_while_first_attempts_fail("key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_is_kept_while_first_attempts_fail() {
    order_is_kept_while_first_attempts_fail("partition").await;
}

/// Every fifth event fails once; the order kept is the tenant's in key
/// order, the partition's in partition order.
async fn order_is_kept_while_first_attempts_fail(ordering: &str) {
    let broker = Broker::new(&format!("order-{ordering}"));
    let topics = create_topics(&broker, 3).await;
    // Every fifth event fails on its first attempt.
    let failed_once = Arc::new(Mutex::new(HashSet::new()));
    let receiver = {
        let failed_once = failed_once.clone();
        Receiver::start(Arc::new(move |_, request| {
            let id = request.header("webhook-id").unwrap_or_default().to_string();
            let n: u32 = id
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if n.is_multiple_of(5) && failed_once.lock().unwrap().insert(id) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }))
        .await
    };
    let tenants: Vec<TestTenant> = (0..6).map(|i| TestTenant::new(&format!("t{i}"))).collect();
    for tenant in &tenants {
        tenant
            .register(
                &broker,
                &topics,
                &tenant.record(&receiver.url(&format!("/{}", tenant.id))),
            )
            .await;
    }
    let config = replica_config(&broker, &[("DELIVERY__ORDERING", ordering)]);
    let replica = Replica::start(config, &topics).await;

    // Tenants share partitions: six tenants over three partitions.
    let mut produced_in_order: HashMap<String, Vec<String>> = HashMap::new();
    for n in 0..120u32 {
        let tenant = &tenants[(n % 6) as usize];
        let id = format!("{}-{n}", tenant.id);
        let (partition, _) = broker
            .produce(
                &topics.events,
                Some(tenant.id.as_bytes()),
                Some(&event(&id, "order.created", serde_json::json!({"n": n}))),
                &[],
            )
            .await;
        let group = match ordering {
            "partition" => format!("partition {partition}"),
            _ => format!("tenant {}", tenant.id),
        };
        produced_in_order.entry(group).or_default().push(id);
    }

    let expected_requests = 120 + 120 / 5;
    let received = receiver
        .wait_for(expected_requests, Duration::from_secs(60))
        .await;
    assert_eq!(
        received.len(),
        expected_requests,
        "every event delivered, every fifth twice"
    );
    let arrival = distinct_ids(&received);
    for (group, produced) in &produced_in_order {
        let arrived: Vec<&String> = arrival.iter().filter(|id| produced.contains(id)).collect();
        assert_eq!(
            arrived,
            produced.iter().collect::<Vec<_>>(),
            "{group}: arrival order differs from produced order"
        );
    }
    // The payload is what was produced, readable only with the tenant's key.
    let sample = received.iter().find(|r| r.path == "/t3").unwrap();
    let delivery = tenants[3].open(sample);
    assert_eq!(delivery.tenant, "t3");
    assert_eq!(delivery.event_type, "order.created");
    assert_eq!(delivery.webhook_id, sample.header("webhook-id").unwrap());
    replica.stop().await;
}

/// Partition order: a failing tenant holds back its partition mates (key
/// order does not: `key_order.rs`), and no other partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_partition_order_a_failing_tenant_blocks_only_its_own_partition() {
    let broker = Broker::new("isolation");
    let topics = create_topics(&broker, 2).await;
    let receiver = Receiver::start(Arc::new(|_, request| {
        if request.path == "/down" {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }))
    .await;
    let down = TestTenant::new("down");
    let up = TestTenant::new("up");
    down.register(&broker, &topics, &down.record(&receiver.url("/down")))
        .await;
    up.register(&broker, &topics, &up.record(&receiver.url("/up")))
        .await;
    // Six attempts with backoff between 300 ms and 1 s block partition 0 for
    // several seconds.
    let config = replica_config(
        &broker,
        &[
            ("DELIVERY__MAX_ATTEMPTS", "6"),
            ("DELIVERY__INITIAL_BACKOFF", "300ms"),
            ("DELIVERY__MAX_BACKOFF", "1s"),
            ("DELIVERY__ORDERING", "partition"),
        ],
    );
    let replica = Replica::start(config, &topics).await;

    broker
        .produce_to(
            &topics.events,
            Some(0),
            Some(b"down"),
            Some(&event("blocked", "x", serde_json::json!(1))),
            &[],
        )
        .await;
    // Behind the failing event on its partition: waits for it.
    broker
        .produce_to(
            &topics.events,
            Some(0),
            Some(b"up"),
            Some(&event("behind", "x", serde_json::json!(2))),
            &[],
        )
        .await;
    // On the other partition: must not wait.
    for n in 0..20 {
        broker
            .produce_to(
                &topics.events,
                Some(1),
                Some(b"up"),
                Some(&event(&format!("free-{n}"), "x", serde_json::json!(n))),
                &[],
            )
            .await;
    }

    let received = receiver.wait_for(6 + 21, Duration::from_secs(60)).await;
    let attempts: Vec<Instant> = received
        .iter()
        .filter(|r| r.path == "/down")
        .map(|r| r.at)
        .collect();
    assert_eq!(attempts.len(), 6, "max_attempts reached");
    let last_failure = *attempts.last().unwrap();
    let free: Vec<Instant> = received
        .iter()
        .filter(|r| {
            r.header("webhook-id")
                .is_some_and(|id| id.starts_with("free-"))
        })
        .map(|r| r.at)
        .collect();
    assert_eq!(free.len(), 20);
    assert!(
        free.iter().all(|at| *at < last_failure),
        "the other partition waited for the failing tenant"
    );
    let behind = received
        .iter()
        .find(|r| r.header("webhook-id") == Some("behind"))
        .expect("delivered after the dead letter");
    assert!(
        behind.at > last_failure,
        "partition order: `behind` overtook the blocked event"
    );

    let dead = broker
        .consume(&topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("dlq.reason"), Some("retries_exhausted"));
    assert_eq!(dead[0].header("dlq.attempts"), Some("6"));
    assert_eq!(dead[0].header("dlq.status"), Some("503"));
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_events_are_dead_lettered_with_their_reason_and_original_bytes() {
    let broker = Broker::new("dlq");
    let topics = create_topics(&broker, 1).await;
    let receiver = Receiver::start(Arc::new(|_, request| match request.path.as_str() {
        "/gone" => StatusCode::GONE,
        "/flaky" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    }))
    .await;
    let ok = TestTenant::new("ok");
    let gone = TestTenant::new("gone");
    let flaky = TestTenant::new("flaky");
    let disabled = TestTenant::new("disabled");
    ok.register(&broker, &topics, &ok.record(&receiver.url("/ok")))
        .await;
    gone.register(&broker, &topics, &gone.record(&receiver.url("/gone")))
        .await;
    flaky
        .register(&broker, &topics, &flaky.record(&receiver.url("/flaky")))
        .await;
    let mut record = disabled.record(&receiver.url("/disabled"));
    record["enabled"] = serde_json::json!(false);
    disabled.register(&broker, &topics, &record).await;
    broker
        .produce(&topics.tenants, Some(b"broken"), Some(b"{not json"), &[])
        .await;

    let config = replica_config(
        &broker,
        &[
            ("DELIVERY__MAX_ATTEMPTS", "2"),
            ("DELIVERY__MAX_PAYLOAD_BYTES", "2000"),
        ],
    );
    let replica = Replica::start(config, &topics).await;

    let big = event("big", "x", serde_json::json!("y".repeat(3000)));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "flaky",
            event("e1", "x", serde_json::json!(1)),
            "retries_exhausted",
        ),
        ("gone", event("e2", "x", serde_json::json!(2)), "rejected"),
        (
            "nobody",
            event("e3", "x", serde_json::json!(3)),
            "unknown_tenant",
        ),
        (
            "disabled",
            event("e4", "x", serde_json::json!(4)),
            "tenant_disabled",
        ),
        (
            "broken",
            event("e5", "x", serde_json::json!(5)),
            "invalid_tenant",
        ),
        ("ok", b"{not json".to_vec(), "invalid_event"),
        ("ok", br#"{"data": 1}"#.to_vec(), "invalid_event"),
        ("ok", big, "payload_too_large"),
    ];
    let mut offsets = Vec::new();
    for (tenant, value, _) in &cases {
        let (_, offset) = broker
            .produce(
                &topics.events,
                Some(tenant.as_bytes()),
                Some(value),
                &[("trace-id", b"abc")],
            )
            .await;
        offsets.push(offset);
    }
    // The partition moves on after all of them.
    broker
        .produce(
            &topics.events,
            Some(b"ok"),
            Some(&event("after", "x", serde_json::json!(0))),
            &[],
        )
        .await;

    let dead: Vec<Record> = broker
        .consume(&topics.dlq, cases.len(), Duration::from_secs(60))
        .await;
    assert_eq!(dead.len(), cases.len());
    for ((tenant, value, reason), offset) in cases.iter().zip(&offsets) {
        let letter = dead
            .iter()
            .find(|r| r.header("dlq.offset") == Some(&offset.to_string()))
            .unwrap_or_else(|| panic!("no dead letter for offset {offset} ({reason})"));
        assert_eq!(
            letter.header("dlq.reason"),
            Some(*reason),
            "offset {offset}"
        );
        assert_eq!(letter.key.as_deref(), Some(tenant.as_bytes()));
        assert_eq!(
            letter.value.as_deref(),
            Some(value.as_slice()),
            "original bytes kept"
        );
        assert_eq!(
            letter.header("trace-id"),
            Some("abc"),
            "original headers kept"
        );
        assert_eq!(letter.header("dlq.topic"), Some(topics.events.as_str()));
        assert_eq!(letter.header("dlq.partition"), Some("0"));
        assert_eq!(letter.header("dlq.tenant"), Some(*tenant));
        assert!(letter.header("dlq.error").is_some_and(|e| !e.is_empty()));
    }
    let by_reason = |reason: &str| {
        dead.iter()
            .find(|r| r.header("dlq.reason") == Some(reason))
            .unwrap()
    };
    assert_eq!(
        by_reason("retries_exhausted").header("dlq.attempts"),
        Some("2")
    );
    assert_eq!(
        by_reason("retries_exhausted").header("dlq.status"),
        Some("500")
    );
    assert!(
        by_reason("retries_exhausted")
            .header("dlq.first_attempt_at")
            .is_some()
    );
    assert_eq!(by_reason("rejected").header("dlq.attempts"), Some("1"));
    assert_eq!(by_reason("rejected").header("dlq.status"), Some("410"));
    assert_eq!(
        by_reason("unknown_tenant").header("dlq.attempts"),
        Some("0")
    );
    assert_eq!(
        by_reason("unknown_tenant").header("dlq.first_attempt_at"),
        None
    );

    let received = receiver.wait_for(2 + 1 + 1, Duration::from_secs(30)).await;
    assert!(
        received
            .iter()
            .any(|r| r.header("webhook-id") == Some("after"))
    );
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_takes_over_without_loss_or_reordering() {
    let broker = Broker::new("rebalance");
    let topics = create_topics(&broker, 4).await;
    let receiver = Receiver::ok().await;
    let tenants: Vec<TestTenant> = (0..8).map(|i| TestTenant::new(&format!("r{i}"))).collect();
    for tenant in &tenants {
        tenant
            .register(&broker, &topics, &tenant.record(&receiver.url("/")))
            .await;
    }
    let first = Replica::start(replica_config(&broker, &[]), &topics).await;

    let mut produced_by_tenant: HashMap<String, Vec<String>> = HashMap::new();
    let produce = async |range: std::ops::Range<u32>,
                         produced: &mut HashMap<String, Vec<String>>| {
        for n in range {
            let tenant = &tenants[(n % 8) as usize];
            let id = format!("{}-{n}", tenant.id);
            broker
                .produce(
                    &topics.events,
                    Some(tenant.id.as_bytes()),
                    Some(&event(&id, "x", serde_json::json!(n))),
                    &[],
                )
                .await;
            produced.entry(tenant.id.clone()).or_default().push(id);
        }
    };
    produce(0..100, &mut produced_by_tenant).await;
    let second = Replica::start(replica_config(&broker, &[]), &topics).await;
    produce(100..200, &mut produced_by_tenant).await;
    first.stop().await;
    produce(200..300, &mut produced_by_tenant).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut arrival = distinct_ids(&receiver.received());
    while arrival.len() < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        arrival = distinct_ids(&receiver.received());
    }
    assert_eq!(arrival.len(), 300, "every event delivered at least once");
    for (tenant, produced) in &produced_by_tenant {
        let arrived: Vec<&String> = arrival.iter().filter(|id| produced.contains(id)).collect();
        assert_eq!(
            arrived,
            produced.iter().collect::<Vec<_>>(),
            "tenant {tenant} reordered"
        );
    }
    assert!(
        second.state.partitions_assigned() >= 2,
        "the second replica took partitions"
    );
    assert_eq!(second.state.partitions_lost(), 0);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backoff_longer_than_max_poll_interval_keeps_the_member_in_its_group() {
    let broker = Broker::new("long-backoff");
    let topics = create_topics(&broker, 1).await;
    let opened_at = Instant::now() + Duration::from_secs(12);
    let receiver = Receiver::start(Arc::new(move |_, _| {
        if Instant::now() < opened_at {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }))
    .await;
    let tenant = TestTenant::new("patient");
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/")))
        .await;
    // Each backoff (8 s) outlasts max.poll.interval.ms (7 s).
    let config = replica_config(
        &broker,
        &[
            ("DELIVERY__MAX_ATTEMPTS", "10"),
            ("DELIVERY__INITIAL_BACKOFF", "8s"),
            ("DELIVERY__MAX_BACKOFF", "8s"),
            ("KAFKA__PROPERTIES__MAX.POLL.INTERVAL.MS", "7000"),
        ],
    );
    let replica = Replica::start(config, &topics).await;
    broker
        .produce(
            &topics.events,
            Some(b"patient"),
            Some(&event("slow", "x", serde_json::json!(1))),
            &[],
        )
        .await;
    let received = receiver.wait_for(3, Duration::from_secs(40)).await;
    assert!(received.len() >= 3, "delivered after two long backoffs");
    assert_eq!(
        replica.state.partitions_lost(),
        0,
        "the member was thrown out of its group"
    );
    assert_eq!(replica.state.partitions_revoked(), 0);
    assert_eq!(replica.state.partitions_assigned(), 1);
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_graceful_restart_nothing_acknowledged_is_delivered_again() {
    let broker = Broker::new("restart");
    let topics = create_topics(&broker, 2).await;
    let receiver = Receiver::ok().await;
    let tenant = TestTenant::new("steady");
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/")))
        .await;

    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;
    for n in 0..30 {
        broker
            .produce(
                &topics.events,
                Some(b"steady"),
                Some(&event(&format!("a-{n}"), "x", serde_json::json!(n))),
                &[],
            )
            .await;
    }
    assert_eq!(
        receiver.wait_for(30, Duration::from_secs(30)).await.len(),
        30
    );
    replica.stop().await;

    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;
    for n in 0..10 {
        broker
            .produce(
                &topics.events,
                Some(b"steady"),
                Some(&event(&format!("b-{n}"), "x", serde_json::json!(n))),
                &[],
            )
            .await;
    }
    let received = receiver.wait_for(40, Duration::from_secs(30)).await;
    // Give a wrongly repeated delivery time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received().len().max(received.len());
    assert_eq!(
        received, 40,
        "deliveries acknowledged before the restart came again"
    );
    replica.stop().await;
}
