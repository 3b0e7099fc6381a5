//! Write-ahead logs: where an append becomes durable before it is acknowledged.
//!
//! Two implementations share the record frame of [`record`] and one contract:
//!
//! - [`file`](mod@file): segmented files under `<data_dir>/wal`, written by one thread;
//!   appends from all streams that arrive while a write+`fdatasync` is running
//!   share the next one (group commit, bounded by
//!   `wal.group_commit_max_delay` / `wal.group_commit_max_bytes`).
//! - [`object`]: stateless mode; each group is one create-only PUT of
//!   `wal/<node>/<seq>`, acknowledged once the PUT succeeded.
//!
//! Every group gets an *end position*, increasing with each group. The
//! uploader, once everything appended before a position is committed in
//! objects, calls `Wal::trim` with it and the WAL deletes what lies below.
//!
//! Completions are delivered in write order to a `WalSink` on the writer
//! itself, so the engine applies durable appends (log cache, uploader,
//! offsets, wake-ups) in exactly the order they were written, whether or not
//! anyone still awaits them.

pub(crate) mod direct;
pub mod file;
pub mod object;
pub mod record;

use std::sync::Arc;

use bytes::Bytes;

pub use record::WalRecord;

/// Errors of the WAL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// A local write or fsync failed (a full disk, an I/O error). The file
    /// WAL refuses the group, cuts its segment back to the last durable
    /// record and goes on; only if that cut fails does it refuse every later
    /// write (the node must then restart and recover).
    #[error("WAL I/O error on {path}: {message}")]
    Io { path: String, message: String },
    /// A record before the tail does not decode: start-up stops rather than
    /// drop what follows.
    #[error("corrupt WAL record in {file} at byte {position}: {reason}")]
    Corrupt {
        file: String,
        position: u64,
        reason: String,
    },
    /// The record's stream stopped taking appends (an earlier record of it
    /// failed, or it closed) before the record was written.
    #[error("the stream stopped taking appends before this record was written")]
    StreamStopped,
    /// The object store failed (object WAL), or the WAL is shut down.
    #[error("WAL object store error: {0}")]
    Store(String),
    #[error("WAL is closed")]
    Closed,
}

impl WalError {
    pub(crate) fn io(path: impl std::fmt::Display, e: std::io::Error) -> Self {
        WalError::Io {
            path: path.to_string(),
            message: e.to_string(),
        }
    }
}

/// Receives every group once it is durable (or failed), in write order.
pub(crate) trait WalSink<T>: Send + Sync + 'static {
    /// `group` is durable; everything in it lies below `end_pos`.
    fn durable(&self, group: Vec<(WalRecord, T)>, end_pos: u64);
    /// `group` could not be written; its appends fail with `err`.
    fn failed(&self, group: Vec<(WalRecord, T)>, err: WalError);
    /// Whether a queued record may still be written. False once its stream
    /// stopped taking appends (an earlier record of it failed, or it
    /// closed): written after a failed record, it would leave a hole in
    /// its stream's offsets in the WAL. Refused records go to `failed`.
    fn admit(&self, tag: &T) -> bool;
}

/// A recovered group: records read back from the WAL and the position that
/// covers them.
#[derive(Debug)]
pub struct RecoveredChunk {
    pub records: Vec<WalRecord>,
    pub end_pos: u64,
}

/// The running WAL, whichever kind.
pub(crate) enum Wal<T: Send + 'static> {
    File(file::FileWal<T>),
    Object(object::ObjectWal<T>),
}

impl<T: Send + 'static> Wal<T> {
    /// Queue a record; the sink hears about it once it is durable.
    pub(crate) fn submit(&self, record: WalRecord, tag: T) -> Result<(), (WalRecord, T)> {
        match self {
            Wal::File(w) => w.submit(record, tag),
            Wal::Object(w) => w.submit(record, tag),
        }
    }

    /// Everything below `pos` is in committed objects: delete it.
    pub(crate) async fn trim(&self, pos: u64) -> Result<(), WalError> {
        match self {
            Wal::File(w) => w.trim(pos),
            Wal::Object(w) => w.trim(pos).await,
        }
    }

    /// Stop the writer after the queued records are written.
    pub(crate) async fn shutdown(&self) {
        match self {
            Wal::File(w) => w.shutdown().await,
            Wal::Object(w) => w.shutdown().await,
        }
    }
}

/// Gathers queued records into one group: stop at `max_bytes` (a first
/// record above it goes alone).
pub(crate) struct Group<T> {
    pub(crate) entries: Vec<(WalRecord, T)>,
    pub(crate) bytes: usize,
}

impl<T> Group<T> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Vec::new(),
            bytes: 0,
        }
    }

    pub(crate) fn push(&mut self, rec: WalRecord, tag: T) {
        self.bytes += rec.encoded_len();
        self.entries.push((rec, tag));
    }

    /// Encode every record into one buffer.
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = bytes::BytesMut::with_capacity(self.bytes);
        for (r, _) in &self.entries {
            r.encode(&mut buf);
        }
        buf.freeze()
    }
}

/// Shared handle type for sinks.
pub(crate) type Sink<T> = Arc<dyn WalSink<T>>;
