//! The log cache: recent batches of every open stream, serving tail reads
//! without touching object storage.
//!
//! Batches enter once durable in the WAL, in offset order per stream. A batch
//! is evictable once it is committed in an object ([`LogCache::mark_uploaded`]);
//! eviction is oldest-first over all streams and starts when the cache holds
//! more than its cap. Batches not yet uploaded are never evicted (reads of
//! them have nowhere else to go); their total is bounded by the engine's
//! un-uploaded-bytes cap, which `StorageConfig::validate` keeps below this
//! cache's cap.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use skiff_common::StreamId;

use crate::batch::StoredBatch;

#[derive(Debug, Default)]
struct StreamCache {
    /// (insertion sequence, batch), in offset order.
    batches: VecDeque<(u64, StoredBatch)>,
    /// Batches ending at or below this are in committed objects.
    uploaded_end: u64,
}

#[derive(Debug, Default)]
struct Inner {
    streams: HashMap<StreamId, StreamCache>,
    /// Insertion order over all streams: (stream, insertion sequence, size).
    /// Entries whose batch was already removed are skipped lazily.
    order: VecDeque<(StreamId, u64, usize)>,
    live: usize,
    bytes: usize,
    seq: u64,
}

/// A bounded cache of recent batches per stream.
#[derive(Debug)]
pub struct LogCache {
    cap: usize,
    inner: Mutex<Inner>,
}

