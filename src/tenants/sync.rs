//! Keeping a [`TenantTable`] in step with the `tenants` topic: restore to
//! the high watermark, then follow.
//!
//! During the restore, records are validated as they are read, on one
//! thread per core, and each entry goes into the table as soon as it is
//! built, so that neither the raw values nor a second copy of the entries
//! accumulate: holding every raw value until the high watermark (about
//! 70 MB for 100,000 records) added that much to the peak, and so did
//! collecting the entries before installing them (about 100 MB for a
//! million). Only the latest version of a key ends up in the table: every
//! version of a key goes to the same thread, in the order read, and a later
//! one replaces the entry of an earlier one. A key with several versions in
//! the topic (the part the log cleaner has not compacted yet) is parsed
//! once per version; validation failures and unusable keys are counted and
//! logged only for the versions that remain, once the restore is complete,
//! as if only those had been parsed. The table is not marked restored (and
//! so not used for deliveries) until then.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use tokio_util::sync::CancellationToken;

use super::record::validate_id;
use super::table::{TenantEntry, TenantTable};
use crate::kafka::table_reader::{RestoreProgress, RestoreSummary, TableReader, TableReaderError};

/// Restores `table` from `reader` to the high watermark and marks it
/// restored. `progress` is called periodically while the restore runs.
pub async fn restore(
    table: &TenantTable,
    reader: &TableReader,
    progress: impl FnMut(RestoreProgress),
) -> Result<RestoreSummary, TableReaderError> {
    let started = std::time::Instant::now();
    // A restore tried again after a failure starts from an empty table: a
    // tenant deleted (and compacted away) since must not stay.
    table.clear();
    let mut validators = Validators::start(table);
    let summary = reader
        .restore_to_high_watermark(|change| validators.send(change.key, change.value), progress)
        .await?;

    let table_for_build = table.clone();
    tokio::task::spawn_blocking(move || validators.finish(&table_for_build))
        .await
        .expect("validating tenant records does not panic");
    table.mark_restored();
    let stats = table.stats();
    tracing::info!(
        tenants = stats.tenants,
        invalid = stats.invalid,
        records = summary.records,
        elapsed_ms = summary.elapsed.as_millis() as u64,
        // Reading plus validating: how long the restore kept the replica
        // from being ready.
        total_ms = started.elapsed().as_millis() as u64,
        "tenant table restored"
    );
    Ok(summary)
}

/// Applies live updates until `shutdown` is cancelled.
pub async fn follow(table: TenantTable, reader: TableReader, shutdown: CancellationToken) {
    reader
        .follow(|change| table.apply(change.key, change.value), shutdown)
        .await;
}

/// Records handed to a validating thread at once: one wake-up per batch
/// rather than per record (waking a thread per record was a tenth of a
/// restore's CPU).
const BATCH_RECORDS: usize = 64;

/// Batches waiting for each validating thread: enough to keep it busy, few
/// enough that the raw values held at once stay small (about 150 KB of
/// typical 600-byte records). The reader waits when a queue is full.
const QUEUE_BATCHES: usize = 4;

/// One record read: its key and value (`None` for a tombstone).
type Raw = (Vec<u8>, Option<Vec<u8>>);

/// The keys a validating thread was given that are not tenant ids.
type Unusable = HashSet<Vec<u8>>;

/// The validating threads of one restore. Dropped without
/// [`Validators::finish`] (a failed or cancelled restore), it closes their
/// queues and waits for them to end, so that no entry of this restore
/// lands in the table after the next one has started.
struct Validators {
    queues: Vec<SyncSender<Vec<Raw>>>,
    /// The batch being filled for each thread.
    batches: Vec<Vec<Raw>>,
    threads: Vec<JoinHandle<Unusable>>,
    /// aHash, as the table's (SipHash cost more than it needs to here).
    hasher: quick_cache::DefaultHashBuilder,
}

impl Validators {
    /// Starts one validating thread per core (RSA key parsing dominates),
    /// each putting its entries into `table`.
    fn start(table: &TenantTable) -> Self {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (queues, threads) = (0..count)
            .map(|_| {
                let (queue, records) = sync_channel(QUEUE_BATCHES);
                let table = table.clone();
                (
                    queue,
                    std::thread::spawn(move || validate(&records, &table)),
                )
            })
            .unzip();
        Self {
            queues,
            batches: (0..count).map(|_| Vec::new()).collect(),
            threads,
            hasher: Default::default(),
        }
    }

