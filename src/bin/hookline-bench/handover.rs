//! Pure helpers of the rebalance runs: which partitions each replica owned
//! (from its log), which partitions moved in a rebalance, when each moved
//! partition delivered again, and what was delivered twice. No I/O here, so
//! they are unit-tested.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::stats::log_field;

/// A change of one replica's assignment, as its log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `partition assigned partition=3`
    Assigned(i32),
    /// `partitions revoked partitions=[0, 3] lost=false`
    Revoked { partitions: Vec<i32>, lost: bool },
}

/// The change a text log line tells and when it was logged (Unix
/// nanoseconds, from the line's leading RFC 3339 timestamp); `None` for
/// every other line.
pub fn log_change(line: &str) -> Option<(u128, Change)> {
    let change = if line.contains("partition assigned") {
        Change::Assigned(i32::try_from(log_field(line, "partition")?).ok()?)
    } else if line.contains("partitions revoked") {
        let list = line.split_once("partitions=[")?.1.split_once(']')?.0;
        let partitions = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<i32>, _>>()
            .ok()?;
        Change::Revoked {
            partitions,
            lost: line.contains("lost=true"),
        }
    } else {
        return None;
    };
    let stamp = line.split_whitespace().next()?;
    let at = OffsetDateTime::parse(stamp, &Rfc3339).ok()?;
    Some((u128::try_from(at.unix_timestamp_nanos()).ok()?, change))
}

/// Every assignment change in a replica's log, in the order logged.
pub fn changes(log: &str) -> Vec<(u128, Change)> {
    log.lines().filter_map(log_change).collect()
}

/// The partitions a replica owned at `at_ns`: its changes up to then,
/// replayed.
pub fn owned_at(changes: &[(u128, Change)], at_ns: u128) -> BTreeSet<i32> {
    let mut owned = BTreeSet::new();
    for (at, change) in changes {
        if *at > at_ns {
            break;
        }
        match change {
            Change::Assigned(p) => {
                owned.insert(*p);
            }
            Change::Revoked { partitions, .. } => {
                for p in partitions {
                    owned.remove(p);
                }
            }
        }
    }
    owned
}

/// Which member owns which partitions.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// The members owning each partition.
fn owners(assignment: &Assignment) -> BTreeMap<i32, Vec<&str>> {
    let mut owners: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    for (member, partitions) in assignment {
        for p in partitions {
            owners.entry(*p).or_default().push(member);
        }
    }
    owners
}

/// Whether each of partitions `0..partitions` has exactly one owner, and
/// nothing else is owned.
pub fn complete(assignment: &Assignment, partitions: i32) -> bool {
    let owners = owners(assignment);
    owners.len() == usize::try_from(partitions).unwrap_or(0)
        && owners
            .iter()
            .all(|(p, members)| (0..partitions).contains(p) && members.len() == 1)
}

/// The partitions whose owner differs between two assignments (owned by
/// someone else, or by nobody on one side).
pub fn moved(before: &Assignment, after: &Assignment) -> BTreeSet<i32> {
    let (before, after) = (owners(before), owners(after));
    before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(p) != after.get(p))
        .copied()
        .collect()
}

/// How many partitions were revoked in `[from_ns, to_ns]`, by the changes
/// of one replica.
pub fn revoked_between(changes: &[(u128, Change)], from_ns: u128, to_ns: u128) -> usize {
    changes
        .iter()
        .filter(|(at, _)| (from_ns..=to_ns).contains(at))
        .map(|(_, change)| match change {
            Change::Revoked { partitions, .. } => partitions.len(),
            Change::Assigned(_) => 0,
        })
        .sum()
}

/// When `partition` was last assigned to a replica in `[from_ns, to_ns]`.
pub fn assigned_at(
    changes: &[(u128, Change)],
    partition: i32,
    from_ns: u128,
    to_ns: u128,
) -> Option<u128> {
    changes
        .iter()
        .filter(|(at, change)| {
            (from_ns..=to_ns).contains(at) && *change == Change::Assigned(partition)
        })
        .map(|(at, _)| *at)
        .next_back()
}

