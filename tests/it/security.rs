//! Security end to end, through a real replica, the real broker and real
//! local receivers: the destination guard, key rotation, tampering refused
//! by the reference receiver process, payload sizes, tenant isolation, and
//! the capture of a real delivery for the third-party interop checks.
//!
//! Every URL in this file is a loopback form: nothing may leave the machine
//! even if the destination guard were broken.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hookline::crypto::signature::unix_seconds;
use hookline::crypto::{KeyRing, PrivateKey, SigningSecret};
use hookline::receiver::{Delivery, Receiver as Opener};
use secrecy::ExposeSecret as _;

use crate::support::process::Spawned;
use crate::support::replica::{Replica, TestTenant, create_topics, replica_config};
use crate::support::{Broker, Received, Receiver, hookline_bin};

fn event(id: &str, event_type: &str, data: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": id, "type": event_type, "data": data})).unwrap()
}

/// Opens a captured request with `keys` and `secret`, as a tenant would.
fn open(keys: &KeyRing, secret: &SigningSecret, request: &Received) -> Delivery {
    let opener = Opener::new(keys.clone(), Some(secret.clone()));
    let headers = request.webhook_headers();
    opener
        .receive(&headers, &request.body, SystemTime::now())
        .unwrap_or_else(|e| panic!("cannot open a delivery: {}", e.reason()))
}

/// One loopback spelling of a destination: the receiver that listens where
/// it leads, and the URL a tenant would write.
struct LoopbackForm {
    name: &'static str,
    receiver: Receiver,
    url: String,
}

/// The loopback forms of the SSRF tests, each with a receiver of its own so
/// that a delivery that got through shows up where it was aimed. `[::1]` is
/// left out on a machine without IPv6 loopback.
async fn loopback_forms() -> Vec<LoopbackForm> {
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut forms = Vec::new();
    let mut add = async |name: &'static str, ip: IpAddr, url: fn(u16) -> String| {
        // Linux routes all of 127.0.0.0/8 to `lo`, so 127.1.2.3 can be bound.
        if let Some(receiver) = Receiver::ok_on(ip).await {
            let url = url(receiver.addr.port());
            forms.push(LoopbackForm {
                name,
                receiver,
                url,
            });
        }
    };
    add("ipv4", v4, |p| format!("http://127.0.0.1:{p}/hook")).await;
    add(
        "ipv4-127-1-2-3",
        IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3)),
        |p| format!("http://127.1.2.3:{p}/hook"),
    )
    .await;
    add("ipv6", IpAddr::V6(Ipv6Addr::LOCALHOST), |p| {
        format!("http://[::1]:{p}/hook")
    })
    .await;
    add("ipv4-mapped-ipv6", v4, |p| {
        format!("http://[::ffff:127.0.0.1]:{p}/hook")
    })
    .await;
    add("decimal", v4, |p| format!("http://2130706433:{p}/hook")).await;
    add("octal", v4, |p| format!("http://0177.0.0.1:{p}/hook")).await;
    add("localhost", v4, |p| format!("http://localhost:{p}/hook")).await;
    assert!(forms.len() >= 6, "loopback receivers could not be bound");
    forms
}

