//! `[delivery]`: HTTP attempts, the retry policy, and the bounds of
//! concurrent delivery within a partition.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::layers::Provenance;

/// Upper bound for `delivery.max_payload_bytes`: Kafka's own default record
/// limit is 1 MiB and no broker is configured for values this large.
const MAX_PAYLOAD_LIMIT: usize = 64 * 1024 * 1024;

/// Accepted `delivery.max_in_flight`. The upper bound lies beyond what one
/// replica usefully keeps open at once, so that a slip of the keyboard (a
/// few zeros too many) is refused rather than obeyed.
const MAX_IN_FLIGHT: RangeInclusive<usize> = 1..=65_536;

/// Accepted `delivery.partition_window`. The commit metadata lists the
/// finished offsets above the committed one; a window of at most 10000
/// offsets keeps that list within Kafka's default
/// `offset.metadata.max.bytes` of 4 KB.
const PARTITION_WINDOW: RangeInclusive<usize> = 1..=10_000;

/// Smallest accepted `delivery.partition_window_bytes`. In a smaller window
/// nearly every record would be taken alone, which is partition order in
/// disguise; `ordering = "partition"` says that plainly.
const MIN_PARTITION_WINDOW_BYTES: usize = 1024;

/// Accepted `delivery.pool_max_idle_per_host`: 0 turns keep-alive off; the
/// upper bound is far beyond any endpoint's useful concurrency.
const POOL_MAX_IDLE_PER_HOST: RangeInclusive<usize> = 0..=4_096;

/// Largest accepted `delivery.pool_max_idle`: each idle connection is a file
/// descriptor, and a process rarely may open more than a million.
const POOL_MAX_IDLE_LIMIT: usize = 1_000_000;

/// Accepted `delivery.pool_idle_timeout`. Shorter than a second would close
/// connections between two deliveries of a steady stream; longer than an
/// hour keeps sockets that most servers have closed long before.
const POOL_IDLE_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);

/// Shortest accepted `delivery.suspension_probe_interval`: probing a
/// failing endpoint more often than once a second is no suspension.
const MIN_SUSPENSION_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Accepted `delivery.prepared_tenants`: a prepared tenant takes about
/// 2 KB, so the upper bound (about 20 GB) is beyond any sensible replica.
const PREPARED_TENANTS: RangeInclusive<usize> = 0..=10_000_000;

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Time allowed for one HTTP attempt. Above zero; default 30 s.
    pub timeout: Duration,
    /// Attempts per event, the first one included. At least 1; default 8.
    pub max_attempts: u32,
    /// Backoff before the second attempt. Above zero; default 1 s.
    pub initial_backoff: Duration,
    /// Longest backoff. Not shorter than `initial_backoff`; default 60 s.
    pub max_backoff: Duration,
    /// Failure statuses (300..=599) that are dead-lettered at once as
    /// `rejected`; default `[410]`.
    pub non_retryable_statuses: Vec<u16>,
    /// Lifts the destination guard, for development only; default `false`.
    pub allow_private_destinations: bool,
    /// Largest event value delivered, in bytes. 1 to 64 MiB; default 1 MiB.
    pub max_payload_bytes: usize,
    /// How a partition's records are delivered; default
    /// [`DeliveryOrdering::Key`].
    pub ordering: DeliveryOrdering,
    /// HTTP attempts in flight at once in one replica, across all its
    /// partitions. 1 to 65536; default 512.
    pub max_in_flight: usize,
    /// Records a partition may hold beyond its committed offset: the span
    /// of offsets from its lowest unfinished record to the newest record
    /// read. When it is full the partition reads nothing more until its
    /// lowest record finishes. 1 to 10000; default 1000.
    pub partition_window: usize,
    /// Bytes of record keys, values and headers a partition may hold in its
    /// window; a single record larger than this is still taken, alone. At
    /// least 1024; default 8 MiB.
    pub partition_window_bytes: usize,
    /// Consecutive events of one tenant ending as `retries_exhausted` after
    /// which the tenant is suspended: its events are dead-lettered as
    /// `tenant_suspended` without attempts until a probe succeeds. 0
    /// disables suspension; default 3.
    pub suspend_after: u32,
    /// How often a suspended tenant's next event gets a real attempt. At
    /// least 1 s; default 5 min.
    pub suspension_probe_interval: Duration,
    /// Writes each dead letter and the commit of its source record's offset
    /// in one Kafka transaction, so that a replica that dies between the two
    /// leaves no second dead letter of the record. Readers of the dead-letter
    /// topic must then read with `isolation.level=read_committed`. Default
    /// `false`.
    pub transactional_dlq: bool,
    /// Idle keep-alive connections kept per destination host (scheme, host
    /// and port). 0 to 4096, 0 turning keep-alive off; default 512.
    pub pool_max_idle_per_host: usize,
    /// Idle keep-alive connections kept in all, across hosts; beyond it
    /// the oldest idle connection is closed. At most 1,000,000; default
    /// 8192.
    pub pool_max_idle: usize,
    /// How long a keep-alive connection may stay idle before it is closed.
    /// 1 s to 1 h; default 60 s.
    pub pool_idle_timeout: Duration,
    /// Recently active tenants whose encryption key (prepared in aws-lc)
    /// and parsed URL are kept, about 2 KB each; the others keep only the
    /// compact form of their record and are prepared again, a few
    /// microseconds, at their next delivery. Default 50000; 0 prepares at
    /// every attempt.
    pub prepared_tenants: usize,
}

