//! `hookline api`: the tenant self-service HTTP API (DESIGN §14), the
//! prototype's subscribe flow over HTTP.
//!
//! Kafka stays the only database: every write is a record on the `tenants`
//! topic (or the `events` topic, for `POST /v1/events`), answered only after
//! the broker acknowledged it; every read comes from [`records::RecordTable`],
//! restored from that topic before the listener serves and followed after.
//!
//! Semantics a client can rely on:
//! - **Read-your-writes.** After the acknowledgement, a write waits until
//!   the table has applied the record's offset (bounded by
//!   [`VISIBILITY_TIMEOUT`]), so the writer's next request sees it.
//! - **Pending tenants.** `POST /v1/tenants` writes the record at once, with
//!   the API key's hash, a signing secret, and whatever part of the record
//!   the operator gave. Until the tenant has set both its URL and its public
//!   key, the record lacks fields the contract requires: every reader
//!   (replicas included) treats it as invalid, so its events are
//!   dead-lettered as `invalid_tenant`, which is right for a tenant that
//!   has not finished onboarding. No marker field is stored: "pending" is
//!   derived from the missing fields and shown by `GET`.
//! - **Concurrent updates.** Writes in one API process are serialised, and
//!   each one starts from the latest applied record, so two updates of
//!   different fields never lose one another. A client that must not
//!   overwrite a change it has not seen sends `If-Match` with the `ETag` of
//!   the record it read (the record's partition and offset): a different
//!   current version answers 412. Without `If-Match` the last writer wins.
//!   With several API processes, `If-Match` is checked against this
//!   process's table, which may lag another process's write by the
//!   follower's delay; run one API process when that matters.
//! - **Isolation.** A tenant key opens its own tenant's routes only; for any
//!   other tenant id, existing or not, the answer is the same 404.
//! - **Recovery.** A tenant replays its own dead letters with the engine of
//!   `hookline dlq replay` and lists them without payloads (see
//!   [`recovery`]); both read the dead-letter topic, so a few at most run
//!   at once, and one recovery per tenant.

mod auth;
mod events;
mod model;
mod openapi;
mod problem;
mod records;
mod recovery;
mod tenants;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, header};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::kafka::producer::{AckedProducer, ProduceError};
use crate::kafka::table_reader::{CONNECT_TIMEOUT, TableReader, TableReaderError};
use crate::tenants::record::MAX_RECORD_BYTES;

pub use model::{
    CreateTenant, CreatedTenant, IssuedApiKey, IssuedSigningSecret, PublishEvent, PublishedEvent,
    TenantStatus, TenantView,
};
pub use openapi::openapi;
pub use problem::{ApiError, PROBLEM_JSON, Problem};
pub use records::{RecordTable, Version};

/// How long a write may wait for the broker's acknowledgement before the
/// client is told to retry.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a write waits for the table to apply it before answering all
/// the same (the record is durable; only its visibility is late).
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request body of the tenant routes: a tenant record's bound.
const MAX_BODY_BYTES: usize = MAX_RECORD_BYTES;

