//! The plan: what it takes to bring a cluster in line with the topology.
//! A pure function of the declared and the observed state, no I/O, so every
//! case is unit-tested without a broker.
//!
//! The rules follow DESIGN §3: create missing topics; grow partitions, never
//! shrink them; report a replication-factor difference without touching it;
//! compare only the configs the topology declares against the configs set
//! on the topic itself, and set the ones that differ, leaving every other
//! config alone; never delete a topic (there is no action for it).

use std::collections::BTreeMap;

use super::cluster::{Cluster, ObservedTopic};
use super::model::{Role, TopicSpec, Topology};

/// The plan for every declared topic, in role order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub topics: Vec<TopicPlan>,
}

/// What to do with one topic. `actions` is never empty: a topic that needs
/// nothing has exactly [`Action::InSync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    pub role: Role,
    pub topic: String,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The topic does not exist: create it as declared.
    Create {
        partitions: u32,
        /// `None`: the broker's default.
        replication_factor: Option<u16>,
        configs: BTreeMap<String, String>,
    },
    /// The topic has fewer partitions than declared: add the difference.
    AddPartitions { current: u32, wanted: u32 },
    /// Set these configs on the topic; no other config is touched.
    AlterConfigs { set: Vec<ConfigChange> },
    /// Reported only: changing it takes a partition reassignment, which is
    /// an operator's decision.
    ReplicationFactorMismatch { current: u16, wanted: u16 },
    /// The topic has more partitions than declared. Kafka cannot remove
    /// partitions, so the plan cannot be applied.
    ShrinkRefused { current: u32, wanted: u32 },
    /// The topic matches its declaration.
    InSync,
}

/// One config to set, with the value set on the topic now (`None` when the
/// topic inherits it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub name: String,
    pub current: Option<String>,
    pub wanted: String,
}

impl Action {
    /// Whether applying the plan performs this action on the cluster.
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Action::Create { .. } | Action::AddPartitions { .. } | Action::AlterConfigs { .. }
        )
    }

    /// Whether this action makes the plan impossible to apply.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Action::ShrinkRefused { .. })
    }
}

/// How many actions of each kind a plan holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub create: usize,
    pub add_partitions: usize,
    pub alter_configs: usize,
    pub replication_factor_mismatch: usize,
    pub shrink_refused: usize,
    pub in_sync: usize,
}

impl Plan {
    /// Compares every declared topic with what the cluster holds.
    pub fn new(topology: &Topology, cluster: &Cluster) -> Plan {
        let topics = topology
            .topics()
            .map(|(role, spec)| TopicPlan {
                role,
                topic: spec.name.clone(),
                actions: match cluster.topics.get(&spec.name) {
                    None => vec![Action::Create {
                        partitions: spec.partitions,
                        replication_factor: spec.replication_factor,
                        configs: spec.configs.clone(),
                    }],
                    Some(observed) => plan_existing(spec, observed),
                },
            })
            .collect();
        Plan { topics }
    }

    /// Every action with the topic it belongs to.
    pub fn actions(&self) -> impl Iterator<Item = (&TopicPlan, &Action)> {
        self.topics
            .iter()
            .flat_map(|topic| topic.actions.iter().map(move |action| (topic, action)))
    }

    /// Whether applying would change anything on the cluster.
    pub fn has_changes(&self) -> bool {
        self.actions().any(|(_, action)| action.is_change())
    }

    /// The actions that make the plan impossible to apply.
    pub fn refusals(&self) -> impl Iterator<Item = (&TopicPlan, &Action)> {
        self.actions().filter(|(_, action)| action.is_refusal())
    }

    /// Whether the cluster differs from the topology in any way, including
    /// differences that are only reported.
    pub fn differs(&self) -> bool {
        self.actions().any(|(_, action)| *action != Action::InSync)
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for (_, action) in self.actions() {
            match action {
                Action::Create { .. } => counts.create += 1,
                Action::AddPartitions { .. } => counts.add_partitions += 1,
                Action::AlterConfigs { .. } => counts.alter_configs += 1,
                Action::ReplicationFactorMismatch { .. } => counts.replication_factor_mismatch += 1,
                Action::ShrinkRefused { .. } => counts.shrink_refused += 1,
                Action::InSync => counts.in_sync += 1,
            }
        }
        counts
    }
}

