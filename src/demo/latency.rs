//! What the demo's timings say, with no I/O: each tenant's latency from
//! produce to delivery, and whether the flaky tenant's failures held back
//! the tenants that share its partition.
//!
//! In partition order, a tenant's event that sits behind the flaky tenant's
//! first event on their partition waits until that event is delivered, that
//! is for as long as the flaky endpoint fails: the partition-mate's slowest
//! delivery takes at least the failing time. In key order it waits for
//! nothing, and its latency is that of the tenants on other partitions,
//! milliseconds, however long the failures last. A partition-mate is
//! therefore counted as held back when its slowest delivery took half the
//! failing time or more, a threshold far from both, which a loaded machine
//! does not cross by slowing everything down.

use std::fmt;
use std::time::Duration;

/// One tenant's produce-to-delivery latencies, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Deliveries measured.
    pub count: usize,
    /// The median (nearest rank: the lower of the middle two).
    pub p50: Duration,
    pub max: Duration,
}

impl Latency {
    /// The median and maximum of `samples`, or `None` for none.
    pub fn of(samples: &[Duration]) -> Option<Latency> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Latency {
            count: sorted.len(),
            p50: *sorted.get(sorted.len().saturating_sub(1) / 2)?,
            max: *sorted.last()?,
        })
    }
}

/// What the demo measured of one tenant, for [`Isolation::measure`].
#[derive(Debug, Clone)]
pub struct TenantTimings<'a> {
    pub tenant: &'a str,
    /// The partition its events went to, from their acknowledgements.
    pub partition: Option<i32>,
    /// Produce-to-delivery latency of each delivered event.
    pub latencies: &'a [Duration],
}

/// Whether the flaky tenant's failures held back its partition-mates: the
/// facts behind the sentence under the demo's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    pub flaky: String,
    pub partition: i32,
    /// From the flaky endpoint's first failed request to its first
    /// accepted delivery.
    pub failing_for: Duration,
    /// The other tenants on that partition that had deliveries, in the
    /// demo's order.
    pub mates: Vec<String>,
    /// The mates' deliveries, pooled; `None` without mates.
    pub mates_latency: Option<Latency>,
    /// The deliveries of the tenants on other partitions, pooled.
    pub elsewhere: Option<Latency>,
}

impl Isolation {
    /// Compares the tenants on `flaky`'s partition with the others. `None`
    /// when the flaky tenant is not among `tenants`, its partition is not
    /// known, or its endpoint did not fail (a run too short to reach it).
    pub fn measure(
        flaky: &str,
        failing_for: Option<Duration>,
        tenants: &[TenantTimings<'_>],
    ) -> Option<Isolation> {
        let failing_for = failing_for?;
        let partition = tenants.iter().find(|t| t.tenant == flaky)?.partition?;
        let others = tenants
            .iter()
            .filter(|t| t.tenant != flaky && !t.latencies.is_empty());
        let (mates, elsewhere): (Vec<_>, Vec<_>) =
            others.partition(|t| t.partition == Some(partition));
        let pooled = |timings: &[&TenantTimings<'_>]| {
            let samples: Vec<Duration> = timings
                .iter()
                .flat_map(|t| t.latencies.iter().copied())
                .collect();
            Latency::of(&samples)
        };
        Some(Isolation {
            flaky: flaky.to_string(),
            partition,
            failing_for,
            mates: mates.iter().map(|t| t.tenant.to_string()).collect(),
            mates_latency: pooled(&mates),
            elsewhere: pooled(&elsewhere),
        })
    }

    /// Whether a partition-mate waited for the flaky tenant: its slowest
    /// delivery took at least half the time the flaky endpoint failed (see
    /// the module docs). `false` without mates.
    pub fn held_back(&self) -> bool {
        self.mates_latency
            .is_some_and(|mates| mates.max >= self.failing_for / 2)
    }
}

/// One sentence, stated from the measurements whatever they say.
impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Isolation {
            flaky, partition, ..
        } = self;
        let failing = short(self.failing_for);
        let elsewhere = self.elsewhere.map_or_else(String::new, |l| {
            format!(
                " (tenants on other partitions: p50 {}, max {})",
                short(l.p50),
                short(l.max)
            )
        });
        let Some(mates_latency) = self.mates_latency else {
            return write!(
                f,
                "{flaky}'s endpoint failed for {failing}; no other tenant had deliveries on its \
                 partition {partition}, so this run shows no partition-mate it could hold back."
            );
        };
        let mates = join(&self.mates);
        let its = if self.mates.len() == 1 {
            "its"
        } else {
            "their"
        };
        if self.held_back() {
            write!(
                f,
                "{flaky}'s 503s held back {mates} too: on the same partition {partition}, {its} \
                 events waited up to {} (p50 {}) while {flaky}'s endpoint failed for \
                 {failing}{elsewhere}.",
                short(mates_latency.max),
                short(mates_latency.p50),
            )
        } else {
            write!(
                f,
                "{flaky}'s 503s held back only {flaky}: {mates}, on the same partition \
                 {partition}, delivered {its} {} events with latency p50 {}, max {}{elsewhere}, \
                 while {flaky}'s endpoint failed for {failing}.",
                mates_latency.count,
                short(mates_latency.p50),
                short(mates_latency.max),
            )
        }
    }
}

