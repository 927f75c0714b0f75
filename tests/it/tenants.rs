//! The tenant table against the real broker: restore, live updates,
//! tombstones, invalid records, a really compacted topic, and the rate
//! limit given to `tenants put`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hookline::crypto::PrivateKey;
use hookline::kafka::table_reader::TableReader;
use hookline::tenants::sync;
use hookline::tenants::{TenantEntry, TenantTable};
use tokio_util::sync::CancellationToken;

use crate::support::replica::{create_topics, write_topology};
use crate::support::{self, Broker};

/// One 2048-bit key shared by the tests of this file: generating keys is
/// slow and not what these tests are about.
fn key() -> &'static (String, PrivateKey) {
    static KEY: OnceLock<(String, PrivateKey)> = OnceLock::new();
    KEY.get_or_init(|| {
        let private = PrivateKey::generate(2048).expect("key generation");
        (private.public_key().to_spki_pem(), private)
    })
}

fn record(url: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "url": url,
        "public_key": key().0,
        "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "events": ["order.*"],
    }))
    .unwrap()
}

async fn tenants_topic(broker: &Broker, partitions: i32, configs: &[(&str, &str)]) -> String {
    let topic = broker.name("tenants");
    let mut all = vec![("cleanup.policy", "compact")];
    all.extend_from_slice(configs);
    broker.create_topic(&topic, partitions, &all).await;
    topic
}

async fn restored_table(broker: &Broker, topic: &str) -> (TenantTable, TableReader) {
    let config = support::config(&broker.bootstrap);
    let reader = TableReader::connect(&config.kafka, topic, Duration::from_secs(10))
        .await
        .unwrap();
    let table = TenantTable::new();
    assert!(!table.is_restored());
    sync::restore(&table, &reader, |_| {}).await.unwrap();
    assert!(table.is_restored());
    (table, reader)
}

fn url_of(table: &TenantTable, id: &str) -> Option<String> {
    match &*table.get(id)? {
        TenantEntry::Valid(t) => Some(t.url().to_string()),
        TenantEntry::Invalid { error, .. } => Some(format!("invalid: {error}")),
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_ten_thousand_tenants_then_follows_updates_and_tombstones() {
    let broker = Broker::new("tenants-restore");
    let topic = tenants_topic(&broker, 3, &[]).await;
    let value = record("https://hooks.example.com/a");
    let sends: Vec<_> = (0..10_000)
        .map(|i| {
            let key = format!("tenant-{i}");
            let broker = &broker;
            let topic = &topic;
            let value = &value;
            async move {
                broker
                    .produce(topic, Some(key.as_bytes()), Some(value), &[])
                    .await
            }
        })
        .collect();
    futures::future::join_all(sends).await;
    // A tenant deleted before the restore starts must not be there.
    broker.produce(&topic, Some(b"tenant-7"), None, &[]).await;

    let (table, reader) = restored_table(&broker, &topic).await;
    assert_eq!(table.stats().tenants, 9_999);
    assert_eq!(table.stats().invalid, 0);
    assert!(table.get("tenant-7").is_none());
    assert_eq!(
        url_of(&table, "tenant-9999").as_deref(),
        Some("https://hooks.example.com/a")
    );

    let shutdown = CancellationToken::new();
    let follower = tokio::spawn(sync::follow(table.clone(), reader, shutdown.clone()));
    broker
        .produce(
            &topic,
            Some(b"tenant-1"),
            Some(&record("https://hooks.example.com/new")),
            &[],
        )
        .await;
    broker.produce(&topic, Some(b"tenant-2"), None, &[]).await;
    broker
        .produce(
            &topic,
            Some(b"brand-new"),
            Some(&record("https://new.example.com/")),
            &[],
        )
        .await;
    eventually("live updates", || {
        url_of(&table, "tenant-1").as_deref() == Some("https://hooks.example.com/new")
            && table.get("tenant-2").is_none()
            && table.get("brand-new").is_some()
    })
    .await;
    shutdown.cancel();
    follower.await.unwrap();
}

#[tokio::test]
async fn invalid_records_mark_the_tenant_invalid_and_crash_nothing() {
    let broker = Broker::new("tenants-invalid");
    let topic = tenants_topic(&broker, 3, &[]).await;
    let small_key = include_str!("fixtures/rsa1024.pub.pem");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad-pem",
            serde_json::to_vec(&serde_json::json!({
                "url": "https://a.example.com/", "public_key": "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"
            })).unwrap(),
            "public_key",
        ),
        (
            "small-key",
            serde_json::to_vec(&serde_json::json!({"url": "https://a.example.com/", "public_key": small_key})).unwrap(),
            "public_key",
        ),
        (
            "ftp-url",
            serde_json::to_vec(&serde_json::json!({"url": "ftp://a.example.com/", "public_key": key().0})).unwrap(),
            "url",
        ),
        (
            "bad-secret",
            serde_json::to_vec(&serde_json::json!({
                "url": "https://a.example.com/", "public_key": key().0, "signing_secret": "not-a-secret"
            })).unwrap(),
            "signing_secret",
        ),
        (
            "zero-rate",
            serde_json::to_vec(&serde_json::json!({
                "url": "https://a.example.com/", "public_key": key().0, "rate_limit": 0
            })).unwrap(),
            "rate_limit",
        ),
        ("not-json", b"{this is not json".to_vec(), "not a valid tenant record"),
    ];
    for (id, value, _) in &cases {
        broker
            .produce(&topic, Some(id.as_bytes()), Some(value), &[])
            .await;
    }
    broker
        .produce(
            &topic,
            Some(b"good"),
            Some(&record("https://good.example.com/")),
            &[],
        )
        .await;

    let (table, reader) = restored_table(&broker, &topic).await;
    for (id, _, field) in &cases {
        match table.get(id).as_deref() {
            Some(TenantEntry::Invalid { error, .. }) => {
                assert!(
                    error.contains(field),
                    "{id}: `{error}` does not name {field}"
                )
            }
            other => panic!("{id}: expected an invalid entry, got {other:?}"),
        }
    }
    assert!(matches!(
        table.get("good").as_deref(),
        Some(TenantEntry::Valid(_))
    ));
    let stats = table.stats();
    assert_eq!((stats.tenants, stats.invalid), (7, 6));
    assert_eq!(stats.invalid_records, 6);

    // A valid record heals an invalid tenant.
    let shutdown = CancellationToken::new();
    let follower = tokio::spawn(sync::follow(table.clone(), reader, shutdown.clone()));
    broker
        .produce(
            &topic,
            Some(b"not-json"),
            Some(&record("https://healed.example.com/")),
            &[],
        )
        .await;
    eventually("the healed tenant", || {
        matches!(
            table.get("not-json").as_deref(),
            Some(TenantEntry::Valid(_))
        )
    })
    .await;
    shutdown.cancel();
    follower.await.unwrap();
}

