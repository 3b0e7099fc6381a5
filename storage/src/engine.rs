//! [`Storage`]: the engine. Owns the WAL, the log cache, the uploader and
//! the object read path, and hands out [`StreamHandle`]s.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use object_store::ObjectStore;
use parking_lot::Mutex;
use skiff_common::{StreamEpoch, StreamId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::batch::StoredBatch;
use crate::block_cache::BlockCache;
use crate::catalog::Catalog;
use crate::config::{StorageConfig, WalKind};
use crate::error::{AppendError, OpenError, ReadError};
use crate::log_cache::LogCache;
use crate::object::ObjectReader;
use crate::recovery::{self, Recovery};
use crate::stream::{AppendResult, AppendTag, Status, StreamHandle, StreamState};
use crate::uploader::{PendingItem, Uploader};
use crate::wal::file::{FileRecovery, FileWal, FileWalOptions};
use crate::wal::object::{ObjectRecovery, ObjectWal, ObjectWalOptions};
use crate::wal::{Sink, Wal, WalError, WalRecord, WalSink};

/// State shared by the engine, its stream handles and background tasks.
pub(crate) struct Shared {
    pub(crate) config: StorageConfig,
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) reader: ObjectReader,
    pub(crate) log_cache: LogCache,
    pub(crate) uploader: Uploader,
    pub(crate) wal: OnceLock<Wal<AppendTag>>,
    budget: Arc<Semaphore>,
    streams: Mutex<HashMap<StreamId, Arc<StreamState>>>,
}

/// The storage engine. Create one per process with [`Storage::open`] and end
/// it with [`Storage::shutdown`] (or [`Storage::abort`]): the WAL writer
/// threads and upload tasks run until then, dropping the value does not stop
/// them.
pub struct Storage {
    shared: Arc<Shared>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("data_dir", &self.shared.config.data_dir)
            .field("wal", &self.shared.config.wal.kind)
            .finish()
    }
}

impl Storage {
    /// Start the engine: recover this node's WAL (everything not yet in
    /// objects is uploaded and committed before this returns), then start
    /// taking appends.
    pub async fn open(
        config: StorageConfig,
        store: Arc<dyn ObjectStore>,
        catalog: Arc<dyn Catalog>,
    ) -> Result<Self, OpenError> {
        config.validate()?;
        let cache = BlockCache::open(
            config.block_cache.clone(),
            &config.data_dir.join("block-cache"),
        )
        .await
        .map_err(|e| OpenError::Cache(e.to_string()))?;
        let budget = Arc::new(Semaphore::new(config.max_unuploaded_bytes as usize));
        let shared = Arc::new(Shared {
            reader: ObjectReader::new(store.clone(), cache),
            log_cache: LogCache::new(config.log_cache_bytes as usize),
            uploader: Uploader::new(config.upload.max_in_flight),
            wal: OnceLock::new(),
            budget,
            streams: Mutex::default(),
            catalog,
            store,
            config,
        });
        let tasks = TaskTracker::new();
        Uploader::start(&shared, &tasks);
        let storage = Self { shared, tasks };
        let result = storage.recover_and_start().await;
        if let Err(e) = result {
            storage.abort().await;
            return Err(e);
        }
        Ok(storage)
    }

    async fn recover_and_start(&self) -> Result<(), OpenError> {
        let shared = &self.shared;
        let cfg = &shared.config.wal;
        let sink: Sink<AppendTag> = shared.clone();
        let (wal, end) = match cfg.kind {
            WalKind::File => {
                let mut rec = FileRecovery::open(&shared.config.data_dir.join("wal"))?;
                let end = recovery::replay(shared, Recovery::File(&mut rec)).await?;
                let opts = FileWalOptions {
                    max_delay: cfg.group_commit_max_delay,
                    max_bytes: cfg.group_commit_max_bytes as usize,
                    segment_bytes: cfg.segment_bytes,
                    direct_io: cfg.direct_io,
                };
                (Wal::File(FileWal::start(rec, opts, sink)?), end)
            }
            WalKind::Object => {
                let mut rec = ObjectRecovery::open(shared.store.clone(), &cfg.node).await?;
                let end = recovery::replay(shared, Recovery::Object(&mut rec)).await?;
                let opts = ObjectWalOptions {
                    max_delay: cfg.group_commit_max_delay,
                    max_bytes: cfg.group_commit_max_bytes as usize,
                    retry_backoff: shared.config.upload.retry_backoff,
                };
                (Wal::Object(ObjectWal::start(rec, opts, sink)), end)
            }
        };
        let wal = shared.wal.get_or_init(|| wal);
        wal.trim(end).await?;
        Ok(())
    }

