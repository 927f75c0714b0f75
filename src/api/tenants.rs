//! The tenant routes: the operator's (admin token) and the tenant's own
//! (its API key).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use utoipa::{IntoParams, IntoResponses};

use super::auth::{
    api_key_sha256, generate_api_key, require_tenant_key, require_tenant_key_or_token,
    require_token,
};
use super::model::{
    CreateTenant, CreatedTenant, IssuedApiKey, IssuedSigningSecret, RotateSigningSecret, SetEvents,
    SetPublicKey, SetRateLimit, SetUrl, TenantView, validate_record,
};
use super::records::{StoredRecord, Version};
use super::{ApiError, AppState, MAX_BODY_BYTES, check_if_match, read_json, read_optional_json};
use crate::crypto::SigningSecret;
use crate::tenants::record::{
    DEFAULT_SIGNING_SECRET_GRACE, previous_signing_secret_expiry, validate_id,
};

/// The `{id}` of a tenant route. An id that cannot exist is a tenant that
/// does not exist.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct TenantId(
    /// Tenant id
    #[param(example = "acme")]
    pub String,
);

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

/// The `If-Match` header of the routes that change a record, for the
/// OpenAPI document; [`check_if_match`] reads it from the headers.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
struct IfMatch {
    /// Only if the record is still at this version (an ETag)
    #[param(rename = "If-Match")]
    #[allow(dead_code, reason = "never read: the type only describes the header")]
    if_match: Option<String>,
}

/// A tenant's record after a change, answered with its version as the
/// `ETag`.
#[derive(IntoResponses)]
#[response(
    status = 200,
    description = "The updated tenant",
    headers(("ETag" = String, description = "The record version"))
)]
pub struct UpdatedTenant(TenantView);

impl IntoResponse for UpdatedTenant {
    fn into_response(self) -> Response {
        let etag = self.0.version.clone();
        with_etag(StatusCode::OK, &etag, self.0)
    }
}

/// A JSON answer with `etag` (a record version, [`Version::etag`]) as its
/// `ETag`.
fn with_etag(status: StatusCode, etag: &str, body: impl serde::Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    // A version is two integers, a dash and quotes: always a valid header.
    if let Ok(etag) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn view(id: &str, fields: Map<String, Value>, version: Version) -> TenantView {
    TenantView::of_fields(id, Some(&fields), version)
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
        ("rate_limit", request.rate_limit.map(Value::from)),
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
        &version.etag(),
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
    params(TenantId, IfMatch),
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
    params(TenantId, IfMatch),
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
    let mut fields = record.fields().unwrap_or_default();
    fields.insert("api_key_sha256".into(), api_key_sha256(&api_key).into());
    let version = app.write(&id, Some(&fields)).await?;
    tracing::info!(tenant = %id, "tenant API key issued");
    Ok(with_etag(
        StatusCode::OK,
        &version.etag(),
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
    params(TenantId),
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
        &record.version.etag(),
        TenantView::of(&id, &record),
    ))
}

/// Set the public key deliveries are encrypted for.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}/public-key",
    tag = "tenant",
    security(("api_key" = [])),
    params(TenantId, IfMatch),
    request_body(content = SetPublicKey, content_type = "application/json"),
    responses(UpdatedTenant),
)]
pub async fn set_public_key(put: FieldPut) -> Result<UpdatedTenant, ApiError> {
    put.apply(Writers::Tenant, |request: SetPublicKey, fields| {
        fields.insert("public_key".into(), request.public_key.into());
        // A kid chosen for the previous key would now name the wrong key.
        set_or_remove(fields, "key_id", request.key_id);
    })
    .await
}

/// Set the webhook URL.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}/url",
    tag = "tenant",
    security(("api_key" = [])),
    params(TenantId, IfMatch),
    request_body(content = SetUrl, content_type = "application/json"),
    responses(UpdatedTenant),
)]
pub async fn set_url(put: FieldPut) -> Result<UpdatedTenant, ApiError> {
    put.apply(Writers::Tenant, |request: SetUrl, fields| {
        fields.insert("url".into(), request.url.into());
    })
    .await
}

