use std::collections::HashMap;
use std::io::Cursor;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Days, Decimal, Duration, Millis, Months};

use super::*;
use crate::schema_registry::EVENT_SCHEMA;

/// `value` written with `schema` and read back, so that tests convert what
/// the decoder really produces (logical types included), not hand-built
/// values.
fn round_trip(schema: &Schema, value: Value) -> Value {
    let body = GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    GenericDatumReader::builder(schema)
        .build()
        .unwrap()
        .read_value(&mut Cursor::new(&body))
        .unwrap()
}

fn convert(schema: &str, value: Value) -> Result<String, AvroJsonError> {
    let schema = Schema::parse_str(schema).unwrap();
    let value = round_trip(&schema, value);
    let resolved = ResolvedSchema::new(&schema).unwrap();
    event_document(&value, &schema, resolved.get_names())
        .map(|document| String::from_utf8(document).expect("documents are UTF-8"))
}

fn event(data: &str, id: Option<&str>, timestamp_millis: Option<i64>) -> Value {
    Value::Record(vec![
        ("type".into(), Value::String("order.created".into())),
        ("data".into(), Value::String(data.into())),
        (
            "id".into(),
            match id {
                Some(id) => Value::Union(1, Box::new(Value::String(id.into()))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
        (
            "timestamp".into(),
            match timestamp_millis {
                Some(t) => Value::Union(1, Box::new(Value::TimestampMillis(t))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
    ])
}

/// A record schema with one field `data` of the given Avro type.
fn data_schema(data_type: &str) -> String {
    format!(
        r#"{{"type":"record","name":"E","fields":[{{"name":"type","type":"string"}},{{"name":"data","type":{data_type}}}]}}"#
    )
}

fn typed(data: Value) -> Value {
    Value::Record(vec![
        ("type".into(), Value::String("t".into())),
        ("data".into(), data),
    ])
}

/// The JSON text of `data` in the document of a `data_type` field.
fn data_json(data_type: &str, data: Value) -> String {
    let document = convert(&data_schema(data_type), typed(data)).unwrap();
    let prefix = r#"{"type":"t","data":"#;
    assert!(document.starts_with(prefix), "{document}");
    document[prefix.len()..document.len() - 1].to_owned()
}

#[test]
fn event_record_becomes_the_json_event_document() {
    let document = convert(
        EVENT_SCHEMA,
        event(r#"{"order":42}"#, Some("evt_123"), Some(1_795_860_000_123)),
    )
    .unwrap();
    assert_eq!(
        document,
        r#"{"type":"order.created","data":{"order":42},"id":"evt_123","timestamp":"2026-11-28T10:00:00.123Z"}"#
    );
}

#[test]
fn absent_optional_fields_become_null() {
    let document = convert(EVENT_SCHEMA, event("[1,2]", None, None)).unwrap();
    assert_eq!(
        document,
        r#"{"type":"order.created","data":[1,2],"id":null,"timestamp":null}"#
    );
}

#[test]
fn data_json_text_is_embedded_with_its_numbers_and_spacing() {
    // The producer's JSON text is what the receiver gets, as for JSON events:
    // no round trip through f64, no reformatting inside the value.
    let data = r#"{ "n": 12345678901234567890123, "f": 0.1000000000000000055511151231257827 }"#;
    let document = convert(EVENT_SCHEMA, event(data, None, None)).unwrap();
    assert!(document.contains(data), "{document}");
}

#[test]
fn data_that_is_not_exactly_one_json_value_is_refused() {
    // The second case would otherwise smuggle an `id` into the event object.
    for data in ["", "not json", r#"1,"id":"forged""#, "{} {}", "{"] {
        let error = convert(EVENT_SCHEMA, event(data, None, None)).unwrap_err();
        assert!(
            matches!(error, AvroJsonError::DataNotJson(_)),
            "{data:?}: {error:?}"
        );
    }
}

#[test]
fn data_may_be_any_json_scalar() {
    for data in ["null", "true", "-1.5e300", r#""text""#, "0"] {
        let document = convert(EVENT_SCHEMA, event(data, None, None)).unwrap();
        assert!(
            document.contains(&format!(r#""data":{data},"#)),
            "{document}"
        );
    }
}

#[test]
fn primitive_types_map_to_json_literals() {
    assert_eq!(data_json(r#""null""#, Value::Null), "null");
    assert_eq!(data_json(r#""boolean""#, Value::Boolean(true)), "true");
    assert_eq!(data_json(r#""int""#, Value::Int(-42)), "-42");
    assert_eq!(
        data_json(r#""long""#, Value::Long(i64::MAX)),
        "9223372036854775807"
    );
    // The shortest text that reads back as the same float, not its f64 widening.
    assert_eq!(data_json(r#""float""#, Value::Float(0.1)), "0.1");
    assert_eq!(
        data_json(r#""double""#, Value::Double(-2.5e-10)),
        "-2.5e-10"
    );
    assert_eq!(
        data_json(r#""bytes""#, Value::Bytes(vec![0, 1, 254, 255])),
        r#""AAH+/w==""#
    );
    // A string-typed `data` is JSON text (see the tests above); strings
    // anywhere else are JSON strings.
    let document = convert(
        r#"{"type":"record","name":"E","fields":[{"name":"type","type":"string"},{"name":"data","type":"long"}]}"#,
        Value::Record(vec![
            ("type".into(), Value::String("é\"\n".into())),
            ("data".into(), Value::Long(1)),
        ]),
    )
    .unwrap();
    assert_eq!(document, r#"{"type":"é\"\n","data":1}"#);
}

#[test]
fn a_string_typed_data_field_inside_a_union_is_still_json_text() {
    let json = data_json(
        r#"["null","string"]"#,
        Value::Union(1, Box::new(Value::String(r#"{"a":[1]}"#.into()))),
    );
    assert_eq!(json, r#"{"a":[1]}"#);
}

#[test]
fn named_and_complex_types_map_to_json_structures() {
    let schema = r#"{"type":"record","name":"Order","fields":[
        {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]}},
        {"name":"hash","type":{"type":"fixed","name":"Hash","size":2}},
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
            {"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}},
        {"name":"tags","type":{"type":"map","values":"long"}},
        {"name":"note","type":["null","string"]},
        {"name":"first","type":["null","Line"]}
    ]}"#;
    let line = |sku: &str, qty: i32| {
        Value::Record(vec![
            ("sku".into(), Value::String(sku.into())),
            ("qty".into(), Value::Int(qty)),
        ])
    };
    let order = Value::Record(vec![
        ("status".into(), Value::Enum(1, "PAID".into())),
        ("hash".into(), Value::Fixed(2, vec![0xff, 0x00])),
        (
            "lines".into(),
            Value::Array(vec![line("a", 1), line("b", 2)]),
        ),
        (
            "tags".into(),
            Value::Map(HashMap::from([
                ("zeta".to_owned(), Value::Long(3)),
                ("alpha".to_owned(), Value::Long(1)),
                ("mid".to_owned(), Value::Long(2)),
            ])),
        ),
        ("note".into(), Value::Union(0, Box::new(Value::Null))),
        ("first".into(), Value::Union(1, Box::new(line("a", 1)))),
    ]);
    assert_eq!(
        data_json(schema, order),
        // Map keys sorted: the same event always gives the same bytes.
        r#"{"status":"PAID","hash":"/wA=","lines":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"tags":{"alpha":1,"mid":2,"zeta":3},"note":null,"first":{"sku":"a","qty":1}}"#
    );
}

#[test]
fn decimals_keep_their_exact_digits() {
    let bytes_decimal = r#"{"type":"bytes","logicalType":"decimal","precision":20,"scale":2}"#;
    let decimal = |unscaled: i64| Value::Decimal(Decimal::from(unscaled.to_be_bytes()));
    assert_eq!(data_json(bytes_decimal, decimal(12_345)), "123.45");
    assert_eq!(data_json(bytes_decimal, decimal(-5)), "-0.05");
    assert_eq!(data_json(bytes_decimal, decimal(0)), "0.00");
    let fixed_decimal = r#"{"type":"fixed","name":"Amount","size":16,"logicalType":"decimal","precision":38,"scale":10}"#;
    let big = 123_456_789_012_345_678_901_234_567_890i128;
    assert_eq!(
        data_json(
            fixed_decimal,
            Value::Decimal(Decimal::from(big.to_be_bytes()))
        ),
        "12345678901234567890.1234567890"
    );
}

#[test]
fn dates_and_times_become_rfc3339_strings() {
    let cases = [
        (
            r#"{"type":"int","logicalType":"date"}"#,
            Value::Date(20_785),
            r#""2026-11-28""#,
        ),
        (
            r#"{"type":"int","logicalType":"time-millis"}"#,
            Value::TimeMillis(36_000_123),
            r#""10:00:00.123""#,
        ),
        (
            r#"{"type":"long","logicalType":"time-micros"}"#,
            Value::TimeMicros(36_000_000_001),
            r#""10:00:00.000001""#,
        ),
        (
            r#"{"type":"long","logicalType":"timestamp-micros"}"#,
            Value::TimestampMicros(1_795_860_000_123_456),
            r#""2026-11-28T10:00:00.123456Z""#,
        ),
        (
            r#"{"type":"long","logicalType":"timestamp-nanos"}"#,
            Value::TimestampNanos(-1),
            r#""1969-12-31T23:59:59.999999999Z""#,
        ),
        (
            r#"{"type":"long","logicalType":"local-timestamp-millis"}"#,
            Value::LocalTimestampMillis(0),
            r#""1970-01-01T00:00:00.000""#,
        ),
    ];
    for (schema, value, expected) in cases {
        assert_eq!(data_json(schema, value), expected, "{schema}");
    }
}

#[test]
fn uuid_and_duration_have_readable_forms() {
    let uuid = apache_avro::Uuid::parse_str("6f1c2a4e-8d3b-4c1a-9f00-1234567890ab").unwrap();
    assert_eq!(
        data_json(
            r#"{"type":"string","logicalType":"uuid"}"#,
            Value::Uuid(uuid)
        ),
        r#""6f1c2a4e-8d3b-4c1a-9f00-1234567890ab""#
    );
    let duration = Duration::new(Months::new(1), Days::new(2), Millis::new(3));
    assert_eq!(
        data_json(
            r#"{"type":"fixed","name":"D","size":12,"logicalType":"duration"}"#,
            Value::Duration(duration)
        ),
        r#"{"months":1,"days":2,"millis":3}"#
    );
}

#[test]
fn non_finite_numbers_are_refused() {
    for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = convert(&data_schema(r#""double""#), typed(Value::Double(value))).unwrap_err();
        assert!(
            matches!(error, AvroJsonError::NonFiniteNumber { .. }),
            "{value}"
        );
    }
    let error = convert(&data_schema(r#""float""#), typed(Value::Float(f32::NAN))).unwrap_err();
    assert_eq!(
        error.to_string(),
        "field `data` holds NaN, which JSON cannot represent"
    );
}

#[test]
fn timestamps_outside_rfc3339_years_are_refused() {
    let error = convert(
        &data_schema(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
        typed(Value::TimestampMillis(i64::MAX)),
    )
    .unwrap_err();
    assert!(
        matches!(error, AvroJsonError::TimeOutOfRange { .. }),
        "{error:?}"
    );
}

#[test]
fn nesting_beyond_the_json_limit_is_refused() {
    // MAX_NESTING_DEPTH arrays inside the event record are one level too
    // many. Built in code: a schema text this deep is beyond serde_json's
    // own limit, so only a programmatic schema gets here.
    let mut schema = Schema::parse_str(&data_schema(r#""long""#)).unwrap();
    let mut items = Schema::Long;
    let mut value = Value::Long(1);
    for _ in 0..MAX_NESTING_DEPTH {
        items = Schema::array(items).build();
        value = Value::Array(vec![value]);
    }
    let Schema::Record(record) = &mut schema else {
        panic!("a record schema");
    };
    record.fields[1].schema = items;
    let resolved = ResolvedSchema::new(&schema).unwrap();
    let error = event_document(&typed(value), &schema, resolved.get_names()).unwrap_err();
    assert!(matches!(error, AvroJsonError::TooDeep), "{error:?}");
}

#[test]
fn a_value_that_is_not_a_record_is_refused() {
    let schema = Schema::parse_str(r#""string""#).unwrap();
    let resolved = ResolvedSchema::new(&schema).unwrap();
    let error =
        event_document(&Value::String("x".into()), &schema, resolved.get_names()).unwrap_err();
    assert!(matches!(error, AvroJsonError::NotARecord));
}

#[test]
fn decimal_point_placement() {
    assert_eq!(with_decimal_point("12345", 0), "12345");
    assert_eq!(with_decimal_point("12345", 2), "123.45");
    assert_eq!(with_decimal_point("12345", 5), "0.12345");
    assert_eq!(with_decimal_point("12345", 7), "0.0012345");
    assert_eq!(with_decimal_point("-7", 3), "-0.007");
    assert_eq!(with_decimal_point("-1234", 1), "-123.4");
}
