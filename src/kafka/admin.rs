//! The admin client: observes the declared topics ([`Admin::describe`]) and
//! changes them (create, add partitions, set configs), every request bounded
//! by `kafka.admin_timeout`.
//!
//! Topic configs are changed with Kafka's IncrementalAlterConfigs, called on
//! librdkafka directly (`native`), and never with the legacy AlterConfigs
//! that the rdkafka crate wraps. AlterConfigs replaces a topic's whole
//! config: every config the request does not name reverts to its default,
//! so fixing one drifted value would silently drop, say, a
//! `max.message.bytes` that an operator set by hand. Sending the complete
//! set of the topic's dynamic configs merged with the declared ones would
//! avoid that, but it races with anyone else changing the topic between our
//! read and our write, and cannot carry sensitive configs, whose values the
//! broker never reveals. IncrementalAlterConfigs (Kafka 2.3+) sets exactly
//! the named configs and nothing else.

mod native;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaType};

use self::native::NativeError;
use super::connection::{self, ConnectionFailure, METADATA_SLICE};
use crate::config::KafkaConfig;
use crate::topology::{Cluster, ObservedConfig, ObservedTopic, TopicSpec};

/// An admin request that did not succeed, classified so that callers (and
/// operators reading the one-line message) can tell an unreachable cluster
/// from a denied request from a refused one.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The client configuration (pass-through properties) is invalid.
    #[error("invalid Kafka client configuration: {message}")]
    Client { message: String },
    /// No broker answered within the timeout.
    #[error(
        "cannot reach Kafka at {bootstrap} within {}{}",
        humantime::format_duration(*timeout),
        cause.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    Unreachable {
        bootstrap: String,
        timeout: Duration,
        /// What librdkafka said about the failed connections, if anything.
        cause: Option<String>,
    },
    /// The broker refused the credentials, or the TLS handshake failed: no
    /// retry fixes it, the configuration must change.
    #[error(transparent)]
    Connection(#[from] ConnectionFailure),
    /// Authentication failed or an ACL denies the request.
    #[error(
        "Kafka denied {operation}: {message} (check the credentials and ACLs of hookline's principal)"
    )]
    Denied { operation: String, message: String },
    /// The cluster was reachable but did not finish the request in time.
    #[error("{operation}: no answer from Kafka within {}", humantime::format_duration(*timeout))]
    TimedOut {
        operation: String,
        timeout: Duration,
    },
    /// The broker refused or failed the request; `message` is its reason.
    #[error("{operation} failed: {message}")]
    Failed { operation: String, message: String },
}

impl AdminError {
    /// Whether the cluster did not answer (unreachable or timed out): the
    /// same request may succeed once it is back. Denials, refusals and bad
    /// client configuration are not transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AdminError::Unreachable { .. } | AdminError::TimedOut { .. }
        )
    }
}

/// A connection to the cluster for administrative requests. Clones share
/// the connection.
#[derive(Clone)]
pub struct Admin {
    // Shared with the blocking threads that run librdkafka's synchronous
    // calls, so that a request never outlives the client handle it uses.
    client: Arc<Client<DefaultClientContext>>,
    bootstrap: String,
    timeout: Duration,
    /// `sasl.username`, for the message of a refused password.
    user: Option<String>,
}

impl Admin {
    /// Creates the client; nothing is sent to the cluster until a request.
    pub fn new(config: &KafkaConfig) -> Result<Self, AdminError> {
        let mut client_config = super::client_config(config);
        // librdkafka lets a producer-type handle, which an admin handle is,
        // ask the broker to auto-create topics it requests metadata for.
        // Describing a missing topic must never create it.
        client_config.set("allow.auto.create.topics", "false");
        let client = client_config
            .create_native_config()
            .and_then(|native| {
                Client::new(
                    &client_config,
                    native,
                    RDKafkaType::RD_KAFKA_PRODUCER,
                    DefaultClientContext,
                )
            })
            .map_err(|e| AdminError::Client {
                message: e.to_string(),
            })?;
        Ok(Self {
            client: Arc::new(client),
            bootstrap: config.bootstrap_servers.clone(),
            timeout: config.admin_timeout,
            user: config.properties.get("sasl.username").map(str::to_string),
        })
    }

