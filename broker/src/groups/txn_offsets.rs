//! Transactional offset commits (TxnOffsetCommit, KIP-98/KIP-447): offsets a
//! transactional producer commits for a group are records of the group's
//! `__consumer_offsets` partition written in a *transactional* batch of that
//! producer. They stay pending ([`TxnOffsets`]) until the transaction
//! coordinator writes the producer's marker to the partition: COMMIT makes
//! them the group's committed offsets, ABORT drops them. Replay does the same
//! from the stream (pending records, then the marker), so the outcome after a
//! restart or an ownership change is the one clients saw.
//!
//! A marker also fences: a later TxnOffsetCommit with an older epoch of the
//! same producer (a zombie after its transaction was aborted by a newer
//! instance or a timeout) is refused with PRODUCER_FENCED.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;
use skiff_wire::kafka_protocol::error::ResponseError as E;

use super::records::RecordKey;
use super::{Code, CommitEntry, GroupCoordinator};
use crate::broker::Broker;
use crate::internal_topic;
use crate::producer_state::VerificationGuard;

/// Pending records of one producer on one offsets partition.
#[derive(Debug, Default)]
struct Pending {
    records: Vec<(RecordKey, Option<Bytes>)>,
}

/// Offsets of open transactions, per offsets partition and producer id.
#[derive(Debug, Default)]
pub struct TxnOffsets {
    pending: Mutex<HashMap<(u32, i64), Pending>>,
    /// The epoch of the last marker seen per (partition, producer).
    marked: Mutex<HashMap<(u32, i64), i16>>,
}

impl TxnOffsets {
    /// A transactional record of `producer` (replay, or after appending it).
    pub fn add(
        &self,
        partition: u32,
        producer: i64,
        _epoch: i16,
        key: RecordKey,
        value: Option<Bytes>,
    ) {
        self.pending
            .lock()
            .entry((partition, producer))
            .or_default()
            .records
            .push((key, value));
    }

    /// The producer's marker: the records to apply (COMMIT) or none (ABORT).
    pub fn complete(
        &self,
        partition: u32,
        producer: i64,
        epoch: i16,
        commit: bool,
    ) -> Vec<(RecordKey, Option<Bytes>)> {
        {
            let mut marked = self.marked.lock();
            let e = marked.entry((partition, producer)).or_insert(epoch);
            *e = (*e).max(epoch);
        }
        let pending = self.pending.lock().remove(&(partition, producer));
        match pending {
            Some(p) if commit => p.records,
            _ => Vec::new(),
        }
    }

    /// Forget a partition's state before replaying it.
    pub fn clear_partition(&self, partition: u32) {
        self.pending.lock().retain(|(p, _), _| *p != partition);
        self.marked.lock().retain(|(p, _), _| *p != partition);
    }

    /// PRODUCER_FENCED when a marker with a newer epoch of `producer` was
    /// written to `partition`.
    pub fn check_epoch(&self, partition: u32, producer: i64, epoch: i16) -> Result<(), Code> {
        match self.marked.lock().get(&(partition, producer)) {
            Some(&marked) if epoch < marked => Err(E::ProducerFenced.code()),
            _ => Ok(()),
        }
    }

    /// Whether an open transaction holds an offset of `group` for
    /// `topic`-`partition` (OffsetFetch with require_stable answers
    /// UNSTABLE_OFFSET_COMMIT for it).
    pub fn is_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.pending.lock().values().any(|p| {
            p.records.iter().any(|(k, _)| {
                matches!(k, RecordKey::Offset { group: g, topic: t, partition: q }
                    if g == group && t == topic && *q == partition)
            })
        })
    }

    /// Whether an open transaction has records on `partition` (compaction
    /// must not trim them away before their marker).
    pub fn has_pending_on(&self, partition: u32) -> bool {
        self.pending.lock().keys().any(|(p, _)| *p == partition)
    }

    /// Number of producers with pending offsets (metrics, tests).
    pub fn open_transactions(&self) -> usize {
        self.pending.lock().len()
    }
}

