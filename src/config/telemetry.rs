//! `[telemetry]`: the metrics and health listener, and the log format.

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Address of the HTTP listener for `/metrics`, `/healthz` and
    /// `/readyz` (default `127.0.0.1:9464`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Log format on stderr (default [`LogFormat::Text`]).
    pub log_format: LogFormat,
    /// Adds a `tenant` label to the delivery counters (default `false`).
    /// Off by default because every tenant multiplies the series.
    pub tenant_labels: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[telemetry]` as written. Its types are its only rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    listen: SocketAddr,
    log_format: LogFormat,
    tenant_labels: bool,
}

impl From<Raw> for TelemetryConfig {
    fn from(raw: Raw) -> Self {
        Self {
            listen: raw.listen,
            log_format: raw.log_format,
            tenant_labels: raw.tenant_labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{err, load};

    #[test]
    fn tenant_labels_are_opt_in() {
        let config = load("[telemetry]\ntenant_labels = true\n").unwrap();
        assert!(config.telemetry.tenant_labels);
        let e = err("[telemetry]\ntenant_labels = \"yes\"\n");
        assert!(e.contains("telemetry.tenant_labels"), "{e}");
    }

    #[test]
    fn bad_log_format_is_named() {
        let e = err("[telemetry]\nlog_format = \"xml\"\n");
        assert!(e.contains("telemetry.log_format"), "{e}");
    }
}
