//! Avro event values in the Confluent wire format (DESIGN §5): writer
//! schemas fetched from the schema registry by id and cached, values decoded
//! with them and converted to the JSON event document (see [`convert`]).
//!
//! Fetching a schema is I/O and decoding is not, so they are two steps:
//! [`AvroDecoder::load_schema`] (async; the only step that talks to the
//! registry, and only for an id it has not cached) and the synchronous
//! conversion that `EventDecoder::decode` runs. `EventDecoder::decode_async`
//! chains them.
//!
//! Schemas are cached for the life of the process: a registry never changes
//! the schema behind an id. Failures are not cached, so an id that was
//! unknown, or a registry that was down, is asked again for the next record.

mod convert;

use std::collections::HashMap;
use std::fmt;
use std::io::{Cursor, Read};
use std::sync::{Arc, PoisonError, RwLock};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{Name, NamesRef, ResolvedSchema};

use super::{DecodeError, EventError};
use crate::schema_registry::{RegistryError, SchemaId, SchemaRegistry, WriterSchema};

pub use convert::AvroJsonError;

/// The largest allocation apache-avro may make for one string, bytes or
/// collection while decoding. Its default is 512 MiB, so a corrupt length
/// prefix in a value of a few bytes could ask for that much; no legitimate
/// field of a value is longer than the value, whose size is capped by
/// `delivery.max_payload_bytes` (at most 64 MiB).
const MAX_AVRO_ALLOCATION: usize = 64 * 1024 * 1024;

/// Decodes Confluent-framed Avro values with writer schemas from one
/// registry. Cheap to clone: clones share the registry client and the
/// schema cache.
#[derive(Clone)]
pub struct AvroDecoder {
    inner: Arc<Inner>,
}

struct Inner {
    registry: SchemaRegistry,
    schemas: RwLock<HashMap<SchemaId, Arc<WriterSchema>>>,
}

impl AvroDecoder {
    pub fn new(registry: SchemaRegistry) -> Self {
        // Process-wide and first-set-wins in apache-avro; every caller in
        // hookline wants the same bound.
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
        Self {
            inner: Arc::new(Inner {
                registry,
                schemas: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The registry's base URL.
    pub fn registry_url(&self) -> &str {
        self.inner.registry.url()
    }

    /// Whether the writer schema `id` is cached, i.e. whether values written
    /// with it decode without asking the registry.
    pub fn has_schema(&self, id: SchemaId) -> bool {
        self.cached(id).is_some()
    }

    /// Makes sure the writer schema `id` is cached, fetching it when it is
    /// not. Returns at once, without I/O, when it is.
    ///
    /// Errors: [`DecodeError::RegistryUnavailable`] when the registry could
    /// not give an answer about the schema (down, timing out, a 5xx, but
    /// also misconfigured): the record must wait and be retried, never be
    /// dead-lettered. [`DecodeError::Invalid`] when the registry's answer
    /// makes every value written with `id` undecodable (unknown id, not an
    /// Avro schema, unusable schema).
    pub async fn load_schema(&self, id: SchemaId) -> Result<(), DecodeError> {
        if self.has_schema(id) {
            return Ok(());
        }
        let schema = match self.inner.registry.fetch_avro_schema(id).await {
            Ok(schema) => schema,
            Err(e) if e.is_schema_verdict() => {
                return Err(EventError::Schema {
                    schema_id: id,
                    source: Box::new(e),
                }
                .into());
            }
            Err(e) => {
                return Err(DecodeError::RegistryUnavailable {
                    schema_id: id,
                    source: Box::new(e),
                });
            }
        };
        check_usable(&schema)?;
        self.inner
            .schemas
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(schema));
        Ok(())
    }

    fn cached(&self, id: SchemaId) -> Option<Arc<WriterSchema>> {
        // A panic elsewhere while holding the lock cannot leave the map
        // half-updated (inserting is the only write), so a poisoned lock is
        // still safe to read.
        self.inner
            .schemas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// The JSON event document of the Avro `body` (the value after the
    /// 5-byte Confluent header) written with schema `schema_id`, which must
    /// be cached ([`AvroDecoder::load_schema`]).
    pub(super) fn json_document(
        &self,
        schema_id: SchemaId,
        body: &[u8],
    ) -> Result<Vec<u8>, EventError> {
        let schema = self
            .cached(schema_id)
            .ok_or(EventError::SchemaNotLoaded { schema_id })?;
        let resolved = resolve(&schema).map_err(|source| EventError::Schema {
            schema_id,
            source: Box::new(RegistryError::InvalidSchema {
                id: schema_id,
                source,
            }),
        })?;
        let reader = GenericDatumReader::builder(&schema.root)
            .resolved_writer_schemata(resolved.clone())
            .build()
            .map_err(|source| EventError::Avro { schema_id, source })?;
        let mut input = EndDetector {
            cursor: Cursor::new(body),
            hit_end: false,
        };
        let value = reader
            .read_value(&mut input)
            .map_err(|source| EventError::Avro { schema_id, source })?;
        if input.hit_end {
            return Err(EventError::AvroTruncated { schema_id });
        }
        // Bytes left over are the other sign of a value cut or spliced in
        // transit: apache-avro stops reading where the schema says the
        // datum ends.
        let read = usize::try_from(input.cursor.position()).unwrap_or(usize::MAX);
        if read != body.len() {
            return Err(EventError::AvroTrailingBytes {
                schema_id,
                count: body.len().saturating_sub(read),
            });
        }
        convert::event_document(&value, &schema.root, resolved.get_names())
            .map_err(|source| EventError::AvroToJson { schema_id, source })
    }
}

/// The Avro body as a reader that remembers whether anything tried to read
/// past its end. apache-avro decodes a string or a union index cut off by
/// the end of the input as null instead of failing, so a truncated value
/// would otherwise decode "successfully" with fields silently emptied. A
/// complete datum is never read past its end: the schema says exactly how
/// many bytes each part takes.
struct EndDetector<'a> {
    cursor: Cursor<&'a [u8]>,
    hit_end: bool,
}

impl Read for EndDetector<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.cursor.read(buf)?;
        if n < buf.len() {
            self.hit_end = true;
        }
        Ok(n)
    }
}

/// The named types of a writer schema and of the schemas it references,
/// referenced ones first (apache-avro resolves names in list order).
fn resolve(schema: &WriterSchema) -> Result<ResolvedSchema<'_>, apache_avro::Error> {
    let schemata: Vec<&Schema> = schema
        .referenced
        .iter()
        .chain(std::iter::once(&schema.root))
        .collect();
    ResolvedSchema::new_with_schemata(schemata)
}

