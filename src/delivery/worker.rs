//! The per-partition worker: takes records in offset order and carries each
//! one to a durable outcome (delivered, filtered out, or dead-lettered)
//! before it takes the next. Only then is the offset stored.
//!
//! Two tokens steer a worker. `stop` asks it to take no new record (a
//! graceful shutdown or revocation): an attempt already sent may finish,
//! a backoff wait ends at once. `abort` abandons the record in flight: its
//! offset is not stored and whoever owns the partition next delivers it
//! again, with the same `webhook-id`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dead_letter::writer::{Abandoned, DeadLetterWriter};
use super::dead_letter::{DeadLetter, DecodeErrorExt as _, DlqReason};
use super::http::{WebhookClient, WebhookRequest};
use super::progress::PartitionProgress;
use super::retry::{AttemptOutcome, Jitter, RetryAction, RetryPolicy};
use crate::crypto::signature::unix_seconds;
use crate::events::{Event, EventDecoder, RecordParts};
use crate::kafka::group::{PartitionHandle, PartitionQueue, Record};
use crate::telemetry::metrics::{self, DeliveryMetrics};
use crate::tenants::{Tenant, TenantEntry, TenantTable};

/// Backoffs at least this long pause the partition's fetching.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// Everything the workers share: one HTTP pool, one tenant table, one
/// dead-letter producer.
pub struct Pipeline {
    pub table: TenantTable,
    pub client: WebhookClient,
    pub policy: RetryPolicy,
    pub decoder: EventDecoder,
    pub dead_letters: DeadLetterWriter,
    pub max_payload_bytes: usize,
    pub metrics: DeliveryMetrics,
}

/// How a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The tenant is not subscribed to this event type.
    Filtered,
    DeadLettered(DlqReason),
}

impl Outcome {
    /// The `outcome` label of `hookline_deliveries_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Filtered => "filtered",
            Outcome::DeadLettered(_) => "dead_lettered",
        }
    }
}

/// How often a worker samples its partition's consumer lag.
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Works on one partition until `stop` or `abort` is cancelled or the
/// partition turns out to be no longer assigned.
pub async fn run_partition(
    pipeline: Arc<Pipeline>,
    queue: PartitionQueue,
    handle: PartitionHandle,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let mut progress = PartitionProgress::new();
    let lag = LagSampler::start(handle.clone());
    loop {
        let record = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            record = queue.next() => record,
        };
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(partition = handle.partition(), error = %e, "fetch error");
                continue;
            }
        };
        let (partition, offset) = (record.partition(), record.offset());
        progress.start(offset);
        lag.at(offset);
        // Identifiers only: the payload, the key and the tenant's secrets
        // never go into a span or an event.
        let span = tracing::info_span!(
            "delivery",
            partition,
            offset,
            tenant = tracing::field::Empty,
            attempt = tracing::field::Empty,
        );
        let outcome = pipeline
            .process(&record, &handle, &stop, &abort)
            .instrument(span)
            .await;
        match outcome {
            Ok(outcome) => {
                tracing::debug!(partition, offset, ?outcome, "done");
                if let Some(done) = progress.finish(offset)
                    && let Err(e) = handle.store_done(done)
                {
                    // Storing fails when the partition is no longer ours
                    // (this member was thrown out of the group): stop at
                    // once, the new owner redelivers from the last commit.
                    tracing::warn!(partition, error = %e, "partition lost; stopping its worker");
                    return;
                }
                lag.at(offset + 1);
            }
            Err(Abandoned) => return,
        }
    }
}

impl Pipeline {
    /// Carries one record to its outcome.
    async fn process(
        &self,
        record: &Record<'_>,
        handle: &PartitionHandle,
        stop: &CancellationToken,
        abort: &CancellationToken,
    ) -> Result<Outcome, Abandoned> {
        let parts = RecordParts {
            key: record.key(),
            value: record.value(),
            timestamp_millis: record.timestamp_ms(),
            topic: record.topic(),
            partition: record.partition(),
            offset: record.offset(),
        };
        let event = match self.decode(&parts, handle, stop, abort).await? {
            Ok(event) => event,
            Err((reason, error)) => {
                let mut letter = DeadLetter::new(
                    reason,
                    error,
                    record.topic(),
                    record.partition(),
                    record.offset(),
                );
                if let Some(tenant) = record.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    letter = letter.with_tenant(tenant);
                }
                return self.dead_letter(record, letter, abort).await;
            }
        };
        tracing::Span::current().record("tenant", event.tenant.as_str());

