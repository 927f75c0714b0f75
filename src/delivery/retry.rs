//! The retry policy as a pure decision: given what one attempt produced,
//! deliver, wait and retry, or dead-letter.
//!
//! Nothing here sleeps, reads a clock or draws a random number: the worker
//! passes the attempt number and a [`Jitter`] drawn from its own generator,
//! then executes the returned [`RetryAction`]. That keeps every branch
//! testable without time or I/O.
//!
//! # Backoff
//! The ceiling after attempt `n` is `initial_backoff * 2^(n-1)`, capped at
//! `max_backoff`. The delay is drawn with *equal jitter*: uniformly in
//! `[ceiling / 2, ceiling]`. Half of the delay is jitter, which spreads
//! partitions that failed together; the other half is fixed, so a retry is
//! never immediate (full jitter can draw zero, and a storm of zero-delay
//! retries is what a struggling receiver needs least).
//!
//! # Retry-After
//! On 429 and 503 a `Retry-After` is honoured as a lower bound: the delay is
//! the larger of the server's value and the jittered backoff, capped at
//! `max_backoff`. Waiting less than our own backoff would let a receiver
//! that says `Retry-After: 0` pull retries in a tight loop; waiting longer
//! than `max_backoff` would let one receiver stall its whole partition for as
//! long as it likes. On other statuses the header is ignored, as DESIGN §6
//! says.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::config::DeliveryConfig;
use crate::delivery::dead_letter::DlqReason;
use crate::delivery::destination::BlockedRange;

/// What one delivery attempt produced, as far as the retry decision cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered with a 2xx status.
    Delivered { status: u16 },
    /// The receiver answered with any other status: 1xx, 3xx (redirects
    /// are not followed), 4xx, 5xx. `retry_after` is the parsed
    /// `Retry-After` header, if the response had a valid one.
    HttpStatus {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No complete response within the attempt timeout.
    Timeout { after: Duration },
    /// The TCP or TLS connection could not be established.
    Connect { error: String },
    /// Any other transport failure (connection reset mid-request, malformed
    /// response, ...).
    Transport { error: String },
    /// The destination resolved to an address that deliveries may not reach.
    BlockedDestination {
        address: IpAddr,
        range: BlockedRange,
    },
}

impl AttemptOutcome {
    /// The outcome of a response with `status`: delivered for 2xx, a failed
    /// status otherwise. Workers should build response outcomes through
    /// here so that the 2xx rule lives in one place.
    pub fn from_response(status: u16, retry_after: Option<Duration>) -> Self {
        if is_success(status) {
            AttemptOutcome::Delivered { status }
        } else {
            AttemptOutcome::HttpStatus {
                status,
                retry_after,
            }
        }
    }

    /// The HTTP status, when the attempt got a response (the `dlq.status`
    /// header).
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptOutcome::Delivered { status } | AttemptOutcome::HttpStatus { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// A bounded label for the `result` of `hookline_delivery_attempts_total`.
    pub fn result_label(&self) -> &'static str {
        match self {
            AttemptOutcome::Delivered { .. } => "delivered",
            AttemptOutcome::HttpStatus { status, .. } if is_success(*status) => "delivered",
            AttemptOutcome::HttpStatus { .. } => "http_error",
            AttemptOutcome::Timeout { .. } => "timeout",
            AttemptOutcome::Connect { .. } => "connect_error",
            AttemptOutcome::Transport { .. } => "transport_error",
            AttemptOutcome::BlockedDestination { .. } => "blocked_destination",
        }
    }
}

/// The human-readable form is what lands in `dlq.error` and in logs; it never
/// contains the payload.
impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptOutcome::Delivered { status } => write!(f, "delivered (HTTP {status})"),
            AttemptOutcome::HttpStatus { status, .. } => write!(f, "HTTP {status}"),
            AttemptOutcome::Timeout { after } => {
                write!(
                    f,
                    "no response within {}",
                    humantime::format_duration(*after)
                )
            }
            AttemptOutcome::Connect { error } => write!(f, "cannot connect: {error}"),
            AttemptOutcome::Transport { error } => write!(f, "transport error: {error}"),
            AttemptOutcome::BlockedDestination { address, range } => {
                write!(f, "destination {address} is blocked: {range}")
            }
        }
    }
}

