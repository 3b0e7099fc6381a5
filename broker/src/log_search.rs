//! Searches over a partition's batches by timestamp, for ListOffsets and
//! time-based retention.
//!
//! Batches are read in order from the log start through storage (log cache,
//! block cache, objects); each batch header carries its max timestamp, so
//! records are only decoded in the one batch that holds the answer. The cost
//! is a scan of the partition up to the answer; a persistent time index is a
//! later optimisation (see ARCHITECTURE.md).

use skiff_wire::records::BatchView;

use crate::errors::KafkaError;
use crate::handlers::read_error;
use crate::partitions::Partition;

/// Bytes read per step of a scan.
const SCAN_CHUNK: usize = 4 * 1024 * 1024;
/// Most decompressed bytes when looking inside one batch.
const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// A record position found by a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub offset: i64,
    pub timestamp: i64,
}

/// Visit batches from the log start until `visit` returns `Some`.
async fn scan<T>(
    p: &Partition,
    mut visit: impl FnMut(&BatchView) -> Option<T>,
) -> Result<Option<T>, KafkaError> {
    let mut offset = p.stream.start_offset();
    loop {
        let end = p.stream.end_offset();
        if offset >= end {
            return Ok(None);
        }
        let batches = p
            .stream
            .read(offset, SCAN_CHUNK)
            .await
            .map_err(|e| read_error(&e))?;
        if batches.is_empty() {
            return Ok(None);
        }
        for b in &batches {
            offset = offset.max(b.end_offset());
            let Ok(view) = BatchView::parse(b.payload.clone()) else {
                continue;
            };
            if let Some(found) = visit(&view) {
                return Ok(Some(found));
            }
        }
    }
}

/// The first record whose timestamp is >= `ts` (ListOffsets by time).
pub async fn offset_for_timestamp(p: &Partition, ts: i64) -> Result<Option<Found>, KafkaError> {
    scan(p, |b| {
        if b.max_timestamp() < ts {
            return None;
        }
        first_record_at_or_after(b, ts)
    })
    .await
}

fn first_record_at_or_after(b: &BatchView, ts: i64) -> Option<Found> {
    if b.attributes().timestamp_type() == skiff_wire::records::TimestampType::LogAppendTime {
        return Some(Found {
            offset: b.base_offset(),
            timestamp: b.max_timestamp(),
        });
    }
    let records = b.records(MAX_BATCH_BYTES).ok()?;
    for r in records.flatten() {
        let t = b.base_timestamp().wrapping_add(r.timestamp_delta);
        if t >= ts {
            return Some(Found {
                offset: b.base_offset() + i64::from(r.offset_delta),
                timestamp: t,
            });
        }
    }
    None
}

/// The record with the largest timestamp (ListOffsets MAX_TIMESTAMP, v7+):
/// the first one holding it.
pub async fn max_timestamp(p: &Partition) -> Result<Option<Found>, KafkaError> {
    let mut best: Option<(i64, BatchView)> = None;
    scan::<()>(p, |b| {
        if best.as_ref().is_none_or(|(t, _)| b.max_timestamp() > *t) {
            best = Some((b.max_timestamp(), b.clone()));
        }
        None
    })
    .await?;
    Ok(best.and_then(|(t, b)| first_record_at_or_after(&b, t)))
}

/// The base offset of the first batch that is not entirely older than
/// `cutoff_ms` (time-based retention trims up to it).
pub async fn first_offset_newer_than(
    p: &Partition,
    cutoff_ms: i64,
) -> Result<Option<u64>, KafkaError> {
    scan(p, |b| {
        (b.max_timestamp() >= cutoff_ms).then_some(b.base_offset() as u64)
    })
    .await
}
