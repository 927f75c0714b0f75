//! The tenant routes: the operator's (admin token) and the tenant's own
//! (its API key).

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::auth::{api_key_sha256, generate_api_key, require_tenant_key, require_token};
use super::model::{
    CreateTenant, CreatedTenant, IssuedApiKey, IssuedSigningSecret, SetEvents, SetPublicKey,
    SetUrl, TenantView, validate_record,
};
use super::records::{StoredRecord, Version};
use super::{ApiError, AppState, MAX_BODY_BYTES, check_if_match, read_json};
use crate::crypto::SigningSecret;
use crate::tenants::record::validate_id;

/// The `{id}` of a tenant route. An id that cannot exist is a tenant that
/// does not exist.
pub struct TenantId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TenantId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::TenantNotFound)?;
        validate_id(&id).map_err(|_| ApiError::TenantNotFound)?;
        Ok(TenantId(id))
    }
}

/// A JSON answer with the record version as its `ETag`.
fn with_etag(status: StatusCode, version: Version, body: impl serde::Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    // A version is two integers, a dash and quotes: always a valid header.
    if let Ok(etag) = HeaderValue::from_str(&version.etag()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn view(id: &str, fields: Map<String, Value>, version: Version) -> TenantView {
    TenantView::of(
        id,
        &StoredRecord {
            fields: Some(fields),
            version,
        },
    )
}

/// Create a tenant; its API key and signing secret are shown once.
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "admin",
    security(("admin_token" = [])),
    request_body(content = CreateTenant, content_type = "application/json"),
    responses(
        (status = 201, description = "Created. The API key and the signing secret are shown only in this answer.",
         body = CreatedTenant, headers(("ETag" = String, description = "The record version"))),
        (status = 409, description = "A tenant with this id exists",
         body = super::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_tenant(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_token(&headers, &app.settings.admin_token)?;
    let request: CreateTenant = read_json(&headers, body, MAX_BODY_BYTES).await?;
    validate_id(&request.id).map_err(|e| ApiError::Invalid(format!("id: {e}")))?;
    let api_key = generate_api_key();
    let secret = SigningSecret::generate().to_whsec();
    let mut fields = Map::new();
    let optional = [
        ("url", request.url.map(Value::from)),
        ("public_key", request.public_key.map(Value::from)),
        ("key_id", request.key_id.map(Value::from)),
        ("events", request.events.map(Value::from)),
        ("enabled", request.enabled.map(Value::from)),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            fields.insert(name.into(), value);
        }
    }
    fields.insert("signing_secret".into(), secret.expose_secret().into());
    fields.insert("api_key_sha256".into(), api_key_sha256(&api_key).into());
    let id = request.id;
    validate_record(&id, &fields, app.settings.allow_private_destinations)?;

    let _writing = app.writes.lock().await;
    if app.table.get(&id).is_some() {
        return Err(ApiError::TenantExists(id));
    }
    let version = app.write(&id, Some(&fields)).await?;
    tracing::info!(tenant = %id, "tenant created");
    Ok(with_etag(
        StatusCode::CREATED,
        version,
        CreatedTenant {
            tenant: view(&id, fields, version),
            api_key: api_key.expose_secret().to_string(),
            signing_secret: secret.expose_secret().to_string(),
        },
    ))
}

/// Delete a tenant: a tombstone on the tenants topic.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}",
    tag = "admin",
    security(("admin_token" = [])),
    params(
        ("id" = String, Path, description = "Tenant id", example = "acme"),
        ("If-Match" = Option<String>, Header, description = "Delete only this version (an ETag)"),
    ),
    responses((status = 204, description = "Deleted")),
)]
pub async fn delete_tenant(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    require_token(&headers, &app.settings.admin_token)?;
    let _writing = app.writes.lock().await;
    let record = app.table.get(&id).ok_or(ApiError::TenantNotFound)?;
    check_if_match(&headers, record.version)?;
    app.write(&id, None).await?;
    tracing::info!(tenant = %id, "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Issue a new API key for a tenant; the previous key stops working.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/api-key",
    tag = "admin",
    security(("admin_token" = [])),
    params(
        ("id" = String, Path, description = "Tenant id", example = "acme"),
        ("If-Match" = Option<String>, Header, description = "Change only this version (an ETag)"),
    ),
    responses(
        (status = 200, description = "The new key, shown only in this answer", body = IssuedApiKey,
         headers(("ETag" = String, description = "The record version"))),
    ),
)]
pub async fn issue_api_key(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_token(&headers, &app.settings.admin_token)?;
    let _writing = app.writes.lock().await;
    let record = app.table.get(&id).ok_or(ApiError::TenantNotFound)?;
    check_if_match(&headers, record.version)?;
    let api_key = generate_api_key();
    // Only the key changes, so the rest of the record is not re-validated:
    // a key must be issuable for a tenant whose record is broken, so that
    // the tenant can repair it.
    let mut fields = record.fields.clone().unwrap_or_default();
    fields.insert("api_key_sha256".into(), api_key_sha256(&api_key).into());
    let version = app.write(&id, Some(&fields)).await?;
    tracing::info!(tenant = %id, "tenant API key issued");
    Ok(with_etag(
        StatusCode::OK,
        version,
        IssuedApiKey {
            api_key: api_key.expose_secret().to_string(),
            tenant: view(&id, fields, version),
        },
    ))
}

/// Read the own tenant record, without secrets.
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}",
    tag = "tenant",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "Tenant id", example = "acme")),
    responses(
        (status = 200, description = "The tenant", body = TenantView,
         headers(("ETag" = String, description = "The record version"))),
    ),
)]
pub async fn get_tenant(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = require_tenant_key(&headers, &app.table, &id)?;
    Ok(with_etag(
        StatusCode::OK,
        record.version,
        TenantView::of(&id, &record),
    ))
}