    /// The bootstrap servers this client talks to.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The bound on each request (`kafka.admin_timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The observed state of `topics`: which exist, their partitions,
    /// replication factor and configs. A missing topic is simply absent from
    /// the result.
    pub async fn describe(&self, topics: &[&str]) -> Result<Cluster, AdminError> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        self.blocking(move |admin| admin.describe_blocking(&topics))
            .await
    }

    /// Creates `spec`'s topic with its partitions, replication factor and
    /// configs, and returns once the topic exists.
    pub async fn create_topic(&self, spec: &TopicSpec) -> Result<(), AdminError> {
        let spec = spec.clone();
        self.blocking(move |admin| {
            let configs: Vec<(&str, &str)> = spec
                .configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let partitions = i32::try_from(spec.partitions).unwrap_or(i32::MAX);
            let replication_factor = spec.replication_factor.map_or(-1, i32::from);
            native::create_topic(
                &admin.client,
                &spec.name,
                partitions,
                replication_factor,
                &configs,
                admin.timeout,
            )
            .map_err(|e| admin.classify(format!("creating topic `{}`", spec.name), e))
        })
        .await
    }

    /// Raises the partition count of `topic` to `total`.
    pub async fn create_partitions(&self, topic: &str, total: u32) -> Result<(), AdminError> {
        let topic = topic.to_string();
        self.blocking(move |admin| {
            native::create_partitions(&admin.client, &topic, total as usize, admin.timeout)
                .map_err(|e| admin.classify(format!("adding partitions to topic `{topic}`"), e))
        })
        .await
    }

    /// Sets `configs` on `topic`, leaving every other config of the topic as
    /// it is (IncrementalAlterConfigs, see the module documentation).
    pub async fn set_topic_configs(
        &self,
        topic: &str,
        configs: &[(String, String)],
    ) -> Result<(), AdminError> {
        let topic = topic.to_string();
        let configs = configs.to_vec();
        self.blocking(move |admin| {
            let configs: Vec<(&str, &str)> = configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            native::set_topic_configs(&admin.client, &topic, &configs, admin.timeout)
                .map_err(|e| admin.classify(format!("altering the configs of topic `{topic}`"), e))
        })
        .await
    }

    /// Runs librdkafka's blocking calls off the async runtime's threads.
    async fn blocking<T, F>(&self, work: F) -> Result<T, AdminError>
    where
        T: Send + 'static,
        F: FnOnce(&Admin) -> Result<T, AdminError> + Send + 'static,
    {
        let admin = self.clone();
        tokio::task::spawn_blocking(move || work(&admin))
            .await
            .expect("admin requests do not panic and the runtime outlives them")
    }

    fn describe_blocking(&self, topics: &[String]) -> Result<Cluster, AdminError> {
        let mut cluster = Cluster::default();
        for topic in topics {
            // One metadata request per topic: a request for all topics would
            // silently leave out those hookline may not describe, which
            // would then look missing instead of denied.
            let metadata = self.fetch_metadata(topic)?;
            cluster.brokers = metadata.brokers().len();
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                continue;
            };
            let partitions = found.partitions();
            match found.error().map(RDKafkaErrorCode::from) {
                None => {}
                // A topic that is still being created may have no leaders
                // yet; it exists once it has partitions.
                Some(RDKafkaErrorCode::LeaderNotAvailable) if !partitions.is_empty() => {}
                Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                | Some(RDKafkaErrorCode::UnknownTopic)
                | Some(RDKafkaErrorCode::LeaderNotAvailable) => continue,
                Some(code) => {
                    return Err(self.classify(
                        format!("describing topic `{topic}`"),
                        NativeError {
                            code,
                            message: code.to_string(),
                        },
                    ));
                }
            }
            let replication_factor = partitions
                .iter()
                .map(|p| p.replicas().len())
                .min()
                .unwrap_or(0);
            cluster.topics.insert(
                topic.clone(),
                ObservedTopic {
                    partitions: u32::try_from(partitions.len()).unwrap_or(u32::MAX),
                    replication_factor: u16::try_from(replication_factor).unwrap_or(u16::MAX),
                    configs: BTreeMap::new(),
                },
            );
        }

        let existing: Vec<String> = cluster.topics.keys().cloned().collect();
        let described = native::describe_topic_configs(&self.client, &existing, self.timeout)
            .map_err(|e| self.classify("reading topic configs".into(), e))?;
        for (topic, result) in described {
            let entries = result
                .map_err(|e| self.classify(format!("reading the configs of topic `{topic}`"), e))?;
            let Some(observed) = cluster.topics.get_mut(&topic) else {
                continue;
            };
            observed.configs = entries
                .into_iter()
                .filter_map(|entry| {
                    // Sensitive configs have no readable value; they can be
                    // neither compared nor shown.
                    let value = entry.value?;
                    let config = ObservedConfig {
                        value,
                        set_on_topic: entry.set_on_topic,
                    };
                    Some((entry.name, config))
                })
                .collect();
        }
        Ok(cluster)
    }

    /// The metadata of `topic`, within the admin timeout. The request is
    /// made in slices, looking at the client's errors after each: a refused
    /// password or a failed TLS handshake ends the wait at once, since
    /// librdkafka would only keep reconnecting until the timeout.
    fn fetch_metadata(&self, topic: &str) -> Result<rdkafka::metadata::Metadata, AdminError> {
        let deadline = Instant::now() + self.timeout;
        let mut client_errors = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let error = match self
                .client
                .fetch_metadata(Some(topic), left.min(METADATA_SLICE))
            {
                Ok(metadata) => return Ok(metadata),
                Err(error) => error,
            };
            client_errors.extend(native::drain_client_errors(&self.client));
            if let Some(failure) = client_errors
                .iter()
                .find_map(|e| connection::classify(e.code, &e.message, self.user.as_deref()))
            {
                return Err(failure.into());
            }
            let waiting = matches!(error, KafkaError::MetadataFetch(code) if connection::still_connecting(code));
            if !waiting || Instant::now() >= deadline {
                return Err(self.metadata_error(topic, error, client_errors));
            }
        }
    }

    /// A failed metadata request is how an unreachable cluster shows; the
    /// client's queued errors say why (refused connection, failed TLS or
    /// SASL handshake).
    fn metadata_error(
        &self,
        topic: &str,
        error: KafkaError,
        client_errors: Vec<NativeError>,
    ) -> AdminError {
        let code = match error {
            KafkaError::MetadataFetch(code) => code,
            other => {
                return AdminError::Failed {
                    operation: format!("describing topic `{topic}`"),
                    message: other.to_string(),
                };
            }
        };
        if let Some(denied) = client_errors.iter().find(|e| is_denied(e.code)) {
            return AdminError::Denied {
                operation: "the connection".into(),
                message: denied.message.clone(),
            };
        }
        if is_unreachable(code) || code == RDKafkaErrorCode::OperationTimedOut {
            // "All brokers are down" only repeats what the message says;
            // the connection errors before it tell why.
            let cause = client_errors
                .iter()
                .find(|e| e.code != RDKafkaErrorCode::AllBrokersDown)
                .map(|e| e.message.clone());
            return AdminError::Unreachable {
                bootstrap: self.bootstrap.clone(),
                timeout: self.timeout,
                cause,
            };
        }
        self.classify(
            format!("describing topic `{topic}`"),
            NativeError {
                code,
                message: code.to_string(),
            },
        )
    }

    fn classify(&self, operation: String, error: NativeError) -> AdminError {
        classify(&self.bootstrap, self.timeout, operation, error)
    }
}

