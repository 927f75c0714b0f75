//! `[telemetry]`: the metrics and health listener, the log format, and the
//! optional export of delivery spans over OTLP/HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::error::{ConfigError, Origin};
use super::layers::Provenance;

/// `service.name` of exported spans when neither `telemetry.service_name`
/// nor `OTEL_SERVICE_NAME` names one.
const DEFAULT_SERVICE_NAME: &str = "hookline";

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
    /// Where delivery spans are exported, when they are (default: not).
    pub traces: Option<TraceExportConfig>,
}

/// The export of delivery spans over OTLP/HTTP (binary protobuf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExportConfig {
    /// The full URL spans are posted to, `http` or `https`, path included
    /// (a collector's is `http://HOST:4318/v1/traces`).
    pub endpoint: Url,
    /// How long one export request may take (default 10 s).
    pub timeout: Duration,
    /// The `service.name` resource attribute (default `hookline`).
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[telemetry]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    listen: SocketAddr,
    log_format: LogFormat,
    tenant_labels: bool,
    otlp_endpoint: Option<String>,
    #[serde(with = "humantime_serde")]
    otlp_timeout: Duration,
    service_name: Option<String>,
}

/// The OpenTelemetry SDK's standard variables that the export honours, read
/// from the same environment as the `HOOKLINE__` layer.
#[derive(Debug, Default)]
pub(super) struct OtelEnv {
    traces_endpoint: Option<String>,
    endpoint: Option<String>,
    service_name: Option<String>,
    sdk_disabled: Option<String>,
}

const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";
const SDK_DISABLED_VAR: &str = "OTEL_SDK_DISABLED";

impl OtelEnv {
    pub(super) fn from_vars(vars: &[(String, String)]) -> Self {
        let get = |name: &str| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Self {
            traces_endpoint: get(TRACES_ENDPOINT_VAR),
            endpoint: get(ENDPOINT_VAR),
            service_name: get(SERVICE_NAME_VAR),
            sdk_disabled: get(SDK_DISABLED_VAR),
        }
    }
}

impl Raw {
    pub(super) fn validate(
        self,
        otel: OtelEnv,
        at: &Provenance,
    ) -> Result<TelemetryConfig, ConfigError> {
        let traces = self.traces(otel, at)?;
        Ok(TelemetryConfig {
            listen: self.listen,
            log_format: self.log_format,
            tenant_labels: self.tenant_labels,
            traces,
        })
    }

    /// The span export: `telemetry.otlp_endpoint`, else the standard
    /// variables (the per-signal endpoint as written, the base endpoint
    /// with `/v1/traces` appended); off when none is set or
    /// `OTEL_SDK_DISABLED=true`.
    fn traces(
        &self,
        otel: OtelEnv,
        at: &Provenance,
    ) -> Result<Option<TraceExportConfig>, ConfigError> {
        const KEY: &str = "telemetry.otlp_endpoint";
        if self.otlp_timeout.is_zero() {
            return Err(at.invalid("telemetry.otlp_timeout", "must be more than 0"));
        }
        if self
            .service_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            return Err(at.invalid("telemetry.service_name", "must not be empty"));
        }
        if otel.sdk_disabled.as_deref().map(str::to_ascii_lowercase) == Some("true".into()) {
            return Ok(None);
        }
        let env_invalid = |var: &str, problem: String| ConfigError::Invalid {
            origin: Origin::Env(var.to_string()),
            key: KEY.to_string(),
            problem,
        };
        let endpoint = if let Some(written) = &self.otlp_endpoint {
            endpoint_url(written).map_err(|problem| at.invalid(KEY, problem))?
        } else if let Some(var) = &otel.traces_endpoint {
            endpoint_url(var).map_err(|problem| env_invalid(TRACES_ENDPOINT_VAR, problem))?
        } else if let Some(var) = &otel.endpoint {
            let base = format!("{}/v1/traces", var.trim_end_matches('/'));
            endpoint_url(&base).map_err(|problem| env_invalid(ENDPOINT_VAR, problem))?
        } else {
            return Ok(None);
        };
        let service_name = match (&self.service_name, otel.service_name) {
            (Some(name), _) => name.clone(),
            (None, Some(name)) => name,
            (None, None) => DEFAULT_SERVICE_NAME.to_string(),
        };
        Ok(Some(TraceExportConfig {
            endpoint,
            timeout: self.otlp_timeout,
            service_name,
        }))
    }
}

