//! [`ProducerStates`]: the per-partition rules of Kafka's
//! `ProducerStateManager` / `ProducerAppendInfo`, as pure logic over batch
//! headers (no I/O), so that the produce path, marker writes and the replay
//! of a stream after its snapshot all run the same code.
//!
//! Rules (Kafka 3.x/4.x semantics):
//! - A batch whose producer epoch equals the entry's and whose sequence range
//!   equals one of the last [`MAX_BATCHES`] batches is a duplicate: answered
//!   with the original offsets, not appended.
//! - An older epoch is INVALID_PRODUCER_EPOCH (Kafka replaced PRODUCER_FENCED
//!   by it for produce responses in 2.7).
//! - A newer epoch must start at sequence 0, unless the producer is unknown.
//! - The same epoch must continue at last sequence + 1 (0 after `i32::MAX`),
//!   else OUT_OF_ORDER_SEQUENCE_NUMBER.
//! - An unknown producer (no entry: never seen, expired, or evicted) must
//!   start at sequence 0, else UNKNOWN_PRODUCER_ID: Kafka 0.11-2.4's rule,
//!   not KIP-360's "any sequence". Accepting a later sequence acknowledges a
//!   gap: when a producer's first batch to a partition is refused outright
//!   (say while the partition opens) and its pipelined successor is accepted,
//!   librdkafka marks the first as delivered (an "implicit ack") although it
//!   was never written. Both librdkafka and the Java client answer
//!   UNKNOWN_PRODUCER_ID by bumping their epoch and resending from sequence 0
//!   when that cannot duplicate anything.
//! - A transactional batch starts a transaction on the partition if none is
//!   ongoing; a non-transactional batch during one is INVALID_TXN_STATE.
//! - A marker from an older producer epoch is INVALID_PRODUCER_EPOCH, from an
//!   older coordinator epoch TRANSACTION_COORDINATOR_FENCED; it ends the
//!   ongoing transaction (an abort enters the aborted index).
//! - KIP-890 part 1 (Kafka 3.6+ `transaction.partition.verification.enable`):
//!   a transactional batch that would start a transaction on the partition
//!   must carry a [`VerificationGuard`] taken before the transaction
//!   coordinator confirmed the partition is in the producer's ongoing
//!   transaction. A marker for the producer voids its guard, so a batch held
//!   up past the end of its transaction (a paused broker, a slow disk) cannot
//!   open a transaction the coordinator does not know: that "hanging"
//!   transaction would hold the last stable offset back and be closed as
//!   committed by the producer's next marker, exposing aborted records.

use std::collections::{BTreeMap, HashMap, VecDeque};

use skiff_wire::kafka_protocol::error::ResponseError;

use crate::errors::KafkaError;

/// Batches remembered per producer for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`, also the client's max in-flight requests).
pub const MAX_BATCHES: usize = 5;

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
const NO_EPOCH: i16 = -1;

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

/// What the state keeps per producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub coordinator_epoch: i32,
    /// Oldest first.
    pub batches: VecDeque<BatchMeta>,
    /// First offset of the transaction ongoing on this partition.
    pub txn_first_offset: Option<i64>,
    /// Max timestamp of the producer's last write (batch or marker).
    pub last_timestamp: i64,
    /// Wall-clock ms of the last write, for expiry.
    pub last_update_ms: u64,
}

impl ProducerEntry {
    fn new() -> Self {
        Self {
            epoch: NO_EPOCH,
            coordinator_epoch: -1,
            batches: VecDeque::new(),
            txn_first_offset: None,
            last_timestamp: -1,
            last_update_ms: 0,
        }
    }

    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    fn set_epoch(&mut self, epoch: i16) {
        if self.epoch != epoch {
            self.batches.clear();
            self.epoch = epoch;
        }
    }
}

/// A finished aborted transaction: Kafka's `AbortedTxn` (the last offset is
/// the marker's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// The producer fields of a data batch's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    /// Records in the batch minus one (Kafka's last offset delta).
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
    pub transactional: bool,
}