/// What `hookline api` serves with.
pub struct ApiSettings {
    pub admin_token: SecretString,
    /// `None` disables `POST /v1/events`.
    pub producer_token: Option<SecretString>,
    pub tenants_topic: String,
    pub events_topic: String,
    /// The dead-letter topic, which recoveries replay from and listings
    /// read.
    pub dead_letters_topic: String,
    /// `delivery.allow_private_destinations`: whether URLs may name
    /// loopback, private and other blocked addresses.
    pub allow_private_destinations: bool,
    /// `delivery.max_payload_bytes`: the largest event accepted.
    pub max_payload_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tenants(#[from] TableReaderError),
    #[error(transparent)]
    Producer(#[from] ProduceError),
    #[error("the HTTP server failed: {0}")]
    Io(#[source] std::io::Error),
}

/// The state every handler shares.
struct App {
    settings: ApiSettings,
    /// The cluster's settings, for the readers and the producer that a
    /// recovery opens of its own.
    kafka: KafkaConfig,
    table: RecordTable,
    producer: AckedProducer,
    /// Serialises the read-modify-write cycles of this process (see the
    /// module documentation on concurrent updates).
    writes: tokio::sync::Mutex<()>,
    /// The recoveries and dead-letter reads running.
    recoveries: recovery::Recoveries,
    /// Cancelled when the server stops: a recovery then stops too, once
    /// what it sent is acknowledged and remembered.
    shutdown: CancellationToken,
}

type AppState = Arc<App>;

/// Restores the tenant records, then serves the API on `listener` until
/// `shutdown` is cancelled.
pub async fn serve(
    kafka: &KafkaConfig,
    settings: ApiSettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let reader = TableReader::connect(kafka, &settings.tenants_topic, CONNECT_TIMEOUT).await?;
    let table = RecordTable::new();
    let summary = table.restore(&reader).await?;
    tracing::info!(
        records = summary.records,
        elapsed_ms = summary.elapsed.as_millis() as u64,
        "tenant records restored"
    );
    let follower = tokio::spawn(table.clone().follow(reader, shutdown.child_token()));
    let producer = AckedProducer::new(kafka, WRITE_TIMEOUT)?;
    let app = Arc::new(App {
        settings,
        kafka: kafka.clone(),
        table,
        producer,
        writes: tokio::sync::Mutex::new(()),
        recoveries: recovery::Recoveries::default(),
        shutdown: shutdown.clone(),
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "tenant API listening");
    }
    let result = axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    let _ = follower.await;
    result.map_err(ServeError::Io)
}

/// Every route, `/openapi.json` included, with problem documents for
/// unknown paths and methods.
fn router(app: AppState) -> Router {
    let (routes, doc) = openapi::routes().split_for_parts();
    // Serialised once: the document is fixed for the life of the process.
    let doc = axum::body::Bytes::from(
        serde_json::to_vec(&openapi::complete(doc))
            .expect("an OpenAPI document built from types always serialises"),
    );
    routes
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
            }),
        )
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(app)
}

impl App {
    /// Writes `id`'s record (`None`: a tombstone), waits for the broker's
    /// acknowledgement, then for the table to apply it.
    async fn write(
        &self,
        id: &str,
        fields: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Version, ApiError> {
        let value = fields
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ApiError::Invalid(format!("the record cannot be encoded: {e}")))?;
        if let Some(value) = &value
            && value.len() > MAX_RECORD_BYTES
        {
            return Err(ApiError::Invalid(format!(
                "the record would be {} bytes, more than the {MAX_RECORD_BYTES} allowed",
                value.len()
            )));
        }
        let ack = self
            .producer
            .send(
                &self.settings.tenants_topic,
                id.as_bytes(),
                value.as_deref(),
            )
            .await
            .map_err(ApiError::Broker)?;
        if !self.table.wait_applied(ack, VISIBILITY_TIMEOUT).await {
            tracing::warn!(
                tenant = %id,
                "tenant record written but not yet read back; the next read may miss it"
            );
        }
        Ok(ack.into())
    }
}

/// Reads a JSON request body of at most `limit` bytes.
async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| {
            let essence = essence.trim().to_ascii_lowercase();
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    // Reading fails only past the limit or when the client breaks the
    // connection, in which case nobody reads the answer.
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::BodyTooLarge { limit })?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Invalid(format!("request body: {e}")),
        _ => ApiError::MalformedRequest(format!("request body is not valid JSON: {e}")),
    })
}

/// Reads an optional JSON body: an empty one (with or without a
/// content type) is `None`, anything else is read as [`read_json`] reads
/// it.
async fn read_optional_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Option<T>, ApiError> {
    let declared_empty = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    if declared_empty || !headers.contains_key(header::CONTENT_TYPE) {
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| ApiError::BodyTooLarge { limit })?;
        if bytes.is_empty() {
            return Ok(None);
        }
        // A body without a content type is not declared as JSON.
        return read_json(headers, Body::from(bytes), limit).await.map(Some);
    }
    read_json(headers, body, limit).await.map(Some)
}

/// Checks `If-Match` (RFC 9110 §13.1.1, strong comparison) against the
/// current version; no header means no condition.
fn check_if_match(headers: &HeaderMap, current: Version) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let current = current.etag();
    let value = value
        .to_str()
        .map_err(|_| ApiError::MalformedRequest("If-Match is not visible ASCII".into()))?;
    let matches = value.trim() == "*" || value.split(',').any(|tag| tag.trim() == current);
    if matches {
        Ok(())
    } else {
        Err(ApiError::VersionMismatch { current })
    }
}
