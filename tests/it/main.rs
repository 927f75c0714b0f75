//! The one integration-test binary. Every test talks to the real Kafka broker
//! that `make up` (testcontainers/kafka.sh) starts, with topics and a
//! consumer group of its own, so tests run in parallel against one broker. The
//! demo test is the exception: `hookline demo` brings its own embedded cluster.

mod support;

mod api;
mod avro;
mod avro_delivery;
mod cli;
mod delivery;
mod demo;
mod dlq;
mod endpoints;
mod hostile;
mod kafka_roundtrip;
mod key_order;
mod outage;
mod process;
mod rebalance;
mod recover_api;
mod resume;
mod rotation;
mod secure_kafka;
mod security;
mod setup_topics;
mod soak;
mod telemetry;
mod tenants;
mod trace_context;
mod transactional_dlq;
