use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;

fn settings(lanes: Lanes) -> Settings {
    Settings::for_tests(lanes)
}

fn no_limit(_: &[u8]) -> Option<Duration> {
    None
}

/// Offsets of every job handed out now, in order.
fn drain_jobs(s: &mut Scheduler<()>, now: Instant) -> Vec<i64> {
    std::iter::from_fn(|| s.next_job(now, no_limit))
        .map(|j| j.offset)
        .collect()
}

#[test]
fn tenants_are_worked_on_concurrently_and_each_in_order() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    for (offset, key) in [(0, "a"), (1, "b"), (2, "a"), (3, "c"), (4, "b")] {
        assert_eq!(
            s.admit(offset, Some(key.as_bytes()), 10, ()),
            Admitted::Held
        );
    }
    assert_eq!(drain_jobs(&mut s, now), [0, 1, 3], "one per tenant");
    s.finish(1, Ending::Delivered, now);
    assert_eq!(drain_jobs(&mut s, now), [4], "b's next, a still busy");
    s.finish(0, Ending::Delivered, now);
    assert_eq!(drain_jobs(&mut s, now), [2]);
}

#[test]
fn partition_order_hands_out_one_record_at_a_time() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerPartition));
    for (offset, key) in [(0, "a"), (1, "b"), (2, "c")] {
        s.admit(offset, Some(key.as_bytes()), 10, ());
    }
    for offset in 0..3 {
        assert_eq!(drain_jobs(&mut s, now), [offset]);
        s.finish(offset, Ending::Delivered, now);
    }
    assert_eq!(s.committable(), Some(3));
}

#[test]
fn the_committable_offset_is_the_lowest_unfinished_record() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    for (offset, key) in [(10, "a"), (11, "b"), (12, "c")] {
        s.admit(offset, Some(key.as_bytes()), 1, ());
    }
    drain_jobs(&mut s, now);
    assert_eq!(s.committable(), Some(10));
    assert!(!s.finish(12, Ending::Delivered, now).committable_moved);
    assert!(!s.finish(11, Ending::Delivered, now).committable_moved);
    let checkpoint = s.checkpoint().unwrap();
    assert_eq!(checkpoint.offset, 10);
    assert_eq!(checkpoint.finished_above, [11, 12]);
    assert!(s.finish(10, Ending::Delivered, now).committable_moved);
    let checkpoint = s.checkpoint().unwrap();
    assert_eq!((checkpoint.offset, checkpoint.finished_above), (13, vec![]));
}

#[test]
fn nothing_is_committable_before_the_first_record() {
    let s: Scheduler<()> = Scheduler::new(settings(Lanes::PerKey));
    assert_eq!(s.committable(), None);
    assert!(s.checkpoint().is_none());
}

#[test]
fn records_finished_before_a_restart_are_passed_over() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    s.restore([6, 7], []);
    assert_eq!(s.admit(5, Some(b"a"), 1, ()), Admitted::Held);
    assert_eq!(s.admit(6, Some(b"b"), 1, ()), Admitted::AlreadyFinished);
    assert_eq!(s.admit(7, Some(b"a"), 1, ()), Admitted::AlreadyFinished);
    assert_eq!(s.admit(8, Some(b"a"), 1, ()), Admitted::Held);
    assert_eq!(drain_jobs(&mut s, now), [5]);
    assert_eq!(s.checkpoint().unwrap().finished_above, [6, 7]);
    s.finish(5, Ending::Delivered, now);
    assert_eq!(s.committable(), Some(8), "6 and 7 count as finished");
    assert_eq!(drain_jobs(&mut s, now), [8]);
}

#[test]
fn restored_offsets_that_never_arrive_are_forgotten() {
    let mut s: Scheduler<()> = Scheduler::new(settings(Lanes::PerKey));
    s.restore([3], []);
    assert_eq!(s.admit(9, Some(b"a"), 1, ()), Admitted::Held);
    assert!(s.finished_before.is_empty());
}

#[test]
fn the_window_bounds_the_span_of_offsets_held() {
    let now = Instant::now();
    let mut s = Scheduler::new(Settings {
        window: 3,
        ..settings(Lanes::PerKey)
    });
    for offset in 0..3 {
        assert!(s.has_room());
        s.admit(offset, Some(format!("t{offset}").as_bytes()), 1, ());
    }
    assert!(!s.has_room(), "0..3 spans the window");
    drain_jobs(&mut s, now);
    s.finish(2, Ending::Delivered, now);
    s.finish(1, Ending::Delivered, now);
    assert!(
        !s.has_room(),
        "finished records above the lowest still count"
    );
    s.finish(0, Ending::Delivered, now);
    assert!(s.has_room());
}