/// Refuses schemas the decoder cannot use safely: ones whose names do not
/// resolve, and recursive ones. apache-avro decodes recursively without a
/// depth limit, and a recursive schema lets a value of a few kilobytes nest
/// deep enough to overflow the stack of the thread decoding it; refusing the
/// schema is the only bound that holds before decoding.
fn check_usable(schema: &WriterSchema) -> Result<(), EventError> {
    let resolved = resolve(schema).map_err(|source| EventError::Schema {
        schema_id: schema.id,
        source: Box::new(RegistryError::InvalidSchema {
            id: schema.id,
            source,
        }),
    })?;
    let mut path = Vec::new();
    let mut done = Vec::new();
    if is_recursive(&schema.root, resolved.get_names(), &mut path, &mut done) {
        return Err(EventError::RecursiveSchema {
            schema_id: schema.id,
        });
    }
    Ok(())
}

/// Whether `schema` reaches a named type that encloses it. `path` holds the
/// named types being walked; `done` those already known not to recurse.
fn is_recursive<'s>(
    schema: &'s Schema,
    names: &NamesRef<'s>,
    path: &mut Vec<&'s Name>,
    done: &mut Vec<&'s Name>,
) -> bool {
    let (name, children): (Option<&Name>, Vec<&Schema>) = match schema {
        Schema::Ref { name } => {
            if path.contains(&name) {
                return true;
            }
            if done.contains(&name) {
                return false;
            }
            return match names.get(name) {
                Some(named) => is_recursive(named, names, path, done),
                None => false,
            };
        }
        Schema::Record(record) => (
            Some(&record.name),
            record.fields.iter().map(|f| &f.schema).collect(),
        ),
        Schema::Array(array) => (None, vec![&*array.items]),
        Schema::Map(map) => (None, vec![&*map.types]),
        Schema::Union(union) => (None, union.variants().iter().collect()),
        _ => (None, Vec::new()),
    };
    if let Some(name) = name {
        path.push(name);
    }
    let recursive = children
        .into_iter()
        .any(|child| is_recursive(child, names, path, done));
    if let Some(name) = name {
        path.pop();
        done.push(name);
    }
    recursive
}

/// Two decoders are equal when they ask the same registry: a registry never
/// changes the schema behind an id, so they decode every value alike.
impl PartialEq for AvroDecoder {
    fn eq(&self, other: &Self) -> bool {
        self.registry_url() == other.registry_url()
    }
}

impl Eq for AvroDecoder {}

impl fmt::Debug for AvroDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self
            .inner
            .schemas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("AvroDecoder")
            .field("registry", &self.registry_url())
            .field("cached_schemas", &cached)
            .finish()
    }
}

#[cfg(test)]
mod tests;
