//! The one integration-test binary. Every test talks to the real Kafka broker
//! that `make up` (testcontainers/kafka.sh) starts, with topics and a
//! consumer group of its own, so tests run in parallel against one broker.

mod support;

mod avro;
mod cli;
mod delivery;
mod kafka_roundtrip;
mod process;
mod setup_topics;
mod telemetry;
mod tenants;