/// What the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// The event is delivered: store its offset.
    Delivered { status: u16 },
    /// Wait this long (blocking the partition), then attempt again.
    RetryAfter(Duration),
    /// Write the event to the dead-letter topic with this reason.
    DeadLetter(DlqReason),
}

/// A fraction in `[0, 1]` that places a delay within its jitter range: 0 is
/// the shortest delay, 1 the longest. The worker draws it from its own random
/// generator; tests pass fixed values.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Jitter(f64);

impl Jitter {
    /// The shortest delay of the range.
    pub const SHORTEST: Jitter = Jitter(0.0);
    /// The longest delay of the range.
    pub const LONGEST: Jitter = Jitter(1.0);

    /// Clamps `fraction` into `[0, 1]`; NaN counts as 0.
    pub fn new(fraction: f64) -> Self {
        if fraction.is_nan() {
            Jitter::SHORTEST
        } else {
            Jitter(fraction.clamp(0.0, 1.0))
        }
    }

    /// A uniform fraction in `[0, 1)` from 64 random bits (e.g. `rand`'s
    /// `next_u64`), so that this module needs no random-number crate.
    pub fn from_random_bits(bits: u64) -> Self {
        // The top 53 bits fill an f64 mantissa exactly: every value is
        // equally likely and the result is strictly below 1.
        Jitter((bits >> 11) as f64 / (1u64 << 53) as f64)
    }

    pub fn fraction(self) -> f64 {
        self.0
    }
}

/// The delivery retry policy (DESIGN §6), built from `[delivery]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    timeout: Duration,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    non_retryable_statuses: Vec<u16>,
}

impl From<&DeliveryConfig> for RetryPolicy {
    fn from(config: &DeliveryConfig) -> Self {
        RetryPolicy::from_config(config)
    }
}

impl RetryPolicy {
    /// The policy of a validated configuration: `max_attempts >= 1`,
    /// `0 < initial_backoff <= max_backoff`, which [`crate::config`] enforces.
    pub fn from_config(config: &DeliveryConfig) -> Self {
        RetryPolicy {
            timeout: config.timeout,
            max_attempts: config.max_attempts.max(1),
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff.max(config.initial_backoff),
            non_retryable_statuses: config.non_retryable_statuses.clone(),
        }
    }

    /// A per-tenant override of the number of attempts (DESIGN §4); values
    /// below 1 mean 1, since the first attempt always happens.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// A per-tenant override of the attempt timeout (DESIGN §4).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long one attempt may take, connection included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Attempts in total, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The longest wait between two attempts.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// Decides what follows attempt number `attempt` (1 for the first
    /// attempt; 0 is treated as 1) that produced `outcome`.
    ///
    /// Order of the rules: success wins; a non-retryable status and a
    /// blocked destination dead-letter at once, whatever the attempt number;
    /// any other failure dead-letters once `attempt` reaches `max_attempts`
    /// and is retried after a backoff otherwise.
    pub fn decide(&self, outcome: &AttemptOutcome, attempt: u32, jitter: Jitter) -> RetryAction {
        let attempt = attempt.max(1);
        match outcome {
            AttemptOutcome::Delivered { status } => {
                return RetryAction::Delivered { status: *status };
            }
            // `from_response` never builds this, but success is any 2xx
            // (DESIGN §6) however the outcome was built.
            AttemptOutcome::HttpStatus { status, .. } if is_success(*status) => {
                return RetryAction::Delivered { status: *status };
            }
            AttemptOutcome::HttpStatus { status, .. }
                if self.non_retryable_statuses.contains(status) =>
            {
                return RetryAction::DeadLetter(DlqReason::Rejected);
            }
            AttemptOutcome::BlockedDestination { .. } => {
                return RetryAction::DeadLetter(DlqReason::BlockedDestination);
            }
            _ => {}
        }
        if attempt >= self.max_attempts {
            return RetryAction::DeadLetter(DlqReason::RetriesExhausted);
        }
        let backoff = self.backoff(attempt, jitter);
        let delay = match outcome {
            AttemptOutcome::HttpStatus {
                status: 429 | 503,
                retry_after: Some(requested),
            } => (*requested).max(backoff).min(self.max_backoff),
            _ => backoff,
        };
        RetryAction::RetryAfter(delay)
    }

