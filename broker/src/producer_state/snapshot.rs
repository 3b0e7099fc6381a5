//! Producer-state snapshots in the object store, so opening a partition
//! (restart, recovery, reassignment) loads the newest snapshot at or below
//! the stream's end and replays only the batch headers after it.
//!
//! Key: `producer-state/<stream:020>/<offset:020>.snap`, where `offset` is
//! the stream offset the state is complete up to (exclusive). A snapshot is
//! written only once everything below `offset` is durable, so it never
//! describes data a crash could lose; one above the end found at open (it
//! cannot happen, but a store is not a proof) is ignored and deleted.
//!
//! Format (version 1, stable on disk), big-endian:
//! `magic "SKPS" | version u8 | body_len u32 | body | crc32c(body) u32`;
//! body = `offset u64 | producers u32 | { id i64 | epoch i16 |
//! coordinator_epoch i32 | txn_first i64 (-1 none) | last_timestamp i64 |
//! last_update_ms u64 | batches u8 | { first_seq i32 | last_seq i32 |
//! first_offset i64 | last_offset i64 | timestamp i64 }* }* | aborted u32 |
//! { producer_id i64 | first_offset i64 | last_offset i64 }*`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use skiff_common::StreamId;

use super::state::{AbortedTxn, BatchMeta, MAX_BATCHES, ProducerEntry, ProducerStates};

const MAGIC: &[u8; 4] = b"SKPS";
const VERSION: u8 = 1;
/// Snapshots kept per stream (the newest ones).
const KEEP: usize = 2;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("corrupt producer-state snapshot: {0}")]
    Corrupt(&'static str),
}

fn prefix(stream: StreamId) -> Path {
    Path::from(format!("producer-state/{:020}", stream.0))
}

fn key(stream: StreamId, offset: u64) -> Path {
    Path::from(format!("producer-state/{:020}/{offset:020}.snap", stream.0))
}

/// Encode `state`, complete below `offset`.
pub fn encode(state: &ProducerStates, offset: u64) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u64(offset);
    body.put_u32(state.producers.len() as u32);
    for (id, e) in &state.producers {
        body.put_i64(*id);
        body.put_i16(e.epoch);
        body.put_i32(e.coordinator_epoch);
        body.put_i64(e.txn_first_offset.unwrap_or(-1));
        body.put_i64(e.last_timestamp);
        body.put_u64(e.last_update_ms);
        body.put_u8(e.batches.len() as u8);
        for b in &e.batches {
            body.put_i32(b.first_seq);
            body.put_i32(b.last_seq);
            body.put_i64(b.first_offset);
            body.put_i64(b.last_offset);
            body.put_i64(b.timestamp);
        }
    }
    body.put_u32(state.aborted.len() as u32);
    for a in &state.aborted {
        body.put_i64(a.producer_id);
        body.put_i64(a.first_offset);
        body.put_i64(a.last_offset);
    }
    let mut out = BytesMut::with_capacity(body.len() + 13);
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u32(body.len() as u32);
    out.put_u32(crc32c::crc32c(&body));
    out.put_slice(&body);
    out.freeze()
}

fn need(b: &impl Buf, n: usize) -> Result<(), SnapshotError> {
    if b.remaining() < n {
        Err(SnapshotError::Corrupt("truncated"))
    } else {
        Ok(())
    }
}

/// Decode a snapshot: the state and the offset it is complete below.
pub fn decode(mut raw: Bytes) -> Result<(ProducerStates, u64), SnapshotError> {
    need(&raw, 13)?;
    if &raw[..4] != MAGIC {
        return Err(SnapshotError::Corrupt("bad magic"));
    }
    raw.advance(4);
    if raw.get_u8() != VERSION {
        return Err(SnapshotError::Corrupt("unknown version"));
    }
    let len = raw.get_u32() as usize;
    let crc = raw.get_u32();
    if raw.remaining() != len {
        return Err(SnapshotError::Corrupt("length mismatch"));
    }
    if crc32c::crc32c(&raw) != crc {
        return Err(SnapshotError::Corrupt("crc mismatch"));
    }
    let mut b = raw;
    need(&b, 12)?;
    let offset = b.get_u64();
    let n = b.get_u32();
    let mut state = ProducerStates::default();
    for _ in 0..n {
        need(&b, 8 + 2 + 4 + 8 + 8 + 8 + 1)?;
        let id = b.get_i64();
        let epoch = b.get_i16();
        let coordinator_epoch = b.get_i32();
        let txn = b.get_i64();
        let last_timestamp = b.get_i64();
        let last_update_ms = b.get_u64();
        let nb = b.get_u8() as usize;
        if nb > MAX_BATCHES {
            return Err(SnapshotError::Corrupt("too many batches"));
        }
        let mut batches = VecDeque::with_capacity(nb);
        for _ in 0..nb {
            need(&b, 32)?;
            batches.push_back(BatchMeta {
                first_seq: b.get_i32(),
                last_seq: b.get_i32(),
                first_offset: b.get_i64(),
                last_offset: b.get_i64(),
                timestamp: b.get_i64(),
            });
        }
        let txn_first_offset = (txn >= 0).then_some(txn);
        if let Some(first) = txn_first_offset {
            state.ongoing.insert(first, id);
        }
        state.producers.insert(
            id,
            ProducerEntry {
                epoch,
                coordinator_epoch,
                batches,
                txn_first_offset,
                last_timestamp,
                last_update_ms,
            },
        );
    }
    need(&b, 4)?;
    let na = b.get_u32();
    for _ in 0..na {
        need(&b, 24)?;
        state.aborted.push_back(AbortedTxn {
            producer_id: b.get_i64(),
            first_offset: b.get_i64(),
            last_offset: b.get_i64(),
        });
    }
    if b.has_remaining() {
        return Err(SnapshotError::Corrupt("trailing bytes"));
    }
    Ok((state, offset))
}

