//! How far a replay may say it got in each dead-letter partition: the
//! offset it commits for its group. Pure.
//!
//! A replay commits, per partition, the offset past the last record it
//! read, but never past a replayed record whose write is not acknowledged
//! yet (or failed), nor past a record left for a later run (one newer than
//! an `--until` given as a duration). So a run stopped at any point, by an
//! error, a signal or a crash between two commits, is continued by the next
//! run of the same command without losing a dead letter; at worst a few
//! acknowledged ones after the last commit are replayed again.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

/// Each partition's position, from the ranges a run reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    partitions: BTreeMap<i32, Position>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    /// The offset last committed, or where the run started reading.
    committed: i64,
    /// Past the last record read and dealt with (passed over or sent).
    read_to: i64,
    /// Records sent and not acknowledged yet, in offset order.
    unacknowledged: VecDeque<i64>,
    /// The first record that this run does not finish: its write failed,
    /// or it was left for a later run. Nothing from it on is committed.
    stopped_at: Option<i64>,
}

impl Positions {
    /// Positions at the start of each range: nothing to commit yet.
    pub fn new(ranges: &BTreeMap<i32, Range<i64>>) -> Self {
        let partitions = ranges
            .iter()
            .map(|(&partition, range)| {
                let position = Position {
                    committed: range.start,
                    read_to: range.start,
                    unacknowledged: VecDeque::new(),
                    stopped_at: None,
                };
                (partition, position)
            })
            .collect();
        Self { partitions }
    }

    /// Whether `partition` stopped: its later records are left for a later
    /// run, which reads them again from the record it stopped at.
    pub fn is_stopped(&self, partition: i32) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|p| p.stopped_at.is_some())
    }

    /// The record at `offset` was read and needs nothing more (it does not
    /// match, or a dry run counted it).
    pub fn passed(&mut self, partition: i32, offset: i64) {
        self.position(partition).read_to = offset + 1;
    }

    /// The record at `offset` was sent; it counts once acknowledged.
    pub fn sent(&mut self, partition: i32, offset: i64) {
        let position = self.position(partition);
        position.read_to = offset + 1;
        position.unacknowledged.push_back(offset);
    }

    /// The record sent from `offset` was acknowledged.
    pub fn acknowledged(&mut self, partition: i32, offset: i64) {
        self.position(partition)
            .unacknowledged
            .retain(|&sent| sent != offset);
    }

    /// This run does not finish the record at `offset` (its write failed,
    /// or it is left for a later run): the partition's position stays at
    /// or below it.
    pub fn stop(&mut self, partition: i32, offset: i64) {
        let position = self.position(partition);
        position.unacknowledged.retain(|&sent| sent != offset);
        position.stopped_at = Some(position.stopped_at.map_or(offset, |at| at.min(offset)));
    }

    /// The offsets to commit now: per partition, past everything read but
    /// not past an unacknowledged or unfinished record; only partitions
    /// whose position moved since the last commit.
    pub fn committable(&self) -> BTreeMap<i32, i64> {
        self.partitions
            .iter()
            .filter_map(|(&partition, p)| {
                let offset = [p.unacknowledged.front().copied(), p.stopped_at]
                    .into_iter()
                    .flatten()
                    .fold(p.read_to, i64::min);
                (offset > p.committed).then_some((partition, offset))
            })
            .collect()
    }

    /// `offsets` were committed.
    pub fn committed(&mut self, offsets: &BTreeMap<i32, i64>) {
        for (&partition, &offset) in offsets {
            self.position(partition).committed = offset;
        }
    }

    fn position(&mut self, partition: i32) -> &mut Position {
        // A reader returns records of the partitions it was given ranges
        // for only; one it was not would start from its first record.
        self.partitions
            .entry(partition)
            .or_insert_with(|| Position {
                committed: 0,
                read_to: 0,
                unacknowledged: VecDeque::new(),
                stopped_at: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions() -> Positions {
        Positions::new(&BTreeMap::from([(0, 10..20), (1, 5..5), (2, 0..8)]))
    }

    #[test]
    fn nothing_read_is_nothing_to_commit() {
        assert!(positions().committable().is_empty());
    }

    #[test]
    fn records_passed_over_are_committed_past() {
        let mut p = positions();
        p.passed(0, 10);
        p.passed(0, 11);
        p.passed(2, 0);
        assert_eq!(p.committable(), BTreeMap::from([(0, 12), (2, 1)]));
        p.committed(&p.committable());
        assert!(p.committable().is_empty(), "only positions that moved");
        p.passed(0, 12);
        assert_eq!(p.committable(), BTreeMap::from([(0, 13)]));
    }

    #[test]
    fn a_sent_record_holds_the_position_until_acknowledged() {
        let mut p = positions();
        p.passed(0, 10);
        p.sent(0, 11);
        p.passed(0, 12);
        p.sent(0, 13);
        assert_eq!(p.committable(), BTreeMap::from([(0, 11)]));
        p.acknowledged(0, 11);
        assert_eq!(p.committable(), BTreeMap::from([(0, 13)]));
        p.acknowledged(0, 13);
        assert_eq!(p.committable(), BTreeMap::from([(0, 14)]));
    }

    #[test]
    fn a_failed_write_stops_its_partition_only() {
        let mut p = positions();
        p.sent(0, 10);
        p.sent(0, 11);
        p.sent(2, 0);
        p.sent(2, 1);
        p.acknowledged(0, 10);
        p.stop(0, 11);
        p.acknowledged(2, 0);
        p.acknowledged(2, 1);
        assert!(p.is_stopped(0));
        assert!(!p.is_stopped(2));
        assert_eq!(p.committable(), BTreeMap::from([(0, 11), (2, 2)]));
        // Records acknowledged after the failure do not move it either: the
        // next run starts at the failed one.
        p.sent(0, 12);
        p.acknowledged(0, 12);
        assert_eq!(p.committable(), BTreeMap::from([(0, 11), (2, 2)]));
    }

    #[test]
    fn a_failure_at_the_first_record_commits_nothing_there() {
        let mut p = positions();
        p.sent(0, 10);
        p.stop(0, 10);
        assert!(p.committable().is_empty());
    }

    #[test]
    fn a_record_left_for_later_is_read_again_by_the_next_run() {
        let mut p = positions();
        p.passed(2, 0);
        p.stop(2, 1);
        assert_eq!(p.committable(), BTreeMap::from([(2, 1)]));
        // An earlier stop wins over a later one.
        p.stop(2, 4);
        assert_eq!(p.committable(), BTreeMap::from([(2, 1)]));
    }
}
