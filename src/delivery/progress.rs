//! What a partition worker has in flight and what it has finished, and so
//! which offset may be stored.
//!
//! In partition order one record is in flight at a time and the answer is
//! trivial; the structure exists so that a key-ordered mode, with several
//! records of one partition in flight, only changes who calls it: the
//! offset to store is always just past the lowest record not yet finished.

use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct PartitionProgress {
    in_flight: BTreeSet<i64>,
    /// Finished offsets above the lowest one still in flight.
    finished_ahead: BTreeSet<i64>,
    /// The highest offset below which every started record has finished.
    done_through: Option<i64>,
}

impl PartitionProgress {
    pub fn new() -> Self {
        Self::default()
    }

    /// A record was taken from the queue and is being worked on.
    pub fn start(&mut self, offset: i64) {
        self.in_flight.insert(offset);
    }

    /// A record's outcome is durable. Returns the offset that may now be
    /// stored as done (every record up to it has finished), when that moved.
    pub fn finish(&mut self, offset: i64) -> Option<i64> {
        if !self.in_flight.remove(&offset) {
            return None;
        }
        self.finished_ahead.insert(offset);
        let lowest_in_flight = self.in_flight.first().copied();
        let before = self.done_through;
        while let Some(&first) = self.finished_ahead.first() {
            if lowest_in_flight.is_some_and(|low| low < first) {
                break;
            }
            self.finished_ahead.pop_first();
            self.done_through = Some(first);
        }
        (self.done_through != before)
            .then_some(self.done_through)
            .flatten()
    }

    /// Records started but not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time_each_finish_is_storable() {
        let mut p = PartitionProgress::new();
        for offset in 10..15 {
            p.start(offset);
            assert_eq!(p.finish(offset), Some(offset));
        }
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn a_later_finish_waits_for_the_lower_one() {
        let mut p = PartitionProgress::new();
        p.start(1);
        p.start(2);
        p.start(3);
        assert_eq!(p.finish(3), None, "1 and 2 are still in flight");
        assert_eq!(p.finish(2), None, "1 is still in flight");
        assert_eq!(p.finish(1), Some(3), "everything up to 3 is done");
    }

    #[test]
    fn gaps_in_offsets_do_not_block() {
        // Compaction and transaction markers leave gaps between offsets.
        let mut p = PartitionProgress::new();
        p.start(5);
        p.start(9);
        assert_eq!(p.finish(5), Some(5));
        assert_eq!(p.finish(9), Some(9));
    }

    #[test]
    fn finishing_an_offset_that_never_started_changes_nothing() {
        let mut p = PartitionProgress::new();
        p.start(1);
        assert_eq!(p.finish(7), None);
        assert_eq!(p.finish(1), Some(1));
        assert_eq!(p.finish(1), None, "finishing twice stores nothing new");
    }
}