#[test]
fn the_byte_limit_holds_but_a_single_large_record_passes() {
    let now = Instant::now();
    let mut s = Scheduler::new(Settings {
        window_bytes: 100,
        ..settings(Lanes::PerKey)
    });
    assert!(s.has_room());
    s.admit(0, Some(b"a"), 500, ());
    assert!(!s.has_room());
    drain_jobs(&mut s, now);
    s.finish(0, Ending::Delivered, now);
    assert_eq!(s.bytes(), 0);
    s.admit(1, Some(b"a"), 60, ());
    assert!(s.has_room());
    s.admit(2, Some(b"b"), 60, ());
    assert!(!s.has_room());
}

#[test]
fn consecutive_exhausted_events_suspend_the_tenant_until_a_probe_succeeds() {
    let t0 = Instant::now();
    let probe = Duration::from_secs(300);
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    for offset in 0..6 {
        s.admit(offset, Some(b"a"), 1, ());
    }
    for offset in 0..2 {
        let job = s.next_job(t0, no_limit).unwrap();
        assert_eq!((job.offset, job.admission), (offset, Admission::Deliver));
        assert_eq!(
            s.finish(offset, Ending::RetriesExhausted, t0).suspension,
            None
        );
    }
    let job = s.next_job(t0, no_limit).unwrap();
    assert_eq!(job.admission, Admission::Deliver);
    let finished = s.finish(2, Ending::RetriesExhausted, t0);
    assert_eq!(
        finished.suspension,
        Some(SuspensionChange::Suspended {
            tenant: Arc::from(&b"a"[..]),
            because: SuspendedBecause::ConsecutiveFailures(3),
        })
    );
    assert!(s.is_suspended(b"a"));

    let job = s.next_job(t0, no_limit).unwrap();
    assert_eq!((job.offset, job.admission), (3, Admission::Suspended));
    s.finish(3, Ending::Other, t0);

    // The probe is due once the interval has passed; it fails.
    let job = s.next_job(t0 + probe, no_limit).unwrap();
    assert_eq!((job.offset, job.admission), (4, Admission::Probe));
    assert_eq!(s.finish(4, Ending::Other, t0 + probe).suspension, None);

    // The next probe only after another interval; this one succeeds.
    let job = s
        .next_job(t0 + probe + Duration::from_secs(1), no_limit)
        .unwrap();
    assert_eq!(job.admission, Admission::Suspended);
    s.admit(6, Some(b"a"), 1, ());
    s.finish(5, Ending::Other, t0 + probe);
    let job = s.next_job(t0 + probe * 2, no_limit).unwrap();
    assert_eq!((job.offset, job.admission), (6, Admission::Probe));
    assert_eq!(
        s.finish(6, Ending::Delivered, t0 + probe * 2).suspension,
        Some(SuspensionChange::Resumed {
            tenant: Arc::from(&b"a"[..])
        })
    );
    assert!(!s.is_suspended(b"a"));
    assert_eq!(s.suspended().count(), 0);
}

#[test]
fn a_delivery_resets_the_count_of_consecutive_failures() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    let endings = [
        Ending::RetriesExhausted,
        Ending::RetriesExhausted,
        Ending::Delivered,
        Ending::RetriesExhausted,
        Ending::Other,
        Ending::RetriesExhausted,
    ];
    for (offset, ending) in endings.into_iter().enumerate() {
        let offset = offset as i64;
        s.admit(offset, Some(b"a"), 1, ());
        s.next_job(now, no_limit).unwrap();
        assert_eq!(s.finish(offset, ending, now).suspension, None);
    }
}

#[test]
fn suspension_can_be_turned_off() {
    let now = Instant::now();
    let mut s = Scheduler::new(Settings {
        suspend_after: 0,
        window: 2,
        ..settings(Lanes::PerKey)
    });
    for offset in 0..10 {
        s.admit(offset, Some(b"a"), 1, ());
        s.next_job(now, no_limit).unwrap();
        assert_eq!(
            s.finish(offset, Ending::RetriesExhausted, now).suspension,
            None
        );
    }
    s.admit(10, Some(b"a"), 1, ());
    s.admit(11, Some(b"a"), 1, ());
    s.next_job(now, no_limit).unwrap();
    s.set_backing_off(10, true);
    assert_eq!(s.suspend_window_holder(now), None);
}