/// Set the event-type patterns the tenant receives.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}/events",
    tag = "tenant",
    security(("api_key" = [])),
    params(TenantId, IfMatch),
    request_body(content = SetEvents, content_type = "application/json"),
    responses(UpdatedTenant),
)]
pub async fn set_events(put: FieldPut) -> Result<UpdatedTenant, ApiError> {
    put.apply(Writers::Tenant, |request: SetEvents, fields| {
        set_or_remove(fields, "events", request.events);
    })
    .await
}

/// Suspend the tenant.
///
/// Its events are parked on the dead-letter topic as `tenant_suspended`,
/// without attempts, until it is resumed (`POST /v1/tenants/{id}/resume`),
/// which delivers them first, in their order, and only then its newer
/// ones. The admin token.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/suspend",
    tag = "admin",
    security(("admin_token" = [])),
    params(TenantId),
    responses(UpdatedTenant),
)]
pub async fn suspend_tenant(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
) -> Result<UpdatedTenant, ApiError> {
    let (version, fields) = update(&app, &id, &headers, Writers::Operator, |fields| {
        fields.insert("suspended".into(), Value::Bool(true));
    })
    .await?;
    Ok(UpdatedTenant(view(&id, fields, version)))
}

/// Checks the credentials of the tenant or the operator, then clears the
/// operator's suspension in tenant `id`'s record. Returns whether it said
/// suspended; a record that does not is left as it is (the resumption then
/// finishes a replay that an earlier one left).
pub(super) async fn clear_suspension(
    app: &AppState,
    id: &str,
    headers: &HeaderMap,
) -> Result<bool, ApiError> {
    let suspended = |record: &StoredRecord| {
        record
            .fields()
            .is_some_and(|f| f.get("suspended") == Some(&Value::Bool(true)))
    };
    let record = Writers::TenantOrOperator.check(app, headers, id)?;
    if !suspended(&record) {
        return Ok(false);
    }
    update(app, id, headers, Writers::TenantOrOperator, |fields| {
        fields.remove("suspended");
    })
    .await?;
    Ok(true)
}

/// Set or remove the rate limit.
///
/// At most `rate_limit` events per second are delivered to the tenant: its
/// events are spaced at least `1 / rate_limit` seconds apart, and other
/// tenants are not affected. The tenant (its API key) or the operator (the
/// admin token) may set it.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}/rate-limit",
    tags = ["tenant", "admin"],
    security(("api_key" = []), ("admin_token" = [])),
    params(TenantId, IfMatch),
    request_body(content = SetRateLimit, content_type = "application/json"),
    responses(UpdatedTenant),
)]
pub async fn set_rate_limit(put: FieldPut) -> Result<UpdatedTenant, ApiError> {
    let id = put.id.clone();
    let updated = put
        .apply(
            Writers::TenantOrOperator,
            |request: SetRateLimit, fields| {
                set_or_remove(fields, "rate_limit", request.rate_limit);
            },
        )
        .await?;
    tracing::info!(tenant = %id, rate_limit = ?updated.0.rate_limit, "tenant rate limit set");
    Ok(updated)
}

