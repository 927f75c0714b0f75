//! The group's rebalances against the real broker: with the cooperative
//! assignment a member joining takes only its share, and a member leaving
//! hands over only its own partitions; the others keep theirs throughout
//! (an eager assignment would revoke every partition of every member).

use std::collections::BTreeSet;
use std::time::Duration;

use hookline::kafka::group::{GroupConsumer, GroupEvent};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::support::Broker;
use crate::support::replica::replica_config;

const PARTITIONS: i32 = 6;

/// What one member was assigned and had revoked, in order.
#[derive(Debug, Default)]
struct Seen {
    owned: BTreeSet<i32>,
    assigned: Vec<i32>,
    revoked: Vec<i32>,
}

impl Seen {
    /// Applies one event; a revocation is answered at once (nothing to
    /// drain: no worker runs here).
    fn apply(&mut self, event: GroupEvent) {
        match event {
            GroupEvent::Assigned(partitions) => {
                for p in partitions {
                    let partition = p.handle.partition();
                    self.owned.insert(partition);
                    self.assigned.push(partition);
                }
            }
            GroupEvent::Revoked {
                partitions,
                drained,
                ..
            } => {
                for p in &partitions {
                    self.owned.remove(p);
                }
                self.revoked.extend(partitions);
                let _ = drained.send(());
            }
        }
    }
}

/// Serves both members' events until `done` holds, at most 60 s.
async fn serve_until(
    members: &mut [(&mut UnboundedReceiver<GroupEvent>, &mut Seen)],
    done: impl Fn(&[&Seen]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen: Vec<&Seen> = members.iter().map(|(_, s)| &**s).collect();
        if done(&seen) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group did not get there within 60 s: {seen:?}"
        );
        for (events, seen) in members.iter_mut() {
            while let Ok(event) = events.try_recv() {
                seen.apply(event);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_join_and_a_leave_move_only_the_partitions_that_change_owner() {
    let broker = Broker::new("rebalance");
    let topic = broker.name("events");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    let config = replica_config(&broker, &[]).kafka;
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();

    let (first, mut first_events) = GroupConsumer::subscribe(&config, &topic).expect("subscribe");
    let mut first_seen = Seen::default();
    serve_until(&mut [(&mut first_events, &mut first_seen)], |s| {
        s[0].owned == all
    })
    .await;
    assert!(first_seen.revoked.is_empty(), "{first_seen:?}");

    // A second member joins: it gets a share, and the first gives up that
    // share and nothing else.
    let (second, mut second_events) = GroupConsumer::subscribe(&config, &topic).expect("subscribe");
    let mut second_seen = Seen::default();
    serve_until(
        &mut [
            (&mut first_events, &mut first_seen),
            (&mut second_events, &mut second_seen),
        ],
        |s| {
            !s[1].owned.is_empty()
                && s[0].owned.is_disjoint(&s[1].owned)
                && s[0].owned.union(&s[1].owned).count() == all.len()
        },
    )
    .await;
    let handed: BTreeSet<i32> = first_seen.revoked.iter().copied().collect();
    assert_eq!(
        handed, second_seen.owned,
        "the first member gave up exactly what the second got"
    );
    assert_eq!(
        first_seen.revoked.len(),
        handed.len(),
        "no partition was revoked twice: {first_seen:?}"
    );
    assert_eq!(
        first_seen.assigned.len(),
        all.len(),
        "the first member kept its other partitions without getting them again: {first_seen:?}"
    );
    let kept = first_seen.owned.clone();
    assert!(!kept.is_empty(), "{first_seen:?}");

    // The second member leaves: its partitions come back to the first,
    // whose own are not revoked.
    drop(second_events);
    tokio::task::spawn_blocking(move || second.close())
        .await
        .expect("close");
    serve_until(&mut [(&mut first_events, &mut first_seen)], |s| {
        s[0].owned == all
    })
    .await;
    assert_eq!(
        first_seen.revoked.len(),
        handed.len(),
        "the first member lost nothing when the second left: {first_seen:?}"
    );
    assert_eq!(
        first_seen.assigned.len(),
        all.len() + handed.len(),
        "only the second member's partitions were assigned again: {first_seen:?}"
    );

    drop(first_events);
    tokio::task::spawn_blocking(move || first.close())
        .await
        .expect("close");
}