impl BatchInfo {
    /// Sequence of the last record, wrapping after `i32::MAX` as Kafka does.
    pub fn last_seq(&self) -> i32 {
        increment_sequence(self.first_seq, self.last_offset_delta)
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`.
pub fn increment_sequence(seq: i32, by: i32) -> i32 {
    if seq > i32::MAX - by {
        by - (i32::MAX - seq) - 1
    } else {
        seq + by
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// A transaction marker as applied to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerInfo {
    pub producer_id: i64,
    pub epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
    pub timestamp: i64,
}

/// Result of checking a data batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it.
    Append,
    /// Already written: answer with these offsets.
    Duplicate(BatchMeta),
}

/// Per-partition producer state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    pub(crate) producers: HashMap<i64, ProducerEntry>,
    /// First offset of each ongoing transaction -> producer id.
    pub(crate) ongoing: BTreeMap<i64, i64>,
    /// Ordered by last offset (markers are appended in offset order).
    pub(crate) aborted: VecDeque<AbortedTxn>,
    /// Transactions whose marker is written but maybe not durable yet:
    /// first offset -> marker offset. They hold the last stable offset back
    /// until the high watermark passes their marker (as in Kafka), so a
    /// consumer never reads a commit a crash could undo. Not snapshotted:
    /// snapshots only cover durable offsets.
    pub(crate) completing: BTreeMap<i64, i64>,
    /// Verifications in flight: producer id -> guard (memory only, never
    /// snapshotted; voided by the producer's next marker).
    pub(crate) verifying: HashMap<i64, VerificationGuard>,
    /// Last guard handed out.
    pub(crate) last_guard: u64,
}

/// Proof that the coordinator was asked, after the producer's last marker on
/// this partition, whether the partition is in its ongoing transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerificationGuard(u64);

impl ProducerStates {
    pub fn producer(&self, id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&id)
    }

    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, e)| (*id, e))
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Check a client's data batch (no state change).
    pub fn check_data(&self, b: &BatchInfo) -> Result<Check, KafkaError> {
        let Some(entry) = self.producers.get(&b.producer_id) else {
            if b.first_seq != 0 {
                return Err(KafkaError::new(
                    ResponseError::UnknownProducerId,
                    format!(
                        "producer {} is unknown on this partition and starts at sequence {}, not 0",
                        b.producer_id, b.first_seq
                    ),
                ));
            }
            return Ok(Check::Append);
        };
        if entry.epoch == b.epoch {
            let last = b.last_seq();
            if let Some(d) = entry
                .batches
                .iter()
                .find(|m| m.first_seq == b.first_seq && m.last_seq == last)
            {
                return Ok(Check::Duplicate(*d));
            }
        }
        if b.epoch < entry.epoch {
            return Err(KafkaError::new(
                ResponseError::InvalidProducerEpoch,
                format!(
                    "epoch {} of producer {} is older than the last seen epoch {}",
                    b.epoch, b.producer_id, entry.epoch
                ),
            ));
        }
        if b.epoch != entry.epoch {
            if b.first_seq != 0 && entry.epoch != NO_EPOCH {
                return Err(out_of_order(format!(
                    "producer {} starts epoch {} at sequence {}, not 0",
                    b.producer_id, b.epoch, b.first_seq
                )));
            }
        } else if let Some(last) = entry.last_seq()
            && !in_sequence(last, b.first_seq)
        {
            return Err(out_of_order(format!(
                "producer {}: sequence {} does not follow {last}",
                b.producer_id, b.first_seq
            )));
        }
        if entry.txn_first_offset.is_some() && !b.transactional {
            return Err(KafkaError::new(
                ResponseError::InvalidTxnState,
                format!(
                    "producer {} wrote a non-transactional batch during its transaction",
                    b.producer_id
                ),
            ));
        }
        Ok(Check::Append)
    }

    /// Whether `b` would start a transaction on this partition, so it must
    /// be verified with the coordinator first (KIP-890).
    pub fn needs_verification(&self, b: &BatchInfo) -> bool {
        b.transactional
            && self
                .producers
                .get(&b.producer_id)
                .is_none_or(|e| e.txn_first_offset.is_none())
    }

    /// Start verifying a batch of `producer_id`: the guard stays valid until
    /// the producer's next marker or [`Self::end_verification`].
    pub fn begin_verification(&mut self, producer_id: i64) -> VerificationGuard {
        self.last_guard += 1;
        let guard = VerificationGuard(self.last_guard);
        self.verifying.insert(producer_id, guard);
        guard
    }

    /// Whether `guard` is `producer_id`'s current one (no marker since).
    pub fn guard_valid(&self, producer_id: i64, guard: VerificationGuard) -> bool {
        self.verifying.get(&producer_id) == Some(&guard)
    }

    /// Forget `guard` (the batch was appended or refused).
    pub fn end_verification(&mut self, producer_id: i64, guard: VerificationGuard) {
        if self.verifying.get(&producer_id) == Some(&guard) {
            self.verifying.remove(&producer_id);
        }
    }

    /// With verification on, a batch that starts a transaction needs a guard
    /// no marker has voided since it was taken. A missing or voided guard
    /// means the producer's transaction here ended (or began) while the batch
    /// was on its way: NOT_ENOUGH_REPLICAS, which clients retry, and the
    /// retry is verified afresh (and refused if its transaction is over).
    pub fn check_verified(
        &self,
        b: &BatchInfo,
        guard: Option<VerificationGuard>,
    ) -> Result<(), KafkaError> {
        if !self.needs_verification(b) {
            return Ok(());
        }
        match guard {
            Some(g) if self.guard_valid(b.producer_id, g) => Ok(()),
            _ => Err(KafkaError::new(
                ResponseError::NotEnoughReplicas,
                format!(
                    "the transaction of producer {} on this partition changed while its batch was verified; retry",
                    b.producer_id
                ),
            )),
        }
    }

    /// Record a data batch written at `[first_offset, first_offset + delta]`
    /// (checked, or replayed from the log).
    pub fn apply_data(&mut self, b: &BatchInfo, first_offset: i64, now_ms: u64) {
        let entry = self
            .producers
            .entry(b.producer_id)
            .or_insert_with(ProducerEntry::new);
        entry.set_epoch(b.epoch);
        if entry.batches.len() >= MAX_BATCHES {
            entry.batches.pop_front();
        }
        let last_offset = first_offset + i64::from(b.last_offset_delta);
        entry.batches.push_back(BatchMeta {
            first_seq: b.first_seq,
            last_seq: b.last_seq(),
            first_offset,
            last_offset,
            timestamp: b.max_timestamp,
        });
        entry.last_timestamp = b.max_timestamp;
        entry.last_update_ms = now_ms;
        if b.transactional && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(first_offset);
            self.ongoing.insert(first_offset, b.producer_id);
        }
    }

    /// Check a transaction marker from the coordinator (no state change).
    pub fn check_marker(&self, m: &MarkerInfo) -> Result<(), KafkaError> {
        let Some(entry) = self.producers.get(&m.producer_id) else {
            return Ok(());
        };
        if m.epoch < entry.epoch {
            return Err(KafkaError::new(
                ResponseError::InvalidProducerEpoch,
                format!(
                    "marker epoch {} of producer {} is older than the last seen epoch {}",
                    m.epoch, m.producer_id, entry.epoch
                ),
            ));
        }
        if m.coordinator_epoch < entry.coordinator_epoch {
            return Err(KafkaError::new(
                ResponseError::TransactionCoordinatorFenced,
                format!(
                    "coordinator epoch {} is older than {}",
                    m.coordinator_epoch, entry.coordinator_epoch
                ),
            ));
        }
        Ok(())
    }

    /// Record a marker written at `offset`: ends the producer's transaction.
    pub fn apply_marker(&mut self, m: &MarkerInfo, offset: i64, now_ms: u64) {
        let entry = self
            .producers
            .entry(m.producer_id)
            .or_insert_with(ProducerEntry::new);
        entry.set_epoch(m.epoch);
        entry.coordinator_epoch = m.coordinator_epoch;
        entry.last_timestamp = m.timestamp;
        entry.last_update_ms = now_ms;
        self.verifying.remove(&m.producer_id);
        if let Some(first) = entry.txn_first_offset.take() {
            self.ongoing.remove(&first);
            self.completing.insert(first, offset);
            if !m.commit {
                self.aborted.push_back(AbortedTxn {
                    producer_id: m.producer_id,
                    first_offset: first,
                    last_offset: offset,
                });
            }
        }
    }

    /// Kafka's last stable offset: the first offset of the earliest ongoing
    /// transaction, else the high watermark.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let completing = self
            .completing
            .iter()
            .find(|(_, marker)| **marker >= high_watermark)
            .map(|(first, _)| *first);
        self.ongoing
            .keys()
            .next()
            .copied()
            .into_iter()
            .chain(completing)
            .fold(high_watermark, i64::min)
    }

    /// Forget completed transactions whose marker is below the high
    /// watermark (durable).
    pub fn settle(&mut self, high_watermark: i64) {
        self.completing
            .retain(|_, marker| *marker >= high_watermark);
    }

    /// Aborted transactions overlapping `[from, to)` (Kafka's
    /// `collectAbortedTransactions`).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forget aborted transactions wholly below the log start.
    pub fn prune_aborted(&mut self, log_start: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start)
        {
            self.aborted.pop_front();
        }
    }

    /// Drop producers idle since `older_than_ms` with no ongoing
    /// transaction (Kafka's `producer.id.expiration.ms`). Returns how many.
    pub fn expire(&mut self, older_than_ms: u64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.txn_first_offset.is_some() || e.last_update_ms >= older_than_ms);
        before - self.producers.len()
    }

    /// Keep at most `max` producers: evict the least recently written ones
    /// without an ongoing transaction (they become unknown producers, whose
    /// next batch must start at sequence 0, else UNKNOWN_PRODUCER_ID, and the client bumps its epoch).
    pub fn bound(&mut self, max: usize) -> usize {
        if self.producers.len() <= max {
            return 0;
        }
        // Evict down to 90% so a full table does not scan on every batch.
        let target = max - max / 10;
        let mut idle: Vec<(u64, i64)> = self
            .producers
            .iter()
            .filter(|(_, e)| e.txn_first_offset.is_none())
            .map(|(id, e)| (e.last_update_ms, *id))
            .collect();
        idle.sort_unstable();
        let excess = self.producers.len().saturating_sub(target);
        let mut n = 0;
        for (_, id) in idle.into_iter().take(excess) {
            self.producers.remove(&id);
            n += 1;
        }
        n
    }
}

fn out_of_order(msg: String) -> KafkaError {
    KafkaError::new(ResponseError::OutOfOrderSequenceNumber, msg)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