#[test]
fn a_tenant_backing_off_while_it_fills_the_window_is_suspended() {
    let now = Instant::now();
    let mut s = Scheduler::new(Settings {
        window: 4,
        ..settings(Lanes::PerKey)
    });
    for (offset, key) in [(0, "slow"), (1, "slow"), (2, "ok"), (3, "slow")] {
        s.admit(offset, Some(key.as_bytes()), 1, ());
    }
    assert_eq!(drain_jobs(&mut s, now), [0, 2]);
    s.finish(2, Ending::Delivered, now);
    assert!(!s.has_room());
    assert_eq!(s.suspend_window_holder(now), None, "slow but not failing");
    s.set_backing_off(0, true);
    assert!(s.lowest_backing_off());
    assert_eq!(s.backing_off(), 1);
    let (tenant, offset) = s.suspend_window_holder(now).unwrap();
    assert_eq!((&*tenant, offset), (&b"slow"[..], 0));
    assert_eq!(s.suspend_window_holder(now), None, "once");
    s.finish(0, Ending::Other, now);
    let job = s.next_job(now, no_limit).unwrap();
    assert_eq!((job.offset, job.admission), (1, Admission::Suspended));
}

/// Regression: any failed attempt of the lowest record in a full window
/// suspended its tenant, so that a backlog longer than the window turned a
/// healthy tenant's single failure into dead letters.
#[test]
fn a_failure_in_a_window_full_of_other_tenants_records_suspends_no_one() {
    for lanes in [Lanes::PerKey, Lanes::PerPartition] {
        let now = Instant::now();
        let mut s = Scheduler::new(Settings {
            window: 4,
            ..settings(lanes)
        });
        for (offset, key) in [(0, "blip"), (1, "ok"), (2, "blip"), (3, "ok")] {
            s.admit(offset, Some(key.as_bytes()), 1, ());
        }
        let first = s.next_job(now, no_limit).unwrap();
        assert_eq!(first.offset, 0);
        assert!(!s.has_room());
        s.set_backing_off(0, true);
        assert_eq!(s.suspend_window_holder(now), None, "{lanes:?}");
        assert!(!s.is_suspended(b"blip"), "{lanes:?}");
    }
}

#[test]
fn failing_tenants_that_fill_the_window_together_are_suspended_lowest_first() {
    let now = Instant::now();
    let mut s = Scheduler::new(Settings {
        window: 4,
        ..settings(Lanes::PerKey)
    });
    for (offset, key) in [(0, "a"), (1, "b"), (2, "a"), (3, "b")] {
        s.admit(offset, Some(key.as_bytes()), 1, ());
    }
    assert_eq!(drain_jobs(&mut s, now), [0, 1]);
    s.set_backing_off(0, true);
    assert_eq!(s.suspend_window_holder(now), None, "b is still attempted");
    s.set_backing_off(1, true);
    let (tenant, offset) = s.suspend_window_holder(now).unwrap();
    assert_eq!((&*tenant, offset), (&b"a"[..], 0));
}

#[test]
fn window_holders_names_the_lowest_record_and_the_biggest_tenants() {
    let mut s: Scheduler<()> = Scheduler::new(settings(Lanes::PerKey));
    for (offset, key) in [(0, "a"), (1, "b"), (2, "b"), (3, "c"), (4, "b")] {
        s.admit(offset, Some(key.as_bytes()), 1, ());
    }
    let holders = s.window_holders(2);
    assert_eq!(holders.lowest, Some((Some(Arc::from(&b"a"[..])), 0)));
    assert_eq!(
        holders.most,
        [
            (Some(Arc::from(&b"b"[..])), 3),
            (Some(Arc::from(&b"a"[..])), 1)
        ]
    );
}

