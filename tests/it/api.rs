//! The tenant API against the real broker: the onboarding flow end to end
//! (down to a delivery the tenant decrypts), isolation between tenants on
//! every route, bad input on every route, concurrent updates, and the
//! start-up refusal without an admin token.

use std::time::Duration;

use hookline::api::{self, ApiSettings};
use hookline::config::Config;
use hookline::crypto::SigningSecret;
use hookline::delivery::runner::Topics;
use hookline::kafka::table_reader::TableReader;
use hookline::tenants::{TenantEntry, TenantTable, sync};
use reqwest::Method;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::replica::{Replica, TestTenant, create_topics, replica_config};
use crate::support::{self, Broker, Receiver};

pub(crate) const ADMIN: &str = "admin-token-for-tests-0001";
const PRODUCER: &str = "producer-token-for-tests-01";

/// A tenant API served in the test process on 127.0.0.1, port 0.
pub(crate) struct Api {
    base: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// One answer: status, headers and the JSON body (`Null` when empty).
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: HeaderMap,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem document with `status`, returning its detail.
    #[track_caller]
    pub(crate) fn assert_problem(&self, status: u16, context: &str) -> String {
        assert_eq!(self.status, status, "{context}: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{context}"
        );
        assert_eq!(self.body["status"], status, "{context}");
        let kind = self.body["type"].as_str().unwrap_or_default();
        assert!(
            kind.starts_with("urn:hookline:problem:"),
            "{context}: {kind}"
        );
        assert!(
            !self.body["title"].as_str().unwrap_or_default().is_empty(),
            "{context}"
        );
        self.body["detail"].as_str().unwrap_or_default().to_string()
    }
}

