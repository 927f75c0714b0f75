//! `hookline demo`: the whole flow on the embedded mock cluster, no broker
//! needed. The summary must add up, and each tenant must show the behaviour
//! it was given.

use std::process::Stdio;

use hookline::demo::scenario::{self, FLAKY_FAILURES, PARTIAL_SUBSCRIPTION, Role};
use hookline::demo::{DemoOptions, TenantSummary};
use hookline::tenants::pattern::Pattern;

use crate::support::hookline;

const EVENTS: u64 = 120;
const TENANTS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_delivered_filtered_or_dead_lettered_as_its_tenant_behaves() {
    let options = DemoOptions {
        events: EVENTS,
        tenants: TENANTS,
    };
    let mut ticks = 0;
    let summary = hookline::demo::run(&options, |_| ticks += 1)
        .await
        .expect("the demo runs to completion");
    assert!(ticks > 0, "progress was never reported");
    assert_eq!(summary.tenants.len(), TENANTS);

    let produced: u64 = summary.tenants.iter().map(|t| t.produced).sum();
    assert_eq!(produced, EVENTS);
    for t in &summary.tenants {
        assert_eq!(
            t.delivered + t.dead_lettered + t.filtered,
            t.produced,
            "{t:?}"
        );
    }

    // What each behaviour must produce, predicted from the scenario rather
    // than from the counts.
    let partial = Pattern::parse(PARTIAL_SUBSCRIPTION).unwrap();
    let unsubscribed = |tenant: usize| {
        (0..EVENTS)
            .map(|n| scenario::event(n, TENANTS))
            .filter(|e| e.tenant == tenant && !partial.matches(e.event_type))
            .count() as u64
    };
    for (index, t) in summary.tenants.iter().enumerate() {
        let TenantSummary {
            produced,
            delivered,
            filtered,
            dead_lettered,
            retries,
            ..
        } = *t;
        match t.role {
            Role::Healthy => assert_eq!(
                (delivered, filtered, dead_lettered, retries),
                (produced, 0, 0, 0),
                "{t:?}"
            ),
            Role::Flaky => assert_eq!(
                (delivered, filtered, dead_lettered, retries),
                (produced, 0, 0, u64::from(FLAKY_FAILURES)),
                "{t:?}"
            ),
            Role::PartiallySubscribed => {
                let expected = unsubscribed(index);
                assert!(expected > 0);
                assert_eq!(
                    (delivered, filtered, dead_lettered),
                    (produced - expected, expected, 0),
                    "{t:?}"
                );
            }
            Role::Disabled => assert_eq!(
                (delivered, filtered, dead_lettered),
                (0, 0, produced),
                "{t:?}"
            ),
        }
    }

    let sample = summary.sample.expect("a sample delivery");
    assert_eq!(sample["tenant"], "acme");
    assert!(sample["webhook_id"].as_str().unwrap().starts_with("demo_"));
    assert!(sample["data"].is_object(), "{sample}");
}

#[test]
fn the_binary_prints_a_summary_that_adds_up_and_exits_0_without_warnings() {
    // The address is never used: the demo brings its own cluster.
    let output = hookline("127.0.0.1:1")
        .args(["demo", "--events", "120", "--tenants", "4"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}\n{stdout}");
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "log noise on stderr:\n{stderr}"
    );
    assert!(stderr.contains("progress:"), "{stderr}");

    let header = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("TENANT"))
        .unwrap_or_else(|| panic!("no table in:\n{stdout}"));
    assert!(
        header.contains("DELIVERED")
            && header.contains("FILTERED")
            && header.contains("DEAD-LETTERED"),
        "{header}"
    );
    // PRODUCED DELIVERED FILTERED DEAD-LETTERED RETRIES: the last five
    // columns of every row.
    let numbers = |line: &str| -> Vec<u64> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields[fields.len() - 5..]
            .iter()
            .map(|f| f.parse().unwrap())
            .collect()
    };
    let mut rows = 0;
    for line in stdout.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if ["acme", "stark", "initech", "umbrella", "total"].contains(&name) {
            let n = numbers(line);
            assert_eq!(n[1] + n[2] + n[3], n[0], "{line}");
            if name == "total" {
                assert_eq!(n[0], 120, "{line}");
            }
            rows += 1;
        }
    }
    assert_eq!(rows, 5, "{stdout}");
    assert!(stdout.contains("\"webhook_id\": \"demo_"), "{stdout}");
}
