//! Every metric hookline exports: its name, labels, buckets and the one
//! function that records it. Other modules call these functions and never
//! name a metric themselves, so the exported set (DESIGN §10) is readable in
//! one file.
//!
//! Label values are `&'static str` from closed sets (`Outcome::label`,
//! `AttemptOutcome::result_label`, `DlqReason::as_str`) or partition numbers;
//! a `tenant` label is added only when `telemetry.tenant_labels` is on, and
//! only for tenants present in the tenant table.
//!
//! As Prometheus advises, every counter whose label values are known in
//! advance exists from the start at 0, so that `rate()` and an alert on one
//! dead-letter reason work before the first such event. Series with a
//! `tenant` label are not created ahead: tenants come and go without bound.

use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Records finished, by `outcome`: `delivered`, `dead_lettered`, `filtered`.
pub const DELIVERIES_TOTAL: &str = "hookline_deliveries_total";
/// HTTP attempts, by `result` (`AttemptOutcome::result_label`).
pub const DELIVERY_ATTEMPTS_TOTAL: &str = "hookline_delivery_attempts_total";
/// Records written to the dead-letter topic, by `reason` (`dlq.reason`).
pub const DEAD_LETTERS_TOTAL: &str = "hookline_dead_letters_total";
/// Duration of one HTTP attempt, in seconds.
pub const DELIVERY_ATTEMPT_DURATION_SECONDS: &str = "hookline_delivery_attempt_duration_seconds";
/// From the event's timestamp to the 2xx answer, in seconds.
pub const END_TO_END_LATENCY_SECONDS: &str = "hookline_end_to_end_latency_seconds";
/// Entries in the tenant table (valid and invalid records).
pub const TENANTS: &str = "hookline_tenants";
/// Entries in the tenant table whose record does not validate.
pub const TENANTS_INVALID: &str = "hookline_tenants_invalid";
/// Partitions of the events topic assigned to this replica.
pub const PARTITIONS_ASSIGNED: &str = "hookline_partitions_assigned";
/// Assigned partitions whose lowest unfinished record is waiting (backoff,
/// or a schema registry that cannot be reached).
pub const PARTITIONS_BACKING_OFF: &str = "hookline_partitions_backing_off";
/// High watermark minus the worker's position, by `partition`.
pub const CONSUMER_LAG: &str = "hookline_consumer_lag";
/// Tenants suspended on the partitions this replica owns.
pub const TENANTS_SUSPENDED: &str = "hookline_tenants_suspended";
/// Tenants resuming: their new events are parked behind the replay of
/// the ones parked while an operator suspended them.
pub const TENANTS_RESUMING: &str = "hookline_tenants_resuming";
/// Tenants whose current event waits between two attempts.
pub const TENANTS_BACKING_OFF: &str = "hookline_tenants_backing_off";
/// Assigned partitions whose window is full, so that nothing more is read.
pub const PARTITIONS_WINDOW_FULL: &str = "hookline_partitions_window_full";

/// Buckets of one attempt: a quick receiver answers in milliseconds, the
/// default `delivery.timeout` is 30 s.
const ATTEMPT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets of the end-to-end latency: from a fresh event (tens of
/// milliseconds) to one that waited out a long backoff or an outage (hours).
const END_TO_END_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    21600.0, 86400.0,
];

/// The metrics recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(#[source] BuildError);

/// Installs the process-wide Prometheus recorder and returns the handle that
/// renders it, with the delivery counters at 0 (see `start_counters_at_zero`).
/// A second call returns the first handle: the `metrics` facade has one
/// global recorder per process, and tests start several replicas in one
/// process.
///
/// `dead_letter_reasons` are the values of the `reason` label of
/// [`DEAD_LETTERS_TOTAL`]: the caller passes `DlqReason::ALL`, because
/// telemetry knows no delivery types, and so a reason added there is
/// exported here without a change.
pub fn install(dead_letter_reasons: &[&'static str]) -> Result<PrometheusHandle, MetricsError> {
    // The handle is the only global: the facade's recorder is global by
    // design. Installing holds a lock, so that concurrent first calls (tests
    // run in parallel) all get the one recorder instead of racing to
    // install it and failing.
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    let handle = match slot.as_ref() {
        Some(handle) => handle.clone(),
        None => {
            let handle = build_and_install()?;
            *slot = Some(handle.clone());
            handle
        }
    };
    // On every call, not only the first: creating a series that exists
    // leaves its value alone, and a later caller's reasons count as much as
    // the first one's.
    start_counters_at_zero(dead_letter_reasons);
    Ok(handle)
}

fn build_and_install() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(DELIVERY_ATTEMPT_DURATION_SECONDS.to_string()),
            ATTEMPT_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(END_TO_END_LATENCY_SECONDS.to_string()),
                END_TO_END_BUCKETS,
            )
        })
        .map_err(MetricsError)?
        .install_recorder()
        .map_err(MetricsError)?;
    describe();
    // Gauges start at zero so that dashboards and alerts see them before the
    // first assignment.
    gauge!(PARTITIONS_ASSIGNED).set(0.0);
    gauge!(PARTITIONS_BACKING_OFF).set(0.0);
    describe_scheduling();
    Ok(handle)
}

