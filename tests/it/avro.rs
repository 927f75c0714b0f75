//! Avro events against the real thing: Apicurio Registry (its
//! Confluent-compatible API), the real broker, and Python confluent-kafka's
//! AvroSerializer as the producer. `EventDecoder` must turn what that
//! producer writes into the same events as their JSON twins, keep decoding
//! across schema evolution, dead-letter only what is really broken, and
//! treat a registry outage as a wait, never as a dead letter.

use std::time::Duration;

use hookline::delivery::dead_letter::{DecodeErrorExt as _, DlqReason};
use hookline::events::{DecodeError, Event, EventDecoder, EventError, RecordParts};
use hookline::schema_registry::{
    EVENT_SCHEMA, RegistryError, SchemaRegistry, find_event_schema, register_event_schema,
    value_subject,
};
use serde_json::json;

use crate::support::registry::{Registry, produce_avro};
use crate::support::{Broker, Record};

const LIMIT: usize = 1 << 20;
/// The record timestamp the tests hand the decoder (the consume helper does
/// not keep Kafka's): 2026-11-28T10:00:00.123Z.
const RECORD_MILLIS: i64 = 1_795_860_000_123;

/// The event schema plus an optional field, the compatible way to evolve it.
const EVOLVED_SCHEMA: &str = r#"{"type":"record","name":"Event","namespace":"hookline","fields":[
    {"name":"type","type":"string"},
    {"name":"data","type":"string"},
    {"name":"id","type":["null","string"],"default":null},
    {"name":"timestamp","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
    {"name":"source","type":["null","string"],"default":null}
]}"#;

/// An incompatible change: a new field that old data cannot fill.
const INCOMPATIBLE_SCHEMA: &str = r#"{"type":"record","name":"Event","namespace":"hookline","fields":[
    {"name":"type","type":"string"},
    {"name":"data","type":"string"},
    {"name":"id","type":["null","string"],"default":null},
    {"name":"timestamp","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
    {"name":"priority","type":"int"}
]}"#;

fn parts<'a>(topic: &'a str, record: &'a Record) -> RecordParts<'a> {
    RecordParts {
        key: record.key.as_deref(),
        value: record.value.as_deref(),
        timestamp_millis: Some(RECORD_MILLIS),
        topic,
        partition: record.partition,
        offset: record.offset,
    }
}

async fn decode(
    decoder: &EventDecoder,
    topic: &str,
    record: &Record,
) -> Result<Event, DecodeError> {
    decoder.decode_async(&parts(topic, record), LIMIT).await
}

/// The records at `positions` of the single-partition `topic`, read back
/// from the broker, in that order.
async fn read_back(broker: &Broker, topic: &str, positions: &[(i32, i64)]) -> Vec<Record> {
    assert!(positions.iter().all(|(partition, _)| *partition == 0));
    // Reading starts at the beginning, so everything up to the last
    // position comes back.
    let last = positions
        .iter()
        .map(|(_, offset)| *offset)
        .max()
        .unwrap_or(0);
    let count = usize::try_from(last + 1).expect("offsets are not negative");
    let records = broker.consume(topic, count, Duration::from_secs(30)).await;
    positions
        .iter()
        .map(|(partition, offset)| {
            records
                .iter()
                .find(|r| r.partition == *partition && r.offset == *offset)
                .unwrap_or_else(|| panic!("record {partition}/{offset} not read back"))
                .clone()
        })
        .collect()
}

fn data_of(event: &Event) -> serde_json::Value {
    serde_json::from_str(event.data.get()).expect("data is JSON")
}

