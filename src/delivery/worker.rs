//! Carries one record to a durable outcome: decode it, decide before each
//! attempt ([`decision`](super::decision)), attempt with backoff, and
//! dead-letter it when that is the outcome. The partition driver runs one
//! such task per record it hands out; a tenant's next record is handed out
//! only after this one finished.
//!
//! An HTTP attempt holds one of the replica's `delivery.max_in_flight`
//! permits while it is sent and answered, and only then: a record backing
//! off holds none, so failing tenants cannot starve the others.
//!
//! [`JobControl`] steers a task. `stop` (a graceful shutdown or revocation)
//! ends a backoff wait at once and starts no new attempt, but lets an
//! attempt in flight finish; `abort` abandons even that; `suspended` ends a
//! backoff wait with a `tenant_suspended` dead letter. An abandoned record
//! is not finished: whoever owns the partition next delivers it again,
//! with the same `webhook-id`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::HeaderValue;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::Abandoned;
use super::dead_letter::header::REPLAY_OF;
use super::dead_letter::writer::DeadLetterWriter;
use super::dead_letter::{DeadLetter, DecodeErrorExt as _, DlqPosition, DlqReason};
use super::decision::{self, Resumption, Verdict};
use super::http::{WebhookClient, WebhookRequest};
use super::partition::{JobControl, RecordProcessor, SourceRecord};
use super::retry::{AttemptOutcome, Jitter, RetryAction, RetryPolicy};
use super::scheduler::{Admission, Done, Ending, Job, ParkedBecause};
use crate::crypto::signature::unix_seconds;
use crate::events::{Event, EventDecoder, RecordParts};
use crate::kafka::record::Record;
use crate::telemetry::metrics::DeliveryMetrics;
use crate::telemetry::trace_context::{DeliveryTrace, TRACEPARENT, TRACESTATE};
use crate::telemetry::traces::{DeliverySpan, SpanExport};
use crate::tenants::{TenantEntry, TenantTable};

/// Everything the record tasks share: one HTTP pool, one tenant table, one
/// dead-letter producer, the replica's in-flight permits.
pub struct Pipeline {
    pub table: TenantTable,
    pub client: WebhookClient,
    pub policy: RetryPolicy,
    pub decoder: EventDecoder,
    pub dead_letters: DeadLetterWriter,
    pub max_payload_bytes: usize,
    pub metrics: DeliveryMetrics,
    /// One permit per HTTP attempt in flight (`delivery.max_in_flight`).
    pub in_flight: Arc<Semaphore>,
    /// Where delivery spans go, when they are exported
    /// (`telemetry.otlp_endpoint`).
    pub spans: Option<SpanExport>,
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

    /// What the scheduler learns from a record that ended so: the
    /// outcome, what it replayed and where it was parked.
    fn done(
        self,
        replay_of: Option<DlqPosition>,
        parked: Option<(DlqPosition, ParkedBecause)>,
    ) -> Done {
        Done {
            ending: self.ending(),
            replay_of,
            parked,
            tenant_gone: self == Outcome::DeadLettered(DlqReason::UnknownTenant),
            dead_lettered: matches!(self, Outcome::DeadLettered(_)),
        }
    }

    /// What the outcome means to the tenant's circuit breaker.
    fn ending(self) -> Ending {
        match self {
            Outcome::Delivered => Ending::Delivered,
            Outcome::DeadLettered(DlqReason::RetriesExhausted) => Ending::RetriesExhausted,
            Outcome::Filtered | Outcome::DeadLettered(_) => Ending::Other,
        }
    }
}

impl SourceRecord for Record {
    fn offset(&self) -> i64 {
        Record::offset(self)
    }

    fn key(&self) -> Option<&[u8]> {
        Record::key(self)
    }

    fn size(&self) -> usize {
        Record::size(self)
    }
}

