//! Pure helpers: percentiles, rates, and reading `/proc` and Prometheus
//! text. No I/O here, so they are unit-tested.

use std::collections::HashMap;
use std::time::Duration;

/// The `q`-quantile (0.0..=1.0) of `sorted` by the nearest-rank method, or
/// `None` for no samples.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    Some(sorted[percentile_rank(sorted.len(), q)?])
}

/// Microseconds for a reader: milliseconds below 10 s, seconds above.
pub fn human_us(us: u64) -> String {
    if us < 10_000_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{:.1} s", us as f64 / 1e6)
    }
}

/// Events per second, 0 for an empty interval.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// User plus system CPU time in clock ticks from the text of
/// `/proc/PID/stat`. The command name may contain spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `Vm…:` value in kibibytes from the text of `/proc/PID/status`.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The value of `key=` in a text log line (`elapsed_ms=1234`).
pub fn log_field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace().find_map(|word| {
        word.strip_prefix(key)?
            .strip_prefix('=')?
            .trim_matches('"')
            .parse()
            .ok()
    })
}

/// The produce time in nanoseconds and the sequence number encoded in a
/// bench event id (`b<nanos>-<seq>`).
pub fn event_id_parts(webhook_id: &str) -> Option<(u128, u64)> {
    let (nanos, seq) = webhook_id.strip_prefix('b')?.split_once('-')?;
    Some((nanos.parse().ok()?, seq.parse().ok()?))
}

/// The value of an unlabelled series in a Prometheus text exposition.
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != name {
            return None;
        }
        words.next()?.parse().ok()
    })
}

/// How long one event waited: until it arrived, or, for an event that had
/// not arrived when the run ended, at least until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wait {
    pub us: u64,
    pub delivered: bool,
}

/// The waits of `produced` events (sequence number, produce time): their
/// latency when `delivered` holds it (by sequence number), otherwise the
/// time from their production to `end_ns`, a lower bound. Sorted.
pub fn waits(produced: &[(u64, u128)], delivered: &HashMap<u64, u64>, end_ns: u128) -> Vec<Wait> {
    let mut waits: Vec<Wait> = produced
        .iter()
        .map(|&(seq, at)| match delivered.get(&seq) {
            Some(&us) => Wait {
                us,
                delivered: true,
            },
            None => Wait {
                us: u64::try_from(end_ns.saturating_sub(at) / 1000).unwrap_or(u64::MAX),
                delivered: false,
            },
        })
        .collect();
    waits.sort_unstable();
    waits
}

/// A quantile of waits, some of which may be lower bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Quantile {
    pub us: u64,
    /// The true quantile may be higher: an event at or below its rank had
    /// not arrived, so its wait is only known to be at least this long.
    pub at_least: bool,
}

/// The `q`-quantile of `sorted` waits by the nearest-rank method. Exact
/// when every undelivered event ranks above it: their true waits are
/// longer still, so they cannot move it.
pub fn wait_quantile(sorted: &[Wait], q: f64) -> Option<Quantile> {
    let value = percentile_rank(sorted.len(), q)?;
    Some(Quantile {
        us: sorted[value].us,
        at_least: sorted[..=value].iter().any(|w| !w.delivered),
    })
}

/// The index of the nearest-rank `q`-quantile among `len` sorted samples.
fn percentile_rank(len: usize, q: f64) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let rank = (q * len as f64).ceil() as usize;
    Some(rank.clamp(1, len) - 1)
}

/// A gauge sampled over a run: (seconds since its start, value).
pub type Timeline = [(f64, f64)];

/// When the gauge was first at least `threshold`.
pub fn first_reached(timeline: &Timeline, threshold: f64) -> Option<f64> {
    timeline
        .iter()
        .find(|(_, v)| *v >= threshold)
        .map(|(t, _)| *t)
}

