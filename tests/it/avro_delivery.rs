//! Avro events end to end: a Python confluent-kafka producer writes them,
//! a replica decodes them through the schema registry, encrypts and
//! delivers them; a registry outage holds deliveries back without dead
//! letters.

use std::time::Duration;

use hookline::schema_registry::{
    EVENT_SCHEMA, find_event_schema, register_event_schema, value_subject,
};
use serde_json::json;

use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, produce_avro};
use crate::support::replica::{
    Replica, TestTenant, create_topics, replica_config, topic_names, write_topology,
};
use crate::support::{Broker, Receiver, hookline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_events_are_delivered_as_the_same_json_and_corrupt_ones_dead_lettered() {
    let registry = Registry::shared();
    let broker = Broker::new("avro-delivery");
    let topics = create_topics(&broker, 1).await;
    register_event_schema(&registry.url, &value_subject(&topics.events))
        .await
        .unwrap();
    let receiver = Receiver::ok().await;
    let tenant = TestTenant::new("avro-acme");
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/")))
        .await;
    let config = replica_config(&broker, &[("SCHEMA_REGISTRY__URL", registry.url.as_str())]);
    let replica = Replica::start(config, &topics).await;

    let positions = produce_avro(
        &broker.bootstrap,
        &registry.url,
        &topics.events,
        EVENT_SCHEMA,
        &[
            (
                "avro-acme",
                json!({"type": "order.created", "data": "{\"order\":42,\"items\":[1,2]}", "id": "avro_1", "timestamp": null}),
            ),
            (
                "avro-acme",
                json!({"type": "order.paid", "data": "{\"order\":42}", "id": null, "timestamp": 1_795_860_000_123i64}),
            ),
        ],
    );
    // A Confluent-framed value whose Avro body is cut short.
    let good = broker
        .consume(&topics.events, 1, Duration::from_secs(10))
        .await;
    let mut corrupt = good[0].value.clone().unwrap();
    corrupt.truncate(corrupt.len() - 3);
    broker
        .produce(&topics.events, Some(b"avro-acme"), Some(&corrupt), &[])
        .await;

    let received = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 2);
    let first = tenant.open(&received[0]);
    assert_eq!(first.webhook_id, "avro_1");
    assert_eq!(first.event_type, "order.created");
    assert_eq!(first.data, json!({"order": 42, "items": [1, 2]}));
    let second = tenant.open(&received[1]);
    assert_eq!(second.event_type, "order.paid");
    assert_eq!(second.timestamp, "2026-11-28T10:00:00.123Z");
    assert_eq!(
        second.webhook_id,
        format!("evt_{}_0_{}", topics.events, positions[1].1).replace('.', "%2E")
    );

    let dead = broker
        .consume(&topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("dlq.reason"), Some("invalid_event"));
    assert_eq!(dead[0].value.as_deref(), Some(corrupt.as_slice()));
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_holds_deliveries_back_and_dead_letters_nothing() {
    let registry = Registry::shared();
    let broker = Broker::new("avro-outage");
    let topics = create_topics(&broker, 1).await;
    register_event_schema(&registry.url, &value_subject(&topics.events))
        .await
        .unwrap();
    let receiver = Receiver::ok().await;
    let tenant = TestTenant::new("avro-patient");
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/")))
        .await;
    let records: Vec<(&str, serde_json::Value)> = (0..5)
        .map(|n| {
            (
                "avro-patient",
                json!({"type": "x", "data": format!("{{\"n\":{n}}}"), "id": format!("wait_{n}"), "timestamp": null}),
            )
        })
        .collect();
    produce_avro(
        &broker.bootstrap,
        &registry.url,
        &topics.events,
        EVENT_SCHEMA,
        &records,
    );

    // The replica reaches the registry through a proxy that is cut before it
    // starts: it cannot learn the schema, so its partition waits.
    let target = registry
        .url
        .socket_addrs(|| None)
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let mut proxy = Proxy::start(target).await;
    let mut through_proxy = registry.url.clone();
    through_proxy.set_port(Some(proxy.addr.port())).unwrap();
    proxy.cut();
    let config = replica_config(&broker, &[("SCHEMA_REGISTRY__URL", through_proxy.as_str())]);
    let replica = Replica::start(config, &topics).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        receiver.received().is_empty(),
        "delivered without the schema"
    );
    assert!(
        broker
            .consume(&topics.dlq, 1, Duration::from_secs(1))
            .await
            .is_empty(),
        "dead-lettered because the registry was unreachable"
    );

    // Reachable again: everything flows, in order, and nothing was
    // dead-lettered.
    proxy.restore().await;
    let received = receiver.wait_for(5, Duration::from_secs(30)).await;
    let ids: Vec<_> = received.iter().map(|r| tenant.open(r).webhook_id).collect();
    assert_eq!(ids, ["wait_0", "wait_1", "wait_2", "wait_3", "wait_4"]);
    assert!(
        broker
            .consume(&topics.dlq, 1, Duration::from_secs(1))
            .await
            .is_empty()
    );
    replica.stop().await;
}

#[tokio::test]
async fn setup_topics_registers_the_event_schema_once() {
    let registry = Registry::shared();
    let broker = Broker::new("avro-setup");
    let dir = tempfile::tempdir().unwrap();
    let topics = topic_names(&broker);
    let topology = write_topology(dir.path(), &topics, 1);
    let run = |args: &[&str]| {
        let out = hookline(&broker.bootstrap)
            .env("HOOKLINE__TOPOLOGY", &topology)
            .env("HOOKLINE__SCHEMA_REGISTRY__URL", registry.url.as_str())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let subject = value_subject(&topics.events);

    let (code, stdout) = run(&["setup-topics", "--check"]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!("Schema `{subject}`: to register")),
        "{stdout}"
    );

    let (code, stdout) = run(&["setup-topics"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("Registered the event schema"), "{stdout}");
    let id = find_event_schema(&registry.url, &subject)
        .await
        .unwrap()
        .expect("registered");

    let (code, stdout) = run(&["setup-topics"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("registered (id {id})")),
        "{stdout}"
    );
    assert!(!stdout.contains("Registered the event schema"), "{stdout}");
    assert_eq!(run(&["setup-topics", "--check"]).0, Some(0));
}
