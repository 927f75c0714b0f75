//! Delivery: what happens to each event once it is decoded.
//!
//! The modules here are pure building blocks: no I/O, no clock, no random
//! numbers. The worker that executes their decisions builds on them.

pub mod destination;
pub mod dlq;
pub mod retry;
