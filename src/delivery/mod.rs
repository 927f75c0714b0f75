//! Delivery: what happens to each event once it is decoded.
//!
//! Pure building blocks (no I/O, no clock, no random numbers): `retry`
//! decides what follows an attempt, `dead_letter` names dead-letter reasons
//! and renders their headers, `destination` classifies addresses,
//! `progress` tracks which offset may be stored, `reconnect` spaces the
//! tries at an unreachable cluster. The I/O around them: `http` makes
//! attempts, `dead_letter::writer` writes to the DLQ, `worker` carries one
//! partition's records to their outcomes, `runner` is the replica.

pub mod commit_metadata;
pub mod dead_letter;
pub mod destination;
pub mod http;
pub mod partition;
pub mod progress;
pub mod reconnect;
pub mod retry;
pub mod runner;
pub mod scheduler;
pub mod worker;