#[tokio::test]
async fn avro_events_from_a_python_producer_decode_to_the_expected_events() {
    let registry = Registry::shared();
    let broker = Broker::new("avro-decode");
    let topic = broker.name("events");
    broker.create_topic(&topic, 1, &[]).await;
    let subject = value_subject(&topic);

    // What setup-topics --check would ask: nothing is registered yet, and
    // asking registers nothing.
    for _ in 0..2 {
        assert_eq!(
            find_event_schema(&registry.url, &subject).await.unwrap(),
            None
        );
    }
    let id = register_event_schema(&registry.url, &subject)
        .await
        .unwrap();
    assert_eq!(
        find_event_schema(&registry.url, &subject).await.unwrap(),
        Some(id)
    );
    // Idempotent: the same schema again is the same id, not a new version.
    assert_eq!(
        register_event_schema(&registry.url, &subject)
            .await
            .unwrap(),
        id
    );

    let positions = produce_avro(
        &broker.bootstrap,
        &registry.url,
        &topic,
        EVENT_SCHEMA,
        &[
            (
                "acme",
                json!({"type": "order.created", "data": r#"{"order":42,"total":"12.50"}"#,
                       "id": "evt_123", "timestamp": 1_795_860_000_000i64}),
            ),
            (
                "acme",
                json!({"type": "invoice.paid", "data": "[1,2,3]", "id": null, "timestamp": null}),
            ),
            (
                "globex",
                json!({"type": "order.shipped", "data": "\"parcel\"", "id": "order.7", "timestamp": null}),
            ),
        ],
    );
    let records = read_back(&broker, &topic, &positions).await;
    // The producer really wrote the Confluent wire format with our id.
    for record in &records {
        let value = record.value.as_deref().unwrap();
        assert_eq!(value[0], 0, "magic byte");
        assert_eq!(u32::from_be_bytes(value[1..5].try_into().unwrap()), id);
    }

    let decoder = EventDecoder::new(Some(&hookline::config::SchemaRegistryConfig {
        url: registry.url.clone(),
    }))
    .unwrap();

    let first = decode(&decoder, &topic, &records[0]).await.unwrap();
    assert_eq!(first.tenant, "acme");
    assert_eq!(first.event_type, "order.created");
    assert_eq!(first.id, "evt_123");
    assert_eq!(first.timestamp, "2026-11-28T10:00:00.000Z");
    assert_eq!(data_of(&first), json!({"order": 42, "total": "12.50"}));

    let second = decode(&decoder, &topic, &records[1]).await.unwrap();
    assert_eq!(second.event_type, "invoice.paid");
    assert_eq!(
        second.id,
        format!(
            "evt_{}_{}_{}",
            topic.replace('.', "%2E"),
            records[1].partition,
            records[1].offset
        )
    );
    assert_eq!(second.timestamp, "2026-11-28T10:00:00.123Z");
    assert_eq!(data_of(&second), json!([1, 2, 3]));

    let third = decode(&decoder, &topic, &records[2]).await.unwrap();
    assert_eq!(third.tenant, "globex");
    assert_eq!(third.id, "order%2E7");
    assert_eq!(data_of(&third), json!("parcel"));

    // The plaintext a receiver decrypts is the contract object, as for JSON.
    let plaintext: serde_json::Value = serde_json::from_slice(&first.plaintext()).unwrap();
    assert_eq!(
        plaintext,
        json!({"id": "evt_123", "type": "order.created", "timestamp": "2026-11-28T10:00:00.000Z",
               "tenant": "acme", "data": {"order": 42, "total": "12.50"}})
    );
}

