//! Skiff's stream storage engine.
//!
//! A *stream* is an append-only sequence of record batches addressed by
//! `(StreamId, offset)`; every Kafka partition (and internal log) is one stream.
//! Data flows `append -> WAL (durable, acked) -> log cache -> uploader ->
//! object store`, and the [`catalog::Catalog`] (implemented by the metadata
//! quorum, plugged in by the broker) records which object holds which offsets.
//!
//! # Using it
//!
//! The broker builds one [`Storage`] from a [`StorageConfig`], an object
//! store and the catalog, and opens each partition's stream at the epoch
//! metadata gave it:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use skiff_common::StreamId;
//! use skiff_storage::catalog::InMemoryCatalog;
//! use skiff_storage::{Storage, StorageConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = StorageConfig::default();
//! config.data_dir = dir.path().to_path_buf();
//! config.block_cache.disk_bytes = Some(0);
//! let catalog = Arc::new(InMemoryCatalog::new());
//! let store = Arc::new(object_store::memory::InMemory::new());
//! let storage = Storage::open(config, store, catalog.clone()).await?;
//!
//! let epoch = catalog.open_stream(StreamId(7)); // metadata's ownership change
//! let stream = storage.open_stream(StreamId(7), epoch).await?;
//! // Offsets are assigned inside the single-writer section; the closure
//! // stamps the base offset into the payload (a Kafka batch header).
//! let pending = stream
//!     .append_with(3, |base| Bytes::from(format!("batch at {base}")))
//!     .await?;
//! let acked = pending.await?; // durable: the WAL write was fsync'd
//! assert_eq!((acked.base_offset, acked.end_offset), (0, 3));
//! let batches = stream.read(1, 1 << 20).await?; // whole batches from offset 1
//! assert_eq!(batches[0].payload, "batch at 0");
//! assert_eq!(stream.close().await?, 3); // reassignment: commit the tail
//! storage.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! - **Appends.** [`StreamHandle::append_with`] holds the stream's writer
//!   lock while it assigns offsets, builds the payload and queues the WAL
//!   record, so WAL order is offset order; it returns a [`PendingAppend`]
//!   that resolves once durable. Durable groups are applied (log cache,
//!   uploader, end offset, wake-ups) on the WAL writer in write order,
//!   before any acknowledgement is sent.
//! - **WAL** ([`wal`]): file segments group-committed with one `write` and
//!   one `fdatasync` per group (default), or create-only PUTs of
//!   `wal/<node>/<seq>` (stateless mode). Frames carry length, version,
//!   crc32c, stream, epoch and offsets ([`wal::record`]).
//! - **Uploads** (`uploader`): seals every `upload.seal_bytes` or
//!   `upload.interval` into one stream-set object (plus stream objects for
//!   big streams), PUTs pipelined, commits in seal order at the streams'
//!   epochs, then trims the WAL. A fenced commit marks the stream fenced.
//! - **Recovery** (`recovery`): on start, every WAL record the catalog does
//!   not have is committed before any stream opens, so a stream's offsets
//!   always come from the catalog. [`Storage::recover_object_wal_of`] does
//!   the same for another node's object WAL (failover).
//! - **Reads**: the [`log_cache`] (every un-uploaded batch plus recent
//!   uploaded ones), then objects through the block cache.
//! - **Backpressure**: appends wait for budget while `max_unuploaded_bytes`
//!   are not yet committed; at most `upload.max_in_flight` seals upload at
//!   once; the log cache never exceeds `log_cache_bytes` (validated to be at
//!   least the un-uploaded cap, since un-uploaded batches are never evicted).
//!
//! # Benchmarks
//!
//! WAL throughput and latency figures, with the exact commands, are in
//! [`benchmarks`] (`storage/BENCHMARKS.md` in the repository).
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
//! - [`config`]: [`StorageConfig`], every knob with its default.
//! - [`engine`] / [`stream`]: [`Storage`] and [`StreamHandle`], the API.
//! - [`error`]: one error enum per operation.
//! - [`wal`]: the file and object WALs and their record frame.
//! - [`log_cache`]: the bounded tail cache.
pub mod batch;
#[doc = include_str!("../BENCHMARKS.md")]
pub mod benchmarks {}
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
pub use stream::{AppendResult, PendingAppend, StreamHandle, TryAppendError};
