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
///
/// Large payloads pushed with [`ObjectBuilder::push_bytes`] are not copied:
/// the object is kept as a list of parts (framing copied into owned buffers,
/// large payloads shared) that [`ObjectBuilder::finish_parts`] hands to a
/// vectored PUT, and block checksums are computed as the batches go by.
#[derive(Debug)]
pub struct ObjectBuilder {
    block_target: usize,
    parts: Vec<Part>,
    /// Bytes of all parts.
    len: usize,
    index: Vec<IndexEntry>,
    done_streams: HashSet<StreamId>,
    /// The block being written.
    open: Option<OpenBlock>,
}

/// A piece of the object: bytes written here, or a payload shared with its owner.
#[derive(Debug)]
enum Part {
    Owned(Vec<u8>),
    Shared(Bytes),
}

/// Payloads at least this large are shared rather than copied (smaller ones
/// are cheaper to copy than to write as a separate piece).
const SHARE_AT_LEAST: usize = 64 * 1024;

#[derive(Debug)]
struct OpenBlock {
    stream: StreamId,
    start: u64,
    next: u64,
    /// Where the block starts in the object.
    position: usize,
    /// Part and offset of the block header (its count is patched on close).
    header_at: (usize, usize),
    count: u32,
    /// crc32c of the block's frames so far (everything after the header).
    frames_crc: u32,
}

/// Block header: stream, batch count.
const BLOCK_HEADER_LEN: usize = 12;

impl ObjectBuilder {
    /// A builder cutting blocks at about `block_target_bytes` (clamped to >= 1).
    pub fn new(block_target_bytes: usize) -> Self {
        Self {
            block_target: block_target_bytes.max(1),
            parts: Vec::new(),
            len: 0,
            index: Vec::new(),
            done_streams: HashSet::new(),
            open: None,
        }
    }

    /// Like [`ObjectBuilder::new`], with room for about `bytes` of data
    /// reserved up front (saves re-allocating while the object grows).
    pub fn with_capacity(block_target_bytes: usize, bytes: usize) -> Self {
        let mut b = Self::new(block_target_bytes);
        b.parts.push(Part::Owned(Vec::with_capacity(bytes)));
        b
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.open.is_none() && self.index.is_empty()
    }

    /// Bytes of block data so far (without index and footer).
    pub fn data_len(&self) -> usize {
        self.len
    }

    /// The owned buffer at the end of the parts, started if needed.
    fn tail(&mut self) -> &mut Vec<u8> {
        if !matches!(self.parts.last(), Some(Part::Owned(_))) {
            self.parts.push(Part::Owned(Vec::with_capacity(64 * 1024)));
        }
        match self.parts.last_mut() {
            Some(Part::Owned(v)) => v,
            _ => unreachable!("an owned part was just pushed"),
        }
    }

    fn put(&mut self, data: &[u8]) {
        self.tail().extend_from_slice(data);
        self.len += data.len();
    }

    /// Append one batch: offsets `[base_offset, base_offset + records)` of `stream`.
    pub fn push(
        &mut self,
        stream: StreamId,
        base_offset: u64,
        records: u32,
        payload: &[u8],
    ) -> Result<(), BuildError> {
        self.push_frame(stream, base_offset, records, payload.len(), || {
            crc32c::crc32c(payload)
        })?;
        self.put(payload);
        Ok(())
    }

    /// [`ObjectBuilder::push`] for a shared buffer whose crc32c is known
    /// (`payload_crc`, carried from the WAL record): a large payload becomes
    /// a part of the object without being copied, and no payload is read
    /// for the block's crc.
    pub fn push_bytes(
        &mut self,
        stream: StreamId,
        base_offset: u64,
        records: u32,
        payload: &Bytes,
        payload_crc: u32,
    ) -> Result<(), BuildError> {
        self.push_frame(stream, base_offset, records, payload.len(), || payload_crc)?;
        if payload.len() >= SHARE_AT_LEAST {
            self.parts.push(Part::Shared(payload.clone()));
            self.len += payload.len();
        } else {
            self.put(payload);
        }
        Ok(())
    }

