//! Zero-copy views over RecordBatch v2 bytes, validation, and in-place stamping.
//!
//! ```text
//! offset  field
//!  0      base_offset: i64          \ outside the crc: the broker rewrites them
//!  8      batch_length: i32         |  (length counts the bytes after this field)
//! 12      partition_leader_epoch    /
//! 16      magic: i8 (= 2)
//! 17      crc: u32                  crc32c of bytes 21..end
//! 21      attributes: i16           bits 0-2 codec, 3 timestamp type, 4 transactional,
//!                                   5 control, 6 delete horizon
//! 23      last_offset_delta: i32
//! 27      base_timestamp: i64
//! 35      max_timestamp: i64
//! 43      producer_id: i64
//! 51      producer_epoch: i16
//! 53      base_sequence: i32
//! 57      record_count: i32
//! 61      records (compressed as a whole when the codec is not none)
//! ```

use bytes::Bytes;

use super::compression::{self, Compression};
use super::error::BatchError;
use super::record::{RecordIter, read_record};

/// Size of the v2 batch header; the smallest possible batch.
pub const BATCH_HEADER_LEN: usize = 61;
/// `base_offset` + `batch_length`: bytes not counted by `batch_length`.
pub const LOG_OVERHEAD: usize = 12;
/// The only supported magic.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// Which clock a batch's timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker on append.
    LogAppendTime,
}

/// The batch attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attributes(pub i16);

impl Attributes {
    /// The compression codec, if the id is a known one.
    pub fn compression(self) -> Result<Compression, BatchError> {
        let id = (self.0 & 0x07) as u8;
        Compression::from_id(id).ok_or(BatchError::UnknownCompression(id))
    }

    /// The timestamp type bit.
    pub fn timestamp_type(self) -> TimestampType {
        if self.0 & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction.
    pub fn is_transactional(self) -> bool {
        self.0 & TRANSACTIONAL_BIT != 0
    }

    /// A control batch (transaction markers).
    pub fn is_control(self) -> bool {
        self.0 & CONTROL_BIT != 0
    }

    /// Base timestamp holds the delete horizon (compacted topics).
    pub fn has_delete_horizon(self) -> bool {
        self.0 & DELETE_HORIZON_BIT != 0
    }

    /// These attributes with the codec replaced.
    pub fn with_compression(self, codec: Compression) -> Self {
        Self((self.0 & !0x07) | i16::from(codec.id()))
    }

    /// These attributes with the timestamp type replaced.
    pub fn with_timestamp_type(self, t: TimestampType) -> Self {
        match t {
            TimestampType::CreateTime => Self(self.0 & !TIMESTAMP_TYPE_BIT),
            TimestampType::LogAppendTime => Self(self.0 | TIMESTAMP_TYPE_BIT),
        }
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

/// Checks the framing and magic of the batch at the start of `buf` and returns its
/// total size (`LOG_OVERHEAD + batch_length`). Does not look at the crc. The magic is
/// checked first: it sits at byte 16 in every message format, so a v0/v1 message set
/// is reported as such rather than as a short batch.
fn check_header(buf: &[u8]) -> Result<usize, BatchError> {
    if buf.len() <= MAGIC {
        return Err(BatchError::Truncated {
            needed: MAGIC + 1,
            available: buf.len(),
        });
    }
    let magic = buf[MAGIC] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let batch_length = i32_at(buf, BATCH_LENGTH);
    let total = usize::try_from(batch_length)
        .ok()
        .map(|l| l + LOG_OVERHEAD)
        .filter(|&t| t >= BATCH_HEADER_LEN)
        .ok_or(BatchError::LengthTooSmall(batch_length))?;
    if buf.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    Ok(total)
}

/// The crc32c a v2 batch stores: over everything from the attributes to the end.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES..])
}

/// The crc32c of all of `batch`'s bytes, header included, derived from the
/// stored crc instead of read from the records: the 21 bytes before the
/// attributes are hashed and combined with the stored crc, which covers the
/// rest. Storage frames (WAL records, object blocks) checksum whole batches;
/// this lets them do it without another pass over the data.
///
/// Only meaningful for a batch whose stored crc is known to be right: one
/// that passed [`BatchView::verify_crc`] (or [`BatchView::validate`]) and was
/// changed since only through [`BatchMut`], which keeps the crc current.
/// Returns `None` for bytes shorter than a batch header.
pub fn whole_crc_from_stored(batch: &[u8]) -> Option<u32> {
    if batch.len() < BATCH_HEADER_LEN {
        return None;
    }
    let stored = u32::from_be_bytes(batch[CRC..CRC + 4].try_into().ok()?);
    let head = crc32c::crc32c(&batch[..ATTRIBUTES]);
    Some(crc32c::crc32c_combine(
        head,
        stored,
        batch.len() - ATTRIBUTES,
    ))
}

/// Limits and checks applied by [`BatchView::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidateOptions {
    /// Decompress compressed batches to check their records (Kafka does). When
    /// false only the header, crc and counts are checked for compressed batches.
    pub inspect_compressed: bool,
    /// Most bytes a compressed batch may decompress to.
    pub max_decompressed_bytes: usize,
    /// Apply the rules for batches from producers: no control batches, valid
    /// sequence numbers for idempotent producers.
    pub from_client: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self {
            inspect_compressed: true,
            max_decompressed_bytes: 128 * 1024 * 1024,
            from_client: true,
        }
    }
}

