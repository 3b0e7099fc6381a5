//! Objects: the immutable files in the object store that hold stream data.
//!
//! An object is `[data blocks][index][footer]` (byte layout in [`format`](mod@format)).
//! A block holds whole batches of one stream, framed so that
//! [`format::decode_block`] rebuilds the [`StoredBatch`]es, with a crc32c per
//! block; the index maps `(stream, start, end)` to the block's byte range;
//! the fixed-size footer ends with a magic and records the index position,
//! length and crc, with its own crc. Readers fetch the tail of the object
//! once (footer, and usually the index with it), then ranged GETs of just
//! the blocks they need ([`ObjectReader`]).
//!
//! Writers use [`ObjectBuilder`], then [`put_object`] under [`object_key`],
//! and commit [`stream_ranges`] of the index through the catalog.
//!
//! ```
//! use skiff_common::StreamId;
//! use skiff_storage::object::{ObjectBuilder, ObjectIndex, stream_ranges};
//!
//! let mut b = ObjectBuilder::new(64 << 10);
//! b.push(StreamId(1), 0, 10, b"ten records").unwrap();
//! b.push(StreamId(1), 10, 5, b"five more").unwrap();
//! b.push(StreamId(2), 100, 1, b"another stream").unwrap();
//! let (bytes, index) = b.finish();
//! assert_eq!(stream_ranges(&index), vec![(StreamId(1), 0, 15), (StreamId(2), 100, 101)]);
//! let parsed = ObjectIndex::decode(&bytes, bytes.len() as u64).unwrap();
//! assert_eq!(parsed.entries, index);
//! ```

mod builder;
pub mod format;
mod reader;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use skiff_common::{ObjectId, StreamId};

use crate::batch::StoredBatch;

pub use builder::{BuildError, ObjectBuilder, stream_ranges};
pub use format::{FormatError, IndexEntry};
pub use reader::{ObjectReader, ReadError};

/// Top-level folder of data objects in the store.
pub const OBJECTS_PREFIX: &str = "objects";

/// The store key of an object: `objects/<hhhh>/<id, 20 digits>.sko`, where
/// `hhhh` is 16 bits of a hash of the id. The hash spreads consecutive ids
/// over key prefixes, which S3 partitions on; the zero-padded id keeps keys
/// of one prefix sorted. A key names one object forever (ids are never
/// reused and objects never overwritten).
pub fn object_key(id: ObjectId) -> Path {
    let h = crc32c::crc32c(&id.0.to_le_bytes()) & 0xffff;
    Path::from(format!("{OBJECTS_PREFIX}/{h:04x}/{:020}.sko", id.0))
}

/// The object id of a key made by [`object_key`] (listing for orphans).
pub fn parse_object_key(key: &Path) -> Option<ObjectId> {
    let mut parts = key.parts();
    if parts.next()?.as_ref() != OBJECTS_PREFIX {
        return None;
    }
    let _hash = parts.next()?;
    let name = parts.next()?;
    let id: u64 = name.as_ref().strip_suffix(".sko")?.parse().ok()?;
    (parts.next().is_none() && object_key(ObjectId(id)) == *key).then_some(ObjectId(id))
}

/// PUT a new object, create-only where the store supports it. A retried PUT
/// that finds the object already there with the same size counts as done
/// (the first attempt succeeded but its answer was lost).
pub async fn put_object(
    store: &dyn ObjectStore,
    id: ObjectId,
    bytes: impl Into<PutPayload>,
) -> Result<(), object_store::Error> {
    let key = object_key(id);
    let payload: PutPayload = bytes.into();
    let len = payload.content_length() as u64;
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store.put_opts(&key, payload.clone(), create).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::NotImplemented { .. }) => {
            store.put(&key, payload).await.map(|_| ())
        }
        Err(e @ object_store::Error::AlreadyExists { .. }) => match store.head(&key).await {
            Ok(meta) if meta.size == len => Ok(()),
            _ => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Every batch of a whole object, per block in index order (stream, offset).
/// Compaction reads its inputs this way.
pub fn decode_object(bytes: &Bytes) -> Result<Vec<(StreamId, Vec<StoredBatch>)>, FormatError> {
    let index = ObjectIndex::decode(bytes, bytes.len() as u64)?;
    let mut out = Vec::with_capacity(index.entries.len());
    for e in &index.entries {
        // decode_index checked every block lies before the index.
        let block = bytes.slice(e.position as usize..(e.position + u64::from(e.len)) as usize);
        let (stream, batches) = format::decode_block(&block)?;
        if stream != e.stream || batches.first().map(|b| b.base_offset) != Some(e.start) {
            return Err(FormatError::Malformed {
                what: "block",
                detail: format!("block at {} does not match its index entry", e.position),
            });
        }
        out.push((stream, batches));
    }
    Ok(out)
}

/// Footer and index of one object, as cached by the block cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIndex {
    pub object_size: u64,
    pub footer: format::Footer,
    /// Sorted by (stream, start).
    pub entries: Vec<IndexEntry>,
}

impl ObjectIndex {
    /// Decode from a whole object, or any tail of it that contains the
    /// footer and the index (`object_size` is the whole object's size).
    pub fn decode(tail: &[u8], object_size: u64) -> Result<Self, FormatError> {
        let footer = format::decode_footer(tail, object_size)?;
        let tail_start = object_size.saturating_sub(tail.len() as u64);
        if footer.index_position < tail_start {
            return Err(FormatError::Truncated {
                what: "object tail",
                need: (object_size - footer.index_position) as usize,
                have: tail.len(),
            });
        }
        let at = (footer.index_position - tail_start) as usize;
        let bytes = tail
            .get(at..at + footer.index_len as usize)
            .ok_or(FormatError::Truncated {
                what: "index",
                need: footer.index_len as usize,
                have: tail.len().saturating_sub(at),
            })?;
        let entries = format::decode_index(bytes, &footer)?;
        Ok(Self {
            object_size,
            footer,
            entries,
        })
    }

    /// Index entries of `stream` from the block holding `from` onward.
    pub fn blocks_from(&self, stream: StreamId, from: u64) -> &[IndexEntry] {
        let first = self
            .entries
            .partition_point(|e| (e.stream, e.end) <= (stream, from));
        let rest = &self.entries[first..];
        let n = rest.partition_point(|e| e.stream == stream);
        &rest[..n]
    }

    /// Approximate memory use, for the index cache's weigher.
    pub fn weight(&self) -> usize {
        64 + self.entries.len() * std::mem::size_of::<IndexEntry>()
    }
}

#[cfg(test)]
mod tests;
