//! How long to wait before asking an unreachable Kafka cluster again.
//!
//! Pure: the caller sleeps. The wait doubles from one second to a cap of
//! thirty, so a replica started before its broker retries quickly at first
//! and then settles to a steady, cheap pace instead of exiting and relying
//! on a supervisor's crash loop.

use std::time::Duration;

/// The first wait.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);

/// The longest wait between two tries.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// A doubling wait, capped at [`MAX_WAIT`], with the number of tries made.
#[derive(Debug, Clone, Default)]
pub struct ReconnectBackoff {
    failures: u32,
}

impl ReconnectBackoff {
    /// Records one more failed try and returns how long to wait before the
    /// next one.
    pub fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        // 2^(failures-1) seconds, capped; the shift is bounded so it cannot
        // overflow however long the cluster stays away.
        let doublings = (self.failures - 1).min(16);
        FIRST_WAIT
            .checked_mul(1 << doublings)
            .map_or(MAX_WAIT, |wait| wait.min(MAX_WAIT))
    }

    /// How many tries have failed so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_one_second_up_to_the_cap() {
        let mut backoff = ReconnectBackoff::default();
        let waits: Vec<u64> = (0..8).map(|_| backoff.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff.failures(), 8);
    }

    #[test]
    fn the_wait_stays_capped_after_very_many_failures() {
        let mut backoff = ReconnectBackoff {
            failures: u32::MAX - 1,
        };
        assert_eq!(backoff.next_wait(), MAX_WAIT);
        assert_eq!(backoff.next_wait(), MAX_WAIT);
    }
}
