//! Why a record batch is refused, and the Kafka error code each reason maps to.

use kafka_protocol::error::ResponseError;

use super::compression::CompressionError;

/// A produced batch that must be refused. [`BatchError::error_code`] gives the code a
/// Java broker returns for the same fault; [`BatchError::record_index`] the record to
/// name in the Produce response's `record_errors`, when one record is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header, or than `batch_length` announces.
    #[error("record batch truncated: {needed} bytes needed, {available} present")]
    Truncated {
        /// Bytes the header says the batch has (or the header size).
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// `batch_length` is below the minimum header size.
    #[error("record batch length {0} is below the v2 header size")]
    LengthTooSmall(i32),
    /// Magic other than 2. Kafka 4 only accepts v2 batches in Produce v3+
    /// (`InvalidRecordException`, INVALID_RECORD); message-format v0/v1 is gone.
    #[error("record batch magic {0} is not 2; only message format v2 is supported")]
    UnsupportedMagic(i8),
    /// The stored crc32c does not match the bytes.
    #[error("record batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The crc in the header.
        stored: u32,
        /// The crc of attributes..end.
        computed: u32,
    },
    /// Compression codec id 5-7.
    #[error("unknown compression codec id {0}")]
    UnknownCompression(u8),
    /// `record_count` is zero or negative.
    #[error("invalid record count {0}")]
    InvalidRecordCount(i32),
    /// `last_offset_delta` disagrees with `record_count` (Kafka: "Inconsistent batch
    /// offset range").
    #[error("last offset delta {last_offset_delta} is inconsistent with {record_count} records")]
    InconsistentOffsetRange {
        /// Header's last offset delta.
        last_offset_delta: i32,
        /// Header's record count.
        record_count: i32,
    },
    /// Fewer records in the data than `record_count`.
    #[error("batch declares {declared} records but holds {found}")]
    MissingRecords {
        /// Header's record count.
        declared: i32,
        /// Records that parsed before the data ran out.
        found: usize,
    },
    /// Bytes left after `record_count` records (Kafka: "Incorrect declared batch size,
    /// records still remaining").
    #[error("{0} bytes remain after the declared records")]
    TrailingBytes(usize),
    /// A record's offset delta is not its index.
    #[error("record {index} has offset delta {offset_delta}")]
    OffsetDeltaMismatch {
        /// Record index in the batch.
        index: usize,
        /// Its offset delta.
        offset_delta: i32,
    },
    /// A record does not parse (bad varint, length, key/value/header sizes).
    #[error("record {index} is malformed: {reason}")]
    MalformedRecord {
        /// Record index in the batch.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Decompressing the records failed or exceeded the limit.
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// A client sent a control batch (only coordinators write those).
    #[error("clients may not write control batches")]
    ControlBatch,
    /// An idempotent or transactional batch without a valid sequence.
    #[error("producer id {producer_id} with invalid base sequence {base_sequence}")]
    InvalidSequence {
        /// Producer id.
        producer_id: i64,
        /// Base sequence.
        base_sequence: i32,
    },
    /// The records field of a Produce partition is null or empty.
    #[error("no record batch in the produce data")]
    NoBatch,
    /// Produce v3+ allows exactly one batch per partition.
    #[error("more than one record batch in the produce data for one partition")]
    MultipleBatches,
}

impl BatchError {
    /// The Kafka error code a Java broker returns for this fault.
    ///
    /// CORRUPT_MESSAGE for damage to the batch frame (truncation, bad length, crc,
    /// codec, undecompressable data); INVALID_RECORD for a well-framed batch whose
    /// content breaks the rules (magic, counts, offsets, record structure, control
    /// batches, sequences, number of batches), as Kafka's `LogValidator` and
    /// `ProduceRequest.validateRecords` do.
    pub fn error_code(&self) -> i16 {
        match self {
            Self::Truncated { .. }
            | Self::LengthTooSmall(_)
            | Self::CrcMismatch { .. }
            | Self::UnknownCompression(_)
            | Self::Compression(_) => ResponseError::CorruptMessage.code(),
            Self::UnsupportedMagic(_)
            | Self::InvalidRecordCount(_)
            | Self::InconsistentOffsetRange { .. }
            | Self::MissingRecords { .. }
            | Self::TrailingBytes(_)
            | Self::OffsetDeltaMismatch { .. }
            | Self::MalformedRecord { .. }
            | Self::ControlBatch
            | Self::InvalidSequence { .. }
            | Self::NoBatch
            | Self::MultipleBatches => ResponseError::InvalidRecord.code(),
        }
    }

    /// The index of the faulty record, for the Produce response's `record_errors`.
    pub fn record_index(&self) -> Option<usize> {
        match self {
            Self::OffsetDeltaMismatch { index, .. } | Self::MalformedRecord { index, .. } => {
                Some(*index)
            }
            _ => None,
        }
    }
}