#[test]
fn a_rate_limited_tenant_waits_without_holding_others() {
    let t0 = Instant::now();
    let second = Duration::from_secs(1);
    let spacing = |key: &[u8]| (key == b"limited").then_some(second);
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    for (offset, key) in [(0, "limited"), (1, "limited"), (2, "free"), (3, "free")] {
        s.admit(offset, Some(key.as_bytes()), 1, ());
    }
    let started: Vec<i64> = std::iter::from_fn(|| s.next_job(t0, spacing))
        .map(|j| j.offset)
        .collect();
    assert_eq!(started, [0, 2]);
    s.finish(0, Ending::Delivered, t0);
    s.finish(2, Ending::Delivered, t0);
    let started: Vec<i64> = std::iter::from_fn(|| s.next_job(t0, spacing))
        .map(|j| j.offset)
        .collect();
    assert_eq!(started, [3], "free goes on; limited waits its second");
    assert_eq!(s.next_wakeup(), Some(t0 + second));
    assert!(s.next_job(t0 + second / 2, spacing).is_none());
    assert_eq!(s.next_job(t0 + second, spacing).unwrap().offset, 1);
}

#[test]
fn rate_limited_tenants_leave_no_state_behind_once_their_spacing_passed() {
    let mut now = Instant::now();
    let second = Duration::from_secs(1);
    let spacing = |_: &[u8]| Some(second);
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    // 10,000 tenants, one event each, 100 of them within each second: each
    // one's spacing outlives its only record.
    for offset in 0..10_000 {
        if offset % 100 == 0 {
            now += 2 * second;
        }
        let tenant = format!("t{offset}");
        s.admit(offset, Some(tenant.as_bytes()), 1, ());
        assert_eq!(s.next_job(now, spacing).unwrap().offset, offset);
        s.finish(offset, Ending::Delivered, now);
    }
    assert!(
        s.tenants.len() <= 2 * 100 + MIN_SWEEP,
        "{} tenant states kept for 100 tenants within their spacing",
        s.tenants.len()
    );
    // The rate limit of the tenants within their spacing still holds.
    s.admit(10_000, Some(b"t9999"), 1, ());
    assert!(
        s.next_job(now, spacing).is_none(),
        "t9999 waits its spacing"
    );
    assert_eq!(s.next_job(now + second, spacing).unwrap().offset, 10_000);
    s.finish(10_000, Ending::Delivered, now + second);
    assert!(s.lanes.is_empty());
}

#[test]
fn suspended_and_owing_tenants_survive_a_sweep() {
    let now = Instant::now();
    let mut s: Scheduler<()> = Scheduler::new(settings(Lanes::PerKey));
    s.restore(
        [],
        [(Key::from(&b"suspended"[..]), now + Duration::from_secs(60))],
    );
    s.restore_owed([(Key::from(&b"owing"[..]), at(5))]);
    let second = Duration::from_secs(1);
    for offset in 0..1_000 {
        let tenant = format!("t{offset}");
        s.admit(offset, Some(tenant.as_bytes()), 1, ());
        s.next_job(now, |_: &[u8]| Some(second)).unwrap();
        s.finish(offset, Ending::Delivered, now + 2 * second);
    }
    assert!(s.tenants.len() <= MIN_SWEEP);
    assert!(s.is_suspended(b"suspended"));
    assert_eq!(s.suspended_count(), 1);
    assert_eq!(
        s.owed().collect::<Vec<_>>(),
        [(Key::from(&b"owing"[..]), at(5))]
    );
    assert_eq!(s.owing_count(), 1);
}

#[test]
fn restored_suspensions_apply_to_the_next_records() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    s.restore([], [(Arc::from(&b"a"[..]), now + Duration::from_secs(60))]);
    s.admit(0, Some(b"a"), 1, ());
    assert_eq!(
        s.next_job(now, no_limit).unwrap().admission,
        Admission::Suspended
    );
    assert_eq!(s.checkpoint().unwrap().suspended.len(), 1);
}

fn at(offset: i64) -> DlqPosition {
    DlqPosition {
        partition: 1,
        offset,
    }
}

fn parked(at: DlqPosition, because: ParkedBecause) -> Done {
    Done {
        ending: Ending::Other,
        replay_of: None,
        parked: Some((at, because)),
        tenant_gone: false,
        dead_lettered: true,
    }
}

fn replay(of: DlqPosition, ending: Ending) -> Done {
    Done {
        ending,
        replay_of: Some(of),
        parked: None,
        tenant_gone: false,
        dead_lettered: ending == Ending::RetriesExhausted,
    }
}

