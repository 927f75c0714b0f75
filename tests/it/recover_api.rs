//! A tenant's own recovery through the tenant API, against the real broker:
//! its endpoint fails, a replica dead-letters its events, the tenant lists
//! them (without payloads) and, once its endpoint is back, replays them with
//! its API key; another tenant's key sees neither.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use hookline::crypto::SigningSecret;
use hookline::delivery::runner::Topics;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{ADMIN, Api};
use crate::support::broker::Record;
use crate::support::replica::{Replica, TestTenant, create_topics, replica_config};
use crate::support::{Broker, Receiver};

/// A word that only the events' payloads contain: a listing must not show
/// it.
const PAYLOAD_MARKER: &str = "card-4111-payload";

/// `down`'s endpoint answers 503 until `healthy` is set; `other`'s always.
/// Both tenants were created through the API, so each has its key; a
/// replica with two attempts per event and no suspension dead-lettered
/// down-0..3 and other-0.
struct Outage {
    broker: Broker,
    topics: Topics,
    receiver: Receiver,
    healthy: Arc<AtomicBool>,
    api: Api,
    _replica: Replica,
    down: TestTenant,
    down_key: String,
    other_key: String,
}

impl Outage {
    async fn start(test: &str) -> Self {
        let broker = Broker::new(test);
        let topics = create_topics(&broker, 2).await;
        let healthy = Arc::new(AtomicBool::new(false));
        let receiver = Receiver::start(Arc::new({
            let healthy = healthy.clone();
            move |_, request| match request.path.as_str() {
                "/down" if healthy.load(Ordering::SeqCst) => StatusCode::OK,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            }
        }))
        .await;
        let config = replica_config(
            &broker,
            &[
                ("DELIVERY__MAX_ATTEMPTS", "2"),
                ("DELIVERY__SUSPEND_AFTER", "0"),
            ],
        );
        let api = Api::start(&config, &topics, false).await;
        let mut down = TestTenant::new("down");
        let mut keys = Vec::new();
        for id in ["down", "other"] {
            let created = api
                .call(
                    Method::POST,
                    "/v1/tenants",
                    Some(ADMIN),
                    Some(&json!({
                        "id": id,
                        "url": receiver.url(&format!("/{id}")),
                        "public_key": down.key.public_key().to_spki_pem(),
                    })),
                )
                .await;
            assert_eq!(created.status, 201, "{}", created.body);
            if id == "down" {
                let secret = created.body["signing_secret"].as_str().unwrap();
                down.secret = SigningSecret::parse(secret).unwrap();
            }
            keys.push(created.body["api_key"].as_str().unwrap().to_string());
        }
        // Started after the tenants exist: it restores them before it
        // takes an event.
        let replica = Replica::start(config, &topics).await;
        for n in 0..4 {
            produce(&broker, &topics, "down", &format!("down-{n}")).await;
        }
        produce(&broker, &topics, "other", "other-0").await;
        let dead = broker
            .consume(&topics.dlq, 5, Duration::from_secs(30))
            .await;
        assert_eq!(dead.len(), 5, "dead letters");
        let other_key = keys.pop().unwrap();
        let down_key = keys.pop().unwrap();
        Self {
            broker,
            topics,
            receiver,
            healthy,
            api,
            _replica: replica,
            down,
            down_key,
            other_key,
        }
    }

    /// The dead letters of `tenant` as the replica wrote them, in order.
    async fn dead_letters(&self, tenant: &str) -> Vec<Record> {
        let mut dead = self
            .broker
            .consume(&self.topics.dlq, 5, Duration::from_secs(10))
            .await;
        dead.retain(|r| r.header("dlq.tenant") == Some(tenant));
        dead.sort_by_key(|r| (r.partition, r.offset));
        dead
    }

    /// The webhook ids of the requests on `path`, in arrival order.
    fn requests(&self, path: &str) -> Vec<String> {
        self.receiver.webhook_ids(path)
    }

    async fn wait_requests(&self, path: &str, count: usize) -> Vec<String> {
        self.receiver
            .wait_webhook_ids(path, count, Duration::from_secs(30))
            .await
    }
}

