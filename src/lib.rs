//! hookline: Kafka-native, multi-tenant webhook delivery.
//!
//! Providers produce events to Kafka, keyed by tenant id; hookline delivers
//! each one to its tenant's URL, encrypted for that tenant alone (JWE),
//! signed (Standard Webhooks), in partition order with blocking backoff,
//! dead-lettering what cannot be delivered, never committing an offset
//! before the event's outcome is durable.
//!
//! # Layout
//! - [`cli`]: clap definitions of the command line.
//! - [`commands`]: one module per command; the only place that turns
//!   configuration and flags into running components.
//! - [`config`]: layered configuration, validated into [`config::Config`].
//! - [`delivery`]: retry policy, dead-letter records, destination guard.
//! - [`events`]: decoding Kafka records (JSON, or Avro through the schema
//!   registry) into one [`events::Event`] type.
//! - [`schema_registry`]: the Confluent-compatible schema registry client:
//!   Avro writer schemas by id, and registering the event schema.
//! - [`telemetry`]: log setup (and, later, metrics and health endpoints).
//! - [`tenants`]: tenant configuration, starting with event-type patterns.
//!
//! `ARCHITECTURE.md` at the repository root describes how the pieces fit
//! and the invariants they keep.

pub mod cli;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod events;
pub mod schema_registry;
pub mod telemetry;
pub mod tenants;
