//! Optional export of delivery spans over OTLP/HTTP (binary protobuf), on
//! when `telemetry.otlp_endpoint` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set.
//!
//! One span per delivery: its span id is the one sent in the webhook
//! request's `traceparent`, its parent the event's span, and each attempt
//! is an event on it. hookline picks its span ids itself (the id in the
//! request must be the id exported), which the SDK's tracer does not allow,
//! so a finished delivery is built as the SDK's `SpanData` and handed to
//! its batch processor: a bounded queue drained by a thread of its own,
//! so a delivery never waits for an export, and a full queue drops spans
//! rather than grow. Unsampled deliveries (the event's `traceparent` says
//! so) are not exported, as a parent-based sampler decides.
//!
//! Failed exports are logged at most once a minute, with how many failed
//! since; they never fail a delivery. `shutdown` flushes what is queued.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SpanData, SpanEvents, SpanExporter, SpanLinks, SpanProcessor,
};

use super::trace_context::DeliveryTrace;
use crate::config::TraceExportConfig;

/// How often, at most, a failing export is logged.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// How long `shutdown` waits for the last export.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the span export to {endpoint} (telemetry.otlp_endpoint)")]
pub struct TraceExportError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The replica's span export: a batch processor in front of the OTLP/HTTP
/// exporter.
pub struct SpanExport {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
}

impl SpanExport {
    /// Builds the exporter and starts the batch processor's thread. The
    /// SDK's own variables apply on top of the configuration:
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (or `OTEL_EXPORTER_OTLP_HEADERS`),
    /// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_BSP_*`.
    pub fn start(config: &TraceExportConfig) -> Result<Self, TraceExportError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.as_str())
            .with_timeout(config.timeout)
            .build()
            .map_err(|source| TraceExportError {
                endpoint: without_credentials(&config.endpoint),
                source,
            })?;
        let mut processor = BatchSpanProcessor::builder(LoggedExporter {
            inner: exporter,
            warnings: Mutex::default(),
        })
        .build();
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        processor.set_resource(&resource);
        tracing::info!(
            endpoint = %without_credentials(&config.endpoint),
            service = %config.service_name,
            "exporting delivery spans over OTLP/HTTP"
        );
        Ok(Self {
            processor,
            scope: InstrumentationScope::builder("hookline")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }

    /// Queues a finished delivery's span; never waits.
    pub fn end(&self, span: DeliverySpan, outcome: &'static str, reason: Option<&'static str>) {
        let DeliverySpan {
            context,
            parent_id,
            start,
            mut attributes,
            events,
            attempts,
            last_status,
        } = span;
        attributes.push(KeyValue::new("hookline.outcome", outcome));
        attributes.push(KeyValue::new("hookline.attempts", i64::from(attempts)));
        if let Some(status) = last_status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        let status = match reason {
            Some(reason) => {
                attributes.push(KeyValue::new("hookline.dlq.reason", reason));
                attributes.push(KeyValue::new("error.type", reason));
                Status::error(reason)
            }
            None => Status::Unset,
        };
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        self.processor.on_end(SpanData {
            span_context: context,
            parent_span_id: parent_id.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: parent_id.is_some(),
            span_kind: SpanKind::Client,
            name: "webhook delivery".into(),
            start_time: start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: span_events,
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// Exports what is queued and stops the processor's thread, waiting at
    /// most a few seconds. Blocks: call it from a blocking thread.
    pub fn shutdown(&self) {
        if let Err(e) = self.processor.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "the last delivery spans could not be exported");
        }
    }
}

/// The endpoint as it may be logged: without a user name or password.
fn without_credentials(endpoint: &url::Url) -> String {
    let mut shown = endpoint.clone();
    // Only URLs that cannot have credentials refuse these, and an
    // endpoint is always http or https.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// What a delivery's span collects while the delivery runs: only built
/// when spans are exported and the trace is sampled.
pub struct DeliverySpan {
    context: SpanContext,
    parent_id: Option<[u8; 8]>,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    attempts: u32,
    last_status: Option<u16>,
}

impl DeliverySpan {
    /// The span of the delivery of the record at `topic`/`partition`/`offset`,
    /// starting now.
    pub fn start(trace: &DeliveryTrace, topic: &str, partition: i32, offset: i64) -> Self {
        let state = trace
            .tracestate()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let flags = if trace.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        Self {
            context: SpanContext::new(
                TraceId::from_bytes(trace.trace_id),
                SpanId::from_bytes(trace.span_id),
                flags,
                false,
                state,
            ),
            parent_id: trace.parent_id,
            start: SystemTime::now(),
            attributes: vec![
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.destination.name", topic.to_string()),
                KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                KeyValue::new("messaging.kafka.offset", offset),
                KeyValue::new("http.request.method", "POST"),
            ],
            events: Vec::new(),
            attempts: 0,
            last_status: None,
        }
    }

    /// The event's tenant and `webhook-id`, once decoded.
    pub fn event(&mut self, tenant: &str, webhook_id: &str) {
        self.attributes
            .push(KeyValue::new("hookline.tenant", tenant.to_string()));
        self.attributes
            .push(KeyValue::new("hookline.webhook.id", webhook_id.to_string()));
    }

    /// One attempt: its number, when it started, how long it took, the
    /// HTTP status when there was an answer, and its result (a
    /// `hookline_delivery_attempts_total` label).
    pub fn attempt(
        &mut self,
        number: u32,
        at: SystemTime,
        took: Duration,
        status: Option<u16>,
        result: &'static str,
    ) {
        self.attempts = number;
        let mut attributes = vec![
            KeyValue::new("hookline.attempt", i64::from(number)),
            KeyValue::new("hookline.attempt.result", result),
            KeyValue::new("hookline.attempt.duration_ms", took.as_secs_f64() * 1e3),
        ];
        if let Some(status) = status {
            self.last_status = Some(status);
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        self.events.push(Event::new("attempt", at, attributes, 0));
    }
}

/// The OTLP exporter, with its failures logged at most once a minute.
#[derive(Debug)]
struct LoggedExporter {
    inner: opentelemetry_otlp::SpanExporter,
    warnings: Mutex<Warnings>,
}

#[derive(Debug, Default)]
struct Warnings {
    last: Option<Instant>,
    /// Failed exports since the last warning.
    failed: u64,
}

impl Warnings {
    /// Counts a failed export at `now`; returns how many failed since the
    /// last warning when this one is to be logged (the first, and then at
    /// most one per `WARNING_INTERVAL`).
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.failed += 1;
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < WARNING_INTERVAL)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.failed))
    }
}