/// Creates every tenant-less series of the three delivery counters, at 0
/// unless it already counts something: [`DELIVERIES_TOTAL`] per
/// [`OUTCOME_LABELS`], [`DELIVERY_ATTEMPTS_TOTAL`] per [`RESULT_LABELS`] and
/// [`DEAD_LETTERS_TOTAL`] per `dead_letter_reasons`. Without an installed
/// recorder this does nothing.
fn start_counters_at_zero(dead_letter_reasons: &[&'static str]) {
    // Looking a counter up creates its series; adding 0 leaves the value of
    // one that already counts something as it is.
    for &outcome in &OUTCOME_LABELS {
        counter!(DELIVERIES_TOTAL, "outcome" => outcome).increment(0);
    }
    for &result in &RESULT_LABELS {
        counter!(DELIVERY_ATTEMPTS_TOTAL, "result" => result).increment(0);
    }
    for &reason in dead_letter_reasons {
        counter!(DEAD_LETTERS_TOTAL, "reason" => reason).increment(0);
    }
}

fn describe() {
    describe_counter!(
        DELIVERIES_TOTAL,
        "Records carried to an outcome: delivered, dead_lettered or filtered."
    );
    describe_counter!(DELIVERY_ATTEMPTS_TOTAL, "HTTP delivery attempts by result.");
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        "Records written to the dead-letter topic by reason."
    );
    describe_histogram!(
        DELIVERY_ATTEMPT_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one HTTP delivery attempt."
    );
    describe_histogram!(
        END_TO_END_LATENCY_SECONDS,
        metrics::Unit::Seconds,
        "From the event's timestamp to the receiver's 2xx answer."
    );
    describe_gauge!(TENANTS, "Entries in the tenant table.");
    describe_gauge!(TENANTS_INVALID, "Tenant records that do not validate.");
    describe_gauge!(
        PARTITIONS_ASSIGNED,
        "Partitions of the events topic assigned to this replica."
    );
    describe_gauge!(
        PARTITIONS_BACKING_OFF,
        "Assigned partitions whose lowest unfinished record waits before its next attempt."
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Records between this replica's position and the high watermark, per partition."
    );
}

/// Every value of the `outcome` label of [`DELIVERIES_TOTAL`].
pub const OUTCOME_LABELS: [&str; 3] = ["delivered", "filtered", "dead_lettered"];

/// Every value of the `result` label of [`DELIVERY_ATTEMPTS_TOTAL`].
pub const RESULT_LABELS: [&str; 6] = [
    "delivered",
    "http_error",
    "timeout",
    "connect_error",
    "transport_error",
    "blocked_destination",
];

/// The delivery counters, labelled as `telemetry.tenant_labels` says.
#[derive(Default)]
pub struct DeliveryMetrics {
    tenant_labels: bool,
    /// Handles of the series without a tenant label, looked up once: a
    /// lookup builds the series key and hashes it, on every delivery
    /// otherwise. Resolved on first use, once the recorder is installed.
    handles: OnceLock<Handles>,
}

