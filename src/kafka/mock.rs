//! librdkafka's built-in mock cluster, for `hookline demo`: brokers that
//! live inside this process, so the whole flow runs without Java or Docker.
//!
//! The mock has no admin API (CreateTopics is not implemented), so topics
//! are created through its own interface, and it ignores topic configs: a
//! topic meant to be compacted is an ordinary one there.
//!
//! librdkafka's handle is not `Send`, so it lives on a thread of its own
//! and is reached through a channel. Dropping [`MockKafka`] destroys the
//! cluster; every client connected to it should be dropped first, or it
//! logs the lost connection.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("cannot start the embedded Kafka cluster: {0}")]
    Start(String),
    #[error("cannot create topic `{topic}` on the embedded cluster: {source}")]
    CreateTopic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the embedded Kafka cluster stopped unexpectedly")]
    Gone,
}

enum Request {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: mpsc::Sender<Result<(), KafkaError>>,
    },
}

/// A running mock cluster.
pub struct MockKafka {
    bootstrap_servers: String,
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl MockKafka {
    /// Starts a mock cluster of `brokers` brokers listening on localhost.
    pub fn start(brokers: i32) -> Result<Self, MockError> {
        let (requests, incoming) = mpsc::channel::<Request>();
        let (started, start_result) = mpsc::channel::<Result<String, String>>();
        let thread = std::thread::Builder::new()
            .name("hookline-mock-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = started.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = started.send(Ok(cluster.bootstrap_servers()));
                // Serves requests until the owner hangs up; the cluster is
                // destroyed when this thread returns.
                for request in incoming {
                    match request {
                        Request::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            // One broker holds every replica, so the
                            // replication factor is 1 whatever the topology
                            // says.
                            let _ = reply.send(cluster.create_topic(&name, partitions, 1));
                        }
                    }
                }
            })
            .map_err(|e| MockError::Start(e.to_string()))?;
        let bootstrap_servers = match start_result.recv() {
            Ok(Ok(servers)) => servers,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(MockError::Start(e));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(MockError::Gone);
            }
        };
        Ok(Self {
            bootstrap_servers,
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` list clients connect with.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Creates `name` with `partitions` partitions (replication factor 1).
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<(), MockError> {
        let (reply, answer) = mpsc::channel();
        let requests = self.requests.as_ref().ok_or(MockError::Gone)?;
        requests
            .send(Request::CreateTopic {
                name: name.to_string(),
                partitions: i32::try_from(partitions).unwrap_or(i32::MAX),
                reply,
            })
            .map_err(|_| MockError::Gone)?;
        answer
            .recv()
            .map_err(|_| MockError::Gone)?
            .map_err(|source| MockError::CreateTopic {
                topic: name.to_string(),
                source,
            })
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        // Hanging up ends the thread's request loop, which destroys the
        // cluster.
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_creates_topics_and_stops() {
        let mock = MockKafka::start(1).unwrap();
        assert!(mock.bootstrap_servers().contains(':'));
        mock.create_topic("demo.events", 3).unwrap();
        drop(mock);
    }
}
