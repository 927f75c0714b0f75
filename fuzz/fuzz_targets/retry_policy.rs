//! `RetryPolicy::decide` on arbitrary policies, outcomes, attempt numbers
//! and jitter: never panics; a wait lies within `[0, max_backoff]`; a 2xx is
//! delivered; a retryable failure is dead-lettered once `attempt >=
//! max_attempts` and retried before.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use hookline::config::{DeliveryConfig, DeliveryOrdering};
use hookline::delivery::destination::BlockedRange;
use hookline::delivery::dead_letter::DlqReason;
use hookline::delivery::retry::{AttemptOutcome, Jitter, RetryAction, RetryPolicy};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Outcome {
    Response {
        status: u16,
        retry_after_nanos: Option<u64>,
    },
    Timeout,
    Connect,
    Transport,
    Blocked,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_attempts: u32,
    initial_backoff_nanos: u64,
    max_backoff_nanos: u64,
    non_retryable: Vec<u16>,
    outcome: Outcome,
    attempt: u32,
    jitter_bits: u64,
    jitter_fraction: f64,
    use_fraction: bool,
}

fuzz_target!(|input: Input| {
    let config = DeliveryConfig {
        timeout: Duration::from_secs(30),
        max_attempts: input.max_attempts,
        initial_backoff: Duration::from_nanos(input.initial_backoff_nanos),
        max_backoff: Duration::from_nanos(input.max_backoff_nanos),
        non_retryable_statuses: input.non_retryable.clone(),
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
    };
    let policy = RetryPolicy::from_config(&config);
    let outcome = match input.outcome {
        Outcome::Response {
            status,
            retry_after_nanos,
        } => AttemptOutcome::from_response(status, retry_after_nanos.map(Duration::from_nanos)),
        Outcome::Timeout => AttemptOutcome::Timeout {
            after: Duration::from_secs(1),
        },
        Outcome::Connect => AttemptOutcome::Connect {
            error: "refused".into(),
        },
        Outcome::Transport => AttemptOutcome::Transport {
            error: "reset".into(),
        },
        Outcome::Blocked => AttemptOutcome::BlockedDestination {
            address: std::net::Ipv4Addr::LOCALHOST.into(),
            range: BlockedRange::Loopback,
        },
    };
    let jitter = if input.use_fraction {
        Jitter::new(input.jitter_fraction)
    } else {
        Jitter::from_random_bits(input.jitter_bits)
    };
    let action = policy.decide(&outcome, input.attempt, jitter);

    let success = outcome.status().is_some_and(|s| (200..300).contains(&s));
    let non_retryable = outcome
        .status()
        .is_some_and(|s| !success && input.non_retryable.contains(&s));
    let blocked = matches!(outcome, AttemptOutcome::BlockedDestination { .. });
    match action {
        RetryAction::Delivered { .. } => assert!(success, "{outcome:?} delivered"),
        RetryAction::RetryAfter(delay) => {
            assert!(
                !success && !non_retryable && !blocked,
                "{outcome:?} retried"
            );
            assert!(
                delay <= policy.max_backoff(),
                "{delay:?} > {:?}",
                policy.max_backoff()
            );
            assert!(
                input.attempt.max(1) < policy.max_attempts(),
                "retried at attempt {}",
                input.attempt
            );
        }
        RetryAction::DeadLetter(reason) => {
            assert!(!success, "{outcome:?} dead-lettered");
            let expected = if non_retryable {
                DlqReason::Rejected
            } else if blocked {
                DlqReason::BlockedDestination
            } else {
                assert!(
                    input.attempt.max(1) >= policy.max_attempts(),
                    "gave up at attempt {}",
                    input.attempt
                );
                DlqReason::RetriesExhausted
            };
            assert_eq!(reason, expected);
        }
    }
});
