//! Errors of the stream API, one enum per operation.
//!
//! The broker maps them to Kafka error codes in one place; the comments say
//! which are retriable from a client's point of view.

use skiff_common::{StreamEpoch, StreamId};

use crate::catalog::CatalogError;
use crate::config::ConfigError;
use crate::wal::WalError;

/// Starting the engine or opening a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// WAL recovery failed (a corrupt record names its file and position).
    #[error("WAL recovery failed: {0}")]
    Wal(#[from] WalError),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// The WAL holds data the catalog cannot take (a gap or overlap at the
    /// stream's own epoch): refusing to start rather than drop it.
    #[error("WAL recovery of stream {stream}: {reason}")]
    Inconsistent { stream: StreamId, reason: String },
    /// The stream's current epoch is not the one asked for.
    #[error("stream {stream} is at epoch {current}, not {asked}")]
    Fenced {
        stream: StreamId,
        current: StreamEpoch,
        asked: StreamEpoch,
    },
    /// The stream is already open in this engine; close it first.
    #[error("stream {0} is already open")]
    AlreadyOpen(StreamId),
    #[error("block cache: {0}")]
    Cache(String),
    #[error("storage is shut down")]
    ShutDown,
}

/// An append failed. Offsets are assigned only to appends that reach the WAL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// Another owner holds the stream (its epoch moved on). Not retriable
    /// here: the client must find the new owner.
    #[error("stream {0} is fenced: another owner holds it")]
    Fenced(StreamId),
    /// The stream was closed (reassignment) or storage shut down. Retriable
    /// against the new owner.
    #[error("stream {0} is closed")]
    Closed(StreamId),
    /// The payload is larger than `wal.max_record_bytes`.
    #[error("record of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: usize, max: u64 },
    /// Zero records in an append.
    #[error("an append must carry at least one record")]
    Empty,
    /// The WAL could not make the append durable; the stream stops taking
    /// appends until it is reopened (after recovery).
    #[error("WAL: {0}")]
    Wal(#[from] WalError),
}

/// A read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// `offset` is outside `[start, end]` of the stream.
    #[error("offset {offset} is out of range {start}..={end}")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    #[error("stream {0} is closed")]
    Closed(StreamId),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// Object storage failed; `retriable` for transient store errors.
    #[error("object read: {source}")]
    Object {
        retriable: bool,
        #[source]
        source: crate::object::ReadError,
    },
    /// The catalog has no object for committed offsets (a concurrent
    /// compaction or trim); retriable.
    #[error("no object holds offset {offset} of stream {stream}")]
    Missing { stream: StreamId, offset: u64 },
}

impl ReadError {
    /// True when retrying the same read may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ReadError::Object { retriable, .. } => *retriable,
            ReadError::Catalog(CatalogError::Unavailable(_)) | ReadError::Missing { .. } => true,
            _ => false,
        }
    }
}

/// Trimming failed.
#[derive(Debug, thiserror::Error)]
pub enum TrimError {
    #[error("stream {0} is fenced")]
    Fenced(StreamId),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
}

/// Closing failed: some appended data could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// The stream lost its epoch before its data was committed.
    #[error("stream {0} was fenced before its data was committed")]
    Fenced(StreamId),
    /// An append failed in the WAL; the stream's tail is unknown.
    #[error("WAL: {0}")]
    Wal(WalError),
    #[error("storage is shut down")]
    ShutDown,
}