/// What validation learned from a batch's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    /// Records in the batch (checked against the data when it was inspected).
    pub record_count: i32,
    /// Smallest record timestamp, when the records were inspected.
    pub min_timestamp: Option<i64>,
    /// Largest record timestamp, when the records were inspected. Kafka rewrites the
    /// header's `max_timestamp` to this for CreateTime topics.
    pub max_timestamp: Option<i64>,
    /// Size of the records section after decompression, when inspected.
    pub uncompressed_records_len: Option<usize>,
}

/// A read-only view of one v2 batch: exactly its bytes, shared, never copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchView {
    bytes: Bytes,
}

impl BatchView {
    /// Wraps the single batch in `bytes`, checking its framing and magic.
    ///
    /// # Errors
    /// Truncated or mis-sized batch, magic other than 2, or bytes after the batch
    /// ([`BatchError::TrailingBytes`]).
    pub fn parse(bytes: Bytes) -> Result<Self, BatchError> {
        let total = check_header(&bytes)?;
        if total != bytes.len() {
            return Err(BatchError::TrailingBytes(bytes.len() - total));
        }
        Ok(Self { bytes })
    }

    /// The batch's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Consumes the view, returning its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        i64_at(&self.bytes, BASE_OFFSET)
    }
    /// Bytes after the `batch_length` field.
    pub fn batch_length(&self) -> i32 {
        i32_at(&self.bytes, BATCH_LENGTH)
    }
    /// Leader epoch stamped by the broker that appended the batch.
    pub fn partition_leader_epoch(&self) -> i32 {
        i32_at(&self.bytes, PARTITION_LEADER_EPOCH)
    }
    /// Always 2 for a parsed view.
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC] as i8
    }
    /// The stored crc32c.
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes([
            self.bytes[CRC],
            self.bytes[CRC + 1],
            self.bytes[CRC + 2],
            self.bytes[CRC + 3],
        ])
    }
    /// The attribute bits.
    pub fn attributes(&self) -> Attributes {
        Attributes(i16_at(&self.bytes, ATTRIBUTES))
    }
    /// Offset delta of the last record.
    pub fn last_offset_delta(&self) -> i32 {
        i32_at(&self.bytes, LAST_OFFSET_DELTA)
    }
    /// Timestamp the record deltas are relative to.
    pub fn base_timestamp(&self) -> i64 {
        i64_at(&self.bytes, BASE_TIMESTAMP)
    }
    /// Largest timestamp in the batch (or the log-append time).
    pub fn max_timestamp(&self) -> i64 {
        i64_at(&self.bytes, MAX_TIMESTAMP)
    }
    /// Producer id, -1 when not idempotent.
    pub fn producer_id(&self) -> i64 {
        i64_at(&self.bytes, PRODUCER_ID)
    }
    /// Producer epoch.
    pub fn producer_epoch(&self) -> i16 {
        i16_at(&self.bytes, PRODUCER_EPOCH)
    }
    /// Sequence number of the first record.
    pub fn base_sequence(&self) -> i32 {
        i32_at(&self.bytes, BASE_SEQUENCE)
    }
    /// Declared number of records.
    pub fn record_count(&self) -> i32 {
        i32_at(&self.bytes, RECORD_COUNT)
    }
    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }
    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    /// The records section, compressed as the batch stores it.
    pub fn records_bytes(&self) -> Bytes {
        self.bytes.slice(BATCH_HEADER_LEN..)
    }

    /// Whether the stored crc matches the bytes.
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let (stored, computed) = (self.crc(), compute_crc(&self.bytes));
        if stored == computed {
            Ok(())
        } else {
            Err(BatchError::CrcMismatch { stored, computed })
        }
    }

    /// The records section decompressed (a shared slice when uncompressed).
    ///
    /// # Errors
    /// Unknown codec, corrupt data, or more than `limit` bytes.
    pub fn decompressed_records(&self, limit: usize) -> Result<Bytes, BatchError> {
        match self.attributes().compression()? {
            Compression::None => Ok(self.records_bytes()),
            codec => {
                Ok(compression::decompress(codec, &self.bytes[BATCH_HEADER_LEN..], limit)?.into())
            }
        }
    }

    /// Iterates the records, decompressing first when needed (at most `limit` bytes).
    ///
    /// # Errors
    /// As [`Self::decompressed_records`]; each item fails if a record is malformed.
    pub fn records(&self, limit: usize) -> Result<RecordIter, BatchError> {
        let count = usize::try_from(self.record_count()).unwrap_or(0);
        Ok(RecordIter::new(self.decompressed_records(limit)?, count))
    }

    /// Checks everything a broker must before accepting the batch: crc, codec,
    /// count and offset range consistency, and (for uncompressed batches, and
    /// compressed ones when `opts.inspect_compressed`) that exactly `record_count`
    /// well-formed records are present with offset deltas `0..n` in order.
    ///
    /// # Errors
    /// The first violation found; see [`BatchError::error_code`].
    pub fn validate(&self, opts: &ValidateOptions) -> Result<BatchSummary, BatchError> {
        self.verify_crc()?;
        let attributes = self.attributes();
        let codec = attributes.compression()?;
        let record_count = self.record_count();
        if record_count <= 0 {
            return Err(BatchError::InvalidRecordCount(record_count));
        }
        if i64::from(self.last_offset_delta()) + 1 != i64::from(record_count) {
            return Err(BatchError::InconsistentOffsetRange {
                last_offset_delta: self.last_offset_delta(),
                record_count,
            });
        }
        if opts.from_client {
            if attributes.is_control() {
                return Err(BatchError::ControlBatch);
            }
            if self.producer_id() >= 0 && self.base_sequence() < 0 {
                return Err(BatchError::InvalidSequence {
                    producer_id: self.producer_id(),
                    base_sequence: self.base_sequence(),
                });
            }
        }
        let mut summary = BatchSummary {
            record_count,
            min_timestamp: None,
            max_timestamp: None,
            uncompressed_records_len: None,
        };
        if codec != Compression::None && !opts.inspect_compressed {
            return Ok(summary);
        }
        let records = self.decompressed_records(opts.max_decompressed_bytes)?;
        let (min, max) = walk_records(&records, record_count as usize, self.base_timestamp())?;
        summary.min_timestamp = Some(min);
        summary.max_timestamp = Some(max);
        summary.uncompressed_records_len = Some(records.len());
        Ok(summary)
    }
}

