//! The tenant table: every tenant record of the `tenants` topic, restored to
//! the high watermark before anything is delivered, then kept current.
//!
//! Readers (one per partition worker) take an `Arc` of an entry and never
//! hold the lock across an await; writers are the single follower task,
//! and the validating threads while a restore runs.
//!
//! An entry is kept compact (about 0.6 KB for a 2048-bit key, see
//! [`Tenant`]); what a delivery needs beyond it is prepared on demand and
//! kept for the most recently active tenants only ([`TenantTable::prepared`]),
//! so that a replica holds a million tenants in well under a gigabyte.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::pattern::PatternSets;
use super::record::{PreparedTenant, Tenant, TenantError};

/// Tenants whose prepared form is cached when the table is not told
/// otherwise (`delivery.prepared_tenants`).
pub const DEFAULT_PREPARED_TENANTS: usize = 50_000;

/// What the table knows about one tenant id.
#[derive(Debug)]
pub enum TenantEntry {
    /// Not boxed: the entry is itself in an `Arc`, one allocation for both.
    Valid(Tenant),
    /// The latest record did not validate. Its events are dead-lettered as
    /// `invalid_tenant` until a valid record replaces it.
    Invalid { id: Box<str>, error: String },
}

impl TenantEntry {
    /// Builds the entry for a record value; a validation failure becomes an
    /// `Invalid` entry, never an error for the caller.
    pub fn from_value(id: &str, value: &[u8]) -> Self {
        Self::from_value_sharing(id, value, &PatternSets::default())
    }

    /// [`TenantEntry::from_value`], sharing pattern lists through
    /// `patterns`.
    pub fn from_value_sharing(id: &str, value: &[u8], patterns: &PatternSets) -> Self {
        match Tenant::from_bytes_sharing(id, value, patterns) {
            Ok(tenant) => Self::Valid(tenant),
            Err(error) => Self::Invalid {
                id: id.into(),
                error: error.to_string(),
            },
        }
    }

    /// The tenant id.
    pub fn id(&self) -> &str {
        match self {
            Self::Valid(tenant) => &tenant.id,
            Self::Invalid { id, .. } => id,
        }
    }
}

/// An entry in the table's set, found by its tenant id: the id is stored
/// once, in the entry, rather than again as a map key.
struct ById(Arc<TenantEntry>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.0.id()
    }
}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that lookups by `&str` find it.
        self.0.id().hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl Eq for ById {}

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

/// The table's entries, found by tenant id.
type Entries = HashSet<ById, quick_cache::DefaultHashBuilder>;

fn is_invalid(entry: &TenantEntry) -> bool {
    matches!(entry, TenantEntry::Invalid { .. })
}

/// A cheaply clonable handle on the shared table.
#[derive(Clone)]
pub struct TenantTable {
    inner: Arc<Inner>,
}

struct Inner {
    /// With the hasher of the cache crate (aHash, randomly keyed): a
    /// fraction of SipHash's cost, and still not predictable from outside.
    entries: RwLock<Entries>,
    /// The `Invalid` entries among them, counted as entries come and go
    /// (changed only under the write lock), so that the gauges, refreshed
    /// at every scrape of `/metrics`, need not walk a million entries.
    invalid: AtomicUsize,
    /// Prepared tenants by [`Tenant::serial`]: the recently active ones.
    prepared: quick_cache::sync::Cache<u64, Arc<PreparedTenant>>,
    patterns: PatternSets,
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
    /// A table that keeps the prepared form of up to
    /// [`DEFAULT_PREPARED_TENANTS`] active tenants.
    pub fn new() -> Self {
        Self::with_prepared_capacity(DEFAULT_PREPARED_TENANTS)
    }

