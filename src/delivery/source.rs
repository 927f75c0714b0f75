//! The group consumer's assigned partitions as the partition driver sees
//! them ([`PartitionSource`]): records copied out of the fetch buffer,
//! offsets stored and committed with their metadata, the committed state
//! read back when a partition arrives.

use std::sync::Arc;
use std::time::Duration;

use super::partition::{PartitionLost, PartitionSource};
use crate::kafka::group::{PartitionHandle, PartitionQueue};
use crate::kafka::record::Record;
use crate::kafka::transactional::TRANSACTION_TIMEOUT;

/// How long a newly assigned partition waits for its committed offset and
/// metadata before it starts without them (and may deliver records that
/// were finished above the committed offset once more). The broker holds
/// the answer back while a transaction that commits the partition's offset
/// is open: a dead letter's transaction left by a replica that died lasts
/// until the broker aborts it, `TRANSACTION_TIMEOUT` plus up to its 10 s
/// clean-up interval; 10 s more for a busy broker's answer.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(TRANSACTION_TIMEOUT.as_secs() + 20);

/// One assigned partition of the events topic.
pub struct KafkaPartition {
    queue: PartitionQueue,
    handle: PartitionHandle,
}

impl KafkaPartition {
    pub fn new(queue: PartitionQueue, handle: PartitionHandle) -> Self {
        Self { queue, handle }
    }
}

impl PartitionSource for KafkaPartition {
    type Record = Record;

    fn partition(&self) -> i32 {
        self.handle.partition()
    }

    async fn next(&self) -> Record {
        loop {
            match self.queue.next().await {
                Ok(record) => return record,
                Err(e) => {
                    tracing::warn!(partition = self.partition(), error = %e, "fetch error");
                }
            }
        }
    }

    async fn committed(&self) -> Option<(i64, String)> {
        let handle = self.handle.clone();
        let committed =
            tokio::task::spawn_blocking(move || handle.committed(COMMITTED_TIMEOUT)).await;
        match committed {
            Ok(Ok(committed)) => committed,
            Ok(Err(e)) => {
                tracing::warn!(
                    partition = self.partition(),
                    error = %e,
                    "cannot read the committed offset's metadata; records finished above it may be delivered again"
                );
                None
            }
            Err(_) => None,
        }
    }

    fn store(&self, offset: i64, metadata: &str) -> Result<(), PartitionLost> {
        self.handle
            .store_with_metadata(offset, metadata)
            .map_err(|_| PartitionLost(self.partition()))
    }

    async fn commit(&self, offset: i64, metadata: &str) -> bool {
        let handle = self.handle.clone();
        let metadata: Arc<str> = Arc::from(metadata);
        let result =
            tokio::task::spawn_blocking(move || handle.commit_with_metadata(offset, &metadata))
                .await;
        match result {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(partition = self.partition(), error = %e, "metadata commit failed; tried again");
                false
            }
            Err(_) => false,
        }
    }

    fn lag(&self, next_offset: i64) -> Option<i64> {
        self.handle.lag(next_offset)
    }
}
