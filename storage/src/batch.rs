//! The unit storage stores: an opaque batch of records with its offsets.
//!
//! Storage does not look inside a payload (for Kafka partitions it is a
//! RecordBatch v2 with its base offset already stamped by the writer); it only
//! needs how many offsets the batch takes.

use bytes::Bytes;

/// A batch as stored and read back: offsets `[base_offset, base_offset + records)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: u64,
    /// Number of offsets the batch takes (>= 1).
    pub records: u32,
    pub payload: Bytes,
}

impl StoredBatch {
    /// One past the last offset in the batch.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.records)
    }
}