/// Hands out the next record of the only ready lane and returns its
/// `owed` as the worker sees it.
fn owed_of_next(s: &mut Scheduler<()>, now: Instant) -> (i64, Option<DlqPosition>) {
    let job = s.next_job(now, no_limit).expect("a job");
    (job.offset, job.owed)
}

/// An operator's suspension parks events (owed from the first); the
/// tenant's later records carry the debt until the replay of the newest
/// parked one finishes, whatever was parked behind it meanwhile.
#[test]
fn a_debt_of_parked_events_lasts_until_the_newest_one_is_replayed() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    for offset in 0..7 {
        s.admit(offset, Some(b"a"), 1, ());
    }
    assert_eq!(owed_of_next(&mut s, now), (0, None));
    s.finish(0, parked(at(10), ParkedBecause::Operator), now);
    assert_eq!(owed_of_next(&mut s, now), (1, Some(at(10))));
    // A new event parked behind the debt moves it on.
    s.finish(1, parked(at(11), ParkedBecause::Owed), now);
    assert_eq!(owed_of_next(&mut s, now), (2, Some(at(11))));
    // The replay of an older one is delivered and settles nothing yet.
    let finished = s.finish(2, replay(at(10), Ending::Delivered), now);
    assert_eq!(finished.caught_up, None);
    assert_eq!(owed_of_next(&mut s, now), (3, Some(at(11))));
    assert_eq!(s.owing_count(), 1);
    assert_eq!(
        s.checkpoint().unwrap().owed,
        [(Arc::from(&b"a"[..]), at(11))]
    );
    // The replay of the newest one, even dead-lettered for another reason,
    // settles it.
    let finished = s.finish(3, replay(at(11), Ending::RetriesExhausted), now);
    assert_eq!(finished.caught_up, Some(Arc::from(&b"a"[..])));
    assert_eq!(owed_of_next(&mut s, now), (4, None));
    assert_eq!(s.owing_count(), 0);
    assert!(s.checkpoint().unwrap().owed.is_empty());
    // The circuit breaker's parking alone owes nothing: its suspension
    // ends by itself with a delivered probe.
    s.finish(4, parked(at(12), ParkedBecause::Breaker), now);
    assert_eq!(owed_of_next(&mut s, now), (5, None));
    // A replay from another dead-letter partition settles nothing.
    s.finish(5, parked(at(13), ParkedBecause::Operator), now);
    let other = DlqPosition {
        partition: 2,
        offset: 99,
    };
    s.finish(6, replay(other, Ending::Delivered), now);
    assert_eq!(s.owing_count(), 1);
}

/// While the tenant owes replays, even the breaker's parking (a replay
/// that failed again) moves the debt on, and a replay parked again is
/// owed at its new place, not settled by itself.
#[test]
fn a_replay_parked_again_stays_owed() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    s.restore_owed([(Arc::from(&b"a"[..]), at(20))]);
    for offset in 0..3 {
        s.admit(offset, Some(b"a"), 1, ());
    }
    assert_eq!(owed_of_next(&mut s, now), (0, Some(at(20))));
    let again = Done {
        ending: Ending::Other,
        replay_of: Some(at(20)),
        parked: Some((at(25), ParkedBecause::Breaker)),
        tenant_gone: false,
        dead_lettered: true,
    };
    assert_eq!(s.finish(0, again, now).caught_up, None);
    assert_eq!(owed_of_next(&mut s, now), (1, Some(at(25))));
    s.finish(1, replay(at(25), Ending::Delivered), now);
    assert_eq!(owed_of_next(&mut s, now), (2, None));
}

/// A deleted tenant's debt is forgotten: nobody will resume it, and it
/// must not ride with every commit from then on.
#[test]
fn a_deleted_tenant_owes_nothing() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    s.restore_owed([(Arc::from(&b"a"[..]), at(20))]);
    s.admit(0, Some(b"a"), 1, ());
    s.admit(1, Some(b"a"), 1, ());
    assert_eq!(owed_of_next(&mut s, now), (0, Some(at(20))));
    let gone = Done {
        tenant_gone: true,
        ..Done::from(Ending::Other)
    };
    assert_eq!(s.finish(0, gone, now).caught_up, None);
    assert_eq!(s.owing_count(), 0);
    assert!(s.checkpoint().unwrap().owed.is_empty());
    assert_eq!(owed_of_next(&mut s, now), (1, None));
}

