//! hookline: Kafka-native, multi-tenant webhook delivery.
//!
//! Providers produce events to Kafka, keyed by tenant id; hookline delivers
//! each one to its tenant's URL, encrypted for that tenant alone (JWE),
//! signed (Standard Webhooks), in order per tenant with blocking backoff (a
//! failing tenant holds back no other), dead-lettering what cannot be
//! delivered, never committing an offset before the event's outcome is
//! durable.
//!
//! # Layout
//! - [`api`]: the tenant self-service HTTP API (`hookline api`): tenants,
//!   API keys and event ingestion over HTTP, every write a Kafka record.
//! - [`cli`]: clap definitions of the command line.
//! - [`commands`]: one module per command, wiring the components below from
//!   flags and configuration; no other module imports it.
//! - [`config`]: layered configuration, validated into [`config::Config`].
//! - [`crypto`]: keys, JWE encryption and Standard Webhooks signatures; the
//!   only module that imports crypto crates.
//! - [`delivery`]: the replica (`runner`), a driver per partition with its
//!   key-ordered scheduler, the task that carries one record to its outcome,
//!   the HTTP client with the destination guard, the retry policy, and dead
//!   letters (reasons and headers, and their writer).
//! - [`demo`]: `hookline demo`, the whole flow in one process on an
//!   embedded mock cluster, driving the real replica.
//! - [`error`]: an error and its causes on one line, for every layer.
//! - [`events`]: decoding Kafka records (JSON, or Avro through the schema
//!   registry) into one [`events::Event`] type, and the timestamp form
//!   hookline writes.
//! - [`kafka`]: Kafka clients; the only module that imports rdkafka.
//! - [`receiver`]: verify-then-decrypt of a webhook request, embeddable by
//!   customers, and the HTTP endpoint around it (`hookline receive`, the
//!   demo's receivers).
//! - [`recovery`]: bringing dead letters back: the filter, the replay to
//!   the events topic (remembered per filter in a consumer group), and the
//!   dead-letter statistics.
//! - [`schema_registry`]: the Confluent-compatible schema registry client:
//!   Avro writer schemas by id, and registering the event schema.
//! - [`telemetry`]: log setup, metrics (names and recording in one place),
//!   and the `/metrics`, `/healthz`, `/readyz` listener.
//! - [`tenants`]: the tenant record and its validation, event-type
//!   patterns, and the tenant table, restored from the compacted `tenants`
//!   topic and then followed (`sync`).
//! - [`topology`]: the topology file, the pure plan that reconciles a
//!   cluster with it, and the readiness check of `run`.
//!
//! `ARCHITECTURE.md` at the repository root describes how the pieces fit
//! and the invariants they keep.

pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod demo;
pub mod error;
pub mod events;
pub mod kafka;
pub mod receiver;
pub mod recovery;
pub mod schema_registry;
pub mod telemetry;
pub mod tenants;
pub mod topology;
