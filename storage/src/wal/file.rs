//! The file WAL: segment files `<dir>/<start position, 20 digits>.wal`.
//!
//! A position is a byte offset in the concatenation of all segments ever
//! written, so a segment's name says where it starts and the next one's name
//! where it ends. One OS thread owns the current segment: it takes every
//! queued record (up to `group_commit_max_bytes`, waiting at most
//! `group_commit_max_delay` for more), writes them with one vectored `write`
//! (payloads are not copied) and one `fdatasync`, then reports the group to
//! the sink on the same thread. With `direct_io`, large groups (high rates)
//! are instead staged block-aligned (see [`super::direct`]) and written with
//! `O_DIRECT` where the file system allows it, so the kernel does not copy
//! them into fresh page-cache pages; small ones still go through the page
//! cache, whose `fdatasync` waits less. Small groups get zeros written
//! ahead of them, so their `fdatasync` does not also write the inode for a
//! changed file size. A new segment is started when the current one reached
//! `segment_bytes` (the full one is first cut to its records), and on every
//! start-up, so a segment is never appended to after a crash.
//!
//! Recovery reads segments in order. A record that fails to decode in the
//! last segment, with no valid record anywhere after it, is a torn write (or
//! the zeros written ahead): the file is truncated there. Any other bad record stops recovery with
//! [`WalError::Corrupt`] naming the file and byte position.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::direct::{self, AlignedWriter};
use super::record::{self, DecodeError, WalRecord};
use super::{Group, RecoveredChunk, Sink, WalError};

enum Msg<T> {
    Record(WalRecord, T),
    Shutdown,
}

/// Group-commit limits of the writer thread.
#[derive(Debug, Clone, Copy)]
pub struct FileWalOptions {
    pub max_delay: Duration,
    pub max_bytes: usize,
    pub segment_bytes: u64,
    /// Write groups of at least [`DIRECT_FROM`] bytes with `O_DIRECT`
    /// (falls back to buffered writes where the file system refuses it).
    pub direct_io: bool,
}

type Segments = Arc<Mutex<BTreeMap<u64, PathBuf>>>;

/// The running file WAL.
pub(crate) struct FileWal<T> {
    tx: mpsc::Sender<Msg<T>>,
    segments: Segments,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.wal"))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    skiff_common::fs::sync_dir(dir).map_err(|e| WalError::io(dir.display(), e))
}

/// Lists segments of `dir` by start position.
fn list_segments(dir: &Path) -> Result<BTreeMap<u64, PathBuf>, WalError> {
    let mut out = BTreeMap::new();
    let rd = fs::read_dir(dir).map_err(|e| WalError::io(dir.display(), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| WalError::io(dir.display(), e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        if let Ok(start) = stem.parse::<u64>() {
            out.insert(start, entry.path());
        }
    }
    Ok(out)
}

/// Reads back the segments of a WAL directory, one chunk per segment.
pub struct FileRecovery {
    dir: PathBuf,
    pending: Vec<(u64, PathBuf)>,
    all: BTreeMap<u64, PathBuf>,
    end_pos: u64,
}

impl FileRecovery {
    /// Open `dir` (created if missing) for recovery.
    pub fn open(dir: &Path) -> Result<Self, WalError> {
        fs::create_dir_all(dir).map_err(|e| WalError::io(dir.display(), e))?;
        let all = list_segments(dir)?;
        let end_pos = all.keys().next().copied().unwrap_or(0);
        Ok(Self {
            dir: dir.to_path_buf(),
            pending: all.iter().rev().map(|(s, p)| (*s, p.clone())).collect(),
            all,
            end_pos,
        })
    }

    /// Position after the last valid record read so far.
    pub fn end_pos(&self) -> u64 {
        self.end_pos
    }

    /// The records of the next segment, or `None` when all are read. The
    /// last segment's torn tail is truncated.
    pub fn next_chunk(&mut self) -> Result<Option<RecoveredChunk>, WalError> {
        let Some((start, path)) = self.pending.pop() else {
            return Ok(None);
        };
        let is_last = self.pending.is_empty();
        let data = Bytes::from(fs::read(&path).map_err(|e| WalError::io(path.display(), e))?);
        let mut records = Vec::new();
        let mut at = 0usize;
        while at < data.len() {
            match record::decode(&data.slice(at..)) {
                Ok((rec, len)) => {
                    records.push(rec);
                    at += len;
                }
                Err(err) => {
                    let rest = data.slice(at..);
                    let torn = is_last && record::any_valid_frame(&rest).is_none();
                    if !torn {
                        return Err(corrupt(&path, at, err));
                    }
                    tracing::warn!(file = %path.display(), position = at, %err,
                        "truncating torn WAL tail");
                    truncate(&path, at as u64)?;
                    break;
                }
            }
        }
        self.end_pos = start + at as u64;
        if at == 0 {
            // Nothing valid: drop the file so the new segment can take its name.
            fs::remove_file(&path).map_err(|e| WalError::io(path.display(), e))?;
            self.all.remove(&start);
            sync_dir(&self.dir)?;
        }
        Ok(Some(RecoveredChunk {
            records,
            end_pos: self.end_pos,
        }))
    }
}

fn corrupt(path: &Path, at: usize, err: DecodeError) -> WalError {
    WalError::Corrupt {
        file: path.display().to_string(),
        position: at as u64,
        reason: err.to_string(),
    }
}

fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path.display(), e))?;
    f.set_len(len)
        .and_then(|_| f.sync_all())
        .map_err(|e| WalError::io(path.display(), e))
}

