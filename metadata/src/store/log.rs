//! The Raft log on local disk: segment files of checksummed frames, written
//! by one writer thread that group-commits fsyncs.
//!
//! Layout of `dir`:
//! - `log-<first index, 20 digits>.seg`: frames (see [`crate::frame`]), each
//!   one postcard-encoded `Entry`. A new segment starts once the current one
//!   passes `segment_bytes`.
//! - `vote`: one frame with the last saved vote (replaced atomically).
//! - `purged`: one frame with the last purged log id (replaced atomically).
//!
//! Appends update the in-memory view (which readers use) at once and queue
//! the bytes to the writer thread (without fsync — tests, simulations — the
//! writer runs inline on the appending task instead). The writer drains everything queued,
//! writes it, issues one `fdatasync` for the whole batch and only then
//! reports each append as flushed to openraft: that is the group commit.
//! Truncations and purges travel through the same queue, so the file always
//! sees operations in the order openraft issued them.
//!
//! Recovery reads the segments in order; a torn or corrupt frame at the tail
//! of the last segment (a crash mid-write) is cut off, corruption anywhere
//! else is an error. All non-purged entries are kept in memory: the metadata
//! log is small and is purged after every snapshot.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use parking_lot::Mutex;
use skiff_common::fs::{sync_dir, write_atomic};
use tokio::sync::oneshot;

use crate::frame;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Largest log entry frame accepted on recovery.
const MAX_ENTRY: usize = 64 << 20;

fn io_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

#[derive(Debug, Default)]
struct Mem {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
}

enum Op {
    Append {
        bytes: Vec<u8>,
        first: u64,
        indexes: Vec<(u64, usize)>,
        done: LogFlushed<TypeConfig>,
    },
    Truncate(u64),
    Purge(LogId, oneshot::Sender<io::Result<()>>),
    Vote(Vec<u8>, oneshot::Sender<io::Result<()>>),
}

/// The Raft log storage. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct LogStore {
    mem: Arc<Mutex<Mem>>,
    sink: Sink,
}

/// Where writes go: the writer thread, or (without fsync) the writer run
/// inline on the calling task, so that a simulation on one thread with a
/// paused clock never waits for another thread.
#[derive(Clone)]
enum Sink {
    Thread(mpsc::Sender<Op>),
    Inline(Arc<Mutex<Option<Writer>>>),
}

/// A reader of the log for replication tasks.
#[derive(Clone)]
pub struct LogReader {
    mem: Arc<Mutex<Mem>>,
}

impl LogStore {
    /// Open (or create) the log in `dir`, recovering what is on disk, and
    /// start its writer thread. With `fsync` false, writes are not synced
    /// (tests and simulations only).
    pub fn open(dir: &Path, fsync: bool, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let vote = read_single::<Vote>(&dir.join("vote"))?;
        let last_purged = read_single::<LogId>(&dir.join("purged"))?;
        let mut segments = list_segments(dir)?;
        let mut entries = BTreeMap::new();
        let mut positions = BTreeMap::new();
        let nseg = segments.len();
        for (i, (first, path)) in segments.iter().enumerate() {
            let valid = read_segment(path, *first, i + 1 == nseg, &mut entries, &mut positions)?;
            let len = fs::metadata(path)?.len();
            if valid < len {
                tracing::warn!(path = %path.display(), valid, len, "cutting torn tail of the raft log");
                OpenOptions::new().write(true).open(path)?.set_len(valid)?;
            }
        }
        if let Some(p) = last_purged {
            entries.retain(|i, _| *i > p.index);
        }
        // Drop empty trailing segments so the active one is well defined.
        while let Some((first, path)) = segments.last() {
            if fs::metadata(path)?.len() == 0 && segments.len() > 1 {
                let _ = first;
                fs::remove_file(path)?;
                segments.pop();
            } else {
                break;
            }
        }
        let mem = Arc::new(Mutex::new(Mem {
            entries,
            last_purged,
            vote,
        }));
        let writer = Writer {
            dir: dir.to_path_buf(),
            fsync,
            segment_bytes,
            segments: segments.into_iter().collect(),
            positions,
            active: None,
        };
        let sink = if fsync {
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("raft-log-writer".into())
                .spawn(move || writer.run(rx))?;
            Sink::Thread(tx)
        } else {
            Sink::Inline(Arc::new(Mutex::new(Some(writer))))
        };
        Ok(Self { mem, sink })
    }