/// How a moved partition came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Recovery {
    /// From the event (the start, the SIGTERM, the kill) to the partition's
    /// first delivery by its new owner.
    pub after_event_us: u64,
    /// From the partition's last delivery by its old owner to the first by
    /// its new one: how long its tenants heard nothing.
    pub pause_us: u64,
}

/// When a moved partition delivered again: its first arrival at or after
/// `assigned_ns`, when its new owner got it (the old owner has drained, or
/// is dead, by then), measured from `event_ns`. `arrivals` are the
/// partition's arrival times (Unix ns), sorted. `None` while nothing
/// arrived since.
pub fn recovery(arrivals: &[u128], assigned_ns: u128, event_ns: u128) -> Option<Recovery> {
    let first = arrivals.partition_point(|&at| at < assigned_ns);
    let resumed = *arrivals.get(first)?;
    let last_before = first
        .checked_sub(1)
        .map_or(event_ns, |i| arrivals[i])
        .min(resumed);
    let us = |ns: u128| u64::try_from(ns / 1000).unwrap_or(u64::MAX);
    Some(Recovery {
        after_event_us: us(resumed.saturating_sub(event_ns)),
        pause_us: us(resumed - last_before),
    })
}

/// Deliveries arriving in `[from_ns, to_ns)` of events that had already
/// arrived before: `arrivals` are (event sequence number, arrival time),
/// in any order.
pub fn redelivered(arrivals: &[(u64, u128)], from_ns: u128, to_ns: u128) -> u64 {
    let mut sorted = arrivals.to_vec();
    sorted.sort_unstable_by_key(|&(seq, at)| (at, seq));
    let mut seen = HashSet::new();
    let mut again = 0;
    for (seq, at) in sorted {
        if at >= to_ns {
            break;
        }
        if !seen.insert(seq) && at >= from_ns {
            again += 1;
        }
    }
    again
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u128 = 1_764_524_400_000_000_000; // 2025-11-30T17:40:00Z

    fn assignment(members: &[(&str, &[i32])]) -> Assignment {
        members
            .iter()
            .map(|(m, ps)| (m.to_string(), ps.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn log_lines_tell_assignments_and_revocations_with_their_time() {
        let assigned = "2025-11-30T17:40:00.250000Z  INFO hookline::delivery::runner: \
                        partition assigned partition=7";
        assert_eq!(
            log_change(assigned),
            Some((T0 + 250_000_000, Change::Assigned(7)))
        );
        let revoked = "2025-11-30T17:40:01.000001Z  INFO hookline::delivery::runner: \
                       partitions revoked partitions=[0, 3, 11] lost=true";
        assert_eq!(
            log_change(revoked),
            Some((
                T0 + 1_000_001_000,
                Change::Revoked {
                    partitions: vec![0, 3, 11],
                    lost: true
                }
            ))
        );
        let other = "2025-11-30T17:40:00.1Z  INFO hookline::delivery::runner: replica started";
        assert_eq!(log_change(other), None);
        assert_eq!(log_change("partition assigned partition=1"), None);
    }

    #[test]
    fn ownership_replays_the_log_up_to_a_moment() {
        let log = "2025-11-30T17:40:00Z  INFO x: partition assigned partition=1\n\
                   2025-11-30T17:40:00Z  INFO x: partition assigned partition=2\n\
                   2025-11-30T17:40:00Z  INFO x: replica started\n\
                   2025-11-30T17:40:05Z  INFO x: partitions revoked partitions=[1] lost=false\n\
                   2025-11-30T17:40:09Z  INFO x: partition assigned partition=4\n";
        let changes = changes(log);
        assert_eq!(changes.len(), 4);
        assert_eq!(owned_at(&changes, T0), BTreeSet::from([1, 2]));
        assert_eq!(owned_at(&changes, T0 + 6_000_000_000), BTreeSet::from([2]));
        assert_eq!(
            owned_at(&changes, T0 + 10_000_000_000),
            BTreeSet::from([2, 4])
        );
        assert_eq!(revoked_between(&changes, T0 + 1, T0 + 9_000_000_000), 1);
        assert_eq!(revoked_between(&changes, T0 + 6_000_000_000, u128::MAX), 0);
        assert_eq!(
            assigned_at(&changes, 4, T0 + 1, u128::MAX),
            Some(T0 + 9_000_000_000)
        );
        assert_eq!(assigned_at(&changes, 1, T0 + 1, u128::MAX), None);
    }

    #[test]
    fn a_join_moves_only_what_the_newcomer_gets() {
        let before = assignment(&[("a", &[0, 1, 2]), ("b", &[3, 4, 5])]);
        let after = assignment(&[("a", &[0, 1]), ("b", &[3, 4]), ("c", &[2, 5])]);
        assert_eq!(moved(&before, &after), BTreeSet::from([2, 5]));
        assert!(complete(&after, 6));
        // An eager reshuffle moves more than the newcomer's share.
        let shuffled = assignment(&[("a", &[0, 3]), ("b", &[1, 4]), ("c", &[2, 5])]);
        assert_eq!(moved(&before, &shuffled), BTreeSet::from([1, 2, 3, 5]));
    }

    #[test]
    fn a_departure_moves_the_partitions_left_behind() {
        let before = assignment(&[("a", &[0, 1, 2]), ("b", &[3, 4, 5])]);
        let during = assignment(&[("b", &[3, 4, 5])]);
        assert!(!complete(&during, 6));
        assert_eq!(moved(&before, &during), BTreeSet::from([0, 1, 2]));
        let after = assignment(&[("b", &[0, 1, 2, 3, 4, 5])]);
        assert_eq!(moved(&before, &after), BTreeSet::from([0, 1, 2]));
    }

    #[test]
    fn an_assignment_is_complete_with_one_owner_per_partition() {
        assert!(complete(&assignment(&[("a", &[0, 1]), ("b", &[2])]), 3));
        assert!(!complete(&assignment(&[("a", &[0, 1]), ("b", &[1, 2])]), 3));
        assert!(!complete(&assignment(&[("a", &[0, 1, 2, 3])]), 3));
        assert!(!complete(&assignment(&[]), 3));
    }

    #[test]
    fn recovery_is_the_first_arrival_after_the_new_assignment() {
        let ms = |n: u128| T0 + n * 1_000_000;
        // Old owner delivers until 1.2 s after the event, new owner is
        // assigned at 2 s and delivers from 2.5 s.
        let arrivals = [ms(0), ms(600), ms(1200), ms(2500), ms(2600)];
        assert_eq!(
            recovery(&arrivals, ms(2000), ms(100)),
            Some(Recovery {
                after_event_us: 2_400_000,
                pause_us: 1_300_000
            })
        );
        // Nothing since the assignment yet.
        assert_eq!(recovery(&arrivals[..3], ms(2000), ms(100)), None);
        // Nothing before it: the pause counts from the event.
        assert_eq!(
            recovery(&arrivals[3..], ms(2000), ms(100)),
            Some(Recovery {
                after_event_us: 2_400_000,
                pause_us: 2_400_000
            })
        );
        assert_eq!(recovery(&[], ms(0), ms(0)), None);
    }

    #[test]
    fn redeliveries_are_repeats_arriving_in_the_window() {
        let arrivals = [
            (1, 10),
            (2, 20),
            (3, 30),
            (2, 40),
            (1, 50),
            (4, 60),
            (3, 70),
        ];
        assert_eq!(redelivered(&arrivals, 0, u128::MAX), 3);
        assert_eq!(redelivered(&arrivals, 45, 65), 1);
        assert_eq!(redelivered(&arrivals, 0, 45), 1);
        // A first arrival inside the window is not a repeat.
        assert_eq!(redelivered(&arrivals, 55, 65), 0);
        assert_eq!(redelivered(&[], 0, 1), 0);
    }
}
