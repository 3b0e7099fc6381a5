//! Per-partition producer state: sequences and epochs of idempotent
//! producers, ongoing transactions, the last stable offset and the
//! aborted-transaction index (Kafka's `ProducerStateManager`).
//!
//! - [`state`]: the rules, as pure logic over batch headers.
//! - [`PartitionProducers`]: the state of one open partition, updated only
//!   under the stream's single-writer lock (`try_append_with`), so the check,
//!   the offset assignment and the update are one atomic step.
//! - [`control`]: Kafka's control records (transaction markers).
//! - [`snapshot`]: the state persisted in the object store, keyed by stream
//!   and offset, so opening a partition loads the newest snapshot and replays
//!   only the batch headers after it.
//! - [`markers`]: `PartitionManager::write_txn_marker`, which the transaction
//!   coordinator and WriteTxnMarkers use.

pub mod control;
mod markers;
pub mod snapshot;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::ObjectStore;
use parking_lot::Mutex;
use skiff_storage::StreamHandle;
use skiff_wire::records::BatchView;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::config::BrokerConfig;

pub use markers::TxnMarker;
pub use state::{
    AbortedTxn, BatchInfo, BatchMeta, Check, MarkerInfo, ProducerStates, VerificationGuard,
};

/// Payload bytes read per step when replaying a stream.
const REPLAY_READ_BYTES: usize = 4 * 1024 * 1024;

/// The producer state of one open partition.
#[derive(Debug)]
pub struct PartitionProducers {
    state: Mutex<ProducerStates>,
    /// Bumped whenever the set of ongoing transactions changes, to wake
    /// read_committed long polls waiting for the last stable offset.
    lso_changed: watch::Sender<u64>,
    /// Offset of the last snapshot written (or loaded).
    snapshotted: AtomicU64,
}

impl Default for PartitionProducers {
    fn default() -> Self {
        Self::new(ProducerStates::default())
    }
}

impl PartitionProducers {
    pub fn new(state: ProducerStates) -> Self {
        Self {
            state: Mutex::new(state),
            lso_changed: watch::channel(0).0,
            snapshotted: AtomicU64::new(0),
        }
    }

    /// Run `f` over the state.
    pub fn with<R>(&self, f: impl FnOnce(&ProducerStates) -> R) -> R {
        f(&self.state.lock())
    }

    /// Run `f` over the state mutably. Callers that record appended batches
    /// must hold the stream's writer lock (inside `try_append_with`).
    pub fn update<R>(&self, f: impl FnOnce(&mut ProducerStates) -> R) -> R {
        let (r, changed) = {
            let mut s = self.state.lock();
            let before = s.ongoing.len();
            let first = s.ongoing.keys().next().copied();
            let r = f(&mut s);
            let changed = s.ongoing.len() != before || s.ongoing.keys().next().copied() != first;
            (r, changed)
        };
        if changed {
            self.lso_changed.send_modify(|v| *v = v.wrapping_add(1));
        }
        r
    }

    /// The last stable offset given the high watermark.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let mut s = self.state.lock();
        s.settle(high_watermark);
        s.last_stable_offset(high_watermark)
    }

    /// Changes whenever the last stable offset may have moved other than by
    /// the high watermark.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.lso_changed.subscribe()
    }
}

/// The producer fields of a data batch.
pub fn batch_info(batch: &BatchView) -> BatchInfo {
    BatchInfo {
        producer_id: batch.producer_id(),
        epoch: batch.producer_epoch(),
        first_seq: batch.base_sequence(),
        last_offset_delta: batch.last_offset_delta(),
        max_timestamp: batch.max_timestamp(),
        transactional: batch.attributes().is_transactional(),
    }
}

/// Apply one stored batch to `state` (replay: no checks, as Kafka does for
/// its own log).
pub fn replay_batch(state: &mut ProducerStates, payload: &Bytes, now_ms: u64) {
    let Ok(batch) = BatchView::parse(payload.clone()) else {
        warn!("unparseable batch while replaying producer state; skipped");
        return;
    };
    if batch.producer_id() < 0 {
        return;
    }
    if batch.attributes().is_control() {
        match control::read_marker(&batch) {
            Some(m) => state.apply_marker(&m, batch.base_offset(), now_ms),
            None => warn!(
                offset = batch.base_offset(),
                "unreadable control batch while replaying producer state; skipped"
            ),
        }
    } else {
        state.apply_data(&batch_info(&batch), batch.base_offset(), now_ms);
    }
}