/// For how long the gauge was at least `threshold`, counting each sample
/// until the next one.
pub fn seconds_reached(timeline: &Timeline, threshold: f64) -> f64 {
    timeline
        .windows(2)
        .filter(|pair| pair[0].1 >= threshold)
        .map(|pair| pair[1].0 - pair[0].0)
        // Not `sum`, whose empty sum of floats is -0.0.
        .fold(0.0, |total, seconds| total + seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 0.5), Some(500));
        assert_eq!(percentile(&samples, 0.99), Some(990));
        assert_eq!(percentile(&samples, 0.999), Some(999));
        assert_eq!(percentile(&samples, 1.0), Some(1000));
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.999), Some(7));
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn durations_read_in_milliseconds_then_seconds() {
        assert_eq!(human_us(1_234), "1.2 ms");
        assert_eq!(human_us(9_999_000), "9999.0 ms");
        assert_eq!(human_us(31_250_000), "31.2 s");
    }

    #[test]
    fn rates_survive_an_empty_interval() {
        assert_eq!(per_second(10, Duration::from_secs(2)), 5.0);
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
    }

    #[test]
    fn cpu_ticks_count_from_the_last_parenthesis() {
        let stat = "4242 (hook (line) x) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0";
        assert_eq!(cpu_ticks(stat), Some(175));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\thookline\nVmPeak:\t  900 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(123_456));
        assert_eq!(status_kib(status, "VmRSS"), Some(1000));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn log_fields_are_found_by_key() {
        let line = "INFO tenant table restored tenants=100000 invalid=0 elapsed_ms=2345";
        assert_eq!(log_field(line, "elapsed_ms"), Some(2345));
        assert_eq!(log_field(line, "tenants"), Some(100_000));
        assert_eq!(log_field(line, "missing"), None);
    }

    #[test]
    fn event_ids_carry_their_produce_time_and_sequence() {
        assert_eq!(
            event_id_parts("b1700000000000000000-42"),
            Some((1_700_000_000_000_000_000, 42))
        );
        assert_eq!(event_id_parts("b1700000000000000000"), None);
        assert_eq!(event_id_parts("evt_x_1_2"), None);
    }

    #[test]
    fn prometheus_values_of_unlabelled_series() {
        let text = "# HELP hookline_partitions_window_full Assigned partitions\n\
                    # TYPE hookline_partitions_window_full gauge\n\
                    hookline_partitions_window_full 12\n\
                    hookline_partitions_window_full_total 3\n\
                    hookline_consumer_lag{partition=\"0\"} 7\n";
        assert_eq!(
            prometheus_value(text, "hookline_partitions_window_full"),
            Some(12.0)
        );
        assert_eq!(prometheus_value(text, "hookline_consumer_lag"), None);
        assert_eq!(prometheus_value(text, "hookline_tenants"), None);
    }

    fn delivered(us: u64) -> Wait {
        Wait {
            us,
            delivered: true,
        }
    }

    #[test]
    fn undelivered_events_wait_until_the_end_of_the_run() {
        let produced = [(1, 1_000_000), (2, 2_000_000), (3, 3_000_000)];
        let arrived = HashMap::from([(1, 500), (3, 40)]);
        let waits = waits(&produced, &arrived, 10_000_000);
        assert_eq!(
            waits,
            [
                delivered(40),
                delivered(500),
                Wait {
                    us: 8_000,
                    delivered: false
                }
            ]
        );
    }

    #[test]
    fn a_quantile_is_exact_while_undelivered_events_rank_above_it() {
        let mut waits: Vec<Wait> = (1..=99).map(delivered).collect();
        waits.push(Wait {
            us: 5_000,
            delivered: false,
        });
        assert_eq!(
            wait_quantile(&waits, 0.99),
            Some(Quantile {
                us: 99,
                at_least: false
            })
        );
        assert_eq!(
            wait_quantile(&waits, 1.0),
            Some(Quantile {
                us: 5_000,
                at_least: true
            })
        );
        assert_eq!(wait_quantile(&[], 0.5), None);
    }

    #[test]
    fn a_quantile_past_an_undelivered_event_is_a_lower_bound() {
        let mut waits = vec![
            Wait {
                us: 10,
                delivered: false,
            },
            delivered(20),
            delivered(30),
        ];
        waits.sort_unstable();
        assert_eq!(
            wait_quantile(&waits, 0.5),
            Some(Quantile {
                us: 20,
                at_least: true
            })
        );
    }

    #[test]
    fn timelines_tell_when_and_how_long_a_gauge_was_up() {
        let timeline = [(0.0, 0.0), (1.0, 1.0), (1.5, 2.0), (3.0, 0.0), (4.0, 1.0)];
        assert_eq!(first_reached(&timeline, 1.0), Some(1.0));
        assert_eq!(first_reached(&timeline, 3.0), None);
        assert_eq!(seconds_reached(&timeline, 1.0), 2.0);
        assert_eq!(seconds_reached(&timeline, 2.0), 1.5);
        assert_eq!(seconds_reached(&[], 1.0), 0.0);
    }
}