    /// The object store (for data kept beside streams, such as the
    /// broker's producer-state snapshots).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.shared.store.clone()
    }

    /// Replay and commit another node's object WAL (failover in stateless
    /// mode), then delete it. Call before its streams are reopened.
    pub async fn recover_object_wal_of(&self, node: &str) -> Result<(), OpenError> {
        let mut rec = ObjectRecovery::open(self.shared.store.clone(), node).await?;
        recovery::replay(&self.shared, Recovery::Object(&mut rec)).await?;
        rec.delete_all().await?;
        Ok(())
    }

    /// Open `stream` at `epoch` (which metadata gave this node). Offsets come
    /// from the catalog: recovery committed all WAL data at start-up, and
    /// closing a stream commits its tail.
    pub async fn open_stream(
        &self,
        stream: StreamId,
        epoch: StreamEpoch,
    ) -> Result<StreamHandle, OpenError> {
        if self.shared.uploader.cancel.is_cancelled() {
            return Err(OpenError::ShutDown);
        }
        let meta = self.shared.catalog.stream(stream).await?;
        if meta.epoch != epoch {
            return Err(OpenError::Fenced {
                stream,
                current: meta.epoch,
                asked: epoch,
            });
        }
        let state = Arc::new(StreamState::new(
            stream,
            epoch,
            meta.start_offset,
            meta.end_offset,
        ));
        {
            let mut streams = self.shared.streams.lock();
            if streams.contains_key(&stream) {
                return Err(OpenError::AlreadyOpen(stream));
            }
            streams.insert(stream, state.clone());
        }
        Ok(StreamHandle {
            state,
            shared: self.shared.clone(),
        })
    }

    /// Commit everything appended so far into objects.
    pub async fn flush(&self) {
        self.shared.uploader.flush().await;
    }

    /// Payload bytes in the log cache (metrics, tests).
    pub fn log_cache_bytes(&self) -> usize {
        self.shared.log_cache.bytes()
    }

    /// Appended bytes not yet committed in objects (metrics, tests).
    pub fn unuploaded_bytes(&self) -> u64 {
        let cap = self.shared.config.max_unuploaded_bytes;
        cap - self.shared.budget.available_permits() as u64
    }

    /// Age of the oldest appended data not yet sealed into an object: how far
    /// uploads lag behind the WAL (metrics).
    pub fn upload_lag(&self) -> std::time::Duration {
        self.shared.uploader.pending_age()
    }

    /// Block cache hit and miss counters since start (metrics).
    pub fn cache_counters(&self) -> crate::block_cache::BlockCacheCounters {
        self.shared.reader.cache().counters()
    }

    /// Flush everything into objects, then stop the WAL and background tasks.
    pub async fn shutdown(&self) {
        self.shared.wal_shutdown().await;
        self.shared.uploader.flush().await;
        self.stop().await;
    }

    /// Stop without flushing (what a crash leaves behind; tests use it to
    /// restart over the same WAL).
    pub async fn abort(&self) {
        self.shared.wal_shutdown().await;
        self.stop().await;
    }

    async fn stop(&self) {
        self.shared.uploader.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.shared.reader.quiesce().await;
        let streams: Vec<_> = self.shared.streams.lock().drain().map(|(_, s)| s).collect();
        for s in streams {
            s.set_status(Status::Closed);
        }
    }
}

impl Shared {
    pub(crate) async fn wal_shutdown(&self) {
        if let Some(w) = self.wal.get() {
            w.shutdown().await;
        }
    }

    /// Backpressure: hold `len` bytes of the un-uploaded budget.
    pub(crate) async fn reserve(&self, len: usize) -> OwnedSemaphorePermit {
        let n = len.min(self.config.max_unuploaded_bytes as usize) as u32;
        self.budget
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the budget semaphore is never closed")
    }

    pub(crate) fn submit(&self, record: WalRecord, tag: AppendTag) -> Result<(), ()> {
        match self.wal.get() {
            Some(w) => w.submit(record, tag).map_err(|_| ()),
            None => Err(()),
        }
    }

    fn stream_at(&self, stream: StreamId, epoch: StreamEpoch) -> Option<Arc<StreamState>> {
        self.streams
            .lock()
            .get(&stream)
            .filter(|s| s.epoch == epoch)
            .cloned()
    }

    /// Another owner holds `stream`: stop writing it, and let it be opened
    /// again (at a newer epoch) without a close.
    pub(crate) fn fence(&self, stream: StreamId, epoch: StreamEpoch) {
        if let Some(s) = self.stream_at(stream, epoch) {
            s.set_status(Status::Fenced);
            self.forget(&s);
        }
    }

