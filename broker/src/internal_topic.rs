//! Plumbing shared by the coordinators that keep their state as records of
//! an internal topic (`__consumer_offsets` for groups, `__transaction_state`
//! for transactions), so both use one path for:
//!
//! - creating the topic on first use ([`ensure`], `retention.ms=-1` so time
//!   retention never drops state);
//! - finding and opening the partition a key hashes to, with the error codes
//!   a coordinator answers ([`find`], [`open`]);
//! - knowing whether a partition was replayed at its current stream epoch
//!   ([`LoadState`]: a reopened partition, e.g. after an ownership change, is
//!   replayed again);
//! - replaying a partition from its start ([`replay`]: plain records,
//!   transactional records with their producer, and COMMIT/ABORT markers);
//! - appending records as one batch, optionally transactional ([`append`]);
//!   the caller awaits the returned [`PendingAppend`] for durability.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use skiff_common::{StreamEpoch, StreamId};
use skiff_storage::{PendingAppend, TryAppendError};
use skiff_wire::kafka_protocol::error::ResponseError as E;
use skiff_wire::records::{BatchBuilder, BatchMut, BatchView, Compression, NewRecord};
use tracing::warn;

use crate::broker::Broker;
use crate::cluster::now_ms;
use crate::errors::KafkaError;
use crate::partitions::Partition;
use crate::producer_state::VerificationGuard;
use crate::topics::{self, TopicSpec};

/// A coordinator-level error code.
pub type Code = i16;

/// Most bytes read per call while replaying.
const REPLAY_READ_BYTES: usize = 1 << 20;
/// Largest decompressed batch replay accepts.
const REPLAY_MAX_BATCH: usize = 64 << 20;

/// Create the internal topic `name` with `partitions` partitions if it does
/// not exist yet.
pub async fn ensure(broker: &Broker, name: &str, partitions: u32) -> Result<(), KafkaError> {
    if broker.cluster.read(|s| s.topics.contains_key(name)) {
        return Ok(());
    }
    let spec = TopicSpec {
        name: name.to_string(),
        partitions: partitions.clamp(1, i32::MAX as u32) as i32,
        replication_factor: -1,
        assignments: BTreeMap::new(),
        configs: [("retention.ms".to_string(), "-1".to_string())].into(),
    };
    match topics::create_topic(broker, spec).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == E::TopicAlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The partition of `name` that `key` hashes to and its owner (creating the
/// topic first), or the error FindCoordinator should answer.
pub async fn find(
    broker: &Broker,
    name: &str,
    partitions: u32,
    key: &str,
) -> Result<(u32, i32), KafkaError> {
    ensure(broker, name, partitions).await?;
    broker
        .cluster
        .read(|s| s.coordinator_for(name, key))
        .map(|(p, b)| (p, b.0))
        .ok_or_else(|| {
            KafkaError::new(
                E::CoordinatorNotAvailable,
                format!("the {name} partition is not placed yet"),
            )
        })
}

/// This broker's open partition of `name` for `key`: NOT_COORDINATOR when
/// another broker owns it, COORDINATOR_NOT_AVAILABLE when it is not placed.
pub async fn open(broker: &Broker, name: &str, key: &str) -> Result<Arc<Partition>, Code> {
    let (index, owner) = broker
        .cluster
        .read(|s| s.coordinator_for(name, key))
        .ok_or(E::CoordinatorNotAvailable.code())?;
    if owner.0 != broker.id() {
        return Err(E::NotCoordinator.code());
    }
    open_index(broker, name, index).await
}

/// This broker's open partition `index` of `name`.
pub async fn open_index(broker: &Broker, name: &str, index: u32) -> Result<Arc<Partition>, Code> {
    broker
        .partitions
        .get(name, index as i32)
        .await
        .map_err(|e| match e.code {
            E::NotLeaderOrFollower => E::NotCoordinator.code(),
            _ => E::CoordinatorNotAvailable.code(),
        })
}

/// The partitions of `name` this broker owns.
pub fn owned_partitions(broker: &Broker, name: &str) -> Vec<u32> {
    broker.cluster.read(|s| {
        s.topics
            .get(name)
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.owner.map(|b| b.0) == Some(broker.id()))
                    .map(|(i, _)| i as u32)
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// A partition's load status: the stream and epoch replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    stream: StreamId,
    epoch: StreamEpoch,
}

impl Loaded {
    pub fn of(p: &Partition) -> Self {
        Self {
            stream: p.stream.id(),
            epoch: p.stream.epoch(),
        }
    }
}

/// Which partitions a coordinator has replayed, and a lock per partition
/// that serialises replay and appends (so records reach memory in stream
/// order).
#[derive(Debug, Default)]
pub struct LoadState {
    loaded: Mutex<HashMap<u32, Loaded>>,
    locks: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
}

impl LoadState {
    pub fn lock_for(&self, partition: u32) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(partition).or_default().clone()
    }

    /// Whether `p` was replayed at its current stream epoch.
    pub fn is_current(&self, p: &Partition) -> bool {
        self.loaded.lock().get(&p.index) == Some(&Loaded::of(p))
    }

    /// `None` when `p` is loaded; otherwise the partition's lock, held while
    /// the caller replays it and then calls [`LoadState::finish`].
    pub async fn begin(&self, p: &Partition) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        if self.is_current(p) {
            return None;
        }
        let guard = self.lock_for(p.index).lock_owned().await;
        if self.is_current(p) {
            return None;
        }
        Some(guard)
    }

    /// Mark `p` replayed at its current epoch.
    pub fn finish(&self, p: &Partition) {
        self.loaded.lock().insert(p.index, Loaded::of(p));
    }

    /// The partitions replayed so far.
    pub fn partitions(&self) -> Vec<u32> {
        self.loaded.lock().keys().copied().collect()
    }

    /// Forget partitions for which `keep` is false (closed or moved away).
    pub fn retain(&self, mut keep: impl FnMut(u32) -> bool) {
        self.loaded.lock().retain(|i, _| keep(*i));
    }
}

/// One entry of an internal partition, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A key/value record; `txn` is the producer id and epoch when it came
    /// in a transactional batch (pending until that producer's marker).
    Record {
        key: Bytes,
        value: Option<Bytes>,
        txn: Option<(i64, i16)>,
    },
    /// A COMMIT or ABORT control record of `producer_id`.
    Marker {
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    },
}