    #[allow(clippy::result_large_err)] // openraft's error type
    fn send(&self, op: Op) -> Result<(), StorageError> {
        let stopped = || io_err(io::Error::other("raft log writer stopped"));
        match &self.sink {
            Sink::Thread(tx) => tx.send(op).map_err(|_| stopped()),
            Sink::Inline(writer) => {
                let mut w = writer.lock();
                let ok = w.as_mut().ok_or_else(stopped)?.process(vec![op]);
                if !ok {
                    *w = None;
                }
                Ok(())
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .mem
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .mem
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let mem = self.mem.lock();
        let last = mem
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(mem.last_purged);
        Ok(LogState {
            last_purged_log_id: mem.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            mem: self.mem.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = frame::encode(vote).map_err(io_err)?;
        let (tx, rx) = oneshot::channel();
        self.send(Op::Vote(bytes, tx))?;
        rx.await
            .map_err(|_| io_err(io::Error::other("raft log writer stopped")))?
            .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        self.mem.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.mem.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut bytes = Vec::new();
        let mut indexes = Vec::new();
        let mut mem = self.mem.lock();
        for e in entries {
            let f = frame::encode(&e).map_err(io_err)?;
            indexes.push((e.log_id.index, bytes.len()));
            bytes.extend_from_slice(&f);
            mem.entries.insert(e.log_id.index, e);
        }
        drop(mem);
        let Some(&(first, _)) = indexes.first() else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        self.send(Op::Append {
            bytes,
            first,
            indexes,
            done: callback,
        })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.mem.lock().entries.split_off(&log_id.index);
        self.send(Op::Truncate(log_id.index))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Purge(log_id, tx))?;
        rx.await
            .map_err(|_| io_err(io::Error::other("raft log writer stopped")))?
            .map_err(io_err)?;
        let mut mem = self.mem.lock();
        mem.last_purged = Some(log_id);
        let keep = mem.entries.split_off(&(log_id.index + 1));
        mem.entries = keep;
        Ok(())
    }
}

/// The thread that owns the files.
struct Writer {
    dir: PathBuf,
    fsync: bool,
    segment_bytes: u64,
    /// first index -> path, in order.
    segments: BTreeMap<u64, PathBuf>,
    /// entry index -> (segment first index, byte offset)
    positions: BTreeMap<u64, (u64, u64)>,
    /// The open segment: (first index, file, length).
    active: Option<(u64, File, u64)>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(op) = rx.recv() {
            let mut batch = vec![op];
            while let Ok(op) = rx.try_recv() {
                batch.push(op);
            }
            if !self.process(batch) {
                return;
            }
        }
    }

    /// Carry out `batch` with one flush at the end; false once a write
    /// failed (the writer is then unusable).
    fn process(&mut self, batch: Vec<Op>) -> bool {
        {
            let mut flushed = Vec::new();
            let mut result: io::Result<()> = Ok(());
            for op in batch {
                match op {
                    Op::Append {
                        bytes,
                        first,
                        indexes,
                        done,
                    } => {
                        if result.is_ok() {
                            result = self.append(&bytes, first, &indexes);
                        }
                        flushed.push(done);
                    }
                    Op::Truncate(index) => {
                        if result.is_ok() {
                            result = self.truncate(index);
                        }
                    }
                    Op::Purge(log_id, reply) => {
                        let r = if result.is_ok() {
                            self.purge(log_id)
                        } else {
                            Err(io::Error::other("earlier write failed"))
                        };
                        let _ = reply.send(r);
                    }
                    Op::Vote(bytes, reply) => {
                        let _ = reply.send(write_atomic(&self.dir, "vote", &bytes, self.fsync));
                    }
                }
            }
            if result.is_ok()
                && self.fsync
                && !flushed.is_empty()
                && let Some((_, f, _)) = &self.active
            {
                result = f.sync_data();
            }
            for done in flushed {
                let r = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                done.log_io_completed(r);
            }
            if let Err(e) = result {
                // The file state is unknown now: stop; openraft treats the
                // failed flush as fatal and the node must restart to recover.
                tracing::error!(error = %e, "raft log write failed; log writer stops");
                return false;
            }
        }
        true
    }

    fn append(&mut self, bytes: &[u8], first: u64, indexes: &[(u64, usize)]) -> io::Result<()> {
        let roll = match &self.active {
            None => true,
            Some((_, _, len)) => *len >= self.segment_bytes,
        };
        if roll {
            self.open_active(first)?;
        }
        let (seg, file, len) = self.active.as_mut().expect("opened above");
        file.write_all(bytes)?;
        for (index, off) in indexes {
            self.positions.insert(*index, (*seg, *len + *off as u64));
        }
        *len += bytes.len() as u64;
        Ok(())
    }

    /// Open the last segment for appending, or start a new one at `first`
    /// when there is none or the last one is full.
    fn open_active(&mut self, first: u64) -> io::Result<()> {
        if let Some((_, f, _)) = self.active.take()
            && self.fsync
        {
            f.sync_data()?;
        }
        if let Some((&seg, path)) = self.segments.iter().next_back() {
            let len = fs::metadata(path)?.len();
            if len < self.segment_bytes {
                let f = OpenOptions::new().append(true).open(path)?;
                self.active = Some((seg, f, len));
                return Ok(());
            }
        }
        let path = self.dir.join(format!("log-{first:020}.seg"));
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        if self.fsync {
            sync_dir(&self.dir)?;
        }
        self.segments.insert(first, path);
        self.active = Some((first, f, 0));
        Ok(())
    }

    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(&(seg, off)) = self.positions.get(&index) else {
            return Ok(());
        };
        self.positions.split_off(&index);
        self.active = None;
        let later: Vec<u64> = self.segments.range(seg + 1..).map(|(k, _)| *k).collect();
        for k in later {
            if let Some(p) = self.segments.remove(&k) {
                fs::remove_file(p)?;
            }
        }
        if let Some(p) = self.segments.get(&seg) {
            let f = OpenOptions::new().write(true).open(p)?;
            f.set_len(off)?;
            if self.fsync {
                f.sync_all()?;
            }
        }
        Ok(())
    }

    fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let bytes = frame::encode(&log_id).map_err(io::Error::other)?;
        write_atomic(&self.dir, "purged", &bytes, self.fsync)?;
        // A segment can go once the next one starts at or below upto + 1.
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        for w in firsts.windows(2) {
            if w[1] <= log_id.index + 1 {
                let active = self.active.as_ref().is_some_and(|(s, _, _)| *s == w[0]);
                if !active && let Some(p) = self.segments.remove(&w[0]) {
                    fs::remove_file(p)?;
                }
            }
        }
        self.positions = self.positions.split_off(&(log_id.index + 1));
        Ok(())
    }
}

