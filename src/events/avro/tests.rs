use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use url::Url;

use super::*;
use crate::events::{Event, EventDecoder, RecordParts};
use crate::schema_registry::EVENT_SCHEMA;

const LIMIT: usize = 1 << 20;
const EVENT_ID: SchemaId = 7;
/// 2026-11-28T10:00:00.123Z in milliseconds.
const RECORD_MILLIS: i64 = 1_795_860_000_123;

/// The event schema with a field added the compatible way (optional, with a
/// default), as a producer's next schema version would.
const EVOLVED_SCHEMA: &str = r#"{"type":"record","name":"Event","namespace":"hookline","fields":[
    {"name":"type","type":"string"},
    {"name":"data","type":"string"},
    {"name":"id","type":["null","string"],"default":null},
    {"name":"timestamp","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
    {"name":"source","type":["null","string"],"default":null}
]}"#;

/// A port nothing listens on: any request to it is refused at once.
fn dead_registry() -> SchemaRegistry {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    SchemaRegistry::new(&Url::parse(&format!("http://127.0.0.1:{port}")).unwrap()).unwrap()
}

/// A decoder whose cache already holds `schemas`, in front of a registry
/// that is down: whatever it decodes, it decodes without I/O.
fn decoder_with(schemas: &[(SchemaId, &str)]) -> AvroDecoder {
    let decoder = AvroDecoder::new(dead_registry());
    for (id, text) in schemas {
        let schema = WriterSchema {
            id: *id,
            root: Schema::parse_str(text).unwrap(),
            referenced: Vec::new(),
        };
        check_usable(&schema).unwrap();
        decoder
            .inner
            .schemas
            .write()
            .unwrap()
            .insert(*id, Arc::new(schema));
    }
    decoder
}