/// The stream's snapshot offsets, newest first.
async fn list(store: &dyn ObjectStore, stream: StreamId) -> Result<Vec<u64>, SnapshotError> {
    let metas: Vec<_> = store.list(Some(&prefix(stream))).try_collect().await?;
    let mut offsets: Vec<u64> = metas
        .iter()
        .filter_map(|m| m.location.filename()?.strip_suffix(".snap")?.parse().ok())
        .collect();
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    Ok(offsets)
}

/// Write a snapshot complete below `offset` and delete older ones beyond
/// the newest [`KEEP`].
pub async fn write(
    store: &Arc<dyn ObjectStore>,
    stream: StreamId,
    state: &ProducerStates,
    offset: u64,
) -> Result<(), SnapshotError> {
    let bytes = encode(state, offset);
    store.put(&key(stream, offset), bytes.into()).await?;
    for old in list(store.as_ref(), stream).await?.into_iter().skip(KEEP) {
        let _ = store.delete(&key(stream, old)).await;
    }
    Ok(())
}

/// The newest readable snapshot at or below `end`: its state and offset.
/// Snapshots above `end` are deleted; unreadable ones are skipped.
pub async fn load(
    store: &Arc<dyn ObjectStore>,
    stream: StreamId,
    end: u64,
) -> Result<Option<(ProducerStates, u64)>, SnapshotError> {
    for offset in list(store.as_ref(), stream).await? {
        if offset > end {
            let _ = store.delete(&key(stream, offset)).await;
            continue;
        }
        let raw = store.get(&key(stream, offset)).await?.bytes().await?;
        match decode(raw) {
            Ok(found) => return Ok(Some(found)),
            Err(e) => tracing::warn!(stream = stream.0, offset, error = %e, "skipping snapshot"),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::producer_state::{BatchInfo, MarkerInfo};

    fn arb_state() -> impl Strategy<Value = ProducerStates> {
        proptest::collection::vec(
            (0i64..20, 0i16..3, 0i32..100, 1i32..4, any::<bool>(), 0u8..3),
            0..60,
        )
        .prop_map(|ops| {
            let mut s = ProducerStates::default();
            let mut offset = 0i64;
            for (pid, epoch, seq, n, txn, end) in ops {
                if end == 0 {
                    s.apply_marker(
                        &MarkerInfo {
                            producer_id: pid,
                            epoch,
                            coordinator_epoch: 1,
                            commit: txn,
                            timestamp: offset,
                        },
                        offset,
                        7,
                    );
                    offset += 1;
                } else {
                    let b = BatchInfo {
                        producer_id: pid,
                        epoch,
                        first_seq: seq,
                        last_offset_delta: n - 1,
                        max_timestamp: offset,
                        transactional: txn,
                    };
                    s.apply_data(&b, offset, 9);
                    offset += i64::from(n);
                }
            }
            s
        })
    }

    proptest! {
        #[test]
        fn snapshots_round_trip(state in arb_state(), offset: u64) {
            let (back, at) = decode(encode(&state, offset)).expect("decodes");
            prop_assert_eq!(at, offset);
            prop_assert_eq!(back, state);
        }

        #[test]
        fn damage_is_detected(state in arb_state(), flip in 0usize..1000) {
            let mut raw = BytesMut::from(encode(&state, 5).as_ref());
            let i = flip % raw.len();
            raw[i] ^= 0x40;
            prop_assert!(decode(raw.freeze()).is_err());
        }
    }

    #[tokio::test]
    async fn load_picks_the_newest_at_or_below_the_end() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let s = StreamId(3);
        let mut state = ProducerStates::default();
        for at in [10u64, 20, 30] {
            state.apply_data(
                &BatchInfo {
                    producer_id: at as i64,
                    epoch: 0,
                    first_seq: 0,
                    last_offset_delta: 0,
                    max_timestamp: 0,
                    transactional: false,
                },
                at as i64 - 1,
                0,
            );
            write(&store, s, &state, at).await.expect("write");
        }
        let (got, at) = load(&store, s, 25).await.expect("load").expect("found");
        assert_eq!(at, 20);
        assert_eq!(got.len(), 2);
        // 30 was above the end: deleted; only two were kept (20, 30) -> 20 left
        assert_eq!(list(store.as_ref(), s).await.expect("list"), vec![20]);
    }
}