struct Writer<T> {
    dir: PathBuf,
    opts: FileWalOptions,
    segments: Segments,
    /// The current segment, opened for buffered writes.
    file: File,
    /// The same segment opened with `O_DIRECT`, for large groups; `None`
    /// when direct I/O is off or refused.
    direct: Option<File>,
    /// Bytes of records in the current segment (the file cursor).
    seg_len: u64,
    /// Length of the current segment file: records, then zeros written ahead.
    alloc_len: u64,
    pos: u64,
    /// Stages direct groups block-aligned (carries the partial last block);
    /// `None` when direct I/O is off or was refused at start.
    aligned: Option<AlignedWriter>,
    /// Segments get an `O_DIRECT` descriptor: asked for and not yet refused.
    direct_io: bool,
    poisoned: Option<WalError>,
    sink: Sink<T>,
}

/// Groups below this size are in the small-write regime: the writer keeps
/// [`PREALLOC_BYTES`] of zeros written ahead of them, so their `fdatasync`
/// flushes data only. Appending past a file's end also changes its size, and
/// ext4 then writes the inode as well: a second device write per fsync,
/// which doubled the fsync time at low rates. Large groups append (the
/// inode write is amortised, and zero-filling would double their copying).
const PREALLOC_BELOW: u64 = 256 * 1024;
/// How far ahead of the records zeros are written in the small-write regime.
const PREALLOC_BYTES: u64 = 1024 * 1024;
/// Groups from this size are written with `O_DIRECT` (when on): at high
/// rates the kernel's copy into new page-cache pages was the largest CPU
/// cost of produce, and direct writes of large groups cut the broker's CPU
/// per GB by about a fifth. Small groups stay buffered: a direct write waits
/// for the device before the `fdatasync` does again, which raised the p99
/// ack latency at 5,000 msg/s by a few milliseconds (BENCHMARKS.md).
pub const DIRECT_FROM: usize = PREALLOC_BELOW as usize;

impl<T: Send + 'static> FileWal<T> {
    /// Start writing at the end of a finished recovery.
    pub(crate) fn start(
        recovery: FileRecovery,
        opts: FileWalOptions,
        sink: Sink<T>,
    ) -> Result<Self, WalError> {
        let dir = recovery.dir;
        let pos = recovery.end_pos;
        let segments: Segments = Arc::new(Mutex::new(recovery.all));
        let mut direct_io = opts.direct_io;
        let (file, direct) = create_segment(&dir, pos, &segments, &mut direct_io)?;
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer {
            dir,
            opts,
            segments: segments.clone(),
            file,
            direct,
            seg_len: 0,
            alloc_len: 0,
            pos,
            aligned: direct_io.then(|| AlignedWriter::new(opts.max_bytes)),
            direct_io,
            poisoned: None,
            sink,
        };
        let thread = std::thread::Builder::new()
            .name("skiff-wal".into())
            .spawn(move || {
                writer.run(rx);
                writer.trim_preallocated();
            })
            .map_err(|e| WalError::io("wal thread", e))?;
        Ok(Self {
            tx,
            segments,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(crate) fn submit(&self, record: WalRecord, tag: T) -> Result<(), (WalRecord, T)> {
        self.tx
            .send(Msg::Record(record, tag))
            .map_err(|e| match e.0 {
                Msg::Record(r, t) => (r, t),
                Msg::Shutdown => unreachable!("only records are sent here"),
            })
    }

    /// Delete segments that end at or below `pos` (never the current one).
    pub(crate) fn trim(&self, pos: u64) -> Result<(), WalError> {
        let doomed: Vec<(u64, PathBuf)> = {
            let segs = self.segments.lock();
            let starts: Vec<u64> = segs.keys().copied().collect();
            starts
                .windows(2)
                .filter(|w| w[1] <= pos)
                .map(|w| (w[0], segs[&w[0]].clone()))
                .collect()
        };
        for (start, path) in doomed {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::io(path.display(), e)),
            }
            self.segments.lock().remove(&start);
        }
        Ok(())
    }

    pub(crate) async fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown);
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// Create the segment starting at `pos`: a buffered descriptor and, with
/// `direct_io`, a second one with `O_DIRECT`. If the file system refuses
/// `O_DIRECT`, logs it once and clears `direct_io` (every group then goes
/// through the page cache).
fn create_segment(
    dir: &Path,
    pos: u64,
    segments: &Segments,
    direct_io: &mut bool,
) -> Result<(File, Option<File>), WalError> {
    let path = segment_path(dir, pos);
    // Not O_APPEND: groups go at explicit offsets, zeros may lie ahead.
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io(path.display(), e))?;
    let mut direct = None;
    if *direct_io {
        let opened = OpenOptions::new().write(true).open(&path).and_then(|f| {
            direct::enable_direct_io(&f)?;
            Ok(f)
        });
        match opened {
            Ok(f) => direct = Some(f),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "the file system refuses O_DIRECT; the WAL writes through the page cache");
                *direct_io = false;
            }
        }
    }
    sync_dir(dir)?;
    segments.lock().insert(pos, path);
    Ok((file, direct))
}

