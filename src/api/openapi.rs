//! The OpenAPI 3 document, generated from the handlers' annotations and the
//! request and response types, so it cannot drift from the code.
//!
//! Handlers declare their success answers and the problems peculiar to
//! them; [`complete`] adds the problems every route of a kind can answer
//! (401 on authenticated routes, 404 on `{id}` routes, the body problems on
//! routes with a body...), derived from the same rules the code follows.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, PROBLEM_JSON, events, recovery, tenants};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hookline tenant API",
        description = "Tenant self-service for hookline: the operator creates tenants and \
                       issues their API keys (admin token); a tenant sets its public key, \
                       webhook URL, event patterns and rate limit and rotates its signing \
                       secret (its API key); the operator may set a tenant's rate limit too; \
                       a tenant lists its dead letters and replays them after an outage (its \
                       API key or the admin token); producers that cannot speak Kafka publish \
                       events (producer token). Errors are RFC 9457 problem documents."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(super::Problem)),
    tags(
        (name = "admin", description = "The operator's routes (admin token)"),
        (name = "tenant", description = "A tenant's own routes (its API key, `hk_…`)"),
        (name = "events", description = "Event ingestion over HTTP (producer token)"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            ("admin_token", "The operator's token (`api.admin_token`)"),
            ("api_key", "A tenant's API key (`hk_…`)"),
            (
                "producer_token",
                "The producers' token (`api.producer_token`)",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
    }
}

/// The routes together with their documentation.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::create_tenant))
        .routes(routes!(tenants::get_tenant, tenants::delete_tenant))
        .routes(routes!(tenants::issue_api_key))
        .routes(routes!(tenants::set_public_key))
        .routes(routes!(tenants::set_url))
        .routes(routes!(tenants::set_events))
        .routes(routes!(tenants::set_rate_limit))
        .routes(routes!(tenants::suspend_tenant))
        .routes(routes!(recovery::resume_tenant))
        .routes(routes!(tenants::rotate_signing_secret))
        .routes(routes!(recovery::recover))
        .routes(routes!(recovery::list_dead_letters))
        .routes(routes!(events::publish_event))
}

/// The document served at `/openapi.json`.
pub fn openapi() -> Document {
    complete(routes().split_for_parts().1)
}

/// Adds the problems that follow from an operation's shape.
pub(super) fn complete(mut doc: Document) -> Document {
    for (path, item) in doc.paths.paths.iter_mut() {
        let has_id = path.contains("{id}");
        let operations = [
            (false, item.get.as_mut()),
            (true, item.put.as_mut()),
            (true, item.post.as_mut()),
            (true, item.delete.as_mut()),
        ];
        for (writes, operation) in operations {
            if let Some(operation) = operation {
                add_problems(operation, has_id, writes);
            }
        }
    }
    doc
}

