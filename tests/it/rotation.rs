//! Signing-secret rotation end to end: the tenant API rotates the secret
//! with a grace period, a real replica delivers through the real broker, and
//! the receiver checks which secrets verify each request.

use std::time::{Duration, SystemTime};

use hookline::crypto::{KeyRing, SigningSecret, VerifyError};
use hookline::receiver::{Receiver as Opener, Rejection};
use reqwest::Method;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::{ADMIN, Api};
use crate::support::replica::{Replica, TestTenant, create_topics, replica_config};
use crate::support::{Broker, Received, Receiver};

/// Verifies and decrypts `request` with a receiver that knows only `secret`.
fn open_with(
    tenant: &TestTenant,
    secret: &SigningSecret,
    request: &Received,
) -> Result<String, Rejection> {
    let mut keys = KeyRing::new();
    keys.insert_with_thumbprint(tenant.key.clone());
    let opener = Opener::new(keys, Some(secret.clone()));
    let headers = request.webhook_headers();
    opener
        .receive(&headers, &request.body, SystemTime::now())
        .map(|delivery| delivery.webhook_id)
}

fn signatures(request: &Received) -> usize {
    request
        .header("webhook-signature")
        .unwrap_or_default()
        .split_ascii_whitespace()
        .count()
}

async fn produce(broker: &Broker, topic: &str, id: &str) {
    let value =
        serde_json::to_vec(&json!({"id": id, "type": "order.created", "data": {}})).unwrap();
    broker
        .produce(topic, Some(b"acme"), Some(&value), &[])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_next_to_the_new_one_until_its_grace_period_ends() {
    let broker = Broker::new("rotation");
    let topics = create_topics(&broker, 1).await;
    let config = replica_config(&broker, &[]);
    let receiver = Receiver::ok().await;
    let replica = Replica::start(config.clone(), &topics).await;
    let api = Api::start(&config, &topics, false).await;
    let tenant = TestTenant::new("acme");

    let created = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(ADMIN),
            Some(&json!({"id": "acme", "url": receiver.url("/"),
                         "public_key": tenant.key.public_key().to_spki_pem()})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.body["api_key"].as_str().unwrap().to_string();
    let old = SigningSecret::parse(created.body["signing_secret"].as_str().unwrap()).unwrap();

    // A first delivery before the rotation: the replica has joined and
    // follows the table, so the next deliveries take milliseconds.
    produce(&broker, &topics.events, "evt-before").await;
    let received = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(signatures(&received[0]), 1);
    assert_eq!(
        open_with(&tenant, &old, &received[0]).unwrap(),
        "evt-before"
    );

    let rotated = api
        .call(
            Method::POST,
            "/v1/tenants/acme/signing-secret",
            Some(&key),
            Some(&json!({"grace": "3s"})),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new = SigningSecret::parse(rotated.body["signing_secret"].as_str().unwrap()).unwrap();
    let expires_at = rotated.body["tenant"]["previous_signing_secret_expires_at"]
        .as_str()
        .expect("the expiry of the previous secret is shown");
    let expires_at: SystemTime = OffsetDateTime::parse(expires_at, &Rfc3339).unwrap().into();
    let old_text = old.to_whsec();
    let old_text = secrecy::ExposeSecret::expose_secret(&old_text);
    assert!(
        !rotated.body.to_string().contains(old_text),
        "the old secret is not shown"
    );

    // During the grace period: two signatures, either secret verifies.
    produce(&broker, &topics.events, "evt-during").await;
    let received = receiver.wait_for(2, Duration::from_secs(30)).await;
    let during = &received[1];
    // Three seconds are far more than a delivery takes here; should the
    // machine ever be that slow, the message says so.
    assert_eq!(
        signatures(during),
        2,
        "{:?} (received after the expiry: {})",
        during.header("webhook-signature"),
        SystemTime::now() >= expires_at
    );
    assert_eq!(open_with(&tenant, &old, during).unwrap(), "evt-during");
    assert_eq!(open_with(&tenant, &new, during).unwrap(), "evt-during");

    // After it: the new secret alone.
    let wait = expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(100)).await;
    produce(&broker, &topics.events, "evt-after").await;
    let received = receiver.wait_for(3, Duration::from_secs(30)).await;
    let after = &received[2];
    assert_eq!(
        signatures(after),
        1,
        "{:?}",
        after.header("webhook-signature")
    );
    assert_eq!(open_with(&tenant, &new, after).unwrap(), "evt-after");
    let refused = open_with(&tenant, &old, after).unwrap_err();
    assert!(
        matches!(refused, Rejection::Signature(VerifyError::Mismatch)),
        "{refused:?}"
    );

    // A grace that is not a duration is refused, naming the field; "0s"
    // drops the replaced secret at once.
    let refused = api
        .call(
            Method::POST,
            "/v1/tenants/acme/signing-secret",
            Some(&key),
            Some(&json!({"grace": "soon"})),
        )
        .await;
    assert!(refused.assert_problem(422, "bad grace").contains("grace"));
    let at_once = api
        .call(
            Method::POST,
            "/v1/tenants/acme/signing-secret",
            Some(&key),
            Some(&json!({"grace": "0s"})),
        )
        .await;
    assert_eq!(at_once.status, 200, "{}", at_once.body);
    assert_eq!(
        at_once.body["tenant"]["previous_signing_secret_expires_at"],
        serde_json::Value::Null
    );
    let newest = SigningSecret::parse(at_once.body["signing_secret"].as_str().unwrap()).unwrap();
    produce(&broker, &topics.events, "evt-at-once").await;
    let received = receiver.wait_for(4, Duration::from_secs(30)).await;
    assert_eq!(signatures(&received[3]), 1);
    assert_eq!(
        open_with(&tenant, &newest, &received[3]).unwrap(),
        "evt-at-once"
    );
    assert!(open_with(&tenant, &new, &received[3]).is_err());

    api.stop().await;
    replica.stop().await;
}
