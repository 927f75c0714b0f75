//! `POST /v1/events`: the prototype's `/publish`, for producers that cannot
//! speak Kafka. An event is accepted only once the broker acknowledged it,
//! and only if a replica would decode it: the check is the replica's own
//! decoder, so the two cannot disagree.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::auth::require_token;
use super::model::{PublishEvent, PublishedEvent};
use super::{ApiError, AppState, read_json};
use crate::error::error_chain;
use crate::events::{EventDecoder, EventError, RecordParts};
use crate::tenants::record::validate_id;

/// Room for the envelope (`tenant`, field names) around the largest event.
const ENVELOPE_BYTES: usize = 4 * 1024;

/// Publish one event to a tenant.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    security(("producer_token" = [])),
    request_body(content = PublishEvent, content_type = "application/json"),
    responses(
        (status = 202, description = "Acknowledged by Kafka; it will be delivered or dead-lettered",
         body = PublishedEvent),
        (status = 404, description = "Event ingestion is not enabled (no producer token configured)",
         body = super::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn publish_event(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let token = app
        .settings
        .producer_token
        .as_ref()
        .ok_or(ApiError::IngestionDisabled)?;
    require_token(&headers, token)?;
    let limit = app.settings.max_payload_bytes + ENVELOPE_BYTES;
    let request: PublishEvent = read_json(&headers, body, limit).await?;
    validate_id(&request.tenant).map_err(|e| ApiError::Invalid(format!("tenant: {e}")))?;
    let value =
        serde_json::to_vec(&request.event).map_err(|e| ApiError::Invalid(format!("event: {e}")))?;
    let now_millis = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let record = RecordParts {
        key: Some(request.tenant.as_bytes()),
        value: Some(&value),
        timestamp_millis: Some(now_millis),
        topic: &app.settings.events_topic,
        partition: 0,
        offset: 0,
    };
    EventDecoder::Json
        .decode(&record, app.settings.max_payload_bytes)
        .map_err(refusal)?;
    let ack = app
        .producer
        .send(
            &app.settings.events_topic,
            request.tenant.as_bytes(),
            Some(&value),
        )
        .await
        .map_err(ApiError::Broker)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(PublishedEvent {
            partition: ack.partition,
            offset: ack.offset,
        }),
    ))
}

/// The problem for an event a replica would dead-letter, with the cause
/// that the decoder's message leaves out (the JSON error's position).
fn refusal(error: EventError) -> ApiError {
    let detail = format!("event: {}", error_chain(&error));
    match error {
        EventError::PayloadTooLarge { .. } => ApiError::PayloadTooLarge(detail),
        _ => ApiError::Invalid(detail),
    }
}