fn add_problems(operation: &mut Operation, has_id: bool, writes: bool) {
    let mut problems: Vec<(&str, &str)> = vec![(
        "401",
        "Missing credentials, or credentials not valid for this route",
    )];
    if has_id {
        problems.push((
            "404",
            "No such tenant, or one the credentials do not give access to",
        ));
    }
    if operation.request_body.is_some() {
        problems.extend([
            ("400", "The body is not JSON"),
            ("413", "The body is too large"),
            ("415", "The body is not declared as application/json"),
        ]);
    }
    if writes {
        problems.extend([
            ("422", "A field is invalid; the detail names it"),
            ("503", "Kafka did not acknowledge the write; retry"),
        ]);
    }
    let conditional = operation
        .parameters
        .iter()
        .flatten()
        .any(|parameter| parameter.name == "If-Match");
    if conditional {
        problems.push(("412", "If-Match names another version than the current one"));
    }
    for (status, description) in problems {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build()
                    .into()
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_problems() {
        let doc = openapi();
        let json = serde_json::to_value(&doc).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3."));
        let paths = json["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/v1/tenants", &["post"][..]),
            ("/v1/tenants/{id}", &["get", "delete"]),
            ("/v1/tenants/{id}/api-key", &["post"]),
            ("/v1/tenants/{id}/public-key", &["put"]),
            ("/v1/tenants/{id}/url", &["put"]),
            ("/v1/tenants/{id}/events", &["put"]),
            ("/v1/tenants/{id}/rate-limit", &["put"]),
            ("/v1/tenants/{id}/signing-secret", &["post"]),
            ("/v1/tenants/{id}/recover", &["post"]),
            ("/v1/tenants/{id}/dead-letters", &["get"]),
            ("/v1/events", &["post"]),
        ] {
            for method in methods {
                let op = &paths[path][method];
                assert!(op.is_object(), "{method} {path} is documented");
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("401"), "{method} {path}");
                assert!(!op["security"].as_array().unwrap().is_empty());
            }
        }
        let put_url = &paths["/v1/tenants/{id}/url"]["put"]["responses"];
        for status in ["400", "404", "412", "413", "415", "422", "503"] {
            assert_eq!(
                put_url[status]["content"][PROBLEM_JSON]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{status}"
            );
        }
        let schemes = json["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(schemes.len(), 3);
    }

    #[test]
    fn the_signing_secret_route_documents_its_optional_grace_and_its_problems() {
        let json = serde_json::to_value(openapi()).unwrap();
        let rotate = &json["paths"]["/v1/tenants/{id}/signing-secret"]["post"];
        let body = &rotate["requestBody"];
        assert_ne!(body["required"], true, "the body is optional: {body}");
        let schema = &body["content"]["application/json"]["schema"];
        let name = schema["$ref"]
            .as_str()
            .or_else(|| schema["oneOf"][1]["$ref"].as_str())
            .or_else(|| schema["oneOf"][0]["$ref"].as_str())
            .unwrap_or_else(|| panic!("{schema}"))
            .rsplit('/')
            .next()
            .unwrap();
        let grace = &json["components"]["schemas"][name]["properties"]["grace"];
        assert!(
            grace["description"].as_str().unwrap().contains("\"0s\""),
            "{grace}"
        );
        let view = &json["components"]["schemas"]["TenantView"]["properties"];
        assert!(view["previous_signing_secret_expires_at"].is_object());
        for status in ["400", "401", "404", "412", "413", "415", "422", "503"] {
            assert!(rotate["responses"][status].is_object(), "{status}");
        }
    }

    #[test]
    fn the_rate_limit_route_takes_either_credential_and_documents_the_bounds() {
        use crate::tenants::rate_limit::{MAX_EVENTS_PER_SECOND, MIN_EVENTS_PER_SECOND};

        let json = serde_json::to_value(openapi()).unwrap();
        let put = &json["paths"]["/v1/tenants/{id}/rate-limit"]["put"];
        assert_eq!(
            put["security"],
            serde_json::json!([{"api_key": []}, {"admin_token": []}])
        );
        assert_eq!(put["parameters"][1]["name"], "If-Match");
        // The schema's bounds are literals (utoipa takes no constants):
        // they must be the ones the record is validated with.
        let schemas = &json["components"]["schemas"];
        for rate_limit in [
            &schemas["SetRateLimit"]["properties"]["rate_limit"],
            &schemas["CreateTenant"]["properties"]["rate_limit"],
        ] {
            assert_eq!(rate_limit["minimum"], MIN_EVENTS_PER_SECOND);
            assert_eq!(rate_limit["maximum"], MAX_EVENTS_PER_SECOND);
        }
    }

    #[test]
    fn the_recovery_routes_take_either_credential_and_document_their_problems() {
        let json = serde_json::to_value(openapi()).unwrap();
        let either = serde_json::json!([{"api_key": []}, {"admin_token": []}]);
        let recover = &json["paths"]["/v1/tenants/{id}/recover"]["post"];
        assert_eq!(recover["security"], either);
        let responses = recover["responses"].as_object().unwrap();
        for status in [
            "200", "400", "401", "404", "409", "413", "415", "422", "503",
        ] {
            assert!(responses.contains_key(status), "recover {status}");
        }
        // No If-Match: a recovery changes no record, so it has no 412.
        assert!(!responses.contains_key("412"), "recover 412");
        assert_eq!(
            json["components"]["schemas"]["RecoverRequest"]["required"],
            serde_json::json!(["since"])
        );

        let list = &json["paths"]["/v1/tenants/{id}/dead-letters"]["get"];
        assert_eq!(list["security"], either);
        let responses = list["responses"].as_object().unwrap();
        for status in ["200", "400", "401", "404", "422", "503"] {
            assert!(responses.contains_key(status), "dead-letters {status}");
        }
        assert!(!responses.contains_key("412"), "dead-letters 412");
        let limit = &list["parameters"][1];
        assert_eq!(limit["name"], "limit");
        assert_eq!(limit["in"], "query");
        assert_eq!(limit["schema"]["maximum"], recovery::MAX_LIST_LIMIT);
        assert_eq!(limit["schema"]["default"], recovery::DEFAULT_LIST_LIMIT);
        // A listing shows no payload: nothing named `data` or `value`.
        let view = json["components"]["schemas"]["DeadLetterView"]["properties"]
            .as_object()
            .unwrap();
        assert!(!view.contains_key("data") && !view.contains_key("value"));
        for field in [
            "id",
            "type",
            "reason",
            "attempts",
            "status",
            "dead_lettered_at",
        ] {
            assert!(view.contains_key(field), "{field}");
        }
    }
}
