use super::*;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::RawError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn raw_error(code: u32, message: &str) -> RawError {
    serde_json::from_value(serde_json::json!({ "error_code": code, "message": message }))
        .expect("a RawError body")
}

fn status_error(status: &str, code: u32, message: &str, retriable: bool) -> SRCError {
    let text = format!("HTTP request to schema registry failed with status {status}");
    if retriable {
        SRCError::retryable_with_cause(raw_error(code, message), &text)
    } else {
        SRCError::non_retryable_with_cause(raw_error(code, message), &text)
    }
}

const URL: &str = "http://registry:8081";

#[test]
fn unknown_schema_id_is_a_verdict_not_a_transient_failure() {
    let e = RegistryError::classify(
        URL,
        Lookup::SchemaId(7),
        status_error(
            "404 Not Found",
            40403,
            "No content with ID '7' was found.",
            false,
        ),
    );
    assert!(
        matches!(e, RegistryError::SchemaNotFound { id: 7 }),
        "{e:?}"
    );
    assert!(e.is_schema_verdict());
    assert!(!e.is_transient());
    assert_eq!(e.to_string(), "schema id 7 is not in the schema registry");
}

#[test]
fn not_found_without_the_registry_code_is_not_a_verdict() {
    // A wrong URL (missing /apis/ccompat/v7) also answers 404, but with no
    // Confluent error code: every Avro event would be dead-lettered if that
    // counted as "schema not found".
    let e = RegistryError::classify(
        URL,
        Lookup::SchemaId(7),
        status_error(
            "404 Not Found",
            0,
            "couldn't parse schema registry error json",
            false,
        ),
    );
    assert!(!e.is_schema_verdict(), "{e:?}");
    assert!(matches!(
        e,
        RegistryError::Failed {
            status: Some(404),
            error_code: None,
            ..
        }
    ));
}

#[test]
fn server_errors_are_transient_whatever_the_client_thinks() {
    // The client marks only 502 and 503 as retriable; 500 and 504 are just
    // as much the registry's problem.
    for (status, retriable) in [
        ("500 Internal Server Error", false),
        ("502 Bad Gateway", true),
        ("503 Service Unavailable", true),
        ("504 Gateway Timeout", false),
        ("429 Too Many Requests", false),
    ] {
        let e = RegistryError::classify(
            URL,
            Lookup::SchemaId(1),
            status_error(status, 50001, "store error", retriable),
        );
        assert!(e.is_transient(), "{status}: {e:?}");
        assert!(!e.is_schema_verdict(), "{status}");
    }
}

#[test]
fn client_errors_other_than_not_found_are_neither_transient_nor_verdicts() {
    let e = RegistryError::classify(
        URL,
        Lookup::SchemaId(1),
        status_error("401 Unauthorized", 40101, "unauthorized", false),
    );
    assert!(!e.is_transient());
    assert!(!e.is_schema_verdict());
    assert_eq!(
        e.to_string(),
        "schema registry at http://registry:8081 answered the request for schema id 1 with HTTP 401 (error code 40101): unauthorized"
    );
}

#[test]
fn transport_failures_are_unreachable_and_transient() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    let e = RegistryError::classify(
        URL,
        Lookup::SchemaId(1),
        SRCError::retryable_with_cause(io, "http call to schema registry failed"),
    );
    assert!(matches!(e, RegistryError::Unreachable { .. }), "{e:?}");
    assert!(e.is_transient());
}

#[test]
fn unreadable_answers_are_bad_responses_and_transient() {
    let io = std::io::Error::other("expected value at line 1 column 1");
    let e = RegistryError::classify(
        URL,
        Lookup::SchemaId(1),
        SRCError::non_retryable_with_cause(io, "could not parse to RawRegisteredSchema"),
    );
    assert!(matches!(e, RegistryError::BadResponse { .. }), "{e:?}");
    assert!(e.is_transient());
    assert!(!e.is_schema_verdict());
}

#[test]
fn missing_references_are_verdicts() {
    for code in [40401, 40402] {
        let e = RegistryError::classify(
            URL,
            Lookup::Reference {
                subject: "money",
                version: 3,
            },
            status_error("404 Not Found", code, "not found", false),
        );
        assert!(e.is_schema_verdict(), "{code}: {e:?}");
        assert_eq!(
            e.to_string(),
            "the writer schema references subject `money` version 3, which is not in the schema registry"
        );
    }
}

#[test]
fn registration_conflicts_are_reported_as_incompatibility() {
    let e = RegistryError::classify(
        URL,
        Lookup::Register {
            subject: "events-value",
        },
        status_error(
            "409 Conflict",
            409,
            "Incompatible artifact: events-value [AVRO], num of incompatible diffs: {1}",
            false,
        ),
    );
    assert!(!e.is_transient());
    assert_eq!(
        e.to_string(),
        "subject `events-value` refused the schema as incompatible with its registered versions (compatibility rule): Incompatible artifact: events-value [AVRO], num of incompatible diffs: {1}"
    );
    let e = RegistryError::classify(
        URL,
        Lookup::Register {
            subject: "events-value",
        },
        status_error("422 Unprocessable Entity", 42201, "Invalid schema", false),
    );
    assert!(matches!(e, RegistryError::Rejected { .. }), "{e:?}");
}

