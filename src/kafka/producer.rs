//! Producing records whose acknowledgement matters: tenant records, events
//! sent from the command line, dead letters. Every send waits until the
//! broker has acknowledged the write to all in-sync replicas.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::watch;

use super::connection::{ConnectionFailure, WatchedContext};
use crate::config::KafkaConfig;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create a producer: {0}")]
    Client(#[source] KafkaError),
    /// The broker refused the credentials or the TLS handshake failed
    /// (only for a producer made with [`AckedProducer::for_command`]).
    #[error("{0}")]
    Connection(Arc<ConnectionFailure>),
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
    inner: FutureProducer<WatchedContext>,
    timeout: Duration,
    /// The first connection refused for its credentials or TLS settings.
    failures: watch::Receiver<Option<Arc<ConnectionFailure>>>,
    /// Whether [`AckedProducer::send_record`] stops at such a failure.
    fail_fast: bool,
}

impl AckedProducer {
    /// `timeout` bounds how long one send may wait for its acknowledgement,
    /// retries included (librdkafka's `message.timeout.ms`). A connection
    /// that fails is retried until then, whatever the reason: a replica
    /// keeps its records while, say, a rotated password reaches it.
    pub fn new(config: &KafkaConfig, timeout: Duration) -> Result<Self, ProduceError> {
        Self::create(config, timeout, false)
    }

    /// For a command that writes and exits: a send stops at once with a
    /// [`ProduceError::Connection`] when the broker refuses the
    /// credentials or the TLS handshake fails, instead of waiting for its
    /// timeout, and that failure is left for the command to report.
    pub fn for_command(config: &KafkaConfig, timeout: Duration) -> Result<Self, ProduceError> {
        Self::create(config, timeout, true)
    }

    fn create(
        config: &KafkaConfig,
        timeout: Duration,
        fail_fast: bool,
    ) -> Result<Self, ProduceError> {
        let context = WatchedContext::new(config.properties.get("sasl.username"), fail_fast);
        let failures = context.failures();
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
            .create_with_context(context)
            .map_err(ProduceError::Client)?;
        Ok(Self {
            inner,
            timeout,
            failures,
            fail_fast,
        })
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
        let pending = self
            .enqueue_record(topic, None, key, value, headers)
            .await?;
        if !self.fail_fast {
            return pending.await;
        }
        let mut failures = self.failures.clone();
        tokio::select! {
            acknowledged = pending => acknowledged,
            // The sender lives in the producer's context, which `self` holds:
            // the watch cannot close while this waits.
            Ok(failure) = failures.wait_for(Option::is_some) => {
                let failure = failure.clone().expect("wait_for saw Some");
                Err(ProduceError::Connection(failure))
            }
        }
    }

    /// Hands a record to the producer and returns as soon as it is queued,
    /// with the acknowledgement still to come. Records enqueued one after
    /// the other are written in that order (the producer is idempotent, so
    /// retries do not reorder them), which lets a caller keep many records
    /// in flight and still write them in a given order: await each
    /// `enqueue_record` before the next, and the [`PendingAck`]s later.
    /// Waits only while the producer's queue is full, at most the producer's
    /// timeout. `partition` chooses the partition; `None` leaves it to the
    /// partitioner (by key).
    pub async fn enqueue_record(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Result<PendingAck, ProduceError> {
        let mut record = future_record(topic, key, value, headers);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        let started = Instant::now();
        loop {
            // `send_result` queues the record synchronously or gives it back;
            // `FutureProducer::send` would do the same, but polling several
            // of its futures at once could queue them in any order.
            match self.inner.send_result(record) {
                Ok(delivery) => {
                    return Ok(PendingAck {
                        topic: topic.to_string(),
                        delivery,
                    });
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if started.elapsed() < self.timeout =>
                {
                    record = returned;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((source, _)) => {
                    return Err(ProduceError::Write {
                        topic: topic.to_string(),
                        source,
                    });
                }
            }
        }
    }
}

/// A record exactly as given: a missing key or value stays missing, a
/// header without a value stays without one.
pub(super) fn future_record<'a>(
    topic: &'a str,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> FutureRecord<'a, [u8], [u8]> {
    let mut record: FutureRecord<'a, [u8], [u8]> = FutureRecord::to(topic);
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
    record
}

/// How long to wait before offering a record again to a producer whose queue
/// was full (what `FutureProducer::send` waits).
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(100);

/// A record queued by [`AckedProducer::enqueue_record`]: resolves once the
/// broker acknowledged it, or with the error that ended its delivery.
pub struct PendingAck {
    topic: String,
    delivery: DeliveryFuture,
}

impl Future for PendingAck {
    type Output = Result<Acknowledged, ProduceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        Pin::new(&mut this.delivery).poll(cx).map(|outcome| {
            let failed = |source| ProduceError::Write {
                topic: this.topic.clone(),
                source,
            };
            match outcome {
                Ok(Ok(delivery)) => Ok(Acknowledged {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Ok(Err((source, _))) => Err(failed(source)),
                // The producer is held by whoever holds this future's
                // producer handle; it drops the delivery report only when
                // it is destroyed with the record still queued.
                Err(_canceled) => Err(failed(KafkaError::Canceled)),
            }
        })
    }
}