impl RecordProcessor<Record> for Pipeline {
    async fn process(
        self: Arc<Self>,
        job: Job<Record>,
        control: JobControl,
    ) -> Result<Done, Abandoned> {
        // The delivery is a span of the event's trace (or of a new one):
        // one span id for all its attempts.
        let trace = DeliveryTrace::continue_from(
            job.record.header_values(TRACEPARENT),
            job.record.header_values(TRACESTATE),
            random_ids(),
        );
        let headers = TraceHeaders::of(&trace);
        // Identifiers only: the payload, the key and the tenant's secrets
        // never go into a span or an event.
        let span = tracing::info_span!(
            "delivery",
            partition = job.record.partition(),
            offset = job.offset,
            trace_id = %trace.trace_id_hex(),
            span_id = %trace.span_id_hex(),
            tenant = tracing::field::Empty,
            attempt = tracing::field::Empty,
        );
        let mut exported = self.spans.as_ref().filter(|_| trace.sampled).map(|_| {
            DeliverySpan::start(
                &trace,
                job.record.topic(),
                job.record.partition(),
                job.offset,
            )
        });
        let replay_of = job.record.header(REPLAY_OF).and_then(DlqPosition::parse);
        let result = self
            .carry(&job, replay_of, &control, &headers, &mut exported)
            .instrument(span)
            .await;
        if let (Some(spans), Some(exported)) = (&self.spans, exported) {
            match &result {
                Ok((Outcome::DeadLettered(reason), _)) => {
                    spans.end(exported, "dead_lettered", Some(reason.as_str()));
                }
                Ok((outcome, _)) => spans.end(exported, outcome.label(), None),
                Err(Abandoned) => spans.end(exported, "abandoned", None),
            }
        }
        let (outcome, parked) = result?;
        tracing::debug!(
            partition = job.record.partition(),
            offset = job.offset,
            ?outcome,
            "done"
        );
        Ok(outcome.done(replay_of, parked))
    }

    fn spacing(&self, tenant: &[u8]) -> Option<Duration> {
        let entry = self.table.get(std::str::from_utf8(tenant).ok()?)?;
        match &*entry {
            TenantEntry::Valid(tenant) => tenant.rate_limit.map(|limit| limit.interval()),
            TenantEntry::Invalid { .. } => None,
        }
    }
}

impl Pipeline {
    /// Carries one record to its outcome; when it was parked, also where
    /// and why.
    async fn carry(
        &self,
        job: &Job<Record>,
        replay_of: Option<DlqPosition>,
        control: &JobControl,
        headers: &TraceHeaders,
        exported: &mut Option<DeliverySpan>,
    ) -> Result<(Outcome, Option<(DlqPosition, ParkedBecause)>), Abandoned> {
        let record = &job.record;
        let event = match self.decode(record, control).await? {
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
                let (outcome, _) = self
                    .dead_letter(record, letter, replay_of, None, control)
                    .await?;
                return Ok((outcome, None));
            }
        };
        tracing::Span::current().record("tenant", event.tenant.as_str());
        if let Some(exported) = exported.as_mut() {
            exported.event(&event.tenant, &event.id);
        }

