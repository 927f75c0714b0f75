//! Dead letters counted by tenant and reason, with the oldest and newest of
//! each: what `dlq stats` shows, and what a replay replayed. Pure.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::letter::LetterInfo;
use crate::delivery::dead_letter::DlqReason;

/// A tenant and a reason; either may be unknown (a dead letter without a
/// key, or a record that hookline did not write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterKey {
    pub tenant: Option<String>,
    pub reason: Option<DlqReason>,
}

impl Ord for LetterKey {
    /// By tenant, then by reason as written (`rejected` before
    /// `retries_exhausted`); unknown ones first.
    fn cmp(&self, other: &Self) -> Ordering {
        let reason = |key: &Self| key.reason.map(DlqReason::as_str);
        self.tenant
            .cmp(&other.tenant)
            .then_with(|| reason(self).cmp(&reason(other)))
    }
}

impl PartialOrd for LetterKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// How many dead letters, and the timestamps of the oldest and the newest
/// (milliseconds since the Unix epoch; `None` when none had a timestamp).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
}

impl Tally {
    fn add(&mut self, timestamp_ms: Option<i64>) {
        self.count += 1;
        if let Some(at) = timestamp_ms {
            self.widen(at);
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.count += other.count;
        for at in [other.oldest_ms, other.newest_ms].into_iter().flatten() {
            self.widen(at);
        }
    }

    /// Makes the oldest and newest span `at`.
    fn widen(&mut self, at: i64) {
        self.oldest_ms = Some(self.oldest_ms.map_or(at, |oldest| oldest.min(at)));
        self.newest_ms = Some(self.newest_ms.map_or(at, |newest| newest.max(at)));
    }
}

/// Tallies by tenant and reason, in that order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tallies {
    by_key: BTreeMap<LetterKey, Tally>,
}

impl Tallies {
    pub fn add(&mut self, letter: &LetterInfo<'_>) {
        let key = LetterKey {
            tenant: letter.tenant.map(str::to_string),
            reason: letter.reason,
        };
        self.by_key.entry(key).or_default().add(letter.timestamp_ms);
    }

    /// Each tenant and reason with its tally, sorted by tenant, then reason.
    pub fn iter(&self) -> impl Iterator<Item = (&LetterKey, &Tally)> {
        self.by_key.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// All of them together.
    pub fn total(&self) -> Tally {
        self.by_key
            .values()
            .fold(Tally::default(), |mut total, tally| {
                total.merge(tally);
                total
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(tenant: Option<&str>, reason: Option<DlqReason>, at: Option<i64>) -> LetterInfo<'_> {
        LetterInfo {
            tenant,
            reason,
            timestamp_ms: at,
        }
    }

    #[test]
    fn counts_oldest_and_newest_per_tenant_and_reason_sorted() {
        let mut tallies = Tallies::default();
        let suspended = Some(DlqReason::TenantSuspended);
        let exhausted = Some(DlqReason::RetriesExhausted);
        let rejected = Some(DlqReason::Rejected);
        for letter in [
            info(Some("globex"), rejected, Some(50)),
            info(Some("acme"), suspended, Some(30)),
            info(Some("acme"), exhausted, Some(20)),
            info(Some("acme"), suspended, Some(10)),
            info(Some("acme"), suspended, Some(40)),
            info(None, Some(DlqReason::InvalidEvent), None),
        ] {
            tallies.add(&letter);
        }
        let rows: Vec<(Option<&str>, Option<&str>, Tally)> = tallies
            .iter()
            .map(|(key, tally)| {
                (
                    key.tenant.as_deref(),
                    key.reason.map(DlqReason::as_str),
                    *tally,
                )
            })
            .collect();
        let tally = |count, oldest, newest| Tally {
            count,
            oldest_ms: oldest,
            newest_ms: newest,
        };
        assert_eq!(
            rows,
            [
                (None, Some("invalid_event"), tally(1, None, None)),
                (
                    Some("acme"),
                    Some("retries_exhausted"),
                    tally(1, Some(20), Some(20))
                ),
                (
                    Some("acme"),
                    Some("tenant_suspended"),
                    tally(3, Some(10), Some(40))
                ),
                (
                    Some("globex"),
                    Some("rejected"),
                    tally(1, Some(50), Some(50))
                ),
            ]
        );
        assert_eq!(tallies.total(), tally(6, Some(10), Some(50)));
    }

    #[test]
    fn nothing_counted_is_empty_with_a_zero_total() {
        let tallies = Tallies::default();
        assert!(tallies.is_empty());
        assert_eq!(tallies.total(), Tally::default());
    }
}
