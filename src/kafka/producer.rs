//! Producing records whose acknowledgement matters: tenant records, events
//! sent from the command line, dead letters. Every send waits until the
//! broker has acknowledged the write to all in-sync replicas.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::KafkaConfig;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create a producer: {0}")]
    Client(#[source] KafkaError),
    #[error("writing to `{topic}` failed: {source}")]
    Write {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    pub partition: i32,
    pub offset: i64,
}

/// An idempotent producer with `acks=all`.
#[derive(Clone)]
pub struct AckedProducer {
    inner: FutureProducer,
    timeout: Duration,
}

impl AckedProducer {
    /// `timeout` bounds how long one send may wait for its acknowledgement,
    /// retries included (librdkafka's `message.timeout.ms`).
    pub fn new(config: &KafkaConfig, timeout: Duration) -> Result<Self, ProduceError> {
        let inner = super::client_config(config)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            // librdkafka refuses records above 1,000,000 bytes by default, so
            // a dead letter could not carry an event value of 1 MiB (the
            // default `max_payload_bytes`) or one refused as too large. The
            // topic's `max.message.bytes` on the broker is the limit that
            // counts; this only lifts the client's own, to its maximum.
            .set("message.max.bytes", "1000000000")
            .create()
            .map_err(ProduceError::Client)?;
        Ok(Self { inner, timeout })
    }

    /// Writes one record and returns once the broker acknowledged it.
    /// `value == None` writes a tombstone.
    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Acknowledged, ProduceError> {
        self.send_record(topic, Some(key), value, &[]).await
    }

    /// Writes a record exactly as given: a missing key or value stays
    /// missing, headers without a value stay without one (a dead letter
    /// keeps the original record byte for byte).
    pub async fn send_record(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Result<Acknowledged, ProduceError> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if !headers.is_empty() {
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for (name, value) in headers {
                owned = owned.insert(Header {
                    key: name,
                    value: *value,
                });
            }
            record = record.headers(owned);
        }
        self.inner
            .send(record, self.timeout)
            .await
            .map(|delivery| Acknowledged {
                partition: delivery.partition,
                offset: delivery.offset,
            })
            .map_err(|(source, _)| ProduceError::Write {
                topic: topic.to_string(),
                source,
            })
    }
}