fn framed(id: SchemaId, schema: &str, value: Value) -> Vec<u8> {
    let schema = Schema::parse_str(schema).unwrap();
    let body = GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    let mut framed = vec![0];
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

fn some(value: Value) -> Value {
    Value::Union(1, Box::new(value))
}

fn none() -> Value {
    Value::Union(0, Box::new(Value::Null))
}

fn event_value(event_type: &str, data: &str, id: Value, timestamp: Value) -> Value {
    Value::Record(vec![
        ("type".into(), Value::String(event_type.into())),
        ("data".into(), Value::String(data.into())),
        ("id".into(), id),
        ("timestamp".into(), timestamp),
    ])
}

fn record<'a>(key: Option<&'a [u8]>, value: &'a [u8]) -> RecordParts<'a> {
    RecordParts {
        key,
        value: Some(value),
        timestamp_millis: Some(RECORD_MILLIS),
        topic: "events",
        partition: 3,
        offset: 42,
    }
}

fn decode(decoder: &AvroDecoder, value: &[u8]) -> Result<Event, EventError> {
    EventDecoder::Avro(decoder.clone()).decode(&record(Some(b"acme"), value), LIMIT)
}

fn invalid(decoder: &AvroDecoder, value: &[u8]) -> String {
    match decode(decoder, value) {
        Ok(event) => panic!("expected a refusal, decoded {event:?}"),
        Err(e) => {
            assert!(!matches!(e, EventError::PayloadTooLarge { .. }), "{e:?}");
            crate::error::error_chain(&e)
        }
    }
}

#[test]
fn avro_event_decodes_like_its_json_twin() {
    let decoder = decoder_with(&[(EVENT_ID, EVENT_SCHEMA)]);
    let value = framed(
        EVENT_ID,
        EVENT_SCHEMA,
        event_value(
            "order.created",
            r#"{"order":42}"#,
            some(Value::String("evt_123".into())),
            some(Value::TimestampMillis(1_795_860_000_000)),
        ),
    );
    let avro = decode(&decoder, &value).unwrap();
    let json = EventDecoder::Json
        .decode(
            &record(
                Some(b"acme"),
                br#"{"type":"order.created","data":{"order":42},"id":"evt_123","timestamp":"2026-11-28T10:00:00.000Z"}"#,
            ),
            LIMIT,
        )
        .unwrap();
    assert_eq!(avro.plaintext(), json.plaintext());
    assert_eq!(avro.occurred_at, json.occurred_at);
    assert_eq!(avro.id, "evt_123");
    assert_eq!(avro.timestamp, "2026-11-28T10:00:00.000Z");
}

#[test]
fn missing_id_and_timestamp_come_from_the_record() {
    let decoder = decoder_with(&[(EVENT_ID, EVENT_SCHEMA)]);
    let value = framed(
        EVENT_ID,
        EVENT_SCHEMA,
        event_value("t", "1", none(), none()),
    );
    let event = decode(&decoder, &value).unwrap();
    assert_eq!(event.id, "evt_events_3_42");
    assert_eq!(event.timestamp, "2026-11-28T10:00:00.123Z");
    assert_eq!(event.data.get(), "1");
}

#[test]
fn values_of_an_evolved_schema_keep_decoding() {
    // The decoder reads with each value's writer schema, so old and new
    // values decode side by side and the added field is ignored like an
    // unknown JSON field.
    let decoder = decoder_with(&[(EVENT_ID, EVENT_SCHEMA), (8, EVOLVED_SCHEMA)]);
    let mut evolved = event_value("t", "[1]", none(), none());
    if let Value::Record(fields) = &mut evolved {
        fields.push(("source".into(), some(Value::String("billing".into()))));
    }
    let new = decode(&decoder, &framed(8, EVOLVED_SCHEMA, evolved)).unwrap();
    let old = decode(
        &decoder,
        &framed(
            EVENT_ID,
            EVENT_SCHEMA,
            event_value("t", "[1]", none(), none()),
        ),
    )
    .unwrap();
    assert_eq!(new.plaintext(), old.plaintext());
}

#[test]
fn json_values_pass_through_an_avro_decoder_untouched() {
    let decoder = decoder_with(&[]);
    let event = decode(&decoder, br#"{"type":"t","data":{ "a" : 1 }}"#).unwrap();
    assert_eq!(event.data.get(), r#"{ "a" : 1 }"#);
}

#[test]
fn truncated_avro_body_is_invalid() {
    let decoder = decoder_with(&[(EVENT_ID, EVENT_SCHEMA)]);
    let value = framed(
        EVENT_ID,
        EVENT_SCHEMA,
        event_value("order.created", "{}", none(), none()),
    );
    // apache-avro reads a string or union index cut off by the end of the
    // input as null; every cut must still be caught.
    for cut in 1..value.len() - 5 {
        let error = invalid(&decoder, &value[..value.len() - cut]);
        assert!(
            error == "value ends in the middle of its Avro datum (schema id 7)"
                || error.starts_with("value is not valid Avro for schema id 7: "),
            "cut {cut}: {error}"
        );
    }
}

#[test]
fn bytes_after_the_datum_are_invalid() {
    let decoder = decoder_with(&[(EVENT_ID, EVENT_SCHEMA)]);
    let mut value = framed(
        EVENT_ID,
        EVENT_SCHEMA,
        event_value("t", "{}", none(), none()),
    );
    value.extend_from_slice(b"xyz");
    assert_eq!(
        invalid(&decoder, &value),
        "value has 3 bytes after the end of its Avro datum (schema id 7)"
    );
}

#[test]
fn garbage_after_the_header_is_invalid_not_a_crash() {
    let decoder = decoder_with(&[(EVENT_ID, EVENT_SCHEMA)]);
    for body in [
        &b""[..],
        &[0xff; 16],
        // A string length of about 2^62: refused without allocating it.
        &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        &[0x02, b't', 0x01],
    ] {
        let mut value = vec![0, 0, 0, 0, 7];
        value.extend_from_slice(body);
        invalid(&decoder, &value);
    }
}

#[test]
fn data_that_is_not_json_is_invalid() {
    let decoder = decoder_with(&[(EVENT_ID, EVENT_SCHEMA)]);
    let value = framed(
        EVENT_ID,
        EVENT_SCHEMA,
        event_value("t", "{oops", none(), none()),
    );
    let error = invalid(&decoder, &value);
    assert!(
        error.starts_with(
            "Avro value of schema id 7 has no JSON event form: field `data` is a string but not one JSON value"
        ),
        "{error}"
    );
}

#[test]
fn avro_events_follow_the_shared_rules() {
    let decoder = decoder_with(&[(EVENT_ID, EVENT_SCHEMA)]);
    let value = framed(EVENT_ID, EVENT_SCHEMA, event_value("", "1", none(), none()));
    assert!(invalid(&decoder, &value).contains("field `type` is empty"));
    // A record without `data` is not an event, whatever its format.
    let schema = r#"{"type":"record","name":"X","fields":[{"name":"type","type":"string"}]}"#;
    let decoder = decoder_with(&[(9, schema)]);
    let value = framed(
        9,
        schema,
        Value::Record(vec![("type".into(), Value::String("t".into()))]),
    );
    assert!(invalid(&decoder, &value).contains("missing field `data`"));
}

#[test]
fn sync_decode_of_an_unfetched_schema_says_so() {
    let decoder = decoder_with(&[]);
    let value = framed(
        EVENT_ID,
        EVENT_SCHEMA,
        event_value("t", "1", none(), none()),
    );
    assert_eq!(
        invalid(&decoder, &value),
        "schema id 7 has not been fetched from the schema registry"
    );
}

#[tokio::test]
async fn registry_down_is_transient_and_never_a_dead_letter() {
    let decoder = EventDecoder::Avro(decoder_with(&[]));
    let value = framed(
        EVENT_ID,
        EVENT_SCHEMA,
        event_value("t", "1", none(), none()),
    );
    let error = decoder
        .decode_async(&record(Some(b"acme"), &value), LIMIT)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    let DecodeError::RegistryUnavailable { schema_id, source } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*schema_id, EVENT_ID);
    assert!(source.is_transient());
}

#[tokio::test]
async fn cached_schemas_decode_while_the_registry_is_down() {
    let decoder = EventDecoder::Avro(decoder_with(&[(EVENT_ID, EVENT_SCHEMA)]));
    let value = framed(
        EVENT_ID,
        EVENT_SCHEMA,
        event_value("t", "1", none(), none()),
    );
    let event = decoder
        .decode_async(&record(Some(b"acme"), &value), LIMIT)
        .await
        .unwrap();
    assert_eq!(event.event_type, "t");
}

#[tokio::test]
async fn cheap_checks_run_before_the_registry_is_asked() {
    // The registry is down: were it asked, these would be transient errors
    // instead of the dead letters they are.
    let decoder = EventDecoder::Avro(decoder_with(&[]));
    let value = framed(
        EVENT_ID,
        EVENT_SCHEMA,
        event_value("t", "1", none(), none()),
    );
    let keyless = decoder
        .decode_async(&record(None, &value), LIMIT)
        .await
        .unwrap_err();
    assert!(
        matches!(keyless, DecodeError::Invalid(EventError::MissingKey)),
        "{keyless:?}"
    );
    let oversized = decoder
        .decode_async(&record(Some(b"acme"), &value), value.len() - 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            oversized,
            DecodeError::Invalid(EventError::PayloadTooLarge { .. })
        ),
        "{oversized:?}"
    );
}

#[tokio::test]
async fn json_decoder_refuses_avro_without_asking_anyone() {
    let value = framed(
        EVENT_ID,
        EVENT_SCHEMA,
        event_value("t", "1", none(), none()),
    );
    let error = EventDecoder::Json
        .decode_async(&record(Some(b"acme"), &value), LIMIT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DecodeError::Invalid(EventError::SchemaRegistryRequired { schema_id: 7 })
        ),
        "{error:?}"
    );
}

