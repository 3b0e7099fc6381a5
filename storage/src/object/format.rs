//! The byte layout of an object and its decoders.
//!
//! ```text
//! object := block* index footer
//! block  := stream:u64 batch_count:u32 frame* crc32c:u32
//! frame  := base_offset:u64 records:u32 payload_len:u32 payload
//! index  := entry_count:u32 entry*
//! entry  := stream:u64 start:u64 end:u64 position:u64 len:u32
//! footer := index_position:u64 index_len:u32 index_crc:u32
//!           version:u16 reserved:u16 footer_crc:u32 magic:[u8; 8]
//! ```
//!
//! All integers are little-endian. A block's crc covers every byte of the
//! block before it; the footer's crc covers the 20 footer bytes before it.
//! The footer is fixed-size ([`FOOTER_LEN`]) and ends with [`MAGIC`], so a
//! reader that knows the object size finds it with one ranged GET of the tail.
//!
//! Every decoder checks lengths before reading and returns
//! [`FormatError`] on anything malformed; none of them panics.

use bytes::{Buf, Bytes};
use skiff_common::StreamId;

use crate::batch::StoredBatch;

/// Last 8 bytes of every object.
pub const MAGIC: [u8; 8] = *b"SKIFFOB1";
/// The format version written by this code (stable on disk).
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed footer at the end of an object.
pub const FOOTER_LEN: usize = 32;
/// Size of one index entry.
pub const INDEX_ENTRY_LEN: usize = 36;
/// Per-block overhead: header (stream, count) and trailing crc.
pub const BLOCK_OVERHEAD: usize = 16;
/// Per-batch framing inside a block.
pub const FRAME_HEADER_LEN: usize = 16;

/// One block of one stream: batches with offsets `[start, end)` at bytes
/// `[position, position + len)` of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    pub stream: StreamId,
    pub start: u64,
    pub end: u64,
    pub position: u64,
    pub len: u32,
}

impl IndexEntry {
    /// Byte range of the block inside the object.
    pub fn byte_range(&self) -> std::ops::Range<u64> {
        self.position..self.position + u64::from(self.len)
    }
}

/// Where the index is, as recorded in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub version: u16,
    pub index_position: u64,
    pub index_len: u32,
    pub index_crc: u32,
}

/// Malformed object bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("bad magic {0:02x?}: not a skiff object")]
    BadMagic([u8; 8]),
    #[error("unsupported object format version {0}")]
    UnsupportedVersion(u16),
    #[error("{what} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("index at {position}+{len} lies outside the object of {object_size} bytes")]
    IndexOutOfBounds {
        position: u64,
        len: u32,
        object_size: u64,
    },
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