fn plan_existing(spec: &TopicSpec, observed: &ObservedTopic) -> Vec<Action> {
    let mut actions = Vec::new();
    if observed.partitions < spec.partitions {
        actions.push(Action::AddPartitions {
            current: observed.partitions,
            wanted: spec.partitions,
        });
    } else if observed.partitions > spec.partitions {
        actions.push(Action::ShrinkRefused {
            current: observed.partitions,
            wanted: spec.partitions,
        });
    }
    match spec.replication_factor {
        Some(wanted) if wanted != observed.replication_factor => {
            actions.push(Action::ReplicationFactorMismatch {
                current: observed.replication_factor,
                wanted,
            });
        }
        _ => {}
    }
    let set: Vec<ConfigChange> = spec
        .configs
        .iter()
        .filter_map(|(name, wanted)| {
            let current = observed.topic_config(name);
            match current {
                Some(current) if same_value(current, wanted) => None,
                _ => Some(ConfigChange {
                    name: name.clone(),
                    current: current.map(str::to_string),
                    wanted: wanted.clone(),
                }),
            }
        })
        .collect();
    if !set.is_empty() {
        actions.push(Action::AlterConfigs { set });
    }
    if actions.is_empty() {
        actions.push(Action::InSync);
    }
    actions
}

/// Whether the broker's value and the declared one mean the same. The
/// broker reports values in its own spelling: `0.1` may come back as `0.10`,
/// `true` as `true`, a list in its own order. Without this, apply would set
/// such a config on every run and never report "in sync".
fn same_value(observed: &str, declared: &str) -> bool {
    let (observed, declared) = (observed.trim(), declared.trim());
    if observed == declared {
        return true;
    }
    if let (Ok(a), Ok(b)) = (observed.parse::<i128>(), declared.parse::<i128>()) {
        return a == b;
    }
    if let (Ok(a), Ok(b)) = (observed.parse::<f64>(), declared.parse::<f64>()) {
        return a == b;
    }
    if observed.contains(',') || declared.contains(',') {
        let items = |list: &str| {
            let mut items: Vec<String> = list
                .split(',')
                .map(|item| item.trim().to_ascii_lowercase())
                .filter(|item| !item.is_empty())
                .collect();
            items.sort();
            items.dedup();
            items
        };
        return items(observed) == items(declared);
    }
    observed.eq_ignore_ascii_case(declared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::cluster::ObservedConfig;

    fn topology() -> Topology {
        Topology::parse(
            r#"
[events]
name = "ev"
partitions = 12
replication_factor = 1
[events.configs]
"retention.ms" = 604800000
"cleanup.policy" = "delete"

[tenants]
name = "tn"
partitions = 3
[tenants.configs]
"cleanup.policy" = "compact"
"min.cleanable.dirty.ratio" = 0.1

[dlq]
name = "dl"
partitions = 12
"#,
            "test",
        )
        .unwrap()
    }

    /// A topic exactly as `topology()` declares it, plus some configs the
    /// broker reports that the topology does not manage.
    fn matching(spec: &TopicSpec) -> ObservedTopic {
        let mut configs: BTreeMap<String, ObservedConfig> = spec
            .configs
            .iter()
            .map(|(k, v)| {
                let config = ObservedConfig {
                    value: v.clone(),
                    set_on_topic: true,
                };
                (k.clone(), config)
            })
            .collect();
        configs.insert(
            "segment.bytes".into(),
            ObservedConfig {
                value: "1073741824".into(),
                set_on_topic: false,
            },
        );
        configs.insert(
            "max.message.bytes".into(),
            ObservedConfig {
                value: "5000000".into(),
                set_on_topic: true,
            },
        );
        ObservedTopic {
            partitions: spec.partitions,
            replication_factor: spec.replication_factor.unwrap_or(1),
            configs,
        }
    }

    fn in_sync_cluster(topology: &Topology) -> Cluster {
        Cluster {
            brokers: 1,
            topics: topology
                .topics()
                .map(|(_, spec)| (spec.name.clone(), matching(spec)))
                .collect(),
        }
    }

    fn actions_of(plan: &Plan, role: Role) -> &[Action] {
        &plan.topics.iter().find(|t| t.role == role).unwrap().actions
    }

    #[test]
    fn empty_cluster_creates_every_topic_as_declared() {
        let topology = topology();
        let plan = Plan::new(&topology, &Cluster::default());
        assert_eq!(plan.topics.len(), 3);
        assert_eq!(
            plan.topics.iter().map(|t| t.role).collect::<Vec<_>>(),
            Role::ALL
        );
        assert_eq!(
            actions_of(&plan, Role::Events),
            [Action::Create {
                partitions: 12,
                replication_factor: Some(1),
                configs: topology.events.configs.clone(),
            }]
        );
        assert_eq!(
            actions_of(&plan, Role::Tenants),
            [Action::Create {
                partitions: 3,
                replication_factor: None,
                configs: topology.tenants.configs.clone(),
            }]
        );
        assert!(plan.has_changes());
        assert!(plan.differs());
        assert_eq!(plan.refusals().count(), 0);
        assert_eq!(plan.counts().create, 3);
    }

    #[test]
    fn matching_cluster_is_in_sync_and_unmanaged_configs_are_ignored() {
        let topology = topology();
        let plan = Plan::new(&topology, &in_sync_cluster(&topology));
        for topic in &plan.topics {
            assert_eq!(topic.actions, [Action::InSync], "{}", topic.topic);
        }
        assert!(!plan.has_changes());
        assert!(!plan.differs());
        assert_eq!(plan.counts().in_sync, 3);
    }

    #[test]
    fn only_missing_topics_are_created() {
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        cluster.topics.remove("tn");
        let plan = Plan::new(&topology, &cluster);
        assert!(matches!(
            actions_of(&plan, Role::Tenants),
            [Action::Create { .. }]
        ));
        assert_eq!(actions_of(&plan, Role::Events), [Action::InSync]);
        assert_eq!(actions_of(&plan, Role::Dlq), [Action::InSync]);
    }

    #[test]
    fn fewer_partitions_are_grown() {
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        cluster.topics.get_mut("ev").unwrap().partitions = 6;
        let plan = Plan::new(&topology, &cluster);
        assert_eq!(
            actions_of(&plan, Role::Events),
            [Action::AddPartitions {
                current: 6,
                wanted: 12
            }]
        );
        assert!(plan.has_changes());
        assert_eq!(plan.refusals().count(), 0);
    }

    #[test]
    fn more_partitions_are_refused_never_shrunk() {
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        cluster.topics.get_mut("dl").unwrap().partitions = 24;
        let plan = Plan::new(&topology, &cluster);
        assert_eq!(
            actions_of(&plan, Role::Dlq),
            [Action::ShrinkRefused {
                current: 24,
                wanted: 12
            }]
        );
        assert_eq!(plan.refusals().count(), 1);
        assert!(!plan.has_changes(), "a refusal is not a change");
        assert!(plan.differs());
    }

    #[test]
    fn replication_factor_difference_is_reported_not_changed() {
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        cluster.topics.get_mut("ev").unwrap().replication_factor = 3;
        let plan = Plan::new(&topology, &cluster);
        assert_eq!(
            actions_of(&plan, Role::Events),
            [Action::ReplicationFactorMismatch {
                current: 3,
                wanted: 1
            }]
        );
        assert!(!plan.has_changes());
        assert!(plan.differs());
        assert_eq!(plan.counts().replication_factor_mismatch, 1);
    }

    #[test]
    fn undeclared_replication_factor_is_not_compared() {
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        cluster.topics.get_mut("tn").unwrap().replication_factor = 3;
        let plan = Plan::new(&topology, &cluster);
        assert_eq!(actions_of(&plan, Role::Tenants), [Action::InSync]);
    }

    #[test]
    fn drifted_config_is_set_with_its_current_value() {
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        cluster
            .topics
            .get_mut("ev")
            .unwrap()
            .configs
            .get_mut("retention.ms")
            .unwrap()
            .value = "1000".into();
        let plan = Plan::new(&topology, &cluster);
        assert_eq!(
            actions_of(&plan, Role::Events),
            [Action::AlterConfigs {
                set: vec![ConfigChange {
                    name: "retention.ms".into(),
                    current: Some("1000".into()),
                    wanted: "604800000".into(),
                }]
            }]
        );
        assert_eq!(plan.counts().alter_configs, 1);
    }

    #[test]
    fn declared_config_only_inherited_is_set_on_the_topic() {
        // A value inherited from the broker may change under the topic's
        // feet when the broker is reconfigured; the declaration pins it.
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        let policy = cluster
            .topics
            .get_mut("tn")
            .unwrap()
            .configs
            .get_mut("cleanup.policy")
            .unwrap();
        policy.set_on_topic = false;
        let plan = Plan::new(&topology, &cluster);
        assert_eq!(
            actions_of(&plan, Role::Tenants),
            [Action::AlterConfigs {
                set: vec![ConfigChange {
                    name: "cleanup.policy".into(),
                    current: None,
                    wanted: "compact".into(),
                }]
            }]
        );
    }

    #[test]
    fn missing_config_is_set() {
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        cluster
            .topics
            .get_mut("tn")
            .unwrap()
            .configs
            .remove("min.cleanable.dirty.ratio");
        let plan = Plan::new(&topology, &cluster);
        let [Action::AlterConfigs { set }] = actions_of(&plan, Role::Tenants) else {
            panic!("{plan:?}");
        };
        assert_eq!(set.len(), 1);
        assert_eq!(set[0].name, "min.cleanable.dirty.ratio");
        assert_eq!(set[0].current, None);
    }

    #[test]
    fn unmanaged_configs_are_never_in_a_change() {
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        let events = cluster.topics.get_mut("ev").unwrap();
        events.configs.get_mut("retention.ms").unwrap().value = "1".into();
        let plan = Plan::new(&topology, &cluster);
        for (_, action) in plan.actions() {
            if let Action::AlterConfigs { set } = action {
                assert!(
                    set.iter()
                        .all(|c| topology.events.configs.contains_key(&c.name))
                );
            }
        }
    }

    #[test]
    fn several_differences_on_one_topic_are_all_listed() {
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        let events = cluster.topics.get_mut("ev").unwrap();
        events.partitions = 4;
        events.replication_factor = 2;
        events.configs.get_mut("cleanup.policy").unwrap().value = "compact".into();
        let plan = Plan::new(&topology, &cluster);
        let actions = actions_of(&plan, Role::Events);
        assert_eq!(actions.len(), 3, "{actions:?}");
        assert!(matches!(
            actions[0],
            Action::AddPartitions {
                current: 4,
                wanted: 12
            }
        ));
        assert!(matches!(
            actions[1],
            Action::ReplicationFactorMismatch {
                current: 2,
                wanted: 1
            }
        ));
        assert!(matches!(&actions[2], Action::AlterConfigs { set } if set.len() == 1));
        let counts = plan.counts();
        assert_eq!(
            counts,
            Counts {
                add_partitions: 1,
                replication_factor_mismatch: 1,
                alter_configs: 1,
                in_sync: 2,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn values_are_compared_as_the_broker_spells_them() {
        assert!(same_value("604800000", "604800000"));
        assert!(same_value(" 5 ", "5"));
        assert!(same_value("0.10", "0.1"));
        assert!(same_value("1.0", "1"));
        assert!(same_value("TRUE", "true"));
        assert!(same_value("compact,delete", "delete, compact"));
        assert!(!same_value("compact,delete", "compact"));
        assert!(!same_value("604800000", "604800001"));
        assert!(!same_value("0.5", "0.1"));
        assert!(!same_value("delete", "compact"));
        // Integers beyond f64 precision still compare exactly.
        assert!(!same_value("9223372036854775807", "9223372036854775806"));
    }

    #[test]
    fn equivalent_spelling_does_not_count_as_drift() {
        let topology = topology();
        let mut cluster = in_sync_cluster(&topology);
        cluster
            .topics
            .get_mut("tn")
            .unwrap()
            .configs
            .get_mut("min.cleanable.dirty.ratio")
            .unwrap()
            .value = "0.10".into();
        let plan = Plan::new(&topology, &cluster);
        assert!(!plan.differs(), "{plan:?}");
    }
}
