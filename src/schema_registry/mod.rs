//! A client of a Confluent-compatible schema registry (Confluent Schema
//! Registry, Apicurio's `/apis/ccompat/v7`): fetching Avro writer schemas by
//! id for decoding (DESIGN §5), and registering hookline's own event schema.
//!
//! HTTP goes through `schema_registry_converter`; this module adds what the
//! decoder needs on top: a classification of every failure into "the
//! registry gave a verdict on this schema" (permanent: the event is
//! invalid) and "the registry could not be asked" (the event must wait), and
//! parsing with `apache-avro`, references included.

mod error;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use apache_avro::Schema;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_referenced_schema, get_schema_by_id, perform_sr_call, post_schema,
};
use schema_registry_converter::schema_registry_common::{
    RegisteredReference, RegisteredSchema, SchemaType, SrCall, SuppliedSchema,
};
use url::Url;

pub use error::RegistryError;

/// hookline's event schema (`topology/schemas/event.avsc`), registered by
/// [`register_event_schema`].
pub const EVENT_SCHEMA: &str = include_str!("../../topology/schemas/event.avsc");

/// How long one registry request may take, connection included. A
/// registry that does not answer within this time counts as unavailable,
/// so a hung registry delays a partition by this much per attempt rather
/// than indefinitely.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long establishing a connection may take. Short, because on a
/// loopback or data-centre network a registry that does not accept within
/// this time is down, and the caller retries.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The most schemas one schema may reference, directly or not. Registries
/// refuse reference cycles, but a bound keeps a misbehaving one from
/// sending the decoder into an endless fetch loop.
const MAX_REFERENCES: usize = 64;

/// A schema id as the registry assigns it and the Confluent wire format
/// carries it.
pub type SchemaId = u32;

/// The subject under which the value schema of `topic` is registered
/// (Confluent's default `TopicNameStrategy`).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// A writer schema fetched from the registry, with the named schemas it
/// references (in the order the decoder must know them).
#[derive(Debug)]
pub struct WriterSchema {
    pub id: SchemaId,
    pub root: Schema,
    pub referenced: Vec<Schema>,
}

/// A connection to one schema registry. Cheap to clone (the HTTP client is
/// shared).
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    /// The base URL without a trailing slash, e.g.
    /// `http://127.0.0.1:8081/apis/ccompat/v7`.
    url: String,
    settings: SrSettings,
}

impl SchemaRegistry {
    /// A client of the registry at `url` (`schema_registry.url`).
    pub fn new(url: &Url) -> Result<Self, RegistryError> {
        // The client appends `/schemas/ids/…` to the base: a trailing slash
        // would make that `//schemas`, which registries answer with 404.
        let url = url.as_str().trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        let settings = SrSettings::new_builder(url.clone())
            .set_timeout(REQUEST_TIMEOUT)
            .build_with(client)
            .map_err(|source| RegistryError::Client { source })?;
        Ok(Self { url, settings })
    }

    /// The base URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches the Avro schema with id `id`, and the schemas it references,
    /// and parses them.
    pub async fn fetch_avro_schema(&self, id: SchemaId) -> Result<WriterSchema, RegistryError> {
        let registered = get_schema_by_id(id, &self.settings)
            .await
            .map_err(|e| RegistryError::classify(&self.url, Lookup::SchemaId(id), e))?;
        if registered.schema_type != SchemaType::Avro {
            return Err(RegistryError::NotAvro {
                id,
                schema_type: format!("{:?}", registered.schema_type),
            });
        }
        let referenced = self.fetch_references(&registered).await?;
        let (root, referenced) = Schema::parse_str_with_list(&registered.schema, &referenced)
            .map_err(|source| RegistryError::InvalidSchema { id, source })?;
        Ok(WriterSchema {
            id,
            root,
            referenced,
        })
    }

    /// The texts of every schema `schema` references, directly or through
    /// other references, each once, dependencies before dependants (the
    /// order in which the decoder resolves names).
    async fn fetch_references(
        &self,
        schema: &RegisteredSchema,
    ) -> Result<Vec<String>, RegistryError> {
        let mut seen = Vec::new();
        let mut texts = Vec::new();
        self.collect_references(&schema.references, &mut seen, &mut texts)
            .await?;
        Ok(texts)
    }