/// How a partition's records are delivered (`delivery.ordering`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryOrdering {
    /// Records of different tenants (record keys) are delivered
    /// concurrently; each tenant's records strictly in order.
    Key,
    /// One record at a time per partition, in offset order.
    Partition,
}

/// `[delivery]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    max_attempts: u32,
    #[serde(with = "humantime_serde")]
    initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    max_backoff: Duration,
    non_retryable_statuses: Vec<u16>,
    allow_private_destinations: bool,
    max_payload_bytes: usize,
    ordering: DeliveryOrdering,
    max_in_flight: usize,
    partition_window: usize,
    partition_window_bytes: usize,
    suspend_after: u32,
    #[serde(with = "humantime_serde")]
    suspension_probe_interval: Duration,
    transactional_dlq: bool,
    pool_max_idle_per_host: usize,
    pool_max_idle: usize,
    #[serde(with = "humantime_serde")]
    pool_idle_timeout: Duration,
    prepared_tenants: usize,
}

impl Raw {
    pub(super) fn validate(self, at: &Provenance) -> Result<DeliveryConfig, ConfigError> {
        if self.timeout.is_zero() {
            return Err(at.invalid("delivery.timeout", "must be above zero"));
        }
        if self.max_attempts == 0 {
            return Err(at.invalid("delivery.max_attempts", "must be at least 1"));
        }
        if self.initial_backoff.is_zero() {
            return Err(at.invalid("delivery.initial_backoff", "must be above zero"));
        }
        if self.max_backoff < self.initial_backoff {
            return Err(at.invalid(
                "delivery.max_backoff",
                format!(
                    "must not be shorter than delivery.initial_backoff ({})",
                    humantime::format_duration(self.initial_backoff)
                ),
            ));
        }
        if let Some(status) = self
            .non_retryable_statuses
            .iter()
            .find(|status| !(300..=599).contains(*status))
        {
            return Err(at.invalid(
                "delivery.non_retryable_statuses",
                format!("{status} is not an HTTP failure status (300..=599)"),
            ));
        }
        within(
            at,
            "delivery.max_payload_bytes",
            self.max_payload_bytes,
            &(1..=MAX_PAYLOAD_LIMIT),
        )?;
        within(
            at,
            "delivery.max_in_flight",
            self.max_in_flight,
            &MAX_IN_FLIGHT,
        )?;
        within(
            at,
            "delivery.partition_window",
            self.partition_window,
            &PARTITION_WINDOW,
        )?;
        if self.partition_window_bytes < MIN_PARTITION_WINDOW_BYTES {
            return Err(at.invalid(
                "delivery.partition_window_bytes",
                format!("must be at least {MIN_PARTITION_WINDOW_BYTES}"),
            ));
        }
        within(
            at,
            "delivery.prepared_tenants",
            self.prepared_tenants,
            &PREPARED_TENANTS,
        )?;
        if self.suspension_probe_interval < MIN_SUSPENSION_PROBE_INTERVAL {
            return Err(at.invalid(
                "delivery.suspension_probe_interval",
                format!(
                    "must be at least {}",
                    humantime::format_duration(MIN_SUSPENSION_PROBE_INTERVAL)
                ),
            ));
        }
        within(
            at,
            "delivery.pool_max_idle_per_host",
            self.pool_max_idle_per_host,
            &POOL_MAX_IDLE_PER_HOST,
        )?;
        within(
            at,
            "delivery.pool_max_idle",
            self.pool_max_idle,
            &(0..=POOL_MAX_IDLE_LIMIT),
        )?;
        if !POOL_IDLE_TIMEOUT.contains(&self.pool_idle_timeout) {
            return Err(at.invalid(
                "delivery.pool_idle_timeout",
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(*POOL_IDLE_TIMEOUT.start()),
                    humantime::format_duration(*POOL_IDLE_TIMEOUT.end())
                ),
            ));
        }
        Ok(DeliveryConfig {
            timeout: self.timeout,
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            non_retryable_statuses: self.non_retryable_statuses,
            allow_private_destinations: self.allow_private_destinations,
            max_payload_bytes: self.max_payload_bytes,
            ordering: self.ordering,
            max_in_flight: self.max_in_flight,
            partition_window: self.partition_window,
            partition_window_bytes: self.partition_window_bytes,
            suspend_after: self.suspend_after,
            suspension_probe_interval: self.suspension_probe_interval,
            transactional_dlq: self.transactional_dlq,
            pool_max_idle_per_host: self.pool_max_idle_per_host,
            pool_max_idle: self.pool_max_idle,
            pool_idle_timeout: self.pool_idle_timeout,
            prepared_tenants: self.prepared_tenants,
        })
    }
}

