use super::*;
use crate::error::error_chain;
use proptest::prelude::*;

const LIMIT: usize = 1 << 20;
/// 2026-11-28T10:00:00.123Z in milliseconds.
const RECORD_MILLIS: i64 = 1_795_860_000_123;

fn record<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> RecordParts<'a> {
    RecordParts {
        key,
        value,
        timestamp_millis: Some(RECORD_MILLIS),
        topic: "events",
        partition: 3,
        offset: 42,
    }
}

fn decode_with(record: &RecordParts<'_>) -> Result<Event, EventError> {
    EventDecoder::Json.decode(record, LIMIT)
}

fn decode(value: &str) -> Result<Event, EventError> {
    decode_with(&record(Some(b"acme"), Some(value.as_bytes())))
}

fn decoded(value: &str) -> Event {
    decode(value).unwrap_or_else(|e| panic!("{value}: {}", error_chain(&e)))
}

/// Asserts that decoding refuses the value for what it holds (not for its
/// size, which is the one refusal that is not `invalid_event`) and returns
/// the error text.
fn invalid(value: &str) -> String {
    invalid_record(&record(Some(b"acme"), Some(value.as_bytes())))
}

fn invalid_record(record: &RecordParts<'_>) -> String {
    match decode_with(record) {
        Ok(event) => panic!("expected a refusal, decoded {event:?}"),
        Err(e) => {
            assert!(!matches!(e, EventError::PayloadTooLarge { .. }), "{e:?}");
            error_chain(&e)
        }
    }
}

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn minimal_event_takes_tenant_id_and_timestamp_from_the_record() {
    let event = decoded(r#"{"type":"order.created","data":{"order":42}}"#);
    assert_eq!(event.tenant, "acme");
    assert_eq!(event.event_type, "order.created");
    assert_eq!(event.data.get(), r#"{"order":42}"#);
    assert_eq!(event.id, "evt_events_3_42");
    assert_eq!(event.timestamp, "2026-11-28T10:00:00.123Z");
    assert_eq!(event.occurred_at.unix_timestamp(), 1_795_860_000);
    assert_eq!(event.occurred_at.millisecond(), 123);
}

#[test]
fn full_event_keeps_the_producers_id_and_timestamp() {
    let event = decoded(
        r#"{ "type": "order.created", "data": { "order": 42 }, "id": "evt_123", "timestamp": "2026-11-28T11:00:00+01:00", "tenant": "acme" }"#,
    );
    assert_eq!(event.id, "evt_123");
    // Kept as written, offset included; the instant is the same.
    assert_eq!(event.timestamp, "2026-11-28T11:00:00+01:00");
    assert_eq!(event.occurred_at.unix_timestamp(), 1_795_860_000);
    // Whitespace inside `data` is the producer's and stays.
    assert_eq!(event.data.get(), r#"{ "order": 42 }"#);
}

#[test]
fn data_may_be_any_json_including_null() {
    for data in [
        "null",
        "0",
        "-1.5e300",
        "\"text\"",
        "[]",
        "[1,[2,[3]]]",
        "{}",
        "true",
    ] {
        let event = decoded(&format!(r#"{{"type":"t","data":{data}}}"#));
        assert_eq!(event.data.get(), data);
    }
}

#[test]
fn large_numbers_in_data_are_not_rounded() {
    // A parse into f64 and back would print 12345678901234567000.
    let event = decoded(
        r#"{"type":"t","data":{"n":12345678901234567890123,"f":0.1000000000000000055511151231257827}}"#,
    );
    assert_eq!(
        event.data.get(),
        r#"{"n":12345678901234567890123,"f":0.1000000000000000055511151231257827}"#
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let event = decoded(r#"{"type":"t","data":1,"version":2,"meta":{"a":[1,2]}}"#);
    assert_eq!(event.event_type, "t");
}

#[test]
fn producer_id_with_a_dot_is_encoded() {
    assert_eq!(
        decoded(r#"{"type":"t","data":1,"id":"order.42"}"#).id,
        "order%2E42"
    );
}

#[test]
fn unusable_producer_ids_are_replaced_by_the_derived_id() {
    for id in ["null", "\"\"", "42", "{}", "[\"a\"]", "true"] {
        let event = decoded(&format!(r#"{{"type":"t","data":1,"id":{id}}}"#));
        assert_eq!(event.id, "evt_events_3_42", "id {id}");
    }
}

#[test]
fn escaped_producer_id_is_unescaped_before_use() {
    assert_eq!(
        decoded(r#"{"type":"t","data":1,"id":"a\u0062c"}"#).id,
        "abc"
    );
}

#[test]
fn derived_id_depends_on_the_position() {
    let value = br#"{"type":"t","data":1}"#;
    let mut other = record(Some(b"acme"), Some(value));
    other.topic = "webhook.events";
    other.partition = 0;
    other.offset = 7;
    assert_eq!(decode_with(&other).unwrap().id, "evt_webhook%2Eevents_0_7");
}

#[test]
fn invalid_event_timestamp_falls_back_to_the_record_timestamp() {
    for timestamp in [
        "\"yesterday\"",
        "\"2026-11-28\"",
        "\"2026-11-28T10:00Z\"",
        "\"2026-13-01T00:00:00Z\"",
        "1795860000",
        "null",
        "{}",
    ] {
        let event = decoded(&format!(
            r#"{{"type":"t","data":1,"timestamp":{timestamp}}}"#
        ));
        assert_eq!(
            event.timestamp, "2026-11-28T10:00:00.123Z",
            "timestamp {timestamp}"
        );
    }
}

#[test]
fn rfc3339_variants_are_kept_as_written() {
    for timestamp in [
        "2026-11-28T10:00:00Z",
        "2026-11-28T10:00:00.5Z",
        "2026-11-28T10:00:00.123456789-05:30",
    ] {
        let event = decoded(&format!(
            r#"{{"type":"t","data":1,"timestamp":"{timestamp}"}}"#
        ));
        assert_eq!(event.timestamp, timestamp);
    }
}

#[test]
fn lenient_rfc3339_spellings_are_rewritten_canonically() {
    // A space or lower-case letters are RFC 3339 but trip strict parsers;
    // the instant is kept, not replaced by the record timestamp.
    for timestamp in [
        "2026-11-28 11:00:00+01:00",
        "2026-11-28t10:00:00Z",
        "2026-11-28T10:00:00z",
    ] {
        let event = decoded(&format!(
            r#"{{"type":"t","data":1,"timestamp":"{timestamp}"}}"#
        ));
        assert_eq!(event.timestamp, "2026-11-28T10:00:00.000Z", "{timestamp}");
    }
}

#[test]
fn lenient_spelling_outside_rfc3339_years_in_utc_falls_back() {
    // Regression guard: converting these to UTC overflows year 9999 or
    // underflows year 0000, which must not panic on producer input.
    for timestamp in ["9999-12-31 23:00:00-02:00", "0000-01-01t00:30:00+01:00"] {
        let event = decoded(&format!(
            r#"{{"type":"t","data":1,"timestamp":"{timestamp}"}}"#
        ));
        assert_eq!(event.timestamp, "2026-11-28T10:00:00.123Z", "{timestamp}");
    }
    // Spelled canonically they are kept as written: they are valid RFC 3339.
    let event = decoded(r#"{"type":"t","data":1,"timestamp":"9999-12-31T23:00:00-02:00"}"#);
    assert_eq!(event.timestamp, "9999-12-31T23:00:00-02:00");
}

#[test]
fn no_usable_timestamp_anywhere_is_invalid() {
    let value = br#"{"type":"t","data":1}"#;
    for millis in [None, Some(-1), Some(i64::MIN), Some(i64::MAX)] {
        let mut parts = record(Some(b"acme"), Some(value));
        parts.timestamp_millis = millis;
        let error = invalid_record(&parts);
        assert!(
            error.contains("no RFC 3339 `timestamp`"),
            "{millis:?}: {error}"
        );
    }
    // The event's own timestamp makes the record's unnecessary.
    let mut parts = record(
        Some(b"acme"),
        Some(br#"{"type":"t","data":1,"timestamp":"2026-11-28T10:00:00Z"}"#),
    );
    parts.timestamp_millis = None;
    assert_eq!(
        decode_with(&parts).unwrap().timestamp,
        "2026-11-28T10:00:00Z"
    );
}

#[test]
fn record_timestamp_zero_is_the_epoch() {
    let mut parts = record(Some(b"acme"), Some(br#"{"type":"t","data":1}"#));
    parts.timestamp_millis = Some(0);
    assert_eq!(
        decode_with(&parts).unwrap().timestamp,
        "1970-01-01T00:00:00.000Z"
    );
}

#[test]
fn oversized_value_is_payload_too_large_before_anything_else() {
    let value = vec![b'x'; 101];
    // No key and no JSON either: size is checked first, without parsing.
    let parts = record(None, Some(&value));
    let error = EventDecoder::Json.decode(&parts, 100).unwrap_err();
    assert!(
        matches!(
            error,
            EventError::PayloadTooLarge {
                size: 101,
                limit: 100
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "value is 101 bytes, above delivery.max_payload_bytes (100 bytes)"
    );
}

#[test]
fn value_at_the_limit_is_accepted() {
    let value = br#"{"type":"t","data":1}"#;
    let parts = record(Some(b"acme"), Some(value));
    assert!(EventDecoder::Json.decode(&parts, value.len()).is_ok());
    assert!(matches!(
        EventDecoder::Json.decode(&parts, value.len() - 1),
        Err(EventError::PayloadTooLarge {
            size: 21,
            limit: 20
        })
    ));
}

#[test]
fn missing_empty_or_non_utf8_key_is_invalid() {
    let value: &[u8] = br#"{"type":"t","data":1}"#;
    assert!(invalid_record(&record(None, Some(value))).contains("no key"));
    assert!(invalid_record(&record(Some(b""), Some(value))).contains("key is empty"));
    assert!(invalid_record(&record(Some(b"ac\xffme"), Some(value))).contains("key is not UTF-8"));
}

#[test]
fn missing_or_empty_value_is_invalid() {
    assert!(invalid_record(&record(Some(b"acme"), None)).contains("no value"));
    assert!(invalid("").contains("value is empty"));
    assert!(invalid(" \n").contains("not a JSON object"));
}

#[test]
fn values_that_are_not_objects_are_invalid() {
    for value in ["hello", "42", "null", "\"text\"", "true", "[]"] {
        assert!(invalid(value).contains("not a JSON object"), "{value}");
    }
}

#[test]
fn array_of_fields_in_order_is_not_an_event() {
    // Regression guard: serde's derived visitors accept a struct written as
    // an array of its fields, which would make this a valid event.
    let error = invalid(r#"["order.created", {"order": 42}]"#);
    assert!(error.contains("not a JSON object"), "{error}");
}

#[test]
fn malformed_json_is_invalid() {
    for value in [
        "{",
        "{oops}",
        r#"{"type":"t","data":1"#,
        r#"{"type":"t","data":1,}"#,
        r#"{"type":"t","data":1} trailing"#,
        r#"{"type":"t","data":NaN}"#,
        r#"{'type':'t','data':1}"#,
    ] {
        let error = invalid(value);
        assert!(
            error.starts_with("value is not a valid event: "),
            "{value}: {error}"
        );
    }
}

#[test]
fn missing_or_non_string_type_is_invalid() {
    assert!(invalid(r#"{"data":1}"#).contains("missing field `type`"));
    for event_type in ["42", "null", "{}", "[\"t\"]", "true"] {
        let error = invalid(&format!(r#"{{"type":{event_type},"data":1}}"#));
        assert!(error.contains("invalid type"), "{event_type}: {error}");
    }
    assert!(invalid(r#"{"type":"","data":1}"#).contains("field `type` is empty"));
}

#[test]
fn missing_data_is_invalid() {
    assert!(invalid(r#"{"type":"t"}"#).contains("missing field `data`"));
}

#[test]
fn duplicate_fields_are_invalid() {
    assert!(invalid(r#"{"type":"a","type":"b","data":1}"#).contains("duplicate field `type`"));
    assert!(
        invalid(r#"{"type":"a","data":1,"tenant":"acme","tenant":"evil"}"#)
            .contains("duplicate field `tenant`")
    );
}

#[test]
fn tenant_field_must_agree_with_the_key() {
    assert_eq!(
        decoded(r#"{"type":"t","data":1,"tenant":"acme"}"#).tenant,
        "acme"
    );
    assert_eq!(
        decoded(r#"{"type":"t","data":1,"tenant":null}"#).tenant,
        "acme"
    );
    for other in ["globex", "ACME", "acme ", ""] {
        let error = invalid(&format!(r#"{{"type":"t","data":1,"tenant":"{other}"}}"#));
        assert!(error.contains("names another tenant"), "{other:?}: {error}");
    }
    assert!(invalid(r#"{"type":"t","data":1,"tenant":42}"#).contains("invalid type"));
}

#[test]
fn a_hundred_thousand_nested_arrays_are_invalid_not_a_crash() {
    let deep = nested_arrays(100_000);
    assert!(invalid(&deep).contains("deeper than 127 levels"));
    // Inside `data` and inside an unknown field, both of which serde_json
    // skips over without its recursion limit.
    for value in [
        format!(r#"{{"type":"t","data":{deep}}}"#),
        format!(r#"{{"type":"t","data":1,"extra":{deep}}}"#),
    ] {
        let error = invalid(&value);
        assert!(error.contains("deeper than 127 levels"), "{error}");
    }
    // Unbalanced brackets too: the depth check does not rely on well-formed input.
    assert!(
        invalid(&format!(
            r#"{{"type":"t","data":{}"#,
            "{\"a\":".repeat(100_000)
        ))
        .contains("deeper")
    );
}

#[test]
fn data_nested_up_to_the_limit_is_accepted() {
    // The event object is one level, so data may take the remaining ones.
    let data = nested_arrays(MAX_NESTING_DEPTH - 1);
    let event = decoded(&format!(r#"{{"type":"t","data":{data}}}"#));
    assert_eq!(event.data.get(), data);
    let data = nested_arrays(MAX_NESTING_DEPTH);
    assert!(invalid(&format!(r#"{{"type":"t","data":{data}}}"#)).contains("deeper"));
}

#[test]
fn brackets_inside_strings_do_not_count_as_nesting() {
    let text = "[".repeat(100_000);
    let event = decoded(&format!(r#"{{"type":"t","data":"{text}"}}"#));
    assert_eq!(event.data.get().len(), text.len() + 2);
}

#[test]
fn invalid_utf8_anywhere_in_the_value_is_invalid() {
    let cases: [&[u8]; 4] = [
        b"{\"type\":\"t\",\"data\":\"\xff\"}",
        b"{\"type\":\"t\xc3\",\"data\":1}",
        b"{\"type\":\"t\",\"data\":1,\"extra\":\"\xed\xa0\x80\"}",
        b"{\"type\":\"t\",\"data\":{\"\xf0\x9f\":1}}",
    ];
    for value in cases {
        let error = invalid_record(&record(Some(b"acme"), Some(value)));
        assert!(error.contains("value is not UTF-8"), "{value:?}: {error}");
    }
}

#[test]
fn confluent_framed_value_needs_a_schema_registry() {
    let mut value = vec![0, 0, 0, 1, 0x2c];
    value.extend_from_slice(b"avro body");
    let error = invalid_record(&record(Some(b"acme"), Some(&value)));
    assert_eq!(
        error,
        "value is in the Confluent wire format (schema id 300) but no schema registry is configured"
    );
}

#[test]
fn wire_format_is_told_by_the_magic_byte() {
    assert_eq!(WireFormat::of(b"{}"), WireFormat::Json);
    assert_eq!(
        WireFormat::of(&[0, 0, 0, 0, 7]),
        WireFormat::ConfluentAvro { schema_id: 7 }
    );
    assert_eq!(
        WireFormat::of(&[0, 0xff, 0xff, 0xff, 0xff, 1]),
        WireFormat::ConfluentAvro {
            schema_id: u32::MAX
        }
    );
    // Too short for a schema id: not Confluent framing, and not JSON either.
    assert_eq!(WireFormat::of(&[0, 1]), WireFormat::Json);
    assert!(invalid_record(&record(Some(b"acme"), Some(&[0, 1]))).contains("not a JSON object"));
}

#[test]
fn plaintext_is_the_contract_object_with_data_verbatim() {
    let event = decoded(
        r#"{"type":"order.created","data":{ "order" : 42, "n": 1.0e2 },"id":"evt_1","timestamp":"2026-11-28T10:00:00Z"}"#,
    );
    let plaintext = String::from_utf8(event.plaintext()).unwrap();
    assert_eq!(
        plaintext,
        r#"{"id":"evt_1","type":"order.created","timestamp":"2026-11-28T10:00:00Z","tenant":"acme","data":{ "order" : 42, "n": 1.0e2 }}"#
    );
}

#[test]
fn plaintext_escapes_strings() {
    let parts = record(
        Some("te\"nant\n".as_bytes()),
        Some(br#"{"type":"a\"b\\c\u0001\u00e9","data":[]}"#),
    );
    let event = decode_with(&parts).unwrap();
    let plaintext: serde_json::Value = serde_json::from_slice(&event.plaintext()).unwrap();
    assert_eq!(plaintext["type"], "a\"b\\c\u{1}é");
    assert_eq!(plaintext["tenant"], "te\"nant\n");
    assert_eq!(plaintext["data"], serde_json::json!([]));
    let keys: Vec<&String> = plaintext.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5);
}

#[test]
fn debug_output_leaves_the_payload_out() {
    let event = decoded(r#"{"type":"t","data":{"card":"4111111111111111"}}"#);
    let debug = format!("{event:?}");
    assert!(!debug.contains("4111"), "{debug}");
    assert!(debug.contains("data_bytes"), "{debug}");
}

#[test]
fn json_errors_keep_their_cause() {
    let error = decode(r#"{"data":1}"#).unwrap_err();
    assert_eq!(error.to_string(), "value is not a valid event");
    let source = std::error::Error::source(&error).expect("serde_json error as source");
    assert!(source.to_string().contains("missing field `type`"));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
                                   value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
                                   millis in proptest::option::of(any::<i64>())) {
        let mut parts = record(key.as_deref(), value.as_deref());
        parts.timestamp_millis = millis;
        // The same properties as the `event_decode` fuzz target.
        match EventDecoder::Json.decode(&parts, 128) {
            Ok(event) => {
                prop_assert!(!event.id.contains('.'));
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&event.plaintext()).is_ok());
            }
            // Only the size makes a refusal `payload_too_large`; every
            // other one is `invalid_event`.
            Err(e) => {
                let too_large = value.as_ref().is_some_and(|v| v.len() > 128);
                prop_assert_eq!(matches!(e, EventError::PayloadTooLarge { .. }), too_large, "{:?}", e);
            }
        }
    }

    #[test]
    fn timestamp_like_strings_never_panic(
        timestamp in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    ) {
        let value = format!(r#"{{"type":"t","data":1,"timestamp":"{timestamp}"}}"#);
        let event = decode(&value);
        prop_assert!(event.is_ok(), "{timestamp}: {event:?}");
        let event = event.unwrap();
        prop_assert!(OffsetDateTime::parse(&event.timestamp, &Rfc3339).is_ok(), "{}", event.timestamp);
    }

    #[test]
    fn decoded_events_round_trip_through_the_plaintext(
        event_type in "\\PC{1,20}",
        tenant in "\\PC{1,20}",
        id in proptest::option::of("\\PC{0,20}"),
        number in any::<i64>(),
    ) {
        let mut document = serde_json::json!({"type": event_type, "data": {"n": number}});
        if let Some(id) = &id {
            document["id"] = serde_json::Value::from(id.clone());
        }
        let value = serde_json::to_vec(&document).unwrap();
        let event = decode_with(&record(Some(tenant.as_bytes()), Some(&value))).unwrap();
        prop_assert!(!event.id.contains('.'));
        let plaintext: serde_json::Value = serde_json::from_slice(&event.plaintext()).unwrap();
        prop_assert_eq!(&plaintext["type"], &serde_json::Value::from(event_type));
        prop_assert_eq!(&plaintext["tenant"], &serde_json::Value::from(tenant));
        prop_assert_eq!(&plaintext["id"], &serde_json::Value::from(event.id.clone()));
        prop_assert_eq!(&plaintext["data"]["n"], &serde_json::Value::from(number));
    }

    #[test]
    fn json_shaped_values_never_panic(
        key in "\\PC{0,6}",
        value in "\\{(\"(id|type|data|timestamp|tenant)\":(\"\\PC{0,8}\"|[0-9.e+-]{1,8}|null|true|\\[|\\{|\\]|\\}),?){0,6}\\}?",
    ) {
        let parts = record(Some(key.as_bytes()), Some(value.as_bytes()));
        match EventDecoder::Json.decode(&parts, 1024) {
            Ok(event) => {
                prop_assert!(!event.id.contains('.'));
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&event.plaintext()).is_ok());
            }
            Err(e) => prop_assert!(!matches!(e, EventError::PayloadTooLarge { .. }), "{:?}", e),
        }
    }
}
