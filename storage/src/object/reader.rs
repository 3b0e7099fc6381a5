//! [`ObjectReader`]: batches of one stream out of an object, through the
//! block cache, with read-ahead for sequential readers.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use skiff_common::{ObjectId, StreamId};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::format::{self, FOOTER_LEN, FormatError, IndexEntry};
use super::{ObjectIndex, object_key};
use crate::batch::StoredBatch;
use crate::block_cache::{BlockCache, BlockKey};
use crate::catalog::ObjectSlice;

/// How much of an object's tail the first GET fetches: the footer and, for
/// all but huge objects, the whole index.
const TAIL_FETCH: u64 = 64 << 10;
/// Streams remembered for sequential-read detection before the table resets.
const MAX_TRACKED_STREAMS: usize = 16_384;

/// Why a read from an object failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The store failed or timed out. Retriable when [`ReadError::is_retriable`].
    #[error("object {object}: store error: {source}")]
    Store {
        object: ObjectId,
        #[source]
        source: object_store::Error,
    },
    /// The object is not in the store (deleted by GC after a compaction the
    /// reader has not seen yet: look the range up again).
    #[error("object {object} not found in the store")]
    NotFound { object: ObjectId },
    /// The object's bytes are corrupt.
    #[error("object {object} is corrupt: {source}")]
    Corrupt {
        object: ObjectId,
        #[source]
        source: FormatError,
    },
    /// The index has no block of the stream at that offset.
    #[error("object {object} holds no data of stream {stream} at offset {offset}")]
    Missing {
        object: ObjectId,
        stream: StreamId,
        offset: u64,
    },
}

impl ReadError {
    /// True for transient failures worth retrying (network, timeouts,
    /// throttling): see [`crate::store::is_transient`].
    pub fn is_retriable(&self) -> bool {
        match self {
            ReadError::Store { source, .. } => crate::store::is_transient(source),
            _ => false,
        }
    }

    fn store(object: ObjectId, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => ReadError::NotFound { object },
            source => ReadError::Store { object, source },
        }
    }
}

/// Reads stream data out of objects. Cheap to clone; share one per process.
#[derive(Clone, Debug)]
pub struct ObjectReader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ObjectStore>,
    cache: BlockCache,
    /// stream -> the offset a sequential reader would ask for next.
    next_offsets: Mutex<HashMap<StreamId, u64>>,
    readahead: Arc<Semaphore>,
    tasks: TaskTracker,
}