        let mut attempt = Attempts::default();
        let mut paused = false;
        let result = self
            .attempt_until_done(
                record,
                &event,
                handle,
                stop,
                abort,
                &mut attempt,
                &mut paused,
            )
            .await;
        if paused {
            handle.resume();
            metrics::backoff_ended();
        }
        match result? {
            Ended::Outcome(outcome) => {
                self.metrics
                    .delivery_finished(outcome.label(), Some(&event.tenant));
                Ok(outcome)
            }
            Ended::DeadLetter(letter) => self.dead_letter(record, letter, abort).await,
        }
    }

    #[allow(clippy::too_many_arguments)] // the loop's whole state, passed once
    async fn attempt_until_done(
        &self,
        record: &Record<'_>,
        event: &Event,
        handle: &PartitionHandle,
        stop: &CancellationToken,
        abort: &CancellationToken,
        attempts: &mut Attempts,
        paused: &mut bool,
    ) -> Result<Ended, Abandoned> {
        let plaintext = event.plaintext();
        let letter = |reason: DlqReason, error: String| {
            DeadLetter::new(
                reason,
                error,
                record.topic(),
                record.partition(),
                record.offset(),
            )
            .with_tenant(&event.tenant)
        };
        loop {
            // The tenant is read again before every attempt: a new record
            // (rotated key, new URL, disabled) applies from the next one.
            let entry = self.table.get(&event.tenant);
            let tenant: &Tenant = match entry.as_deref() {
                None => {
                    let l = letter(
                        DlqReason::UnknownTenant,
                        format!("tenant `{}` does not exist", event.tenant),
                    );
                    return Ok(Ended::DeadLetter(attempts.stamp(l)));
                }
                Some(TenantEntry::Invalid { error }) => {
                    let l = letter(
                        DlqReason::InvalidTenant,
                        format!("tenant record is invalid: {error}"),
                    );
                    return Ok(Ended::DeadLetter(attempts.stamp(l)));
                }
                Some(TenantEntry::Valid(tenant)) if !tenant.enabled => {
                    let l = letter(
                        DlqReason::TenantDisabled,
                        format!("tenant `{}` is disabled", event.tenant),
                    );
                    return Ok(Ended::DeadLetter(attempts.stamp(l)));
                }
                Some(TenantEntry::Valid(tenant)) if !tenant.is_subscribed(&event.event_type) => {
                    return Ok(Ended::Outcome(Outcome::Filtered));
                }
                Some(TenantEntry::Valid(tenant)) => tenant,
            };

            let started = attempts.begin();
            tracing::Span::current().record("attempt", attempts.count);
            let clock = Instant::now();
            let outcome = match tenant.recipient.encrypt(&plaintext) {
                Ok(body) => {
                    let timestamp = unix_seconds(started);
                    let signature = tenant
                        .signing_secret
                        .as_ref()
                        .map(|secret| secret.sign(&event.id, timestamp, &body));
                    let request = WebhookRequest {
                        url: &tenant.url,
                        webhook_id: &event.id,
                        timestamp,
                        signature: signature.as_deref(),
                        body,
                    };
                    tokio::select! {
                        _ = abort.cancelled() => return Err(Abandoned),
                        outcome = self.client.post(request) => outcome,
                    }
                }
                // Encryption with a validated key does not fail; if it ever
                // does, it is treated like a transport failure and retried.
                Err(e) => AttemptOutcome::Transport {
                    error: format!("encryption failed: {e}"),
                },
            };
            attempts.last_status = outcome.status().or(attempts.last_status);
            tracing::debug!(%outcome, "attempt");
            self.metrics.attempt_finished(
                outcome.result_label(),
                clock.elapsed(),
                Some(&event.tenant),
            );

            match self
                .policy
                .decide(&outcome, attempts.count, random_jitter())
            {
                RetryAction::Delivered { .. } => {
                    // A producer clock ahead of ours gives a negative
                    // latency, recorded as zero.
                    let latency = OffsetDateTime::now_utc() - event.occurred_at;
                    self.metrics
                        .end_to_end_latency(latency.try_into().unwrap_or_default());
                    return Ok(Ended::Outcome(Outcome::Delivered));
                }
                RetryAction::DeadLetter(reason) => {
                    let l = letter(reason, outcome.to_string()).with_status(attempts.last_status);
                    return Ok(Ended::DeadLetter(attempts.stamp(l)));
                }
                RetryAction::RetryAfter(delay) => {
                    if !*paused && delay >= PAUSE_AFTER {
                        // Stop prefetching while this partition waits, so
                        // its buffered records do not pile up. Short waits
                        // are not worth it: resuming discards what was
                        // prefetched and fetches it again.
                        handle.pause();
                        *paused = true;
                        metrics::backoff_started();
                    }
                    tracing::info!(attempt = attempts.count, %outcome, retry_in = ?delay, "delivery failed; backing off");
                    tokio::select! {
                        _ = stop.cancelled() => return Err(Abandoned),
                        _ = abort.cancelled() => return Err(Abandoned),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Decodes a record. A schema registry that cannot be asked is not the
    /// record's fault: the partition waits (paused) and tries again, so a
    /// good event is never dead-lettered because the registry blinked.
    async fn decode(
        &self,
        parts: &RecordParts<'_>,
        handle: &PartitionHandle,
        stop: &CancellationToken,
        abort: &CancellationToken,
    ) -> Result<Result<Event, (DlqReason, String)>, Abandoned> {
        let mut waits = 0u32;
        let result = loop {
            match self
                .decoder
                .decode_async(parts, self.max_payload_bytes)
                .await
            {
                Ok(event) => break Ok(event),
                Err(e) => match e.dlq_reason() {
                    Some(reason) => break Err(Some((reason, e.to_string()))),
                    None => {
                        if waits == 0 {
                            handle.pause();
                            metrics::backoff_started();
                        }
                        waits += 1;
                        let delay = self.policy.backoff(waits, random_jitter());
                        tracing::warn!(error = %e, retry_in = ?delay, "waiting for the schema registry");
                        tokio::select! {
                            _ = stop.cancelled() => break Err(None),
                            _ = abort.cancelled() => break Err(None),
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                },
            }
        };
        if waits > 0 {
            handle.resume();
            metrics::backoff_ended();
        }
        match result {
            Ok(event) => Ok(Ok(event)),
            Err(Some(letter)) => Ok(Err(letter)),
            Err(None) => Err(Abandoned),
        }
    }

    async fn dead_letter(
        &self,
        record: &Record<'_>,
        letter: DeadLetter,
        abort: &CancellationToken,
    ) -> Result<Outcome, Abandoned> {
        tracing::warn!(reason = %letter.reason, error = %letter.error, "dead-lettering");
        self.dead_letters.write(record, &letter, abort).await?;
        // Only tenants in the table may become label values: a record key
        // naming no tenant is whatever a producer wrote.
        let tenant = letter
            .tenant
            .as_deref()
            .filter(|t| self.table.get(t).is_some());
        self.metrics.dead_lettered(letter.reason.as_str(), tenant);
        let outcome = Outcome::DeadLettered(letter.reason);
        self.metrics.delivery_finished(outcome.label(), tenant);
        Ok(outcome)
    }
}

enum Ended {
    Outcome(Outcome),
    DeadLetter(DeadLetter),
}

/// The attempts made for one record, for the `dlq.*` headers.
#[derive(Default)]
struct Attempts {
    count: u32,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
    last_status: Option<u16>,
}

impl Attempts {
    fn begin(&mut self) -> SystemTime {
        let now = SystemTime::now();
        self.count += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
        now
    }

    fn stamp(&self, letter: DeadLetter) -> DeadLetter {
        match (self.first, self.last) {
            (Some(first), Some(last)) => letter.with_attempts(self.count, first, last),
            _ => letter,
        }
    }
}

/// Samples the consumer lag of one partition every
/// [`LAG_SAMPLE_INTERVAL`] from the worker's position; stops (and reports
/// no lag for the partition) when dropped with its worker.
struct LagSampler {
    /// The next offset the worker will finish, -1 before the first record.
    position: Arc<AtomicI64>,
    partition: i32,
    task: tokio::task::JoinHandle<()>,
}

impl LagSampler {
    fn start(handle: PartitionHandle) -> Self {
        let position = Arc::new(AtomicI64::new(-1));
        let partition = handle.partition();
        let task = tokio::spawn({
            let position = position.clone();
            async move {
                let mut tick = tokio::time::interval(LAG_SAMPLE_INTERVAL);
                loop {
                    tick.tick().await;
                    let next = position.load(Ordering::Relaxed);
                    if next < 0 {
                        continue;
                    }
                    // Asking the broker for the watermark blocks.
                    let handle = handle.clone();
                    if let Ok(Some(lag)) =
                        tokio::task::spawn_blocking(move || handle.lag(next)).await
                    {
                        metrics::consumer_lag(partition, lag);
                    }
                }
            }
        });
        Self {
            position,
            partition,
            task,
        }
    }

    /// The worker's position: the offset it works on, or the next one.
    fn at(&self, offset: i64) {
        self.position.store(offset, Ordering::Relaxed);
    }
}

impl Drop for LagSampler {
    fn drop(&mut self) {
        self.task.abort();
        // The partition may have moved to another replica, which reports
        // its lag from now on.
        metrics::consumer_lag(self.partition, 0);
    }
}

fn random_jitter() -> Jitter {
    let mut bytes = [0u8; 8];
    crate::crypto::fill_random(&mut bytes);
    Jitter::from_random_bits(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The metrics resolve one series per known `outcome` label up front.
    #[test]
    fn every_outcome_label_is_a_known_metric_label() {
        let labels: BTreeSet<&str> = [
            Outcome::Delivered,
            Outcome::Filtered,
            Outcome::DeadLettered(DlqReason::UnknownTenant),
        ]
        .map(Outcome::label)
        .into_iter()
        .collect();
        assert_eq!(labels, metrics::OUTCOME_LABELS.into_iter().collect());
    }
}