/// Reads `count` records from `buf`, checking offset deltas and that nothing is
/// left over; returns the min and max record timestamps.
fn walk_records(buf: &[u8], count: usize, base_timestamp: i64) -> Result<(i64, i64), BatchError> {
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    let mut pos = 0;
    for index in 0..count {
        if pos >= buf.len() {
            return Err(BatchError::MissingRecords {
                declared: count as i32,
                found: index,
            });
        }
        let record = read_record(buf, &mut pos, index)?;
        if i64::from(record.offset_delta) != index as i64 {
            return Err(BatchError::OffsetDeltaMismatch {
                index,
                offset_delta: record.offset_delta,
            });
        }
        let ts = base_timestamp.wrapping_add(record.timestamp_delta);
        min = min.min(ts);
        max = max.max(ts);
    }
    if pos != buf.len() {
        return Err(BatchError::TrailingBytes(buf.len() - pos));
    }
    Ok((min, max))
}

/// A mutable view of one v2 batch for the fields a broker rewrites on append.
#[derive(Debug)]
pub struct BatchMut<'a> {
    bytes: &'a mut [u8],
}

impl<'a> BatchMut<'a> {
    /// Wraps the single batch in `bytes`, checking framing and magic as
    /// [`BatchView::parse`] does.
    ///
    /// # Errors
    /// As [`BatchView::parse`].
    pub fn new(bytes: &'a mut [u8]) -> Result<Self, BatchError> {
        let total = check_header(bytes)?;
        if total != bytes.len() {
            return Err(BatchError::TrailingBytes(bytes.len() - total));
        }
        Ok(Self { bytes })
    }