/// An OTLP/HTTP endpoint: an absolute `http` or `https` URL with a host.
fn endpoint_url(value: &str) -> Result<Url, String> {
    // The value is not repeated: it may hold credentials.
    let url = Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host().is_none() {
        return Err("the URL has no host".to_string());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{err, err_env, load, load_env};

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

    #[test]
    fn span_export_is_off_by_default() {
        assert_eq!(load("").unwrap().telemetry.traces, None);
    }

    #[test]
    fn span_export_follows_the_configured_endpoint() {
        let config = load(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\n\
             otlp_timeout = \"3s\"\nservice_name = \"hooks-eu\"\n",
        )
        .unwrap();
        let traces = config.telemetry.traces.unwrap();
        assert_eq!(traces.endpoint.as_str(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces.timeout, Duration::from_secs(3));
        assert_eq!(traces.service_name, "hooks-eu");
    }

    #[test]
    fn standard_variables_turn_the_export_on_below_the_configuration() {
        let traces =
            |toml: &str, env: &[(&str, &str)]| load_env(toml, env).unwrap().telemetry.traces;
        let base = traces(
            "",
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")],
        )
        .unwrap();
        assert_eq!(base.endpoint.as_str(), "http://collector:4318/v1/traces");
        assert_eq!(base.service_name, "hookline");
        assert_eq!(base.timeout, Duration::from_secs(10));
        let signal = traces(
            "",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://traces.example/otlp",
                ),
                ("OTEL_SERVICE_NAME", "hooks"),
            ],
        )
        .unwrap();
        assert_eq!(signal.endpoint.as_str(), "https://traces.example/otlp");
        assert_eq!(signal.service_name, "hooks");
        let configured = traces(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\nservice_name = \"mine\"\n",
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces.example/otlp"),
                ("OTEL_SERVICE_NAME", "hooks"),
            ],
        )
        .unwrap();
        assert_eq!(
            configured.endpoint.as_str(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(configured.service_name, "mine");
        let disabled = traces(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\n",
            &[("OTEL_SDK_DISABLED", "TRUE")],
        );
        assert_eq!(disabled, None);
    }

    #[test]
    fn bad_export_settings_are_named() {
        let e = err("[telemetry]\notlp_endpoint = \"collector:4318\"\n");
        assert!(
            e.contains("telemetry.otlp_endpoint: scheme `collector`"),
            "{e}"
        );
        let e = err("[telemetry]\notlp_endpoint = \"/v1/traces\"\n");
        assert!(e.contains("telemetry.otlp_endpoint: not a URL"), "{e}");
        let e = err("[telemetry]\notlp_endpoint = \"http://user:secret@[::1\"\n");
        assert!(!e.contains("secret"), "{e}");
        let e =
            err("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\notlp_timeout = \"0s\"\n");
        assert!(
            e.contains("telemetry.otlp_timeout: must be more than 0"),
            "{e}"
        );
        // Checked whether or not the export is on.
        let e = err("[telemetry]\notlp_timeout = \"0s\"\n");
        assert!(
            e.contains("telemetry.otlp_timeout: must be more than 0"),
            "{e}"
        );
        let e = err("[telemetry]\nservice_name = \"\"\n");
        assert!(
            e.contains("telemetry.service_name: must not be empty"),
            "{e}"
        );
        let e = err("[telemetry]\notlp_timeout = \"soon\"\n");
        assert!(
            e.contains("telemetry.otlp_timeout: cannot be parsed"),
            "{e}"
        );
        let e =
            err("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nservice_name = \" \"\n");
        assert!(
            e.contains("telemetry.service_name: must not be empty"),
            "{e}"
        );
        let e = err_env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "ftp://collector/v1/traces",
        )]);
        assert_eq!(
            e,
            "environment variable OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: telemetry.otlp_endpoint: \
             scheme `ftp` is not http or https"
        );
        let e = err_env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector")]);
        assert!(
            e.starts_with(
                "environment variable OTEL_EXPORTER_OTLP_ENDPOINT: telemetry.otlp_endpoint:"
            ),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