#[tokio::test]
async fn restore_is_correct_after_the_log_cleaner_compacted_the_topic() {
    let broker = Broker::new("tenants-compacted");
    // Tiny segments by time and an eager cleaner, so that compaction happens
    // within seconds.
    // One partition: a segment rolls only when its own partition is
    // written to, and the loop below rolls it by writing.
    let topic = tenants_topic(
        &broker,
        1,
        &[
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.001"),
            ("min.compaction.lag.ms", "0"),
            ("delete.retention.ms", "100"),
        ],
    )
    .await;
    let keys = 20;
    let versions = 5;
    let mut produced = 0;
    for version in 0..versions {
        for k in 0..keys {
            let url = format!("https://t{k}.example.com/v{version}");
            broker
                .produce(
                    &topic,
                    Some(format!("t{k}").as_bytes()),
                    Some(&record(&url)),
                    &[],
                )
                .await;
            produced += 1;
        }
    }
    // Delete one tenant, then roll the segment (the cleaner never touches
    // the active one) by writing after segment.ms has passed.
    broker.produce(&topic, Some(b"t0"), None, &[]).await;
    produced += 1;

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        broker
            .produce(
                &topic,
                Some(b"roll"),
                Some(&record("https://roll.example.com/")),
                &[],
            )
            .await;
        produced += 1;
        let present = broker
            .consume(&topic, produced, Duration::from_secs(3))
            .await
            .len();
        if present < produced - keys * (versions - 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log cleaner did not compact {topic}"
        );
    }

    let (table, _reader) = restored_table(&broker, &topic).await;
    assert!(table.get("t0").is_none(), "the tombstoned tenant came back");
    for k in 1..keys {
        assert_eq!(
            url_of(&table, &format!("t{k}")),
            Some(format!("https://t{k}.example.com/v{}", versions - 1)),
            "tenant t{k} restored to an old version"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_put_takes_a_rate_limit_that_get_list_and_the_table_show() {
    let broker = Broker::new("tenants-rate-limit");
    let topics = create_topics(&broker, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let topology = write_topology(dir.path(), &topics, 1);
    let public = dir.path().join("public.pem");
    std::fs::write(&public, &key().0).unwrap();
    let public = public.to_str().unwrap();
    let tenants = |args: &[&str]| {
        let output = support::hookline(&broker.bootstrap)
            .env("HOOKLINE__TOPOLOGY", &topology)
            .arg("tenants")
            .args(args)
            .output()
            .expect("run hookline");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr),
        )
    };
    let put = |id: &str, extra: &[&str]| {
        let mut args = vec![
            "put",
            id,
            "--url",
            "https://hooks.example.com/",
            "--public-key",
            public,
        ];
        args.extend_from_slice(extra);
        tenants(&args)
    };

    let (code, stdout, stderr) = put("slow", &["--rate-limit", "0.5"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("at most 0.5/s"), "{stdout}");
    let (code, stdout, stderr) = put("free", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("no rate limit"), "{stdout}");

    for (id, shown) in [
        ("slow", serde_json::json!(0.5)),
        ("free", serde_json::Value::Null),
    ] {
        let (code, stdout, stderr) = tenants(&["get", id]);
        assert_eq!(code, Some(0), "{stderr}");
        let record: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(record["rate_limit"], shown, "{id}");
    }
    let (code, stdout, stderr) = tenants(&["list"]);
    assert_eq!(code, Some(0), "{stderr}");
    let row = |id: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(id))
            .unwrap_or_default()
    };
    assert!(stdout.contains("RATE LIMIT"), "{stdout}");
    assert!(row("slow").trim_end().ends_with("0.5/s"), "{stdout}");
    assert!(row("free").trim_end().ends_with("unlimited"), "{stdout}");
    let (_, stdout, _) = tenants(&["list", "--json"]);
    let rates: Vec<(String, serde_json::Value)> = stdout
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                line["id"].as_str().unwrap().to_string(),
                line["rate_limit"].clone(),
            )
        })
        .collect();
    assert!(
        rates.contains(&("slow".into(), serde_json::json!(0.5))),
        "{rates:?}"
    );
    assert!(
        rates.contains(&("free".into(), serde_json::Value::Null)),
        "{rates:?}"
    );

    // What a replica restores: the prepared limit and its interval.
    let (table, _reader) = restored_table(&broker, &topics.tenants).await;
    match table.get("slow").as_deref() {
        Some(TenantEntry::Valid(slow)) => {
            let limit = slow.rate_limit.expect("a rate limit");
            assert_eq!(limit.interval(), Duration::from_secs(2));
        }
        other => panic!("slow is not valid: {other:?}"),
    }

    // A bad value: one line naming the flag, exit 1, nothing written.
    for bad in ["0", "-2", "1000001", "ten"] {
        let (code, _, stderr) = put("bad", &["--rate-limit", bad]);
        assert_eq!(code, Some(1), "{bad}");
        assert_eq!(stderr.trim().lines().count(), 1, "{bad}: {stderr}");
        assert!(stderr.contains("--rate-limit"), "{bad}: {stderr}");
    }
    let (code, _, stderr) = tenants(&["get", "bad"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_put_keeps_a_previous_signing_secret_for_its_grace_and_never_shows_it() {
    let broker = Broker::new("tenants-previous-secret");
    let topics = create_topics(&broker, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let topology = write_topology(dir.path(), &topics, 1);
    let public = dir.path().join("public.pem");
    std::fs::write(&public, &key().0).unwrap();
    let tenants = |args: &[&str]| {
        let output = support::hookline(&broker.bootstrap)
            .env("HOOKLINE__TOPOLOGY", &topology)
            .arg("tenants")
            .args(args)
            .output()
            .expect("run hookline");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr),
        )
    };
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let put = |extra: &[&str]| {
        let mut args = vec![
            "put",
            "acme",
            "--url",
            "https://hooks.example.com/",
            "--public-key",
            public.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        tenants(&args)
    };

    // Without a current secret, a previous one makes no sense.
    let (code, _, stderr) = put(&["--previous-signing-secret", old]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("previous_signing_secret: "), "{stderr}");
    assert!(!stderr.contains("MfKQ9r8G"), "{stderr}");

    let before = std::time::SystemTime::now();
    let (code, stdout, stderr) = put(&[
        "--generate-secret",
        "--previous-signing-secret",
        old,
        "--grace",
        "2h",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("previous signing secret signs too until"),
        "{stdout}"
    );
    let (code, stdout, stderr) = tenants(&["get", "acme"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains("whsec_"), "{stdout}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["previous_signing_secret"], "<set>");
    let expires_at = shown["previous_signing_secret_expires_at"]
        .as_str()
        .unwrap();
    let expires_at: std::time::SystemTime =
        time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .into();
    let grace = expires_at.duration_since(before).unwrap();
    assert!(
        grace >= Duration::from_secs(7_199) && grace <= Duration::from_secs(7_260),
        "{grace:?}"
    );

    // A zero grace keeps nothing.
    let (code, _, stderr) = put(&[
        "--signing-secret",
        old,
        "--previous-signing-secret",
        old,
        "--grace",
        "0s",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let (_, stdout, _) = tenants(&["get", "acme"]);
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["previous_signing_secret"], serde_json::Value::Null);
}
