//! Skiff's stream storage engine.
//!
//! A *stream* is an append-only sequence of record batches addressed by
//! `(StreamId, offset)`; every Kafka partition (and internal log) is one stream.
//! Data flows `append -> WAL (durable, acked) -> log cache -> uploader ->
//! object store`, and the [`catalog::Catalog`] (implemented by the metadata
//! quorum, plugged in by the broker) records which object holds which offsets.
//!
//! Module map (see ARCHITECTURE.md at the repo root for the whole picture):
//!
//! - [`catalog`]: the small trait storage needs from metadata, plus an
//!   in-memory implementation for tests.
//! - `catalog_conformance` (feature `testing`): the suite every `Catalog`
//!   implementation runs.
//! - [`batch`]: [`batch::StoredBatch`], the unit that is appended and read.
//! - [`object`]: the object format, builder, keys and [`object::ObjectReader`].
//! - [`block_cache`]: memory + local-disk cache of object blocks and indexes.
//! - [`store`]: object store backends from config, and fault/retry wrappers.
//! - [`compaction`]: merging and splitting objects, and object GC.
pub mod batch;
pub mod block_cache;
pub mod catalog;
#[cfg(any(test, feature = "testing"))]
pub mod catalog_conformance;
pub mod compaction;
pub mod config;
pub mod engine;
pub mod error;
pub mod log_cache;
pub mod object;
mod recovery;
pub mod store;
pub mod stream;
mod uploader;
pub mod wal;

pub use config::StorageConfig;
pub use engine::Storage;
pub use error::{AppendError, CloseError, OpenError, ReadError, TrimError};
pub use stream::{AppendResult, PendingAppend, StreamHandle};
