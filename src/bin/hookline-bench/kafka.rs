//! The bench's own Kafka work: topics named for one run, records produced
//! in bulk, and the topics deleted afterwards. Like the test fixtures, the
//! bench drives rdkafka directly: it needs a producer tuned for volume, not
//! the library's acknowledged one-at-a-time producer.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

pub const BOOTSTRAP: &str = "127.0.0.1:9092";

/// The three topics of one run.
#[derive(Debug, Clone)]
pub struct Topics {
    pub events: String,
    pub tenants: String,
    pub dlq: String,
}

impl Topics {
    pub fn named(prefix: &str) -> Self {
        Self {
            events: format!("{prefix}-events"),
            tenants: format!("{prefix}-tenants"),
            dlq: format!("{prefix}-dlq"),
        }
    }

    /// A topology file for `hookline setup-topics` and `hookline run`.
    pub fn topology(&self, partitions: u32) -> String {
        format!(
            "[events]\nname = \"{}\"\npartitions = {partitions}\n\n\
             [tenants]\nname = \"{}\"\npartitions = 3\n[tenants.configs]\n\"cleanup.policy\" = \"compact\"\n\n\
             [dlq]\nname = \"{}\"\npartitions = {partitions}\n",
            self.events, self.tenants, self.dlq
        )
    }
}

/// A producer for volume: batches of up to 1 MB, lingering 5 ms, or sending
/// at once for the latency run.
pub struct BulkProducer {
    inner: ThreadedProducer<DefaultProducerContext>,
}

impl BulkProducer {
    pub fn new(linger_ms: u32) -> Result<Self, KafkaError> {
        let inner = ClientConfig::new()
            .set("bootstrap.servers", BOOTSTRAP)
            .set("linger.ms", linger_ms.to_string())
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("acks", "all")
            .create()?;
        Ok(Self { inner })
    }

    /// Queues one record; waits while the local queue is full.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), KafkaError> {
        loop {
            let mut record = BaseRecord::to(topic).key(key).payload(value);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Waits until everything queued is acknowledged.
    pub fn flush(&self) -> Result<(), KafkaError> {
        self.inner.flush(Duration::from_secs(120))
    }
}

/// Deletes the run's topics; failures are only reported.
pub async fn delete_topics(topics: &Topics) {
    let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .create();
    let Ok(admin) = admin else {
        eprintln!("cannot create an admin client to delete the bench topics");
        return;
    };
    let names = [
        topics.events.as_str(),
        topics.tenants.as_str(),
        topics.dlq.as_str(),
    ];
    if let Err(e) = admin.delete_topics(&names, &AdminOptions::new()).await {
        eprintln!("deleting {names:?}: {e}");
    }
}
