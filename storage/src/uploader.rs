//! The uploader: turns durable WAL data into committed objects.
//!
//! Durable appends accumulate in [`Uploader`]'s pending set. A *seal* takes
//! all of it when `upload.seal_bytes` are pending, `upload.interval` after the
//! oldest pending append, or when someone calls [`Uploader::flush`] (close,
//! shutdown, recovery). A seal becomes one stream-set object, plus a stream
//! object for each stream with at least `upload.stream_object_bytes` in it.
//!
//! Two tasks keep uploads pipelined and commits ordered: the *sealer* builds
//! objects and spawns their PUTs (at most `upload.max_in_flight` seals in
//! flight), the *committer* awaits the PUTs in seal order and commits each
//! seal through the [`Catalog`](crate::catalog::Catalog) at the streams'
//! epochs. Only then are the streams' committed offsets advanced, the log
//! cache allowed to evict, the backpressure budget released and the WAL
//! trimmed up to the seal's WAL position. Commits in order make that trim
//! safe: everything below the position is in this seal or an earlier one.
//!
//! A commit rejected as fenced (or with a range conflict) for a stream means
//! another owner has it: the stream is marked fenced (its appenders get
//! [`AppendError::Fenced`](crate::error::AppendError::Fenced)) and the commit
//! is retried without it. PUTs and unavailable catalogs are retried with
//! backoff, forever: acknowledged data is never dropped, appends wait.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use skiff_common::{ObjectId, StreamEpoch, StreamId};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batch::StoredBatch;
use crate::catalog::{CatalogError, Commit, CommitRange, NewObject, ObjectKind};
use crate::engine::Shared;
use crate::object::{ObjectBuilder, put_object};
use object_store::PutPayload;

/// Target size of an object's data blocks.
const BLOCK_BYTES: usize = 512 * 1024;
/// Longest backoff between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One stream's pending data.
#[derive(Default)]
pub(crate) struct PendingStream {
    epoch: Option<StreamEpoch>,
    /// Each batch with the crc32c of its payload (object blocks reuse it).
    batches: Vec<(StoredBatch, u32)>,
    bytes: u64,
    permits: Vec<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct Pending {
    streams: BTreeMap<StreamId, PendingStream>,
    bytes: u64,
    wal_end: u64,
    since: Option<Instant>,
    flush: bool,
    /// Sequence number the next seal gets (seals count from 1).
    next_seq: u64,
}

struct Seal {
    seq: u64,
    streams: BTreeMap<StreamId, PendingStream>,
    wal_end: u64,
}

/// An object built from a seal, ready to PUT.
struct Built {
    id: ObjectId,
    kind: ObjectKind,
    /// The object's bytes as parts: large batches are shared, not copied.
    bytes: PutPayload,
    ranges: Vec<CommitRange>,
}

struct Job {
    seal: Seal,
    objects: Vec<(ObjectId, ObjectKind, u64, Vec<CommitRange>)>,
    put: tokio::task::JoinHandle<bool>,
    _in_flight: OwnedSemaphorePermit,
}

/// Pending data and the seal/commit pipeline's shared state.
pub(crate) struct Uploader {
    pending: Mutex<Pending>,
    wake: Notify,
    committed: watch::Sender<u64>,
    in_flight: Arc<Semaphore>,
    pub(crate) cancel: CancellationToken,
}

/// An item for [`Uploader::push`]: a durable batch of a stream at an epoch
/// (with its payload's crc32c), with the budget it holds until committed.
pub(crate) type PendingItem = (
    StreamId,
    StreamEpoch,
    (StoredBatch, u32),
    Option<OwnedSemaphorePermit>,
);

impl Uploader {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self {
            pending: Mutex::new(Pending {
                next_seq: 1,
                ..Pending::default()
            }),
            wake: Notify::new(),
            committed: watch::channel(0).0,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            cancel: CancellationToken::new(),
        }
    }

    /// Add durable batches (in WAL order); `wal_end` covers them.
    pub(crate) fn push(&self, items: Vec<PendingItem>, wal_end: u64, seal_bytes: u64) {
        let mut p = self.pending.lock();
        // The sealer sleeps without a deadline while nothing is pending:
        // the first pending data must wake it so the interval starts.
        let first = p.since.is_none() && !items.is_empty();
        for (stream, epoch, batch, permit) in items {
            let len = batch.0.payload.len() as u64;
            let s = p.streams.entry(stream).or_default();
            s.epoch = Some(epoch);
            s.bytes += len;
            s.batches.push(batch);
            s.permits.extend(permit);
            p.bytes += len;
            p.since.get_or_insert_with(Instant::now);
        }
        p.wal_end = p.wal_end.max(wal_end);
        let full = p.bytes >= seal_bytes;
        drop(p);
        if full || first {
            self.wake.notify_one();
        }
    }

