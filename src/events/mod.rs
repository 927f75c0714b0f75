//! Events: decoding a Kafka record of the `events` topic into an [`Event`]
//! (DESIGN §5), and the plaintext a webhook encrypts (DESIGN §6).
//!
//! Decoding is pure: it takes the parts of a record, not a consumer
//! message, and either yields an event or an [`EventError`] that says what
//! is wrong with the record. Decoding knows nothing of the dead-letter
//! topic: `delivery::dead_letter` decides which reason each error is.
//! Checks run cheapest and most decisive first:
//! the value's size (before any parsing, so an oversized value costs
//! nothing), the key, the value's wire format, then the JSON document.
//!
//! Avro values (Confluent wire format) need their writer schema from the
//! schema registry, which is I/O: [`EventDecoder::decode_async`] fetches it
//! (once per schema id) and then decodes. Its error, [`DecodeError`],
//! separates what is wrong with the record (dead-letter it) from a registry
//! that could not be asked (wait and retry the same record), so that a good
//! event is never dead-lettered because the registry blinked.
//!
//! Tenant isolation: only the record key selects the tenant. An event may
//! repeat its tenant in a `tenant` field, but one naming another tenant is
//! refused rather than believed.

mod avro;
mod id;
mod json;
pub mod timestamp;

use std::borrow::Cow;
use std::fmt;
use std::str::Utf8Error;

use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::SchemaRegistryConfig;
use crate::schema_registry::{RegistryError, SchemaRegistry};
use timestamp::format_rfc3339_millis;

pub use avro::{AvroDecoder, AvroJsonError};
pub use id::{MAX_PRODUCER_ID_BYTES, derived_id, webhook_id};
pub use json::MAX_NESTING_DEPTH;

/// The parts of a Kafka record that decoding reads.
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    /// The tenant id, UTF-8.
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The record timestamp in milliseconds since the Unix epoch; `None`
    /// (or negative, Kafka's "no timestamp") when the broker has none.
    pub timestamp_millis: Option<i64>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Why a record is not a deliverable event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("value is {size} bytes, above delivery.max_payload_bytes ({limit} bytes)")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("record has no key; the key must be the tenant id")]
    MissingKey,
    #[error("record key is empty; the key must be the tenant id")]
    EmptyKey,
    #[error("record key is not UTF-8")]
    KeyNotUtf8(#[source] Utf8Error),
    #[error("record has no value")]
    MissingValue,
    #[error("record value is empty")]
    EmptyValue,
    #[error(
        "value is in the Confluent wire format (schema id {schema_id}) but no schema registry is configured"
    )]
    SchemaRegistryRequired { schema_id: u32 },
    #[error("schema id {schema_id} cannot decode events")]
    Schema {
        schema_id: u32,
        /// Boxed: a registry error is large, and this enum travels by value
        /// on the hot path of every JSON event.
        #[source]
        source: Box<RegistryError>,
    },
    #[error(
        "schema id {schema_id} is recursive; its values could nest without bound, so hookline does not decode them"
    )]
    RecursiveSchema { schema_id: u32 },
    /// Only from [`EventDecoder::decode`], which cannot fetch schemas: a
    /// caller that reads Avro uses [`EventDecoder::decode_async`].
    #[error("schema id {schema_id} has not been fetched from the schema registry")]
    SchemaNotLoaded { schema_id: u32 },
    #[error("value is not valid Avro for schema id {schema_id}")]
    Avro {
        schema_id: u32,
        #[source]
        source: apache_avro::Error,
    },
    #[error("value ends in the middle of its Avro datum (schema id {schema_id})")]
    AvroTruncated { schema_id: u32 },
    #[error("value has {count} bytes after the end of its Avro datum (schema id {schema_id})")]
    AvroTrailingBytes { schema_id: u32, count: usize },
    #[error("Avro value of schema id {schema_id} has no JSON event form")]
    AvroToJson {
        schema_id: u32,
        #[source]
        source: AvroJsonError,
    },
    #[error("value is not UTF-8")]
    ValueNotUtf8(#[source] Utf8Error),
    #[error("value nests arrays and objects deeper than {MAX_NESTING_DEPTH} levels")]
    TooDeep,
    #[error("value is not a JSON object")]
    NotAnObject,
    #[error("value is not a valid event")]
    Json(#[source] serde_json::Error),
    #[error(
        "field `data` is JSON that receivers cannot parse into a value (a number out of range or a lone surrogate)"
    )]
    DataNotPortable(#[source] serde_json::Error),
    #[error("field `type` is empty")]
    EmptyType,
    #[error("field `tenant` names another tenant than the record key")]
    TenantMismatch,
    #[error("event has no RFC 3339 `timestamp` and the record has no usable timestamp")]
    NoTimestamp,
}

/// Why [`EventDecoder::decode_async`] produced no event: either the record
/// is not a deliverable event (dead-letter it), or the schema registry could
/// not be asked about its schema (keep the record and try again later).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Invalid(#[from] EventError),
    #[error(
        "cannot fetch schema id {schema_id} from the schema registry; the record waits until it can"
    )]
    RegistryUnavailable {
        schema_id: u32,
        /// Boxed for the same reason as in [`EventError::Schema`].
        #[source]
        source: Box<RegistryError>,
    },
}