#[test]
fn the_checkpoint_after_a_record_moves_past_it_or_lists_it_above() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    for (offset, key) in [(0, b"a"), (1, b"b"), (2, b"c")] {
        s.admit(offset, Some(key), 1, ());
    }
    assert_eq!(drain_jobs(&mut s, now), vec![0, 1, 2]);
    // The lowest unfinished record: the offset moves past it.
    let lowest = s.checkpoint_after(0, Ending::Other, now).unwrap();
    assert_eq!((lowest.offset, lowest.finished_above), (1, vec![]));
    // One above it: it joins the finished records, the offset stays.
    let above = s.checkpoint_after(2, Ending::Other, now).unwrap();
    assert_eq!((above.offset, above.finished_above), (0, vec![2]));
    // Nothing changed in the scheduler itself.
    assert_eq!(s.checkpoint().unwrap().offset, 0);
    assert_eq!(s.unfinished(), 3);
    // Once 1 is finished, the checkpoint after 0 covers both.
    s.finish(1, Ending::Other, now);
    let both = s.checkpoint_after(0, Ending::Other, now).unwrap();
    assert_eq!((both.offset, both.finished_above), (2, vec![]));
    // The last one: one past the newest record read.
    s.finish(0, Ending::Other, now);
    assert_eq!(s.checkpoint_after(2, Ending::Other, now).unwrap().offset, 3);
    // A record that is not being worked on has no such checkpoint.
    assert_eq!(s.checkpoint_after(7, Ending::Other, now), None);
}

/// A dead letter's transaction commits the suspension that the record's
/// exhausted retries cause, and the debt its parking creates.
#[test]
fn the_checkpoint_after_a_record_carries_its_suspension_and_debt() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    for offset in 0..4 {
        s.admit(offset, Some(b"a"), 1, ());
    }
    for offset in 0..2 {
        assert_eq!(drain_jobs(&mut s, now), vec![offset]);
        s.finish(offset, Ending::RetriesExhausted, now);
    }
    assert_eq!(drain_jobs(&mut s, now), vec![2]);
    let third = s
        .checkpoint_after(2, Ending::RetriesExhausted, now)
        .unwrap();
    assert_eq!(
        third.suspended.len(),
        1,
        "the third exhausted event suspends"
    );
    s.finish(2, Ending::RetriesExhausted, now);
    assert_eq!(drain_jobs(&mut s, now), vec![3]);
    let parked_at = at(9);
    let fourth = s
        .checkpoint_after(3, parked(parked_at, ParkedBecause::Operator), now)
        .unwrap();
    assert_eq!(fourth.owed, vec![(Key::from(&b"a"[..]), parked_at)]);
}

#[test]
fn finishing_a_record_twice_or_one_never_handed_out_changes_nothing() {
    let now = Instant::now();
    let mut s = Scheduler::new(settings(Lanes::PerKey));
    s.admit(0, Some(b"a"), 1, ());
    s.admit(1, Some(b"a"), 1, ());
    assert_eq!(s.finish(1, Ending::Delivered, now), Finished::default());
    s.next_job(now, no_limit).unwrap();
    assert!(s.finish(0, Ending::Delivered, now).committable_moved);
    assert_eq!(s.finish(0, Ending::Delivered, now), Finished::default());
    assert_eq!(s.unfinished(), 1);
}

// Property tests: random arrivals, starts and outcomes, checked against
// the invariants the replica relies on.

#[derive(Debug, Clone)]
enum Op {
    /// Read the next record (when the window has room) with this key.
    Read(Option<u8>),
    /// Hand out every job that may start.
    Start,
    /// Finish the n-th job in flight (modulo their number).
    Finish(usize, u8),
    /// Mark the n-th job in flight as backing off.
    BackOff(usize),
    /// Let time pass.
    Wait(u16),
    /// Suspend the tenant holding a full window, if it backs off.
    SuspendHolder,
    /// Take a checkpoint to commit.
    Checkpoint,
    /// The checkpoint taken last was committed.
    Committed,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::option::weighted(0.9, 0u8..6).prop_map(Op::Read),
        3 => Just(Op::Start),
        3 => (any::<usize>(), 0u8..5).prop_map(|(n, e)| Op::Finish(n, e)),
        1 => any::<usize>().prop_map(Op::BackOff),
        1 => (0u16..2000).prop_map(Op::Wait),
        1 => Just(Op::SuspendHolder),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Committed),
    ]
}

