//! The tenant table: every tenant record of the `tenants` topic, restored to
//! the high watermark before anything is delivered, then kept current.
//!
//! Readers (one per partition worker) take an `Arc` of an entry and never
//! hold the lock across an await; writers are the single follower task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::record::{Tenant, TenantError};

/// What the table knows about one tenant id.
#[derive(Debug)]
pub enum TenantEntry {
    /// Boxed: a prepared tenant is large and most lookups only need to know
    /// which variant they got.
    Valid(Box<Tenant>),
    /// The latest record did not validate. Its events are dead-lettered as
    /// `invalid_tenant` until a valid record replaces it.
    Invalid { error: String },
}

impl TenantEntry {
    /// Builds the entry for a record value; a validation failure becomes an
    /// `Invalid` entry, never an error for the caller.
    pub fn from_value(id: &str, value: &[u8]) -> Self {
        match Tenant::from_bytes(id, value) {
            Ok(tenant) => Self::Valid(Box::new(tenant)),
            Err(error) => Self::Invalid {
                error: error.to_string(),
            },
        }
    }
}

/// Counts kept by the table, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub tenants: usize,
    pub invalid: usize,
    /// Records that failed validation since start.
    pub invalid_records: u64,
    /// Records whose key is not a usable tenant id (not UTF-8, empty).
    pub unusable_keys: u64,
}

/// A cheaply clonable handle on the shared table.
#[derive(Clone)]
pub struct TenantTable {
    inner: Arc<Inner>,
}

struct Inner {
    entries: RwLock<HashMap<String, Arc<TenantEntry>>>,
    restored: watch::Sender<bool>,
    invalid_records: AtomicU64,
    unusable_keys: AtomicU64,
}

impl Default for TenantTable {
    fn default() -> Self {
        Self::new()
    }
}

impl TenantTable {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: RwLock::default(),
                restored: watch::Sender::new(false),
                invalid_records: AtomicU64::new(0),
                unusable_keys: AtomicU64::new(0),
            }),
        }
    }

    /// The entry for `id`, if the tenant exists.
    pub fn get(&self, id: &str) -> Option<Arc<TenantEntry>> {
        self.read().get(id).cloned()
    }

    /// Every entry, sorted by tenant id.
    pub fn snapshot(&self) -> Vec<(String, Arc<TenantEntry>)> {
        let mut all: Vec<_> = self
            .read()
            .iter()
            .map(|(id, entry)| (id.clone(), entry.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn stats(&self) -> TableStats {
        let entries = self.read();
        TableStats {
            tenants: entries.len(),
            invalid: entries
                .values()
                .filter(|e| matches!(***e, TenantEntry::Invalid { .. }))
                .count(),
            invalid_records: self.inner.invalid_records.load(Ordering::Relaxed),
            unusable_keys: self.inner.unusable_keys.load(Ordering::Relaxed),
        }
    }

    /// Whether the restore to the high watermark has finished.
    pub fn is_restored(&self) -> bool {
        *self.inner.restored.borrow()
    }

    /// Resolves once the restore has finished.
    pub async fn wait_restored(&self) {
        let mut restored = self.inner.restored.subscribe();
        // The sender lives in `self`, so the channel cannot close while we
        // wait on it.
        let _ = restored.wait_for(|done| *done).await;
    }

    pub(super) fn mark_restored(&self) {
        self.inner.restored.send_replace(true);
    }

    /// Applies one record: a value replaces the tenant, a tombstone deletes
    /// it. The value is validated here, once per record version.
    pub fn apply(&self, key: &[u8], value: Option<&[u8]>) {
        let Some(id) = self.usable_id(key) else {
            return;
        };
        match value {
            None => {
                self.write().remove(id);
            }
            Some(value) => {
                let entry = self.build_entry(id, value);
                self.write().insert(id.to_string(), Arc::new(entry));
            }
        }
    }

    /// Installs entries built elsewhere (the parallel restore) in one go.
    pub(super) fn install(&self, entries: Vec<(String, Option<TenantEntry>)>) {
        let mut table = self.write();
        for (id, entry) in entries {
            match entry {
                Some(entry) => {
                    table.insert(id, Arc::new(entry));
                }
                None => {
                    table.remove(&id);
                }
            }
        }
    }

    /// Validates a record, counting and logging a failure.
    pub(super) fn build_entry(&self, id: &str, value: &[u8]) -> TenantEntry {
        let entry = TenantEntry::from_value(id, value);
        self.note_if_invalid(id, &entry);
        entry
    }

    /// Counts and logs an entry whose record failed validation.
    pub(super) fn note_if_invalid(&self, id: &str, entry: &TenantEntry) {
        if let TenantEntry::Invalid { error } = entry {
            self.inner.invalid_records.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(tenant = %id, %error, "invalid tenant record; its events will be dead-lettered");
        }
    }

    /// The tenant id of a record key, or `None` (counted and logged) when
    /// the key cannot be one.
    pub(super) fn usable_id<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        match std::str::from_utf8(key) {
            Ok(id) if super::record::validate_id(id).is_ok() => Some(id),
            _ => {
                self.inner.unusable_keys.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    key = %String::from_utf8_lossy(key),
                    error = %TenantError::InvalidId,
                    "ignoring a tenant record whose key is not a tenant id"
                );
                None
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TenantEntry>>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every write is a single insert or remove), so poisoning is moot.
        self.inner
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<TenantEntry>>> {
        self.inner
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
