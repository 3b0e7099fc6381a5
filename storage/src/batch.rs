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

/// A batch's bytes with the crc32c over all of them, computed once where the
/// payload is made and reused by every checksummed frame that covers it (the
/// WAL record, the object block), so appending does not read the payload
/// once per checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    bytes: Bytes,
    crc: u32,
}

impl Payload {
    /// `bytes`, with their crc32c computed here (one pass over them).
    pub fn new(bytes: Bytes) -> Self {
        let crc = crc32c::crc32c(&bytes);
        Self { bytes, crc }
    }

    /// `bytes` with a crc32c the caller already knows (for a Kafka batch,
    /// derived from its verified stored crc). A wrong `crc` makes every frame
    /// written from this payload fail its check when read back, so the
    /// records would be reported corrupt rather than silently changed.
    pub fn with_crc(bytes: Bytes, crc: u32) -> Self {
        debug_assert_eq!(crc32c::crc32c(&bytes), crc, "payload crc does not match");
        Self { bytes, crc }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The crc32c of [`bytes`](Self::bytes).
    pub fn crc(&self) -> u32 {
        self.crc
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Self::new(bytes)
    }
}
