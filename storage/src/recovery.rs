//! WAL replay: put every record the catalog does not have yet into objects.
//!
//! For each record, in WAL order, the stream's committed end offset (asked
//! once from the catalog, then tracked) decides:
//!
//! - ends at or below it: already committed (or a duplicate left by a
//!   retried object-WAL PUT): skip;
//! - written at an older epoch than the stream's current one: another owner
//!   took the stream (an unclean reopen); skip with a warning;
//! - starts exactly at it: hand it to the uploader at the record's epoch;
//! - anything else at the current epoch (a gap or an overlap) means data the
//!   catalog cannot take: start-up stops with [`OpenError::Inconsistent`].
//!
//! Then everything is flushed, so when replay returns all acknowledged data
//! is committed and new owners may open the streams.

use std::collections::HashMap;

use skiff_common::{StreamEpoch, StreamId};

use crate::batch::StoredBatch;
use crate::catalog::CatalogError;
use crate::engine::Shared;
use crate::error::OpenError;
use crate::wal::file::FileRecovery;
use crate::wal::object::ObjectRecovery;
use crate::wal::{RecoveredChunk, WalError};

/// Where replayed records come from.
pub(crate) enum Recovery<'a> {
    File(&'a mut FileRecovery),
    Object(&'a mut ObjectRecovery),
}

impl Recovery<'_> {
    async fn next_chunk(&mut self) -> Result<Option<RecoveredChunk>, WalError> {
        match self {
            Recovery::File(r) => r.next_chunk(),
            Recovery::Object(r) => r.next_chunk().await,
        }
    }
}

/// Expected next offset of a stream during replay; `None` when the catalog
/// does not know the stream (deleted).
type Expect = Option<(StreamEpoch, u64)>;

/// Replay all records; returns the WAL position that covers them.
pub(crate) async fn replay(shared: &Shared, mut source: Recovery<'_>) -> Result<u64, OpenError> {
    let mut expect: HashMap<StreamId, Expect> = HashMap::new();
    let mut end_pos = 0;
    let mut replayed = 0u64;
    while let Some(chunk) = source.next_chunk().await? {
        let mut items = Vec::new();
        for rec in chunk.records {
            let e = match expect.get(&rec.stream) {
                Some(e) => *e,
                None => {
                    let e = match shared.catalog.stream(rec.stream).await {
                        Ok(m) => Some((m.epoch, m.end_offset)),
                        Err(CatalogError::UnknownStream(_)) => None,
                        Err(e) => return Err(e.into()),
                    };
                    expect.insert(rec.stream, e);
                    e
                }
            };
            let Some((epoch, next)) = e else {
                tracing::warn!(stream = %rec.stream, "WAL record of an unknown stream dropped");
                continue;
            };
            let end = rec.base_offset + u64::from(rec.records);
            if end <= next {
                continue;
            }
            if rec.epoch < epoch {
                tracing::warn!(stream = %rec.stream, held = %rec.epoch, current = %epoch,
                    offset = rec.base_offset, "WAL record of a stream reopened elsewhere dropped");
                continue;
            }
            if rec.base_offset != next || rec.epoch > epoch {
                return Err(OpenError::Inconsistent {
                    stream: rec.stream,
                    reason: format!(
                        "record {}..{} at epoch {} does not continue offset {} at epoch {}",
                        rec.base_offset, end, rec.epoch, next, epoch
                    ),
                });
            }
            expect.insert(rec.stream, Some((epoch, end)));
            replayed += 1;
            let crc = rec.payload.crc();
            let batch = StoredBatch {
                base_offset: rec.base_offset,
                records: rec.records,
                payload: rec.payload.into_bytes(),
            };
            items.push((rec.stream, rec.epoch, (batch, crc), None));
        }
        end_pos = chunk.end_pos;
        let seal = shared.config.upload.seal_bytes;
        shared.uploader.push(items, end_pos, seal);
        if shared.uploader.pending_bytes() >= seal {
            shared.uploader.flush().await;
        }
    }
    shared.uploader.flush().await;
    if replayed > 0 {
        tracing::info!(records = replayed, "WAL replay committed records");
    }
    Ok(end_pos)
}
