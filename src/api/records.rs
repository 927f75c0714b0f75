//! The API's view of the `tenants` topic: every tenant's latest record as
//! raw JSON, with the offset it was written at.
//!
//! It is read like the delivery table (restored to the high watermark, then
//! followed) but keeps what that table deliberately drops:
//! - records that do not validate yet: a tenant being onboarded has an API
//!   key before it has a URL or a public key, and must be able to
//!   authenticate;
//! - unknown fields, so that an update through the API keeps what a newer
//!   writer added (DESIGN §4: unknown fields are ignored, not erased);
//! - each record's position, which is its version (the `ETag`), and the
//!   offset applied per partition, which is what read-your-writes waits on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::kafka::producer::Acknowledged;
use crate::kafka::table_reader::{Change, RestoreSummary, TableReader, TableReaderError};
use crate::tenants::record::validate_id;

/// Where a record was written: its partition and offset on the tenants
/// topic. Every write gets a new one, so it identifies a record version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub partition: i32,
    pub offset: i64,
}

impl Version {
    /// The strong entity tag of this version, quotes included.
    pub fn etag(self) -> String {
        format!("\"{}-{}\"", self.partition, self.offset)
    }
}

impl From<Acknowledged> for Version {
    fn from(ack: Acknowledged) -> Self {
        Version {
            partition: ack.partition,
            offset: ack.offset,
        }
    }
}

/// A tenant's latest record.
///
/// Kept as its JSON text and parsed when a request reads it (a few
/// microseconds): parsed into a `serde_json` map, a record of a 2048-bit
/// key, a signing secret and two patterns took about 1.7 KB of memory, its
/// text about 700 bytes, and the API holds every tenant's.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The record's JSON text when it is a JSON object; `None` when the
    /// value is not one (the tenant exists but its record is unreadable).
    text: Option<Box<str>>,
    /// Its `api_key_sha256`, when it has one (a string).
    api_key_sha256: Option<Box<str>>,
    pub version: Version,
}

impl StoredRecord {
    /// Reads a record value: its text is kept only when it is a JSON
    /// object.
    fn read(value: &[u8], version: Version) -> Self {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(value) else {
            return StoredRecord {
                text: None,
                api_key_sha256: None,
                version,
            };
        };
        StoredRecord {
            // Valid JSON is UTF-8.
            text: std::str::from_utf8(value).ok().map(Box::from),
            api_key_sha256: fields
                .get("api_key_sha256")
                .and_then(Value::as_str)
                .map(Box::from),
            version,
        }
    }

    /// A record of these fields, as if read at `version`.
    pub fn of_fields(fields: &Map<String, Value>, version: Version) -> Self {
        let text = serde_json::to_vec(fields).expect("a JSON map always serialises");
        Self::read(&text, version)
    }

    /// The record's JSON object; `None` when the value is not a JSON
    /// object.
    pub fn fields(&self) -> Option<Map<String, Value>> {
        // The text was read as a JSON object when it was stored.
        serde_json::from_str(self.text.as_deref()?).ok()
    }

    /// The record's `api_key_sha256`, when it has one.
    pub fn api_key_sha256(&self) -> Option<&str> {
        self.api_key_sha256.as_deref()
    }
}

#[derive(Default)]
struct Records {
    by_id: HashMap<String, Arc<StoredRecord>>,
    /// `api_key_sha256` → tenant id: tells an unknown key (401) from a key
    /// that belongs to another tenant (404).
    by_key_hash: HashMap<String, String>,
}

/// A cheaply clonable handle on the shared record table.
#[derive(Clone, Default)]
pub struct RecordTable {
    records: Arc<RwLock<Records>>,
    /// The next offset to apply, per partition.
    applied: Arc<watch::Sender<BTreeMap<i32, i64>>>,
}