/// Replace the signing secret; the new one is shown once.
///
/// The replaced secret keeps signing for a grace period (24 hours unless
/// the body says otherwise): until then every delivery carries two `v1,`
/// signatures in `webhook-signature`, the new secret's first, so that a
/// receiver that knows either accepts it while it switches to the new one.
/// A rotation during the grace period of an earlier one drops the secret
/// that one replaced. The body is optional.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/signing-secret",
    tag = "tenant",
    security(("api_key" = [])),
    params(TenantId, IfMatch),
    request_body(content = Option<RotateSigningSecret>, content_type = "application/json"),
    responses(
        (status = 200, description = "The new secret, shown only in this answer", body = IssuedSigningSecret,
         headers(("ETag" = String, description = "The record version"))),
    ),
)]
pub async fn rotate_signing_secret(
    State(app): State<AppState>,
    TenantId(id): TenantId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The credentials first, so that a key of another tenant gets the same
    // 404 whatever it sends.
    Writers::Tenant.check(&app, &headers, &id)?;
    let request: RotateSigningSecret = read_optional_json(&headers, body, MAX_BODY_BYTES)
        .await?
        .unwrap_or_default();
    let grace = request.grace.unwrap_or(DEFAULT_SIGNING_SECRET_GRACE);
    let expires_at = previous_signing_secret_expiry(SystemTime::now(), grace)
        .map_err(|e| ApiError::Invalid(format!("grace: {e}")))?;
    let secret = SigningSecret::generate().to_whsec();
    let (version, fields) = update(&app, &id, &headers, Writers::Tenant, |fields| {
        rotate_secret_fields(fields, secret.expose_secret(), expires_at);
    })
    .await?;
    tracing::info!(
        tenant = %id,
        grace = %humantime::format_duration(grace),
        "tenant signing secret rotated"
    );
    Ok(with_etag(
        StatusCode::OK,
        &version.etag(),
        IssuedSigningSecret {
            signing_secret: secret.expose_secret().to_string(),
            tenant: view(&id, fields, version),
        },
    ))
}

/// Puts `new` in place of the record's signing secret, and keeps the
/// replaced one as the previous secret until `expires_at` (`None`: not
/// kept). A replaced secret that does not parse is not kept: it could not
/// sign, and would make the record invalid.
fn rotate_secret_fields(fields: &mut Map<String, Value>, new: &str, expires_at: Option<String>) {
    let replaced = fields.insert("signing_secret".into(), new.into());
    fields.remove("previous_signing_secret");
    fields.remove("previous_signing_secret_expires_at");
    let replaced = replaced
        .as_ref()
        .and_then(Value::as_str)
        .filter(|text| SigningSecret::parse(text).is_ok());
    if let (Some(replaced), Some(expires_at)) = (replaced, expires_at) {
        fields.insert("previous_signing_secret".into(), replaced.into());
        fields.insert(
            "previous_signing_secret_expires_at".into(),
            expires_at.into(),
        );
    }
}

/// Who may change a field of a tenant's record.
#[derive(Debug, Clone, Copy)]
enum Writers {
    /// The tenant, with its API key.
    Tenant,
    /// The tenant, or the operator with the admin token: for what the
    /// operator may also impose on a tenant, such as its rate limit.
    TenantOrOperator,
    /// The operator alone, with the admin token.
    Operator,
}

impl Writers {
    /// Checks the request's credentials and returns the tenant's record.
    fn check(
        self,
        app: &AppState,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<Arc<StoredRecord>, ApiError> {
        match self {
            Writers::Tenant => require_tenant_key(headers, &app.table, id),
            Writers::TenantOrOperator => {
                require_tenant_key_or_token(headers, &app.table, id, &app.settings.admin_token)
            }
            Writers::Operator => {
                require_token(headers, &app.settings.admin_token)?;
                app.table.get(id).ok_or(ApiError::TenantNotFound)
            }
        }
    }
}

/// A `PUT` of part of a tenant's record, as it arrives: the tenant, the
/// headers and the body, not read yet.
pub struct FieldPut {
    app: AppState,
    id: String,
    headers: HeaderMap,
    body: Body,
}

impl FromRequest<AppState> for FieldPut {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let TenantId(id) = TenantId::from_request_parts(&mut parts, app).await?;
        Ok(Self {
            app: app.clone(),
            id,
            headers: parts.headers,
            body,
        })
    }
}