impl DecodeError {
    /// Whether the same record may decode later: the registry could not be
    /// asked. The caller must neither dead-letter nor skip the record.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable { .. })
    }
}

/// How a record value is encoded, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// JSON text (which never starts with a zero byte).
    Json,
    /// Confluent wire format: magic byte 0, a 4-byte big-endian schema id,
    /// then the Avro body.
    ConfluentAvro { schema_id: u32 },
}

/// Magic byte plus the 4-byte schema id.
const CONFLUENT_HEADER_BYTES: usize = 5;

impl WireFormat {
    pub fn of(value: &[u8]) -> Self {
        match value {
            [0, a, b, c, d, ..] => WireFormat::ConfluentAvro {
                schema_id: u32::from_be_bytes([*a, *b, *c, *d]),
            },
            _ => WireFormat::Json,
        }
    }
}

/// Turns record values into event documents. Every format is decoded to the
/// same JSON shape (DESIGN §5) and then read by one code path, so the rules
/// on fields, ids and timestamps cannot drift between formats.
///
/// JSON values are borrowed as they are; Avro values are converted to a JSON
/// document in the `json_document` step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EventDecoder {
    /// Values are JSON; Confluent-framed values are refused.
    #[default]
    Json,
    /// Confluent-framed values are Avro, decoded with writer schemas from
    /// the schema registry; every other value is JSON.
    Avro(AvroDecoder),
}

impl EventDecoder {
    /// The decoder the configuration asks for: Avro-capable when
    /// `schema_registry` is set, JSON only otherwise.
    pub fn new(schema_registry: Option<&SchemaRegistryConfig>) -> Result<Self, RegistryError> {
        match schema_registry {
            Some(config) => Ok(EventDecoder::Avro(AvroDecoder::new(SchemaRegistry::new(
                &config.url,
            )?))),
            None => Ok(EventDecoder::Json),
        }
    }

    /// Decodes one record, fetching its Avro writer schema from the registry
    /// first when it is Confluent-framed and the schema is not cached yet.
    /// For JSON values, and for Avro values whose schema is cached, this
    /// does no I/O and completes at once.
    ///
    /// `Err(DecodeError::RegistryUnavailable)` means "not now": the record
    /// stays where it is and is decoded again later (after a backoff).
    /// `Err(DecodeError::Invalid)` is final: dead-letter the record.
    pub async fn decode_async(
        &self,
        record: &RecordParts<'_>,
        max_payload_bytes: usize,
    ) -> Result<Event, DecodeError> {
        if let EventDecoder::Avro(avro) = self {
            // The registry is asked only for a record that passes the cheap
            // checks, so an oversized or keyless record costs no request.
            let needs_schema = match record.value.map(|value| (value, WireFormat::of(value))) {
                Some((value, WireFormat::ConfluentAvro { schema_id })) => {
                    (value.len() <= max_payload_bytes && tenant_of_key(record.key).is_ok())
                        .then_some(schema_id)
                }
                _ => None,
            };
            if let Some(schema_id) = needs_schema {
                avro.load_schema(schema_id).await?;
            }
        }
        Ok(self.decode(record, max_payload_bytes)?)
    }

    /// Decodes one record without I/O. `max_payload_bytes` is
    /// `delivery.max_payload_bytes`.
    ///
    /// An Avro value decodes only when its schema is cached; otherwise this
    /// is [`EventError::SchemaNotLoaded`]. Callers that may see Avro use
    /// [`EventDecoder::decode_async`], which never returns that error.
    pub fn decode(
        &self,
        record: &RecordParts<'_>,
        max_payload_bytes: usize,
    ) -> Result<Event, EventError> {
        let size = record.value.map_or(0, <[u8]>::len);
        if size > max_payload_bytes {
            return Err(EventError::PayloadTooLarge {
                size,
                limit: max_payload_bytes,
            });
        }
        let tenant = tenant_of_key(record.key)?;
        let value = record.value.ok_or(EventError::MissingValue)?;
        let document = self.json_document(value)?;
        let fields = json::parse(&document)?;
        Event::from_document(fields, tenant, record)
    }

    /// The value as JSON text: borrowed as it is for JSON, converted for
    /// other formats.
    fn json_document<'v>(&self, value: &'v [u8]) -> Result<Cow<'v, [u8]>, EventError> {
        match (self, WireFormat::of(value)) {
            (EventDecoder::Json, WireFormat::Json) => Ok(Cow::Borrowed(value)),
            (EventDecoder::Json, WireFormat::ConfluentAvro { schema_id }) => {
                Err(EventError::SchemaRegistryRequired { schema_id })
            }
            (EventDecoder::Avro(_), WireFormat::Json) => Ok(Cow::Borrowed(value)),
            (EventDecoder::Avro(avro), WireFormat::ConfluentAvro { schema_id }) => avro
                // WireFormat::of saw the whole header, so the slice is in bounds.
                .json_document(schema_id, &value[CONFLUENT_HEADER_BYTES..])
                .map(Cow::Owned),
        }
    }
}

