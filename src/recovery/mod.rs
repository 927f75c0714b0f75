//! Bringing dead letters back: which ones (`filter`), what a replayed
//! record looks like (`letter`), how far a replay got (`positions`), the
//! replay itself (`replay`), the statistics of the dead-letter topic
//! (`stats`), counted by tenant and reason (`tally`), and one tenant's dead
//! letters without their payloads (`listing`).
//!
//! `filter`, `letter`, `positions` and `tally` are pure and tested without
//! a broker, and so are the description and selection of `listing`;
//! `replay`, `stats` and `list_dead_letters` read and write through `kafka`
//! only. The commands (`hookline dlq replay`, `hookline dlq stats`) wire
//! flags to them and print; the tenant API's recovery route calls the same
//! engine with a filter limited to the tenant, and its dead-letter route
//! lists them.

pub mod filter;
pub mod letter;
pub mod listing;
pub mod positions;
pub mod replay;
pub mod resume;
pub mod stats;
pub mod tally;

pub use filter::{DeadLetterFilter, FilterError, TimeBound, Verdict};
pub use listing::{DeadLetterListing, ListedLetter, list_dead_letters};
pub use replay::{Progress, ReplayError, ReplayOptions, ReplaySummary, ReplayTopics, replay};
pub use resume::{ResumeError, ResumeProgress, ResumeSummary, resume};
pub use stats::{DeadLetterStats, dead_letter_stats};
pub use tally::{LetterKey, Tallies, Tally};
