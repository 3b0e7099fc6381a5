//! [`LocalStore`], the embedded object store: object_store's
//! [`LocalFileSystem`], with large PUTs written with `O_DIRECT`.
//!
//! A buffered write copies every byte of a new object into freshly
//! allocated page-cache pages. On the produce path that kernel copy was the
//! largest single cost of the broker: 44% of its CPU in a profile at
//! 450 MB/s (BENCHMARKS.md, session 9), several times what the same bytes
//! cost to copy in user space into a buffer that stays allocated. So PUTs of
//! [`DIRECT_FROM`] bytes and more are copied, one [`CHUNK`] at a time, into a
//! block-aligned buffer and written with `O_DIRECT`; the file is then cut to
//! the object's length (the last chunk is padded to a block), synced, and
//! published the way `LocalFileSystem` publishes its own PUTs: staged as
//! `<path>#<n>` (a name its listings skip), hard-linked into place for a
//! create-only PUT or renamed over it for an overwrite, and the directory
//! synced. Every other operation, small and conditional PUTs, and file
//! systems that refuse `O_DIRECT` go to `LocalFileSystem` itself.
//!
//! A directly written object is not in the page cache: its first read comes
//! from the device. Recent data is read from the log cache, and blocks read
//! once stay in the block cache.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};
use parking_lot::Mutex;
use skiff_common::fs::sync_dir;

use crate::wal::direct::{BLOCK, aligned_buffer, enable_direct_io, round_up};

/// PUTs from this size are written with `O_DIRECT`. Smaller objects (a
/// seal at a low produce rate) are few bytes a second: they stay buffered.
pub(super) const DIRECT_FROM: usize = 256 * 1024;
/// Bytes copied and written per direct write; a multiple of [`BLOCK`].
pub(super) const CHUNK: usize = 1024 * 1024;
/// Chunk buffers kept for reuse (one per PUT running at once): a fresh
/// buffer is page-faulted in and zeroed, which costs as much as the copy.
const KEEP_BUFFERS: usize = 8;

/// `LocalFileSystem` (fsyncing every PUT) with direct writes for large PUTs.
#[derive(Debug, Clone)]
pub struct LocalStore {
    fs: Arc<LocalFileSystem>,
    /// Large PUTs are written direct: asked for, and not refused yet.
    direct: Arc<AtomicBool>,
    buffers: Arc<Mutex<Vec<ChunkBuffer>>>,
}

#[derive(Debug)]
struct ChunkBuffer {
    mem: Vec<u8>,
    start: usize,
}

/// Why a direct PUT did not happen.
enum DirectError {
    /// The file system refuses `O_DIRECT`: write through the page cache.
    Refused(io::Error),
    /// Create-only, and the object exists.
    Exists(io::Error),
    Io(io::Error),
}

