//! [`StreamHandle`]: the per-stream API the broker uses (append, read, trim,
//! close, offsets, wake-ups).
//!
//! One writer per stream: [`StreamHandle::append_with`] takes the stream's
//! writer lock, assigns the next offsets, lets the caller stamp them into the
//! payload, and queues the record to the WAL, all in one critical section, so
//! WAL order is offset order. It returns a [`PendingAppend`] that resolves
//! once the record is durable; acknowledging only then is the caller's job.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use skiff_common::{StreamEpoch, StreamId};
use tokio::sync::{oneshot, watch};

use crate::batch::{Payload, StoredBatch};
use crate::engine::Shared;
use crate::error::{AppendError, CloseError, ReadError, TrimError};
use crate::wal::{WalError, WalRecord};

/// Offsets given to a durable append: `[base_offset, end_offset)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: u64,
    pub end_offset: u64,
}

#[derive(Debug, Clone)]
pub(crate) enum Status {
    Open,
    Closing,
    Closed,
    Fenced,
    Failed(WalError),
}

#[derive(Debug)]
pub(crate) struct Offsets {
    pub(crate) start: u64,
    /// Next offset to assign.
    pub(crate) next: u64,
    /// One past the last durable (readable) offset.
    pub(crate) durable: u64,
    /// One past the last offset committed in objects.
    pub(crate) committed: u64,
    pub(crate) status: Status,
}

/// Shared state of one open stream.
#[derive(Debug)]
pub(crate) struct StreamState {
    pub(crate) id: StreamId,
    pub(crate) epoch: StreamEpoch,
    pub(crate) writer: tokio::sync::Mutex<()>,
    pub(crate) offsets: Mutex<Offsets>,
    /// Durable end offset; bumped on every durable append and on status changes.
    pub(crate) end_tx: watch::Sender<u64>,
}

impl StreamState {
    pub(crate) fn new(id: StreamId, epoch: StreamEpoch, start: u64, end: u64) -> Self {
        Self {
            id,
            epoch,
            writer: tokio::sync::Mutex::new(()),
            offsets: Mutex::new(Offsets {
                start: start.min(end),
                next: end,
                durable: end,
                committed: end,
                status: Status::Open,
            }),
            end_tx: watch::channel(end).0,
        }
    }

    pub(crate) fn set_status(&self, status: Status) {
        {
            let mut o = self.offsets.lock();
            if matches!(o.status, Status::Open | Status::Closing) {
                o.status = status;
            }
        }
        self.end_tx.send_modify(|_| {});
    }

    fn writable(&self) -> Result<(), AppendError> {
        match &self.offsets.lock().status {
            Status::Open => Ok(()),
            Status::Closing | Status::Closed => Err(AppendError::Closed(self.id)),
            Status::Fenced => Err(AppendError::Fenced(self.id)),
            Status::Failed(e) => Err(AppendError::Wal(e.clone())),
        }
    }
}

/// What travels with a record through the WAL to its completion.
pub(crate) struct AppendTag {
    pub(crate) stream: Arc<StreamState>,
    pub(crate) ack: oneshot::Sender<Result<AppendResult, AppendError>>,
    pub(crate) permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Resolves once the append is durable (or failed).
#[derive(Debug)]
pub struct PendingAppend {
    stream: StreamId,
    rx: oneshot::Receiver<Result<AppendResult, AppendError>>,
}

impl Future for PendingAppend {
    type Output = Result<AppendResult, AppendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let stream = self.stream;
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(AppendError::Closed(stream))))
    }
}

/// Why [`StreamHandle::try_append_with`] appended nothing.
#[derive(Debug, thiserror::Error)]
pub enum TryAppendError<E> {
    /// The caller's `build` refused the batch.
    #[error("batch refused by the caller")]
    Rejected(E),
    /// Storage refused it.
    #[error(transparent)]
    Append(#[from] AppendError),
}

/// An open stream. Cheap to clone; all clones share the single-writer lock.
#[derive(Clone)]
pub struct StreamHandle {
    pub(crate) state: Arc<StreamState>,
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandle")
            .field("stream", &self.state.id)
            .field("epoch", &self.state.epoch)
            .finish()
    }
}