/// Replay the stream's batches from `from` to its end into `state`.
pub async fn replay(
    stream: &StreamHandle,
    state: &mut ProducerStates,
    from: u64,
    now_ms: u64,
) -> Result<(), skiff_storage::ReadError> {
    let mut at = from.max(stream.start_offset());
    let end = stream.end_offset();
    while at < end {
        let batches = stream.read(at, REPLAY_READ_BYTES).await?;
        let Some(last) = batches.last() else { break };
        let next = last.end_offset();
        for b in &batches {
            if b.end_offset() > at {
                replay_batch(state, &b.payload, now_ms);
            }
        }
        if next <= at {
            break;
        }
        at = next;
    }
    Ok(())
}

/// The producer state of a stream being opened: the newest snapshot at or
/// below its end, then the batch headers after it (all of them when there
/// is no snapshot).
pub async fn load(
    store: &Arc<dyn ObjectStore>,
    stream: &StreamHandle,
) -> Result<PartitionProducers, skiff_storage::ReadError> {
    let end = stream.end_offset();
    let (mut state, from) = match snapshot::load(store, stream.id(), end).await {
        Ok(Some((state, at))) => (state, at),
        Ok(None) => (ProducerStates::default(), 0),
        Err(e) => {
            warn!(stream = stream.id().0, error = %e, "no producer-state snapshot; replaying the stream");
            (ProducerStates::default(), 0)
        }
    };
    let now = crate::cluster::now_ms();
    replay(stream, &mut state, from, now).await?;
    state.prune_aborted(stream.start_offset() as i64);
    state.settle(end as i64);
    debug!(
        stream = stream.id().0,
        from,
        end,
        producers = state.len(),
        "loaded producer state"
    );
    let p = PartitionProducers::new(state);
    p.snapshotted.store(from, Ordering::Relaxed);
    Ok(p)
}

/// Open `stream` at `epoch` on `storage` and load its producer state. A
/// failed load (an object-store error while replaying) releases the stream
/// again: left open, every later attempt failed with "already open" until
/// the broker restarted.
pub async fn open(
    storage: &skiff_storage::Storage,
    store: &Arc<dyn ObjectStore>,
    stream: skiff_common::StreamId,
    epoch: skiff_common::StreamEpoch,
) -> Result<(StreamHandle, PartitionProducers), String> {
    let handle = storage
        .open_stream(stream, epoch)
        .await
        .map_err(|e| e.to_string())?;
    match load(store, &handle).await {
        Ok(producers) => Ok((handle, producers)),
        Err(e) => {
            if let Err(c) = handle.close().await {
                warn!(stream = stream.0, error = %c, "releasing a stream whose producer state did not load");
            }
            Err(e.to_string())
        }
    }
}

/// Snapshot a partition's producer state if the stream moved since the last
/// one: the state is captured under the writer lock (consistent with an
/// offset) and written once everything below that offset is durable. Also
/// expires idle producers and bounds their number first.
pub async fn maintain(
    store: &Arc<dyn ObjectStore>,
    stream: &StreamHandle,
    producers: &PartitionProducers,
    config: &BrokerConfig,
) {
    let now = crate::cluster::now_ms();
    let idle = u64::try_from(config.producer_id_expiration_ms).unwrap_or(0);
    producers.update(|s| {
        s.expire(now.saturating_sub(idle));
        s.bound(config.producer_state_max_producers.max(1));
        s.prune_aborted(stream.start_offset() as i64);
        s.settle(stream.end_offset() as i64);
    });
    if stream.end_offset() <= producers.snapshotted.load(Ordering::Relaxed) {
        return;
    }
    let (at, state) = stream
        .with_writer_lock(|next| (next, producers.with(|s| s.clone())))
        .await;
    if at > 0 && stream.wait_for_data(at - 1).await < at {
        return; // the stream stopped before `at` was durable
    }
    write_snapshot(store, stream, producers, &state, at).await;
}

/// Snapshot a closed stream's producer state at its final end offset.
pub async fn snapshot_closed(
    store: &Arc<dyn ObjectStore>,
    stream: &StreamHandle,
    producers: &PartitionProducers,
    end: u64,
) {
    if end <= producers.snapshotted.load(Ordering::Relaxed) {
        return;
    }
    let state = producers.with(|s| s.clone());
    write_snapshot(store, stream, producers, &state, end).await;
}

async fn write_snapshot(
    store: &Arc<dyn ObjectStore>,
    stream: &StreamHandle,
    producers: &PartitionProducers,
    state: &ProducerStates,
    at: u64,
) {
    match snapshot::write(store, stream.id(), state, at).await {
        Ok(()) => producers.snapshotted.store(at, Ordering::Relaxed),
        Err(e) => warn!(stream = stream.id().0, error = %e, "writing producer-state snapshot"),
    }
}

#[cfg(test)]
#[path = "open_tests.rs"]
mod open_tests;