fn need(what: &'static str, buf: &[u8], n: usize) -> Result<(), FormatError> {
    if buf.len() < n {
        Err(FormatError::Truncated {
            what,
            need: n,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

fn malformed(what: &'static str, detail: impl Into<String>) -> FormatError {
    FormatError::Malformed {
        what,
        detail: detail.into(),
    }
}

fn check_crc(what: &'static str, data: &[u8], stored: u32) -> Result<(), FormatError> {
    let computed = crc32c::crc32c(data);
    if computed != stored {
        return Err(FormatError::Checksum {
            what,
            stored,
            computed,
        });
    }
    Ok(())
}

/// Encode the footer (see the module docs).
pub fn encode_footer(f: &Footer, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&f.index_position.to_le_bytes());
    out.extend_from_slice(&f.index_len.to_le_bytes());
    out.extend_from_slice(&f.index_crc.to_le_bytes());
    out.extend_from_slice(&f.version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&MAGIC);
}

/// Decode the footer from the last [`FOOTER_LEN`] bytes of `tail` (which may
/// be longer: e.g. the whole tail fetched in one GET). `object_size` is used
/// to check the index lies inside the object.
pub fn decode_footer(tail: &[u8], object_size: u64) -> Result<Footer, FormatError> {
    need("footer", tail, FOOTER_LEN)?;
    let b = &tail[tail.len() - FOOTER_LEN..];
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&b[24..32]);
    if magic != MAGIC {
        return Err(FormatError::BadMagic(magic));
    }
    let mut body = &b[..24];
    let index_position = body.get_u64_le();
    let index_len = body.get_u32_le();
    let index_crc = body.get_u32_le();
    let version = body.get_u16_le();
    let _reserved = body.get_u16_le();
    let stored = body.get_u32_le();
    check_crc("footer", &b[..20], stored)?;
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let index_end = index_position.checked_add(u64::from(index_len));
    if index_end.is_none_or(|end| end + FOOTER_LEN as u64 > object_size) {
        return Err(FormatError::IndexOutOfBounds {
            position: index_position,
            len: index_len,
            object_size,
        });
    }
    Ok(Footer {
        version,
        index_position,
        index_len,
        index_crc,
    })
}

/// Encode an index (entries sorted by stream, then offset).
pub fn encode_index(entries: &[IndexEntry], out: &mut Vec<u8>) {
    let count = u32::try_from(entries.len()).expect("an object holds far fewer than 2^32 blocks");
    out.extend_from_slice(&count.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.stream.0.to_le_bytes());
        out.extend_from_slice(&e.start.to_le_bytes());
        out.extend_from_slice(&e.end.to_le_bytes());
        out.extend_from_slice(&e.position.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
    }
}

/// Decode and verify an index against the footer's crc. Entries must be
/// sorted by (stream, start), non-overlapping within a stream, and lie before
/// the index itself.
pub fn decode_index(bytes: &[u8], footer: &Footer) -> Result<Vec<IndexEntry>, FormatError> {
    if bytes.len() != footer.index_len as usize {
        return Err(FormatError::Truncated {
            what: "index",
            need: footer.index_len as usize,
            have: bytes.len(),
        });
    }
    check_crc("index", bytes, footer.index_crc)?;
    let mut b = bytes;
    need("index", b, 4)?;
    let count = b.get_u32_le() as usize;
    if b.len() != count.saturating_mul(INDEX_ENTRY_LEN) {
        return Err(malformed(
            "index",
            format!(
                "{count} entries need {} bytes, have {}",
                count * INDEX_ENTRY_LEN,
                b.len()
            ),
        ));
    }
    let mut out: Vec<IndexEntry> = Vec::with_capacity(count);
    for _ in 0..count {
        let e = IndexEntry {
            stream: StreamId(b.get_u64_le()),
            start: b.get_u64_le(),
            end: b.get_u64_le(),
            position: b.get_u64_le(),
            len: b.get_u32_le(),
        };
        if e.end <= e.start {
            return Err(malformed(
                "index",
                format!("empty offset range {}..{}", e.start, e.end),
            ));
        }
        if e.position.saturating_add(u64::from(e.len)) > footer.index_position {
            return Err(malformed(
                "index",
                format!("block at {} overlaps the index", e.position),
            ));
        }
        if let Some(prev) = out.last() {
            // Sorted by (stream, start); ranges of one stream never overlap.
            if (prev.stream, prev.end) > (e.stream, e.start) {
                return Err(malformed("index", "entries out of order"));
            }
        }
        out.push(e);
    }
    Ok(out)
}

/// The stream a block belongs to, read from its header without decoding it.
pub fn block_stream(block: &[u8]) -> Result<StreamId, FormatError> {
    need("block header", block, 8)?;
    let mut b = block;
    Ok(StreamId(b.get_u64_le()))
}

/// Check a block's crc without decoding it.
pub fn verify_block(block: &[u8]) -> Result<(), FormatError> {
    need("block", block, BLOCK_OVERHEAD)?;
    let body_len = block.len() - 4;
    let stored = u32::from_le_bytes(
        block[body_len..]
            .try_into()
            .expect("slice of length 4 by construction"),
    );
    check_crc("block", &block[..body_len], stored)
}

/// Decode a block, verifying its crc. `block` is exactly the block's bytes
/// (as [`IndexEntry::byte_range`] gives them); payloads are zero-copy slices.
pub fn decode_block(block: &Bytes) -> Result<(StreamId, Vec<StoredBatch>), FormatError> {
    decode_block_inner(block, true)
}

/// Like [`decode_block`] but without the crc check, for blocks that were
/// verified when they entered a trusted cache.
pub fn decode_verified_block(block: &Bytes) -> Result<(StreamId, Vec<StoredBatch>), FormatError> {
    decode_block_inner(block, false)
}

fn decode_block_inner(
    block: &Bytes,
    verify: bool,
) -> Result<(StreamId, Vec<StoredBatch>), FormatError> {
    if verify {
        verify_block(block)?;
    }
    need("block", block, BLOCK_OVERHEAD)?;
    let body_len = block.len() - 4;
    let mut b = &block[..body_len];
    let stream = StreamId(b.get_u64_le());
    let count = b.get_u32_le() as usize;
    // Each frame takes at least its header: bound the allocation by the bytes present.
    if count == 0 || count > b.len() / FRAME_HEADER_LEN {
        return Err(malformed(
            "block",
            format!("{count} batches in {} bytes", b.len()),
        ));
    }
    let mut batches: Vec<StoredBatch> = Vec::with_capacity(count);
    let mut pos = 12usize;
    for _ in 0..count {
        need("batch frame", b, FRAME_HEADER_LEN)?;
        let base_offset = b.get_u64_le();
        let records = b.get_u32_le();
        let len = b.get_u32_le() as usize;
        pos += FRAME_HEADER_LEN;
        need("batch payload", b, len)?;
        if records == 0 {
            return Err(malformed("block", "batch with zero records"));
        }
        if base_offset.checked_add(u64::from(records)).is_none() {
            return Err(malformed("block", "batch offsets overflow"));
        }
        if batches.last().is_some_and(|p| p.end_offset() > base_offset) {
            return Err(malformed("block", "batches out of order"));
        }
        batches.push(StoredBatch {
            base_offset,
            records,
            payload: block.slice(pos..pos + len),
        });
        b.advance(len);
        pos += len;
    }
    if !b.is_empty() {
        return Err(malformed("block", format!("{} trailing bytes", b.len())));
    }
    Ok((stream, batches))
}