impl StreamHandle {
    pub fn id(&self) -> StreamId {
        self.state.id
    }

    pub fn epoch(&self) -> StreamEpoch {
        self.state.epoch
    }

    /// First readable offset.
    pub fn start_offset(&self) -> u64 {
        self.state.offsets.lock().start
    }

    /// One past the last durable offset (Kafka's log end offset / high watermark).
    pub fn end_offset(&self) -> u64 {
        self.state.offsets.lock().durable
    }

    /// A WAL write of this stream failed: it takes no more appends, and the
    /// owner should close it (which commits its durable data) and open it
    /// again, which continues after the last durable offset.
    pub fn is_failed(&self) -> bool {
        matches!(self.state.offsets.lock().status, Status::Failed(_))
    }

    /// One past the last offset committed in objects.
    pub fn committed_offset(&self) -> u64 {
        self.state.offsets.lock().committed
    }

    /// A receiver of the durable end offset, for Fetch long-polls: it changes
    /// on every durable append (and when the stream closes or is fenced).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.state.end_tx.subscribe()
    }

    /// Wait until the end offset passes `offset` or the stream stops being
    /// open; returns the end offset.
    pub async fn wait_for_data(&self, offset: u64) -> u64 {
        let mut rx = self.subscribe();
        let state = &self.state;
        let _ = rx
            .wait_for(|end| *end > offset || !matches!(state.offsets.lock().status, Status::Open))
            .await;
        self.end_offset()
    }

    /// Append one batch of `records` offsets with a prebuilt payload.
    pub async fn append(&self, records: u32, payload: Bytes) -> Result<PendingAppend, AppendError> {
        self.append_with(records, |_| payload).await
    }

    /// Append one batch of `records` offsets. `build` gets the assigned base
    /// offset and returns the payload (a Kafka batch stamps it in its
    /// header). Waits while the engine is at its memory caps. The returned
    /// future resolves once the batch is durable.
    pub async fn append_with<F>(&self, records: u32, build: F) -> Result<PendingAppend, AppendError>
    where
        F: FnOnce(u64) -> Bytes,
    {
        self.try_append_with(
            records,
            |base| Ok::<_, std::convert::Infallible>((build(base), ())),
            |()| {},
        )
        .await
        .map_err(|e| match e {
            TryAppendError::Append(e) => e,
            TryAppendError::Rejected(never) => match never {},
        })
    }

    /// [`append_with`](Self::append_with) for callers that check the batch
    /// against state only valid under the single-writer lock (Kafka's
    /// producer sequence checks). `build` may refuse the batch
    /// ([`TryAppendError::Rejected`], nothing appended) or return the payload
    /// (`Bytes`, or a [`Payload`] when its crc32c is already known) and a
    /// token; `commit` gets the token, still under the writer lock, once
    /// the record is accepted (offsets assigned, memory reserved) and before
    /// it is handed to the WAL, so state updated there is in place before the
    /// record can be durable or visible to readers. Only a WAL already shut
    /// down refuses it after `commit` ([`AppendError::Closed`]); the stream
    /// then takes no more appends and must be reopened, state rebuilt.
    pub async fn try_append_with<E, T, P, F, C>(
        &self,
        records: u32,
        build: F,
        commit: C,
    ) -> Result<PendingAppend, TryAppendError<E>>
    where
        P: Into<Payload>,
        F: FnOnce(u64) -> Result<(P, T), E>,
        C: FnOnce(T),
    {
        if records == 0 {
            return Err(AppendError::Empty.into());
        }
        let st = &self.state;
        let _writer = st.writer.lock().await;
        st.writable()?;
        let base = st.offsets.lock().next;
        let (payload, token) = build(base).map_err(TryAppendError::Rejected)?;
        let payload: Payload = payload.into();
        let max = self.shared.config.wal.max_record_bytes;
        if payload.len() as u64 > max {
            return Err(AppendError::TooLarge {
                size: payload.len(),
                max,
            }
            .into());
        }
        let permit = self.shared.reserve(payload.len()).await;
        st.writable()?;
        let (ack, rx) = oneshot::channel();
        let record = WalRecord {
            stream: st.id,
            epoch: st.epoch,
            base_offset: base,
            records,
            payload,
        };
        let tag = AppendTag {
            stream: st.clone(),
            ack,
            permit: Some(permit),
        };
        st.offsets.lock().next = base + u64::from(records);
        // Commit before the WAL has the record: once submitted it may be
        // durable (and readers woken by the durable offset) at once, and a
        // reader must find the state for it in place. A read_committed fetch
        // woken between the two saw a transactional batch as stable before
        // it was registered as an ongoing transaction (aborted reads).
        commit(token);
        if self.shared.submit(record, tag).is_err() {
            // The WAL is shut down: nothing more is appended to this stream,
            // and reopening it rebuilds whatever `commit` recorded.
            st.offsets.lock().next = base;
            return Err(AppendError::Closed(st.id).into());
        }
        Ok(PendingAppend { stream: st.id, rx })
    }

    /// Run `f` under the single-writer lock, with the next offset to be
    /// assigned: no append runs meanwhile. For snapshots of state that
    /// appends update.
    pub async fn with_writer_lock<R>(&self, f: impl FnOnce(u64) -> R) -> R {
        let _writer = self.state.writer.lock().await;
        let next = self.state.offsets.lock().next;
        f(next)
    }

    /// Batches from the one containing `from`, up to about `max_bytes` of
    /// payload (at least one batch when there is data). Empty at the end.
    pub async fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<StoredBatch>, ReadError> {
        let (start, end) = {
            let o = self.state.offsets.lock();
            if matches!(o.status, Status::Closed) {
                return Err(ReadError::Closed(self.state.id));
            }
            (o.start, o.durable)
        };
        if from < start || from > end {
            return Err(ReadError::OffsetOutOfRange {
                offset: from,
                start,
                end,
            });
        }
        self.shared.read(self.state.id, from, end, max_bytes).await
    }

    /// Move the start offset forward (retention, DeleteRecords); clamped to
    /// the end offset. Returns the new start.
    pub async fn trim(&self, new_start: u64) -> Result<u64, TrimError> {
        let st = &self.state;
        let new_start = new_start.min(self.end_offset());
        if new_start <= self.start_offset() {
            return Ok(self.start_offset());
        }
        match self.shared.catalog.trim(st.id, st.epoch, new_start).await {
            Ok(()) => {}
            Err(crate::catalog::CatalogError::Fenced { .. }) => {
                self.shared.fence(st.id, st.epoch);
                return Err(TrimError::Fenced(st.id));
            }
            Err(e) => return Err(e.into()),
        }
        {
            let mut o = st.offsets.lock();
            o.start = o.start.max(new_start);
        }
        self.shared.log_cache.trim(st.id, new_start);
        Ok(new_start)
    }

    /// Stop appends, wait for in-flight ones, commit everything of this
    /// stream into objects and return the end offset (reassignment).
    pub async fn close(&self) -> Result<u64, CloseError> {
        let st = &self.state;
        let _writer = st.writer.lock().await;
        st.set_status(Status::Closing);
        let mut rx = st.end_tx.subscribe();
        let _ = rx
            .wait_for(|_| {
                let o = st.offsets.lock();
                o.durable == o.next || !matches!(o.status, Status::Closing)
            })
            .await;
        self.shared.uploader.flush().await;
        let result = {
            let mut o = st.offsets.lock();
            let r = match &o.status {
                Status::Fenced => Err(CloseError::Fenced(st.id)),
                Status::Failed(e) => Err(CloseError::Wal(e.clone())),
                Status::Closed => Err(CloseError::ShutDown),
                _ if o.committed < o.durable => Err(CloseError::ShutDown),
                _ => Ok(o.durable),
            };
            o.status = Status::Closed;
            r
        };
        st.end_tx.send_modify(|_| {});
        self.shared.forget(st);
        result
    }
}
