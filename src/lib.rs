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
//! - [`crypto`]: keys, JWE encryption and Standard Webhooks signatures; the
//!   only module that imports crypto crates.
//! - [`receiver`]: verify-then-decrypt of a webhook request, embeddable by
//!   customers.
//! - [`telemetry`]: log setup (and, later, metrics and health endpoints).
//!
//! `ARCHITECTURE.md` at the repository root describes how the pieces fit
//! and the invariants they keep.

pub mod cli;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod receiver;
pub mod telemetry;
