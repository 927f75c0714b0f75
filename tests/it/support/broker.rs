//! A test's own corner of the shared broker: unique topic names and group
//! ids, plus producer and consumer helpers. Topics are deleted on drop.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Where the test broker listens; `make up` starts it there.
pub fn bootstrap() -> String {
    std::env::var("HOOKLINE_TEST_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A record as read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch, when the record has a timestamp.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).expect("test headers are UTF-8"))
    }
}

pub struct Broker {
    pub bootstrap: String,
    /// Unique suffix shared by this fixture's topics and group.
    pub suffix: String,
    admin: AdminClient<DefaultClientContext>,
    producer: FutureProducer,
    created: std::sync::Mutex<Vec<String>>,
}

impl Broker {
    /// A fresh fixture; `test` becomes part of every name it hands out so
    /// that leftovers on the broker say which test made them.
    pub fn new(test: &str) -> Self {
        Self::at(test, bootstrap())
    }

    /// A fixture on a broker of the test's own (the soak run restarts its
    /// broker, which the shared one must never be).
    pub fn at(test: &str, bootstrap: String) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let suffix = format!(
            "{test}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_suffix()
        );
        let admin = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("admin client");
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            // Tests produce events of 1 MiB and more; the broker accepts
            // them, librdkafka's own default limit (1,000,000 bytes) would not.
            .set("message.max.bytes", "16777216")
            .create()
            .expect("producer");
        Self {
            bootstrap,
            suffix,
            admin,
            producer,
            created: Default::default(),
        }
    }

    /// A topic or group name unique to this fixture.
    pub fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.suffix)
    }

    pub async fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let results = self
            .admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("create_topics request");
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
        self.created.lock().unwrap().push(name.to_string());
    }

    /// Remembers a topic that something else (a `hookline` command) created,
    /// so that it is deleted with the fixture.
    pub fn adopt_topic(&self, name: &str) {
        self.created.lock().unwrap().push(name.to_string());
    }

    pub async fn produce(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> (i32, i64) {
        self.produce_to(topic, None, key, value, headers).await
    }

    /// Like [`Broker::produce`], to a chosen partition when `partition` is
    /// given (tests that need two keys on different partitions).
    pub async fn produce_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> (i32, i64) {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(owned);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
        (delivery.partition, delivery.offset)
    }

    /// Produces like [`Broker::produce`], retrying a failed write until
    /// `timeout` passes, as a real producer would: a broker that has just
    /// restarted can answer for a moment without the topic's partitions.
    /// A retried record lands after records sent later, so callers that
    /// care about order use the returned offset, not the call order.
    pub async fn produce_retrying(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
        timeout: Duration,
    ) -> (i32, i64) {
        let deadline = Instant::now() + timeout;
        loop {
            let record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).key(key).payload(value);
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(delivery) => return (delivery.partition, delivery.offset),
                Err((e, _)) if Instant::now() < deadline => {
                    eprintln!("producing to {topic} failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }

    /// Reads every partition of `topic` from the beginning until `count`
    /// records arrived or `timeout` passed, and returns what arrived.
    pub async fn consume(&self, topic: &str, count: usize, timeout: Duration) -> Vec<Record> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", self.name("reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // Records of aborted transactions (dead letters written with
            // `delivery.transactional_dlq`) are not part of the topic.
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics()[0].partitions() {
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Beginning)
                .expect("partition offset");
        }
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + timeout;
        let mut records = Vec::new();
        while records.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, consumer.recv()).await {
                Ok(Ok(message)) => records.push(Record {
                    partition: message.partition(),
                    offset: message.offset(),
                    timestamp_ms: message.timestamp().to_millis(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers: message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Ok(Err(e)) => panic!("consuming {topic}: {e}"),
                Err(_) => break,
            }
        }
        records
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let topics = std::mem::take(&mut *self.created.lock().unwrap());
        if topics.is_empty() {
            return;
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        // Best effort: the broker is throw-away, a leftover topic harms no
        // other test because every name is unique.
        let _ = futures::executor::block_on(self.admin.delete_topics(
            &names,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))),
        ));
    }
}

fn rand_suffix() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:08x}", hasher.finish() as u32)
}