impl LocalStore {
    /// Objects under `dir`; large PUTs direct when `direct_io`.
    pub fn new(dir: &FsPath, direct_io: bool) -> Result<Self> {
        Ok(Self {
            fs: Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_fsync(true)),
            direct: Arc::new(AtomicBool::new(direct_io)),
            buffers: Arc::default(),
        })
    }

    fn take_buffer(&self) -> ChunkBuffer {
        self.buffers.lock().pop().unwrap_or_else(|| {
            let (mem, start) = aligned_buffer(CHUNK);
            ChunkBuffer { mem, start }
        })
    }

    fn give_buffer(&self, buf: ChunkBuffer) {
        let mut kept = self.buffers.lock();
        if kept.len() < KEEP_BUFFERS {
            kept.push(buf);
        }
    }

    /// Stage, write, sync and publish `payload` at `dest` (blocking).
    fn put_direct(
        &self,
        dest: &FsPath,
        payload: &PutPayload,
        create: bool,
    ) -> Result<(), DirectError> {
        let (file, staged) = stage(dest).map_err(DirectError::Io)?;
        let result = enable_direct_io(&file)
            .map_err(DirectError::Refused)
            .and_then(|()| self.write_chunks(&file, payload).map_err(DirectError::Io))
            .and_then(|()| file.sync_all().map_err(DirectError::Io))
            .and_then(|()| publish(&staged, dest, create));
        drop(file);
        let _ = std::fs::remove_file(&staged);
        result
    }

    /// Write `payload` from offset 0 in aligned chunks, then cut the file
    /// to its length.
    fn write_chunks(&self, file: &File, payload: &PutPayload) -> io::Result<()> {
        let mut buf = self.take_buffer();
        let mut parts = payload.iter().map(|b| b.as_ref()).filter(|b| !b.is_empty());
        let mut part: &[u8] = parts.next().unwrap_or_default();
        let mut at = 0u64;
        let written = loop {
            let window = &mut buf.mem[buf.start..buf.start + CHUNK];
            let mut filled = 0;
            while filled < CHUNK && !part.is_empty() {
                let n = (CHUNK - filled).min(part.len());
                window[filled..filled + n].copy_from_slice(&part[..n]);
                filled += n;
                part = &part[n..];
                if part.is_empty() {
                    part = parts.next().unwrap_or_default();
                }
            }
            if filled == 0 {
                break Ok(());
            }
            let padded = round_up(filled as u64) as usize;
            window[filled..padded].fill(0);
            if let Err(e) = file.write_all_at(&window[..padded], at) {
                break Err(e);
            }
            at += filled as u64;
            if filled < CHUNK {
                break Ok(());
            }
        };
        self.give_buffer(buf);
        written?;
        if !at.is_multiple_of(BLOCK as u64) {
            file.set_len(at)?;
        }
        Ok(())
    }
}

/// Create `<dest>#<n>` for the first free `n`, and `dest`'s directories if
/// missing (synced, so the object's path survives a power loss).
fn stage(dest: &FsPath) -> io::Result<(File, PathBuf)> {
    for n in 1u32.. {
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{n}"));
        let staged = PathBuf::from(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
        {
            Ok(f) => return Ok((f, staged)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_dirs(dest)?,
            Err(e) => return Err(e),
        }
    }
    Err(io::ErrorKind::AlreadyExists.into())
}

/// Create the parent directories of `path` and sync every directory whose
/// entries changed.
fn create_dirs(path: &FsPath) -> io::Result<()> {
    let parent = path.parent().ok_or(io::ErrorKind::NotFound)?;
    let mut existing = parent;
    while !existing.exists() {
        existing = existing.parent().ok_or(io::ErrorKind::NotFound)?;
    }
    std::fs::create_dir_all(parent)?;
    let mut dir = parent;
    loop {
        sync_dir(dir)?;
        if dir == existing {
            return Ok(());
        }
        dir = dir.parent().ok_or(io::ErrorKind::NotFound)?;
    }
}

/// Put the synced `staged` file in place at `dest` and sync the directory.
fn publish(staged: &FsPath, dest: &FsPath, create: bool) -> Result<(), DirectError> {
    let placed = if create {
        std::fs::hard_link(staged, dest)
    } else {
        std::fs::rename(staged, dest)
    };
    match placed {
        Ok(()) => {}
        Err(e) if create && e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(DirectError::Exists(e));
        }
        Err(e) => return Err(DirectError::Io(e)),
    }
    let dir = dest
        .parent()
        .ok_or(DirectError::Io(io::ErrorKind::NotFound.into()))?;
    sync_dir(dir).map_err(DirectError::Io)
}

impl std::fmt::Display for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalStore({})", self.fs)
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let create = match opts.mode {
            PutMode::Create => true,
            PutMode::Overwrite => false,
            PutMode::Update(_) => return self.fs.put_opts(location, payload, opts).await,
        };
        if !self.direct.load(Ordering::Relaxed)
            || payload.content_length() < DIRECT_FROM
            || !opts.attributes.is_empty()
        {
            return self.fs.put_opts(location, payload, opts).await;
        }
        let dest = self.fs.path_to_filesystem(location)?;
        let this = self.clone();
        let body = payload.clone();
        let target = dest.clone();
        let put = tokio::task::spawn_blocking(move || this.put_direct(&target, &body, create))
            .await
            .map_err(|e| generic(io::Error::other(e)))?;
        match put {
            Ok(()) => {
                let meta = self.fs.head(location).await?;
                Ok(PutResult {
                    e_tag: meta.e_tag,
                    version: None,
                    extensions: Default::default(),
                })
            }
            Err(DirectError::Refused(e)) => {
                if self.direct.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e,
                        "the file system refuses O_DIRECT; objects are written through the page cache");
                }
                self.fs.put_opts(location, payload, opts).await
            }
            Err(DirectError::Exists(source)) => Err(object_store::Error::AlreadyExists {
                path: dest.display().to_string(),
                source: Box::new(source),
            }),
            Err(DirectError::Io(e)) => Err(generic(e)),
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.fs.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.fs.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.fs.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.fs.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.fs.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.fs.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.fs.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.fs.rename_opts(from, to, options).await
    }
}

