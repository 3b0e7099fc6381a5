//! Time- and size-based retention (`retention.ms`, `retention.bytes`),
//! applied every `log_retention_check_interval` to the partitions this broker
//! serves, by trimming their streams. Storage GC then deletes objects that
//! hold nothing readable.
//!
//! Both rules remove whole batches from the start, oldest first. The size
//! rule reads batch headers of the partition to total its bytes; a partition
//! under a size limit is bounded by that limit, so the scan is too.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::cluster::now_ms;
use crate::log_search;
use crate::partitions::Partition;

/// Apply retention until `shutdown`.
pub async fn run(broker: Arc<Broker>, shutdown: CancellationToken) {
    let interval = broker.config.log_retention_check_interval;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        for p in broker.partitions.all() {
            if let Err(e) = apply(&p).await {
                debug!(topic = %p.topic, partition = p.index, error = %e, "retention pass failed");
            }
        }
    }
}

/// One retention pass over one partition. Returns the new log start offset.
pub async fn apply(p: &Partition) -> Result<u64, String> {
    let policy = p.policy();
    let start = p.stream.start_offset();
    let mut target = start;
    if let Some(ms) = policy.retention_ms {
        let end = p.stream.end_offset();
        let cutoff = now_ms() as i64 - ms;
        let keep_from = log_search::first_offset_newer_than(p, cutoff)
            .await
            .map_err(|e| e.message)?
            .unwrap_or(end);
        target = target.max(keep_from);
    }
    if let Some(limit) = policy.retention_bytes {
        target = target.max(size_cut(p, limit as u64).await?);
    }
    if target <= start {
        return Ok(start);
    }
    match p.stream.trim(target).await {
        Ok(new_start) => {
            info!(topic = %p.topic, partition = p.index, from = start, to = new_start, "retention trimmed");
            Ok(new_start)
        }
        Err(e) => {
            warn!(topic = %p.topic, partition = p.index, error = %e, "retention trim failed");
            Err(e.to_string())
        }
    }
}

/// The offset to trim to so that at most `limit` bytes remain.
async fn size_cut(p: &Partition, limit: u64) -> Result<u64, String> {
    let mut sizes: Vec<(u64, u64)> = Vec::new(); // (base offset, bytes)
    let mut offset = p.stream.start_offset();
    let end = p.stream.end_offset();
    while offset < end {
        let batches = p
            .stream
            .read(offset, 4 << 20)
            .await
            .map_err(|e| e.to_string())?;
        if batches.is_empty() {
            break;
        }
        for b in batches {
            if b.end_offset() <= offset {
                continue;
            }
            sizes.push((b.base_offset, b.payload.len() as u64));
            offset = b.end_offset();
        }
    }
    let mut total: u64 = sizes.iter().map(|(_, s)| s).sum();
    let mut cut = p.stream.start_offset();
    for (i, (base, size)) in sizes.iter().enumerate() {
        if total <= limit {
            break;
        }
        total -= size;
        cut = sizes.get(i + 1).map(|(b, _)| *b).unwrap_or(offset);
        let _ = base;
    }
    Ok(cut)
}
