//! W3C trace context through the real binary: an event's `traceparent`
//! continues in its webhook request as a child span, its dead letter keeps
//! the original, its logs carry the trace id; with an OTLP endpoint
//! configured, the delivery's span reaches a collector (here an in-process
//! OTLP/HTTP receiver decoding binary protobuf) and is flushed on SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prost::Message as _;

use crate::support::process::{Spawned, command};
use crate::support::replica::{TestTenant, create_topics, write_topology};
use crate::support::{Broker, Receiver};
use hookline::delivery::runner::Topics;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

/// `hookline run` with JSON logs, the worker's per-attempt lines included.
fn run_command(broker: &Broker, topology: &Path) -> Command {
    let mut command = command(broker, topology);
    command
        .arg("run")
        .env("HOOKLINE__TELEMETRY__LOG_FORMAT", "json")
        .env(
            "RUST_LOG",
            "info,rdkafka=warn,hookline::delivery::worker=debug",
        );
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command
}

async fn setup(broker: &Broker, dir: &Path) -> (Topics, std::path::PathBuf) {
    let topics = create_topics(broker, 1).await;
    let topology = write_topology(dir, &topics, 1);
    (topics, topology)
}

fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": id, "type": "order.created", "data": {}})).unwrap()
}

/// The parts of a version-00 `traceparent`: trace id, parent id, flags.
fn parts(traceparent: &str) -> (&str, &str, &str) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[0], "00", "{traceparent}");
    assert_eq!(fields[1].len(), 32, "{traceparent}");
    assert_eq!(fields[2].len(), 16, "{traceparent}");
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    assert!(lower_hex(fields[1]) && lower_hex(fields[2]) && lower_hex(fields[3]));
    assert_ne!(fields[1], "0".repeat(32));
    assert_ne!(fields[2], "0".repeat(16));
    (fields[1], fields[2], fields[3])
}