    /// Depth-first, post-order walk of `references`. Boxed because it
    /// recurses; [`MAX_REFERENCES`] bounds the depth.
    fn collect_references<'a>(
        &'a self,
        references: &'a [RegisteredReference],
        seen: &'a mut Vec<(String, u32)>,
        texts: &'a mut Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<(), RegistryError>> + Send + 'a>> {
        Box::pin(async move {
            for reference in references {
                let key = (reference.subject.clone(), reference.version);
                if seen.contains(&key) {
                    continue;
                }
                if seen.len() == MAX_REFERENCES {
                    return Err(RegistryError::TooManyReferences {
                        limit: MAX_REFERENCES,
                    });
                }
                seen.push(key);
                let registered = get_referenced_schema(&self.settings, reference)
                    .await
                    .map_err(|e| {
                        let lookup = Lookup::Reference {
                            subject: &reference.subject,
                            version: reference.version,
                        };
                        RegistryError::classify(&self.url, lookup, e)
                    })?;
                self.collect_references(&registered.references, seen, texts)
                    .await?;
                texts.push(registered.schema);
            }
            Ok(())
        })
    }

    /// Registers the Avro schema `schema` under `subject` and returns its
    /// id. Idempotent: registering a schema the subject already has returns
    /// the existing id and creates no version. A schema the subject's
    /// compatibility rule refuses is [`RegistryError::Incompatible`].
    pub async fn register_avro(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<SchemaId, RegistryError> {
        // Registries that match schemas by their exact text (Apicurio's
        // default) would not find this one for a client that trims what it
        // looks up, as Python confluent-kafka does; the text is registered
        // trimmed, which changes nothing for registries that compare parsed
        // schemas.
        let schema = schema.trim();
        // Refuse locally what the registry would refuse with a vaguer message.
        Schema::parse_str(schema).map_err(|source| RegistryError::InvalidLocalSchema {
            subject: subject.to_owned(),
            source,
        })?;
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned());
        let registered = post_schema(&self.settings, subject.to_owned(), supplied)
            .await
            .map_err(|e| RegistryError::classify(&self.url, Lookup::Register { subject }, e))?;
        Ok(registered.id)
    }

    /// The id under which `subject` holds the Avro schema `schema`, or
    /// `None` when the subject does not exist or does not hold it. Changes
    /// nothing: for a `--check` or `--dry-run` that must not register.
    pub async fn find_avro(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Option<SchemaId>, RegistryError> {
        // The same text register_avro would send, so that registries that
        // compare text find what it registered.
        let body = serde_json::json!({ "schema": schema.trim(), "schemaType": "AVRO" }).to_string();
        let lookup = Lookup::Find { subject };
        match perform_sr_call(&self.settings, SrCall::PostForVersion(subject, &body)).await {
            Ok(found) => found.id.map(Some).ok_or_else(|| RegistryError::Failed {
                url: self.url.clone(),
                request: lookup.to_string(),
                status: None,
                error_code: None,
                message: "the answer has no schema id".to_owned(),
            }),
            Err(e) => match RegistryError::classify(&self.url, lookup, e) {
                RegistryError::NotRegistered { .. } => Ok(None),
                e => Err(e),
            },
        }
    }
}

/// Whether `subject` already holds hookline's event schema, and under which
/// id; see [`SchemaRegistry::find_avro`].
pub async fn find_event_schema(
    url: &Url,
    subject: &str,
) -> Result<Option<SchemaId>, RegistryError> {
    SchemaRegistry::new(url)?
        .find_avro(subject, EVENT_SCHEMA)
        .await
}

/// Registers hookline's event schema ([`EVENT_SCHEMA`]) under `subject`
/// (normally [`value_subject`] of the events topic) in the registry at
/// `url`, and returns its id. Idempotent; see
/// [`SchemaRegistry::register_avro`].
pub async fn register_event_schema(url: &Url, subject: &str) -> Result<SchemaId, RegistryError> {
    SchemaRegistry::new(url)?
        .register_avro(subject, EVENT_SCHEMA)
        .await
}

/// What a request was for, so that a failure names it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup<'a> {
    SchemaId(SchemaId),
    Reference { subject: &'a str, version: u32 },
    Register { subject: &'a str },
    Find { subject: &'a str },
}

#[cfg(test)]
mod tests;
