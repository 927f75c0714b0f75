//! Kafka clients. **The only module that imports rdkafka**: the rest of the
//! crate sees hookline's own types, so it can be tested without a broker
//! and the client library stays an implementation detail.
//!
//! - [`admin`]: observes and changes topics, for `setup-topics` and the
//!   start-up check of `run`.
//! - [`connection`]: connections refused for their credentials or TLS
//!   settings, told apart from an unreachable cluster.
//! - [`group`]: the events consumer: group membership, per-partition
//!   queues, offsets stored only when told.
//! - [`mock`]: librdkafka's in-process mock cluster, for `hookline demo`.
//! - [`producer`]: writes that wait for the broker's acknowledgement, one
//!   at a time or many in flight in a given order.
//! - [`range_reader`]: a topic read from a group's committed offsets (or
//!   the beginning) to the high watermarks, committing only when told; the
//!   dead-letter replay and statistics.
//! - [`record`]: a record of the events topic, owned.
//! - [`table_reader`]: a compacted topic read whole, then followed.
//! - [`transactional`]: a dead letter and its source offset committed in
//!   one transaction, fenced by the consumer group.

pub mod admin;
pub mod connection;
pub mod group;
pub mod mock;
pub mod producer;
pub mod range_reader;
mod reading;
pub mod record;
pub mod table_reader;
pub mod transactional;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Properties that name where TLS finds the CA certificates it trusts.
const CA_PROPERTIES: &[&str] = &["ssl.ca.location", "ssl.ca.pem"];

/// The librdkafka configuration every client starts from: the bootstrap
/// servers and the pass-through properties (security, client id, ...).
/// Each kind of client adds its own properties on top.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    // OpenSSL is linked into the binary, so its built-in certificate paths
    // point into the build directory, not at the system's CA bundle: unless
    // told otherwise, librdkafka looks in the usual places of the system.
    if CA_PROPERTIES
        .iter()
        .all(|p| config.properties.get(p).is_none())
    {
        client.set("ssl.ca.location", "probe");
    }
    for (key, value) in config.properties.iter() {
        client.set(key, value);
    }
    // Config::validate refuses `bootstrap.servers` among the properties, so
    // the configured servers are the only ones.
    client.set("bootstrap.servers", &config.bootstrap_servers);
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    #[test]
    fn client_config_carries_servers_and_properties() {
        let env = [
            (
                "HOOKLINE__KAFKA__BOOTSTRAP_SERVERS".to_string(),
                "k1:9092,k2:9092".to_string(),
            ),
            (
                "HOOKLINE__KAFKA__PROPERTIES__CLIENT.ID".to_string(),
                "hookline-test".to_string(),
            ),
        ];
        let config = Config::load_from(None, env, &Overrides::default()).unwrap();
        let client = client_config(&config.kafka);
        assert_eq!(client.get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(client.get("client.id"), Some("hookline-test"));
        assert_eq!(client.get("ssl.ca.location"), Some("probe"));
    }

    #[test]
    fn a_configured_ca_replaces_the_probe() {
        let env = [(
            "HOOKLINE__KAFKA__PROPERTIES__SSL.CA.LOCATION".to_string(),
            "/etc/kafka/ca.pem".to_string(),
        )];
        let config = Config::load_from(None, env, &Overrides::default()).unwrap();
        let client = client_config(&config.kafka);
        assert_eq!(client.get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
    }

    /// The build links librdkafka with its TLS and compression libraries
    /// built from source; a change of features that dropped one would only
    /// show against a cluster that needs it.
    #[test]
    fn librdkafka_is_built_with_tls_sasl_and_compression() {
        let native = ClientConfig::new().create_native_config().unwrap();
        let features = native.get("builtin.features").unwrap();
        let features: Vec<&str> = features.split(',').collect();
        for wanted in [
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "gzip",
            "snappy",
            "lz4",
            "zstd",
        ] {
            assert!(
                features.contains(&wanted),
                "{wanted} missing from {features:?}"
            );
        }
    }
}
