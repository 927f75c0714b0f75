//! What can go wrong talking to a schema registry, classified.

use std::error::Error as _;
use std::fmt;

use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::RawError;

use super::{Lookup, SchemaId};

/// Confluent's error code for "schema not found" (`GET /schemas/ids/{id}`).
const SCHEMA_NOT_FOUND: u32 = 40403;
/// Confluent's error codes for "subject not found" and "version not found".
const SUBJECT_NOT_FOUND: u32 = 40401;
const VERSION_NOT_FOUND: u32 = 40402;

/// A failure of a schema registry request.
///
/// Two questions matter to callers, and each has its method:
/// - [`RegistryError::is_schema_verdict`]: did the registry give a final
///   answer about the schema itself (unknown id, not Avro, unparsable)? Then
///   an event written with it can never be decoded and is invalid.
/// - [`RegistryError::is_transient`]: could the same request succeed later
///   without anyone changing anything (registry down, overloaded, timing
///   out)?
///
/// Anything that is not a verdict on the schema (a refused connection, a
/// 5xx, but also a 401 or a URL that points at the wrong path) is not the
/// event's fault: the decoder waits rather than dead-letter a good event.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot build the schema registry client")]
    Client {
        #[source]
        source: SRCError,
    },
    #[error("schema registry at {url} is unreachable ({request})")]
    Unreachable {
        url: String,
        request: String,
        #[source]
        source: SRCError,
    },
    #[error("schema registry at {url} answered {request} with {}: {message}", status_text(*.status, *.error_code))]
    Failed {
        url: String,
        request: String,
        /// The HTTP status, when the answer had one that could be read.
        status: Option<u16>,
        /// The registry's `error_code` (e.g. 50001), when it sent one.
        error_code: Option<u32>,
        message: String,
    },
    #[error(
        "schema registry at {url} sent an unexpected answer to {request} (is the URL the registry's Confluent-compatible API?)"
    )]
    BadResponse {
        url: String,
        request: String,
        #[source]
        source: SRCError,
    },
    #[error("schema id {id} is not in the schema registry")]
    SchemaNotFound { id: SchemaId },
    #[error(
        "the writer schema references subject `{subject}` version {version}, which is not in the schema registry"
    )]
    ReferenceNotFound { subject: String, version: u32 },
    #[error("the writer schema references more than {limit} schemas")]
    TooManyReferences { limit: usize },
    #[error("schema id {id} is a {schema_type} schema, not Avro")]
    NotAvro { id: SchemaId, schema_type: String },
    #[error("schema id {id} is not a valid Avro schema")]
    InvalidSchema {
        id: SchemaId,
        #[source]
        source: apache_avro::Error,
    },
    #[error("the schema to register under subject `{subject}` is not valid Avro")]
    InvalidLocalSchema {
        subject: String,
        #[source]
        source: apache_avro::Error,
    },
    #[error(
        "subject `{subject}` refused the schema as incompatible with its registered versions (compatibility rule): {message}"
    )]
    Incompatible { subject: String, message: String },
    #[error("schema registry refused the schema for subject `{subject}` as invalid: {message}")]
    Rejected { subject: String, message: String },
    /// Only inside [`super::SchemaRegistry::find_avro`], which turns it into `None`.
    #[error("subject `{subject}` does not hold the schema")]
    NotRegistered { subject: String },
}

impl RegistryError {
    /// Whether the registry gave a final answer about the schema: an event
    /// written with it can never be decoded.
    pub fn is_schema_verdict(&self) -> bool {
        matches!(
            self,
            RegistryError::SchemaNotFound { .. }
                | RegistryError::ReferenceNotFound { .. }
                | RegistryError::TooManyReferences { .. }
                | RegistryError::NotAvro { .. }
                | RegistryError::InvalidSchema { .. }
        )
    }

    /// Whether retrying the same request later may succeed without anyone
    /// changing anything: the registry was unreachable, timed out,
    /// answered with a server error, 408 or 429, or with something that
    /// was not a registry response (a proxy's error page, say).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::BadResponse { .. } => true,
            RegistryError::Failed { status, .. } => {
                status.is_none_or(|s| s >= 500 || s == 408 || s == 429)
            }
            _ => false,
        }
    }

    /// Turns a client error into the variant that says what happened.
    pub(crate) fn classify(url: &str, lookup: Lookup<'_>, error: SRCError) -> RegistryError {
        let url = url.to_owned();
        let request = lookup.to_string();
        let raw = error
            .source()
            .and_then(|source| source.downcast_ref::<RawError>())
            .cloned();
        let status = http_status(&error.error);
        let Some(raw) = raw else {
            // No error body: either the request never got an answer
            // (refused, reset, timed out) or the answer could not be read.
            return if error.retriable {
                RegistryError::Unreachable {
                    url,
                    request,
                    source: error,
                }
            } else {
                RegistryError::BadResponse {
                    url,
                    request,
                    source: error,
                }
            };
        };
        match (lookup, raw.error_code, status) {
            (Lookup::SchemaId(id), SCHEMA_NOT_FOUND, _) => RegistryError::SchemaNotFound { id },
            (Lookup::Reference { subject, version }, SUBJECT_NOT_FOUND | VERSION_NOT_FOUND, _) => {
                RegistryError::ReferenceNotFound {
                    subject: subject.to_owned(),
                    version,
                }
            }
            (Lookup::Register { subject }, 409, _)
            | (Lookup::Register { subject }, _, Some(409)) => RegistryError::Incompatible {
                subject: subject.to_owned(),
                message: raw.message,
            },
            (Lookup::Find { subject }, SUBJECT_NOT_FOUND | SCHEMA_NOT_FOUND, _) => {
                RegistryError::NotRegistered {
                    subject: subject.to_owned(),
                }
            }
            (Lookup::Register { subject }, 42200..=42299, _)
            | (Lookup::Register { subject }, _, Some(422)) => RegistryError::Rejected {
                subject: subject.to_owned(),
                message: raw.message,
            },
            _ => RegistryError::Failed {
                url,
                request,
                status,
                // The client puts 0 in when the body was not a registry error.
                error_code: (raw.error_code != 0).then_some(raw.error_code),
                message: raw.message,
            },
        }
    }
}

impl fmt::Display for Lookup<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::SchemaId(id) => write!(f, "the request for schema id {id}"),
            Lookup::Reference { subject, version } => {
                write!(f, "the request for subject `{subject}` version {version}")
            }
            Lookup::Register { subject } => {
                write!(f, "the registration under subject `{subject}`")
            }
            Lookup::Find { subject } => write!(f, "the lookup in subject `{subject}`"),
        }
    }
}

/// The HTTP status in the client's error text ("… failed with status 404
/// Not Found"): the client keeps it nowhere else.
fn http_status(text: &str) -> Option<u16> {
    let (_, rest) = text.rsplit_once("status ")?;
    rest.get(..3)?.parse().ok()
}

fn status_text(status: Option<u16>, error_code: Option<u32>) -> String {
    match (status, error_code) {
        (Some(status), Some(code)) => format!("HTTP {status} (error code {code})"),
        (Some(status), None) => format!("HTTP {status}"),
        (None, Some(code)) => format!("error code {code}"),
        (None, None) => "an error".to_owned(),
    }
}