    /// The upper end of the backoff after attempt `attempt`:
    /// `initial_backoff * 2^(attempt-1)`, capped at `max_backoff`, without
    /// overflow for any attempt number.
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.max(1) - 1;
        if doublings >= u32::BITS {
            return self.max_backoff;
        }
        self.initial_backoff
            .checked_mul(1u32 << doublings)
            .map_or(self.max_backoff, |ceiling| ceiling.min(self.max_backoff))
    }

    /// The jittered wait after attempt `attempt`, in
    /// `[ceiling / 2, ceiling]` (equal jitter; see the module docs).
    pub fn backoff(&self, attempt: u32, jitter: Jitter) -> Duration {
        let ceiling = self.backoff_ceiling(attempt);
        let floor = ceiling / 2;
        let span_nanos = (ceiling - floor).as_nanos();
        // Computed in nanoseconds rather than with `Duration::mul_f64`, whose
        // float rounding could land a hair outside the range: the float to
        // integer cast saturates, the `min` keeps the upper bound exact, and
        // the longest jitter is the whole span even where an f64 cannot hold
        // it exactly.
        let extra_nanos = if jitter.fraction() >= 1.0 {
            span_nanos
        } else {
            ((span_nanos as f64 * jitter.fraction()) as u128).min(span_nanos)
        };
        floor + duration_from_nanos(extra_nanos)
    }
}

/// Parses a `Retry-After` header value (RFC 9110 §10.2.3): delta-seconds or
/// an HTTP-date, the latter relative to `now`. A date in the past means
/// "now" (zero); a value that is neither form is `None`, and the caller then
/// falls back to its own backoff. Delta-seconds too large for a `u64`
/// saturate, since the policy caps every wait anyway.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

fn is_success(status: u16) -> bool {
    (200..=299).contains(&status)
}

fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SECOND: u128 = 1_000_000_000;
    let seconds = u64::try_from(nanos / NANOS_PER_SECOND).unwrap_or(u64::MAX);
    // The remainder is below one billion, so it fits in a u32.
    Duration::new(seconds, (nanos % NANOS_PER_SECOND) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeliveryOrdering;
    use proptest::prelude::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// The metrics resolve one series per known `result` label up front;
    /// a label missing from that list would still be counted, but through
    /// the slow path.
    #[test]
    fn every_result_label_is_a_known_metric_label() {
        let outcomes = [
            AttemptOutcome::from_response(204, None),
            AttemptOutcome::from_response(503, None),
            AttemptOutcome::Timeout { after: SECOND },
            AttemptOutcome::Connect { error: "e".into() },
            AttemptOutcome::Transport { error: "e".into() },
            AttemptOutcome::BlockedDestination {
                address: IpAddr::from([127, 0, 0, 1]),
                range: BlockedRange::Loopback,
            },
        ];
        let labels: std::collections::BTreeSet<&str> =
            outcomes.iter().map(AttemptOutcome::result_label).collect();
        let known = crate::telemetry::metrics::RESULT_LABELS
            .into_iter()
            .collect();
        assert_eq!(labels, known);
    }

    fn config(max_attempts: u32, initial: Duration, max: Duration) -> DeliveryConfig {
        DeliveryConfig {
            timeout: Duration::from_secs(30),
            max_attempts,
            initial_backoff: initial,
            max_backoff: max,
            non_retryable_statuses: vec![410],
            allow_private_destinations: false,
            max_payload_bytes: 1 << 20,
            ordering: DeliveryOrdering::Key,
            max_in_flight: 512,
            partition_window: 1000,
            partition_window_bytes: 8 << 20,
            suspend_after: 3,
            suspension_probe_interval: Duration::from_secs(300),
            transactional_dlq: false,
            pool_max_idle_per_host: 8,
            pool_max_idle: 8192,
            pool_idle_timeout: Duration::from_secs(60),
            prepared_tenants: 50_000,
        }
    }

    /// The shipped defaults: 8 attempts, 1s doubling up to 60s, 410 rejected.
    fn policy() -> RetryPolicy {
        RetryPolicy::from_config(&config(8, SECOND, Duration::from_secs(60)))
    }

    fn status(status: u16) -> AttemptOutcome {
        AttemptOutcome::from_response(status, None)
    }

    fn throttled(status: u16, retry_after: Duration) -> AttemptOutcome {
        AttemptOutcome::from_response(status, Some(retry_after))
    }

    fn retry_after(action: RetryAction) -> Duration {
        match action {
            RetryAction::RetryAfter(delay) => delay,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    fn transport_failures() -> Vec<AttemptOutcome> {
        vec![
            AttemptOutcome::Timeout {
                after: Duration::from_secs(30),
            },
            AttemptOutcome::Connect {
                error: "connection refused".into(),
            },
            AttemptOutcome::Transport {
                error: "connection reset".into(),
            },
        ]
    }

    #[test]
    fn policy_takes_its_values_from_the_configuration() {
        let policy = RetryPolicy::from(&config(5, SECOND, Duration::from_secs(9)));
        assert_eq!(policy.max_attempts(), 5);
        assert_eq!(policy.timeout(), Duration::from_secs(30));
        assert_eq!(policy.max_backoff(), Duration::from_secs(9));
    }

    #[test]
    fn any_2xx_is_delivered_on_any_attempt() {
        for code in [200, 201, 202, 204, 299] {
            for attempt in [1, 7, 8, 1000] {
                assert_eq!(
                    policy().decide(&status(code), attempt, Jitter::LONGEST),
                    RetryAction::Delivered { status: code }
                );
            }
        }
    }

    #[test]
    fn from_response_splits_on_2xx() {
        assert_eq!(status(204), AttemptOutcome::Delivered { status: 204 });
        assert_eq!(
            status(302),
            AttemptOutcome::HttpStatus {
                status: 302,
                retry_after: None
            }
        );
        assert_eq!(
            status(199),
            AttemptOutcome::HttpStatus {
                status: 199,
                retry_after: None
            }
        );
        assert_eq!(
            status(300),
            AttemptOutcome::HttpStatus {
                status: 300,
                retry_after: None
            }
        );
    }

    #[test]
    fn a_2xx_built_as_a_failed_status_still_counts_as_delivered() {
        let outcome = AttemptOutcome::HttpStatus {
            status: 200,
            retry_after: None,
        };
        assert_eq!(
            policy().decide(&outcome, 1, Jitter::SHORTEST),
            RetryAction::Delivered { status: 200 }
        );
        assert_eq!(outcome.result_label(), "delivered");
    }

    #[test]
    fn failures_are_retried_before_the_last_attempt() {
        let mut outcomes = transport_failures();
        outcomes.extend(
            [
                100, 301, 302, 304, 400, 401, 404, 409, 429, 500, 502, 503, 504,
            ]
            .map(status),
        );
        for outcome in outcomes {
            for attempt in 1..8 {
                let action = policy().decide(&outcome, attempt, Jitter::LONGEST);
                assert!(
                    matches!(action, RetryAction::RetryAfter(_)),
                    "{outcome} attempt {attempt}: {action:?}"
                );
            }
        }
    }

    #[test]
    fn failures_are_exhausted_at_max_attempts() {
        let mut outcomes = transport_failures();
        outcomes.extend([302, 404, 429, 500, 503].map(status));
        outcomes.push(throttled(429, SECOND));
        for outcome in outcomes {
            for attempt in [8, 9, u32::MAX] {
                assert_eq!(
                    policy().decide(&outcome, attempt, Jitter::SHORTEST),
                    RetryAction::DeadLetter(DlqReason::RetriesExhausted),
                    "{outcome} attempt {attempt}"
                );
            }
        }
    }

    #[test]
    fn a_single_attempt_policy_never_retries() {
        let policy = RetryPolicy::from_config(&config(1, SECOND, SECOND));
        assert_eq!(
            policy.decide(&status(500), 1, Jitter::LONGEST),
            RetryAction::DeadLetter(DlqReason::RetriesExhausted)
        );
        assert_eq!(
            policy.decide(&status(200), 1, Jitter::LONGEST),
            RetryAction::Delivered { status: 200 }
        );
    }

    #[test]
    fn attempt_zero_counts_as_the_first_attempt() {
        assert_eq!(
            policy().decide(&status(500), 0, Jitter::LONGEST),
            policy().decide(&status(500), 1, Jitter::LONGEST)
        );
        let single = RetryPolicy::from_config(&config(1, SECOND, SECOND));
        assert_eq!(
            single.decide(&status(500), 0, Jitter::LONGEST),
            RetryAction::DeadLetter(DlqReason::RetriesExhausted)
        );
    }

    #[test]
    fn non_retryable_status_is_rejected_on_the_first_attempt() {
        assert_eq!(
            policy().decide(&status(410), 1, Jitter::LONGEST),
            RetryAction::DeadLetter(DlqReason::Rejected)
        );
        // Also on the last attempt: rejected says more than exhausted.
        assert_eq!(
            policy().decide(&status(410), 8, Jitter::LONGEST),
            RetryAction::DeadLetter(DlqReason::Rejected)
        );
    }

    #[test]
    fn non_retryable_statuses_come_from_the_configuration() {
        let mut delivery = config(8, SECOND, Duration::from_secs(60));
        delivery.non_retryable_statuses = vec![400, 404];
        let policy = RetryPolicy::from_config(&delivery);
        for code in [400, 404] {
            assert_eq!(
                policy.decide(&status(code), 1, Jitter::LONGEST),
                RetryAction::DeadLetter(DlqReason::Rejected)
            );
        }
        // 410 is only the default; here it is retried.
        assert!(matches!(
            policy.decide(&status(410), 1, Jitter::LONGEST),
            RetryAction::RetryAfter(_)
        ));
    }

    #[test]
    fn non_retryable_status_with_retry_after_is_still_rejected() {
        let mut delivery = config(8, SECOND, Duration::from_secs(60));
        delivery.non_retryable_statuses = vec![429];
        let policy = RetryPolicy::from_config(&delivery);
        assert_eq!(
            policy.decide(&throttled(429, SECOND), 1, Jitter::LONGEST),
            RetryAction::DeadLetter(DlqReason::Rejected)
        );
    }

    #[test]
    fn blocked_destination_is_dead_lettered_at_once() {
        let outcome = AttemptOutcome::BlockedDestination {
            address: "127.0.0.1".parse().unwrap(),
            range: BlockedRange::Loopback,
        };
        for attempt in [1, 8, 100] {
            assert_eq!(
                policy().decide(&outcome, attempt, Jitter::LONGEST),
                RetryAction::DeadLetter(DlqReason::BlockedDestination)
            );
        }
    }

    #[test]
    fn backoff_ceiling_doubles_from_the_initial_backoff_up_to_the_cap() {
        let expected = [1, 2, 4, 8, 16, 32, 60, 60, 60];
        for (attempt, seconds) in (1..).zip(expected) {
            assert_eq!(
                policy().backoff_ceiling(attempt),
                Duration::from_secs(seconds),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn backoff_ceiling_never_overflows() {
        for attempt in [31, 32, 33, 64, 65, 1000, u32::MAX - 1, u32::MAX] {
            assert_eq!(policy().backoff_ceiling(attempt), Duration::from_secs(60));
        }
        // A cap near Duration::MAX: the doubling itself overflows first.
        let huge = RetryPolicy::from_config(&config(
            u32::MAX,
            Duration::from_secs(u64::MAX / 2),
            Duration::MAX,
        ));
        assert_eq!(huge.backoff_ceiling(1), Duration::from_secs(u64::MAX / 2));
        assert_eq!(huge.backoff_ceiling(3), Duration::MAX);
        assert_eq!(huge.backoff(u32::MAX, Jitter::LONGEST), Duration::MAX);
        assert!(matches!(
            huge.decide(&status(500), u32::MAX - 1, Jitter::LONGEST),
            RetryAction::RetryAfter(Duration::MAX)
        ));
    }

    #[test]
    fn equal_jitter_spans_the_upper_half_of_the_ceiling() {
        let policy = policy();
        assert_eq!(
            policy.backoff(1, Jitter::SHORTEST),
            Duration::from_millis(500)
        );
        assert_eq!(policy.backoff(1, Jitter::LONGEST), SECOND);
        assert_eq!(
            policy.backoff(1, Jitter::new(0.5)),
            Duration::from_millis(750)
        );
        assert_eq!(policy.backoff(4, Jitter::SHORTEST), Duration::from_secs(4));
        assert_eq!(policy.backoff(4, Jitter::LONGEST), Duration::from_secs(8));
        assert_eq!(
            policy.backoff(20, Jitter::SHORTEST),
            Duration::from_secs(30)
        );
        assert_eq!(policy.backoff(20, Jitter::LONGEST), Duration::from_secs(60));
    }

    #[test]
    fn retry_delay_is_the_jittered_backoff() {
        assert_eq!(
            retry_after(policy().decide(&status(500), 3, Jitter::SHORTEST)),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_after(policy().decide(&status(500), 3, Jitter::LONGEST)),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn retry_after_longer_than_the_backoff_is_honoured() {
        for code in [429, 503] {
            let delay = retry_after(policy().decide(
                &throttled(code, Duration::from_secs(20)),
                1,
                Jitter::LONGEST,
            ));
            assert_eq!(delay, Duration::from_secs(20), "{code}");
        }
    }

    #[test]
    fn retry_after_is_capped_at_max_backoff() {
        let delay = retry_after(policy().decide(
            &throttled(503, Duration::from_secs(3600)),
            1,
            Jitter::SHORTEST,
        ));
        assert_eq!(delay, Duration::from_secs(60));
        let delay =
            retry_after(policy().decide(&throttled(429, Duration::MAX), 2, Jitter::SHORTEST));
        assert_eq!(delay, Duration::from_secs(60));
    }

    #[test]
    fn retry_after_shorter_than_the_backoff_does_not_shorten_it() {
        // Attempt 5: ceiling 16s, equal jitter at its shortest 8s.
        let delay =
            retry_after(policy().decide(&throttled(503, Duration::ZERO), 5, Jitter::SHORTEST));
        assert_eq!(delay, Duration::from_secs(8));
        let delay = retry_after(policy().decide(
            &throttled(429, Duration::from_secs(2)),
            5,
            Jitter::LONGEST,
        ));
        assert_eq!(delay, Duration::from_secs(16));
    }

    #[test]
    fn retry_after_on_other_statuses_is_ignored() {
        for code in [500, 502, 301, 404] {
            let delay = retry_after(policy().decide(
                &throttled(code, Duration::from_secs(50)),
                1,
                Jitter::LONGEST,
            ));
            assert_eq!(delay, SECOND, "{code}");
        }
    }

    #[test]
    fn retry_after_does_not_outlive_the_last_attempt() {
        assert_eq!(
            policy().decide(&throttled(503, SECOND), 8, Jitter::LONGEST),
            RetryAction::DeadLetter(DlqReason::RetriesExhausted)
        );
    }

    #[test]
    fn per_tenant_overrides_apply() {
        let policy = policy()
            .with_max_attempts(2)
            .with_timeout(Duration::from_secs(5));
        assert_eq!(policy.timeout(), Duration::from_secs(5));
        assert!(matches!(
            policy.decide(&status(500), 1, Jitter::LONGEST),
            RetryAction::RetryAfter(_)
        ));
        assert_eq!(
            policy.decide(&status(500), 2, Jitter::LONGEST),
            RetryAction::DeadLetter(DlqReason::RetriesExhausted)
        );
        assert_eq!(policy.with_max_attempts(0).max_attempts(), 1);
    }

    #[test]
    fn jitter_is_clamped_into_the_unit_interval() {
        assert_eq!(Jitter::new(-3.0), Jitter::SHORTEST);
        assert_eq!(Jitter::new(7.0), Jitter::LONGEST);
        assert_eq!(Jitter::new(f64::NAN), Jitter::SHORTEST);
        assert_eq!(Jitter::new(f64::INFINITY), Jitter::LONGEST);
        assert_eq!(Jitter::new(0.25).fraction(), 0.25);
    }

    #[test]
    fn jitter_from_random_bits_stays_below_one() {
        assert_eq!(Jitter::from_random_bits(0).fraction(), 0.0);
        let top = Jitter::from_random_bits(u64::MAX).fraction();
        assert!(top < 1.0 && top > 0.999_999, "{top}");
        assert_eq!(Jitter::from_random_bits(1 << 63).fraction(), 0.5);
    }

    #[test]
    fn outcome_reports_its_status_and_label() {
        assert_eq!(status(200).status(), Some(200));
        assert_eq!(status(503).status(), Some(503));
        assert_eq!(AttemptOutcome::Timeout { after: SECOND }.status(), None);
        let labels: Vec<&str> = [
            status(200),
            status(500),
            AttemptOutcome::Timeout { after: SECOND },
            AttemptOutcome::Connect {
                error: String::new(),
            },
            AttemptOutcome::Transport {
                error: String::new(),
            },
            AttemptOutcome::BlockedDestination {
                address: "10.0.0.1".parse().unwrap(),
                range: BlockedRange::Private,
            },
        ]
        .iter()
        .map(AttemptOutcome::result_label)
        .collect();
        assert_eq!(
            labels,
            [
                "delivered",
                "http_error",
                "timeout",
                "connect_error",
                "transport_error",
                "blocked_destination"
            ]
        );
    }

    #[test]
    fn outcome_display_is_the_operator_facing_error() {
        assert_eq!(status(503).to_string(), "HTTP 503");
        assert_eq!(
            AttemptOutcome::Timeout {
                after: Duration::from_secs(30)
            }
            .to_string(),
            "no response within 30s"
        );
        assert_eq!(
            AttemptOutcome::Connect {
                error: "connection refused".into()
            }
            .to_string(),
            "cannot connect: connection refused"
        );
        assert_eq!(
            AttemptOutcome::Transport {
                error: "reset".into()
            }
            .to_string(),
            "transport error: reset"
        );
        let blocked = AttemptOutcome::BlockedDestination {
            address: "169.254.169.254".parse().unwrap(),
            range: BlockedRange::LinkLocal,
        };
        assert!(
            blocked
                .to_string()
                .starts_with("destination 169.254.169.254 is blocked: link-local"),
            "{blocked}"
        );
    }

    fn now() -> SystemTime {
        // Sat, 28 Nov 2026 10:00:00 GMT.
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_860_000)
    }

    #[test]
    fn retry_after_delta_seconds() {
        assert_eq!(
            parse_retry_after("120", now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 7\t", now()),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("007", now()),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_date_forms() {
        let in_a_minute = Some(Duration::from_secs(60));
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 10:01:00 GMT", now()),
            in_a_minute
        );
        // The obsolete forms RFC 9110 still asks recipients to accept.
        assert_eq!(
            parse_retry_after("Saturday, 28-Nov-26 10:01:00 GMT", now()),
            in_a_minute
        );
        assert_eq!(
            parse_retry_after("Sat Nov 28 10:01:00 2026", now()),
            in_a_minute
        );
    }

    #[test]
    fn retry_after_date_in_the_past_means_now() {
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 09:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 10:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_none() {
        for value in [
            "",
            "  ",
            "-1",
            "+5",
            "1.5",
            "1e3",
            "soon",
            "Sat, 28 Nov 2026",
            "12 34",
            "٣",
        ] {
            assert_eq!(parse_retry_after(value, now()), None, "{value:?}");
        }
    }

    proptest! {
        #[test]
        fn backoff_stays_within_equal_jitter_bounds(
            attempt in 1u32..=u32::MAX,
            fraction in 0.0f64..=1.0,
            initial_millis in 1u64..=120_000,
            extra_millis in 0u64..=3_600_000,
        ) {
            let initial = Duration::from_millis(initial_millis);
            let max = initial + Duration::from_millis(extra_millis);
            let policy = RetryPolicy::from_config(&config(10, initial, max));
            let ceiling = policy.backoff_ceiling(attempt);
            let delay = policy.backoff(attempt, Jitter::new(fraction));
            prop_assert!(ceiling <= max);
            prop_assert!(ceiling >= initial);
            prop_assert!(delay <= ceiling);
            prop_assert!(delay >= ceiling / 2);
            prop_assert!(delay > Duration::ZERO);
        }

        #[test]
        fn backoff_grows_with_the_attempt_number(attempt in 1u32..200, fraction in 0.0f64..=1.0) {
            let policy = policy();
            let jitter = Jitter::new(fraction);
            prop_assert!(policy.backoff_ceiling(attempt) <= policy.backoff_ceiling(attempt + 1));
            prop_assert!(policy.backoff(attempt, jitter) <= policy.backoff(attempt + 1, jitter));
        }

        #[test]
        fn retry_delay_is_bounded_for_any_outcome(
            code in 100u16..=599,
            retry_after_secs in proptest::option::of(0u64..100_000),
            attempt in 1u32..8,
            bits in any::<u64>(),
        ) {
            let outcome = AttemptOutcome::from_response(code, retry_after_secs.map(Duration::from_secs));
            if let RetryAction::RetryAfter(delay) = policy().decide(&outcome, attempt, Jitter::from_random_bits(bits)) {
                prop_assert!(delay <= Duration::from_secs(60));
                prop_assert!(delay >= policy().backoff_ceiling(attempt) / 2);
            }
        }

        // The same invariants as the `retry_policy` fuzz target, over any
        // policy, outcome, attempt number and jitter.
        #[test]
        fn decide_keeps_its_invariants_for_any_input(
            max_attempts in any::<u32>(),
            initial_nanos in any::<u64>(),
            max_nanos in any::<u64>(),
            non_retryable in proptest::collection::vec(100u16..=599, 0..4),
            kind in 0u8..5,
            status in any::<u16>(),
            retry_after_nanos in proptest::option::of(any::<u64>()),
            attempt in any::<u32>(),
            bits in any::<u64>(),
        ) {
            let mut config = config(max_attempts, Duration::from_nanos(initial_nanos), Duration::from_nanos(max_nanos));
            config.non_retryable_statuses = non_retryable.clone();
            let policy = RetryPolicy::from_config(&config);
            let outcome = match kind {
                0 => AttemptOutcome::from_response(status, retry_after_nanos.map(Duration::from_nanos)),
                1 => AttemptOutcome::Timeout { after: SECOND },
                2 => AttemptOutcome::Connect { error: "refused".into() },
                3 => AttemptOutcome::Transport { error: "reset".into() },
                _ => AttemptOutcome::BlockedDestination {
                    address: std::net::Ipv4Addr::LOCALHOST.into(),
                    range: BlockedRange::Loopback,
                },
            };
            let success = outcome.status().is_some_and(is_success);
            let rejected = !success && outcome.status().is_some_and(|s| non_retryable.contains(&s));
            let blocked = matches!(outcome, AttemptOutcome::BlockedDestination { .. });
            match policy.decide(&outcome, attempt, Jitter::from_random_bits(bits)) {
                RetryAction::Delivered { .. } => prop_assert!(success),
                RetryAction::RetryAfter(delay) => {
                    prop_assert!(!success && !rejected && !blocked);
                    prop_assert!(delay <= policy.max_backoff());
                    prop_assert!(attempt.max(1) < policy.max_attempts());
                }
                RetryAction::DeadLetter(reason) => {
                    prop_assert!(!success);
                    let expected = if rejected {
                        DlqReason::Rejected
                    } else if blocked {
                        DlqReason::BlockedDestination
                    } else {
                        prop_assert!(attempt.max(1) >= policy.max_attempts());
                        DlqReason::RetriesExhausted
                    };
                    prop_assert_eq!(reason, expected);
                }
            }
        }

        #[test]
        fn retry_after_delta_seconds_round_trip(seconds in any::<u64>()) {
            prop_assert_eq!(parse_retry_after(&seconds.to_string(), now()), Some(Duration::from_secs(seconds)));
        }

        #[test]
        fn retry_after_http_date_round_trips(offset in 0u64..10_000_000) {
            let then = now() + Duration::from_secs(offset);
            let header = httpdate::fmt_http_date(then);
            prop_assert_eq!(parse_retry_after(&header, now()), Some(Duration::from_secs(offset)));
        }
    }
}
