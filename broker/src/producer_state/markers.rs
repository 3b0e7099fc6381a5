//! [`PartitionManager::write_txn_marker`]: the partition side of ending a
//! transaction (used by the transaction coordinator and WriteTxnMarkers).

use skiff_storage::TryAppendError;
use skiff_wire::records::BatchMut;

use super::control::marker_batch;
use super::state::MarkerInfo;
use crate::cluster::now_ms;
use crate::errors::{KafkaError, append_error};
use crate::partitions::PartitionManager;

/// A COMMIT or ABORT marker for one producer's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
}

impl PartitionManager {
    /// Append a COMMIT/ABORT control batch for this producer to the
    /// partition, ending its ongoing transaction there (the last stable offset
    /// advances; an abort enters the aborted index). Returns the marker's
    /// offset once durable. Idempotent: a marker for a producer with no
    /// ongoing transaction on the partition is still written (Kafka does the
    /// same) and succeeds. Fails with INVALID_PRODUCER_EPOCH if
    /// `producer_epoch` is older than the partition's epoch for that producer
    /// (TRANSACTION_COORDINATOR_FENCED for an older coordinator epoch),
    /// NOT_LEADER_OR_FOLLOWER if this broker does not own it.
    pub async fn write_txn_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: TxnMarker,
    ) -> Result<i64, KafkaError> {
        let p = self.get(topic, partition).await?;
        let now = now_ms();
        let info = MarkerInfo {
            producer_id: marker.producer_id,
            epoch: marker.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            commit: marker.commit,
            timestamp: now as i64,
        };
        let leader_epoch = p.leader_epoch();
        let pending = p
            .stream
            .try_append_with(
                1,
                |base| {
                    p.producers.with(|s| s.check_marker(&info))?;
                    let mut buf = bytes::BytesMut::from(marker_batch(&info).as_ref());
                    if let Ok(mut m) = BatchMut::new(&mut buf) {
                        m.set_base_offset(base as i64);
                        m.set_partition_leader_epoch(leader_epoch);
                    }
                    Ok((buf.freeze(), base as i64))
                },
                |base| p.producers.update(|s| s.apply_marker(&info, base, now)),
            )
            .await
            .map_err(|e| match e {
                TryAppendError::Rejected(k) => k,
                TryAppendError::Append(e) => append_error(&e),
            })?;
        let done = pending.await.map_err(|e| append_error(&e))?;
        Ok(done.base_offset as i64)
    }
}
