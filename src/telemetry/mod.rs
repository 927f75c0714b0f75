//! Telemetry: logs now; metrics and the health endpoints join them here.

mod logging;

pub use logging::{init_logging, init_logging_with_default};