        // Only the tenant's own events that are not replays wait behind the
        // replays it owes.
        let resumption = if job.owed.is_some() && replay_of.is_none() {
            Resumption::Behind
        } else {
            Resumption::Clear
        };
        match self
            .attempt_until_done(
                record,
                &event,
                (job.admission, resumption),
                control,
                headers,
                exported,
            )
            .await?
        {
            Ended::Outcome(outcome) => {
                self.metrics
                    .delivery_finished(outcome.label(), Some(&event.tenant));
                Ok((outcome, None))
            }
            Ended::DeadLetter(letter) => {
                let (outcome, _) = self
                    .dead_letter(record, letter, replay_of, None, control)
                    .await?;
                Ok((outcome, None))
            }
            Ended::Parked(letter, because) => {
                let (outcome, at) = self
                    .dead_letter(record, letter, replay_of, Some(because), control)
                    .await?;
                Ok((outcome, Some((at, because))))
            }
        }
    }

    async fn attempt_until_done(
        &self,
        record: &Record,
        event: &Event,
        (admission, resumption): (Admission, Resumption),
        control: &JobControl,
        headers: &TraceHeaders,
        exported: &mut Option<DeliverySpan>,
    ) -> Result<Ended, Abandoned> {
        let plaintext = event.plaintext();
        let mut attempts = Attempts::default();
        let letter = |reason: DlqReason, error: String, attempts: &Attempts| {
            attempts.stamp(
                DeadLetter::new(
                    reason,
                    error,
                    record.topic(),
                    record.partition(),
                    record.offset(),
                )
                .with_tenant(&event.tenant),
            )
        };
        loop {
            // The tenant is read again before every attempt: a new record
            // (rotated key, new URL, disabled) applies from the next one.
            let entry = self.table.get(&event.tenant);
            let tenant = match decision::decide(
                &event.tenant,
                entry.as_deref(),
                &event.event_type,
                admission,
                resumption,
            ) {
                Verdict::Deliver(tenant) => tenant,
                Verdict::Filtered => return Ok(Ended::Outcome(Outcome::Filtered)),
                Verdict::DeadLetter(reason, error) => {
                    return Ok(Ended::DeadLetter(letter(reason, error, &attempts)));
                }
                Verdict::Park(because, error) => {
                    let l = letter(DlqReason::TenantSuspended, error, &attempts)
                        .with_status(attempts.last_status);
                    return Ok(Ended::Parked(l, because));
                }
            };

            // Nothing new starts once the partition is stopping.
            let permit = tokio::select! {
                biased;
                _ = control.stop.cancelled() => return Err(Abandoned),
                _ = control.abort.cancelled() => return Err(Abandoned),
                permit = self.in_flight.acquire() => permit,
            };
            let started = attempts.begin();
            tracing::Span::current().record("attempt", attempts.count);
            let clock = Instant::now();
            // The aws-lc key and parsed URL of a recently active tenant
            // are cached; others are prepared here (a few microseconds).
            let prepared = self
                .table
                .prepared(tenant)
                .map_err(|e| format!("preparing the tenant failed: {e}"));
            let outcome = match prepared.and_then(|prepared| {
                let body = prepared
                    .recipient
                    .encrypt(&plaintext)
                    .map_err(|e| format!("encryption failed: {e}"))?;
                Ok((prepared, body))
            }) {
                Ok((prepared, body)) => {
                    let timestamp = unix_seconds(started);
                    // During a rotation the previous secret signs too, until
                    // its expiry: decided by the clock of this attempt.
                    let signature = tenant.signature(&event.id, timestamp, &body, started);
                    let request = WebhookRequest {
                        url: &prepared.url,
                        webhook_id: &event.id,
                        timestamp,
                        signature: signature.as_deref(),
                        traceparent: headers.traceparent.as_ref(),
                        tracestate: headers.tracestate.as_ref(),
                        body,
                    };
                    tokio::select! {
                        _ = control.abort.cancelled() => return Err(Abandoned),
                        outcome = self.client.post(request) => outcome,
                    }
                }
                // Preparing or encrypting with a validated key does not
                // fail; if it ever does, it is treated like a transport
                // failure and retried.
                Err(error) => AttemptOutcome::Transport { error },
            };
            drop(permit);
            attempts.last_status = outcome.status().or(attempts.last_status);
            tracing::debug!(%outcome, "attempt");
            if let Some(exported) = exported.as_mut() {
                exported.attempt(
                    attempts.count,
                    started,
                    clock.elapsed(),
                    outcome.status(),
                    outcome.result_label(),
                );
            }
            self.metrics.attempt_finished(
                outcome.result_label(),
                clock.elapsed(),
                Some(&event.tenant),
            );

            let action = self
                .policy
                .decide(&outcome, attempts.count, random_jitter());
            let delay = match action {
                RetryAction::Delivered { .. } => {
                    // A producer clock ahead of ours gives a negative
                    // latency, recorded as zero.
                    let latency = OffsetDateTime::now_utc() - event.occurred_at;
                    self.metrics
                        .end_to_end_latency(latency.try_into().unwrap_or_default());
                    return Ok(Ended::Outcome(Outcome::Delivered));
                }
                RetryAction::DeadLetter(reason) => {
                    let l = letter(reason, outcome.to_string(), &attempts)
                        .with_status(attempts.last_status);
                    return Ok(Ended::DeadLetter(l));
                }
                RetryAction::RetryAfter(_) if admission == Admission::Probe => {
                    // A suspended tenant's probe gets one attempt only.
                    let error = format!(
                        "tenant `{}` is suspended; its probe failed: {outcome}",
                        event.tenant
                    );
                    let l = letter(DlqReason::TenantSuspended, error, &attempts)
                        .with_status(attempts.last_status);
                    return Ok(Ended::Parked(l, ParkedBecause::Breaker));
                }
                RetryAction::RetryAfter(delay) => delay,
            };
            tracing::info!(attempt = attempts.count, %outcome, retry_in = ?delay, "delivery failed; backing off");
            control.backing_off(true);
            let suspended = tokio::select! {
                _ = control.stop.cancelled() => None,
                _ = control.abort.cancelled() => None,
                _ = control.suspended.cancelled() => Some(true),
                _ = tokio::time::sleep(delay) => Some(false),
            };
            control.backing_off(false);
            match suspended {
                None => return Err(Abandoned),
                Some(true) => {
                    let error = format!(
                        "tenant `{}` was suspended while backing off; last attempt: {outcome}",
                        event.tenant
                    );
                    let l = letter(DlqReason::TenantSuspended, error, &attempts)
                        .with_status(attempts.last_status);
                    return Ok(Ended::Parked(l, ParkedBecause::Breaker));
                }
                Some(false) => {}
            }
        }
    }

    /// Decodes a record. A schema registry that cannot be asked is not the
    /// record's fault: the record waits (backing off) and tries again, so a
    /// good event is never dead-lettered because the registry blinked.
    async fn decode(
        &self,
        record: &Record,
        control: &JobControl,
    ) -> Result<Result<Event, (DlqReason, String)>, Abandoned> {
        let parts = RecordParts {
            key: record.key(),
            value: record.value(),
            timestamp_millis: record.timestamp_ms(),
            topic: record.topic(),
            partition: record.partition(),
            offset: record.offset(),
        };
        let mut waits = 0u32;
        loop {
            let error = match self
                .decoder
                .decode_async(&parts, self.max_payload_bytes)
                .await
            {
                Ok(event) => return Ok(Ok(event)),
                Err(e) => e,
            };
            if let Some(reason) = error.dlq_reason() {
                return Ok(Err((reason, error.to_string())));
            }
            waits += 1;
            let delay = self.policy.backoff(waits, random_jitter());
            tracing::warn!(error = %error, retry_in = ?delay, "waiting for the schema registry");
            control.backing_off(true);
            let waited = tokio::select! {
                _ = control.stop.cancelled() => false,
                _ = control.abort.cancelled() => false,
                _ = tokio::time::sleep(delay) => true,
            };
            control.backing_off(false);
            if !waited {
                return Err(Abandoned);
            }
        }
    }

    /// Dead-letters the record. `replay_of` and `parked` are what the
    /// record's [`Done`] will say besides the dead letter's position; a
    /// transactional write commits the checkpoint that follows from it.
    async fn dead_letter(
        &self,
        record: &Record,
        letter: DeadLetter,
        replay_of: Option<DlqPosition>,
        parked: Option<ParkedBecause>,
        control: &JobControl,
    ) -> Result<(Outcome, DlqPosition), Abandoned> {
        tracing::warn!(reason = %letter.reason, error = %letter.error, "dead-lettering");
        let outcome = Outcome::DeadLettered(letter.reason);
        let done = |at: DlqPosition| outcome.done(replay_of, parked.map(|because| (at, because)));
        let at = self
            .dead_letters
            .write(record, &letter, control, done)
            .await?;
        // Only tenants in the table may become label values: a record key
        // naming no tenant is whatever a producer wrote.
        let tenant = letter
            .tenant
            .as_deref()
            .filter(|t| self.table.get(t).is_some());
        self.metrics.dead_lettered(letter.reason.as_str(), tenant);
        self.metrics.delivery_finished(outcome.label(), tenant);
        Ok((outcome, at))
    }
}

