//! hookline's topics: the declarative topology file ([`Topology`]), the
//! observed state of a cluster ([`Cluster`]) and the pure diff between the
//! two ([`Plan`]).
//!
//! Nothing here talks to Kafka.

mod cluster;
mod model;
mod plan;

pub use cluster::{Cluster, ObservedConfig, ObservedTopic};
pub use model::{EMBEDDED, EMBEDDED_ORIGIN, Role, TopicSpec, Topology, TopologyError};
pub use plan::{Action, ConfigChange, Counts, Plan, TopicPlan};
