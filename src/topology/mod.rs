//! hookline's topics: the declarative topology file ([`Topology`]).

mod model;

pub use model::{EMBEDDED, EMBEDDED_ORIGIN, Role, TopicSpec, Topology, TopologyError};
