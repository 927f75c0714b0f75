//! `[schema_registry]`: the optional Confluent-compatible registry that Avro
//! event values are decoded with.

use serde::Deserialize;
use url::Url;

use super::error::ConfigError;
use super::layers::Provenance;

#[derive(Debug, Clone)]
pub struct SchemaRegistryConfig {
    /// Base of the Confluent-compatible API, http or https (Apicurio:
    /// `.../apis/ccompat/v7`).
    pub url: Url,
}

/// `[schema_registry]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    url: Url,
}

impl Raw {
    pub(super) fn validate(self, at: &Provenance) -> Result<SchemaRegistryConfig, ConfigError> {
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err(at.invalid(
                "schema_registry.url",
                format!("scheme `{}` is not http or https", self.url.scheme()),
            ));
        }
        Ok(SchemaRegistryConfig { url: self.url })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{err, load};

    #[test]
    fn rule_schema_registry_url_is_http() {
        let e = err("[schema_registry]\nurl = \"ftp://registry\"\n");
        assert!(e.contains("schema_registry.url"), "{e}");
        let ok =
            load("[schema_registry]\nurl = \"http://127.0.0.1:8081/apis/ccompat/v7\"\n").unwrap();
        assert!(ok.schema_registry.is_some());
    }

    #[test]
    fn schema_registry_url_that_does_not_parse_is_named() {
        let e = err("[schema_registry]\nurl = \"registry.example\"\n");
        assert!(e.contains("schema_registry.url: cannot be parsed"), "{e}");
    }

    #[test]
    fn schema_registry_without_url_is_a_missing_key() {
        let e = err("[schema_registry]\n");
        assert!(e.ends_with("schema_registry.url: missing key"), "{e}");
    }
}