/// Set the public key deliveries are encrypted for.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}/public-key",
    tag = "tenant",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "Tenant id", example = "acme"),
        ("If-Match" = Option<String>, Header, description = "Change only this version (an ETag)"),
    ),
    request_body(content = SetPublicKey, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated tenant", body = TenantView,
         headers(("ETag" = String, description = "The record version"))),
    ),
)]
pub async fn set_public_key(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_tenant_key(&headers, &app.table, &id)?;
    let request: SetPublicKey = read_json(&headers, body, MAX_BODY_BYTES).await?;
    let (version, fields) = update(&app, &id, &headers, |fields| {
        fields.insert("public_key".into(), request.public_key.into());
        // A kid chosen for the previous key would now name the wrong key.
        match request.key_id {
            Some(kid) => fields.insert("key_id".into(), kid.into()),
            None => fields.remove("key_id"),
        };
    })
    .await?;
    Ok(with_etag(
        StatusCode::OK,
        version,
        view(&id, fields, version),
    ))
}

/// Set the webhook URL.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}/url",
    tag = "tenant",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "Tenant id", example = "acme"),
        ("If-Match" = Option<String>, Header, description = "Change only this version (an ETag)"),
    ),
    request_body(content = SetUrl, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated tenant", body = TenantView,
         headers(("ETag" = String, description = "The record version"))),
    ),
)]
pub async fn set_url(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_tenant_key(&headers, &app.table, &id)?;
    let request: SetUrl = read_json(&headers, body, MAX_BODY_BYTES).await?;
    let (version, fields) = update(&app, &id, &headers, |fields| {
        fields.insert("url".into(), request.url.into());
    })
    .await?;
    Ok(with_etag(
        StatusCode::OK,
        version,
        view(&id, fields, version),
    ))
}

/// Set the event-type patterns the tenant receives.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}/events",
    tag = "tenant",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "Tenant id", example = "acme"),
        ("If-Match" = Option<String>, Header, description = "Change only this version (an ETag)"),
    ),
    request_body(content = SetEvents, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated tenant", body = TenantView,
         headers(("ETag" = String, description = "The record version"))),
    ),
)]
pub async fn set_events(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_tenant_key(&headers, &app.table, &id)?;
    let request: SetEvents = read_json(&headers, body, MAX_BODY_BYTES).await?;
    let (version, fields) = update(&app, &id, &headers, |fields| {
        match request.events {
            Some(events) => fields.insert("events".into(), events.into()),
            None => fields.remove("events"),
        };
    })
    .await?;
    Ok(with_etag(
        StatusCode::OK,
        version,
        view(&id, fields, version),
    ))
}

/// Replace the signing secret; the new one is shown once.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/signing-secret",
    tag = "tenant",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "Tenant id", example = "acme"),
        ("If-Match" = Option<String>, Header, description = "Change only this version (an ETag)"),
    ),
    responses(
        (status = 200, description = "The new secret, shown only in this answer", body = IssuedSigningSecret,
         headers(("ETag" = String, description = "The record version"))),
    ),
)]
pub async fn rotate_signing_secret(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = SigningSecret::generate().to_whsec();
    let (version, fields) = update(&app, &id, &headers, |fields| {
        fields.insert("signing_secret".into(), secret.expose_secret().into());
    })
    .await?;
    tracing::info!(tenant = %id, "tenant signing secret rotated");
    Ok(with_etag(
        StatusCode::OK,
        version,
        IssuedSigningSecret {
            signing_secret: secret.expose_secret().to_string(),
            tenant: view(&id, fields, version),
        },
    ))
}

/// A tenant's change to its own record: under the write lock, checks the
/// key again against the latest record (it may have been rotated since the
/// request arrived) and `If-Match`, applies `change`, validates the whole
/// record and writes it.
async fn update(
    app: &AppState,
    id: &str,
    headers: &HeaderMap,
    change: impl FnOnce(&mut Map<String, Value>),
) -> Result<(Version, Map<String, Value>), ApiError> {
    let _writing = app.writes.lock().await;
    let record = require_tenant_key(headers, &app.table, id)?;
    check_if_match(headers, record.version)?;
    let mut fields = record.fields.clone().unwrap_or_default();
    change(&mut fields);
    validate_record(id, &fields, app.settings.allow_private_destinations)?;
    let version = app.write(id, Some(&fields)).await?;
    Ok((version, fields))
}