    /// Hands one record to the thread that validates its key, in batches.
    /// Blocks while that thread's queue is full, which is never for long
    /// (the thread drains it without waiting on anything), so the async
    /// reader calling this holds its runtime thread only briefly.
    fn send(&mut self, key: &[u8], value: Option<&[u8]>) {
        let index = (self.hasher.hash_one(key) % self.queues.len() as u64) as usize;
        let batch = &mut self.batches[index];
        batch.push((key.to_vec(), value.map(<[u8]>::to_vec)));
        if batch.len() >= BATCH_RECORDS {
            let full = std::mem::replace(batch, Vec::with_capacity(BATCH_RECORDS));
            // A thread only stops early by panicking, which `finish` reports.
            let _ = self.queues[index].send(full);
        }
    }

    /// Waits for the threads to validate every record sent, then counts
    /// and logs, for the latest version of each key only, unusable keys and
    /// invalid records.
    fn finish(mut self, table: &TenantTable) {
        for (queue, batch) in self.queues.iter().zip(&mut self.batches) {
            if !batch.is_empty() {
                let _ = queue.send(std::mem::take(batch));
            }
        }
        self.queues.clear();
        for thread in std::mem::take(&mut self.threads) {
            let unusable = thread
                .join()
                .expect("validating tenant records does not panic");
            for key in unusable {
                // Counts and logs it.
                let _ = table.usable_id(&key);
            }
        }
        table.note_invalid_entries();
    }
}

impl Drop for Validators {
    fn drop(&mut self) {
        self.queues.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A validating thread: builds the entry of every record it is given and
/// puts it into `table` (a tombstone removes), until the queue is closed.
fn validate(records: &Receiver<Vec<Raw>>, table: &TenantTable) -> Unusable {
    let mut unusable = Unusable::new();
    while let Ok(batch) = records.recv() {
        for (key, value) in batch {
            // Unusable keys are reported by `finish`, once per key.
            let Some(id) = std::str::from_utf8(&key)
                .ok()
                .filter(|id| validate_id(id).is_ok())
            else {
                unusable.insert(key);
                continue;
            };
            match value {
                Some(value) => table.insert(TenantEntry::from_value_sharing(
                    id,
                    &value,
                    table.patterns(),
                )),
                None => table.remove(id),
            }
        }
    }
    unusable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_keys;

    fn record(url: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "url": url,
            "public_key": test_keys::RSA2048_SPKI,
        }))
        .unwrap()
    }

    fn url_of(table: &TenantTable, id: &str) -> Option<String> {
        match table.get(id).as_deref() {
            Some(TenantEntry::Valid(tenant)) => Some(tenant.url().to_string()),
            _ => None,
        }
    }

    #[test]
    fn the_latest_version_of_each_key_wins_and_only_it_is_reported() {
        let table = TenantTable::new();
        let mut validators = Validators::start(&table);
        let bad = b"{not json".to_vec();
        let mut sent: Vec<(&[u8], Option<Vec<u8>>)> = vec![
            // Invalid, then healed: not counted as invalid.
            (b"healed", Some(bad.clone())),
            (b"healed", Some(record("https://healed.example.com/"))),
            // Valid, then deleted.
            (b"deleted", Some(record("https://deleted.example.com/"))),
            (b"deleted", None),
            // Deleted, then valid again.
            (b"revived", None),
            (b"revived", Some(record("https://revived.example.com/"))),
            // Invalid twice: counted once, as its latest version.
            (b"broken", Some(bad.clone())),
            (b"broken", Some(bad)),
            // Not tenant ids: reported once per key, never installed.
            (b"\xff", Some(record("https://x.example.com/"))),
            (b"\xff", None),
            (b"", Some(record("https://y.example.com/"))),
        ];
        // Many versions of one key, spread between the others.
        for version in 0..1_000 {
            let url = format!("https://busy.example.com/{version}");
            sent.insert(version % sent.len(), (b"busy", Some(record(&url))));
        }
        sent.push((b"busy", Some(record("https://busy.example.com/last"))));
        for (key, value) in &sent {
            validators.send(key, value.as_deref());
        }
        validators.finish(&table);

        assert_eq!(
            url_of(&table, "healed").as_deref(),
            Some("https://healed.example.com/")
        );
        assert!(table.get("deleted").is_none());
        assert_eq!(
            url_of(&table, "revived").as_deref(),
            Some("https://revived.example.com/")
        );
        assert_eq!(
            url_of(&table, "busy").as_deref(),
            Some("https://busy.example.com/last")
        );
        assert!(matches!(
            table.get("broken").as_deref(),
            Some(TenantEntry::Invalid { .. })
        ));
        let stats = table.stats();
        assert_eq!((stats.tenants, stats.invalid), (4, 1));
        assert_eq!(stats.invalid_records, 1);
        assert_eq!(stats.unusable_keys, 2);
    }

    #[test]
    fn a_restore_that_reads_nothing_installs_nothing() {
        let table = TenantTable::new();
        Validators::start(&table).finish(&table);
        assert_eq!(table.stats(), Default::default());
    }
}