impl FieldPut {
    /// Checks the credentials of `writers` before the body is read, so
    /// that a key of another tenant gets the same 404 whatever it sends;
    /// then reads the body and lets `change` apply it through [`update`].
    async fn apply<T: DeserializeOwned>(
        self,
        writers: Writers,
        change: impl FnOnce(T, &mut Map<String, Value>),
    ) -> Result<UpdatedTenant, ApiError> {
        let Self {
            app,
            id,
            headers,
            body,
        } = self;
        writers.check(&app, &headers, &id)?;
        let request: T = read_json(&headers, body, MAX_BODY_BYTES).await?;
        let (version, fields) = update(&app, &id, &headers, writers, |fields| {
            change(request, fields)
        })
        .await?;
        Ok(UpdatedTenant(view(&id, fields, version)))
    }
}

/// Sets the optional field `name`, or removes it for `None`, which a
/// reader takes as the field's default.
fn set_or_remove(fields: &mut Map<String, Value>, name: &str, value: Option<impl Into<Value>>) {
    match value {
        Some(value) => fields.insert(name.into(), value.into()),
        None => fields.remove(name),
    };
}

/// A change to a tenant's record: under the write lock, checks the
/// credentials of `writers` again against the latest record (a key may have
/// been rotated since the request arrived) and `If-Match`, applies
/// `change`, validates the whole record and writes it.
async fn update(
    app: &AppState,
    id: &str,
    headers: &HeaderMap,
    writers: Writers,
    change: impl FnOnce(&mut Map<String, Value>),
) -> Result<(Version, Map<String, Value>), ApiError> {
    let _writing = app.writes.lock().await;
    let record = writers.check(app, headers, id)?;
    check_if_match(headers, record.version)?;
    let mut fields = record.fields().unwrap_or_default();
    change(&mut fields);
    validate_record(id, &fields, app.settings.allow_private_destinations)?;
    let version = app.write(id, Some(&fields)).await?;
    Ok((version, fields))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLDER: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const NEW: &str = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn fields(value: Value) -> Map<String, Value> {
        let Value::Object(fields) = value else {
            panic!("not an object")
        };
        fields
    }

    #[test]
    fn a_rotation_keeps_the_replaced_secret_until_the_expiry() {
        let mut record = fields(json!({"url": "u", "signing_secret": OLD}));
        rotate_secret_fields(&mut record, NEW, Some("2026-11-29T10:00:00.000Z".into()));
        assert_eq!(
            Value::Object(record),
            json!({"url": "u", "signing_secret": NEW, "previous_signing_secret": OLD,
                   "previous_signing_secret_expires_at": "2026-11-29T10:00:00.000Z"})
        );
    }

    #[test]
    fn a_rotation_without_grace_or_during_another_one_keeps_only_the_last_replaced_secret() {
        let during = json!({"signing_secret": OLD, "previous_signing_secret": OLDER,
                            "previous_signing_secret_expires_at": "2026-11-29T10:00:00.000Z"});
        let mut record = fields(during.clone());
        rotate_secret_fields(&mut record, NEW, None);
        assert_eq!(Value::Object(record), json!({"signing_secret": NEW}));
        let mut record = fields(during);
        rotate_secret_fields(&mut record, NEW, Some("2026-11-30T00:00:00.000Z".into()));
        assert_eq!(record["previous_signing_secret"], OLD);
        assert_eq!(
            record["previous_signing_secret_expires_at"],
            "2026-11-30T00:00:00.000Z"
        );
    }

    #[test]
    fn a_first_secret_or_a_broken_one_leaves_no_previous_secret() {
        for before in [json!({}), json!({"signing_secret": "not a secret"})] {
            let mut record = fields(before);
            rotate_secret_fields(&mut record, NEW, Some("2026-11-29T10:00:00.000Z".into()));
            assert_eq!(Value::Object(record), json!({"signing_secret": NEW}));
        }
    }
}
