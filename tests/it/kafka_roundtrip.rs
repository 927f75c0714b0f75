//! The harness itself against the real broker: records go in and come back
//! out unchanged, and the receiver fixture records what it is sent.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Broker, Receiver};

#[tokio::test]
async fn records_round_trip_through_the_broker_with_keys_and_headers() {
    let broker = Broker::new("roundtrip");
    let topic = broker.name("events");
    broker.create_topic(&topic, 3, &[]).await;

    let mut produced = Vec::new();
    for i in 0..60u32 {
        let key = format!("tenant-{}", i % 7);
        let value = format!("{{\"n\":{i}}}");
        let (partition, offset) = broker
            .produce(
                &topic,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[("trace", b"abc")],
            )
            .await;
        produced.push((partition, offset, key, value));
    }

    let records = broker
        .consume(&topic, produced.len(), Duration::from_secs(30))
        .await;
    assert_eq!(records.len(), produced.len());
    for (partition, offset, key, value) in &produced {
        let record = records
            .iter()
            .find(|r| r.partition == *partition && r.offset == *offset)
            .unwrap_or_else(|| panic!("record {partition}/{offset} not read back"));
        assert_eq!(record.key.as_deref(), Some(key.as_bytes()));
        assert_eq!(record.value.as_deref(), Some(value.as_bytes()));
        assert_eq!(record.header("trace"), Some("abc"));
    }
    // The same key always lands on the same partition: the basis of
    // per-tenant ordering.
    for (_, _, key, _) in &produced {
        let partitions: std::collections::HashSet<i32> = produced
            .iter()
            .filter(|(_, _, k, _)| k == key)
            .map(|(p, ..)| *p)
            .collect();
        assert_eq!(partitions.len(), 1, "key {key} spread over {partitions:?}");
    }
}

#[tokio::test]
async fn receiver_records_requests_and_answers_as_told() {
    let receiver = Receiver::start(Arc::new(|n, _| {
        if n == 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NO_CONTENT
        }
    }))
    .await;

    let mut statuses = Vec::new();
    for body in ["first", "second"] {
        let mut stream = tokio::net::TcpStream::connect(receiver.addr).await.unwrap();
        let request = format!(
            "POST /hook HTTP/1.1\r\nhost: x\r\nwebhook-id: {body}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        statuses.push(response.lines().next().unwrap_or_default().to_string());
    }

    assert!(statuses[0].contains("503"), "{statuses:?}");
    assert!(statuses[1].contains("204"), "{statuses:?}");
    let received = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].path, "/hook");
    assert_eq!(received[0].header("webhook-id"), Some("first"));
    assert_eq!(&received[1].body[..], b"second");
}