/// Refuses a count outside `range`, naming the range.
fn within(
    at: &Provenance,
    key: &str,
    value: usize,
    range: &RangeInclusive<usize>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(at.invalid(
        key,
        format!("must be between {} and {}", range.start(), range.end()),
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::DeliveryOrdering;
    use crate::config::testing::{err, err_env, load, load_env};

    #[test]
    fn file_overrides_defaults_key_by_key() {
        let config = load("[delivery]\nmax_attempts = 3\n").unwrap();
        assert_eq!(config.delivery.max_attempts, 3);
        // Untouched keys of the same table keep their defaults.
        assert_eq!(config.delivery.timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_duration_is_named() {
        let e = err("[delivery]\ntimeout = \"5 parsecs\"\n");
        assert!(e.contains("delivery.timeout"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err("[delivery]\nmax_attempts = \"eight\"\n");
        assert!(e.contains("delivery.max_attempts"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn rule_timeout_above_zero() {
        assert!(err("[delivery]\ntimeout = \"0s\"\n").contains("delivery.timeout"));
    }

    #[test]
    fn rule_max_attempts_at_least_one() {
        assert!(err("[delivery]\nmax_attempts = 0\n").contains("delivery.max_attempts"));
    }

    #[test]
    fn rule_initial_backoff_above_zero() {
        assert!(err("[delivery]\ninitial_backoff = \"0s\"\n").contains("delivery.initial_backoff"));
    }

    #[test]
    fn rule_max_backoff_not_below_initial() {
        let e = err("[delivery]\ninitial_backoff = \"10s\"\nmax_backoff = \"5s\"\n");
        assert!(e.contains("delivery.max_backoff"), "{e}");
    }

    #[test]
    fn rule_non_retryable_statuses_are_failures() {
        let e = err("[delivery]\nnon_retryable_statuses = [410, 200]\n");
        assert!(e.contains("200 is not an HTTP failure status"), "{e}");
    }

    #[test]
    fn rule_max_payload_bytes_bounded() {
        assert!(err("[delivery]\nmax_payload_bytes = 0\n").contains("delivery.max_payload_bytes"));
        assert!(
            err("[delivery]\nmax_payload_bytes = 1000000000\n")
                .contains("delivery.max_payload_bytes")
        );
    }

    #[test]
    fn key_order_keys_default_as_documented() {
        let delivery = load("").unwrap().delivery;
        assert_eq!(delivery.ordering, DeliveryOrdering::Key);
        assert_eq!(delivery.max_in_flight, 512);
        assert_eq!(delivery.partition_window, 1000);
        assert_eq!(delivery.partition_window_bytes, 8 * 1024 * 1024);
        assert_eq!(delivery.suspend_after, 3);
        assert_eq!(
            delivery.suspension_probe_interval,
            Duration::from_secs(5 * 60)
        );
        // Off until an operator opts in: it needs read_committed readers.
        assert!(!delivery.transactional_dlq);
    }

    #[test]
    fn transactional_dlq_is_set_from_the_file_or_the_environment() {
        let from_file = load("[delivery]\ntransactional_dlq = true\n").unwrap();
        assert!(from_file.delivery.transactional_dlq);
        let from_env = load_env("", &[("HOOKLINE__DELIVERY__TRANSACTIONAL_DLQ", "true")]).unwrap();
        assert!(from_env.delivery.transactional_dlq);
    }

    #[test]
    fn pool_keys_default_as_documented() {
        let delivery = load("").unwrap().delivery;
        assert_eq!(delivery.pool_max_idle_per_host, 512);
        assert_eq!(delivery.pool_max_idle, 8192);
        assert_eq!(delivery.pool_idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn pool_keys_take_their_bounds_from_the_file_or_the_environment() {
        let delivery = load(
            "[delivery]\npool_max_idle_per_host = 0\npool_max_idle = 0\npool_idle_timeout = \"1s\"\n",
        )
        .unwrap()
        .delivery;
        assert_eq!(delivery.pool_max_idle_per_host, 0);
        assert_eq!(delivery.pool_max_idle, 0);
        assert_eq!(delivery.pool_idle_timeout, Duration::from_secs(1));
        let delivery = load_env(
            "",
            &[
                ("HOOKLINE__DELIVERY__POOL_MAX_IDLE_PER_HOST", "4096"),
                ("HOOKLINE__DELIVERY__POOL_MAX_IDLE", "1000000"),
                ("HOOKLINE__DELIVERY__POOL_IDLE_TIMEOUT", "1h"),
            ],
        )
        .unwrap()
        .delivery;
        assert_eq!(delivery.pool_max_idle_per_host, 4096);
        assert_eq!(delivery.pool_max_idle, 1_000_000);
        assert_eq!(delivery.pool_idle_timeout, Duration::from_secs(3600));
    }

    #[test]
    fn pool_keys_refuse_what_is_out_of_bounds() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (
                &[("POOL_MAX_IDLE_PER_HOST", "4097")],
                "delivery.pool_max_idle_per_host: must be between 0 and 4096",
            ),
            (
                &[("POOL_MAX_IDLE_PER_HOST", "-1")],
                "delivery.pool_max_idle_per_host: cannot be parsed: invalid value",
            ),
            (
                &[("POOL_MAX_IDLE", "1000001")],
                "delivery.pool_max_idle: must be between 0 and 1000000",
            ),
            (
                &[("POOL_IDLE_TIMEOUT", "999ms")],
                "delivery.pool_idle_timeout: must be between 1s and 1h",
            ),
            (
                &[("POOL_IDLE_TIMEOUT", "2h")],
                "delivery.pool_idle_timeout: must be between 1s and 1h",
            ),
        ];
        for (settings, expected) in cases {
            let env: Vec<(String, &str)> = settings
                .iter()
                .map(|(key, value)| (format!("HOOKLINE__DELIVERY__{key}"), *value))
                .collect();
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let e = err_env(&env);
            let (variable, _) = env.last().unwrap();
            assert!(
                e.starts_with(&format!("environment variable {variable}: {expected}")),
                "{settings:?}: {e}"
            );
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn key_order_keys_take_their_bounds_from_the_environment() {
        let delivery = load_env(
            "",
            &[
                ("HOOKLINE__DELIVERY__ORDERING", "partition"),
                ("HOOKLINE__DELIVERY__MAX_IN_FLIGHT", "65536"),
                ("HOOKLINE__DELIVERY__PARTITION_WINDOW", "10000"),
                ("HOOKLINE__DELIVERY__PARTITION_WINDOW_BYTES", "1024"),
                // 0 disables suspension rather than suspending at once.
                ("HOOKLINE__DELIVERY__SUSPEND_AFTER", "0"),
                ("HOOKLINE__DELIVERY__SUSPENSION_PROBE_INTERVAL", "1s"),
            ],
        )
        .unwrap()
        .delivery;
        assert_eq!(delivery.ordering, DeliveryOrdering::Partition);
        assert_eq!(delivery.max_in_flight, 65_536);
        assert_eq!(delivery.partition_window, 10_000);
        assert_eq!(delivery.partition_window_bytes, 1024);
        assert_eq!(delivery.suspend_after, 0);
        assert_eq!(delivery.suspension_probe_interval, Duration::from_secs(1));
    }

    #[test]
    fn key_order_keys_refuse_what_is_out_of_bounds() {
        let cases = [
            (
                "ORDERING",
                "tenant",
                "delivery.ordering: cannot be parsed: unknown variant: found `tenant`",
            ),
            (
                "MAX_IN_FLIGHT",
                "0",
                "delivery.max_in_flight: must be between 1 and 65536",
            ),
            (
                "MAX_IN_FLIGHT",
                "65537",
                "delivery.max_in_flight: must be between 1 and 65536",
            ),
            (
                "PARTITION_WINDOW",
                "0",
                "delivery.partition_window: must be between 1 and 10000",
            ),
            (
                "PARTITION_WINDOW",
                "10001",
                "delivery.partition_window: must be between 1 and 10000",
            ),
            (
                "PARTITION_WINDOW_BYTES",
                "1023",
                "delivery.partition_window_bytes: must be at least 1024",
            ),
            (
                "SUSPEND_AFTER",
                "-1",
                "delivery.suspend_after: cannot be parsed: invalid value",
            ),
            (
                "SUSPENSION_PROBE_INTERVAL",
                "999ms",
                "delivery.suspension_probe_interval: must be at least 1s",
            ),
            (
                "SUSPENSION_PROBE_INTERVAL",
                "soon",
                "delivery.suspension_probe_interval: cannot be parsed: invalid value",
            ),
        ];
        for (key, value, expected) in cases {
            let variable = format!("HOOKLINE__DELIVERY__{key}");
            let e = err_env(&[(&variable, value)]);
            assert!(
                e.starts_with(&format!("environment variable {variable}: {expected}")),
                "{variable}={value}: {e}"
            );
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