/// Sorts a failed request into an [`AdminError`] by its error code.
fn classify(
    bootstrap: &str,
    timeout: Duration,
    operation: String,
    error: NativeError,
) -> AdminError {
    if is_denied(error.code) {
        AdminError::Denied {
            operation,
            message: error.message,
        }
    } else if is_unreachable(error.code) {
        AdminError::Unreachable {
            bootstrap: bootstrap.to_string(),
            timeout,
            cause: Some(error.message),
        }
    } else if matches!(
        error.code,
        RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::TimedOutQueue
    ) {
        AdminError::TimedOut { operation, timeout }
    } else {
        AdminError::Failed {
            operation,
            message: error.message,
        }
    }
}

fn is_denied(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::DelegationTokenAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
    )
}

fn is_unreachable(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(code: RDKafkaErrorCode, message: &str) -> AdminError {
        classify(
            "k1:9092",
            Duration::from_secs(10),
            "creating topic `events`".into(),
            NativeError {
                code,
                message: message.into(),
            },
        )
    }

    #[test]
    fn authorization_and_authentication_failures_are_denied() {
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::Authentication,
        ] {
            let error = classified(code, "Authorization failed.");
            assert!(
                matches!(error, AdminError::Denied { .. }),
                "{code:?}: {error:?}"
            );
            assert_eq!(
                error.to_string(),
                "Kafka denied creating topic `events`: Authorization failed. \
                 (check the credentials and ACLs of hookline's principal)"
            );
        }
    }

    #[test]
    fn transport_failures_are_unreachable() {
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::Resolve,
        ] {
            let error = classified(code, "Connection refused");
            assert!(matches!(error, AdminError::Unreachable { .. }), "{code:?}");
            assert_eq!(
                error.to_string(),
                "cannot reach Kafka at k1:9092 within 10s (Connection refused)"
            );
        }
    }

    #[test]
    fn unreachable_without_a_cause_says_only_that() {
        let error = AdminError::Unreachable {
            bootstrap: "k1:9092".into(),
            timeout: Duration::from_millis(2500),
            cause: None,
        };
        assert_eq!(
            error.to_string(),
            "cannot reach Kafka at k1:9092 within 2s 500ms"
        );
    }

    #[test]
    fn timeouts_of_a_reachable_cluster_are_timeouts() {
        for code in [
            RDKafkaErrorCode::OperationTimedOut,
            RDKafkaErrorCode::RequestTimedOut,
        ] {
            let error = classified(code, "timed out");
            assert_eq!(
                error.to_string(),
                "creating topic `events`: no answer from Kafka within 10s"
            );
        }
    }

    #[test]
    fn refusals_keep_the_broker_reason() {
        let error = classified(
            RDKafkaErrorCode::InvalidReplicationFactor,
            "Replication factor: 2 larger than available brokers: 1.",
        );
        assert!(matches!(error, AdminError::Failed { .. }));
        assert_eq!(
            error.to_string(),
            "creating topic `events` failed: Replication factor: 2 larger than available brokers: 1."
        );
    }
}