#[test]
fn lookups_of_an_absent_subject_or_schema_find_nothing() {
    for (status, code) in [("404 Not Found", 40401), ("404 Not Found", 40403)] {
        let e = RegistryError::classify(
            URL,
            Lookup::Find {
                subject: "events-value",
            },
            status_error(status, code, "not found", false),
        );
        assert!(
            matches!(e, RegistryError::NotRegistered { .. }),
            "{code}: {e:?}"
        );
    }
    // Anything else is an error, not "absent".
    let e = RegistryError::classify(
        URL,
        Lookup::Find {
            subject: "events-value",
        },
        status_error("503 Service Unavailable", 50301, "down", true),
    );
    assert!(e.is_transient(), "{e:?}");
}

#[test]
fn http_status_is_read_from_the_client_error_text() {
    assert_eq!(
        http_status_of(
            "HTTP request to schema registry failed with status 503 Service Unavailable"
        ),
        Some(503)
    );
    assert_eq!(http_status_of("http call to schema registry failed"), None);
    assert_eq!(http_status_of("status 5"), None);
}

fn http_status_of(text: &str) -> Option<u16> {
    // Through classify, the only consumer, so the test pins the behaviour
    // rather than a private helper.
    match RegistryError::classify(
        URL,
        Lookup::SchemaId(1),
        SRCError::non_retryable_with_cause(raw_error(1, "m"), text),
    ) {
        RegistryError::Failed { status, .. } => status,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_event_schema_parses_and_has_the_contract_fields() {
    let schema = Schema::parse_str(EVENT_SCHEMA).expect("event.avsc is valid Avro");
    let Schema::Record(record) = schema else {
        panic!("event.avsc is a record");
    };
    let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["type", "data", "id", "timestamp"]);
    // Optional fields have defaults, so that a reader schema may add them.
    for optional in ["id", "timestamp"] {
        let field = &record.fields[record.lookup[optional]];
        assert_eq!(field.default, Some(serde_json::Value::Null), "{optional}");
    }
}

#[test]
fn value_subject_follows_the_topic_name_strategy() {
    assert_eq!(value_subject("events"), "events-value");
}

#[test]
fn trailing_slash_of_the_url_is_dropped() {
    let url = Url::parse("http://127.0.0.1:8081/apis/ccompat/v7/").unwrap();
    assert_eq!(
        SchemaRegistry::new(&url).unwrap().url(),
        "http://127.0.0.1:8081/apis/ccompat/v7"
    );
}

/// An HTTP server on loopback that answers every request with `status`
/// and `body`, standing in for a registry that misbehaves in one way.
async fn canned_registry(status: &str, content_type: &str, body: &str) -> Url {
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    Url::parse(&format!("http://{addr}")).unwrap()
}

async fn fetch_error(url: &Url) -> RegistryError {
    SchemaRegistry::new(url)
        .unwrap()
        .fetch_avro_schema(1)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    // Bind then drop: nothing listens on the port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let e = fetch_error(&url).await;
    assert!(matches!(e, RegistryError::Unreachable { .. }), "{e:?}");
    assert!(e.is_transient());
}

const JSON: &str = "application/json";

#[tokio::test]
async fn server_error_answer_is_transient() {
    let url = canned_registry(
        "500 Internal Server Error",
        JSON,
        r#"{"error_code":50001,"message":"db is down"}"#,
    )
    .await;
    let e = fetch_error(&url).await;
    assert!(e.is_transient() && !e.is_schema_verdict(), "{e:?}");
    assert!(
        e.to_string()
            .contains("HTTP 500 (error code 50001): db is down"),
        "{e}"
    );
}

#[tokio::test]
async fn schema_not_found_answer_is_a_verdict() {
    let url = canned_registry(
        "404 Not Found",
        JSON,
        r#"{"error_code":40403,"message":"Schema not found"}"#,
    )
    .await;
    let e = fetch_error(&url).await;
    assert!(
        matches!(e, RegistryError::SchemaNotFound { id: 1 }),
        "{e:?}"
    );
}

#[tokio::test]
async fn html_answer_is_a_transient_bad_response() {
    let url = canned_registry("200 OK", "text/html", "<html></html>").await;
    let e = fetch_error(&url).await;
    assert!(matches!(e, RegistryError::BadResponse { .. }), "{e:?}");
    assert!(e.is_transient());
}

#[tokio::test]
async fn schema_of_another_type_is_a_verdict() {
    let url = canned_registry(
        "200 OK",
        JSON,
        r#"{"schema":"syntax = 'proto3';","schemaType":"PROTOBUF"}"#,
    )
    .await;
    let e = fetch_error(&url).await;
    assert!(matches!(e, RegistryError::NotAvro { id: 1, .. }), "{e:?}");
    assert!(e.is_schema_verdict());
}

#[tokio::test]
async fn unparsable_schema_from_the_registry_is_a_verdict() {
    let url = canned_registry("200 OK", JSON, r#"{"schema":"{\"type\":\"nope\"}"}"#).await;
    let e = fetch_error(&url).await;
    assert!(
        matches!(e, RegistryError::InvalidSchema { id: 1, .. }),
        "{e:?}"
    );
    assert!(e.is_schema_verdict());
}