/// A duration as the summary shows it: whole milliseconds below a second,
/// tenths of a second above.
pub fn short(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// "a", "a and b", "a, b and c".
fn join(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_median_is_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        let latency = Latency::of(&samples).unwrap();
        assert_eq!(
            latency,
            Latency {
                count: 100,
                p50: ms(50),
                max: ms(100)
            }
        );
        let odd = Latency::of(&[ms(9), ms(1), ms(5)]).unwrap();
        assert_eq!((odd.count, odd.p50, odd.max), (3, ms(5), ms(9)));
        let one = Latency::of(&[ms(7)]).unwrap();
        assert_eq!((one.p50, one.max), (ms(7), ms(7)));
        assert_eq!(Latency::of(&[]), None);
    }

    const FAST: [Duration; 3] = [
        Duration::from_millis(3),
        Duration::from_millis(4),
        Duration::from_millis(12),
    ];

    fn timings<'a>(
        tenant: &'a str,
        partition: i32,
        latencies: &'a [Duration],
    ) -> TenantTimings<'a> {
        TenantTimings {
            tenant,
            partition: Some(partition),
            latencies,
        }
    }

    #[test]
    fn a_fast_partition_mate_was_not_held_back() {
        let flaky = [ms(3400), ms(3401)];
        let tenants = [
            timings("acme", 2, &FAST),
            timings("stark", 2, &flaky),
            timings("initech", 0, &FAST[..2]),
            timings("umbrella", 6, &[]),
        ];
        let isolation = Isolation::measure("stark", Some(ms(3390)), &tenants).unwrap();
        assert_eq!(isolation.partition, 2);
        assert_eq!(isolation.mates, ["acme"]);
        assert_eq!(isolation.mates_latency.unwrap().max, ms(12));
        assert_eq!(isolation.elsewhere.unwrap().max, ms(4));
        assert!(!isolation.held_back());
        assert_eq!(
            isolation.to_string(),
            "stark's 503s held back only stark: acme, on the same partition 2, delivered its 3 \
             events with latency p50 4 ms, max 12 ms (tenants on other partitions: p50 3 ms, \
             max 4 ms), while stark's endpoint failed for 3.4 s."
        );
    }

    #[test]
    fn a_mate_that_waited_about_as_long_as_the_failures_is_said_to_be_held_back() {
        let waited = [ms(5), ms(3100), ms(3300)];
        let tenants = [
            timings("acme", 2, &waited),
            timings("hooli", 2, &FAST),
            timings("stark", 2, &[]),
            timings("initech", 0, &FAST),
        ];
        let isolation = Isolation::measure("stark", Some(ms(3400)), &tenants).unwrap();
        assert!(isolation.held_back());
        assert_eq!(
            isolation.to_string(),
            "stark's 503s held back acme and hooli too: on the same partition 2, their events \
             waited up to 3.3 s (p50 5 ms) while stark's endpoint failed for 3.4 s (tenants \
             on other partitions: p50 4 ms, max 12 ms)."
        );
    }

    #[test]
    fn a_flaky_tenant_alone_on_its_partition_says_so() {
        let tenants = [timings("acme", 1, &FAST), timings("stark", 2, &FAST)];
        let isolation = Isolation::measure("stark", Some(ms(900)), &tenants).unwrap();
        assert!(isolation.mates.is_empty());
        assert!(!isolation.held_back());
        assert_eq!(
            isolation.to_string(),
            "stark's endpoint failed for 900 ms; no other tenant had deliveries on its \
             partition 2, so this run shows no partition-mate it could hold back."
        );
    }

    #[test]
    fn nothing_is_said_without_failures_or_without_the_flaky_tenant() {
        let tenants = [timings("acme", 2, &FAST), timings("stark", 2, &FAST)];
        assert_eq!(Isolation::measure("stark", None, &tenants), None);
        assert_eq!(Isolation::measure("globex", Some(ms(1)), &tenants), None);
    }

    #[test]
    fn durations_read_as_milliseconds_or_seconds() {
        assert_eq!(short(ms(0)), "0 ms");
        assert_eq!(short(ms(999)), "999 ms");
        assert_eq!(short(ms(1000)), "1.0 s");
        assert_eq!(short(ms(3456)), "3.5 s");
    }
}