    /// Age of the oldest data not yet sealed into an object.
    pub(crate) fn pending_age(&self) -> std::time::Duration {
        self.pending
            .lock()
            .since
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// Bytes pending (not yet sealed).
    pub(crate) fn pending_bytes(&self) -> u64 {
        self.pending.lock().bytes
    }

    /// Seal whatever is pending now and wait until it (and every earlier
    /// seal) is committed. Returns early on shutdown.
    pub(crate) async fn flush(&self) {
        let target = {
            let mut p = self.pending.lock();
            if p.streams.is_empty() {
                p.next_seq - 1
            } else {
                p.flush = true;
                p.next_seq
            }
        };
        self.wake.notify_one();
        let mut rx = self.committed.subscribe();
        tokio::select! {
            _ = rx.wait_for(|c| *c >= target) => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    /// Start the sealer and committer tasks.
    pub(crate) fn start(shared: &Arc<Shared>, tasks: &tokio_util::task::TaskTracker) {
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.spawn(sealer(shared.clone(), tx));
        tasks.spawn(committer(shared.clone(), rx));
    }

    /// Take the pending set if it should be sealed now, else the time it will be.
    fn take(&self, seal_bytes: u64, interval: Duration) -> Result<Seal, Option<Instant>> {
        let mut p = self.pending.lock();
        let due = p.since.map(|t| t + interval);
        let now = Instant::now();
        if p.streams.is_empty()
            || !(p.flush || p.bytes >= seal_bytes || due.is_some_and(|d| d <= now))
        {
            p.flush = false;
            return Err(due);
        }
        let seq = p.next_seq;
        p.next_seq += 1;
        p.bytes = 0;
        p.since = None;
        p.flush = false;
        Ok(Seal {
            seq,
            streams: std::mem::take(&mut p.streams),
            wal_end: p.wal_end,
        })
    }
}

async fn sealer(shared: Arc<Shared>, tx: mpsc::UnboundedSender<Job>) {
    let up = &shared.uploader;
    let cfg = &shared.config.upload;
    loop {
        let seal = match up.take(cfg.seal_bytes, cfg.interval) {
            Ok(seal) => seal,
            Err(due) => {
                let sleep = async {
                    match due {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = up.wake.notified() => {}
                    _ = sleep => {}
                    _ = up.cancel.cancelled() => return,
                }
                continue;
            }
        };
        let in_flight = tokio::select! {
            p = up.in_flight.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = up.cancel.cancelled() => return,
        };
        let Some((seal, built)) = build_objects(&shared, seal).await else {
            return; // cancelled
        };
        let objects = built
            .iter()
            .map(|b| {
                (
                    b.id,
                    b.kind,
                    b.bytes.content_length() as u64,
                    b.ranges.clone(),
                )
            })
            .collect();
        let put = tokio::spawn(put_all(shared.clone(), built));
        let job = Job {
            seal,
            objects,
            put,
            _in_flight: in_flight,
        };
        if tx.send(job).is_err() {
            return;
        }
    }
}

/// Reserve ids and encode the seal's objects (on a blocking thread: it
/// checksums megabytes, which would stall the async workers). Batches of
/// 64 KiB and more are not copied: they become parts of a vectored PUT.
async fn build_objects(shared: &Shared, seal: Seal) -> Option<(Seal, Vec<Built>)> {
    let big = shared.config.upload.stream_object_bytes;
    let own: HashSet<StreamId> = seal
        .streams
        .iter()
        .filter(|(_, s)| s.bytes >= big)
        .map(|(id, _)| *id)
        .collect();
    let shared_count = usize::from(own.len() < seal.streams.len());
    let count = (own.len() + shared_count) as u32;
    let ids = retry(shared, "reserve object ids", || {
        shared.catalog.reserve_object_ids(count)
    })
    .await?;
    let job = move || {
        let mut ids = ids.map(ObjectId);
        let mut out = Vec::new();
        for (stream, s) in seal.streams.iter().filter(|(id, _)| own.contains(id)) {
            let id = ids.next()?;
            out.push(encode(id, ObjectKind::Stream, std::iter::once((stream, s))));
        }
        if shared_count == 1 {
            let id = ids.next()?;
            let rest = seal.streams.iter().filter(|(id, _)| !own.contains(id));
            out.push(encode(id, ObjectKind::StreamSet, rest));
        }
        Some((seal, out))
    };
    tokio::task::spawn_blocking(job).await.ok().flatten()
}

fn encode<'a>(
    id: ObjectId,
    kind: ObjectKind,
    streams: impl Iterator<Item = (&'a StreamId, &'a PendingStream)>,
) -> Built {
    let mut b = ObjectBuilder::new(BLOCK_BYTES);
    let mut ranges = Vec::new();
    for (stream, s) in streams {
        let (Some(epoch), Some((first, _)), Some((last, _))) =
            (s.epoch, s.batches.first(), s.batches.last())
        else {
            continue;
        };
        let mut ok = true;
        for (batch, crc) in &s.batches {
            if let Err(e) = b.push_bytes(
                *stream,
                batch.base_offset,
                batch.records,
                &batch.payload,
                *crc,
            ) {
                // Dense, ordered batches always encode; this is a bug, and the
                // stream's range is left out (its data stays uncommitted).
                tracing::error!(%stream, error = %e, "cannot encode stream into object");
                ok = false;
                break;
            }
        }
        if ok {
            ranges.push(CommitRange {
                stream: *stream,
                epoch,
                start: first.base_offset,
                end: last.end_offset(),
            });
        }
    }
    let (parts, _index) = b.finish_parts();
    Built {
        id,
        kind,
        bytes: parts.into_iter().collect(),
        ranges,
    }
}

/// PUT every object, retrying with backoff until done; false when cancelled.
async fn put_all(shared: Arc<Shared>, built: Vec<Built>) -> bool {
    for b in built {
        let what = format!("PUT object {}", b.id);
        let r = retry(&shared, &what, || async {
            put_object(shared.store.as_ref(), b.id, b.bytes.clone()).await
        })
        .await;
        if r.is_none() {
            return false;
        }
    }
    true
}

/// Run `op` until it succeeds, backing off between failures; `None` on shutdown.
async fn retry<T, E, F, Fut>(shared: &Shared, what: &str, mut op: F) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = shared.config.upload.retry_backoff;
    loop {
        let attempt = tokio::select! {
            r = op() => r,
            _ = shared.uploader.cancel.cancelled() => return None,
        };
        match attempt {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.uploader.cancel.cancelled() => return None,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn committer(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = rx.recv().await {
        let put_done = matches!(job.put.await, Ok(true));
        if !put_done {
            return; // shutting down
        }
        let Some(committed) = commit(&shared, &job.objects).await else {
            return;
        };
        for r in committed {
            shared.committed(r.stream, r.epoch, r.end);
        }
        let Job { seal, .. } = job;
        let (seq, wal_end) = (seal.seq, seal.wal_end);
        drop(seal); // releases the backpressure budget
        if let Some(wal) = shared.wal.get()
            && let Err(e) = wal.trim(wal_end).await
        {
            tracing::warn!(error = %e, "WAL trim failed; will retry at the next seal");
        }
        shared.uploader.committed.send_replace(seq);
    }
}

/// Commit the objects, dropping fenced streams; returns the ranges committed.
async fn commit(
    shared: &Shared,
    objects: &[(ObjectId, ObjectKind, u64, Vec<CommitRange>)],
) -> Option<Vec<CommitRange>> {
    let mut excluded: HashSet<StreamId> = HashSet::new();
    let mut backoff = shared.config.upload.retry_backoff;
    loop {
        let new: Vec<NewObject> = objects
            .iter()
            .map(|(id, kind, size, ranges)| NewObject {
                id: *id,
                kind: *kind,
                size: *size,
                ranges: ranges
                    .iter()
                    .filter(|r| !excluded.contains(&r.stream))
                    .copied()
                    .collect(),
            })
            .filter(|o| !o.ranges.is_empty())
            .collect();
        let ranges: Vec<CommitRange> = new.iter().flat_map(|o| o.ranges.clone()).collect();
        if new.is_empty() {
            return Some(ranges);
        }
        let commit = Commit {
            objects: new,
            replaces: Vec::new(),
        };
        let lost = match shared.catalog.commit(commit).await {
            Ok(()) => return Some(ranges),
            Err(CatalogError::Fenced { stream, .. })
            | Err(CatalogError::RangeConflict { stream, .. })
            | Err(CatalogError::UnknownStream(stream)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "catalog commit failed; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.uploader.cancel.cancelled() => return None,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::warn!(stream = %lost, "commit rejected: stream lost to another owner");
        if let Some(r) = ranges.iter().find(|r| r.stream == lost) {
            shared.fence(lost, r.epoch);
        }
        excluded.insert(lost);
    }
}
