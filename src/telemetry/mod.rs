//! Telemetry: log set-up, the metrics every other module records through
//! [`metrics`], and the HTTP listener for `/metrics`, `/healthz` and
//! `/readyz`.

mod logging;
pub mod metrics;
pub mod server;

pub use logging::{init_logging, init_logging_with_default};