/// Registers one tenant per form and sends each one event; returns the
/// tenants in the order of `forms`.
async fn send_to_each(
    broker: &Broker,
    topics: &hookline::delivery::runner::Topics,
    forms: &[LoopbackForm],
    allow: &str,
) -> (Vec<TestTenant>, Replica) {
    let tenants: Vec<TestTenant> = (0..forms.len())
        .map(|i| TestTenant::new(&format!("ssrf{i}")))
        .collect();
    for (tenant, form) in tenants.iter().zip(forms) {
        tenant
            .register(broker, topics, &tenant.record(&form.url))
            .await;
    }
    let config = replica_config(broker, &[("DELIVERY__ALLOW_PRIVATE_DESTINATIONS", allow)]);
    let replica = Replica::start(config, topics).await;
    for (tenant, form) in tenants.iter().zip(forms) {
        broker
            .produce(
                &topics.events,
                Some(tenant.id.as_bytes()),
                Some(&event(form.name, "probe", serde_json::json!({}))),
                &[],
            )
            .await;
    }
    (tenants, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_destinations_in_every_spelling_are_dead_lettered_without_retries() {
    let broker = Broker::new("ssrf-refused");
    let topics = create_topics(&broker, 2).await;
    let forms = loopback_forms().await;
    let (_tenants, replica) = send_to_each(&broker, &topics, &forms, "false").await;

    let dead = broker
        .consume(&topics.dlq, forms.len(), Duration::from_secs(60))
        .await;
    assert_eq!(dead.len(), forms.len(), "one dead letter per form");
    for form in &forms {
        let letter = dead
            .iter()
            .find(|r| {
                let value: serde_json::Value =
                    serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
                value["id"] == form.name
            })
            .unwrap_or_else(|| panic!("{}: no dead letter", form.name));
        assert_eq!(
            letter.header("dlq.reason"),
            Some("blocked_destination"),
            "{}",
            form.name
        );
        assert_eq!(
            letter.header("dlq.attempts"),
            Some("1"),
            "{}: retried",
            form.name
        );
        assert_eq!(letter.header("dlq.status"), None, "{}", form.name);
        let error = letter.header("dlq.error").unwrap_or_default();
        assert!(error.contains("loopback"), "{}: {error}", form.name);
    }
    // A delivery that slipped through would have arrived long before its
    // dead letter; wait a little more all the same.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for form in &forms {
        assert!(
            form.receiver.received().is_empty(),
            "{}: a blocked destination received a request",
            form.name
        );
    }
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_destinations_in_every_spelling_are_delivered_when_allowed() {
    let broker = Broker::new("ssrf-allowed");
    let topics = create_topics(&broker, 2).await;
    let forms = loopback_forms().await;
    let (tenants, replica) = send_to_each(&broker, &topics, &forms, "true").await;

    for (tenant, form) in tenants.iter().zip(&forms) {
        let received = form.receiver.wait_for(1, Duration::from_secs(60)).await;
        assert_eq!(received.len(), 1, "{}: not delivered", form.name);
        let delivery = tenant.open(&received[0]);
        assert_eq!(delivery.webhook_id, form.name);
        assert_eq!(delivery.tenant, tenant.id);
    }
    let dead = broker.consume(&topics.dlq, 1, Duration::from_secs(1)).await;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_applies_from_the_next_delivery_and_never_reverts() {
    let broker = Broker::new("rotation");
    let topics = create_topics(&broker, 1).await;
    let receiver = Receiver::ok().await;
    let tenant = TestTenant::new("rotating");
    let old_kid = tenant.key.thumbprint();
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/")))
        .await;
    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;

    let mut sent = 0u32;
    let send = async |n: u32| {
        broker
            .produce(
                &topics.events,
                Some(b"rotating"),
                Some(&event(&format!("r-{n}"), "x", serde_json::json!(n))),
                &[],
            )
            .await;
    };
    for _ in 0..5 {
        send(sent).await;
        sent += 1;
    }
    assert_eq!(receiver.wait_for(5, Duration::from_secs(30)).await.len(), 5);

    // The customer rotates: a new key under a custom `key_id`, same secret.
    let new_key = PrivateKey::generate(2048).unwrap();
    let new_kid = "2026-11";
    let mut record = tenant.record(&receiver.url("/"));
    record["public_key"] = new_key.public_key().to_spki_pem().into();
    record["key_id"] = new_kid.into();
    tenant.register(&broker, &topics, &record).await;

    // Keep sending until the new record shows in a delivery (the table
    // follows the tenants topic on its own schedule), then send more.
    let mut keys = KeyRing::new();
    keys.insert_with_thumbprint(tenant.key.clone());
    keys.insert(new_kid, new_key);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        send(sent).await;
        sent += 1;
        let received = receiver
            .wait_for(sent as usize, Duration::from_secs(10))
            .await;
        let last = received.last().unwrap();
        if open(&keys, &tenant.secret, last).kid == new_kid {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rotation not applied");
    }
    for _ in 0..5 {
        send(sent).await;
        sent += 1;
    }
    let received = receiver
        .wait_for(sent as usize, Duration::from_secs(30))
        .await;
    assert_eq!(received.len(), sent as usize);

    // A receiver holding both keys opens everything, in order.
    let deliveries: Vec<Delivery> = received
        .iter()
        .map(|r| open(&keys, &tenant.secret, r))
        .collect();
    let ids: Vec<String> = deliveries.iter().map(|d| d.webhook_id.clone()).collect();
    let expected: Vec<String> = (0..sent).map(|n| format!("r-{n}")).collect();
    assert_eq!(ids, expected);
    let kids: Vec<&str> = deliveries.iter().map(|d| d.kid.as_str()).collect();
    let switch = kids
        .iter()
        .position(|kid| *kid == new_kid)
        .expect("the new kid appears");
    assert!(switch >= 5, "the new key was used before the rotation");
    assert!(kids[..switch].iter().all(|kid| *kid == old_kid), "{kids:?}");
    assert!(
        kids[switch..].iter().all(|kid| *kid == new_kid),
        "switched back to the old key: {kids:?}"
    );
    assert!(kids.len() - switch >= 6);
    // The old key alone cannot open what was sent after the rotation.
    let mut old_only = KeyRing::new();
    old_only.insert_with_thumbprint(tenant.key.clone());
    let opener = Opener::new(old_only, Some(tenant.secret.clone()));
    let last = received.last().unwrap();
    let headers = last.webhook_headers();
    let refused = opener
        .receive(&headers, &last.body, SystemTime::now())
        .unwrap_err();
    assert_eq!(refused.status(), 400);
    replica.stop().await;
}

/// A `hookline receive` process holding `key` under `kid`, the secret taken
/// from the environment.
async fn spawn_receive(
    dir: &Path,
    kid: &str,
    key: &PrivateKey,
    secret: &SigningSecret,
) -> (Spawned, SocketAddr) {
    let path = dir.join(format!(
        "{}.pem",
        hookline::crypto::sha256_hex(kid.as_bytes())
    ));
    std::fs::write(&path, key.to_pkcs8_pem().unwrap().expose_secret()).unwrap();
    let mut command = std::process::Command::new(hookline_bin());
    command
        .args(["receive", "--listen", "127.0.0.1:0", "--private-key"])
        .arg(format!("{kid}={}", path.display()))
        .env("HOOKLINE_SIGNING_SECRET", secret.to_whsec().expose_secret());
    let process = Spawned::start(command);
    let address = process
        .address_after("listening on ", Duration::from_secs(30))
        .await;
    (process, address)
}

/// Posts `body` with `headers` to a local receiver; returns the status.
async fn replay(address: SocketAddr, headers: &[(&str, String)], body: &[u8]) -> u16 {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(address.ip().is_loopback());
    let mut request = client.post(format!("http://{address}/hook"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request
        .body(body.to_vec())
        .send()
        .await
        .expect("the receiver answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_receiver_refuses_tampered_replays_of_a_real_delivery() {
    let broker = Broker::new("tampering");
    let topics = create_topics(&broker, 1).await;
    let capture = Receiver::ok().await;
    let tenant = TestTenant::new("guarded");
    // A custom key_id, so the receiver is given the key as KID=FILE.
    let kid = "guarded-2026";
    let mut record = tenant.record(&capture.url("/"));
    record["key_id"] = kid.into();
    tenant.register(&broker, &topics, &record).await;
    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;
    broker
        .produce(
            &topics.events,
            Some(b"guarded"),
            Some(&event(
                "evt_real",
                "order.created",
                serde_json::json!({"order": 42}),
            )),
            &[],
        )
        .await;
    let captured = capture.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(captured.len(), 1);
    replica.stop().await;
    let delivered = &captured[0];
    let header = |name: &str| delivered.header(name).unwrap().to_string();
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let headers = |timestamp: &str, signature: String| {
        vec![
            ("webhook-id", id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
            ("content-type", header("content-type")),
        ]
    };
    let genuine = headers(&timestamp, header("webhook-signature"));
    let body = delivered.body.to_vec();

    let dir = tempfile::tempdir().unwrap();
    let (receive, address) = spawn_receive(dir.path(), kid, &tenant.key, &tenant.secret).await;

    // The delivery as hookline sent it: accepted and printed.
    assert_eq!(replay(address, &genuine, &body).await, 200);

    // One flipped byte in the body.
    let mut flipped = body.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    assert_eq!(
        replay(address, &genuine, &flipped).await,
        401,
        "flipped byte"
    );

    // Signed with another secret.
    let forged = SigningSecret::generate().sign(&id, timestamp.parse().unwrap(), &body);
    assert_eq!(
        replay(address, &headers(&timestamp, forged), &body).await,
        401,
        "wrong secret"
    );

    // Correctly signed, ten minutes old.
    let stale = unix_seconds(SystemTime::now()) - 600;
    let stale_signature = tenant.secret.sign(&id, stale, &body);
    assert_eq!(
        replay(
            address,
            &headers(&stale.to_string(), stale_signature),
            &body
        )
        .await,
        401,
        "stale timestamp"
    );

    // The genuine request's signature under a fresh timestamp.
    let fresh = (unix_seconds(SystemTime::now()) + 1).to_string();
    assert_eq!(
        replay(
            address,
            &headers(&fresh, header("webhook-signature")),
            &body
        )
        .await,
        401,
        "signature moved to another timestamp"
    );

    // A receiver holding a different key under the same kid: authenticated,
    // then refused as undecryptable, and nothing printed.
    let other = PrivateKey::generate(2048).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let (wrong_key, wrong_address) =
        spawn_receive(other_dir.path(), kid, &other, &tenant.secret).await;
    assert_eq!(
        replay(wrong_address, &genuine, &body).await,
        400,
        "wrong key"
    );

    // The pipes are read by threads of their own: give them a moment.
    let rejected = || {
        receive
            .stderr()
            .lines()
            .filter(|l| l.contains("delivery rejected"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (receive.stdout_lines().is_empty() || rejected() < 4)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rejected(), 4, "{}", receive.stderr());
    let printed = receive.stdout_lines();
    assert_eq!(
        printed.len(),
        1,
        "only the genuine delivery is printed: {printed:?}"
    );
    let line: serde_json::Value = serde_json::from_str(&printed[0]).unwrap();
    assert_eq!(line["webhook_id"], "evt_real");
    assert_eq!(line["kid"], kid);
    assert_eq!(line["tenant"], "guarded");
    assert_eq!(line["data"], serde_json::json!({"order": 42}));
    wrong_key
        .wait_for_log("delivery rejected", Duration::from_secs(10))
        .await;
    assert!(wrong_key.stdout_lines().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_from_empty_to_one_mebibyte_round_trip() {
    let broker = Broker::new("sizes");
    let topics = create_topics(&broker, 1).await;
    let receiver = Receiver::ok().await;
    let tenant = TestTenant::new("sizes");
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/")))
        .await;
    // The default `max_payload_bytes`, 1 MiB, from the shipped configuration.
    let config = replica_config(&broker, &[]);
    assert_eq!(config.delivery.max_payload_bytes, 1 << 20);
    let replica = Replica::start(config, &topics).await;

    // Data strings of these many characters; the escaped and multi-byte
    // ones exercise JSON escaping and UTF-8 on the way.
    let mut values = Vec::new();
    for size in [0usize, 1, 1024, 64 * 1024] {
        let data: String = "a\"é✓\n".chars().cycle().take(size).collect();
        let id = format!("size-{size}");
        let value = event(&id, "blob", serde_json::json!(data));
        values.push((id, data, value));
    }
    // The largest event value allowed: exactly `max_payload_bytes`.
    let envelope = event("size-max", "blob", serde_json::json!("")).len();
    let data = "x".repeat((1 << 20) - envelope);
    let value = event("size-max", "blob", serde_json::json!(data));
    assert_eq!(value.len(), 1 << 20);
    values.push(("size-max".into(), data, value));
    // One byte over the limit: refused, not delivered.
    let over = event(
        "size-max",
        "blob",
        serde_json::json!("x".repeat((1 << 20) - envelope + 1)),
    );
    assert_eq!(over.len(), (1 << 20) + 1);

    for (_, _, value) in &values {
        broker
            .produce(&topics.events, Some(b"sizes"), Some(value), &[])
            .await;
    }
    broker
        .produce(&topics.events, Some(b"sizes"), Some(&over), &[])
        .await;

    let received = receiver
        .wait_for(values.len(), Duration::from_secs(60))
        .await;
    assert_eq!(received.len(), values.len());
    for ((id, data, _), request) in values.iter().zip(&received) {
        let delivery = tenant.open(request);
        assert_eq!(&delivery.webhook_id, id);
        assert_eq!(delivery.data, serde_json::json!(data), "{id}");
    }
    // Regression: a dead letter could not carry a value above librdkafka's
    // default 1,000,000-byte limit, so this one blocked its partition.
    let dead = broker
        .consume(&topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("dlq.reason"), Some("payload_too_large"));
    assert_eq!(dead[0].value.as_deref(), Some(over.as_slice()));
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_naming_another_tenant_is_dead_lettered_as_invalid() {
    let broker = Broker::new("isolation-key");
    let topics = create_topics(&broker, 1).await;
    let receiver = Receiver::ok().await;
    let alice = TestTenant::new("alice");
    let mallory = TestTenant::new("mallory");
    alice
        .register(&broker, &topics, &alice.record(&receiver.url("/alice")))
        .await;
    mallory
        .register(&broker, &topics, &mallory.record(&receiver.url("/mallory")))
        .await;
    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;

    // Keyed to mallory, but claiming to be alice's.
    let spoofed = serde_json::to_vec(&serde_json::json!({
        "id": "spoofed", "type": "x", "tenant": "alice", "data": {"steal": true},
    }))
    .unwrap();
    let (_, spoofed_offset) = broker
        .produce(&topics.events, Some(b"mallory"), Some(&spoofed), &[])
        .await;
    // Naming its own tenant is fine.
    let honest = serde_json::to_vec(&serde_json::json!({
        "id": "honest", "type": "x", "tenant": "mallory", "data": 1,
    }))
    .unwrap();
    broker
        .produce(&topics.events, Some(b"mallory"), Some(&honest), &[])
        .await;

    let dead = broker
        .consume(&topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("dlq.reason"), Some("invalid_event"));
    assert_eq!(
        dead[0].header("dlq.offset"),
        Some(spoofed_offset.to_string().as_str())
    );
    assert_eq!(dead[0].header("dlq.tenant"), Some("mallory"));
    assert_eq!(dead[0].header("dlq.attempts"), Some("0"));

    let received = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/mallory");
    let delivery = mallory.open(&received[0]);
    assert_eq!(delivery.webhook_id, "honest");
    assert_eq!(delivery.tenant, "mallory");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().iter().all(|r| r.path != "/alice"));
    replica.stop().await;
}

/// Captures a delivery that an in-process replica really sent and writes it
/// in the fixture layout of `tests/interop` (`keys/`, `body.json`,
/// `request.json`), into `$HOOKLINE_INTEROP_DELIVERY_DIR` when set: run.sh
/// then has jwcrypto, standardwebhooks and jose check it. Without the
/// variable the files go to a temporary directory and only the checks here
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_delivery_is_captured_for_the_interop_checks() {
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("HOOKLINE_INTEROP_DELIVERY_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_owned());
    let files = hookline::commands::keygen::write_key_pair(&dir.join("keys"), 2048, true).unwrap();
    let key = PrivateKey::parse(&std::fs::read_to_string(&files.private).unwrap()).unwrap();

    let broker = Broker::new("interop");
    let topics = create_topics(&broker, 1).await;
    let receiver = Receiver::ok().await;
    let tenant = TestTenant {
        id: "interop".into(),
        key,
        secret: SigningSecret::generate(),
    };
    tenant
        .register(&broker, &topics, &tenant.record(&receiver.url("/")))
        .await;
    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;
    let data =
        serde_json::json!({"order": 42, "note": "caf\u{e9} \u{2713}", "items": [1, 2.5, null]});
    let value = serde_json::to_vec(&serde_json::json!({
        "id": "evt_interop_real", "type": "order.created",
        "timestamp": "2026-11-28T10:00:00Z", "data": data,
    }))
    .unwrap();
    broker
        .produce(&topics.events, Some(b"interop"), Some(&value), &[])
        .await;
    let received = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 1);
    replica.stop().await;
    let request = &received[0];
    let delivery = tenant.open(request);
    assert_eq!(delivery.data, data);
    assert_eq!(delivery.tenant, "interop");
    assert_eq!(delivery.timestamp, "2026-11-28T10:00:00Z");

    let fixture = serde_json::json!({
        "webhook-id": request.header("webhook-id"),
        "webhook-timestamp": request.header("webhook-timestamp"),
        "webhook-signature": request.header("webhook-signature"),
        "content-type": request.header("content-type"),
        "secret": tenant.secret.to_whsec().expose_secret(),
        "kid": files.thumbprint,
        "plaintext": {
            "id": delivery.webhook_id,
            "type": delivery.event_type,
            "timestamp": delivery.timestamp,
            "tenant": delivery.tenant,
            "data": data,
        },
    });
    std::fs::write(dir.join("body.json"), &request.body).unwrap();
    std::fs::write(
        dir.join("request.json"),
        serde_json::to_vec_pretty(&fixture).unwrap(),
    )
    .unwrap();
}
