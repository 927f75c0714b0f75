//! Suspending a tenant and resuming it in order, against the real broker:
//! with the commands (`hookline tenants suspend|resume`, the real binary)
//! and with the tenant API. While the resumption replays the parked events,
//! new events of the tenant keep arriving; its receiver must see every
//! event once, in the order it was produced.

use std::time::{Duration, Instant};

use hookline::delivery::runner::Topics;
use hookline::tenants::TenantEntry;
use reqwest::Method;
use serde_json::json;

use crate::api::{ADMIN, Api};
use crate::support::broker::Record;
use crate::support::process::{command, output};
use crate::support::replica::{Replica, TestTenant, create_topics, replica_config, write_topology};
use crate::support::{Broker, Receiver};

const PARTITIONS: i32 = 4;

/// Events produced before the suspension, while suspended, and during the
/// resumption.
const BEFORE: usize = 5;
const WHILE_SUSPENDED: usize = 10;
const DURING_RESUME: usize = 60;

/// How the test suspends and resumes the tenant.
#[derive(Clone, Copy)]
enum Through {
    Commands,
    Api,
}

struct Scenario {
    broker: Broker,
    _dir: tempfile::TempDir,
    topics: Topics,
    topology: std::path::PathBuf,
    receiver: Receiver,
    replica: Replica,
    api: Option<(Api, String)>,
    /// The partition the tenant's events are produced to: not the one the
    /// default partitioner would choose for its key, as with a producer
    /// using another partitioner (Java's murmur2), so that replays must
    /// follow the events, not the key.
    partition: i32,
}

impl Scenario {
    async fn start(test: &str, through: Through) -> Self {
        let broker = Broker::new(test);
        let dir = tempfile::tempdir().unwrap();
        let topics = create_topics(&broker, PARTITIONS).await;
        let topology = write_topology(dir.path(), &topics, PARTITIONS as u32);
        let receiver = Receiver::ok().await;
        let config = replica_config(&broker, &[]);
        let api = match through {
            Through::Commands => {
                for id in ["acme", "other"] {
                    let tenant = TestTenant::new(id);
                    let record = tenant.record(&receiver.url(&format!("/{id}")));
                    tenant.register(&broker, &topics, &record).await;
                }
                None
            }
            Through::Api => {
                let api = Api::start(&config, &topics, false).await;
                let mut key = String::new();
                for id in ["acme", "other"] {
                    let created = api
                        .call(
                            Method::POST,
                            "/v1/tenants",
                            Some(ADMIN),
                            Some(&json!({
                                "id": id,
                                "url": receiver.url(&format!("/{id}")),
                                "public_key": TestTenant::new(id).key.public_key().to_spki_pem(),
                            })),
                        )
                        .await;
                    assert_eq!(created.status, 201, "{}", created.body);
                    if id == "acme" {
                        key = created.body["api_key"].as_str().unwrap().to_string();
                    }
                }
                Some((api, key))
            }
        };
        let replica = Replica::start(config, &topics).await;
        let probe = broker.name("probe");
        broker.create_topic(&probe, PARTITIONS, &[]).await;
        let (natural, _) = broker
            .produce(&probe, Some(b"acme"), Some(b"{}"), &[])
            .await;
        Self {
            broker,
            _dir: dir,
            topics,
            topology,
            receiver,
            replica,
            api,
            partition: (natural + 1) % PARTITIONS,
        }
    }

    async fn produce(&self, tenant: &str, n: usize) {
        let id = format!("{tenant}-{n}");
        let value = json!({"id": id, "type": "order.created", "data": {"n": n}});
        let partition = (tenant == "acme").then_some(self.partition);
        self.broker
            .produce_to(
                &self.topics.events,
                partition,
                Some(tenant.as_bytes()),
                Some(&serde_json::to_vec(&value).unwrap()),
                &[],
            )
            .await;
    }

    /// The webhook ids `path` received, in arrival order.
    fn received(&self, path: &str) -> Vec<String> {
        self.receiver.webhook_ids(path)
    }

    async fn wait_received(&self, path: &str, count: usize) -> Vec<String> {
        self.receiver
            .wait_webhook_ids(path, count, Duration::from_secs(60))
            .await
    }