    /// `[.., end)` of `stream` is committed in objects.
    pub(crate) fn committed(&self, stream: StreamId, epoch: StreamEpoch, end: u64) {
        if let Some(s) = self.stream_at(stream, epoch) {
            {
                let mut o = s.offsets.lock();
                o.committed = o.committed.max(end);
            }
            self.log_cache.mark_uploaded(stream, end);
        }
    }

    /// A closed stream leaves the registry and the log cache.
    pub(crate) fn forget(&self, state: &Arc<StreamState>) {
        let mut streams = self.streams.lock();
        if streams
            .get(&state.id)
            .is_some_and(|s| Arc::ptr_eq(s, state))
        {
            streams.remove(&state.id);
            self.log_cache.remove(state.id);
        }
    }

    /// Read `[from, end)` of a stream: log cache first, then objects.
    pub(crate) async fn read(
        &self,
        stream: StreamId,
        from: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredBatch>, ReadError> {
        let mut out: Vec<StoredBatch> = Vec::new();
        let mut pos = from;
        let mut bytes = 0usize;
        while pos < end && (out.is_empty() || bytes < max_bytes) {
            let budget = max_bytes.saturating_sub(bytes).max(1);
            let got = match self.log_cache.read(stream, pos, budget) {
                Some(b) => b,
                None => self.read_objects(stream, pos, budget).await?,
            };
            let before = out.len();
            for b in got {
                if b.base_offset >= end || (!out.is_empty() && bytes >= max_bytes) {
                    break;
                }
                bytes += b.payload.len();
                pos = b.end_offset();
                out.push(b);
            }
            if out.len() == before {
                break;
            }
        }
        if out.is_empty() && from < end {
            return Err(ReadError::Missing {
                stream,
                offset: from,
            });
        }
        Ok(out)
    }

    async fn read_objects(
        &self,
        stream: StreamId,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredBatch>, ReadError> {
        let slices = self.catalog.lookup(stream, from, 2).await?;
        let Some(slice) = slices.first() else {
            return Ok(Vec::new());
        };
        let batches = self
            .reader
            .read(slice, stream, from, max_bytes)
            .await
            .map_err(|source| ReadError::Object {
                retriable: source.is_retriable(),
                source,
            })?;
        if let (Some(next), Some(last)) = (slices.get(1), batches.last())
            && last.end_offset() >= slice.end
        {
            self.reader.prefetch(*next, stream, next.start);
        }
        Ok(batches)
    }
}

impl WalSink<AppendTag> for Shared {
    fn durable(&self, group: Vec<(WalRecord, AppendTag)>, end_pos: u64) {
        let mut items: Vec<PendingItem> = Vec::with_capacity(group.len());
        let mut acks = Vec::with_capacity(group.len());
        for (rec, tag) in group {
            let crc = rec.payload.crc();
            let batch = StoredBatch {
                base_offset: rec.base_offset,
                records: rec.records,
                payload: rec.payload.into_bytes(),
            };
            let end = batch.end_offset();
            let st = &tag.stream;
            let status = st.offsets.lock().status.clone();
            let result = match status {
                Status::Open | Status::Closing => {
                    // Cache first, then publish: a reader that sees the new
                    // end finds the batch.
                    self.log_cache.insert(st.id, batch.clone());
                    st.offsets.lock().durable = end;
                    st.end_tx.send_replace(end);
                    items.push((st.id, st.epoch, (batch, crc), tag.permit));
                    Ok(AppendResult {
                        base_offset: rec.base_offset,
                        end_offset: end,
                    })
                }
                Status::Fenced => Err(AppendError::Fenced(st.id)),
                Status::Closed => Err(AppendError::Closed(st.id)),
                Status::Failed(e) => Err(AppendError::Wal(e)),
            };
            acks.push((tag.ack, result));
        }
        // Hand the batches to the uploader before acknowledging, so a flush
        // that follows an acknowledged append covers it.
        self.uploader
            .push(items, end_pos, self.config.upload.seal_bytes);
        for (ack, result) in acks {
            let _ = ack.send(result);
        }
    }

    fn failed(&self, group: Vec<(WalRecord, AppendTag)>, err: WalError) {
        for (_, tag) in group {
            tag.stream.set_status(Status::Failed(err.clone()));
            let _ = tag.ack.send(Err(AppendError::Wal(err.clone())));
        }
    }

    fn admit(&self, tag: &AppendTag) -> bool {
        matches!(
            tag.stream.offsets.lock().status,
            Status::Open | Status::Closing
        )
    }
}