/// The type of a control record (key: version i16, type i16): `Some(true)`
/// for COMMIT, `Some(false)` for ABORT.
pub fn control_type(key: &[u8]) -> Option<bool> {
    let mut b = key;
    if b.remaining() < 4 {
        return None;
    }
    let _version = b.get_i16();
    match b.get_i16() {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// Replay `p` from its start, handing every entry to `f`; returns how many
/// entries were seen. Batches that do not parse are skipped (a client may
/// have produced to the internal topic) rather than blocking the coordinator.
pub async fn replay(p: &Partition, mut f: impl FnMut(Entry)) -> Result<u64, String> {
    let end = p.stream.end_offset();
    let mut from = p.stream.start_offset();
    let mut count = 0u64;
    while from < end {
        let batches = p
            .stream
            .read(from, REPLAY_READ_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        if batches.is_empty() {
            break;
        }
        for b in batches {
            from = b.end_offset();
            let view = match BatchView::parse(b.payload) {
                Ok(v) => v,
                Err(e) => {
                    warn!(topic = %p.topic, offset = b.base_offset, error = %e, "skipping an unreadable batch");
                    continue;
                }
            };
            let attrs = view.attributes();
            let producer = (view.producer_id(), view.producer_epoch());
            let records = match view.records(REPLAY_MAX_BATCH) {
                Ok(r) => r,
                Err(e) => {
                    warn!(topic = %p.topic, offset = b.base_offset, error = %e, "skipping an unreadable batch");
                    continue;
                }
            };
            for r in records {
                let Ok(r) = r else { break };
                let Some(key) = r.key else { continue };
                count += 1;
                if attrs.is_control() {
                    if let Some(commit) = control_type(&key) {
                        f(Entry::Marker {
                            producer_id: producer.0,
                            producer_epoch: producer.1,
                            commit,
                        });
                    }
                    continue;
                }
                f(Entry::Record {
                    key,
                    value: r.value,
                    txn: attrs.is_transactional().then_some(producer),
                });
            }
        }
    }
    Ok(count)
}

/// Append `records` to `p` as one batch (transactional for `txn`'s producer
/// id and epoch); returns once queued, the caller awaits durability. Call
/// with the partition's lock held when records must reach memory in order.
pub async fn append(
    p: &Partition,
    records: &[(Bytes, Option<Bytes>)],
    txn: Option<(i64, i16)>,
) -> Result<PendingAppend, Code> {
    append_checked(p, records, txn, None).await
}

/// [`append`], refused with `code` unless `guard` (KIP-890: taken before
/// the transaction coordinator confirmed the producer's transaction) is
/// still valid when the batch is appended, under the stream's writer lock,
/// the lock markers are written under.
pub async fn append_checked(
    p: &Partition,
    records: &[(Bytes, Option<Bytes>)],
    txn: Option<(i64, i16)>,
    guard: Option<(VerificationGuard, Code)>,
) -> Result<PendingAppend, Code> {
    let now = now_ms() as i64;
    let mut builder = BatchBuilder::new(Compression::None);
    if let Some((id, epoch)) = txn {
        builder = builder.producer(id, epoch, -1).flags(true, false);
    }
    for (k, v) in records {
        builder.push(NewRecord {
            timestamp: now,
            key: Some(k),
            value: v.as_deref(),
            headers: &[],
        });
    }
    let batch = builder.build().map_err(|_| E::UnknownServerError.code())?;
    let epoch = p.leader_epoch();
    let producer = txn.map_or(-1, |(id, _)| id);
    p.stream
        .try_append_with(
            records.len() as u32,
            |base| {
                if let Some((g, code)) = guard
                    && !p.producers.with(|s| s.guard_valid(producer, g))
                {
                    return Err(code);
                }
                let mut buf = BytesMut::from(batch.as_ref());
                if let Ok(mut m) = BatchMut::new(&mut buf) {
                    m.set_base_offset(base as i64);
                    m.set_partition_leader_epoch(epoch);
                }
                Ok((buf.freeze(), ()))
            },
            |()| {},
        )
        .await
        .map_err(|e| match e {
            TryAppendError::Rejected(code) => code,
            TryAppendError::Append(_) => E::NotCoordinator.code(),
        })
}

/// Append `records` and wait until they are durable.
pub async fn write_durable(
    p: &Partition,
    records: &[(Bytes, Option<Bytes>)],
    txn: Option<(i64, i16)>,
) -> Result<(), Code> {
    append(p, records, txn)
        .await?
        .await
        .map(|_| ())
        .map_err(|_| E::NotCoordinator.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_types() {
        assert_eq!(control_type(&[0, 0, 0, 1]), Some(true));
        assert_eq!(control_type(&[0, 0, 0, 0]), Some(false));
        assert_eq!(control_type(&[0, 0, 0, 5]), None);
        assert_eq!(control_type(&[0, 0]), None);
    }
}