async fn produce(broker: &Broker, topics: &Topics, tenant: &str, id: &str) {
    let value = json!({
        "id": id,
        "type": "order.created",
        "data": {"card": PAYLOAD_MARKER, "order": id},
    });
    broker
        .produce(
            &topics.events,
            Some(tenant.as_bytes()),
            Some(&serde_json::to_vec(&value).unwrap()),
            &[],
        )
        .await;
}

fn path(tenant: &str, route: &str) -> String {
    format!("/v1/tenants/{tenant}/{route}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_lists_and_recovers_its_own_dead_letters_once_in_order_with_their_ids() {
    let outage = Outage::start("api-recover").await;
    let api = &outage.api;
    let key = outage.down_key.as_str();
    let dead = outage.dead_letters("down").await;
    assert_eq!(dead.len(), 4);

    // The listing: newest first, what the dead-letter headers say, the
    // event's id and type, where each sits; no payload.
    let listed = api
        .call(Method::GET, &path("down", "dead-letters"), Some(key), None)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["tenant"], "down");
    assert_eq!(listed.body["total"], 4);
    let letters = listed.body["dead_letters"].as_array().unwrap();
    let ids: Vec<&str> = letters.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["down-3", "down-2", "down-1", "down-0"]);
    for (letter, record) in letters.iter().zip(dead.iter().rev()) {
        assert_eq!(letter["type"], "order.created");
        assert_eq!(letter["reason"], "retries_exhausted");
        assert_eq!(letter["attempts"], 2);
        assert_eq!(letter["status"], 503);
        assert_eq!(letter["partition"], record.partition);
        assert_eq!(letter["offset"], record.offset);
        let at = hookline::events::timestamp::format_unix_millis(record.timestamp_ms.unwrap());
        assert_eq!(letter["dead_lettered_at"], json!(at));
        assert!(letter.get("data").is_none() && letter.get("value").is_none());
    }
    let text = listed.body.to_string();
    assert!(
        !text.contains(PAYLOAD_MARKER),
        "a payload is listed: {text}"
    );
    assert!(!text.contains("other-0"), "another tenant's: {text}");

    // A limit keeps the newest; a bad one is a problem naming it.
    let two = api
        .call(
            Method::GET,
            &format!("{}?limit=2", path("down", "dead-letters")),
            Some(key),
            None,
        )
        .await;
    assert_eq!(two.status, 200, "{}", two.body);
    assert_eq!(two.body["total"], 4);
    assert_eq!(two.body["dead_letters"][0]["id"], "down-3");
    assert_eq!(two.body["dead_letters"].as_array().unwrap().len(), 2);
    for bad in ["0", "1001", "many"] {
        let answer = api
            .call(
                Method::GET,
                &format!("{}?limit={bad}", path("down", "dead-letters")),
                Some(key),
                None,
            )
            .await;
        let detail = answer.assert_problem(422, &format!("limit={bad}"));
        assert!(detail.starts_with(&format!("limit `{bad}`")), "{detail}");
    }

    // The endpoint is back; the tenant recovers the last hour's.
    outage.healthy.store(true, Ordering::SeqCst);
    let before = outage.requests("/down").len();
    let recovered = api
        .call(
            Method::POST,
            &path("down", "recover"),
            Some(key),
            Some(&json!({"since": "1h"})),
        )
        .await;
    assert_eq!(recovered.status, 200, "{}", recovered.body);
    let report = &recovered.body;
    assert_eq!(report["tenant"], "down");
    assert_eq!(report["replayed"], 4);
    assert_eq!(report["reasons"][0]["reason"], "retries_exhausted");
    assert_eq!(report["reasons"][0]["count"], 4);
    assert_eq!(report["reasons"].as_array().unwrap().len(), 1);
    assert_eq!(report["resumed"], false);
    assert_eq!(report["until"], Value::Null);
    let group = report["group"].as_str().unwrap().to_string();
    let group_id = outage.broker.name("group");
    assert!(group.starts_with(&format!("{group_id}.replay.")), "{group}");

    // Delivered once each, in order, with the original webhook ids, and
    // the tenant opens them.
    let expected: Vec<String> = (0..4).map(|n| format!("down-{n}")).collect();
    let delivered = outage.wait_requests("/down", before + 4).await;
    assert_eq!(delivered[before..], expected);
    let received = outage.receiver.received();
    let first = received
        .iter()
        .rfind(|r| r.path == "/down" && r.header("webhook-id") == Some("down-0"))
        .unwrap();
    let opened = outage.down.open(first);
    assert_eq!(opened.webhook_id, "down-0");
    assert_eq!(opened.data["card"], PAYLOAD_MARKER);

    // Each replayed record names the dead letter the listing showed.
    let mut replays = outage
        .broker
        .consume(&outage.topics.events, usize::MAX, Duration::from_secs(3))
        .await;
    replays.retain(|r| r.header("hookline.replay-of").is_some());
    replays.sort_by_key(|r| (r.partition, r.offset));
    let named: Vec<String> = replays
        .iter()
        .map(|r| r.header("hookline.replay-of").unwrap().to_string())
        .collect();
    let listed_positions: Vec<String> = letters
        .iter()
        .rev()
        .map(|l| format!("{}:{}", l["partition"], l["offset"]))
        .collect();
    assert_eq!(named, listed_positions);

    // The same request again replays nothing: the group remembers.
    let again = api
        .call(
            Method::POST,
            &path("down", "recover"),
            Some(key),
            Some(&json!({"since": "1h"})),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["replayed"], 0);
    assert_eq!(again.body["reasons"], json!([]));
    assert_eq!(again.body["resumed"], true);
    assert_eq!(again.body["group"], group.as_str());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        outage.requests("/down").len(),
        before + 4,
        "a second recovery sent something"
    );
    // `other` was never replayed: its endpoint saw its two attempts only.
    assert_eq!(outage.requests("/other").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_s_key_gets_404_and_bad_input_is_a_problem() {
    let outage = Outage::start("api-recover-isolation").await;
    let api = &outage.api;
    let since = json!({"since": "1h"});

    // `other`'s key on `down`'s routes, and on a tenant that does not
    // exist: the same 404, and nothing is replayed.
    for target in ["down", "no-such-tenant"] {
        let answer = api
            .call(
                Method::GET,
                &path(target, "dead-letters"),
                Some(&outage.other_key),
                None,
            )
            .await;
        answer.assert_problem(404, &format!("list {target}"));
        for body in [&since, &json!({"since": "yesterday"})] {
            let answer = api
                .call(
                    Method::POST,
                    &path(target, "recover"),
                    Some(&outage.other_key),
                    Some(body),
                )
                .await;
            answer.assert_problem(404, &format!("recover {target} {body}"));
        }
    }
    // No credentials, or credentials of no tenant: 401.
    let answer = api
        .call(Method::POST, &path("down", "recover"), None, Some(&since))
        .await;
    answer.assert_problem(401, "no credentials");
    let answer = api
        .call(
            Method::GET,
            &path("down", "dead-letters"),
            Some("hk_not-a-key"),
            None,
        )
        .await;
    answer.assert_problem(401, "a key of no tenant");

    // Bad bodies: a problem naming what is wrong.
    for (body, status, expected) in [
        (
            json!({"since": "yesterday"}),
            422,
            "since `yesterday` is neither an RFC 3339 instant",
        ),
        (json!({"since": "1h", "until": "2h"}), 422, "until 2h ("),
        (json!({}), 422, "request body: missing field `since`"),
        (
            json!({"since": "1h", "reason": "rejected"}),
            422,
            "request body: unknown field `reason`",
        ),
    ] {
        let answer = api
            .call(
                Method::POST,
                &path("down", "recover"),
                Some(&outage.down_key),
                Some(&body),
            )
            .await;
        let detail = answer.assert_problem(status, &body.to_string());
        assert!(detail.starts_with(expected), "{body}: {detail}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        outage.requests("/down").len(),
        8,
        "only the outage's attempts: nothing was replayed"
    );

    // The operator's token opens every tenant's dead letters.
    let listed = api
        .call(
            Method::GET,
            &path("other", "dead-letters"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["total"], 1);
    assert_eq!(listed.body["dead_letters"][0]["id"], "other-0");
}
