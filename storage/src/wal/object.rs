//! The object WAL (stateless mode): each group of records is one object
//! `wal/<node>/<seq, 20 digits>` written with a create-only PUT and
//! acknowledged once the PUT succeeded. The group's end position is `seq + 1`.
//!
//! Because the objects live in the shared store and are named by node, any
//! broker can list and replay another node's WAL ([`ObjectRecovery`]). A PUT
//! that fails is retried under the next sequence number (never overwriting a
//! key, so an earlier attempt that did land leaves at worst a duplicate, which
//! replay drops by offset). Appends wait meanwhile: nothing is acknowledged
//! that is not in the store.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::record::{self, WalRecord};
use super::{Group, RecoveredChunk, Sink, WalError};

enum Msg<T> {
    Record(WalRecord, T),
    Shutdown,
}

/// Batching limits and retry pacing of the object WAL writer.
#[derive(Debug, Clone, Copy)]
pub struct ObjectWalOptions {
    pub max_delay: Duration,
    pub max_bytes: usize,
    pub retry_backoff: Duration,
}

fn prefix(node: &str) -> Path {
    Path::from(format!("wal/{node}"))
}

fn key(node: &str, seq: u64) -> Path {
    Path::from(format!("wal/{node}/{seq:020}"))
}

type Live = Arc<Mutex<BTreeSet<u64>>>;

/// Lists and reads back a node's WAL objects, oldest first.
pub struct ObjectRecovery {
    store: Arc<dyn ObjectStore>,
    node: String,
    pending: Vec<u64>,
    all: BTreeSet<u64>,
}

impl ObjectRecovery {
    /// List the WAL objects of `node`.
    pub async fn open(store: Arc<dyn ObjectStore>, node: &str) -> Result<Self, WalError> {
        let listed: Vec<_> = store
            .list(Some(&prefix(node)))
            .try_collect()
            .await
            .map_err(|e| WalError::Store(e.to_string()))?;
        let mut all = BTreeSet::new();
        for meta in listed {
            if let Some(seq) = meta.location.filename().and_then(|n| n.parse::<u64>().ok()) {
                all.insert(seq);
            }
        }
        Ok(Self {
            store,
            node: node.to_string(),
            pending: all.iter().rev().copied().collect(),
            all,
        })
    }

    /// The sequence number a new writer starts at.
    pub fn next_seq(&self) -> u64 {
        self.all.last().map_or(0, |s| s + 1)
    }

    /// The records of the next WAL object, or `None` when all are read.
    pub async fn next_chunk(&mut self) -> Result<Option<RecoveredChunk>, WalError> {
        let Some(seq) = self.pending.pop() else {
            return Ok(None);
        };
        let k = key(&self.node, seq);
        let data = self
            .store
            .get(&k)
            .await
            .map_err(|e| WalError::Store(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| WalError::Store(e.to_string()))?;
        let records = decode_all(&data).map_err(|(position, reason)| WalError::Corrupt {
            file: k.to_string(),
            position,
            reason,
        })?;
        Ok(Some(RecoveredChunk {
            records,
            end_pos: seq + 1,
        }))
    }

    /// Delete every listed object (after another node's WAL was replayed
    /// and committed).
    pub async fn delete_all(&self) -> Result<(), WalError> {
        for seq in &self.all {
            delete(&self.store, &key(&self.node, *seq)).await?;
        }
        Ok(())
    }
}

/// Decode a whole WAL object; objects are written atomically, so any bad
/// record is corruption (no torn tails here).
fn decode_all(data: &Bytes) -> Result<Vec<WalRecord>, (u64, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let (rec, len) =
            record::decode(&data.slice(at..)).map_err(|e| (at as u64, e.to_string()))?;
        out.push(rec);
        at += len;
    }
    Ok(out)
}

async fn delete(store: &Arc<dyn ObjectStore>, k: &Path) -> Result<(), WalError> {
    match store.delete(k).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(WalError::Store(e.to_string())),
    }
}