impl Api {
    pub(crate) async fn start(config: &Config, topics: &Topics, producer_token: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let settings = ApiSettings {
            admin_token: SecretString::from(ADMIN),
            producer_token: producer_token.then(|| SecretString::from(PRODUCER)),
            tenants_topic: topics.tenants.clone(),
            events_topic: topics.events.clone(),
            dead_letters_topic: topics.dlq.clone(),
            allow_private_destinations: config.delivery.allow_private_destinations,
            max_payload_bytes: config.delivery.max_payload_bytes,
        };
        let shutdown = CancellationToken::new();
        let task = {
            let kafka = config.kafka.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                api::serve(&kafka, settings, listener, shutdown)
                    .await
                    .expect("the API serves");
            })
        };
        let api = Self {
            base,
            // A fresh connection per request: when the API refuses a request
            // before reading its whole body (a 413), it closes the connection,
            // and a pooled client could send the next request on it before
            // noticing (a broken pipe that says nothing about the API).
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            shutdown,
            task: Some(task),
        };
        // The listener accepts once the records are restored.
        let answer = api.call(Method::GET, "/openapi.json", None, None).await;
        assert_eq!(answer.status, 200);
        api
    }

    /// A broker fixture for `test`, its own topics (one partition each) and
    /// an API on them with the default configuration.
    async fn on_own_topics(test: &str, producer_token: bool) -> (Broker, Topics, Self) {
        let broker = Broker::new(test);
        let topics = create_topics(&broker, 1).await;
        let config = replica_config(&broker, &[]);
        let api = Self::start(&config, &topics, producer_token).await;
        (broker, topics, api)
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        self.call_with(method, path, token, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let body = body.map(|b| serde_json::to_vec(b).unwrap());
        self.raw(method, path, token, body, "application/json", headers)
            .await
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", content_type).body(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "answer is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Creates a tenant; returns its API key and signing secret.
    async fn create(&self, id: &str) -> (String, String) {
        let answer = self
            .call(
                Method::POST,
                "/v1/tenants",
                Some(ADMIN),
                Some(&json!({ "id": id })),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        (
            answer.body["api_key"].as_str().unwrap().to_string(),
            answer.body["signing_secret"].as_str().unwrap().to_string(),
        )
    }

    /// `PUT /v1/tenants/{id}/rate-limit` with `{"rate_limit": value}`.
    async fn set_rate_limit(
        &self,
        id: &str,
        token: &str,
        value: Value,
        headers: &[(&str, &str)],
    ) -> Answer {
        let path = format!("/v1/tenants/{id}/rate-limit");
        let body = json!({ "rate_limit": value });
        self.call_with(Method::PUT, &path, Some(token), Some(&body), headers)
            .await
    }

    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// How many records `topic` holds (waiting briefly for late ones).
async fn count_records(broker: &Broker, topic: &str, at_least: usize) -> usize {
    broker
        .consume(topic, at_least + 1, Duration::from_secs(2))
        .await
        .len()
}

fn public_pem(tenant: &TestTenant) -> String {
    tenant.key.public_key().to_spki_pem()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_flow_ends_in_a_delivery_the_tenant_decrypts() {
    let broker = Broker::new("api-onboarding");
    let topics = create_topics(&broker, 2).await;
    let config = replica_config(&broker, &[]);
    let receiver = Receiver::ok().await;
    let replica = Replica::start(config.clone(), &topics).await;
    let api = Api::start(&config, &topics, true).await;

    // The operator subscribes the customer.
    let created = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(ADMIN),
            Some(&json!({"id": "acme"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.body["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("hk_"));
    assert_eq!(created.body["tenant"]["status"], "pending");
    let mut tenant = TestTenant::new("acme");
    tenant.secret = SigningSecret::parse(created.body["signing_secret"].as_str().unwrap()).unwrap();

    // The customer uses its key: public key, URL, events.
    let path = "/v1/tenants/acme";
    let answer = api
        .call(
            Method::PUT,
            &format!("{path}/public-key"),
            Some(&key),
            Some(&json!({"public_key": public_pem(&tenant)})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["status"], "pending");
    assert_eq!(answer.body["key_id"], tenant.key.thumbprint());
    let answer = api
        .call(
            Method::PUT,
            &format!("{path}/url"),
            Some(&key),
            Some(&json!({"url": receiver.url("/hooks/acme")})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["status"], "active");
    let answer = api
        .call(
            Method::PUT,
            &format!("{path}/events"),
            Some(&key),
            Some(&json!({"events": ["order.*"]})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let written_version = answer.header("etag").unwrap().to_string();

    // Read-your-writes: the next read sees the last write.
    let read = api.call(Method::GET, path, Some(&key), None).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.header("etag"), Some(written_version.as_str()));
    assert_eq!(read.body["events"], json!(["order.*"]));
    assert_eq!(read.body["key_bits"], 2048);
    assert_eq!(read.body["signing_secret_set"], true);
    let text = read.body.to_string();
    assert!(
        !text.contains("whsec_") && !text.contains("api_key_sha256"),
        "{text}"
    );

    // A producer writes to Kafka directly; another publishes over HTTP.
    // The second event type is filtered out by the tenant's patterns.
    for (id, event_type) in [("evt-1", "order.created"), ("evt-2", "invoice.paid")] {
        let value = json!({"id": id, "type": event_type, "data": {"order": 42}});
        broker
            .produce(
                &topics.events,
                Some(b"acme"),
                Some(&serde_json::to_vec(&value).unwrap()),
                &[],
            )
            .await;
    }
    let published = api
        .call(
            Method::POST,
            "/v1/events",
            Some(PRODUCER),
            Some(&json!({"tenant": "acme", "event": {"id": "evt-3", "type": "order.shipped", "data": {"order": 42}}})),
        )
        .await;
    assert_eq!(published.status, 202, "{}", published.body);

    let received = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 2, "two deliveries");
    let opened: Vec<_> = received.iter().map(|r| tenant.open(r)).collect();
    assert_eq!(opened[0].event_type, "order.created");
    assert_eq!(opened[0].webhook_id, "evt-1");
    assert_eq!(opened[0].data, json!({"order": 42}));
    assert_eq!(opened[0].kid, tenant.key.thumbprint());
    assert_eq!(opened[1].event_type, "order.shipped");
    assert_eq!(opened[1].tenant, "acme");
    assert!(received.iter().all(|r| r.path == "/hooks/acme"));

    // Rotating the signing secret: later deliveries carry the new one.
    let rotated = api
        .call(
            Method::POST,
            &format!("{path}/signing-secret"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    tenant.secret = SigningSecret::parse(rotated.body["signing_secret"].as_str().unwrap()).unwrap();
    api.call(
        Method::POST,
        "/v1/events",
        Some(PRODUCER),
        Some(
            &json!({"tenant": "acme", "event": {"id": "evt-4", "type": "order.paid", "data": {}}}),
        ),
    )
    .await;
    let received = receiver.wait_for(3, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 3);
    assert_eq!(tenant.open(&received[2]).webhook_id, "evt-4");

    api.stop().await;
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_key_opens_only_its_own_tenant_on_every_route() {
    let (broker, topics, api) = Api::on_own_topics("api-isolation", true).await;
    let (key_a, _) = api.create("tenant-a").await;
    let (key_b, _) = api.create("tenant-b").await;
    let b_before = api
        .call(Method::GET, "/v1/tenants/tenant-b", Some(&key_b), None)
        .await;
    let tenant = TestTenant::new("x");

    // A's key on B's routes and on a tenant that does not exist: the same
    // 404, so A cannot tell whether B exists.
    for target in ["tenant-b", "no-such-tenant"] {
        let base = format!("/v1/tenants/{target}");
        let routes: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, base.clone(), None),
            (
                Method::PUT,
                format!("{base}/public-key"),
                Some(json!({"public_key": public_pem(&tenant)})),
            ),
            (
                Method::PUT,
                format!("{base}/url"),
                Some(json!({"url": "https://hooks.example.com/"})),
            ),
            (
                Method::PUT,
                format!("{base}/events"),
                Some(json!({"events": null})),
            ),
            (
                Method::PUT,
                format!("{base}/rate-limit"),
                Some(json!({"rate_limit": 1})),
            ),
            (Method::POST, format!("{base}/signing-secret"), None),
            // Invalid bodies too: the key is checked before the body.
            (Method::PUT, format!("{base}/url"), Some(json!({"url": 7}))),
        ];
        for (method, path, body) in routes {
            let answer = api
                .call(method.clone(), &path, Some(&key_a), body.as_ref())
                .await;
            let detail = answer.assert_problem(404, &format!("{method} {path}"));
            assert_eq!(detail, "no such tenant");
        }
    }

    // A tenant key is no admin token; the admin token is no tenant key.
    for (method, path, body) in [
        (Method::POST, "/v1/tenants", Some(json!({"id": "tenant-c"}))),
        (Method::DELETE, "/v1/tenants/tenant-b", None),
        (Method::POST, "/v1/tenants/tenant-b/api-key", None),
        (Method::POST, "/v1/tenants/tenant-a/api-key", None),
    ] {
        api.call(method.clone(), path, Some(&key_a), body.as_ref())
            .await
            .assert_problem(401, &format!("{method} {path} with a tenant key"));
    }
    api.call(Method::GET, "/v1/tenants/tenant-a", Some(ADMIN), None)
        .await
        .assert_problem(401, "admin token on a tenant route");
    api.call(
        Method::POST,
        "/v1/events",
        Some(&key_a),
        Some(&json!({"tenant": "tenant-b", "event": {"type": "x", "data": 1}})),
    )
    .await
    .assert_problem(401, "tenant key on the events route");

    // B is untouched, and only the two creations reached the topic.
    let b_after = api
        .call(Method::GET, "/v1/tenants/tenant-b", Some(&key_b), None)
        .await;
    assert_eq!(b_after.status, 200);
    assert_eq!(b_after.header("etag"), b_before.header("etag"));
    assert_eq!(count_records(&broker, &topics.tenants, 2).await, 2);
    assert_eq!(count_records(&broker, &topics.events, 0).await, 0);

    // A new key replaces the old one at once.
    let issued = api
        .call(
            Method::POST,
            "/v1/tenants/tenant-a/api-key",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    let new_key = issued.body["api_key"].as_str().unwrap();
    api.call(Method::GET, "/v1/tenants/tenant-a", Some(&key_a), None)
        .await
        .assert_problem(401, "the old key");
    let read = api
        .call(Method::GET, "/v1/tenants/tenant-a", Some(new_key), None)
        .await;
    assert_eq!(read.status, 200);

    // Deleting a tenant: its key stops working, its id can be reused.
    let deleted = api
        .call(Method::DELETE, "/v1/tenants/tenant-b", Some(ADMIN), None)
        .await;
    assert_eq!(deleted.status, 204);
    api.call(Method::GET, "/v1/tenants/tenant-b", Some(&key_b), None)
        .await
        .assert_problem(401, "the key of a deleted tenant");
    api.create("tenant-b").await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_route_is_a_problem_and_writes_nothing() {
    let broker = Broker::new("api-bad-input");
    let topics = create_topics(&broker, 1).await;
    // The production default: no private destinations.
    let config = replica_config(
        &broker,
        &[
            ("DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "false"),
            ("DELIVERY__MAX_PAYLOAD_BYTES", "2048"),
        ],
    );
    let api = Api::start(&config, &topics, true).await;
    let (key, _) = api.create("acme").await;
    let weak_key = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/rsa1024.pub.pem"),
    )
    .unwrap();
    let good_key = public_pem(&TestTenant::new("x"));
    let big = "x".repeat(70 * 1024);
    let tenant = "/v1/tenants/acme";

    struct Case {
        method: Method,
        path: String,
        token: Option<String>,
        body: Option<Vec<u8>>,
        content_type: &'static str,
        headers: Vec<(&'static str, &'static str)>,
        status: u16,
        detail: &'static str,
    }
    let json_case = |method: Method,
                     path: &str,
                     token: &str,
                     body: Value,
                     status: u16,
                     detail: &'static str| Case {
        method,
        path: path.to_string(),
        token: Some(token.to_string()),
        body: Some(serde_json::to_vec(&body).unwrap()),
        content_type: "application/json",
        headers: vec![],
        status,
        detail,
    };
    let mut cases = vec![
        // Admin: create.
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": ""}),
            422,
            "id:",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": "a\u{7}b"}),
            422,
            "id:",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": "x".repeat(256)}),
            422,
            "id:",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": "n", "colour": 1}),
            422,
            "unknown field",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({}),
            422,
            "missing field",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": "n", "url": "ftp://x/"}),
            422,
            "url:",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": "n", "url": "http://127.0.0.1:9/"}),
            422,
            "allow_private_destinations",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": "n", "public_key": "nope"}),
            422,
            "public_key:",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": "n", "events": [""]}),
            422,
            "events:",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": "acme"}),
            409,
            "already exists",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            "wrong-token-000000000",
            json!({"id": "n"}),
            401,
            "not valid",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": big}),
            413,
            "larger than",
        ),
        // Admin: delete and issue a key.
        json_case(
            Method::DELETE,
            "/v1/tenants/nobody",
            ADMIN,
            Value::Null,
            404,
            "no such tenant",
        ),
        json_case(
            Method::POST,
            "/v1/tenants/nobody/api-key",
            ADMIN,
            Value::Null,
            404,
            "no such tenant",
        ),
        // Tenant: public key.
        json_case(
            Method::PUT,
            &format!("{tenant}/public-key"),
            &key,
            json!({"public_key": weak_key}),
            422,
            "public_key:",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/public-key"),
            &key,
            json!({"public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}),
            422,
            "public_key:",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/public-key"),
            &key,
            json!({"public_key": good_key, "key_id": "has space"}),
            422,
            "key_id:",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/public-key"),
            &key,
            json!({"key_id": "k"}),
            422,
            "missing field",
        ),
        // Tenant: URL.
        json_case(
            Method::PUT,
            &format!("{tenant}/url"),
            &key,
            json!({"url": "not a url"}),
            422,
            "url:",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/url"),
            &key,
            json!({"url": "https://user:pw@hooks.example.com/"}),
            422,
            "credentials",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/url"),
            &key,
            json!({"url": "http://169.254.169.254/latest/meta-data"}),
            422,
            "link-local",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/url"),
            &key,
            json!({"url": "http://[::1]:8080/"}),
            422,
            "loopback",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/url"),
            &key,
            json!({"url": "http://localhost/"}),
            422,
            "localhost",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/url"),
            &key,
            json!({"url": 7}),
            422,
            "invalid type",
        ),
        // Tenant: events.
        json_case(
            Method::PUT,
            &format!("{tenant}/events"),
            &key,
            json!({"events": [""]}),
            422,
            "events:",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/events"),
            &key,
            json!({"events": ["a\u{1}"]}),
            422,
            "control character",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/events"),
            &key,
            json!({"events": "order.*"}),
            422,
            "invalid type",
        ),
        // Tenant: rate limit.
        json_case(
            Method::PUT,
            &format!("{tenant}/rate-limit"),
            &key,
            json!({"rate_limit": 0}),
            422,
            "rate_limit:",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/rate-limit"),
            ADMIN,
            json!({"rate_limit": 1_000_001}),
            422,
            "rate_limit:",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/rate-limit"),
            &key,
            json!({"rate_limit": "10"}),
            422,
            "invalid type",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/rate-limit"),
            &key,
            json!({"rate_limit": 1, "burst": 2}),
            422,
            "unknown field",
        ),
        json_case(
            Method::PUT,
            &format!("{tenant}/rate-limit"),
            PRODUCER,
            json!({"rate_limit": 1}),
            401,
            "not valid",
        ),
        json_case(
            Method::POST,
            "/v1/tenants",
            ADMIN,
            json!({"id": "n", "rate_limit": -1}),
            422,
            "rate_limit:",
        ),
        // Events.
        json_case(
            Method::POST,
            "/v1/events",
            PRODUCER,
            json!({"tenant": "acme", "event": {"data": 1}}),
            422,
            "type",
        ),
        json_case(
            Method::POST,
            "/v1/events",
            PRODUCER,
            json!({"tenant": "acme", "event": {"type": "a"}}),
            422,
            "data",
        ),
        json_case(
            Method::POST,
            "/v1/events",
            PRODUCER,
            json!({"tenant": "acme", "event": {"type": "", "data": 1}}),
            422,
            "type",
        ),
        json_case(
            Method::POST,
            "/v1/events",
            PRODUCER,
            json!({"tenant": "acme", "event": [1]}),
            422,
            "not a JSON object",
        ),
        json_case(
            Method::POST,
            "/v1/events",
            PRODUCER,
            json!({"tenant": "", "event": {"type": "a", "data": 1}}),
            422,
            "tenant:",
        ),
        json_case(
            Method::POST,
            "/v1/events",
            PRODUCER,
            json!({"tenant": "acme", "event": {"type": "a", "data": 1, "tenant": "other"}}),
            422,
            "another tenant",
        ),
        json_case(
            Method::POST,
            "/v1/events",
            PRODUCER,
            json!({"tenant": "acme", "event": {"type": "a", "data": "x".repeat(3000)}}),
            413,
            "max_payload_bytes",
        ),
        json_case(
            Method::POST,
            "/v1/events",
            ADMIN,
            json!({"tenant": "acme", "event": {"type": "a", "data": 1}}),
            401,
            "not valid",
        ),
        // Unknown routes and methods.
        json_case(
            Method::GET,
            "/v1/nothing-here",
            ADMIN,
            Value::Null,
            404,
            "no route",
        ),
        json_case(
            Method::PATCH,
            "/v1/tenants",
            ADMIN,
            Value::Null,
            405,
            "method",
        ),
    ];
    // Bodies that are not JSON, or not declared as JSON, on every route
    // with a body.
    for path in [
        "/v1/tenants".to_string(),
        format!("{tenant}/public-key"),
        format!("{tenant}/url"),
        format!("{tenant}/events"),
        format!("{tenant}/rate-limit"),
        "/v1/events".to_string(),
    ] {
        let (method, token) = match path.as_str() {
            "/v1/tenants" => (Method::POST, ADMIN.to_string()),
            "/v1/events" => (Method::POST, PRODUCER.to_string()),
            _ => (Method::PUT, key.clone()),
        };
        for (body, content_type, status, detail) in [
            (
                b"{not json".to_vec(),
                "application/json",
                400,
                "not valid JSON",
            ),
            (b"{}".to_vec(), "text/plain", 415, "application/json"),
        ] {
            cases.push(Case {
                method: method.clone(),
                path: path.clone(),
                token: Some(token.clone()),
                body: Some(body),
                content_type,
                headers: vec![],
                status,
                detail,
            });
        }
        cases.push(Case {
            method: method.clone(),
            path: path.clone(),
            token: None,
            body: Some(b"{}".to_vec()),
            content_type: "application/json",
            headers: vec![],
            status: 401,
            detail: "no `Authorization: Bearer`",
        });
    }
    // A stale If-Match on every route that honours it.
    for (method, path, token) in [
        (Method::DELETE, tenant.to_string(), ADMIN.to_string()),
        (Method::POST, format!("{tenant}/api-key"), ADMIN.to_string()),
        (
            Method::POST,
            format!("{tenant}/signing-secret"),
            key.clone(),
        ),
        (Method::PUT, format!("{tenant}/events"), key.clone()),
        (
            Method::PUT,
            format!("{tenant}/rate-limit"),
            ADMIN.to_string(),
        ),
    ] {
        // Both PUT bodies are valid: `{}` sets neither field.
        let body = (method == Method::PUT).then(|| b"{}".to_vec());
        cases.push(Case {
            method,
            path,
            token: Some(token),
            body,
            content_type: "application/json",
            headers: vec![("if-match", "\"0-999999\"")],
            status: 412,
            detail: "current version",
        });
    }

    for case in cases {
        let body = case.body.filter(|b| b != b"null");
        let answer = api
            .raw(
                case.method.clone(),
                &case.path,
                case.token.as_deref(),
                body,
                case.content_type,
                &case.headers,
            )
            .await;
        let context = format!("{} {} (expecting {})", case.method, case.path, case.detail);
        let detail = answer.assert_problem(case.status, &context);
        assert!(detail.contains(case.detail), "{context}: {detail}");
        let text = answer.body.to_string();
        assert!(
            !text.contains(ADMIN) && !text.contains(PRODUCER) && !text.contains(&key),
            "{context}: a secret in {text}"
        );
    }

    // Nothing but the one creation reached Kafka.
    assert_eq!(count_records(&broker, &topics.tenants, 1).await, 1);
    assert_eq!(count_records(&broker, &topics.events, 0).await, 0);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_keep_both_changes_and_if_match_refuses_stale_versions() {
    let (_broker, _topics, api) = Api::on_own_topics("api-concurrency", false).await;
    let (key, _) = api.create("acme").await;
    let path = "/v1/tenants/acme";

    let read = api.call(Method::GET, path, Some(&key), None).await;
    let version = read.header("etag").unwrap().to_string();
    let url_body = json!({"url": "https://hooks.example.com/a"});
    let updated = api
        .call_with(
            Method::PUT,
            &format!("{path}/url"),
            Some(&key),
            Some(&url_body),
            &[("if-match", &version)],
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let newer = updated.header("etag").unwrap().to_string();
    assert_ne!(newer, version);

    // The version read before that update is stale now.
    let stale = api
        .call_with(
            Method::PUT,
            &format!("{path}/events"),
            Some(&key),
            Some(&json!({"events": ["order.*"]})),
            &[("if-match", &version)],
        )
        .await;
    let detail = stale.assert_problem(412, "stale If-Match");
    assert!(detail.contains(&newer), "{detail}");

    // Two updates of different fields at once, without If-Match: both land.
    let events_body = json!({"events": ["invoice.*"]});
    let key_body = json!({"public_key": public_pem(&TestTenant::new("x"))});
    let url_path = format!("{path}/events");
    let key_path = format!("{path}/public-key");
    let (a, b) = tokio::join!(
        api.call(Method::PUT, &url_path, Some(&key), Some(&events_body)),
        api.call(Method::PUT, &key_path, Some(&key), Some(&key_body)),
    );
    assert_eq!((a.status, b.status), (200, 200));
    let read = api.call(Method::GET, path, Some(&key), None).await;
    assert_eq!(read.body["events"], json!(["invoice.*"]));
    assert_eq!(read.body["url"], "https://hooks.example.com/a");
    assert_eq!(read.body["status"], "active", "{}", read.body);

    // Ingestion is off without a producer token.
    api.call(
        Method::POST,
        "/v1/events",
        Some(PRODUCER),
        Some(&json!({"tenant": "acme", "event": {"type": "a", "data": 1}})),
    )
    .await
    .assert_problem(404, "ingestion disabled");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_set_by_the_tenant_or_the_operator_and_removed_with_null() {
    let (broker, topics, api) = Api::on_own_topics("api-rate-limit", false).await;
    let (key, _) = api.create("acme").await;
    let (other_key, _) = api.create("other").await;
    let path = "/v1/tenants/acme";

    // The tenant sets it; the answer and the next read show it.
    let answer = api.set_rate_limit("acme", &key, json!(10), &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["rate_limit"], 10.0);
    let version = answer.header("etag").unwrap().to_string();
    let read = api.call(Method::GET, path, Some(&key), None).await;
    assert_eq!(read.body["rate_limit"], 10.0);
    assert_eq!(read.header("etag"), Some(version.as_str()));

    // If-Match as on the sibling routes: the current version passes, a
    // stale one is refused.
    let answer = api
        .set_rate_limit("acme", &key, json!(0.5), &[("if-match", &version)])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let detail = api
        .set_rate_limit("acme", &key, json!(2), &[("if-match", &version)])
        .await
        .assert_problem(412, "stale If-Match");
    assert!(detail.contains("current version"), "{detail}");

    // The operator may set it too, and only on a tenant that exists.
    let answer = api.set_rate_limit("acme", ADMIN, json!(2.5), &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let read = api.call(Method::GET, path, Some(&key), None).await;
    assert_eq!(read.body["rate_limit"], 2.5);
    let detail = api
        .call(
            Method::PUT,
            "/v1/tenants/nobody/rate-limit",
            Some(ADMIN),
            Some(&json!({"rate_limit": 1})),
        )
        .await
        .assert_problem(404, "the admin token on a tenant that does not exist");
    assert_eq!(detail, "no such tenant");

    // Another tenant's key gets the 404 of a tenant that does not exist,
    // and changes nothing.
    let detail = api
        .set_rate_limit("acme", &other_key, json!(1), &[])
        .await
        .assert_problem(404, "another tenant's key");
    assert_eq!(detail, "no such tenant");

    // A bad value is a problem naming the field, and changes nothing.
    for bad in [json!(0), json!(-1), json!(1_000_001), json!(1e-7)] {
        let detail = api
            .set_rate_limit("acme", &key, bad.clone(), &[])
            .await
            .assert_problem(422, &format!("rate_limit {bad}"));
        assert!(detail.starts_with("rate_limit: "), "{bad}: {detail}");
    }
    let read = api.call(Method::GET, path, Some(&key), None).await;
    assert_eq!(read.body["rate_limit"], 2.5);

    // Once onboarding is done, a replica's table holds the prepared limit.
    let tenant = TestTenant::new("acme");
    for (field, value) in [
        ("public-key", json!({"public_key": public_pem(&tenant)})),
        ("url", json!({"url": "https://hooks.example.com/acme"})),
    ] {
        let answer = api
            .call(
                Method::PUT,
                &format!("{path}/{field}"),
                Some(&key),
                Some(&value),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let table = delivery_table(&broker, &topics).await;
    match table.get("acme").as_deref() {
        Some(TenantEntry::Valid(acme)) => {
            let limit = acme.rate_limit.expect("a rate limit");
            assert_eq!(limit.per_second(), 2.5);
            assert_eq!(limit.interval(), Duration::from_millis(400));
        }
        other => panic!("acme is not valid: {other:?}"),
    }

    // `null` removes it: from the view and from the record on the topic.
    let answer = api.set_rate_limit("acme", &key, Value::Null, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["rate_limit"], Value::Null);
    assert_eq!(answer.body["status"], "active", "{}", answer.body);
    let records = broker
        .consume(&topics.tenants, 8, Duration::from_secs(5))
        .await;
    let last = records
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some(&b"acme"[..]))
        .and_then(|r| r.value.as_deref())
        .expect("acme's record");
    let last: Value = serde_json::from_slice(last).unwrap();
    assert!(last.get("rate_limit").is_none(), "{last}");

    // A tenant may be created with a limit.
    let created = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(ADMIN),
            Some(&json!({"id": "slow", "rate_limit": 0.25})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["tenant"]["rate_limit"], 0.25);
    api.stop().await;
}

/// The tenant table a replica would restore from the test's topic.
async fn delivery_table(broker: &Broker, topics: &Topics) -> TenantTable {
    let config = support::config(&broker.bootstrap);
    let reader = TableReader::connect(&config.kafka, &topics.tenants, Duration::from_secs(10))
        .await
        .unwrap();
    let table = TenantTable::new();
    sync::restore(&table, &reader, |_| {}).await.unwrap();
    table
}

#[test]
fn api_refuses_to_start_without_an_admin_token() {
    let output = support::hookline("127.0.0.1:9")
        .args(["api", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HOOKLINE__API__ADMIN_TOKEN"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