impl ObjectReader {
    pub fn new(store: Arc<dyn ObjectStore>, cache: BlockCache) -> Self {
        let permits = cache.config().readahead_concurrency.max(1);
        Self {
            inner: Arc::new(Inner {
                store,
                cache,
                next_offsets: Mutex::default(),
                readahead: Arc::new(Semaphore::new(permits)),
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn cache(&self) -> &BlockCache {
        &self.inner.cache
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// Batches of `stream` from the one containing `from`, within the slice,
    /// until about `max_bytes` of payload (always at least one batch when
    /// the slice has data at `from`). An empty result means `from` is at or
    /// past the slice's end.
    pub async fn read(
        &self,
        slice: &ObjectSlice,
        stream: StreamId,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredBatch>, ReadError> {
        let from = from.max(slice.start);
        if from >= slice.end {
            return Ok(Vec::new());
        }
        let index = self.index(slice.object, slice.object_size).await?;
        let candidates = index.blocks_from(stream, from);
        if candidates.first().is_none_or(|e| e.start > from) {
            return Err(ReadError::Missing {
                object: slice.object,
                stream,
                offset: from,
            });
        }
        // Fetch blocks in rounds: each round asks for enough blocks to
        // cover what is still missing (a block holds at most its length in
        // payload), until max_bytes is reached or the slice ends.
        let mut out: Vec<StoredBatch> = Vec::new();
        let mut bytes = 0usize;
        let mut rest = candidates;
        'rounds: while !rest.is_empty() && rest[0].start < slice.end {
            let mut wanted = 0usize;
            let mut budget = 0usize;
            for e in rest {
                if wanted > 0 && (bytes + budget >= max_bytes || e.start >= slice.end) {
                    break;
                }
                wanted += 1;
                budget += e.len as usize;
            }
            let (now, later) = rest.split_at(wanted);
            rest = later;
            let blocks = self.blocks(slice.object, now).await?;
            for (entry, block) in now.iter().zip(blocks) {
                let (block_stream, batches) =
                    format::decode_verified_block(&block).map_err(|source| ReadError::Corrupt {
                        object: slice.object,
                        source,
                    })?;
                if block_stream != stream {
                    return Err(ReadError::Corrupt {
                        object: slice.object,
                        source: FormatError::Malformed {
                            what: "block",
                            detail: format!(
                                "block at {} holds stream {block_stream}, index says {}",
                                entry.position, entry.stream
                            ),
                        },
                    });
                }
                for b in batches {
                    if b.end_offset() <= from {
                        continue;
                    }
                    if b.base_offset >= slice.end || (!out.is_empty() && bytes >= max_bytes) {
                        break 'rounds;
                    }
                    bytes += b.payload.len();
                    out.push(b);
                }
            }
            if bytes >= max_bytes {
                break;
            }
        }
        if let Some(last) = out.last() {
            self.after_read(slice, &index, stream, from, last.end_offset());
        }
        Ok(out)
    }

    /// Prefetch the blocks of `stream` from `from` on, up to the configured
    /// read-ahead size, in the background. The read path calls this for the
    /// next object when a sequential reader nears the end of one.
    pub fn prefetch(&self, slice: ObjectSlice, stream: StreamId, from: u64) {
        let Some(index) = self.inner.cache.get_index(slice.object) else {
            // Fetching the index is itself worth doing ahead of time.
            self.spawn_readahead(slice, None, stream, from);
            return;
        };
        self.spawn_readahead(slice, Some(index), stream, from);
    }

    /// Wait for running read-aheads (tests, benchmarks, shutdown).
    pub async fn quiesce(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.tasks.reopen();
    }

    fn after_read(
        &self,
        slice: &ObjectSlice,
        index: &Arc<ObjectIndex>,
        stream: StreamId,
        from: u64,
        next: u64,
    ) {
        let sequential = {
            let mut seen = self.inner.next_offsets.lock();
            if seen.len() >= MAX_TRACKED_STREAMS {
                seen.clear();
            }
            seen.insert(stream, next) == Some(from)
        };
        if sequential && next < slice.end && self.inner.cache.config().readahead_bytes > 0 {
            self.spawn_readahead(*slice, Some(index.clone()), stream, next);
        }
    }

    fn spawn_readahead(
        &self,
        slice: ObjectSlice,
        index: Option<Arc<ObjectIndex>>,
        stream: StreamId,
        from: u64,
    ) {
        let limit = self.inner.cache.config().readahead_bytes;
        if limit == 0 {
            return;
        }
        // Bounded: when all read-ahead slots are busy, skip rather than queue.
        let Ok(permit) = self.inner.readahead.clone().try_acquire_owned() else {
            return;
        };
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let _permit = permit;
            let index = match index {
                Some(i) => i,
                None => match this.index(slice.object, slice.object_size).await {
                    Ok(i) => i,
                    Err(_) => return,
                },
            };
            let mut todo = Vec::new();
            let mut bytes = 0usize;
            for e in index.blocks_from(stream, from) {
                if bytes >= limit || e.start >= slice.end {
                    break;
                }
                bytes += e.len as usize;
                let key = BlockKey {
                    object: slice.object,
                    position: e.position,
                };
                if !this.inner.cache.contains_block(&key) {
                    todo.push(*e);
                }
            }
            if todo.is_empty() {
                return;
            }
            let n = todo.len() as u64;
            if let Err(e) = this.fetch_blocks(slice.object, &todo).await {
                tracing::debug!(object = %slice.object, error = %e, "read-ahead failed");
                return;
            }
            this.inner
                .cache
                .stats()
                .readahead_blocks
                .fetch_add(n, Ordering::Relaxed);
        });
    }

    /// Footer and index of an object, from the cache or the store.
    pub async fn index(&self, object: ObjectId, size: u64) -> Result<Arc<ObjectIndex>, ReadError> {
        if let Some(i) = self.inner.cache.get_index(object) {
            return Ok(i);
        }
        let store = &self.inner.store;
        let key = object_key(object);
        let size = if size >= FOOTER_LEN as u64 {
            size
        } else {
            store
                .head(&key)
                .await
                .map_err(|e| ReadError::store(object, e))?
                .size
        };
        let corrupt = |source| ReadError::Corrupt { object, source };
        let tail_start = size.saturating_sub(TAIL_FETCH);
        let tail = self.get_range(object, tail_start..size).await?;
        let footer = format::decode_footer(&tail, size).map_err(corrupt)?;
        let index = if footer.index_position >= tail_start {
            ObjectIndex::decode(&tail, size).map_err(corrupt)?
        } else {
            let range = footer.index_position..size;
            let bytes = self.get_range(object, range).await?;
            ObjectIndex::decode(&bytes, size).map_err(corrupt)?
        };
        let index = Arc::new(index);
        self.inner.cache.insert_index(object, index.clone());
        Ok(index)
    }

    async fn get_range(&self, object: ObjectId, range: Range<u64>) -> Result<Bytes, ReadError> {
        let len = range.end - range.start;
        let bytes = self
            .inner
            .store
            .get_range(&object_key(object), range)
            .await
            .map_err(|e| ReadError::store(object, e))?;
        self.count_fetched(bytes.len());
        if bytes.len() as u64 != len {
            return Err(ReadError::Corrupt {
                object,
                source: FormatError::Truncated {
                    what: "ranged read",
                    need: len as usize,
                    have: bytes.len(),
                },
            });
        }
        Ok(bytes)
    }

    fn count_fetched(&self, n: usize) {
        self.inner
            .cache
            .stats()
            .fetched_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The verified bytes of `entries`' blocks, in order: cached ones from
    /// the cache, the rest with one ranged multi-GET.
    async fn blocks(
        &self,
        object: ObjectId,
        entries: &[IndexEntry],
    ) -> Result<Vec<Bytes>, ReadError> {
        let mut out: Vec<Option<Bytes>> = Vec::with_capacity(entries.len());
        let mut missing = Vec::new();
        for e in entries {
            let key = BlockKey {
                object,
                position: e.position,
            };
            let hit = self.inner.cache.get_block(key).await;
            if hit.is_none() {
                missing.push(*e);
            }
            out.push(hit);
        }
        if !missing.is_empty() {
            let mut fetched = self.fetch_blocks(object, &missing).await?.into_iter();
            for slot in out.iter_mut().filter(|s| s.is_none()) {
                *slot = fetched.next();
            }
        }
        Ok(out
            .into_iter()
            .map(|b| b.expect("every missing block was fetched"))
            .collect())
    }

    /// Fetch blocks from the store, verify and cache them.
    async fn fetch_blocks(
        &self,
        object: ObjectId,
        entries: &[IndexEntry],
    ) -> Result<Vec<Bytes>, ReadError> {
        let ranges: Vec<Range<u64>> = entries.iter().map(IndexEntry::byte_range).collect();
        let blocks = self
            .inner
            .store
            .get_ranges(&object_key(object), &ranges)
            .await
            .map_err(|e| ReadError::store(object, e))?;
        let mut out = Vec::with_capacity(blocks.len());
        for (e, block) in entries.iter().zip(blocks) {
            self.count_fetched(block.len());
            if block.len() != e.len as usize {
                return Err(ReadError::Corrupt {
                    object,
                    source: FormatError::Truncated {
                        what: "block",
                        need: e.len as usize,
                        have: block.len(),
                    },
                });
            }
            // Verify once here; cached blocks are trusted afterwards.
            format::verify_block(&block).map_err(|source| ReadError::Corrupt { object, source })?;
            // Not copied: a block may share a coalesced GET buffer with its
            // neighbours (object_store coalesces ranges less than 1 MiB
            // apart), which the cache then holds a little longer. A copy
            // here cost ~10% of cold read throughput.
            self.inner.cache.insert_block(
                BlockKey {
                    object,
                    position: e.position,
                },
                block.clone(),
            );
            out.push(block);
        }
        Ok(out)
    }
}
