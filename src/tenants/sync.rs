//! Keeping a [`TenantTable`] in step with the `tenants` topic: restore to the
//! high watermark, then follow.
//!
//! During the restore only the latest value of each key matters, so records
//! are first collected raw (later versions replacing earlier ones) and
//! validated afterwards, in parallel: a key is parsed once even when the
//! topic holds many versions of it.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

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
    let mut latest: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    let summary = reader
        .restore_to_high_watermark(
            |change| {
                latest.insert(change.key.to_vec(), change.value.map(<[u8]>::to_vec));
            },
            progress,
        )
        .await?;

    let records: Vec<(String, Option<Vec<u8>>)> = latest
        .into_iter()
        .filter_map(|(key, value)| table.usable_id(&key).map(|id| (id.to_string(), value)))
        .collect();
    let table_for_build = table.clone();
    let entries = tokio::task::spawn_blocking(move || build_in_parallel(&table_for_build, records))
        .await
        .expect("validating tenant records does not panic");
    table.install(entries);
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

/// Validates records on every core: RSA key parsing dominates a large
/// restore. Each worker owns its share of the raw records and drops every
/// value as soon as its entry is built, so the raw copy and the prepared
/// table are not both held in full at the peak.
fn build_in_parallel(
    table: &TenantTable,
    mut records: Vec<(String, Option<Vec<u8>>)>,
) -> Vec<(String, Option<TenantEntry>)> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = records.len().div_ceil(workers).max(1);
    let mut shares = Vec::with_capacity(workers);
    while records.len() > chunk {
        shares.push(records.split_off(records.len() - chunk));
    }
    shares.push(records);
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share
                        .into_iter()
                        .map(|(id, value)| {
                            let entry = value.map(|v| table.build_entry(&id, &v));
                            (id, entry)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("validating tenant records does not panic"))
            .collect()
    })
}

/// How long start-up waits for the cluster to answer before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
