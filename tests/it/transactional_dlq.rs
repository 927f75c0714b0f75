//! `delivery.transactional_dlq`: a dead letter and the commit of its source
//! offset in one transaction. A replica that dies between the two leaves a
//! second dead letter of the record without it, and exactly one with it.
//! The dead-letter topic is read as `read_committed` (what operators are
//! told to do), so a dead letter whose transaction was aborted is not seen.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hookline::delivery::runner::Topics;

use crate::support::broker::Record;
use crate::support::replica::{Replica, TestTenant, create_topics, replica_config};
use crate::support::{Broker, Receiver};

/// How many dead letters each source offset has.
fn dead_letters_by_offset(letters: &[Record]) -> BTreeMap<i64, usize> {
    let mut by_offset = BTreeMap::new();
    for letter in letters {
        let offset: i64 = letter
            .header("dlq.offset")
            .expect("a dead letter names its offset")
            .parse()
            .expect("dlq.offset is a number");
        *by_offset.entry(offset).or_default() += 1;
    }
    by_offset
}

/// Waits until the group committed `end` on partition 0 of `topic`.
async fn wait_committed(broker: &Broker, group: &str, topic: &str, end: i64, timeout: Duration) {
    let mut config = crate::support::config(&broker.bootstrap).kafka;
    config.group_id = group.to_string();
    let deadline = Instant::now() + timeout;
    loop {
        let committed = {
            let (config, topic) = (config.clone(), topic.to_string());
            tokio::task::spawn_blocking(move || {
                hookline::kafka::group::committed_offsets(
                    &config,
                    &topic,
                    &[0],
                    Duration::from_secs(5),
                )
            })
            .await
            .unwrap()
        };
        if let Ok(committed) = &committed
            && committed.first().and_then(|(_, offset)| *offset) == Some(end)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "offset {end} not committed within {timeout:?}: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the whole dead-letter topic as `read_committed`: waits for at least
/// `expected` dead letters, then for any more for a moment.
async fn read_dead_letters(broker: &Broker, topics: &Topics, expected: usize) -> Vec<Record> {
    // A transaction left open by a replica that died holds back
    // read_committed readers until the broker aborts it.
    let first = broker
        .consume(&topics.dlq, expected, Duration::from_secs(60))
        .await;
    assert!(
        first.len() >= expected,
        "{} of {expected} dead letters",
        first.len()
    );
    broker
        .consume(&topics.dlq, expected + 10, Duration::from_secs(3))
        .await
}

/// Dead letters and deliveries interleaved on one partition: each dead
/// letter's transaction commits the checkpoint with its record finished,
/// while the driver's own commits carry the delivered records. After a
/// graceful stop, a second replica of the group finds nothing left to do:
/// no delivery and no dead letter twice, the committed offset at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_dead_letters_and_deliveries_each_happen_once() {
    let broker = Broker::new("txdlq-mixed");
    let topics = create_topics(&broker, 1).await;
    let receiver = Receiver::start(Arc::new(|_, request| match request.path.as_str() {
        "/gone" => StatusCode::GONE,
        _ => StatusCode::OK,
    }))
    .await;
    let tenants = [TestTenant::new("gone"), TestTenant::new("ok")];
    for tenant in &tenants {
        let url = receiver.url(&format!("/{}", tenant.id));
        tenant
            .register(&broker, &topics, &tenant.record(&url))
            .await;
    }
    let config = replica_config(&broker, &[("DELIVERY__TRANSACTIONAL_DLQ", "true")]);
    let replica = Replica::start(config.clone(), &topics).await;
    let per_tenant = 20;
    for n in 0..per_tenant {
        for tenant in &tenants {
            let value = serde_json::to_vec(&serde_json::json!({
                "id": format!("{}-{n}", tenant.id), "type": "x", "data": n
            }))
            .unwrap();
            broker
                .produce(
                    &topics.events,
                    Some(tenant.id.as_bytes()),
                    Some(&value),
                    &[],
                )
                .await;
        }
    }
    let total = 2 * per_tenant;
    wait_committed(
        &broker,
        &config.kafka.group_id,
        &topics.events,
        total,
        Duration::from_secs(60),
    )
    .await;
    replica.stop().await;

    // A second replica of the group: nothing is left to do.
    let second = Replica::start(config.clone(), &topics).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    second.stop().await;

    let delivered: Vec<String> = receiver
        .received()
        .iter()
        .filter(|r| r.path == "/ok")
        .filter_map(|r| r.header("webhook-id").map(str::to_string))
        .collect();
    let expected: Vec<String> = (0..per_tenant).map(|n| format!("ok-{n}")).collect();
    assert_eq!(delivered, expected, "each delivered once, in order");
    let letters = read_dead_letters(&broker, &topics, per_tenant as usize).await;
    let by_offset = dead_letters_by_offset(&letters);
    assert_eq!(by_offset.len(), per_tenant as usize, "{by_offset:?}");
    assert!(
        by_offset.values().all(|&n| n == 1),
        "dead-lettered twice: {by_offset:?}"
    );
    // The gone tenant's events are the even offsets.
    assert!(
        by_offset.keys().all(|offset| offset % 2 == 0),
        "{by_offset:?}"
    );
}

/// A replica killed at the fault-injection point (compiled in with the
/// `fault-injection` feature, which `make test` enables).
#[cfg(feature = "fault-injection")]
mod crash {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use axum::http::StatusCode;

    use super::{dead_letters_by_offset, read_dead_letters, wait_committed};
    use crate::support::process::{Spawned, command, output};
    use crate::support::replica::{TestTenant, topic_names, write_topology};
    use crate::support::{Broker, Receiver};

    /// One tenant whose endpoint answers 410, so that each of its `events`
    /// events is dead-lettered at once. A replica is killed (it aborts) right
    /// after its first dead letter was acknowledged, before the record's offset
    /// is committed; a second replica then finishes the partition. Returns the
    /// dead letters per source offset.
    async fn kill_after_the_first_dead_letter(
        test: &str,
        transactional: bool,
    ) -> BTreeMap<i64, usize> {
        let events = 5;
        let broker = Broker::new(test);
        let dir = tempfile::tempdir().unwrap();
        let topics = topic_names(&broker);
        let topology = write_topology(dir.path(), &topics, 1);
        let (code, _, stderr) = output(command(&broker, &topology), &["setup-topics"]);
        assert_eq!(code, Some(0), "{stderr}");
        let receiver = Receiver::start(Arc::new(|_, _| StatusCode::GONE)).await;
        let tenant = TestTenant::new("gone");
        tenant
            .register(&broker, &topics, &tenant.record(&receiver.url("/gone")))
            .await;
        for n in 0..events {
            let value = serde_json::to_vec(
                &serde_json::json!({"id": format!("gone-{n}"), "type": "x", "data": n}),
            )
            .unwrap();
            broker
                .produce(&topics.events, Some(b"gone"), Some(&value), &[])
                .await;
        }
        let replica = |fault: bool| {
            let mut run = command(&broker, &topology);
            run.env(
                "HOOKLINE__DELIVERY__TRANSACTIONAL_DLQ",
                transactional.to_string(),
            )
            .arg("run");
            if fault {
                run.env("HOOKLINE_FAULT", "abort-after-dead-letter");
            }
            Spawned::start(run)
        };

        let mut dying = replica(true);
        let status = dying.wait(Duration::from_secs(60)).await;
        assert!(!status.success(), "{}", dying.stderr());
        assert!(
            dying.stderr().contains("aborting after a dead letter"),
            "the replica died elsewhere:\n{}",
            dying.stderr()
        );

        let finishing = replica(false);
        wait_committed(
            &broker,
            &broker.name("group"),
            &topics.events,
            events,
            Duration::from_secs(90),
        )
        .await;
        let letters = read_dead_letters(&broker, &topics, events as usize).await;
        drop(finishing);
        assert!(
            receiver.received().iter().all(|r| r.path == "/gone"),
            "only the tenant's endpoint was called"
        );
        dead_letters_by_offset(&letters)
    }

    /// Demonstrates the problem `transactional_dlq` solves: without it, a
    /// replica dying between the dead letter and the commit of its offset
    /// leaves the record dead-lettered twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_transactions_a_crash_after_a_dead_letter_leaves_a_duplicate() {
        let by_offset = kill_after_the_first_dead_letter("txdlq-off", false).await;
        let expected: BTreeMap<i64, usize> = [(0, 2), (1, 1), (2, 1), (3, 1), (4, 1)].into();
        assert_eq!(by_offset, expected, "dead letters per source offset");
    }

    /// With `transactional_dlq`, the same crash leaves exactly one dead letter
    /// per event, and every event is accounted for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_transactions_a_crash_after_a_dead_letter_leaves_exactly_one() {
        let by_offset = kill_after_the_first_dead_letter("txdlq-on", true).await;
        let expected: BTreeMap<i64, usize> = (0..5).map(|offset| (offset, 1)).collect();
        assert_eq!(by_offset, expected, "dead letters per source offset");
    }
}