impl RecordTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest record of `id`.
    pub fn get(&self, id: &str) -> Option<Arc<StoredRecord>> {
        self.read().by_id.get(id).cloned()
    }

    /// Whether some tenant's record holds this API key hash.
    pub fn has_key_hash(&self, hash: &str) -> bool {
        self.read().by_key_hash.contains_key(hash)
    }

    /// Applies one record of the topic; keys that cannot be tenant ids are
    /// skipped (the delivery table counts and logs them).
    pub fn apply(&self, change: Change<'_>) {
        self.applied.send_modify(|applied| {
            let next = applied.entry(change.partition).or_default();
            *next = (*next).max(change.offset + 1);
        });
        let Some(id) = std::str::from_utf8(change.key)
            .ok()
            .filter(|id| validate_id(id).is_ok())
        else {
            return;
        };
        let mut records = self.write();
        if let Some(old) = records.by_id.remove(id)
            && let Some(hash) = old.api_key_sha256()
            && records
                .by_key_hash
                .get(hash)
                .is_some_and(|owner| owner == id)
        {
            records.by_key_hash.remove(hash);
        }
        let Some(value) = change.value else {
            return;
        };
        let record = StoredRecord::read(
            value,
            Version {
                partition: change.partition,
                offset: change.offset,
            },
        );
        if let Some(hash) = record.api_key_sha256() {
            records
                .by_key_hash
                .insert(hash.to_ascii_lowercase(), id.to_string());
        }
        records.by_id.insert(id.to_string(), Arc::new(record));
    }

    /// Waits until the record acknowledged as `ack` has been applied, so
    /// that the writer's next read sees it. `false` when `timeout` passed
    /// first.
    pub async fn wait_applied(&self, ack: Acknowledged, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        let seen = applied.wait_for(|applied| {
            applied
                .get(&ack.partition)
                .is_some_and(|&next| next > ack.offset)
        });
        // The sender lives in `self`, so the wait ends only by success or
        // by the timeout.
        matches!(tokio::time::timeout(timeout, seen).await, Ok(Ok(_)))
    }

    /// Restores the table from `reader` to the high watermark.
    pub async fn restore(&self, reader: &TableReader) -> Result<RestoreSummary, TableReaderError> {
        reader
            .restore_to_high_watermark(|change| self.apply(change), |_| {})
            .await
    }

    /// Applies live updates until `shutdown` is cancelled.
    pub async fn follow(self, reader: TableReader, shutdown: CancellationToken) {
        reader.follow(|change| self.apply(change), shutdown).await;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Records> {
        // Every write is a handful of map operations that cannot panic
        // half-way in a way that matters, so poisoning is moot.
        self.records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Records> {
        self.records
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change<'a>(key: &'a [u8], value: Option<&'a [u8]>, offset: i64) -> Change<'a> {
        Change {
            key,
            value,
            partition: 0,
            offset,
        }
    }

    #[test]
    fn latest_record_wins_and_keeps_its_version_and_unknown_fields() {
        let table = RecordTable::new();
        table.apply(change(b"acme", Some(br#"{"url":"https://a"}"#), 3));
        table.apply(change(
            b"acme",
            Some(br#"{"url":"https://b","max_attempts":3}"#),
            7,
        ));
        let record = table.get("acme").unwrap();
        assert_eq!(record.version.etag(), "\"0-7\"");
        let fields = record.fields().unwrap();
        assert_eq!(fields["url"], "https://b");
        assert_eq!(fields["max_attempts"], 3);
    }

    #[test]
    fn key_hash_index_follows_rotation_and_deletion() {
        let table = RecordTable::new();
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        table.apply(change(
            b"acme",
            Some(format!(r#"{{"api_key_sha256":"{a}"}}"#).as_bytes()),
            0,
        ));
        assert!(table.has_key_hash(&a));
        table.apply(change(
            b"acme",
            Some(format!(r#"{{"api_key_sha256":"{b}"}}"#).as_bytes()),
            1,
        ));
        assert!(!table.has_key_hash(&a), "the old key stops working");
        assert!(table.has_key_hash(&b));
        table.apply(change(b"acme", None, 2));
        assert!(!table.has_key_hash(&b));
        assert!(table.get("acme").is_none());
    }

    #[test]
    fn unreadable_records_exist_without_fields() {
        let table = RecordTable::new();
        table.apply(change(b"acme", Some(b"not json"), 0));
        assert!(table.get("acme").unwrap().fields().is_none());
        table.apply(change(b"", Some(b"{}"), 1));
        assert!(table.get("").is_none());
    }

    #[tokio::test]
    async fn wait_applied_resolves_once_the_offset_is_applied() {
        let table = RecordTable::new();
        let ack = Acknowledged {
            partition: 0,
            offset: 5,
        };
        assert!(!table.wait_applied(ack, Duration::from_millis(20)).await);
        let waiter = {
            let table = table.clone();
            tokio::spawn(async move { table.wait_applied(ack, Duration::from_secs(5)).await })
        };
        table.apply(change(b"acme", Some(b"{}"), 5));
        assert!(waiter.await.unwrap());
    }
}