enum Ended {
    Outcome(Outcome),
    DeadLetter(DeadLetter),
    /// Dead-lettered as `tenant_suspended`, for this reason.
    Parked(DeadLetter, ParkedBecause),
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

/// The trace context headers of one delivery, made once and sent with
/// every attempt.
struct TraceHeaders {
    traceparent: Option<HeaderValue>,
    tracestate: Option<HeaderValue>,
}

impl TraceHeaders {
    fn of(trace: &DeliveryTrace) -> Self {
        // Both are validated printable ASCII, so neither conversion fails.
        Self {
            traceparent: HeaderValue::from_str(trace.traceparent()).ok(),
            tracestate: trace
                .tracestate()
                .and_then(|s| HeaderValue::from_str(s).ok()),
        }
    }
}

/// Random bytes for a delivery's span id and, when it starts a trace, the
/// trace id.
fn random_ids() -> [u8; 24] {
    let mut bytes = [0u8; 24];
    crate::crypto::fill_random(&mut bytes);
    bytes
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
    use crate::telemetry::metrics;

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

    /// Only running out of attempts counts towards a suspension; a
    /// rejection or a failed probe says nothing new about the endpoint.
    #[test]
    fn only_exhausted_retries_count_for_the_circuit_breaker() {
        assert_eq!(Outcome::Delivered.ending(), Ending::Delivered);
        assert_eq!(
            Outcome::DeadLettered(DlqReason::RetriesExhausted).ending(),
            Ending::RetriesExhausted
        );
        for reason in DlqReason::ALL {
            if reason != DlqReason::RetriesExhausted {
                assert_eq!(Outcome::DeadLettered(reason).ending(), Ending::Other);
            }
        }
        assert_eq!(Outcome::Filtered.ending(), Ending::Other);
    }
}
