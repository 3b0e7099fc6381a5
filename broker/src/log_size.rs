//! Estimated on-storage size of a partition, for DescribeLogDirs.
//!
//! Skiff has no per-partition log segments to measure. The estimate is:
//!
//! - for the part already uploaded, each object slice's share of its
//!   object: `object size × slice records / object records`, counting only
//!   offsets at or above the log start offset (object framing and indexes
//!   are spread over the streams the object holds);
//! - for the tail not yet in objects (in the WAL), the exact payload bytes
//!   of its batches, read from the stream; when that tail is larger than
//!   [`TAIL_SCAN_LIMIT`], the bytes scanned are extrapolated by offsets.

use skiff_metadata::state::ClusterState;

use crate::partitions::Partition;

/// Most tail bytes read to measure the part not yet uploaded.
pub const TAIL_SCAN_LIMIT: u64 = 64 << 20;

/// Bytes of `[start, end)` of `p`'s stream that uploaded objects hold, by
/// each object's share, and the offset where uploaded data ends.
pub fn uploaded_bytes(s: &ClusterState, p: &Partition) -> (u64, u64) {
    let start = p.stream.start_offset();
    let Some(stream) = s.streams.get(&p.stream.id()) else {
        return (0, start);
    };
    let mut bytes = 0u128;
    let mut uploaded_end = start;
    for (&from, &(to, object)) in stream.slices.range(..) {
        if to <= start {
            continue;
        }
        let Some(o) = s.objects.get(&object) else {
            continue;
        };
        let records: u64 = o.ranges.iter().map(|(_, a, b)| b.saturating_sub(*a)).sum();
        if records > 0 {
            let mine = to - from.max(start);
            bytes += u128::from(o.size) * u128::from(mine) / u128::from(records);
        }
        uploaded_end = uploaded_end.max(to);
    }
    (u64::try_from(bytes).unwrap_or(u64::MAX), uploaded_end)
}

/// Payload bytes of `p` from `from` to its end, read from the stream (see
/// the module docs for the limit).
pub async fn tail_bytes(p: &Partition, from: u64) -> u64 {
    let end = p.stream.end_offset();
    let mut offset = from.max(p.stream.start_offset());
    let first = offset;
    let mut bytes = 0u64;
    while offset < end && bytes < TAIL_SCAN_LIMIT {
        let Ok(batches) = p.stream.read(offset, 4 << 20).await else {
            break;
        };
        let Some(last) = batches.last() else { break };
        let next = last.end_offset();
        bytes += batches
            .iter()
            .filter(|b| b.end_offset() > offset)
            .map(|b| b.payload.len() as u64)
            .sum::<u64>();
        if next <= offset {
            break;
        }
        offset = next;
    }
    if offset < end && offset > first {
        // Scanned part of the tail: extrapolate by offsets.
        let per_offset = bytes as f64 / (offset - first) as f64;
        bytes += (per_offset * (end - offset) as f64) as u64;
    }
    bytes
}