    /// Checks the batch, opens or cuts blocks, writes the frame header and
    /// accounts the payload (`payload_len` bytes, crc32c from `payload_crc`)
    /// in the block's crc; the caller writes the payload.
    fn push_frame(
        &mut self,
        stream: StreamId,
        base_offset: u64,
        records: u32,
        payload_len: usize,
        payload_crc: impl FnOnce() -> u32,
    ) -> Result<(), BuildError> {
        if records == 0 {
            return Err(BuildError::EmptyBatch {
                stream,
                base_offset,
            });
        }
        let len = u32::try_from(payload_len).map_err(|_| BuildError::TooLarge(payload_len))?;
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
                if base_offset != b.next || self.len - b.position >= self.block_target {
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
            let position = self.len;
            let at = self.tail().len();
            let header_at = (self.parts.len() - 1, at);
            let mut header = [0u8; BLOCK_HEADER_LEN];
            header[..8].copy_from_slice(&stream.0.to_le_bytes()); // count patched on close
            self.put(&header);
            self.open = Some(OpenBlock {
                stream,
                start: base_offset,
                next: base_offset,
                position,
                header_at,
                count: 0,
                frames_crc: 0,
            });
        }
        let mut frame = [0u8; FRAME_HEADER_LEN];
        frame[..8].copy_from_slice(&base_offset.to_le_bytes());
        frame[8..12].copy_from_slice(&records.to_le_bytes());
        frame[12..].copy_from_slice(&len.to_le_bytes());
        self.put(&frame);
        let b = self.open.as_mut().expect("opened above");
        b.frames_crc = crc32c::crc32c_combine(
            crc32c::crc32c_append(b.frames_crc, &frame),
            payload_crc(),
            payload_len,
        );
        b.count += 1;
        b.next = end;
        Ok(())
    }

    fn close_block(&mut self) {
        let Some(b) = self.open.take() else { return };
        let (part, at) = b.header_at;
        let Some(Part::Owned(buf)) = self.parts.get_mut(part) else {
            unreachable!("block headers are written into owned parts");
        };
        buf[at + 8..at + BLOCK_HEADER_LEN].copy_from_slice(&b.count.to_le_bytes());
        let header_crc = crc32c::crc32c(&buf[at..at + BLOCK_HEADER_LEN]);
        let frames_len = self.len - b.position - BLOCK_HEADER_LEN;
        let crc = crc32c::crc32c_combine(header_crc, b.frames_crc, frames_len);
        self.put(&crc.to_le_bytes());
        let len = self.len - b.position;
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
    /// Copies the parts into one buffer when there are several; a writer
    /// that can take them apart uses [`ObjectBuilder::finish_parts`].
    pub fn finish(self) -> (Bytes, Vec<IndexEntry>) {
        let (parts, index) = self.finish_parts();
        let bytes = match <[Bytes; 1]>::try_from(parts) {
            Ok([one]) => one,
            Err(parts) => {
                let mut all = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
                for p in &parts {
                    all.extend_from_slice(p);
                }
                Bytes::from(all)
            }
        };
        (bytes, index)
    }

    /// Finish the object: its bytes as consecutive parts, and its index
    /// (sorted by stream, offset).
    pub fn finish_parts(mut self) -> (Vec<Bytes>, Vec<IndexEntry>) {
        self.close_block();
        self.index.sort_by_key(|e| (e.stream, e.start));
        let index_position = self.len as u64;
        let mut index_bytes = Vec::with_capacity(4 + self.index.len() * 36);
        encode_index(&self.index, &mut index_bytes);
        let footer = Footer {
            version: FORMAT_VERSION,
            index_position,
            index_len: u32::try_from(index_bytes.len()).expect("index < 4 GiB"),
            index_crc: crc32c::crc32c(&index_bytes),
        };
        self.put(&index_bytes);
        encode_footer(&footer, self.tail());
        let parts = self
            .parts
            .into_iter()
            .map(|p| match p {
                Part::Owned(v) => Bytes::from(v),
                Part::Shared(b) => b,
            })
            .filter(|b| !b.is_empty())
            .collect();
        (parts, self.index)
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