fn generic(e: io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalStore",
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    fn body(len: usize, parts: usize) -> (Vec<u8>, PutPayload) {
        let all: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let step = len.div_ceil(parts).max(1);
        let payload: PutPayload = all
            .chunks(step)
            .map(Bytes::copy_from_slice)
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        (all, payload)
    }

    fn create() -> PutOptions {
        PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        }
    }

    #[tokio::test]
    async fn direct_puts_read_back_exactly_and_leave_no_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path(), true).unwrap();
        // Sizes around the chunk and block edges, in parts that straddle them.
        let sizes = [
            DIRECT_FROM,
            CHUNK,
            CHUNK + 1,
            2 * CHUNK - 7,
            3 * CHUNK + BLOCK,
        ];
        for (i, len) in sizes.into_iter().enumerate() {
            let (all, payload) = body(len, 1 + i * 3);
            let key = Path::from(format!("objects/{i:02}/{i}.sko"));
            let put = store.put_opts(&key, payload, create()).await.unwrap();
            let got = store.get(&key).await.unwrap();
            assert_eq!(got.meta.e_tag, put.e_tag);
            assert_eq!(got.bytes().await.unwrap().as_ref(), &all[..], "size {len}");
        }
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), sizes.len());
        let mut files = 0;
        for entry in walk(dir.path()) {
            assert!(
                !entry.to_string_lossy().contains('#'),
                "staging file left: {entry:?}"
            );
            files += 1;
        }
        assert_eq!(files, sizes.len());
    }

    #[tokio::test]
    async fn a_create_only_put_does_not_replace_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path(), true).unwrap();
        let key = Path::from("objects/aa/1.sko");
        let (first, payload) = body(CHUNK + 5, 2);
        store.put_opts(&key, payload, create()).await.unwrap();
        let (second, payload) = body(CHUNK + 9, 1);
        let err = store
            .put_opts(&key, payload.clone(), create())
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::AlreadyExists { .. }),
            "{err}"
        );
        let got = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), &first[..]);
        // An overwrite does replace it.
        store.put(&key, payload).await.unwrap();
        let got = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), &second[..]);
        assert_eq!(walk(dir.path()).len(), 1);
    }

    #[tokio::test]
    async fn small_and_buffered_puts_match_direct_ones() {
        let dir = tempfile::tempdir().unwrap();
        let direct = LocalStore::new(dir.path(), true).unwrap();
        let buffered = LocalStore::new(dir.path(), false).unwrap();
        for (len, store, name) in [
            (100, &direct, "small"),
            (CHUNK + 3, &buffered, "buffered"),
            (CHUNK + 3, &direct, "direct"),
        ] {
            let (all, payload) = body(len, 3);
            let key = Path::from(format!("o/{name}"));
            store.put_opts(&key, payload, create()).await.unwrap();
            let got = direct.get(&key).await.unwrap();
            assert_eq!(got.meta.size, len as u64);
            assert_eq!(got.bytes().await.unwrap().as_ref(), &all[..], "{name}");
        }
    }

    fn walk(dir: &FsPath) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
