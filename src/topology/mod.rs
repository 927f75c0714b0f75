//! hookline's topics: the declarative topology file ([`Topology`]), the
//! observed state of a cluster ([`Cluster`]), the pure diff between the two
//! ([`Plan`]), and the start-up check of `hookline run` ([`verify_ready`]).
//!
//! Nothing here talks to Kafka: `kafka::admin` observes the cluster and
//! carries out the plan's actions, the commands wire the two together.

mod cluster;
mod model;
mod plan;
mod ready;

pub use cluster::{Cluster, ObservedConfig, ObservedTopic};
pub use model::{EMBEDDED, EMBEDDED_ORIGIN, Role, TopicSpec, Topology, TopologyError};
pub use plan::{Action, ConfigChange, Counts, Plan, TopicPlan};
pub use ready::{Problem, verify_ready};
