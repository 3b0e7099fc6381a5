//! [`ObjectBuilder`]: batches in, object bytes plus index out.

use std::collections::HashSet;

use bytes::Bytes;
use skiff_common::StreamId;

use super::format::{
    BLOCK_OVERHEAD, FORMAT_VERSION, FRAME_HEADER_LEN, Footer, IndexEntry, encode_footer,
    encode_index,
};

/// Why a batch was refused by [`ObjectBuilder::push`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("stream {stream}: batch at {base_offset} does not follow offset {expected}")]
    OutOfOrder {
        stream: StreamId,
        base_offset: u64,
        expected: u64,
    },
    #[error("stream {0} was already finished in this object; push each stream's batches together")]
    StreamRevisited(StreamId),
    #[error("batch of stream {stream} at {base_offset} has zero records")]
    EmptyBatch { stream: StreamId, base_offset: u64 },
    #[error("batch at {0} runs past the largest offset")]
    OffsetOverflow(u64),
    #[error("batch payload of {0} bytes is too large for one frame")]
    TooLarge(usize),
}

/// Builds one object in memory. Push batches stream by stream, each stream in
/// offset order (gaps are allowed, the index records them); streams may come
/// in any order but each only once. Blocks are cut when they reach the target
/// size, always at batch boundaries (one batch may exceed the target).
#[derive(Debug)]
pub struct ObjectBuilder {
    block_target: usize,
    buf: Vec<u8>,
    index: Vec<IndexEntry>,
    done_streams: HashSet<StreamId>,
    /// The block being written: (stream, start offset, next offset, position, count).
    open: Option<OpenBlock>,
}

#[derive(Debug)]
struct OpenBlock {
    stream: StreamId,
    start: u64,
    next: u64,
    position: usize,
    count: u32,
}

impl ObjectBuilder {
    /// A builder cutting blocks at about `block_target_bytes` (clamped to >= 1).
    pub fn new(block_target_bytes: usize) -> Self {
        Self {
            block_target: block_target_bytes.max(1),
            buf: Vec::new(),
            index: Vec::new(),
            done_streams: HashSet::new(),
            open: None,
        }
    }

    /// Like [`ObjectBuilder::new`], with room for about `bytes` of data
    /// reserved up front (saves re-allocating while the object grows).
    pub fn with_capacity(block_target_bytes: usize, bytes: usize) -> Self {
        let mut b = Self::new(block_target_bytes);
        b.buf.reserve(bytes);
        b
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.open.is_none() && self.index.is_empty()
    }

    /// Bytes of block data so far (without index and footer).
    pub fn data_len(&self) -> usize {
        self.buf.len()
    }

    /// Append one batch: offsets `[base_offset, base_offset + records)` of `stream`.
    pub fn push(
        &mut self,
        stream: StreamId,
        base_offset: u64,
        records: u32,
        payload: &[u8],
    ) -> Result<(), BuildError> {
        if records == 0 {
            return Err(BuildError::EmptyBatch {
                stream,
                base_offset,
            });
        }
        let len = u32::try_from(payload.len()).map_err(|_| BuildError::TooLarge(payload.len()))?;
        let end = base_offset
            .checked_add(u64::from(records))
            .ok_or(BuildError::OffsetOverflow(base_offset))?;
        match &self.open {
            Some(b) if b.stream == stream => {
                if base_offset < b.next {
                    return Err(BuildError::OutOfOrder {
                        stream,
                        base_offset,
                        expected: b.next,
                    });
                }
                // A gap, or a full block: cut here.
                if base_offset != b.next || self.buf.len() - b.position >= self.block_target {
                    self.close_block();
                }
            }
            Some(b) => {
                let prev = b.stream;
                self.close_block();
                self.done_streams.insert(prev);
            }
            None => {}
        }
        if self.open.is_none() {
            if self.done_streams.contains(&stream) {
                return Err(BuildError::StreamRevisited(stream));
            }
            if let Some(last) = self.index.last().filter(|e| e.stream == stream)
                && base_offset < last.end
            {
                return Err(BuildError::OutOfOrder {
                    stream,
                    base_offset,
                    expected: last.end,
                });
            }
            let position = self.buf.len();
            self.buf.extend_from_slice(&stream.0.to_le_bytes());
            self.buf.extend_from_slice(&0u32.to_le_bytes()); // count, patched on close
            self.open = Some(OpenBlock {
                stream,
                start: base_offset,
                next: base_offset,
                position,
                count: 0,
            });
        }
        let b = self.open.as_mut().expect("opened above");
        self.buf.reserve(FRAME_HEADER_LEN + payload.len());
        self.buf.extend_from_slice(&base_offset.to_le_bytes());
        self.buf.extend_from_slice(&records.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(payload);
        b.count += 1;
        b.next = end;
        Ok(())
    }

    fn close_block(&mut self) {
        let Some(b) = self.open.take() else { return };
        self.buf[b.position + 8..b.position + 12].copy_from_slice(&b.count.to_le_bytes());
        let crc = crc32c::crc32c(&self.buf[b.position..]);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        let len = self.buf.len() - b.position;
        debug_assert!(len >= BLOCK_OVERHEAD);
        self.index.push(IndexEntry {
            stream: b.stream,
            start: b.start,
            end: b.next,
            position: b.position as u64,
            len: u32::try_from(len).expect("a block holds batches of < 4 GiB each"),
        });
    }

    /// Finish the object: its bytes and its index (sorted by stream, offset).
    pub fn finish(mut self) -> (Bytes, Vec<IndexEntry>) {
        self.close_block();
        self.index.sort_by_key(|e| (e.stream, e.start));
        let index_position = self.buf.len() as u64;
        let mut index_bytes = Vec::with_capacity(4 + self.index.len() * 36);
        encode_index(&self.index, &mut index_bytes);
        let footer = Footer {
            version: FORMAT_VERSION,
            index_position,
            index_len: u32::try_from(index_bytes.len()).expect("index < 4 GiB"),
            index_crc: crc32c::crc32c(&index_bytes),
        };
        self.buf.extend_from_slice(&index_bytes);
        encode_footer(&footer, &mut self.buf);
        (Bytes::from(self.buf), self.index)
    }
}

/// Per-stream offset ranges `(stream, start, end)` an object covers, merging
/// adjacent blocks: what the catalog commit lists for the object. Entries
/// must be sorted by (stream, start), as [`ObjectBuilder::finish`] returns them.
pub fn stream_ranges(index: &[IndexEntry]) -> Vec<(StreamId, u64, u64)> {
    let mut out: Vec<(StreamId, u64, u64)> = Vec::new();
    for e in index {
        match out.last_mut() {
            Some(last) if last.0 == e.stream && last.2 == e.start => last.2 = e.end,
            _ => out.push((e.stream, e.start, e.end)),
        }
    }
    out
}
