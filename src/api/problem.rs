//! Errors of the tenant API and their wire form: RFC 9457 problem documents
//! (`application/problem+json`).
//!
//! A response never carries an error's source chain: broker errors name
//! addresses and internals that a client has no use for. They are logged
//! here instead, once, at the point where they become a response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kafka::producer::ProduceError;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, stable across releases
    /// (`urn:hookline:problem:<slug>`).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short, human-readable summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong with this request, naming the field when there is
    /// one.
    pub detail: String,
}

/// Why a request failed. Each variant is one kind of problem.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request has no `Authorization: Bearer` credentials")]
    MissingCredentials,
    #[error("the credentials are not valid for this route")]
    BadCredentials,
    /// The tenant does not exist, or the caller may not see it: the two are
    /// deliberately the same answer.
    #[error("no such tenant")]
    TenantNotFound,
    #[error("no route matches this path")]
    NoRoute,
    #[error("this route does not accept the method")]
    MethodNotAllowed,
    #[error("event ingestion over HTTP is not enabled on this server")]
    IngestionDisabled,
    #[error("tenant `{0}` already exists")]
    TenantExists(String),
    #[error("the tenant's current version is {current}, not the one given in If-Match")]
    VersionMismatch { current: String },
    #[error("{0}")]
    MalformedRequest(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the write was not acknowledged by Kafka")]
    Broker(#[source] ProduceError),
    #[error("a recovery of this tenant is already running; its answer says what it replayed")]
    RecoveryInProgress,
    #[error("too many dead-letter reads are running; retry shortly")]
    DeadLettersBusy,
    /// A recovery stopped before the end; the detail says how far it got
    /// and whether the same request continues from there.
    #[error("{0}")]
    RecoveryIncomplete(String),
    #[error("the dead-letter topic could not be read; retry")]
    DeadLettersUnavailable,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingCredentials | ApiError::BadCredentials => StatusCode::UNAUTHORIZED,
            ApiError::TenantNotFound | ApiError::NoRoute | ApiError::IngestionDisabled => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TenantExists(_) | ApiError::RecoveryInProgress => StatusCode::CONFLICT,
            ApiError::VersionMismatch { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::MalformedRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge { .. } | ApiError::PayloadTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Broker(_)
            | ApiError::DeadLettersBusy
            | ApiError::RecoveryIncomplete(_)
            | ApiError::DeadLettersUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable slug and title of the kind of problem.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::MissingCredentials => ("unauthenticated", "Authentication required"),
            ApiError::BadCredentials => ("bad-credentials", "Invalid credentials"),
            ApiError::TenantNotFound => ("tenant-not-found", "Tenant not found"),
            ApiError::NoRoute => ("no-route", "Not found"),
            ApiError::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            ApiError::IngestionDisabled => ("ingestion-disabled", "Event ingestion disabled"),
            ApiError::TenantExists(_) => ("tenant-exists", "Tenant already exists"),
            ApiError::VersionMismatch { .. } => ("version-mismatch", "Tenant record has changed"),
            ApiError::MalformedRequest(_) => ("malformed-request", "Malformed request"),
            ApiError::Invalid(_) => ("invalid-field", "Invalid field"),
            ApiError::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            ApiError::BodyTooLarge { .. } => ("body-too-large", "Request body too large"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "Event too large"),
            ApiError::Broker(_) => ("broker-unavailable", "Kafka did not acknowledge the write"),
            ApiError::RecoveryInProgress => ("recovery-in-progress", "Recovery in progress"),
            ApiError::DeadLettersBusy => ("dead-letters-busy", "Too many dead-letter reads"),
            ApiError::RecoveryIncomplete(_) => ("recovery-incomplete", "Recovery incomplete"),
            ApiError::DeadLettersUnavailable => {
                ("dead-letters-unavailable", "Dead letters unavailable")
            }
        }
    }

    pub fn problem(&self) -> Problem {
        let (slug, title) = self.kind();
        let detail = match self {
            // Whether the record was stored is unknown: the client may
            // retry, and a retried write of the same change is harmless.
            ApiError::Broker(_) => {
                "the write may or may not have been stored; retry the request".to_string()
            }
            other => other.to_string(),
        };
        Problem {
            problem_type: format!("urn:hookline:problem:{slug}"),
            title: title.to_string(),
            status: self.status().as_u16(),
            detail,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Broker(source) = &self {
            tracing::warn!(error = %source, "tenant API write failed");
        }
        let status = self.status();
        let mut response = (status, axum::Json(self.problem())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hookline\""),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_carry_status_title_and_a_stable_type() {
        let problem = ApiError::TenantExists("acme".into()).problem();
        assert_eq!(problem.status, 409);
        assert_eq!(problem.problem_type, "urn:hookline:problem:tenant-exists");
        assert_eq!(problem.title, "Tenant already exists");
        assert_eq!(problem.detail, "tenant `acme` already exists");
    }

    #[test]
    fn responses_are_problem_json_and_401_names_the_scheme() {
        let response = ApiError::BadCredentials.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }

    #[test]
    fn every_503_says_when_to_retry_and_a_running_recovery_is_a_conflict() {
        for error in [
            ApiError::DeadLettersBusy,
            ApiError::DeadLettersUnavailable,
            ApiError::RecoveryIncomplete("3 dead letters were replayed".into()),
        ] {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        }
        let problem = ApiError::RecoveryInProgress.problem();
        assert_eq!(problem.status, 409);
        assert_eq!(
            problem.problem_type,
            "urn:hookline:problem:recovery-in-progress"
        );
    }
}