#[tokio::test]
async fn evolved_schema_with_an_added_optional_field_keeps_decoding() {
    let registry = Registry::shared();
    let broker = Broker::new("avro-evolution");
    let topic = broker.name("events");
    broker.create_topic(&topic, 1, &[]).await;
    let subject = value_subject(&topic);
    registry.set_compatibility(&subject, "BACKWARD").await;

    let client = SchemaRegistry::new(&registry.url).unwrap();
    let v1 = register_event_schema(&registry.url, &subject)
        .await
        .unwrap();
    let v2 = client
        .register_avro(&subject, EVOLVED_SCHEMA)
        .await
        .unwrap();
    assert_ne!(v1, v2);

    // A producer still on v1 and one already on v2, interleaved on one
    // partition, as during a rolling deploy.
    let old = produce_avro(
        &broker.bootstrap,
        &registry.url,
        &topic,
        EVENT_SCHEMA,
        &[(
            "acme",
            json!({"type": "t.old", "data": "{\"v\":1}", "id": null, "timestamp": null}),
        )],
    );
    let new = produce_avro(
        &broker.bootstrap,
        &registry.url,
        &topic,
        EVOLVED_SCHEMA,
        &[(
            "acme",
            json!({"type": "t.new", "data": "{\"v\":2}", "id": "e2", "timestamp": null, "source": "billing"}),
        )],
    );
    let records = read_back(&broker, &topic, &[old[0], new[0]]).await;
    assert_eq!(
        u32::from_be_bytes(
            records[1].value.as_deref().unwrap()[1..5]
                .try_into()
                .unwrap()
        ),
        v2
    );

    let decoder = EventDecoder::new(Some(&hookline::config::SchemaRegistryConfig {
        url: registry.url.clone(),
    }))
    .unwrap();
    let old = decode(&decoder, &topic, &records[0]).await.unwrap();
    let new = decode(&decoder, &topic, &records[1]).await.unwrap();
    assert_eq!(
        (old.event_type.as_str(), data_of(&old)),
        ("t.old", json!({"v": 1}))
    );
    assert_eq!(
        (new.event_type.as_str(), data_of(&new)),
        ("t.new", json!({"v": 2}))
    );
    assert_eq!(new.id, "e2");
    // The added field is not part of the webhook's contract object.
    let plaintext: serde_json::Value = serde_json::from_slice(&new.plaintext()).unwrap();
    assert!(plaintext.get("source").is_none(), "{plaintext}");

    // An incompatible change is refused by the subject's rule, and said so.
    let error = client
        .register_avro(&subject, INCOMPATIBLE_SCHEMA)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::Incompatible { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "subject `{subject}` refused the schema as incompatible with its registered versions"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn corrupt_avro_and_unknown_schema_ids_are_invalid_events() {
    let registry = Registry::shared();
    let broker = Broker::new("avro-corrupt");
    let topic = broker.name("events");
    broker.create_topic(&topic, 1, &[]).await;
    let subject = value_subject(&topic);
    let id = register_event_schema(&registry.url, &subject)
        .await
        .unwrap();
    let good = produce_avro(
        &broker.bootstrap,
        &registry.url,
        &topic,
        EVENT_SCHEMA,
        &[(
            "acme",
            json!({"type": "order.created", "data": "{\"order\":42}", "id": "evt_1", "timestamp": null}),
        )],
    );
    let good = read_back(&broker, &topic, &good).await.remove(0);
    let value = good.value.clone().unwrap();

    // Variations of the good value, each produced and read back for real.
    let truncated = value[..value.len() - 4].to_vec();
    let mut bad_union = value.clone();
    // The last byte is the `timestamp` union index (0 = null); 14 is index 7.
    *bad_union.last_mut().unwrap() = 14;
    let mut unknown_id = value.clone();
    unknown_id[1..5].copy_from_slice(&(id + 1_000_000).to_be_bytes());
    let mut trailing = value.clone();
    trailing.extend_from_slice(b"junk");
    let cases = [
        (
            "truncated",
            truncated,
            "ends in the middle of its Avro datum",
        ),
        ("bad union index", bad_union, "is not valid Avro"),
        (
            "unknown schema id",
            unknown_id,
            "is not in the schema registry",
        ),
        (
            "trailing bytes",
            trailing,
            "after the end of its Avro datum",
        ),
    ];
    let mut positions = Vec::new();
    for (_, value, _) in &cases {
        positions.push(
            broker
                .produce(&topic, Some(b"acme"), Some(value), &[])
                .await,
        );
    }
    let records = read_back(&broker, &topic, &positions).await;

    let decoder = EventDecoder::new(Some(&hookline::config::SchemaRegistryConfig {
        url: registry.url.clone(),
    }))
    .unwrap();
    assert_eq!(decode(&decoder, &topic, &good).await.unwrap().id, "evt_1");
    for ((name, _, expected), record) in cases.iter().zip(&records) {
        let error = decode(&decoder, &topic, record).await.unwrap_err();
        assert!(!error.is_transient(), "{name}: {error:?}");
        assert_eq!(error.dlq_reason(), Some(DlqReason::InvalidEvent), "{name}");
        let chain = hookline::error::error_chain(&error);
        assert!(chain.contains(expected), "{name}: {chain}");
    }
}

#[tokio::test]
async fn registry_outage_is_transient_and_decoding_resumes_when_it_is_back() {
    // A registry of this test's own: it is stopped mid-test.
    let registry = Registry::private();
    let broker = Broker::new("avro-outage");
    let topic = broker.name("events");
    broker.create_topic(&topic, 1, &[]).await;
    let subject = value_subject(&topic);
    let id = register_event_schema(&registry.url, &subject)
        .await
        .unwrap();
    let positions = produce_avro(
        &broker.bootstrap,
        &registry.url,
        &topic,
        EVENT_SCHEMA,
        &[(
            "acme",
            json!({"type": "order.created", "data": "{\"order\":42}", "id": "evt_9", "timestamp": null}),
        )],
    );
    let record = read_back(&broker, &topic, &positions).await.remove(0);
    let config = hookline::config::SchemaRegistryConfig {
        url: registry.url.clone(),
    };
    let warm = EventDecoder::new(Some(&config)).unwrap();
    assert_eq!(decode(&warm, &topic, &record).await.unwrap().id, "evt_9");

    registry.stop();

    // A decoder that has the schema cached needs no registry.
    assert_eq!(decode(&warm, &topic, &record).await.unwrap().id, "evt_9");
    // One that has not must wait: transient, and no dead-letter reason.
    let cold = EventDecoder::new(Some(&config)).unwrap();
    for _ in 0..2 {
        let error = decode(&cold, &topic, &record).await.unwrap_err();
        assert!(error.is_transient(), "{error:?}");
        assert_eq!(error.dlq_reason(), None);
        let DecodeError::RegistryUnavailable { schema_id, source } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(*schema_id, id);
        assert!(
            matches!(**source, RegistryError::Unreachable { .. }),
            "{source:?}"
        );
    }
    let Err(DecodeError::Invalid(EventError::SchemaNotLoaded { .. })) = cold
        .decode(&parts(&topic, &record), LIMIT)
        .map_err(DecodeError::Invalid)
    else {
        panic!("the failed fetch must not have cached anything");
    };

    // The registry comes back. Its storage is in memory, so the schema is
    // registered again, as an operator restoring it would; registered first
    // on a fresh registry, it gets its old id back.
    registry.start();
    assert_eq!(
        register_event_schema(&registry.url, &subject)
            .await
            .unwrap(),
        id
    );
    let event = decode(&cold, &topic, &record).await.unwrap();
    assert_eq!(event.id, "evt_9");
    assert_eq!(data_of(&event), json!({"order": 42}));
}