    /// A table that keeps the prepared form of up to `prepared` recently
    /// active tenants (0: none, every attempt prepares its own).
    pub fn with_prepared_capacity(prepared: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: RwLock::default(),
                invalid: AtomicUsize::new(0),
                prepared: quick_cache::sync::Cache::new(prepared),
                patterns: PatternSets::default(),
                restored: watch::Sender::new(false),
                invalid_records: AtomicU64::new(0),
                unusable_keys: AtomicU64::new(0),
            }),
        }
    }

    /// The entry for `id`, if the tenant exists.
    pub fn get(&self, id: &str) -> Option<Arc<TenantEntry>> {
        self.read().get(id).map(|entry| entry.0.clone())
    }

    /// What a delivery to `tenant` needs, from the cache of recently active
    /// tenants or prepared now (and cached). A hit is a hash lookup; a miss
    /// parses the key into aws-lc and the URL, a few microseconds, and the
    /// first encryption with the new aws-lc key then builds its Montgomery
    /// context.
    pub fn prepared(&self, tenant: &Tenant) -> Result<Arc<PreparedTenant>, TenantError> {
        let cache = &self.inner.prepared;
        if let Some(prepared) = cache.get(&tenant.serial()) {
            return Ok(prepared);
        }
        let prepared = Arc::new(tenant.prepare()?);
        cache.insert(tenant.serial(), prepared.clone());
        Ok(prepared)
    }

    /// How many tenants are prepared now.
    pub fn prepared_len(&self) -> usize {
        self.inner.prepared.len()
    }

    /// Every entry, sorted by tenant id.
    pub fn snapshot(&self) -> Vec<(String, Arc<TenantEntry>)> {
        let mut all: Vec<_> = self
            .read()
            .iter()
            .map(|entry| (entry.0.id().to_string(), entry.0.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The counts, without walking the entries.
    pub fn stats(&self) -> TableStats {
        let entries = self.read();
        TableStats {
            tenants: entries.len(),
            invalid: self.inner.invalid.load(Ordering::Relaxed),
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
            None => self.remove(id),
            Some(value) => {
                let entry = self.build_entry(id, value);
                self.insert(entry);
            }
        }
    }

    /// Installs or replaces an entry.
    pub(super) fn insert(&self, entry: TenantEntry) {
        let invalid = is_invalid(&entry);
        let mut entries = self.write();
        if invalid {
            self.inner.invalid.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(old) = entries.replace(ById(Arc::new(entry)))
            && is_invalid(&old.0)
        {
            self.inner.invalid.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Removes the entry of `id`, if any.
    pub(super) fn remove(&self, id: &str) {
        let mut entries = self.write();
        if let Some(old) = entries.take(id)
            && is_invalid(&old.0)
        {
            self.inner.invalid.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Empties the table, before a restore starts (again).
    pub(super) fn clear(&self) {
        let mut entries = self.write();
        entries.clear();
        entries.shrink_to_fit();
        self.inner.invalid.store(0, Ordering::Relaxed);
    }

    /// Reports (counts and logs) every invalid entry, once a restore has
    /// installed the latest version of every key.
    pub(super) fn note_invalid_entries(&self) {
        let invalid: Vec<Arc<TenantEntry>> = self
            .read()
            .iter()
            .filter(|e| matches!(*e.0, TenantEntry::Invalid { .. }))
            .map(|e| e.0.clone())
            .collect();
        for entry in invalid {
            self.note_if_invalid(entry.id(), &entry);
        }
    }

    /// The pattern lists the table's tenants share.
    pub(super) fn patterns(&self) -> &PatternSets {
        &self.inner.patterns
    }

    /// Validates a record, counting and logging a failure.
    pub(super) fn build_entry(&self, id: &str, value: &[u8]) -> TenantEntry {
        let entry = TenantEntry::from_value_sharing(id, value, &self.inner.patterns);
        self.note_if_invalid(id, &entry);
        entry
    }

    /// Counts and logs an entry whose record failed validation.
    pub(super) fn note_if_invalid(&self, id: &str, entry: &TenantEntry) {
        if let TenantEntry::Invalid { error, .. } = entry {
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the set half-updated
        // (every write is a single insert, remove or clear), so poisoning
        // is moot.
        self.inner
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.inner
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::jwe::decrypt;
    use crate::crypto::{KeyRing, PrivateKey, test_keys};

    fn record(key: &PrivateKey, url: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "url": url,
            "public_key": key.public_key().to_spki_pem(),
            "events": ["order.*", "invoice.paid"],
        }))
        .unwrap()
    }

    fn valid(table: &TenantTable, id: &str) -> Arc<TenantEntry> {
        let entry = table.get(id).expect("the tenant exists");
        assert!(matches!(*entry, TenantEntry::Valid(_)), "{entry:?}");
        entry
    }

    fn tenant(entry: &TenantEntry) -> &Tenant {
        match entry {
            TenantEntry::Valid(tenant) => tenant,
            TenantEntry::Invalid { error, .. } => panic!("invalid: {error}"),
        }
    }

    /// Encrypts with the prepared tenant and opens with `key`.
    fn opens(prepared: &PreparedTenant, key: &PrivateKey) -> bool {
        let body = prepared.recipient.encrypt(b"{}").unwrap();
        let ring: KeyRing = [key.clone()].into_iter().collect();
        decrypt(&ring, &body).is_ok()
    }

    #[test]
    fn a_prepared_tenant_is_cached_and_a_new_record_version_prepared_anew() {
        let table = TenantTable::with_prepared_capacity(10);
        let old_key = PrivateKey::parse(test_keys::RSA2048_PRIVATE).unwrap();
        let new_key = test_keys::generated_2048();
        table.apply(b"acme", Some(&record(&old_key, "https://a.example.com/")));
        let entry = valid(&table, "acme");
        let first = table.prepared(tenant(&entry)).unwrap();
        let again = table.prepared(tenant(&entry)).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "a hit is the same prepared tenant"
        );
        assert!(opens(&first, &old_key));
        assert_eq!(table.prepared_len(), 1);

        // Key rotation by record update: the next attempt uses the new key
        // and URL, never the cached form of the old version.
        table.apply(b"acme", Some(&record(new_key, "https://b.example.com/")));
        let rotated = table.prepared(tenant(&valid(&table, "acme"))).unwrap();
        assert!(opens(&rotated, new_key));
        assert!(!opens(&rotated, &old_key));
        assert_eq!(rotated.url.as_str(), "https://b.example.com/");
        assert_eq!(
            rotated.recipient.kid(),
            new_key.thumbprint(),
            "the default kid is the new key's thumbprint"
        );
    }

    #[test]
    fn without_a_cache_every_attempt_prepares_its_own() {
        let table = TenantTable::with_prepared_capacity(0);
        let key = test_keys::generated_2048();
        table.apply(b"acme", Some(&record(key, "https://a.example.com/")));
        let entry = valid(&table, "acme");
        for _ in 0..3 {
            assert!(opens(&table.prepared(tenant(&entry)).unwrap(), key));
        }
    }

    #[test]
    fn tenants_with_the_same_patterns_share_one_list() {
        let table = TenantTable::new();
        let key = test_keys::generated_2048();
        for id in ["a", "b"] {
            table.apply(id.as_bytes(), Some(&record(key, "https://a.example.com/")));
        }
        let (a, b) = (valid(&table, "a"), valid(&table, "b"));
        let (a, b) = (tenant(&a).events().unwrap(), tenant(&b).events().unwrap());
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.len(), 2);
        assert!(tenant(&valid(&table, "a")).is_subscribed("order.created"));
        assert!(!tenant(&valid(&table, "a")).is_subscribed("invoice.created"));
    }

    #[test]
    fn an_invalid_record_is_an_entry_found_by_its_id_and_a_tombstone_removes_it() {
        let table = TenantTable::new();
        table.apply(b"broken", Some(b"{not json"));
        let entry = table.get("broken").expect("an invalid entry");
        assert_eq!(entry.id(), "broken");
        assert!(matches!(*entry, TenantEntry::Invalid { .. }));
        assert_eq!(table.stats().invalid, 1);
        table.apply(b"broken", None);
        assert!(table.get("broken").is_none());
        assert_eq!(table.stats().tenants, 0);
        assert_eq!(table.stats().invalid, 0);
    }

    #[test]
    fn the_invalid_count_follows_every_change() {
        let table = TenantTable::new();
        let key = test_keys::generated_2048();
        let good = record(key, "https://a.example.com/");
        let count = |table: &TenantTable| (table.stats().tenants, table.stats().invalid);
        table.apply(b"a", Some(b"{not json"));
        table.apply(b"b", Some(b"{not json"));
        table.apply(b"c", Some(&good));
        assert_eq!(count(&table), (3, 2));
        // Invalid replaced by invalid, then by valid, and back.
        table.apply(b"a", Some(b"[]"));
        assert_eq!(count(&table), (3, 2));
        table.apply(b"a", Some(&good));
        assert_eq!(count(&table), (3, 1));
        table.apply(b"c", Some(b"{not json"));
        assert_eq!(count(&table), (3, 2));
        // Tombstones, including one for a tenant that does not exist.
        table.apply(b"b", None);
        table.apply(b"zzz", None);
        assert_eq!(count(&table), (2, 1));
        table.clear();
        assert_eq!(count(&table), (0, 0));
        table.apply(b"d", Some(b"{not json"));
        assert_eq!(count(&table), (1, 1));
    }
}
