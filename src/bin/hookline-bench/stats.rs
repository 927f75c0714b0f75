//! Pure helpers: percentiles, rates, and reading `/proc` text. No I/O here,
//! so they are unit-tested.

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

/// The produce time in nanoseconds encoded in a bench event id
/// (`b<nanos>-<seq>`).
pub fn produced_nanos(webhook_id: &str) -> Option<u128> {
    webhook_id
        .strip_prefix('b')?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// The index of the nearest-rank `q`-quantile among `len` sorted samples.
fn percentile_rank(len: usize, q: f64) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let rank = (q * len as f64).ceil() as usize;
    Some(rank.clamp(1, len) - 1)
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
    fn event_ids_carry_their_produce_time() {
        assert_eq!(
            produced_nanos("b1700000000000000000-42"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(produced_nanos("evt_x_1_2"), None);
    }
}