    /// Waits until the replica's tenant table says `acme` is suspended or
    /// not.
    async fn wait_suspended(&self, suspended: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self
                .replica
                .state
                .table
                .get("acme")
                .is_some_and(|e| matches!(&*e, TenantEntry::Valid(t) if t.suspended));
            if now == suspended {
                return;
            }
            assert!(Instant::now() < deadline, "the replica never saw it");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn dead_letters(&self, count: usize) -> Vec<Record> {
        self.broker
            .consume(&self.topics.dlq, count, Duration::from_secs(30))
            .await
    }

    async fn suspend(&self, through: Through) {
        match through {
            Through::Commands => {
                let (code, stdout, stderr) = output(
                    command(&self.broker, &self.topology),
                    &["tenants", "suspend", "acme"],
                );
                assert_eq!(code, Some(0), "{stderr}");
                assert!(stdout.starts_with("tenant acme suspended"), "{stdout}");
                let (code, stdout, _) = output(
                    command(&self.broker, &self.topology),
                    &["tenants", "suspend", "acme"],
                );
                assert_eq!(code, Some(0));
                assert_eq!(stdout.trim(), "tenant acme was already suspended");
            }
            Through::Api => {
                let (api, key) = self.api.as_ref().unwrap();
                let path = "/v1/tenants/acme/suspend";
                // The tenant cannot suspend itself: that is the operator's.
                api.call(Method::POST, path, Some(key), None)
                    .await
                    .assert_problem(401, "the tenant's key");
                let answer = api.call(Method::POST, path, Some(ADMIN), None).await;
                assert_eq!(answer.status, 200, "{}", answer.body);
                assert_eq!(answer.body["status"], "suspended");
            }
        }
    }

    /// Resumes `acme` while `DURING_RESUME` new events of it are produced
    /// one by one; returns the replayed count the resumption reports.
    async fn resume_while_producing(self: &std::sync::Arc<Self>, through: Through) -> u64 {
        let producing = {
            let this = self.clone();
            tokio::spawn(async move {
                for n in BEFORE + WHILE_SUSPENDED..BEFORE + WHILE_SUSPENDED + DURING_RESUME {
                    this.produce("acme", n).await;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            })
        };
        // Some new events arrive before the resumption starts.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let replayed = match through {
            Through::Commands => {
                let resume = command(&self.broker, &self.topology);
                let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
                    output(resume, &["tenants", "resume", "acme"])
                })
                .await
                .unwrap();
                assert_eq!(code, Some(0), "{stdout}{stderr}");
                assert!(stderr.contains("suspension cleared"), "{stderr}");
                assert!(stdout.starts_with("tenant acme resumed: "), "{stdout}");
                let replayed: u64 = stdout["tenant acme resumed: ".len()..]
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                replayed
            }
            Through::Api => {
                let (api, key) = self.api.as_ref().unwrap();
                let answer = api
                    .call(Method::POST, "/v1/tenants/acme/resume", Some(key), None)
                    .await;
                assert_eq!(answer.status, 200, "{}", answer.body);
                assert_eq!(answer.body["was_suspended"], true);
                answer.body["replayed"].as_u64().unwrap()
            }
        };
        producing.await.unwrap();
        replayed
    }
}