struct Handles {
    deliveries: Vec<(&'static str, Counter)>,
    attempts: Vec<(&'static str, Counter)>,
    attempt_duration: Histogram,
    end_to_end_latency: Histogram,
}

impl Handles {
    fn resolve() -> Self {
        Self {
            deliveries: OUTCOME_LABELS
                .iter()
                .map(|&outcome| (outcome, counter!(DELIVERIES_TOTAL, "outcome" => outcome)))
                .collect(),
            attempts: RESULT_LABELS
                .iter()
                .map(|&result| {
                    (
                        result,
                        counter!(DELIVERY_ATTEMPTS_TOTAL, "result" => result),
                    )
                })
                .collect(),
            attempt_duration: histogram!(DELIVERY_ATTEMPT_DURATION_SECONDS),
            end_to_end_latency: histogram!(END_TO_END_LATENCY_SECONDS),
        }
    }
}

/// The handle for `label`, if it is one of the resolved ones.
fn find<'a>(handles: &'a [(&'static str, Counter)], label: &str) -> Option<&'a Counter> {
    handles.iter().find(|(l, _)| *l == label).map(|(_, c)| c)
}

impl fmt::Debug for DeliveryMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryMetrics")
            .field("tenant_labels", &self.tenant_labels)
            .finish_non_exhaustive()
    }
}

impl DeliveryMetrics {
    pub fn new(tenant_labels: bool) -> Self {
        Self {
            tenant_labels,
            handles: OnceLock::new(),
        }
    }

    fn handles(&self) -> &Handles {
        self.handles.get_or_init(Handles::resolve)
    }

    /// A record reached its outcome (`delivered`, `dead_lettered`,
    /// `filtered`). `tenant` is `None` when the record names no known tenant.
    pub fn delivery_finished(&self, outcome: &'static str, tenant: Option<&str>) {
        match self.tenant(tenant) {
            Some(t) => counter!(DELIVERIES_TOTAL, "outcome" => outcome, "tenant" => t).increment(1),
            None => match find(&self.handles().deliveries, outcome) {
                Some(counter) => counter.increment(1),
                None => counter!(DELIVERIES_TOTAL, "outcome" => outcome).increment(1),
            },
        }
    }

    /// One HTTP attempt ended with `result` after `duration`.
    pub fn attempt_finished(&self, result: &'static str, duration: Duration, tenant: Option<&str>) {
        let handles = self.handles();
        match self.tenant(tenant) {
            Some(t) => {
                counter!(DELIVERY_ATTEMPTS_TOTAL, "result" => result, "tenant" => t).increment(1)
            }
            None => match find(&handles.attempts, result) {
                Some(counter) => counter.increment(1),
                None => counter!(DELIVERY_ATTEMPTS_TOTAL, "result" => result).increment(1),
            },
        }
        handles.attempt_duration.record(duration.as_secs_f64());
    }

    /// A delivery was answered with a 2xx `latency` after its event's
    /// timestamp (zero when the producer's clock is ahead).
    pub fn end_to_end_latency(&self, latency: Duration) {
        self.handles()
            .end_to_end_latency
            .record(latency.as_secs_f64());
    }

    /// A record was written to the dead-letter topic for `reason`.
    pub fn dead_lettered(&self, reason: &'static str, tenant: Option<&str>) {
        match self.tenant(tenant) {
            Some(t) => counter!(DEAD_LETTERS_TOTAL, "reason" => reason, "tenant" => t),
            None => counter!(DEAD_LETTERS_TOTAL, "reason" => reason),
        }
        .increment(1);
    }

    fn tenant(&self, tenant: Option<&str>) -> Option<String> {
        tenant.filter(|_| self.tenant_labels).map(str::to_owned)
    }
}

/// The tenant table holds `tenants` entries, `invalid` of them invalid.
pub fn tenants(tenants: usize, invalid: usize) {
    gauge!(TENANTS).set(tenants as f64);
    gauge!(TENANTS_INVALID).set(invalid as f64);
}

/// This replica now owns `partitions` partitions of the events topic.
pub fn partitions_assigned(partitions: usize) {
    gauge!(PARTITIONS_ASSIGNED).set(partitions as f64);
}

/// Describes the gauges of key-ordered scheduling and sets them to zero.
fn describe_scheduling() {
    describe_gauge!(
        TENANTS_SUSPENDED,
        "Tenants suspended on this replica's partitions: their events go to the dead-letter topic as tenant_suspended until a probe succeeds."
    );
    describe_gauge!(
        TENANTS_RESUMING,
        "Tenants owing the replay of events parked while an operator suspended them: their new events are parked behind those until `hookline tenants resume` has replayed them."
    );
    describe_gauge!(
        TENANTS_BACKING_OFF,
        "Tenants whose current event waits before its next attempt."
    );
    describe_gauge!(
        PARTITIONS_WINDOW_FULL,
        "Assigned partitions whose window of unfinished records is full: nothing more is read until the lowest finishes."
    );
    for name in [
        TENANTS_SUSPENDED,
        TENANTS_RESUMING,
        TENANTS_BACKING_OFF,
        PARTITIONS_WINDOW_FULL,
    ] {
        gauge!(name).set(0.0);
    }
}

/// A partition's suspended tenants changed by `delta`.
pub fn tenants_suspended_changed(delta: i64) {
    adjust(TENANTS_SUSPENDED, delta);
}

/// A partition's resuming tenants changed by `delta`.
pub fn tenants_resuming_changed(delta: i64) {
    adjust(TENANTS_RESUMING, delta);
}

/// A partition's tenants backing off changed by `delta`.
pub fn tenants_backing_off_changed(delta: i64) {
    adjust(TENANTS_BACKING_OFF, delta);
}

/// A partition's lowest unfinished record started (1) or stopped (-1)
/// waiting before its next attempt.
pub fn partitions_backing_off_changed(delta: i64) {
    adjust(PARTITIONS_BACKING_OFF, delta);
}

/// A partition's window filled (1) or got room again (-1).
pub fn partitions_window_full_changed(delta: i64) {
    adjust(PARTITIONS_WINDOW_FULL, delta);
}

fn adjust(name: &'static str, delta: i64) {
    if delta != 0 {
        gauge!(name).increment(delta as f64);
    }
}

/// `partition` is `lag` records behind its high watermark.
pub fn consumer_lag(partition: i32, lag: i64) {
    gauge!(CONSUMER_LAG, "partition" => partition.to_string()).set(lag as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label values, and the tenant label's opt-in, as rendered. The
    /// tenant names are unique to this test: the recorder is global.
    #[test]
    fn tenant_label_only_when_enabled() {
        let handle = install(&[]).unwrap();
        DeliveryMetrics::new(false).delivery_finished("delivered", Some("unit-off"));
        DeliveryMetrics::new(true).delivery_finished("filtered", Some("unit-on"));
        DeliveryMetrics::new(true).dead_lettered("unknown_tenant", None);
        let resolved = DeliveryMetrics::new(false);
        resolved.attempt_finished("timeout", Duration::from_millis(5), None);
        resolved.attempt_finished("timeout", Duration::from_millis(5), None);
        let text = handle.render();
        assert!(!text.contains("unit-off"), "{text}");
        // Through the handles resolved on first use, as on a replica.
        assert!(
            text.contains(r#"hookline_delivery_attempts_total{result="timeout"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"hookline_deliveries_total{outcome="filtered",tenant="unit-on"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"hookline_dead_letters_total{reason="unknown_tenant"}"#),
            "{text}"
        );
        assert!(text.contains("hookline_partitions_assigned 0"), "{text}");
    }

    /// The value of the sample `series` (name and labels, as rendered), if
    /// it is exported.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.trim().parse().unwrap())
    }

    /// Counters with known labels are exported before anything is counted.
    /// The recorder is global and other tests count deliveries in
    /// parallel, so the values asserted at 0 are those of reasons only this
    /// test names; the other series must exist.
    #[test]
    fn counters_with_known_labels_exist_from_the_start() {
        let handle = install(&["unit_zero_first", "unit_zero_second"]).unwrap();
        let text = handle.render();
        for outcome in OUTCOME_LABELS {
            let series = format!(r#"hookline_deliveries_total{{outcome="{outcome}"}}"#);
            assert!(sample(&text, &series).is_some(), "{series} in:\n{text}");
        }
        for result in RESULT_LABELS {
            let series = format!(r#"hookline_delivery_attempts_total{{result="{result}"}}"#);
            assert!(sample(&text, &series).is_some(), "{series} in:\n{text}");
        }
        for reason in ["unit_zero_first", "unit_zero_second"] {
            let series = format!(r#"hookline_dead_letters_total{{reason="{reason}"}}"#);
            assert_eq!(sample(&text, &series), Some(0.0), "{series} in:\n{text}");
        }

        // Installing again neither resets a series nor forgets a reason.
        DeliveryMetrics::new(false).dead_lettered("unit_zero_first", None);
        let text = install(&["unit_zero_third"]).unwrap().render();
        let series = |reason: &str| format!(r#"hookline_dead_letters_total{{reason="{reason}"}}"#);
        assert_eq!(
            sample(&text, &series("unit_zero_first")),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, &series("unit_zero_second")),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, &series("unit_zero_third")),
            Some(0.0),
            "{text}"
        );
    }

    #[test]
    fn install_twice_returns_the_same_recorder() {
        let first = install(&[]).unwrap();
        let second = install(&[]).unwrap();
        consumer_lag(9_999, 7);
        assert!(
            first
                .render()
                .contains(r#"hookline_consumer_lag{partition="9999"} 7"#)
        );
        assert!(
            second
                .render()
                .contains(r#"hookline_consumer_lag{partition="9999"} 7"#)
        );
    }
}
