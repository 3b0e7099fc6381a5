//! RecordBatch v2: zero-copy views, validation, in-place stamping, batch
//! iteration, compression codecs, and a builder.
//!
//! The broker's produce path is [`single_batch`] → [`BatchView::validate`] → copy
//! the bytes into its own buffer → [`BatchMut::set_base_offset`] (plus
//! [`BatchMut::set_partition_leader_epoch`] and, for LogAppendTime topics or to
//! fix `max_timestamp`, [`BatchMut::set_max_timestamp`]). The batch is never
//! re-encoded, and only decompressed when its records are inspected.

mod batch;
mod builder;
pub mod compression;
mod error;
mod record;
mod varint;

pub use batch::{
    Attributes, BATCH_HEADER_LEN, BatchMut, BatchSummary, BatchView, Batches, LOG_OVERHEAD,
    MAGIC_V2, TimestampType, ValidateOptions, compute_crc, single_batch, whole_crc_from_stored,
};
pub use builder::{BatchBuilder, NewRecord};
pub use compression::{Compression, CompressionError};
pub use error::BatchError;
pub use record::{RecordIter, RecordView};