impl LoggedExporter {
    fn failed(&self, error: &dyn std::fmt::Display, spans: usize) {
        // A poisoned lock only means another export panicked while
        // counting; the count is still usable.
        let failed = self
            .warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .failed(Instant::now());
        if let Some(failed_exports) = failed {
            tracing::warn!(
                %error,
                spans,
                failed_exports,
                "delivery spans could not be exported (logged at most once a minute)"
            );
        }
    }
}

impl SpanExporter for LoggedExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            self.failed(e, spans);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_endpoint_are_never_shown() {
        let endpoint = url::Url::parse("https://user:secret@collector:4318/v1/traces").unwrap();
        assert_eq!(
            without_credentials(&endpoint),
            "https://collector:4318/v1/traces"
        );
    }

    #[test]
    fn failed_exports_are_logged_at_most_once_a_minute_with_the_count() {
        let mut warnings = Warnings::default();
        let start = Instant::now();
        assert_eq!(warnings.failed(start), Some(1));
        assert_eq!(warnings.failed(start + Duration::from_secs(1)), None);
        assert_eq!(warnings.failed(start + Duration::from_secs(59)), None);
        assert_eq!(warnings.failed(start + Duration::from_secs(60)), Some(3));
        assert_eq!(warnings.failed(start + Duration::from_secs(61)), None);
        assert_eq!(warnings.failed(start + Duration::from_secs(200)), Some(2));
    }
}
