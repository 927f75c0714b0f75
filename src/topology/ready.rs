//! The start-up check of `hookline run`: the topics it cannot work without.
//!
//! This is deliberately narrower than the plan. A replica can deliver with
//! a config that drifted, but not without its topics, and not with a
//! tenants topic that deletes records by age: tenants would silently vanish
//! from the table.

use std::fmt;

use super::cluster::Cluster;
use super::model::{Role, Topology, is_compact_only};

/// Something that keeps `hookline run` from starting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A declared topic does not exist.
    Missing { role: Role, topic: String },
    /// The tenants topic is not compacted, or also deletes by age.
    NotCompacted {
        topic: String,
        cleanup_policy: Option<String>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing { role, topic } => {
                write!(f, "the {role} topic `{topic}` does not exist")
            }
            Problem::NotCompacted {
                topic,
                cleanup_policy: Some(policy),
            } => write!(
                f,
                "the tenants topic `{topic}` is not compacted (cleanup.policy={policy}, \
                 it must be compact)"
            ),
            Problem::NotCompacted {
                topic,
                cleanup_policy: None,
            } => write!(
                f,
                "the tenants topic `{topic}` is not compacted (no cleanup.policy reported, \
                 it must be compact)"
            ),
        }
    }
}

/// Checks that every declared topic exists and that the tenants topic is
/// compacted (by the policy in effect, wherever it is set). Returns every
/// problem found, not only the first.
pub fn verify_ready(topology: &Topology, cluster: &Cluster) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    for (role, spec) in topology.topics() {
        let Some(observed) = cluster.topics.get(&spec.name) else {
            problems.push(Problem::Missing {
                role,
                topic: spec.name.clone(),
            });
            continue;
        };
        if role == Role::Tenants {
            let policy = observed.effective_config("cleanup.policy");
            if !policy.is_some_and(is_compact_only) {
                problems.push(Problem::NotCompacted {
                    topic: spec.name.clone(),
                    cleanup_policy: policy.map(str::to_string),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::cluster::{ObservedConfig, ObservedTopic};

    fn topic(cleanup_policy: &str, set_on_topic: bool) -> ObservedTopic {
        ObservedTopic {
            partitions: 1,
            replication_factor: 1,
            configs: [(
                "cleanup.policy".to_string(),
                ObservedConfig {
                    value: cleanup_policy.into(),
                    set_on_topic,
                },
            )]
            .into(),
        }
    }

    fn cluster(tenants_policy: &str) -> Cluster {
        let topology = Topology::embedded();
        Cluster {
            brokers: 1,
            topics: [
                (topology.events.name.clone(), topic("delete", true)),
                (topology.tenants.name.clone(), topic(tenants_policy, true)),
                (topology.dlq.name.clone(), topic("delete", false)),
            ]
            .into(),
        }
    }

    #[test]
    fn complete_cluster_is_ready() {
        assert_eq!(
            verify_ready(&Topology::embedded(), &cluster("compact")),
            Ok(())
        );
    }

    #[test]
    fn compaction_inherited_from_the_broker_counts() {
        let topology = Topology::embedded();
        let mut cluster = cluster("compact");
        cluster
            .topics
            .insert(topology.tenants.name.clone(), topic("compact", false));
        assert_eq!(verify_ready(&topology, &cluster), Ok(()));
    }

    #[test]
    fn every_missing_topic_is_named() {
        let topology = Topology::embedded();
        let mut cluster = cluster("compact");
        cluster.topics.remove("events");
        cluster.topics.remove("webhook.dlq");
        let problems = verify_ready(&topology, &cluster).unwrap_err();
        assert_eq!(
            problems,
            [
                Problem::Missing {
                    role: Role::Events,
                    topic: "events".into()
                },
                Problem::Missing {
                    role: Role::Dlq,
                    topic: "webhook.dlq".into()
                },
            ]
        );
        assert_eq!(
            problems[1].to_string(),
            "the dlq topic `webhook.dlq` does not exist"
        );
    }

    #[test]
    fn tenants_deleting_by_age_is_a_problem() {
        for policy in ["delete", "compact,delete"] {
            let problems = verify_ready(&Topology::embedded(), &cluster(policy)).unwrap_err();
            assert_eq!(
                problems,
                [Problem::NotCompacted {
                    topic: "tenants".into(),
                    cleanup_policy: Some(policy.into())
                }]
            );
            assert!(problems[0].to_string().contains("is not compacted"));
        }
    }

    #[test]
    fn tenants_without_a_reported_policy_is_a_problem() {
        let topology = Topology::embedded();
        let mut cluster = cluster("compact");
        cluster.topics.get_mut("tenants").unwrap().configs.clear();
        let problems = verify_ready(&topology, &cluster).unwrap_err();
        assert!(matches!(
            &problems[..],
            [Problem::NotCompacted {
                cleanup_policy: None,
                ..
            }]
        ));
    }
}