    /// Sets the base offset (outside the crc: no recomputation).
    pub fn set_base_offset(&mut self, base_offset: i64) {
        self.bytes[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    }

    /// Sets the partition leader epoch (outside the crc: no recomputation).
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        self.bytes[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
            .copy_from_slice(&epoch.to_be_bytes());
    }

    /// Sets the timestamp type and max timestamp as Kafka's
    /// `DefaultRecordBatch.setMaxTimestamp` does: for LogAppendTime pass the append
    /// time, for CreateTime the largest record timestamp. Both fields are inside the
    /// crc, so it is recomputed, but only when something changed. Returns whether
    /// it did.
    pub fn set_max_timestamp(&mut self, timestamp_type: TimestampType, max_timestamp: i64) -> bool {
        let old = Attributes(i16_at(self.bytes, ATTRIBUTES));
        let new = old.with_timestamp_type(timestamp_type);
        if new == old && i64_at(self.bytes, MAX_TIMESTAMP) == max_timestamp {
            return false;
        }
        self.bytes[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&new.0.to_be_bytes());
        self.bytes[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
        self.update_crc();
        true
    }

    /// Recomputes and stores the crc.
    pub fn update_crc(&mut self) {
        let crc = compute_crc(self.bytes);
        self.bytes[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Iterates the batches of a records buffer (a Fetch response's or a log
/// segment's), yielding each as a [`BatchView`]. Stops after the first error.
#[derive(Debug, Clone)]
pub struct Batches {
    rest: Bytes,
    failed: bool,
}

impl Batches {
    /// Batches in `records`.
    pub fn new(records: Bytes) -> Self {
        Self {
            rest: records,
            failed: false,
        }
    }
}

impl Iterator for Batches {
    type Item = Result<BatchView, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let result = check_header(&self.rest).map(|total| BatchView {
            bytes: self.rest.split_to(total),
        });
        self.failed = result.is_err();
        Some(result)
    }
}

/// The one batch of a Produce partition's `records` field. Kafka's
/// `ProduceRequest.validateRecords` requires exactly one v2 batch for Produce v3+.
///
/// # Errors
/// [`BatchError::NoBatch`] for null or empty records, [`BatchError::MultipleBatches`],
/// or the batch's framing error.
pub fn single_batch(records: Option<&Bytes>) -> Result<BatchView, BatchError> {
    let records = records
        .filter(|r| !r.is_empty())
        .ok_or(BatchError::NoBatch)?;
    let total = check_header(records)?;
    if total != records.len() {
        return Err(if check_header(&records[total..]).is_ok() {
            BatchError::MultipleBatches
        } else {
            BatchError::TrailingBytes(records.len() - total)
        });
    }
    Ok(BatchView {
        bytes: records.clone(),
    })
}
