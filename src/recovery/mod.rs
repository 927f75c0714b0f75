//! Bringing dead letters back: which ones (`filter`), what a replayed
//! record looks like (`letter`), how far a replay got (`positions`), the
//! replay itself (`replay`) and the statistics of the dead-letter topic
//! (`stats`), counted by tenant and reason (`tally`).
//!
//! `filter`, `letter`, `positions` and `tally` are pure and tested without
//! a broker; `replay` and `stats` read and write through `kafka` only. The
//! commands (`hookline dlq replay`, `hookline dlq stats`) wire flags to
//! them and print; the tenant API's recovery route calls the same engine.

pub mod filter;
pub mod letter;
pub mod positions;
pub mod replay;
pub mod resume;
pub mod stats;
pub mod tally;

pub use filter::{DeadLetterFilter, FilterError, TimeBound, Verdict};
pub use replay::{Progress, ReplayError, ReplayOptions, ReplaySummary, ReplayTopics, replay};
pub use resume::{ResumeError, ResumeProgress, ResumeSummary, resume};
pub use stats::{DeadLetterStats, dead_letter_stats};
pub use tally::{LetterKey, Tallies, Tally};