/// The running object WAL.
pub(crate) struct ObjectWal<T> {
    tx: mpsc::UnboundedSender<Msg<T>>,
    store: Arc<dyn ObjectStore>,
    node: String,
    live: Live,
    cancel: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<T: Send + 'static> ObjectWal<T> {
    /// Start writing after a finished recovery of this node's own WAL.
    pub(crate) fn start(recovery: ObjectRecovery, opts: ObjectWalOptions, sink: Sink<T>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let live: Live = Arc::new(Mutex::new(recovery.all.clone()));
        let cancel = CancellationToken::new();
        let writer = Writer {
            cancel: cancel.clone(),
            store: recovery.store.clone(),
            node: recovery.node.clone(),
            seq: recovery.next_seq(),
            opts,
            live: live.clone(),
            sink,
        };
        let task = tokio::spawn(writer.run(rx));
        Self {
            tx,
            store: recovery.store,
            node: recovery.node,
            live,
            cancel,
            task: Mutex::new(Some(task)),
        }
    }

    pub(crate) fn submit(&self, record: WalRecord, tag: T) -> Result<(), (WalRecord, T)> {
        self.tx
            .send(Msg::Record(record, tag))
            .map_err(|e| match e.0 {
                Msg::Record(r, t) => (r, t),
                Msg::Shutdown => unreachable!("only records are sent here"),
            })
    }

    /// Delete WAL objects whose sequence is below `pos`.
    pub(crate) async fn trim(&self, pos: u64) -> Result<(), WalError> {
        let doomed: Vec<u64> = self.live.lock().range(..pos).copied().collect();
        for seq in doomed {
            delete(&self.store, &key(&self.node, seq)).await?;
            self.live.lock().remove(&seq);
        }
        Ok(())
    }

    /// Write what is queued, then stop. If the store does not take the
    /// writes within [`SHUTDOWN_GRACE`], the rest fails with
    /// [`WalError::Closed`] (never acknowledged).
    pub(crate) async fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown);
        let task = self.task.lock().take();
        if let Some(mut t) = task {
            tokio::select! {
                _ = &mut t => return,
                _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
            }
            self.cancel.cancel();
            let _ = t.await;
        }
    }
}

/// How long shutdown waits for queued object-WAL writes.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct Writer<T> {
    cancel: CancellationToken,
    store: Arc<dyn ObjectStore>,
    node: String,
    seq: u64,
    opts: ObjectWalOptions,
    live: Live,
    sink: Sink<T>,
}

impl<T: Send + 'static> Writer<T> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg<T>>) {
        let mut stop = false;
        while !stop {
            let mut group = Group::new();
            match rx.recv().await {
                Some(Msg::Record(r, t)) => group.push(r, t),
                Some(Msg::Shutdown) | None => break,
            }
            let deadline = tokio::time::Instant::now() + self.opts.max_delay;
            while group.bytes < self.opts.max_bytes {
                let msg = match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(m) => m,
                            Err(_elapsed) => break,
                        }
                    }
                };
                match msg {
                    Some(Msg::Record(r, t)) => group.push(r, t),
                    Some(Msg::Shutdown) | None => {
                        stop = true;
                        break;
                    }
                }
            }
            let body = group.encode();
            match self.put(body).await {
                Some(seq) => {
                    self.live.lock().insert(seq);
                    self.sink.durable(group.entries, seq + 1);
                }
                None => {
                    self.sink.failed(group.entries, WalError::Closed);
                    break;
                }
            }
        }
    }

    /// PUT until it succeeds, each attempt under a fresh sequence number;
    /// `None` when cancelled.
    async fn put(&mut self, body: Bytes) -> Option<u64> {
        let mut backoff = self.opts.retry_backoff;
        loop {
            let seq = self.seq;
            self.seq += 1;
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let k = key(&self.node, seq);
            let attempt = tokio::select! {
                r = self.store.put_opts(&k, PutPayload::from(body.clone()), opts) => r,
                _ = self.cancel.cancelled() => return None,
            };
            match attempt {
                Ok(_) => return Some(seq),
                Err(e) => {
                    tracing::warn!(node = %self.node, seq, error = %e,
                        "object WAL PUT failed; retrying under the next key");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.cancel.cancelled() => return None,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
