//! `hookline setup-topics`: plan, then apply (DESIGN §3).
//!
//! The plan goes to stdout as a table (topic, role, action, detail) followed
//! by a one-line summary; progress while applying goes to stderr. Exit codes:
//! 0 when the cluster matches (after applying), 1 on error (including a plan
//! that cannot be applied), 2 for `--check` when anything differs.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::count;
use crate::cli::SetupTopicsArgs;
use crate::config::Config;
use crate::kafka::admin::Admin;
use crate::schema_registry::{SchemaId, find_event_schema, register_event_schema, value_subject};
use crate::topology::{Action, Counts, Plan, Topology};

/// Exit code of `--check` when the cluster differs from the topology.
const EXIT_DIFFERS: u8 = 2;

/// How often the cluster is described again while waiting for it to report
/// the applied changes.
const CONVERGENCE_POLL: Duration = Duration::from_millis(200);

pub async fn setup_topics(args: SetupTopicsArgs, config: Config) -> Result<ExitCode> {
    let (topology, origin) = super::load_topology(args.topology.as_deref(), &config)?;
    let admin = Admin::new(&config.kafka)?;
    let cluster = admin.describe(&topology.names()).await?;
    let plan = Plan::new(&topology, &cluster);

    println!("Topology: {origin}; cluster: {}", admin.bootstrap());
    print!("{}", render_plan(&plan));
    let counts = plan.counts();
    let schema = EventSchema::observe(&config, &topology).await?;
    if let Some(schema) = &schema {
        println!("{}", schema.describe());
    }
    let schema_missing = schema.as_ref().is_some_and(|s| s.registered.is_none());

    if args.check {
        return Ok(if plan.differs() || schema_missing {
            println!(
                "Differs from the topology: {}.",
                describe_counts(&counts, Tense::Planned)
            );
            ExitCode::from(EXIT_DIFFERS)
        } else {
            println!("{}", in_sync_line(&counts));
            ExitCode::SUCCESS
        });
    }

    let refusals: Vec<String> = plan
        .refusals()
        .map(|(topic, action)| match action {
            Action::ShrinkRefused { current, wanted } => format!(
                "topic `{}` has {current} partitions and the topology wants {wanted}, \
                 but Kafka cannot remove partitions",
                topic.topic
            ),
            other => format!("topic `{}`: {other:?}", topic.topic),
        })
        .collect();
    if !refusals.is_empty() {
        bail!(
            "refusing to apply the plan, nothing was changed: {}",
            refusals.join("; ")
        );
    }

    if !plan.has_changes() && !schema_missing {
        println!("{}", in_sync_line(&counts));
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        println!(
            "Dry run, nothing changed: {}.",
            describe_counts(&counts, Tense::Planned)
        );
        return Ok(ExitCode::SUCCESS);
    }

    if plan.has_changes() {
        apply(&admin, &topology, &plan).await?;
        await_convergence(&admin, &topology).await?;
        println!("Applied: {}.", describe_counts(&counts, Tense::Done));
    }
    if let Some(schema) = schema.filter(|s| s.registered.is_none()) {
        let id = schema.register().await?;
        println!(
            "Registered the event schema under `{}` (id {id}).",
            schema.subject
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The event schema in the schema registry, when one is configured: Avro
/// producers serialise against it under `<events topic>-value`.
struct EventSchema {
    url: url::Url,
    subject: String,
    registered: Option<SchemaId>,
}

impl EventSchema {
    async fn observe(config: &Config, topology: &Topology) -> Result<Option<Self>> {
        let Some(registry) = &config.schema_registry else {
            return Ok(None);
        };
        let subject = value_subject(&topology.events.name);
        let registered = find_event_schema(&registry.url, &subject)
            .await
            .with_context(|| format!("looking up the event schema under `{subject}`"))?;
        Ok(Some(Self {
            url: registry.url.clone(),
            subject,
            registered,
        }))
    }

    fn describe(&self) -> String {
        match self.registered {
            Some(id) => format!("Schema `{}`: registered (id {id}).", self.subject),
            None => format!("Schema `{}`: to register.", self.subject),
        }
    }

    /// Registers the schema; idempotent, and a change the subject's
    /// compatibility rule refuses is an error with the registry's reason.
    async fn register(&self) -> Result<SchemaId> {
        register_event_schema(&self.url, &self.subject)
            .await
            .with_context(|| format!("registering the event schema under `{}`", self.subject))
    }
}

/// Carries out the plan's changes, topic by topic, stopping at the first
/// error: what was applied stays applied, and the next run picks up the
/// rest.
async fn apply(admin: &Admin, topology: &Topology, plan: &Plan) -> Result<()> {
    for topic in &plan.topics {
        let name = &topic.topic;
        for action in &topic.actions {
            match action {
                Action::Create { partitions, .. } => {
                    eprintln!(
                        "creating topic `{name}` with {}…",
                        count(u64::from(*partitions), "partition")
                    );
                    admin.create_topic(topology.topic(topic.role)).await?;
                }
                Action::AddPartitions { current, wanted } => {
                    eprintln!("adding partitions to topic `{name}`: {current} -> {wanted}…");
                    admin.create_partitions(name, *wanted).await?;
                }
                Action::AlterConfigs { set } => {
                    eprintln!(
                        "setting {} of topic `{name}`…",
                        count(set.len() as u64, "config")
                    );
                    let configs: Vec<(String, String)> = set
                        .iter()
                        .map(|change| (change.name.clone(), change.wanted.clone()))
                        .collect();
                    admin.set_topic_configs(name, &configs).await?;
                }
                Action::ReplicationFactorMismatch { .. }
                | Action::ShrinkRefused { .. }
                | Action::InSync => {}
            }
        }
    }
    Ok(())
}

/// Waits until the cluster reports what was applied. Brokers learn about
/// new topics and partitions from the controller a moment after it
/// answered, and a broker may spell a value differently from the
/// topology; without this, a second run right after could plan the same
/// changes again, and a value that never matches would go unnoticed.
async fn await_convergence(admin: &Admin, topology: &Topology) -> Result<()> {
    let deadline = Instant::now() + admin.timeout();
    loop {
        let cluster = admin.describe(&topology.names()).await?;
        let plan = Plan::new(topology, &cluster);
        if !plan.has_changes() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let pending: Vec<String> = plan
                .actions()
                .filter(|(_, action)| action.is_change())
                .map(|(topic, action)| {
                    format!("{} {}", topic.topic, action_detail(action).join(", "))
                })
                .collect();
            bail!(
                "the changes were applied, but after {} the cluster still differs: {}",
                humantime::format_duration(admin.timeout()),
                pending.join("; ")
            );
        }
        tokio::time::sleep(CONVERGENCE_POLL).await;
    }
}

fn in_sync_line(counts: &Counts) -> String {
    if counts.replication_factor_mismatch == 0 {
        format!(
            "In sync: all {} topics match the topology, nothing to change.",
            counts.in_sync
        )
    } else {
        format!(
            "Nothing to change: {}.",
            describe_counts(counts, Tense::Planned)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tense {
    Planned,
    Done,
}

/// The one-line summary of a plan, before or after it was applied.
fn describe_counts(counts: &Counts, tense: Tense) -> String {
    let planned = tense == Tense::Planned;
    let mut parts = Vec::new();
    let mut add = |n: usize, todo: &str, done: &str| {
        if n > 0 {
            parts.push(format!("{n} {}", if planned { todo } else { done }));
        }
    };
    add(counts.create, "to create", "created");
    add(counts.add_partitions, "to grow", "grown");
    add(counts.alter_configs, "to reconfigure", "reconfigured");
    add(counts.in_sync, "in sync", "already in sync");
    add(
        counts.replication_factor_mismatch,
        "with a different replication factor (reported, not changed)",
        "with a different replication factor (reported, not changed)",
    );
    add(
        counts.shrink_refused,
        "refused (fewer partitions declared than exist)",
        "refused (fewer partitions declared than exist)",
    );
    parts.join(", ")
}

/// The plan as a table: one row per action, extra detail lines below it.
fn render_plan(plan: &Plan) -> String {
    const HEADER: [&str; 4] = ["TOPIC", "ROLE", "ACTION", "DETAIL"];
    let mut rows: Vec<[String; 4]> = vec![HEADER.map(String::from)];
    for (topic, action) in plan.actions() {
        let mut detail = action_detail(action).into_iter();
        rows.push([
            topic.topic.clone(),
            topic.role.to_string(),
            action_name(action).to_string(),
            detail.next().unwrap_or_default(),
        ]);
        for line in detail {
            rows.push([String::new(), String::new(), String::new(), line]);
        }
    }
    let width = |column: usize| {
        rows.iter()
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let mut out = String::new();
    for row in &rows {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Create { .. } => "create",
        Action::AddPartitions { .. } => "add partitions",
        Action::AlterConfigs { .. } => "alter configs",
        Action::ReplicationFactorMismatch { .. } => "replication factor differs",
        Action::ShrinkRefused { .. } => "shrink refused",
        Action::InSync => "in sync",
    }
}

/// What an action does, one line per item.
fn action_detail(action: &Action) -> Vec<String> {
    match action {
        Action::Create {
            partitions,
            replication_factor,
            configs,
        } => {
            let replication = match replication_factor {
                Some(rf) => format!("replication factor {rf}"),
                None => "the broker's default replication factor".into(),
            };
            std::iter::once(format!(
                "{}, {replication}",
                count(u64::from(*partitions), "partition")
            ))
            .chain(configs.iter().map(|(k, v)| format!("{k} = {v}")))
            .collect()
        }
        Action::AddPartitions { current, wanted } => {
            vec![format!(
                "{current} -> {}",
                count(u64::from(*wanted), "partition")
            )]
        }
        Action::AlterConfigs { set } => set
            .iter()
            .map(|change| {
                format!(
                    "{}: {} -> {}",
                    change.name,
                    change
                        .current
                        .as_deref()
                        .unwrap_or("(not set on the topic)"),
                    change.wanted
                )
            })
            .collect(),
        Action::ReplicationFactorMismatch { current, wanted } => vec![format!(
            "{current} on the cluster, {wanted} declared; not changed (that takes a \
             partition reassignment)"
        )],
        Action::ShrinkRefused { current, wanted } => vec![format!(
            "{current} partitions on the cluster, {wanted} declared; Kafka cannot remove \
             partitions"
        )],
        Action::InSync => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Cluster, ObservedTopic};

    fn topology() -> Topology {
        Topology::parse(
            r#"
[events]
name = "ev"
partitions = 12
replication_factor = 1
[events.configs]
"retention.ms" = 1000
[tenants]
name = "tn"
partitions = 3
[tenants.configs]
"cleanup.policy" = "compact"
[dlq]
name = "dl"
partitions = 12
"#,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn plan_table_lists_every_action_with_its_detail() {
        let topology = topology();
        let cluster = Cluster {
            brokers: 1,
            topics: [
                (
                    "ev".to_string(),
                    ObservedTopic {
                        partitions: 6,
                        replication_factor: 2,
                        configs: Default::default(),
                    },
                ),
                (
                    "dl".to_string(),
                    ObservedTopic {
                        partitions: 12,
                        replication_factor: 1,
                        configs: Default::default(),
                    },
                ),
            ]
            .into(),
        };
        let table = render_plan(&Plan::new(&topology, &cluster));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("TOPIC"), "{table}");
        assert!(
            lines[0].contains("ACTION") && lines[0].contains("DETAIL"),
            "{table}"
        );
        let row = |needle: &str| {
            lines
                .iter()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle:?} in\n{table}"))
        };
        assert!(row("add partitions").contains("6 -> 12 partitions"));
        assert!(row("replication factor differs").contains("2 on the cluster, 1 declared"));
        assert!(row("alter configs").contains("retention.ms: (not set on the topic) -> 1000"));
        assert!(row("create").starts_with("tn "));
        assert!(row("create").contains("3 partitions, the broker's default replication factor"));
        assert!(
            row("cleanup.policy = compact")
                .trim_start()
                .starts_with("cleanup.policy")
        );
        assert!(row("in sync").starts_with("dl "));
        // Columns line up: every action starts in the same column.
        let action_column = lines[0].find("ACTION").unwrap();
        assert_eq!(
            row("add partitions").find("add partitions"),
            Some(action_column)
        );
        assert_eq!(row("in sync").find("in sync"), Some(action_column));
    }

    #[test]
    fn summary_names_every_kind_of_action() {
        let counts = Counts {
            create: 1,
            add_partitions: 2,
            alter_configs: 1,
            replication_factor_mismatch: 1,
            shrink_refused: 0,
            in_sync: 1,
        };
        assert_eq!(
            describe_counts(&counts, Tense::Planned),
            "1 to create, 2 to grow, 1 to reconfigure, 1 in sync, \
             1 with a different replication factor (reported, not changed)"
        );
        assert_eq!(
            describe_counts(&counts, Tense::Done),
            "1 created, 2 grown, 1 reconfigured, 1 already in sync, \
             1 with a different replication factor (reported, not changed)"
        );
    }

    #[test]
    fn in_sync_line_mentions_reported_differences() {
        let clean = Counts {
            in_sync: 3,
            ..Counts::default()
        };
        assert_eq!(
            in_sync_line(&clean),
            "In sync: all 3 topics match the topology, nothing to change."
        );
        let reported = Counts {
            in_sync: 2,
            replication_factor_mismatch: 1,
            ..Counts::default()
        };
        assert!(in_sync_line(&reported).starts_with("Nothing to change: 2 in sync, 1 with"));
    }
}
