//! Telemetry: log set-up, the metrics every other module records through
//! [`metrics`], the HTTP listener for `/metrics`, `/healthz` and `/readyz`,
//! the W3C trace context of deliveries ([`trace_context`]) and the optional
//! export of their spans ([`traces`]).

mod logging;
pub mod metrics;
pub mod server;
pub mod trace_context;
pub mod traces;

pub use logging::{init_logging, init_logging_with_default};
