//! A tenant's rate limit (the record's `rate_limit`): at most so many
//! events per second are delivered to the tenant. Its events are then
//! spaced at least one [`RateLimit::interval`] apart, while the events of
//! other tenants are not affected.
//!
//! The value is validated once per record version, like every other field,
//! so that whatever spaces the deliveries can use it without checking it
//! again: a [`RateLimit`] is always finite, positive and within bounds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The largest rate limit, in events per second: one event every
/// microsecond.
pub const MAX_EVENTS_PER_SECOND: f64 = 1_000_000.0;

/// The smallest rate limit, in events per second: one event every
/// 1,000,000 s (about 11.6 days). A smaller rate is not a limit anyone
/// means, and a bound keeps the interval a small, exact number of
/// nanoseconds that no deadline computation can overflow.
pub const MIN_EVENTS_PER_SECOND: f64 = 0.000_001;

/// How many events per second a tenant receives at most.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct RateLimit {
    per_second: f64,
}

/// Why a rate limit is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    #[error("`{0}` is not a number of events per second")]
    NotANumber(String),
    #[error(
        "must be a number of events per second from {MIN_EVENTS_PER_SECOND} to \
         {MAX_EVENTS_PER_SECOND}, not {0}"
    )]
    OutOfRange(f64),
}

impl RateLimit {
    /// A limit of `per_second` events per second; fractions are allowed
    /// (0.5 is one event every 2 s).
    pub fn new(per_second: f64) -> Result<Self, RateLimitError> {
        // The range check also refuses NaN, infinities, zero and negative
        // numbers: every comparison with NaN is false.
        if (MIN_EVENTS_PER_SECOND..=MAX_EVENTS_PER_SECOND).contains(&per_second) {
            Ok(Self { per_second })
        } else {
            Err(RateLimitError::OutOfRange(per_second))
        }
    }

    /// The limit in events per second, as given.
    pub fn per_second(self) -> f64 {
        self.per_second
    }

    /// The minimum spacing between the starts of two events of the
    /// tenant: `1 / per_second`, rounded up to the nanosecond so that the
    /// rate is never exceeded. Between 1 µs and 1,000,000 s.
    pub fn interval(self) -> Duration {
        // At most 1e15 nanoseconds within the bounds, which a u64 holds
        // exactly; the cast cannot truncate.
        Duration::from_nanos((1e9 / self.per_second).ceil() as u64)
    }
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    /// Reads a decimal number of events per second, such as `10` or `0.5`.
    fn from_str(text: &str) -> Result<Self, RateLimitError> {
        let per_second = text
            .trim()
            .parse::<f64>()
            .map_err(|_| RateLimitError::NotANumber(text.to_string()))?;
        Self::new(per_second)
    }
}

impl fmt::Display for RateLimit {
    /// `10/s`, `0.5/s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bounds_are_inclusive_and_everything_else_is_refused() {
        for ok in [MIN_EVENTS_PER_SECOND, 0.5, 1.0, 10.0, MAX_EVENTS_PER_SECOND] {
            assert_eq!(RateLimit::new(ok).unwrap().per_second(), ok);
        }
        for bad in [
            0.0,
            -0.0,
            -1.0,
            MIN_EVENTS_PER_SECOND / 2.0,
            f64::MIN_POSITIVE,
            MAX_EVENTS_PER_SECOND + 1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ] {
            assert!(
                matches!(RateLimit::new(bad), Err(RateLimitError::OutOfRange(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn interval_is_the_inverse_of_the_rate() {
        let interval = |rate| RateLimit::new(rate).unwrap().interval();
        assert_eq!(interval(0.5), Duration::from_secs(2));
        assert_eq!(interval(1.0), Duration::from_secs(1));
        assert_eq!(interval(10.0), Duration::from_millis(100));
        assert_eq!(interval(MAX_EVENTS_PER_SECOND), Duration::from_micros(1));
        assert_eq!(
            interval(MIN_EVENTS_PER_SECOND),
            Duration::from_secs(1_000_000)
        );
        // A third of a second is not a whole number of nanoseconds: it is
        // rounded up, so that three events never fit in less than a second.
        assert_eq!(interval(3.0), Duration::from_nanos(333_333_334));
    }

    #[test]
    fn parses_decimal_numbers_and_says_what_is_wrong() {
        assert_eq!("10".parse::<RateLimit>().unwrap().per_second(), 10.0);
        assert_eq!(" 0.25 ".parse::<RateLimit>().unwrap().per_second(), 0.25);
        assert_eq!("1e3".parse::<RateLimit>().unwrap().per_second(), 1000.0);
        assert_eq!(
            "ten".parse::<RateLimit>().unwrap_err().to_string(),
            "`ten` is not a number of events per second"
        );
        assert_eq!(
            "0".parse::<RateLimit>().unwrap_err().to_string(),
            "must be a number of events per second from 0.000001 to 1000000, not 0"
        );
        for bad in ["-1", "inf", "NaN", "1000001", ""] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_as_events_per_second() {
        assert_eq!(RateLimit::new(10.0).unwrap().to_string(), "10/s");
        assert_eq!(RateLimit::new(0.5).unwrap().to_string(), "0.5/s");
    }

    proptest! {
        #[test]
        fn an_accepted_rate_is_in_bounds_and_its_interval_never_exceeds_it(
            rate in prop_oneof![
                any::<f64>(),
                -1.0..2.0 * MAX_EVENTS_PER_SECOND,
                0.0..10.0 * MIN_EVENTS_PER_SECOND,
            ]
        ) {
            match RateLimit::new(rate) {
                Ok(limit) => {
                    prop_assert!((MIN_EVENTS_PER_SECOND..=MAX_EVENTS_PER_SECOND).contains(&rate));
                    prop_assert_eq!(limit.per_second(), rate);
                    let exact = 1e9 / rate;
                    let nanos = limit.interval().as_nanos() as f64;
                    // Never shorter than 1/rate, and at most a nanosecond
                    // longer.
                    prop_assert!(nanos >= exact && nanos < exact + 1.0, "{rate}: {nanos} ns");
                }
                Err(_) => prop_assert!(
                    !(MIN_EVENTS_PER_SECOND..=MAX_EVENTS_PER_SECOND).contains(&rate)
                ),
            }
        }
    }
}