#[test]
fn recursive_schemas_are_refused() {
    let linked_list = r#"{"type":"record","name":"Node","fields":[
        {"name":"type","type":"string"},
        {"name":"data","type":"string"},
        {"name":"next","type":["null","Node"]}]}"#;
    let schema = WriterSchema {
        id: 3,
        root: Schema::parse_str(linked_list).unwrap(),
        referenced: Vec::new(),
    };
    let error = check_usable(&schema).unwrap_err();
    assert!(
        matches!(error, EventError::RecursiveSchema { schema_id: 3 }),
        "{error:?}"
    );
}

#[test]
fn a_named_type_used_twice_is_not_recursion() {
    let schema = r#"{"type":"record","name":"Order","fields":[
        {"name":"type","type":"string"},
        {"name":"data","type":"string"},
        {"name":"billing","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}},
        {"name":"shipping","type":"Address"},
        {"name":"history","type":{"type":"array","items":"Address"}}]}"#;
    let schema = WriterSchema {
        id: 4,
        root: Schema::parse_str(schema).unwrap(),
        referenced: Vec::new(),
    };
    check_usable(&schema).unwrap();
}

#[test]
fn decoder_comes_from_the_configuration() {
    assert_eq!(EventDecoder::new(None).unwrap(), EventDecoder::Json);
    let config = crate::config::SchemaRegistryConfig {
        url: Url::parse("http://127.0.0.1:8081/apis/ccompat/v7").unwrap(),
    };
    let decoder = EventDecoder::new(Some(&config)).unwrap();
    let EventDecoder::Avro(avro) = &decoder else {
        panic!("{decoder:?}");
    };
    assert_eq!(avro.registry_url(), "http://127.0.0.1:8081/apis/ccompat/v7");
    assert_eq!(
        format!("{avro:?}"),
        r#"AvroDecoder { registry: "http://127.0.0.1:8081/apis/ccompat/v7", cached_schemas: 0 }"#
    );
}