impl LogCache {
    /// A cache that evicts uploaded batches beyond `cap` bytes of payload.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: Mutex::default(),
        }
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Add a durable batch; it must follow the stream's last cached batch.
    pub fn insert(&self, stream: StreamId, batch: StoredBatch) {
        let mut inner = self.inner.lock();
        let size = batch.payload.len();
        inner.seq += 1;
        let seq = inner.seq;
        let s = inner.streams.entry(stream).or_default();
        if s.batches
            .back()
            .is_some_and(|(_, b)| b.end_offset() > batch.base_offset)
        {
            // Out of order (a reopened stream restarting lower): start over.
            s.batches.clear();
        }
        s.batches.push_back((seq, batch));
        inner.order.push_back((stream, seq, size));
        inner.live += 1;
        inner.bytes += size;
        Self::recount_if_dirty(&mut inner);
        self.evict(&mut inner);
    }

    /// Batches of `stream` ending at or below `end` are in objects.
    pub fn mark_uploaded(&self, stream: StreamId, end: u64) {
        let mut inner = self.inner.lock();
        if let Some(s) = inner.streams.get_mut(&stream) {
            s.uploaded_end = s.uploaded_end.max(end);
        }
        self.evict(&mut inner);
    }

    /// Drop batches that end at or below `new_start` (trim).
    pub fn trim(&self, stream: StreamId, new_start: u64) {
        let mut inner = self.inner.lock();
        let Some(s) = inner.streams.get_mut(&stream) else {
            return;
        };
        let mut freed = (0, 0);
        while s
            .batches
            .front()
            .is_some_and(|(_, b)| b.end_offset() <= new_start)
        {
            if let Some((_, b)) = s.batches.pop_front() {
                freed.0 += 1;
                freed.1 += b.payload.len();
            }
        }
        inner.live -= freed.0;
        inner.bytes -= freed.1;
        Self::recount_if_dirty(&mut inner);
    }

    /// Forget a stream (closed or fenced).
    pub fn remove(&self, stream: StreamId) {
        let mut inner = self.inner.lock();
        if let Some(s) = inner.streams.remove(&stream) {
            inner.live -= s.batches.len();
            inner.bytes -= s
                .batches
                .iter()
                .map(|(_, b)| b.payload.len())
                .sum::<usize>();
        }
        Self::recount_if_dirty(&mut inner);
    }

    /// Cached batches of `stream` from the one containing `from`, up to about
    /// `max_bytes` of payload (at least one batch). `None` when the cache
    /// does not hold `from` (the caller reads objects); `Some(empty)` when
    /// `from` is at or past the cached end.
    pub fn read(&self, stream: StreamId, from: u64, max_bytes: usize) -> Option<Vec<StoredBatch>> {
        let inner = self.inner.lock();
        let s = inner.streams.get(&stream)?;
        let (_, first) = s.batches.front()?;
        if from < first.base_offset {
            return None;
        }
        let i = s.batches.partition_point(|(_, b)| b.end_offset() <= from);
        let mut out = Vec::new();
        let mut bytes = 0;
        for (_, b) in s.batches.range(i..) {
            if !out.is_empty() && bytes + b.payload.len() > max_bytes {
                break;
            }
            bytes += b.payload.len();
            out.push(b.clone());
        }
        Some(out)
    }

    fn evict(&self, inner: &mut Inner) {
        while inner.bytes > self.cap {
            let Some(&(stream, seq, size)) = inner.order.front() else {
                break;
            };
            let Some(s) = inner.streams.get_mut(&stream) else {
                inner.order.pop_front();
                continue;
            };
            match s.batches.front() {
                Some((front_seq, b)) if *front_seq == seq => {
                    if b.end_offset() > s.uploaded_end {
                        break; // oldest batch not uploaded yet
                    }
                    s.batches.pop_front();
                    inner.order.pop_front();
                    inner.live -= 1;
                    inner.bytes -= size;
                }
                _ => {
                    inner.order.pop_front(); // already removed
                }
            }
        }
    }

    /// Drop stale order entries once they outnumber live batches.
    fn recount_if_dirty(inner: &mut Inner) {
        if inner.order.len() <= 2 * inner.live + 1024 {
            return;
        }
        let streams = &inner.streams;
        inner.order.retain(|(stream, seq, _)| {
            // Per stream, batches leave from the front, so live ones are
            // exactly those at or after the current front.
            streams
                .get(stream)
                .and_then(|s| s.batches.front())
                .is_some_and(|(front, _)| seq >= front)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(base: u64, n: u32, size: usize) -> StoredBatch {
        StoredBatch {
            base_offset: base,
            records: n,
            payload: Bytes::from(vec![7u8; size]),
        }
    }

    #[test]
    fn reads_from_the_batch_containing_the_offset() {
        let c = LogCache::new(1 << 20);
        let s = StreamId(1);
        c.insert(s, batch(10, 5, 10));
        c.insert(s, batch(15, 5, 10));
        c.insert(s, batch(20, 5, 10));
        assert!(c.read(s, 9, 100).is_none());
        let got = c.read(s, 17, 100).unwrap();
        assert_eq!(
            got.iter().map(|b| b.base_offset).collect::<Vec<_>>(),
            [15, 20]
        );
        assert_eq!(c.read(s, 17, 1).unwrap().len(), 1, "at least one batch");
        assert!(c.read(s, 25, 100).unwrap().is_empty());
    }

    #[test]
    fn evicts_only_uploaded_batches_oldest_first() {
        let c = LogCache::new(25);
        let (a, b) = (StreamId(1), StreamId(2));
        c.insert(a, batch(0, 1, 10));
        c.insert(b, batch(0, 1, 10));
        c.insert(a, batch(1, 1, 10));
        assert_eq!(c.bytes(), 30, "nothing uploaded: over cap but kept");
        c.mark_uploaded(b, 1);
        assert_eq!(c.bytes(), 30, "oldest is a's, not uploaded: stop");
        c.mark_uploaded(a, 1);
        assert_eq!(c.bytes(), 20);
        assert!(c.read(a, 0, 100).is_none());
        assert_eq!(c.read(a, 1, 100).unwrap().len(), 1);
    }

    #[test]
    fn trim_and_remove_free_bytes() {
        let c = LogCache::new(1000);
        let s = StreamId(3);
        for i in 0..10 {
            c.insert(s, batch(i, 1, 10));
        }
        c.trim(s, 5);
        assert_eq!(c.bytes(), 50);
        c.remove(s);
        assert_eq!(c.bytes(), 0);
        for i in 0..5000 {
            c.insert(s, batch(i, 1, 1));
            c.trim(s, i + 1);
        }
        assert!(
            c.inner.lock().order.len() < 3000,
            "stale entries are pruned"
        );
    }
}