impl<T: Send + 'static> Writer<T> {
    fn run(&mut self, rx: mpsc::Receiver<Msg<T>>) {
        let mut stop = false;
        while !stop {
            let mut group = Group::new();
            match rx.recv() {
                Ok(Msg::Record(r, t)) => group.push(r, t),
                Ok(Msg::Shutdown) | Err(_) => break,
            }
            let deadline = Instant::now() + self.opts.max_delay;
            while group.bytes < self.opts.max_bytes {
                let msg = match rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Disconnected) => {
                        stop = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        match rx.recv_timeout(deadline - now) {
                            Ok(m) => m,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => {
                                stop = true;
                                break;
                            }
                        }
                    }
                };
                match msg {
                    Msg::Record(r, t) => group.push(r, t),
                    Msg::Shutdown => {
                        stop = true;
                        break;
                    }
                }
            }
            self.write_group(group);
        }
    }

    fn write_group(&mut self, group: Group<T>) {
        // The sink runs on this thread: a hand-off to another thread cost a
        // wake-up per group, more than the sink's work (cache insert, acks).
        if let Some(err) = &self.poisoned {
            self.sink.failed(group.entries, err.clone());
            return;
        }
        let group = self.admitted(group);
        if group.entries.is_empty() {
            return;
        }
        match self.write(&group) {
            Ok(()) => self.sink.durable(group.entries, self.pos),
            Err(err) => {
                match self.cut_back() {
                    Ok(()) => tracing::error!(
                        %err,
                        "file WAL write failed: its appends are refused, the segment is cut back to its last durable record, and writing goes on"
                    ),
                    Err(cut) => {
                        tracing::error!(%err, %cut, "file WAL write failed and the segment could not be cut back; refusing further writes until restart");
                        self.poisoned = Some(err.clone());
                    }
                }
                self.sink.failed(group.entries, err);
            }
        }
    }

    /// The group without the records the sink no longer admits (their
    /// stream failed or closed since they were queued); those are refused.
    fn admitted(&self, group: Group<T>) -> Group<T> {
        let (keep, refuse): (Vec<_>, Vec<_>) = group
            .entries
            .into_iter()
            .partition(|(_, tag)| self.sink.admit(tag));
        if !refuse.is_empty() {
            self.sink.failed(refuse, WalError::StreamStopped);
        }
        let mut out = Group::new();
        for (r, t) in keep {
            out.push(r, t);
        }
        out
    }

    /// After a failed write: drop whatever part of the group reached the
    /// segment (cut the file back to `seg_len`, the end of the last durable
    /// record, and sync that), so the next group starts right after durable
    /// data. Records acknowledged before are below the cut and were synced.
    fn cut_back(&mut self) -> Result<(), WalError> {
        let path = segment_path(&self.dir, self.pos - self.seg_len);
        let io = |e| WalError::io(path.display(), e);
        self.file.set_len(self.seg_len).map_err(io)?;
        self.alloc_len = self.seg_len;
        self.file.sync_all().map_err(io)
    }

    fn write(&mut self, group: &Group<T>) -> Result<(), WalError> {
        if self.seg_len >= self.opts.segment_bytes {
            self.roll()?;
        }
        let path = segment_path(&self.dir, self.pos - self.seg_len);
        let io = |e| WalError::io(path.display(), e);
        // Headers from the stack, payloads from the appenders' buffers.
        let headers: Vec<_> = group.entries.iter().map(|(r, _)| r.header()).collect();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(group.entries.len() * 2);
        for ((r, _), h) in group.entries.iter().zip(&headers) {
            parts.push(h);
            parts.push(r.payload.bytes());
        }
        let mut direct = match (&self.direct, &mut self.aligned) {
            (Some(direct), Some(aligned)) if group.bytes >= DIRECT_FROM => {
                // Allocate the rest of the segment before the first direct
                // write: a direct write that extends the file waits for the
                // file system to allocate and journal the new blocks, which
                // stalled single groups by up to ~100 ms on ext4 (p99).
                let padded = direct::round_up(self.seg_len + group.bytes as u64);
                if padded > self.alloc_len {
                    let to = self.opts.segment_bytes.max(padded);
                    allocate(&self.file, self.alloc_len, to).map_err(io)?;
                    self.alloc_len = to;
                }
                Some((direct, aligned))
            }
            _ => None,
        };
        let len = group.bytes as u64;
        let end = self.seg_len + len;
        let file_len = match &mut direct {
            // The one copy is into the aligned buffer the device reads from.
            Some((fd, aligned)) => aligned
                .write(fd, self.seg_len, &parts, group.bytes)
                .map_err(io)?,
            // One vectored write at the records' end: payloads go from the
            // appenders' buffers to the page cache, no copy in user space.
            None => {
                use std::io::{Seek, SeekFrom};
                self.file.seek(SeekFrom::Start(self.seg_len)).map_err(io)?;
                let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                write_all_vectored(&mut self.file, &mut slices).map_err(io)?;
                end
            }
        };
        if end > self.alloc_len && len < PREALLOC_BELOW {
            let to = (end + PREALLOC_BYTES).min(self.opts.segment_bytes.max(end));
            write_zeros(&self.file, file_len, to).map_err(io)?;
            self.alloc_len = to;
        }
        self.alloc_len = self.alloc_len.max(file_len);
        self.file.sync_data().map_err(io)?;
        match direct {
            Some((_, aligned)) => aligned.commit(group.bytes),
            None => {
                if let Some(aligned) = &mut self.aligned {
                    aligned.commit_written(&parts, group.bytes);
                }
            }
        }
        self.seg_len = end;
        self.pos += len;
        Ok(())
    }

    /// Start the next segment. The full one is cut to its records first, so
    /// only the last segment can ever end in zeros (recovery treats those as
    /// a torn tail).
    fn roll(&mut self) -> Result<(), WalError> {
        self.trim_preallocated_now()?;
        (self.file, self.direct) =
            create_segment(&self.dir, self.pos, &self.segments, &mut self.direct_io)?;
        if let Some(aligned) = &mut self.aligned {
            aligned.reset();
        }
        self.seg_len = 0;
        self.alloc_len = 0;
        Ok(())
    }

    fn trim_preallocated_now(&mut self) -> Result<(), WalError> {
        if self.alloc_len > self.seg_len {
            let path = segment_path(&self.dir, self.pos - self.seg_len);
            self.file
                .set_len(self.seg_len)
                .and_then(|_| self.file.sync_all())
                .map_err(|e| WalError::io(path.display(), e))?;
            self.alloc_len = self.seg_len;
        }
        Ok(())
    }

    /// On a clean stop, leave the segment holding only records.
    fn trim_preallocated(&mut self) {
        if self.poisoned.is_none()
            && let Err(e) = self.trim_preallocated_now()
        {
            tracing::warn!(error = %e, "could not cut the WAL's zero tail; recovery will");
        }
    }
}

/// `write_all` for a vectored write (std's is unstable).
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    use std::io::Write;
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Allocate `[from, to)` of `file` (unwritten blocks that read as zeros; the
/// file's size becomes at least `to`), so direct writes into it do not
/// allocate. Where the file system cannot, writes zeros instead.
fn allocate(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    if to <= from {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::{FallocateFlags, fallocate};
        match fallocate(
            file,
            FallocateFlags::empty(),
            from as i64,
            (to - from) as i64,
        ) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    write_zeros(file, from, to)
}

/// Write zeros over `[from, to)` of `file` without moving its cursor.
/// Only small groups get them, and those are written buffered.
fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}