/// Read a file holding one frame; a missing file is `None`.
pub(crate) fn read_single<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match frame::decode(&bytes, usize::MAX) {
        Ok(Some((v, _))) => Ok(Some(v)),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is truncated", path.display()),
        )),
        Err(e) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )),
    }
}

fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("log-")
            .and_then(|s| s.strip_suffix(".seg"))
            && let Ok(first) = n.parse::<u64>()
        {
            out.push((first, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Read one segment into `entries`; returns the length of its valid prefix.
fn read_segment(
    path: &Path,
    first: u64,
    last: bool,
    entries: &mut BTreeMap<u64, Entry>,
    positions: &mut BTreeMap<u64, (u64, u64)>,
) -> io::Result<u64> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut pos = 0usize;
    while pos < bytes.len() {
        match frame::decode::<Entry>(&bytes[pos..], MAX_ENTRY) {
            Ok(Some((e, used))) => {
                let index = e.log_id.index;
                // A rewrite of an index (after a truncate that a crash
                // interrupted) supersedes everything after it.
                entries.split_off(&index);
                positions.split_off(&index);
                positions.insert(index, (first, pos as u64));
                entries.insert(index, e);
                pos += used;
            }
            Ok(None) | Err(_) if last => return Ok(pos as u64),
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is truncated", path.display()),
                ));
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                ));
            }
        }
    }
    Ok(pos as u64)
}