/// The tenant id a record key names.
fn tenant_of_key(key: Option<&[u8]>) -> Result<&str, EventError> {
    let key = key.ok_or(EventError::MissingKey)?;
    if key.is_empty() {
        return Err(EventError::EmptyKey);
    }
    std::str::from_utf8(key).map_err(EventError::KeyNotUtf8)
}

/// A decoded event, ready to be filtered, encrypted and sent.
#[derive(Clone)]
pub struct Event {
    /// The tenant id, from the record key.
    pub tenant: String,
    /// The `webhook-id`: stable, free of `.` (see [`webhook_id`]).
    pub id: String,
    /// The `type` field.
    pub event_type: String,
    /// RFC 3339: the event's own `timestamp` when it is valid RFC 3339
    /// (as written when spelled canonically, see `event_timestamp`), else
    /// the record timestamp; both rewritten forms are UTC with millisecond
    /// precision.
    pub timestamp: String,
    /// The same instant as `timestamp`, for latency measurements.
    pub occurred_at: OffsetDateTime,
    /// The `data` field as the producer wrote it.
    pub data: Box<RawValue>,
}

impl Event {
    fn from_document(
        document: json::EventDocument<'_>,
        tenant: &str,
        record: &RecordParts<'_>,
    ) -> Result<Event, EventError> {
        if document.event_type.is_empty() {
            return Err(EventError::EmptyType);
        }
        if document
            .tenant
            .as_deref()
            .is_some_and(|named| named != tenant)
        {
            return Err(EventError::TenantMismatch);
        }
        let producer_id = document.id.and_then(json::as_string);
        let id = webhook_id(
            producer_id.as_deref(),
            record.topic,
            record.partition,
            record.offset,
        );
        let (timestamp, occurred_at) = event_timestamp(document.timestamp)
            .or_else(|| record_timestamp(record.timestamp_millis))
            .ok_or(EventError::NoTimestamp)?;
        Ok(Event {
            tenant: tenant.to_owned(),
            id,
            event_type: document.event_type.into_owned(),
            timestamp,
            occurred_at,
            data: document.data.to_owned(),
        })
    }

    /// The JWE plaintext (DESIGN §6): the JSON object
    /// `{"id","type","timestamp","tenant","data"}`, built in one buffer with
    /// `data` copied verbatim.
    pub fn plaintext(&self) -> Vec<u8> {
        let data = self.data.get();
        // Field names and punctuation take 49 bytes; strings may grow when
        // escaped, which only costs a reallocation.
        let capacity = 64
            + data.len()
            + self.id.len()
            + self.event_type.len()
            + self.timestamp.len()
            + self.tenant.len();
        let mut plaintext = Vec::with_capacity(capacity);
        plaintext.extend_from_slice(b"{\"id\":");
        write_json_string(&mut plaintext, &self.id);
        plaintext.extend_from_slice(b",\"type\":");
        write_json_string(&mut plaintext, &self.event_type);
        plaintext.extend_from_slice(b",\"timestamp\":");
        write_json_string(&mut plaintext, &self.timestamp);
        plaintext.extend_from_slice(b",\"tenant\":");
        write_json_string(&mut plaintext, &self.tenant);
        plaintext.extend_from_slice(b",\"data\":");
        plaintext.extend_from_slice(data.as_bytes());
        plaintext.push(b'}');
        plaintext
    }
}

/// Leaves `data` out: events are customer payloads, which are never logged.
impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("timestamp", &self.timestamp)
            .field("data_bytes", &self.data.get().len())
            .finish()
    }
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a &str cannot fail, and writing to a Vec has no I/O error.
    serde_json::to_writer(&mut *out, text).expect("a string serialises into a Vec");
}

/// The event's own timestamp, when it is an RFC 3339 string.
///
/// The canonical spelling (`T` between date and time, upper-case `Z`) is kept
/// as written, offset and precision included. RFC 3339 also allows a space or
/// lower-case `t` and `z`, which strict parsers on the receiving side refuse
/// (Go's `time.RFC3339` among them); such a timestamp still names the right
/// instant, so it is rewritten in UTC rather than replaced by the record's
/// (unless its UTC form falls outside years 0000–9999).
fn event_timestamp(raw: Option<&RawValue>) -> Option<(String, OffsetDateTime)> {
    let text = json::as_string(raw?)?;
    let instant = OffsetDateTime::parse(&text, &Rfc3339).ok()?;
    let canonical = text.as_bytes().get(10) == Some(&b'T') && !text.ends_with('z');
    if canonical {
        Some((text, instant))
    } else {
        Some((format_rfc3339_millis(instant)?, instant))
    }
}

/// The record timestamp, when there is one (Kafka uses -1 for none).
fn record_timestamp(millis: Option<i64>) -> Option<(String, OffsetDateTime)> {
    let millis = millis.filter(|ms| *ms >= 0)?;
    let instant = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()?;
    Some((format_rfc3339_millis(instant)?, instant))
}

#[cfg(test)]
mod tests;