fn ending(code: u8) -> Ending {
    match code {
        0 => Ending::Delivered,
        1 => Ending::RetriesExhausted,
        _ => Ending::Other,
    }
}

/// How a record finishes: `ending`, or parked by an operator's suspension
/// (3), or as the replay of a dead letter (4), which change debts.
fn done(code: u8, offset: i64) -> Done {
    let position = DlqPosition {
        partition: 0,
        offset,
    };
    match code {
        3 => parked(position, ParkedBecause::Operator),
        4 => replay(position, Ending::Delivered),
        _ => ending(code).into(),
    }
}

/// A checkpoint with its tenant lists in one order, to compare two.
fn sorted(mut checkpoint: Checkpoint) -> Checkpoint {
    checkpoint.suspended.sort();
    checkpoint.owed.sort_by(|a, b| a.0.cmp(&b.0));
    checkpoint
}

/// What the test saw of a scheduler, to check it against.
struct Model {
    lanes: Lanes,
    window: usize,
    restored: BTreeSet<i64>,
    /// One past the newest record read.
    read: i64,
    key_of: BTreeMap<i64, Option<u8>>,
    in_flight: Vec<i64>,
    started: BTreeSet<i64>,
    finished: BTreeSet<i64>,
    last_started: HashMap<Option<u8>, i64>,
    /// Records finished, counted.
    finishes: u64,
    /// Lanes whose newest finished record was dead-lettered and not
    /// committed, with the number of that finish.
    unconfirmed: HashMap<Option<u8>, u64>,
    /// The finishes the checkpoint taken last covers, until committed.
    taken: Option<u64>,
}

fn spacing(key: &[u8]) -> Option<Duration> {
    (key == [3]).then_some(Duration::from_millis(700))
}

impl Model {
    fn apply(&mut self, s: &mut Scheduler<i64>, op: Op, now: Instant) {
        match op {
            Op::Read(key) => {
                if s.has_room() {
                    let offset = self.read;
                    self.read += 1;
                    let k = key.map(|k| [k]);
                    let admitted = s.admit(offset, k.as_ref().map(|k| &k[..]), 7, offset);
                    self.key_of.insert(offset, key);
                    if admitted == Admitted::AlreadyFinished {
                        assert!(self.restored.contains(&offset));
                        self.finished.insert(offset);
                    }
                }
            }
            Op::Start => {
                while let Some(job) = s.next_job(now, spacing) {
                    assert_eq!(job.record, job.offset, "the job carries its own record");
                    assert!(
                        self.started.insert(job.offset),
                        "{} handed out twice",
                        job.offset
                    );
                    let lane = self.lane(job.offset);
                    // A lane delivers nothing more until its dead-lettered
                    // record is committed as finished.
                    assert!(
                        job.admission == Admission::Suspended
                            || !self.unconfirmed.contains_key(&lane),
                        "{} handed out before a dead letter of its lane was committed",
                        job.offset
                    );
                    // A lane's records start in offset order, never two at once.
                    if let Some(previous) = self.last_started.insert(lane, job.offset) {
                        assert!(
                            previous < job.offset,
                            "{} started after {previous}",
                            job.offset
                        );
                        assert!(
                            self.finished.contains(&previous),
                            "{} started before {previous} finished",
                            job.offset
                        );
                    }
                    self.in_flight.push(job.offset);
                }
            }
            Op::Finish(n, code) => {
                if !self.in_flight.is_empty() {
                    let offset = self.in_flight.remove(n % self.in_flight.len());
                    // What a dead letter's transaction commits is what the
                    // driver stores once the record is finished.
                    let before = s.checkpoint_after(offset, done(code, offset), now);
                    self.finishes += 1;
                    if done(code, offset).dead_lettered {
                        s.finish_unconfirmed(offset, done(code, offset), now);
                        self.unconfirmed.insert(self.lane(offset), self.finishes);
                    } else {
                        s.finish(offset, done(code, offset), now);
                    }
                    assert_eq!(
                        before.map(sorted),
                        s.checkpoint().map(sorted),
                        "checkpoint_after({offset}) differs from finishing it"
                    );
                    assert!(self.finished.insert(offset), "{offset} finished twice");
                }
            }
            Op::BackOff(n) => {
                if !self.in_flight.is_empty() {
                    s.set_backing_off(self.in_flight[n % self.in_flight.len()], true);
                }
            }
            Op::SuspendHolder => {
                s.suspend_window_holder(now);
            }
            Op::Checkpoint => {
                if let Some(checkpoint) = s.checkpoint() {
                    assert_eq!(checkpoint.covers, self.finishes);
                    self.taken = Some(checkpoint.covers);
                }
            }
            Op::Committed => {
                if let Some(covers) = self.taken.take() {
                    s.confirm(covers);
                    self.unconfirmed.retain(|_, finish| *finish > covers);
                }
            }
            Op::Wait(_) => {}
        }
    }

