//! What a cluster holds for the declared topics, as plain data. `kafka::admin`
//! fills it in; the plan and the readiness check read it. Keeping it free of
//! Kafka client types is what lets both be tested without a broker.

use std::collections::BTreeMap;

/// The observed state of the topics that were asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// Number of brokers in the cluster, to explain a replication factor the
    /// cluster cannot satisfy.
    pub brokers: usize,
    /// The topics that exist, by name; a topic that was asked about and is
    /// missing here does not exist.
    pub topics: BTreeMap<String, ObservedTopic>,
}

/// One existing topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedTopic {
    pub partitions: u32,
    /// The smallest number of replicas of any partition: the guarantee the
    /// topic actually gives.
    pub replication_factor: u16,
    /// Every config the broker reported, by name.
    pub configs: BTreeMap<String, ObservedConfig>,
}

/// One config value and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedConfig {
    pub value: String,
    /// Set on the topic itself (a dynamic topic config), as opposed to
    /// inherited from the broker's configuration or Kafka's defaults.
    pub set_on_topic: bool,
}

impl ObservedTopic {
    /// The value of a config set on the topic itself; inherited values do not
    /// count.
    pub fn topic_config(&self, name: &str) -> Option<&str> {
        self.configs
            .get(name)
            .filter(|c| c.set_on_topic)
            .map(|c| c.value.as_str())
    }

    /// The value in effect, wherever it comes from.
    pub fn effective_config(&self, name: &str) -> Option<&str> {
        self.configs.get(name).map(|c| c.value.as_str())
    }
}
