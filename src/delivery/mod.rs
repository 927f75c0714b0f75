//! Delivery: what happens to each event once it is decoded.
//!
//! Pure building blocks (no I/O, no clock, no random numbers): `scheduler`
//! decides which of a partition's records may be worked on and which
//! offset may be committed, `commit_metadata` encodes what the commit
//! carries besides the offset, `decision` decides about a record before
//! each attempt, `retry` decides what follows an attempt, `dead_letter`
//! names dead-letter reasons and renders their headers, `destination`
//! classifies addresses, `reconnect` spaces the tries at an unreachable
//! cluster, `pool` decides which hosts keep idle connections. The I/O around
//! them: `http` makes attempts,
//! `dead_letter::writer` writes to the DLQ (in a transaction with the source
//! offset when configured so), `fault` holds the test-only fault injection
//! points, `worker` carries one record to
//! its outcome, `partition` drives one partition (window, tasks, commits),
//! `source` adapts the group consumer's partitions to it, `runner` is the
//! replica.

pub mod commit_metadata;
pub mod dead_letter;
pub mod decision;
pub mod destination;
pub mod fault;
pub mod http;
pub mod partition;
pub mod pool;
pub mod reconnect;
pub mod retry;
pub mod runner;
pub mod scheduler;
pub mod source;
pub mod worker;

/// A record given up before its outcome was durable (the partition is
/// being taken away, or the process stops): it stays unfinished, and
/// whoever owns the partition next delivers it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;