impl GroupCoordinator {
    /// TxnOffsetCommit: a code per entry, or one for the whole request.
    #[allow(clippy::too_many_arguments)]
    pub async fn txn_commit(
        &self,
        broker: &Broker,
        transactional_id: &str,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        entries: &[CommitEntry],
    ) -> Result<Vec<Code>, Code> {
        if group.is_empty() {
            return Err(E::InvalidGroupId.code());
        }
        let p = self.partition(broker, group).await?;
        self.txn_offsets
            .check_epoch(p.index, producer_id, producer_epoch)?;
        let simple = generation < 0 && member.is_empty() && instance.is_none();
        if !simple {
            let check = self
                .with_group(group, p.index, false, |g| {
                    g.check_member(member, instance, generation)
                })
                .unwrap_or(E::IllegalGeneration.code());
            if check != 0 {
                return Err(check);
            }
        }
        let (codes, records) = self.offset_records(broker, group, entries);
        if records.is_empty() {
            return Ok(codes);
        }
        let guard = if broker.config.transaction_partition_verification_enable {
            Some(verify(broker, &p, transactional_id, producer_id, producer_epoch).await?)
        } else {
            None
        };
        let encoded: Vec<(Bytes, Option<Bytes>)> = records
            .iter()
            .map(|(k, v)| (k.encode(), v.clone()))
            .collect();
        let result = async {
            let pending = {
                let lock = self.lock_for(p.index);
                let _guard = lock.lock().await;
                // A marker for the producer since the verification: its
                // transaction ended, this commit belongs to it and is late.
                let late = guard.map(|g| (g, E::InvalidTxnState.code()));
                let pending = internal_topic::append_checked(
                    &p,
                    &encoded,
                    Some((producer_id, producer_epoch)),
                    late,
                )
                .await?;
                for (k, v) in records {
                    self.txn_offsets
                        .add(p.index, producer_id, producer_epoch, k, v);
                }
                pending
            };
            pending
                .await
                .map(|_| ())
                .map_err(|_| E::NotCoordinator.code())
        }
        .await;
        if let Some(g) = guard {
            p.producers.update(|s| s.end_verification(producer_id, g));
        }
        Ok(super::with_write_result(codes, result))
    }

    /// The transaction coordinator wrote `producer`'s marker to offsets
    /// partition `partition` (which this broker owns): apply or drop the
    /// producer's pending offsets there.
    pub async fn complete_txn(&self, partition: u32, producer: i64, epoch: i16, commit: bool) {
        let lock = self.lock_for(partition);
        let _guard = lock.lock().await;
        for (k, v) in self
            .txn_offsets
            .complete(partition, producer, epoch, commit)
        {
            self.apply(partition, k, v);
        }
    }

    /// Whether `group` has a transactional offset pending for the partition.
    pub fn txn_offset_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.txn_offsets.is_pending(group, topic, partition)
    }
}

/// KIP-890 part 1 for TxnOffsetCommit, as for produce: the group's offsets
/// partition must be in the producer's ongoing transaction (AddOffsetsToTxn
/// put it there), else a TxnOffsetCommit held up past an abort would leave
/// pending offsets the producer's next commit marker applies, and a
/// consume-transform-produce loop would skip the aborted input. Codes are the
/// ones TxnOffsetCommit clients act on: retry on COORDINATOR_NOT_AVAILABLE,
/// PRODUCER_FENCED, INVALID_TXN_STATE.
async fn verify(
    broker: &Broker,
    p: &crate::partitions::Partition,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<VerificationGuard, Code> {
    broker
        .transactions
        .verify_for_append(broker, p, transactional_id, producer_id, producer_epoch)
        .await
        .map_err(|e| match e.code {
            E::NotEnoughReplicas => E::CoordinatorNotAvailable.code(),
            E::InvalidProducerEpoch => E::ProducerFenced.code(),
            c => c.code(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> RecordKey {
        RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: p,
        }
    }

    #[test]
    fn commit_applies_abort_drops_and_fences_older_epochs() {
        let t = TxnOffsets::default();
        t.add(3, 7, 0, key(0), Some(Bytes::from_static(b"a")));
        t.add(3, 7, 0, key(1), Some(Bytes::from_static(b"b")));
        t.add(3, 8, 0, key(2), Some(Bytes::from_static(b"c")));
        assert!(t.is_pending("g", "t", 0));
        assert!(!t.is_pending("g", "t", 5));
        assert_eq!(t.complete(3, 7, 0, true).len(), 2);
        assert!(!t.is_pending("g", "t", 0));
        assert!(t.complete(3, 8, 1, false).is_empty(), "abort drops");
        assert_eq!(t.open_transactions(), 0);
        assert_eq!(t.check_epoch(3, 8, 0), Err(E::ProducerFenced.code()));
        assert_eq!(t.check_epoch(3, 8, 1), Ok(()));
        assert_eq!(
            t.check_epoch(4, 8, 0),
            Ok(()),
            "other partitions unaffected"
        );
        // A marker with nothing pending is fine; replay clears the partition.
        assert!(t.complete(3, 9, 0, true).is_empty());
        t.add(3, 9, 0, key(0), None);
        t.clear_partition(3);
        assert_eq!(t.open_transactions(), 0);
        assert_eq!(t.check_epoch(3, 8, 0), Ok(()));
    }
}
