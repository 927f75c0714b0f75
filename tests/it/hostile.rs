//! Hostile input: a corpus of malformed, oversized and tricky records, all on
//! one partition, each of which must end in its defined outcome (a dead
//! letter with the right reason, or a delivery) without a panic or a stall.
//! A good event of the tenant `ok`, which most of the corpus is keyed to,
//! is produced after the corpus on the same partition and must be
//! delivered: a record of `ok` that wedged the worker would hold it back,
//! since a tenant's events are delivered in order. The records of other
//! keys end on their own, concurrently in key order, and each of their
//! outcomes is waited for.
//!
//! Tenant URLs that are really delivered to are loopback spellings only
//! (decimal and octal forms of 127.0.0.1), so that no request can leave the
//! machine even if the destination guard were broken; the others (userinfo,
//! IPv6 zone ids) are refused before any connection.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hookline::events::MAX_NESTING_DEPTH;
use hookline::schema_registry::{register_event_schema, value_subject};
use serde_json::json;

use crate::support::registry::Registry;
use crate::support::replica::{Replica, TestTenant, create_topics, replica_config};
use crate::support::{Broker, Receiver};

/// `delivery.max_payload_bytes` of the shipped configuration (1 MiB).
const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// What a record of the corpus must end in.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// A dead letter with this `dlq.reason`.
    DeadLetter(&'static str),
    /// A request on this receiver path with this `webhook-id`.
    Delivered { path: &'static str, id: String },
}

struct Case {
    name: &'static str,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    expect: Expect,
}

impl Case {
    fn new(name: &'static str, key: Option<&[u8]>, value: Vec<u8>, expect: Expect) -> Self {
        Self {
            name,
            key: key.map(<[u8]>::to_vec),
            value: Some(value),
            headers: Vec::new(),
            expect,
        }
    }
}

fn delivered(path: &'static str, id: &str) -> Expect {
    Expect::Delivered {
        path,
        id: id.to_string(),
    }
}

fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": id, "type": "hostile", "data": {"ok": true}})).unwrap()
}

