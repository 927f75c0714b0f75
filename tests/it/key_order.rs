//! Key-ordered delivery against the real broker: a slow or failing tenant
//! holds back only itself, each tenant's events stay in order, suspension
//! and its probe, and what a restart does not deliver again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::support::receiver::delivered_by_tenant;
use crate::support::replica::{Replica, TestTenant, create_topics, replica_config};
use crate::support::{Broker, Received, Receiver, Record};

fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": id, "type": "x", "data": {}})).unwrap()
}

async fn register(
    broker: &Broker,
    topics: &hookline::delivery::runner::Topics,
    receiver: &Receiver,
    ids: &[&str],
) {
    for id in ids {
        let tenant = TestTenant::new(id);
        tenant
            .register(
                broker,
                topics,
                &tenant.record(&receiver.url(&format!("/{id}"))),
            )
            .await;
    }
}

async fn produce(broker: &Broker, topic: &str, partition: i32, tenant: &str, id: &str) {
    broker
        .produce_to(
            topic,
            Some(partition),
            Some(tenant.as_bytes()),
            Some(&event(id)),
            &[],
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tenant_holds_back_none_of_its_partition_mates() {
    let broker = Broker::new("hol");
    let topics = create_topics(&broker, 2).await;
    let receiver = Receiver::start(Arc::new(|_, request| {
        if request.path == "/down" {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }))
    .await;
    let mates = ["m1", "m2", "m3"];
    register(
        &broker,
        &topics,
        &receiver,
        &["down", "m1", "m2", "m3", "other"],
    )
    .await;
    // Six attempts with backoffs between 300 ms and 1 s: the failing
    // event takes several seconds to be dead-lettered.
    let config = replica_config(
        &broker,
        &[
            ("DELIVERY__MAX_ATTEMPTS", "6"),
            ("DELIVERY__INITIAL_BACKOFF", "300ms"),
            ("DELIVERY__MAX_BACKOFF", "1s"),
        ],
    );
    let replica = Replica::start(config, &topics).await;

    produce(&broker, &topics.events, 0, "down", "down-0").await;
    for n in 0..5 {
        for mate in mates {
            produce(&broker, &topics.events, 0, mate, &format!("{mate}-{n}")).await;
        }
        produce(&broker, &topics.events, 1, "other", &format!("other-{n}")).await;
    }

    let received = receiver.wait_for(6 + 20, Duration::from_secs(60)).await;
    let last_failure = received
        .iter()
        .filter(|r| r.path == "/down")
        .map(|r| r.at)
        .max()
        .unwrap();
    let delivered = delivered_by_tenant(&received, |r| r.path != "/down");
    for mate in mates {
        let expected: Vec<String> = (0..5).map(|n| format!("{mate}-{n}")).collect();
        assert_eq!(delivered[&format!("/{mate}")], expected, "{mate}'s order");
    }
    for request in received.iter().filter(|r| r.path != "/down") {
        assert!(
            request.at < last_failure,
            "{:?} waited for the failing tenant on its partition",
            request.header("webhook-id")
        );
    }
    let dead = broker
        .consume(&topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dead[0].header("dlq.reason"), Some("retries_exhausted"));
    assert_eq!(dead[0].header("dlq.attempts"), Some("6"));
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_endpoints_are_answered_concurrently_each_tenant_in_order() {
    let broker = Broker::new("slow");
    let topics = create_topics(&broker, 1).await;
    let receiver =
        Receiver::slow(Duration::from_millis(200), Arc::new(|_, _| StatusCode::OK)).await;
    let tenants: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    let ids: Vec<&str> = tenants.iter().map(String::as_str).collect();
    register(&broker, &topics, &receiver, &ids).await;
    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;
    for n in 0..3 {
        for tenant in &tenants {
            produce(&broker, &topics.events, 0, tenant, &format!("{tenant}-{n}")).await;
        }
    }
    let received = receiver.wait_for(120, Duration::from_secs(60)).await;
    let delivered = delivered_by_tenant(&received, |_| true);
    for tenant in &tenants {
        let expected: Vec<String> = (0..3).map(|n| format!("{tenant}-{n}")).collect();
        assert_eq!(
            delivered[&format!("/{tenant}")],
            expected,
            "{tenant}'s order"
        );
    }
    // One partition: in partition order one request at a time.
    assert!(
        receiver.most_concurrent() >= 10,
        "at most {} requests at once",
        receiver.most_concurrent()
    );
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_answers_one_request_at_a_time() {
    let broker = Broker::new("slow-partition");
    let topics = create_topics(&broker, 1).await;
    let receiver = Receiver::slow(Duration::from_millis(50), Arc::new(|_, _| StatusCode::OK)).await;
    let tenants = ["p0", "p1", "p2", "p3"];
    register(&broker, &topics, &receiver, &tenants).await;
    let config = replica_config(&broker, &[("DELIVERY__ORDERING", "partition")]);
    let replica = Replica::start(config, &topics).await;
    let mut produced = Vec::new();
    for n in 0..3 {
        for tenant in tenants {
            let id = format!("{tenant}-{n}");
            produce(&broker, &topics.events, 0, tenant, &id).await;
            produced.push(id);
        }
    }
    let received = receiver.wait_for(12, Duration::from_secs(60)).await;
    let arrival: Vec<&str> = received
        .iter()
        .filter_map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(arrival, produced, "the partition's order");
    assert_eq!(receiver.most_concurrent(), 1);
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tenant_is_suspended_in_order_and_resumed_by_a_probe() {
    let broker = Broker::new("suspend");
    let topics = create_topics(&broker, 1).await;
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start(Arc::new({
        let healthy = healthy.clone();
        move |_, request| {
            if request.path == "/flaky" && !healthy.load(Ordering::SeqCst) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }
    }))
    .await;
    register(&broker, &topics, &receiver, &["flaky", "mate"]).await;
    let config = replica_config(
        &broker,
        &[
            ("DELIVERY__MAX_ATTEMPTS", "2"),
            ("DELIVERY__SUSPEND_AFTER", "2"),
            ("DELIVERY__SUSPENSION_PROBE_INTERVAL", "2s"),
        ],
    );
    let replica = Replica::start(config, &topics).await;
    for n in 0..5 {
        produce(&broker, &topics.events, 0, "flaky", &format!("flaky-{n}")).await;
        produce(&broker, &topics.events, 0, "mate", &format!("mate-{n}")).await;
    }
    let dead = broker
        .consume(&topics.dlq, 5, Duration::from_secs(30))
        .await;
    let letters: Vec<(Option<&str>, Option<&str>, Option<&str>)> = dead
        .iter()
        .map(|r| {
            (
                r.header("dlq.reason"),
                r.header("dlq.attempts"),
                r.value_id(),
            )
        })
        .collect();
    assert_eq!(
        letters,
        [
            (Some("retries_exhausted"), Some("2"), Some("flaky-0")),
            (Some("retries_exhausted"), Some("2"), Some("flaky-1")),
            (Some("tenant_suspended"), Some("0"), Some("flaky-2")),
            (Some("tenant_suspended"), Some("0"), Some("flaky-3")),
            (Some("tenant_suspended"), Some("0"), Some("flaky-4")),
        ]
    );
    let attempts_before = receiver
        .received()
        .iter()
        .filter(|r| r.path == "/flaky")
        .count();
    assert_eq!(attempts_before, 4, "suspended events get no attempt");

    // The endpoint recovers; after the probe interval the next event is a
    // real attempt, delivered, and the suspension ends.
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    produce(&broker, &topics.events, 0, "flaky", "flaky-5").await;
    produce(&broker, &topics.events, 0, "flaky", "flaky-6").await;
    let received = receiver.wait_for(4 + 2 + 5, Duration::from_secs(30)).await;
    let delivered = delivered_by_tenant(&received, |r| {
        r.path == "/flaky" && healthy.load(Ordering::SeqCst)
    });
    let flaky: Vec<&String> = delivered["/flaky"]
        .iter()
        .filter(|id| id.as_str() >= "flaky-5")
        .collect();
    assert_eq!(flaky, ["flaky-5", "flaky-6"]);
    assert_eq!(
        broker
            .consume(&topics.dlq, 6, Duration::from_secs(3))
            .await
            .len(),
        5
    );
    let mates = delivered_by_tenant(&received, |r| r.path == "/mate");
    assert_eq!(
        mates["/mate"].len(),
        5,
        "the partition mate was not held back"
    );
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_finished_above_a_stuck_one_are_not_delivered_again_after_a_restart() {
    let broker = Broker::new("metadata");
    let topics = create_topics(&broker, 1).await;
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start(Arc::new({
        let healthy = healthy.clone();
        move |_, request| {
            if request.path == "/stuck" && !healthy.load(Ordering::SeqCst) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }
    }))
    .await;
    register(&broker, &topics, &receiver, &["stuck", "free"]).await;
    let config = || {
        replica_config(
            &broker,
            &[
                ("DELIVERY__MAX_ATTEMPTS", "1000"),
                ("DELIVERY__INITIAL_BACKOFF", "100ms"),
                ("DELIVERY__MAX_BACKOFF", "200ms"),
            ],
        )
    };
    let replica = Replica::start(config(), &topics).await;
    produce(&broker, &topics.events, 0, "stuck", "stuck-0").await;
    for n in 0..20 {
        produce(&broker, &topics.events, 0, "free", &format!("free-{n}")).await;
    }
    let free = |received: &[Received]| received.iter().filter(|r| r.path == "/free").count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while free(&receiver.received()) < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(free(&receiver.received()), 20);
    // stuck-0 is still failing: the committed offset stays below it, and
    // the 20 records above it are committed as finished in its metadata.
    replica.stop().await;

    let stuck = |received: &[Received]| received.iter().filter(|r| r.path == "/stuck").count();
    let stuck_before = stuck(&receiver.received());
    healthy.store(true, Ordering::SeqCst);
    let replica = Replica::start(config(), &topics).await;
    produce(&broker, &topics.events, 0, "free", "free-20").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (stuck(&receiver.received()) == stuck_before || free(&receiver.received()) < 21)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a wrongly redelivered record time to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = receiver.received();
    assert_eq!(
        free(&received),
        21,
        "the finished records were delivered again"
    );
    let stuck: Vec<&str> = received
        .iter()
        .filter(|r| r.path == "/stuck")
        .filter_map(|r| r.header("webhook-id"))
        .collect();
    assert!(stuck.iter().all(|id| *id == "stuck-0"));
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_survives_a_restart() {
    let broker = Broker::new("suspend-restart");
    let topics = create_topics(&broker, 1).await;
    let receiver = Receiver::start(Arc::new(|_, _| StatusCode::SERVICE_UNAVAILABLE)).await;
    register(&broker, &topics, &receiver, &["down"]).await;
    // One exhausted event suspends; the probe is an hour away.
    let config = || {
        replica_config(
            &broker,
            &[
                ("DELIVERY__MAX_ATTEMPTS", "1"),
                ("DELIVERY__SUSPEND_AFTER", "1"),
                ("DELIVERY__SUSPENSION_PROBE_INTERVAL", "1h"),
            ],
        )
    };
    let replica = Replica::start(config(), &topics).await;
    produce(&broker, &topics.events, 0, "down", "down-0").await;
    let dead = broker
        .consume(&topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dead[0].header("dlq.reason"), Some("retries_exhausted"));
    replica.stop().await;

    // The next owner of the partition knows the tenant is suspended.
    let replica = Replica::start(config(), &topics).await;
    produce(&broker, &topics.events, 0, "down", "down-1").await;
    let dead = broker
        .consume(&topics.dlq, 2, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[1].header("dlq.reason"), Some("tenant_suspended"));
    assert_eq!(dead[1].header("dlq.attempts"), Some("0"));
    assert_eq!(receiver.received().len(), 1, "down-1 was not attempted");
    replica.stop().await;
}

/// The requests on `path`, in arrival order.
fn on_path<'a>(received: &'a [Received], path: &str) -> Vec<&'a Received> {
    received.iter().filter(|r| r.path == path).collect()
}

fn ids<'a>(requests: &[&'a Received]) -> Vec<&'a str> {
    requests
        .iter()
        .filter_map(|r| r.header("webhook-id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_tenant_is_spaced_and_its_partition_mate_is_not() {
    let broker = Broker::new("rate-limit");
    let topics = create_topics(&broker, 1).await;
    let receiver = Receiver::ok().await;
    let limited = TestTenant::new("limited");
    let mut record = limited.record(&receiver.url("/limited"));
    record["rate_limit"] = serde_json::json!(2);
    limited.register(&broker, &topics, &record).await;
    register(&broker, &topics, &receiver, &["mate"]).await;
    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;

    // Interleaved on one partition: the mate's events sit between the
    // limited tenant's.
    let count = 10;
    for n in 0..count {
        produce(
            &broker,
            &topics.events,
            0,
            "limited",
            &format!("limited-{n}"),
        )
        .await;
        produce(&broker, &topics.events, 0, "mate", &format!("mate-{n}")).await;
    }
    let received = receiver.wait_for(2 * count, Duration::from_secs(60)).await;
    let limited = on_path(&received, "/limited");
    let mate = on_path(&received, "/mate");
    let expected =
        |tenant: &str| -> Vec<String> { (0..count).map(|n| format!("{tenant}-{n}")).collect() };
    assert_eq!(
        ids(&limited),
        expected("limited"),
        "the limited tenant's order"
    );
    assert_eq!(ids(&mate), expected("mate"), "the mate's order");

    // 2 events/s: starts at least 500 ms apart. The spacing is kept
    // between the starts of two deliveries; the tolerance covers the time
    // from a start to the request's arrival, a few milliseconds on an idle
    // machine but above a hundred on a loaded one (the receiver shares the
    // test's runtime with the replica).
    let interval = Duration::from_millis(500);
    let tolerance = Duration::from_millis(150);
    for pair in limited.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap + tolerance >= interval,
            "{:?} arrived {gap:?} after the one before",
            pair[1].header("webhook-id")
        );
    }
    let span = limited[count - 1].at - limited[0].at;
    assert!(
        span + tolerance >= interval * (count as u32 - 1),
        "{count} events of a tenant limited to 2/s within {span:?}"
    );
    let last_limited = limited[count - 1].at;
    assert!(
        mate.iter().all(|r| r.at < last_limited),
        "the mate's events were spaced by the other tenant's limit"
    );
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_a_429_holds_back_only_its_tenant() {
    let broker = Broker::new("retry-after");
    let topics = create_topics(&broker, 1).await;
    let throttled_once = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::responding(
        Duration::ZERO,
        Arc::new({
            let throttled_once = throttled_once.clone();
            move |_, request| {
                if request.path == "/throttled" && !throttled_once.swap(true, Ordering::SeqCst) {
                    (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2")]).into_response()
                } else {
                    StatusCode::OK.into_response()
                }
            }
        }),
    )
    .await;
    register(&broker, &topics, &receiver, &["throttled", "mate"]).await;
    // Retry-After is honoured up to max_backoff; the backoff of its own
    // would be 25 to 50 ms.
    let config = replica_config(
        &broker,
        &[
            ("DELIVERY__INITIAL_BACKOFF", "50ms"),
            ("DELIVERY__MAX_BACKOFF", "10s"),
        ],
    );
    let replica = Replica::start(config, &topics).await;
    produce(&broker, &topics.events, 0, "throttled", "throttled-0").await;
    produce(&broker, &topics.events, 0, "throttled", "throttled-1").await;
    receiver.wait_for(1, Duration::from_secs(30)).await;
    // The mate's events come after the throttled tenant's on the
    // partition, produced once the 429 was answered.
    let count = 10;
    for n in 0..count {
        produce(&broker, &topics.events, 0, "mate", &format!("mate-{n}")).await;
    }

    let received = receiver.wait_for(3 + count, Duration::from_secs(60)).await;
    let throttled = on_path(&received, "/throttled");
    assert_eq!(
        ids(&throttled),
        ["throttled-0", "throttled-0", "throttled-1"],
        "the throttled event again, then its successor"
    );
    let (refused, retried) = (throttled[0].at, throttled[1].at);
    assert!(
        retried - refused >= Duration::from_secs(2),
        "retried {:?} after a 429 with Retry-After: 2",
        retried - refused
    );
    let mate = on_path(&received, "/mate");
    let expected: Vec<String> = (0..count).map(|n| format!("mate-{n}")).collect();
    assert_eq!(ids(&mate), expected, "the mate's order");
    assert!(
        mate.iter().all(|r| r.at < retried),
        "the mate's events waited for the throttled tenant's Retry-After"
    );
    replica.stop().await;
}

/// How many requests carried each `webhook-id`.
fn deliveries_per_id(received: &[Received]) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in received.iter().filter_map(|r| r.header("webhook-id")) {
        *counts.entry(id.to_string()).or_default() += 1;
    }
    counts
}

/// Everything `receivers` got, one after the other.
fn received_by(receivers: &[&Receiver]) -> Vec<Received> {
    receivers.iter().flat_map(|r| r.received()).collect()
}

/// Waits until `done` holds for what `receivers` got, for at most
/// `timeout`; returns what they got.
async fn wait_until(
    receivers: &[&Receiver],
    timeout: Duration,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let deadline = Instant::now() + timeout;
    loop {
        let received = received_by(receivers);
        if done(&received) || Instant::now() >= deadline {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_mid_backlog_keeps_each_tenant_in_order_and_redelivers_little() {
    let broker = Broker::new("rebalance-backlog");
    let partitions = 4;
    let topics = create_topics(&broker, partitions).await;
    // Each partition has five tenants whose endpoint answers in 100 ms and
    // a laggard whose endpoint takes 500 ms and who has more to do: the
    // laggard's record holds the committed offset back while the others
    // run ahead to the end of the window (60 records), so that every
    // handover finds records finished above the committed offset, which
    // only the commit metadata keeps from being delivered again.
    let receiver =
        Receiver::slow(Duration::from_millis(100), Arc::new(|_, _| StatusCode::OK)).await;
    let laggards =
        Receiver::slow(Duration::from_millis(500), Arc::new(|_, _| StatusCode::OK)).await;
    let receivers = [&receiver, &laggards];
    let tenants: Vec<String> = (0..24).map(|i| format!("b{i}")).collect();
    let is_laggard = |i: usize| i < partitions as usize;
    for (i, tenant) in tenants.iter().enumerate() {
        let endpoint = if is_laggard(i) { &laggards } else { &receiver };
        register(&broker, &topics, endpoint, &[tenant]).await;
    }
    let config = || replica_config(&broker, &[("DELIVERY__PARTITION_WINDOW", "60")]);
    let first = Replica::start(config(), &topics).await;

    // 60 events for each quick tenant (6 s of answers) and 20 for each
    // laggard (10 s), produced in rounds of one event per tenant at most,
    // so that each tenant's order is the order of the rounds.
    let mut produced: HashMap<String, Vec<String>> = HashMap::new();
    for n in 0..60 {
        let round = tenants
            .iter()
            .enumerate()
            .filter(|(i, _)| !is_laggard(*i) || n % 3 == 0)
            .map(|(i, tenant)| {
                let id = format!("{tenant}-{n}");
                let broker = &broker;
                let topic = &topics.events;
                let partition = (i % partitions as usize) as i32;
                async move {
                    produce(broker, topic, partition, tenant, &id).await;
                    (tenant.clone(), id)
                }
            });
        for (tenant, id) in futures::future::join_all(round).await {
            produced.entry(tenant).or_default().push(id);
        }
    }
    let total: usize = produced.values().map(Vec::len).sum();
    let distinct = |received: &[Received]| deliveries_per_id(received).len();

    wait_until(&receivers, Duration::from_secs(60), |r| {
        distinct(r) >= total / 5
    })
    .await;
    let second = Replica::start(config(), &topics).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while second.state.partitions_assigned() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at_rebalance = distinct(&received_by(&receivers));
    assert!(
        second.state.partitions_assigned() > 0,
        "the second replica got no partition"
    );
    assert!(
        at_rebalance < total,
        "the backlog was gone before the partitions moved ({at_rebalance} of {total})"
    );
    wait_until(&receivers, Duration::from_secs(60), |r| {
        distinct(r) >= (total + at_rebalance) / 2
    })
    .await;
    let at_stop = distinct(&received_by(&receivers));
    let first_state = first.state.clone();
    first.stop().await;

    let received = wait_until(&receivers, Duration::from_secs(120), |r| {
        distinct(r) >= total
    })
    .await;
    let counts = deliveries_per_id(&received);
    let repeated = counts.values().filter(|n| **n > 1).count();
    let report = format!(
        "{} of {total} delivered, {} requests, {repeated} events delivered more than once; \
         {at_rebalance} delivered when the second replica got partitions, {at_stop} when \
         the first stopped",
        counts.len(),
        received.len(),
    );
    assert_eq!(counts.len(), total, "events lost: {report}");
    let delivered = delivered_by_tenant(&received, |_| true);
    for (tenant, ids) in &produced {
        assert_eq!(
            &delivered[&format!("/{tenant}")],
            ids,
            "{tenant}'s order: {report}"
        );
    }

    // What may be delivered again: a record finished before its partition
    // moved is below the committed offset or in the commit metadata, so
    // only a record in flight at the handover may come again. A tenant
    // has at most one record in flight, and here each partition changes
    // owner at most once (the first replica never gets one back, the
    // second gives none away), so each tenant gets at most one event
    // twice.
    assert_eq!(
        first_state.partitions_assigned(),
        partitions as u64,
        "a partition came back to the first replica"
    );
    assert_eq!(second.state.partitions_revoked(), 0);
    assert_eq!(second.state.partitions_lost(), 0);
    for (tenant, ids) in &produced {
        let again: Vec<&String> = ids.iter().filter(|id| counts[*id] > 1).collect();
        assert!(
            again.len() <= 1 && again.iter().all(|id| counts[*id] == 2),
            "{tenant}'s events delivered again: {again:?}; {report}"
        );
    }
    eprintln!("rebalance mid-backlog: {report}");
    second.stop().await;
}

trait ValueId {
    /// The `id` of the event in the record's value.
    fn value_id(&self) -> Option<&str>;
}

impl ValueId for Record {
    fn value_id(&self) -> Option<&str> {
        let value = self.value.as_deref()?;
        let start = std::str::from_utf8(value).ok()?.find("\"id\":\"")? + 6;
        let rest = std::str::from_utf8(&value[start..]).ok()?;
        Some(&rest[..rest.find('"')?])
    }
}

/// Regression: a record that failed once while its partition's window was
/// full (any backlog longer than the window) got its tenant suspended, so
/// that the rest of a healthy tenant's events went to the dead-letter topic
/// as `tenant_suspended`, in either order. The window suspends a tenant
/// only when nothing but failing tenants' records keeps it full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_key_order_a_failure_in_a_full_window_suspends_no_one() {
    a_failure_in_a_full_window_suspends_no_one("key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_partition_order_a_failure_in_a_full_window_suspends_no_one() {
    a_failure_in_a_full_window_suspends_no_one("partition").await;
}

async fn a_failure_in_a_full_window_suspends_no_one(ordering: &str) {
    let broker = Broker::new(&format!("full-window-{ordering}"));
    let topics = create_topics(&broker, 1).await;
    // The first event fails on its first attempt, while the window is
    // full of the backlog.
    let failed = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::slow(
        Duration::from_millis(20),
        Arc::new({
            let failed = failed.clone();
            move |_, request| {
                if request.header("webhook-id") == Some("a-00")
                    && !failed.swap(true, Ordering::SeqCst)
                {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    )
    .await;
    register(&broker, &topics, &receiver, &["a", "b"]).await;
    // A backlog ten times the window, the two tenants alternating.
    let count = 100;
    for n in 0..count {
        let tenant = ["a", "b"][n % 2];
        produce(
            &broker,
            &topics.events,
            0,
            tenant,
            &format!("{tenant}-{n:02}"),
        )
        .await;
    }
    let config = replica_config(
        &broker,
        &[
            ("DELIVERY__ORDERING", ordering),
            ("DELIVERY__PARTITION_WINDOW", "10"),
        ],
    );
    let replica = Replica::start(config, &topics).await;
    let retries = 1;
    let received = receiver
        .wait_for(count + retries, Duration::from_secs(60))
        .await;
    let dead = broker
        .consume(&topics.dlq, count, Duration::from_secs(2))
        .await;
    let letters: Vec<(Option<&str>, Option<&str>)> = dead
        .iter()
        .map(|r| (r.value_id(), r.header("dlq.reason")))
        .collect();
    assert!(letters.is_empty(), "dead-lettered: {letters:?}");
    assert_eq!(
        received.len(),
        count + retries,
        "every event delivered, the first on its second attempt"
    );
    let delivered = delivered_by_tenant(&received, |_| true);
    for (tenant, first) in [("a", 0), ("b", 1)] {
        let expected: Vec<String> = (first..count)
            .step_by(2)
            .map(|n| format!("{tenant}-{n:02}"))
            .collect();
        assert_eq!(
            delivered[&format!("/{tenant}")],
            expected,
            "{tenant}'s order"
        );
    }
    replica.stop().await;
}