    fn lane(&self, offset: i64) -> Option<u8> {
        match self.lanes {
            Lanes::PerKey => self.key_of[&offset],
            Lanes::PerPartition => None,
        }
    }

    fn check(&self, s: &Scheduler<i64>) {
        if let Some(committable) = s.committable() {
            // The committed offset never passes an unfinished record.
            for offset in 0..committable {
                assert!(
                    self.finished.contains(&offset),
                    "commit at {committable} passes unfinished {offset}"
                );
            }
            let checkpoint = s.checkpoint().unwrap();
            assert_eq!(checkpoint.offset, committable);
            for offset in &checkpoint.finished_above {
                assert!(*offset > committable && self.finished.contains(offset));
            }
            // The window: the offsets held span no more than its size.
            let span = self.read - committable;
            assert!(span <= self.window as i64, "span {span} > {}", self.window);
        }
        assert_eq!(s.unfinished(), self.read as usize - self.finished.len());
        // The counts kept as things change agree with a count from scratch.
        let backing_off = s.held.values().filter(|h| h.backing_off).count();
        assert_eq!(s.backing_off(), backing_off);
        assert_eq!(s.suspended_count(), s.suspended().count());
    }
}

/// Drives a scheduler with `ops`, then finishes everything, checking the
/// invariants after every step.
fn check(lanes: Lanes, window: usize, ops: Vec<Op>, restored: Vec<i64>) {
    let mut now = Instant::now();
    let mut s = Scheduler::new(Settings {
        lanes,
        window,
        window_bytes: 40,
        suspend_after: 2,
        probe_interval: Duration::from_secs(1),
    });
    s.restore(restored.iter().copied(), []);
    let mut model = Model {
        lanes,
        window,
        restored: restored.into_iter().collect(),
        read: 0,
        key_of: BTreeMap::new(),
        in_flight: Vec::new(),
        started: BTreeSet::new(),
        finished: BTreeSet::new(),
        last_started: HashMap::new(),
        finishes: 0,
        unconfirmed: HashMap::new(),
        taken: None,
    };
    for op in ops {
        if let Op::Wait(ms) = op {
            now += Duration::from_millis(u64::from(ms));
        }
        model.apply(&mut s, op, now);
        model.check(&s);
    }
    // Every record ends exactly once: finish all that is left.
    loop {
        model.apply(&mut s, Op::Start, now);
        if model.in_flight.is_empty() {
            if s.unfinished() == 0 {
                break;
            }
            if s.awaits_commit() {
                model.apply(&mut s, Op::Checkpoint, now);
                model.apply(&mut s, Op::Committed, now);
                continue;
            }
            // Only throttled lanes remain: let their time come.
            now = s
                .next_wakeup()
                .expect("unfinished records wait for something");
            continue;
        }
        model.apply(&mut s, Op::Finish(0, 0), now);
        model.check(&s);
    }
    assert_eq!(model.finished.len() as i64, model.read);
    assert_eq!(s.committable(), (model.read > 0).then_some(model.read));
    assert_eq!(s.bytes(), 0);
    assert!(s.lanes.is_empty() && s.ready.is_empty() && s.throttled.is_empty());
    assert!(s.awaiting_commit.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn key_order_keeps_its_invariants(
        window in 1usize..12,
        ops in proptest::collection::vec(op(), 0..200),
        restored in proptest::collection::vec(0i64..40, 0..6),
    ) {
        check(Lanes::PerKey, window, ops, restored);
    }

    #[test]
    fn partition_order_keeps_its_invariants(
        window in 1usize..12,
        ops in proptest::collection::vec(op(), 0..200),
        restored in proptest::collection::vec(0i64..40, 0..6),
    ) {
        check(Lanes::PerPartition, window, ops, restored);
    }
}