/// An event whose value is exactly `size` bytes, padding in `data`.
fn event_of_size(id: &str, size: usize) -> Vec<u8> {
    let empty = format!(r#"{{"id":"{id}","type":"hostile","data":""}}"#);
    let padding = "x".repeat(size - empty.len());
    let value = format!(r#"{{"id":"{id}","type":"hostile","data":"{padding}"}}"#);
    assert_eq!(value.len(), size);
    value.into_bytes()
}

/// `{"type":"hostile","data":[[...]]}` with `depth` levels of arrays in all.
fn nested(id: &str, depth: usize) -> Vec<u8> {
    // The event object itself is one level.
    let arrays = depth - 1;
    format!(
        r#"{{"id":"{id}","type":"hostile","data":{}1{}}}"#,
        "[".repeat(arrays),
        "]".repeat(arrays)
    )
    .into_bytes()
}

/// Produces the corpus in order to partition 0, then a good event of `ok`,
/// and checks every outcome: those of `ok`'s records as soon as the good
/// event is delivered, the others once they came.
async fn run_corpus(
    broker: &Broker,
    topics: &hookline::delivery::runner::Topics,
    receiver: &Receiver,
    corpus: Vec<Case>,
) {
    // By offset: the case's name, whether it is keyed to `ok`, and its
    // outcome.
    let mut expected: HashMap<i64, (&'static str, bool, Expect)> = HashMap::new();
    for case in &corpus {
        let headers: Vec<(&str, &[u8])> = case
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let (partition, offset) = broker
            .produce_to(
                &topics.events,
                Some(0),
                case.key.as_deref(),
                case.value.as_deref(),
                &headers,
            )
            .await;
        assert_eq!(partition, 0);
        let of_ok = case.key.as_deref() == Some(b"ok");
        expected.insert(offset, (case.name, of_ok, case.expect.clone()));
    }
    broker
        .produce_to(
            &topics.events,
            Some(0),
            Some(b"ok"),
            Some(&event("after-the-corpus")),
            &[],
        )
        .await;

    // Nothing stalls: the good event after the corpus arrives.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let arrived = receiver
            .received()
            .iter()
            .any(|r| r.header("webhook-id") == Some("after-the-corpus"));
        if arrived {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the event after the corpus was not delivered within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `ok`'s records reached their outcomes before its good event.
    let want_dead = expected
        .values()
        .filter(|(_, _, e)| matches!(e, Expect::DeadLetter(_)))
        .count();
    let mut failures = outcomes(broker, topics, receiver, &expected, want_dead, true).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The records of other keys end on their own.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        failures = outcomes(broker, topics, receiver, &expected, want_dead, false).await;
        if failures.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The expected outcomes not seen (yet), of `ok`'s records only when
/// `only_ok`.
async fn outcomes(
    broker: &Broker,
    topics: &hookline::delivery::runner::Topics,
    receiver: &Receiver,
    expected: &HashMap<i64, (&'static str, bool, Expect)>,
    want_dead: usize,
    only_ok: bool,
) -> Vec<String> {
    let dead_letters = broker
        .consume(&topics.dlq, want_dead, Duration::from_secs(5))
        .await;
    let dead_by_offset: HashMap<i64, String> = dead_letters
        .iter()
        .map(|r| {
            let offset = r.header("dlq.offset").unwrap().parse().unwrap();
            (offset, r.header("dlq.reason").unwrap().to_string())
        })
        .collect();
    let requests = receiver.received();
    let mut failures = Vec::new();
    for (offset, (name, of_ok, expect)) in expected {
        if only_ok && !of_ok {
            continue;
        }
        match expect {
            Expect::DeadLetter(reason) => {
                if dead_by_offset.get(offset).map(String::as_str) != Some(*reason) {
                    failures.push(format!(
                        "{name}: want dead letter `{reason}`, got {:?}",
                        dead_by_offset.get(offset)
                    ));
                }
            }
            Expect::Delivered { path, id } => {
                let seen = requests
                    .iter()
                    .any(|r| r.path == *path && r.header("webhook-id") == Some(id.as_str()));
                if !seen || dead_by_offset.contains_key(offset) {
                    failures.push(format!(
                        "{name}: want a delivery on {path} with id {id}, dead letter: {:?}",
                        dead_by_offset.get(offset)
                    ));
                }
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_corpus_ends_in_defined_outcomes_and_never_wedges_the_partition() {
    let broker = Broker::new("hostile");
    let topics = create_topics(&broker, 1).await;
    let receiver = Receiver::ok().await;
    let port = receiver.addr.port();

    // Tenants: a good one, tricky URLs, an oversized record, unknown fields.
    let good = TestTenant::new("ok");
    good.register(&broker, &topics, &good.record(&receiver.url("/ok")))
        .await;
    let tricky_urls = [
        // Credentials in the URL: refused by validation.
        (
            "userinfo",
            format!("http://user:secret@127.0.0.1:{port}/userinfo"),
        ),
        // IPv6 zone ids (link-local and loopback): not valid URL hosts.
        (
            "zone-link-local",
            format!("http://[fe80::1%25eth0]:{port}/zone"),
        ),
        ("zone-loopback", format!("http://[::1%25lo]:{port}/zone")),
        // 127.0.0.1 as one decimal number and in octal: parsed as
        // 127.0.0.1, so with private destinations allowed they deliver, to
        // loopback only.
        ("decimal", format!("http://2130706433:{port}/decimal")),
        ("octal", format!("http://0177.0.0.01:{port}/octal")),
    ];
    for (id, url) in &tricky_urls {
        let tenant = TestTenant::new(id);
        tenant.register(&broker, &topics, &tenant.record(url)).await;
    }
    let huge = TestTenant::new("huge-record");
    let mut record = huge.record(&receiver.url("/huge"));
    record["padding"] = json!("p".repeat(10 * 1024 * 1024));
    huge.register(&broker, &topics, &record).await;
    let future = TestTenant::new("future-fields");
    let mut record = future.record(&receiver.url("/future"));
    record["max_attempts"] = json!(3);
    record["webhook_format"] = json!({"version": 2, "compression": ["zstd"]});
    record["enabled"] = json!(true);
    future.register(&broker, &topics, &record).await;
    // A tenant record whose key is not UTF-8: ignored, nothing breaks.
    broker
        .produce(
            &topics.tenants,
            Some(&[0xff, 0xfe, 0x00]),
            Some(&serde_json::to_vec(&good.record(&receiver.url("/nobody"))).unwrap()),
            &[],
        )
        .await;

    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;

    let mut huge_headers = Case::new(
        "200 headers of 4 KiB",
        Some(b"ok"),
        event("huge-headers"),
        delivered("/ok", "huge-headers"),
    );
    huge_headers.headers = (0..200)
        .map(|i| (format!("x-hostile-{i}"), vec![b'h'; 4096]))
        .collect();
    let mut one_huge_header = Case::new(
        "one header of 2 MiB on a dead letter",
        Some(b"nobody-at-all"),
        event("huge-header-dead"),
        Expect::DeadLetter("unknown_tenant"),
    );
    one_huge_header.headers = vec![("x-hostile".into(), vec![b'h'; 2 * 1024 * 1024])];

    let corpus = vec![
        Case::new(
            "non-UTF-8 key",
            Some(&[0xff, 0xfe, 0xfd]),
            event("k1"),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "empty key",
            Some(b""),
            event("k2"),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "no key",
            None,
            event("k3"),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "key with control characters",
            Some(b"ok\n\x1b[31m"),
            event("k4"),
            Expect::DeadLetter("unknown_tenant"),
        ),
        Case {
            name: "no value",
            key: Some(b"ok".to_vec()),
            value: None,
            headers: Vec::new(),
            expect: Expect::DeadLetter("invalid_event"),
        },
        Case::new(
            "empty value",
            Some(b"ok"),
            Vec::new(),
            Expect::DeadLetter("invalid_event"),
        ),
        huge_headers,
        one_huge_header,
        Case::new(
            "value of exactly max_payload_bytes",
            Some(b"ok"),
            event_of_size("at-limit", MAX_PAYLOAD_BYTES),
            delivered("/ok", "at-limit"),
        ),
        Case::new(
            "value one byte over max_payload_bytes",
            Some(b"ok"),
            event_of_size("over-limit", MAX_PAYLOAD_BYTES + 1),
            Expect::DeadLetter("payload_too_large"),
        ),
        Case::new(
            "value of 15 MiB",
            Some(b"ok"),
            event_of_size("far-over-limit", 15 * 1024 * 1024),
            Expect::DeadLetter("payload_too_large"),
        ),
        Case::new(
            "nesting at the limit",
            Some(b"ok"),
            nested("nested-at-limit", MAX_NESTING_DEPTH),
            delivered("/ok", "nested-at-limit"),
        ),
        Case::new(
            "nesting one level over the limit",
            Some(b"ok"),
            nested("nested-over", MAX_NESTING_DEPTH + 1),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "nesting 100,000 levels deep",
            Some(b"ok"),
            nested("nested-deep", 100_000),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "invalid UTF-8 inside the type string",
            Some(b"ok"),
            b"{\"id\":\"u1\",\"type\":\"order.\xff\xfe\",\"data\":1}".to_vec(),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "invalid UTF-8 inside a data string",
            Some(b"ok"),
            b"{\"id\":\"u2\",\"type\":\"t\",\"data\":{\"s\":\"\xc3\x28\"}}".to_vec(),
            Expect::DeadLetter("invalid_event"),
        ),
        // JSON's grammar allows these two, but no serde_json receiver could
        // parse the payload into a value.
        Case::new(
            "lone surrogate escape in a data string",
            Some(b"ok"),
            br#"{"id":"u3","type":"t","data":"\ud800"}"#.to_vec(),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "number beyond f64 range in data",
            Some(b"ok"),
            br#"{"id":"u5","type":"t","data":[1e999]}"#.to_vec(),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "lone surrogate escape in the type",
            Some(b"ok"),
            br#"{"id":"u4","type":"order.\udc00","data":1}"#.to_vec(),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "Avro framing without a registry",
            Some(b"ok"),
            b"\x00\x00\x00\x00\x01\x02garbage".to_vec(),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "a lone magic byte",
            Some(b"ok"),
            vec![0],
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "unknown fields in an event",
            Some(b"ok"),
            serde_json::to_vec(&json!({
                "id": "unknown-fields", "type": "hostile", "data": 1,
                "specversion": "1.0", "extra": {"nested": [1, 2, {"x": null}]},
            }))
            .unwrap(),
            delivered("/ok", "unknown-fields"),
        ),
        Case::new(
            "tenant URL with userinfo",
            Some(b"userinfo"),
            event("t-userinfo"),
            Expect::DeadLetter("invalid_tenant"),
        ),
        Case::new(
            "tenant URL with a link-local zone id",
            Some(b"zone-link-local"),
            event("t-zone1"),
            Expect::DeadLetter("invalid_tenant"),
        ),
        Case::new(
            "tenant URL with a loopback zone id",
            Some(b"zone-loopback"),
            event("t-zone2"),
            Expect::DeadLetter("invalid_tenant"),
        ),
        Case::new(
            "tenant URL host in decimal",
            Some(b"decimal"),
            event("t-decimal"),
            delivered("/decimal", "t-decimal"),
        ),
        Case::new(
            "tenant URL host in octal",
            Some(b"octal"),
            event("t-octal"),
            delivered("/octal", "t-octal"),
        ),
        Case::new(
            "10 MB tenant record",
            Some(b"huge-record"),
            event("t-huge"),
            Expect::DeadLetter("invalid_tenant"),
        ),
        Case::new(
            "unknown fields in a tenant record",
            Some(b"future-fields"),
            event("t-future"),
            delivered("/future", "t-future"),
        ),
    ];
    run_corpus(&broker, &topics, &receiver, corpus).await;
    replica.stop().await;
}

/// With a registry configured, Confluent-framed garbage is dead-lettered on
/// the registry's verdict (unknown schema id, or a body that is not Avro of
/// a known schema), never retried forever and never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_garbage_with_a_registry_is_dead_lettered_and_never_wedges_the_partition() {
    let registry = Registry::shared();
    let broker = Broker::new("hostile-avro");
    let topics = create_topics(&broker, 1).await;
    let schema_id = register_event_schema(&registry.url, &value_subject(&topics.events))
        .await
        .unwrap();
    let receiver = Receiver::ok().await;
    let good = TestTenant::new("ok");
    good.register(&broker, &topics, &good.record(&receiver.url("/ok")))
        .await;
    let config = replica_config(&broker, &[("SCHEMA_REGISTRY__URL", registry.url.as_str())]);
    let replica = Replica::start(config, &topics).await;

    let framed = |id: u32, body: &[u8]| {
        let mut value = vec![0];
        value.extend_from_slice(&id.to_be_bytes());
        value.extend_from_slice(body);
        value
    };
    let corpus = vec![
        Case::new(
            "unknown schema id",
            Some(b"ok"),
            framed(0x7fff_fff0, b"\x02garbage"),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "known schema, random body",
            Some(b"ok"),
            framed(schema_id, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "known schema, empty body",
            Some(b"ok"),
            framed(schema_id, b""),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "known schema, a string length of a gigabyte",
            Some(b"ok"),
            // Zig-zag varint 2^31: a string claiming about a gigabyte,
            // followed by nothing.
            framed(schema_id, b"\x80\x80\x80\x80\x10"),
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "truncated header",
            Some(b"ok"),
            vec![0, 0, 0],
            Expect::DeadLetter("invalid_event"),
        ),
        Case::new(
            "JSON still accepted next to Avro",
            Some(b"ok"),
            event("json-with-registry"),
            delivered("/ok", "json-with-registry"),
        ),
    ];
    run_corpus(&broker, &topics, &receiver, corpus).await;
    replica.stop().await;
}