/// The JSON log lines of `stderr` whose delivery span has `trace_id`.
fn log_lines_of_trace(stderr: &str, trace_id: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["span"]["trace_id"] == trace_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_trace_continues_in_its_webhook_request_logs_and_dead_letter() {
    let broker = Broker::new("trace-propagation");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = setup(&broker, dir.path()).await;
    let receiver = Receiver::start(Arc::new(|_, request| match request.path.as_str() {
        "/gone" => StatusCode::GONE,
        _ => StatusCode::OK,
    }))
    .await;
    let ok = TestTenant::new("ok");
    ok.register(&broker, &topics, &ok.record(&receiver.url("/ok")))
        .await;
    let gone = TestTenant::new("gone");
    gone.register(&broker, &topics, &gone.record(&receiver.url("/gone")))
        .await;

    let traced = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    broker
        .produce(
            &topics.events,
            Some(b"ok"),
            Some(&event("evt_traced")),
            &[
                ("traceparent", traced.as_bytes()),
                ("tracestate", TRACESTATE.as_bytes()),
            ],
        )
        .await;
    let dead_trace = "0af7651916cd43dd8448eb211c80319c";
    let dead = format!("00-{dead_trace}-b7ad6b7169203331-00");
    broker
        .produce(
            &topics.events,
            Some(b"gone"),
            Some(&event("evt_gone")),
            &[("traceparent", dead.as_bytes())],
        )
        .await;
    broker
        .produce(&topics.events, Some(b"ok"), Some(&event("evt_plain")), &[])
        .await;

    let replica = Spawned::start(run_command(&broker, &topology));
    let ids = receiver
        .wait_webhook_ids("/ok", 2, Duration::from_secs(60))
        .await;
    assert_eq!(ids, ["evt_traced", "evt_plain"], "{}", replica.stderr());
    // Tenants are delivered side by side: the gone tenant's request may
    // come after both of the other's.
    let gone_ids = receiver
        .wait_webhook_ids("/gone", 1, Duration::from_secs(60))
        .await;
    assert_eq!(gone_ids, ["evt_gone"], "{}", replica.stderr());
    let received = receiver.received();
    let request = |id: &str| {
        received
            .iter()
            .find(|r| r.header("webhook-id") == Some(id))
            .unwrap_or_else(|| panic!("no request for {id}"))
    };

    // The traced event: same trace, a span of the delivery's own, the
    // sampled flag and the trace state carried over.
    let sent = request("evt_traced").header("traceparent").unwrap();
    let (trace_id, span_id, flags) = parts(sent);
    assert_eq!(trace_id, TRACE_ID);
    assert_ne!(span_id, PARENT_ID);
    assert_eq!(flags, "01");
    assert_eq!(request("evt_traced").header("tracestate"), Some(TRACESTATE));

    // The event without a trace context starts a trace of its own.
    let fresh = request("evt_plain").header("traceparent").unwrap();
    let (fresh_trace, fresh_span, fresh_flags) = parts(fresh);
    assert_ne!(fresh_trace, TRACE_ID);
    assert_ne!(fresh_span, span_id);
    assert_eq!(fresh_flags, "01");
    assert_eq!(request("evt_plain").header("tracestate"), None);

    // The gone tenant's request carries its event's trace, unsampled as
    // it came; its dead letter keeps the event's own header.
    let gone_sent = request("evt_gone").header("traceparent").unwrap();
    let (gone_trace, gone_span, gone_flags) = parts(gone_sent);
    assert_eq!(gone_trace, dead_trace);
    assert_ne!(gone_span, "b7ad6b7169203331");
    assert_eq!(gone_flags, "00");
    let letters = broker
        .consume(&topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(letters.len(), 1, "{}", replica.stderr());
    assert_eq!(letters[0].header("dlq.reason"), Some("rejected"));
    assert_eq!(letters[0].header("traceparent"), Some(dead.as_str()));

    // Logs: every line inside a delivery names its trace and span.
    replica
        .wait_for_log("dead-lettering", Duration::from_secs(30))
        .await;
    let stderr = replica.stderr();
    let traced_lines = log_lines_of_trace(&stderr, TRACE_ID);
    assert!(
        !traced_lines.is_empty(),
        "no log line of the trace:\n{stderr}"
    );
    for line in &traced_lines {
        assert_eq!(line["span"]["span_id"], span_id, "{line}");
        assert_eq!(line["span"]["tenant"], "ok", "{line}");
    }
    let dead_lines = log_lines_of_trace(&stderr, dead_trace);
    assert!(
        dead_lines
            .iter()
            .any(|l| l["message"] == "dead-lettering" && l["span"]["span_id"] == gone_span),
        "no dead-lettering line of the trace:\n{stderr}"
    );
    assert!(!log_lines_of_trace(&stderr, fresh_trace).is_empty());
}

/// A local OTLP/HTTP receiver: `POST /v1/traces` with binary protobuf,
/// every request decoded and kept.
struct Collector {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Self {
        let requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Default::default();
        let kept = requests.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let kept = kept.clone();
                async move {
                    assert_eq!(
                        headers.get("content-type").and_then(|v| v.to_str().ok()),
                        Some("application/x-protobuf")
                    );
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(request) => {
                            kept.lock().unwrap().push(request);
                            // An empty ExportTraceServiceResponse.
                            (
                                StatusCode::OK,
                                [("content-type", "application/x-protobuf")],
                                Vec::new(),
                            )
                        }
                        Err(_) => (
                            StatusCode::BAD_REQUEST,
                            [("content-type", "text/plain")],
                            b"not an ExportTraceServiceRequest".to_vec(),
                        ),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("collector server");
        });
        Self {
            addr,
            requests,
            server,
        }
    }

    fn resource_spans(&self) -> Vec<ResourceSpans> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.clone())
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string(value: &str) -> Value {
    Value::StringValue(value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deliverys_span_is_exported_with_its_attempts_and_flushed_on_sigterm() {
    let broker = Broker::new("trace-export");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = setup(&broker, dir.path()).await;
    let collector = Collector::start().await;
    // The first attempt fails, the second is delivered.
    let receiver = Receiver::start(Arc::new(|count, _| {
        if count == 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }))
    .await;
    let tenant = TestTenant::new("traced");
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/traced")))
        .await;
    let traced = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let (partition, offset) = broker
        .produce(
            &topics.events,
            Some(b"traced"),
            Some(&event("evt_exported")),
            &[
                ("traceparent", traced.as_bytes()),
                ("tracestate", TRACESTATE.as_bytes()),
            ],
        )
        .await;

    let mut command = run_command(&broker, &topology);
    command
        .env(
            "HOOKLINE__TELEMETRY__OTLP_ENDPOINT",
            format!("http://{}/v1/traces", collector.addr),
        )
        // Nothing is exported on the processor's schedule within the test:
        // the span must come from the flush at shutdown.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000");
    let mut replica = Spawned::start(command);
    replica
        .wait_for_log(
            "exporting delivery spans over OTLP/HTTP",
            Duration::from_secs(30),
        )
        .await;
    let received = receiver.wait_for(2, Duration::from_secs(60)).await;
    assert_eq!(received.len(), 2, "{}", replica.stderr());
    let sent = received[0].header("traceparent").unwrap().to_string();
    assert_eq!(
        received[1].header("traceparent"),
        Some(sent.as_str()),
        "both attempts of one delivery send one span id"
    );
    let (_, span_id, _) = parts(&sent);
    // The delivery is done once its offset is past; give the worker a
    // moment to end the span, which it does right after the 200.
    replica
        .wait_for_log("\"message\":\"done\"", Duration::from_secs(30))
        .await;
    assert!(
        collector.resource_spans().is_empty(),
        "exported before the flush"
    );

    replica.signal("TERM");
    let status = replica.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", replica.stderr());

    let deadline = Instant::now() + Duration::from_secs(10);
    let resource_spans = loop {
        let spans = collector.resource_spans();
        if !spans.is_empty() || Instant::now() >= deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let spans: Vec<&Span> = resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    assert_eq!(spans.len(), 1, "{resource_spans:#?}\n{}", replica.stderr());
    let span = spans[0];
    let resource = resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        attribute(&resource.attributes, "service.name"),
        Some(&string("hookline"))
    );

    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), PARENT_ID);
    assert_eq!(hex(&span.span_id), span_id);
    assert_eq!(span.trace_state, TRACESTATE);
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    let attrs = &span.attributes;
    assert_eq!(attribute(attrs, "hookline.tenant"), Some(&string("traced")));
    assert_eq!(
        attribute(attrs, "hookline.webhook.id"),
        Some(&string("evt_exported"))
    );
    assert_eq!(
        attribute(attrs, "messaging.destination.name"),
        Some(&string(&topics.events))
    );
    assert_eq!(
        attribute(attrs, "messaging.destination.partition.id"),
        Some(&string(&partition.to_string()))
    );
    assert_eq!(
        attribute(attrs, "messaging.kafka.offset"),
        Some(&Value::IntValue(offset))
    );
    assert_eq!(
        attribute(attrs, "http.response.status_code"),
        Some(&Value::IntValue(200))
    );
    assert_eq!(
        attribute(attrs, "hookline.outcome"),
        Some(&string("delivered"))
    );
    assert_eq!(
        attribute(attrs, "hookline.attempts"),
        Some(&Value::IntValue(2))
    );

    assert_eq!(span.events.len(), 2, "{span:#?}");
    for (event, (number, status, result)) in span
        .events
        .iter()
        .zip([(1, 503, "http_error"), (2, 200, "delivered")])
    {
        assert_eq!(event.name, "attempt");
        assert_eq!(
            attribute(&event.attributes, "hookline.attempt"),
            Some(&Value::IntValue(number))
        );
        assert_eq!(
            attribute(&event.attributes, "http.response.status_code"),
            Some(&Value::IntValue(status))
        );
        assert_eq!(
            attribute(&event.attributes, "hookline.attempt.result"),
            Some(&string(result))
        );
    }
    assert!(span.events[0].time_unix_nano < span.events[1].time_unix_nano);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_logged_and_holds_back_no_delivery() {
    let broker = Broker::new("trace-export-down");
    let dir = tempfile::tempdir().unwrap();
    let (topics, topology) = setup(&broker, dir.path()).await;
    let receiver = Receiver::ok().await;
    let tenant = TestTenant::new("traced");
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/traced")))
        .await;
    for id in ["evt_1", "evt_2"] {
        broker
            .produce(&topics.events, Some(b"traced"), Some(&event(id)), &[])
            .await;
    }
    // A port nothing listens on: every export is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1/traces", closed.local_addr().unwrap());
    drop(closed);
    let mut command = run_command(&broker, &topology);
    command
        .env("HOOKLINE__TELEMETRY__OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let replica = Spawned::start(command);
    let ids = receiver
        .wait_webhook_ids("/traced", 2, Duration::from_secs(60))
        .await;
    assert_eq!(ids, ["evt_1", "evt_2"], "{}", replica.stderr());
    replica
        .wait_for_log(
            "delivery spans could not be exported",
            Duration::from_secs(30),
        )
        .await;
    let warning = replica
        .stderr()
        .lines()
        .find(|l| l.contains("delivery spans could not be exported"))
        .map(str::to_string)
        .unwrap();
    let warning: serde_json::Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(warning["failed_exports"].as_u64() >= Some(1), "{warning}");
}