async fn suspend_then_resume_in_order(test: &str, through: Through) {
    let scenario = std::sync::Arc::new(Scenario::start(test, through).await);
    let s = &scenario;
    for n in 0..BEFORE {
        s.produce("acme", n).await;
    }
    assert_eq!(s.wait_received("/acme", BEFORE).await.len(), BEFORE);

    s.suspend(through).await;
    s.wait_suspended(true).await;
    for n in BEFORE..BEFORE + WHILE_SUSPENDED {
        s.produce("acme", n).await;
    }
    for n in 0..5 {
        s.produce("other", n).await;
    }
    // Parked, in order, on the dead-letter topic; the other tenant is
    // delivered meanwhile.
    let parked = s.dead_letters(WHILE_SUSPENDED).await;
    assert_eq!(parked.len(), WHILE_SUSPENDED);
    for letter in &parked {
        assert_eq!(letter.header("dlq.reason"), Some("tenant_suspended"));
        assert_eq!(letter.header("dlq.attempts"), Some("0"));
    }
    assert_eq!(s.wait_received("/other", 5).await.len(), 5);
    assert_eq!(
        s.received("/acme").len(),
        BEFORE,
        "nothing delivered while suspended"
    );

    let replayed = s.resume_while_producing(through).await;
    let total = BEFORE + WHILE_SUSPENDED + DURING_RESUME;
    let received = s.wait_received("/acme", total).await;
    let produced: Vec<String> = (0..total).map(|n| format!("acme-{n}")).collect();
    assert_eq!(
        received, produced,
        "the receiver sees every event once, in the order it was produced"
    );
    // At least the events parked while suspended were replayed; those that
    // arrived during the resumption were parked behind them, replayed or
    // delivered directly once it caught up.
    assert!(
        replayed >= WHILE_SUSPENDED as u64,
        "replayed {replayed} of {WHILE_SUSPENDED} parked"
    );
    // The replays went back to the partition of the tenant's events.
    let events = s
        .broker
        .consume(&s.topics.events, usize::MAX, Duration::from_secs(3))
        .await;
    let replays: Vec<&Record> = events
        .iter()
        .filter(|r| r.header("hookline.replay-of").is_some())
        .collect();
    assert_eq!(replays.len() as u64, replayed);
    assert!(replays.iter().all(|r| r.partition == s.partition));

    // Once caught up, nothing is owed: a new event is delivered at once,
    // and resuming again replays nothing.
    s.produce("acme", total).await;
    assert_eq!(s.wait_received("/acme", total + 1).await.len(), total + 1);
    match through {
        Through::Commands => {
            let (code, stdout, stderr) = output(
                command(&s.broker, &s.topology),
                &["tenants", "resume", "acme"],
            );
            assert_eq!(code, Some(0), "{stderr}");
            assert!(stderr.contains("tenant acme was not suspended"), "{stderr}");
            assert!(
                stdout.starts_with("tenant acme resumed: 0 parked events replayed"),
                "{stdout}"
            );
        }
        Through::Api => {
            let (api, _) = s.api.as_ref().unwrap();
            let answer = api
                .call(Method::POST, "/v1/tenants/acme/resume", Some(ADMIN), None)
                .await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert_eq!(answer.body["was_suspended"], false);
            assert_eq!(answer.body["replayed"], 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_resumed_with_the_command_receives_its_events_in_produced_order() {
    suspend_then_resume_in_order("resume-cli", Through::Commands).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_resumed_through_the_api_receives_its_events_in_produced_order() {
    suspend_then_resume_in_order("resume-api", Through::Api).await;
}

/// Another tenant's key cannot resume a tenant, nor can anyone resume one
/// that does not exist; the commands refuse a bad id in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_is_refused_to_others_and_for_unknown_tenants() {
    let scenario = Scenario::start("resume-refused", Through::Api).await;
    let (api, _) = scenario.api.as_ref().unwrap();
    let created = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(ADMIN),
            Some(&json!({"id": "globex"})),
        )
        .await;
    let globex_key = created.body["api_key"].as_str().unwrap().to_string();
    api.call(
        Method::POST,
        "/v1/tenants/acme/resume",
        Some(&globex_key),
        None,
    )
    .await
    .assert_problem(404, "another tenant's key");
    api.call(Method::POST, "/v1/tenants/ghost/resume", Some(ADMIN), None)
        .await
        .assert_problem(404, "no such tenant");
    api.call(Method::POST, "/v1/tenants/ghost/suspend", Some(ADMIN), None)
        .await
        .assert_problem(404, "no such tenant");

    for (args, expected) in [
        (
            &["tenants", "suspend", "ghost"][..],
            "tenant `ghost` does not exist",
        ),
        (
            &["tenants", "resume", "ghost"][..],
            "tenant `ghost` does not exist",
        ),
        (
            &["tenants", "suspend", "no spaces"][..],
            "tenant `no spaces`",
        ),
    ] {
        let (code, stdout, stderr) = output(command(&scenario.broker, &scenario.topology), args);
        assert_eq!(code, Some(1), "{args:?}: {stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
