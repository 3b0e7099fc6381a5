//! Crash tests: a child process (this test binary re-run as
//! [`crash_child_entry`], selected by `SKIFF_CRASH_CHILD`) appends random
//! sizes across many streams and prints every acknowledged append; it is
//! killed with SIGKILL at a random moment, many times. After each kill the
//! engine is reopened over the same WAL, object store and catalog, and every
//! acknowledged append must be read back exactly once, in order, at its
//! offset, with dense offsets. With the file WAL (through the page cache,
//! and with `wal.direct_io`, where large groups are written `O_DIRECT`
//! between buffered small ones), and with the object WAL.
//!
//! `SKIFF_CRASH_ITERATIONS` sets the number of kills per WAL kind (default 4).

#[allow(dead_code)]
#[path = "crash_support/file_catalog.rs"]
mod file_catalog;
#[allow(dead_code)]
#[path = "crash_support/payload.rs"]
mod payload;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rand::{Rng, SeedableRng};
use skiff_common::StreamId;
use skiff_storage::block_cache::BlockCacheConfig;
use skiff_storage::catalog::{Catalog, CatalogError};
use skiff_storage::config::WalKind;
use skiff_storage::{Storage, StorageConfig};

use file_catalog::FileCatalog;

const STREAMS: u64 = 24;

fn iterations() -> usize {
    std::env::var("SKIFF_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// The WAL a crash loop runs with: the name the child is given.
fn wal_of(name: &str) -> (WalKind, bool) {
    match name {
        "object" => (WalKind::Object, false),
        "file-direct" => (WalKind::File, true),
        _ => (WalKind::File, false),
    }
}

fn config(dir: &Path, name: &str) -> StorageConfig {
    let (kind, direct_io) = wal_of(name);
    let mut c = match kind {
        WalKind::File => StorageConfig::default(),
        WalKind::Object => StorageConfig::object_wal("crash"),
    };
    c.wal.direct_io = direct_io;
    c.data_dir = dir.join("node");
    c.upload.interval = Duration::from_millis(100);
    c.upload.seal_bytes = 256 << 10;
    c.upload.stream_object_bytes = 64 << 10;
    c.upload.retry_backoff = Duration::from_millis(10);
    c.wal.segment_bytes = 4 << 20;
    c.block_cache = BlockCacheConfig::memory_only(8 << 20);
    c
}

/// (records, len) of each acknowledged append by stream and base offset.
type Acked = BTreeMap<u64, BTreeMap<u64, (u64, usize)>>;

/// Run the child until a random moment, SIGKILL it; returns its ACK lines.
fn run_child(dir: &Path, kind: &str, seed: u64, acked: &mut Acked) -> Result<usize> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(&exe)
        .args([
            "--exact",
            "crash_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "SKIFF_CRASH_CHILD",
            format!("{}|{kind}|{seed}", dir.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("spawn {}", exe.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    // Kill it a random while after it is running (the reader keeps draining).
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
    child.kill()?; // SIGKILL
    child.wait()?;
    let lines = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    let mut n = 0;
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        if let ["ACK", s, b, r, l] = f.as_slice() {
            let (Ok(s), Ok(b), Ok(r), Ok(l)) = (s.parse(), b.parse(), r.parse(), l.parse()) else {
                continue; // the line being written at the kill
            };
            let prev = acked.entry(s).or_default().insert(b, (r, l));
            ensure!(
                prev.is_none(),
                "offset {b} of stream {s} acknowledged twice"
            );
            n += 1;
        }
    }
    Ok(n)
}

/// Reopen over the child's files and check every acknowledged append.
async fn verify(dir: &Path, name: &str, acked: &Acked) -> Result<u64> {
    let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
        dir.join("store"),
    )?);
    let catalog = Arc::new(FileCatalog::open(&dir.join("catalog.log")).await?);
    let storage = Storage::open(config(dir, name), store, catalog.clone()).await?;
    let mut total = 0;
    for s in 0..STREAMS {
        let Ok(meta) = catalog.stream(StreamId(s)).await else {
            ensure!(
                !acked.contains_key(&s),
                "stream {s} acknowledged but unknown"
            );
            continue;
        };
        let h = storage.open_stream(StreamId(s), meta.epoch).await?;
        let mut next = 0;
        let mut seen = BTreeMap::new();
        loop {
            let got = h.read(next, 256 << 10).await?;
            let Some(last) = got.last() else { break };
            let last_end = last.end_offset();
            for b in got {
                ensure!(b.base_offset == next, "stream {s}: gap/overlap at {next}");
                if let Err(e) = payload::check(s, b.base_offset, &b.payload) {
                    bail!("stream {s} at {}: {e}", b.base_offset);
                }
                seen.insert(b.base_offset, (u64::from(b.records), b.payload.len()));
                next = b.end_offset();
            }
            ensure!(next == last_end);
        }
        ensure!(
            next == h.end_offset(),
            "stream {s}: read to {next}, end {}",
            h.end_offset()
        );
        for (base, want) in acked.get(&s).into_iter().flatten() {
            match seen.get(base) {
                Some(got) if got == want => {}
                other => bail!(
                    "stream {s}: acknowledged append at {base} {want:?} reads back as {other:?}"
                ),
            }
        }
        total += seen.len() as u64;
    }
    storage.shutdown().await;
    Ok(total)
}

async fn crash_loop(name: &str) -> Result<()> {
    let dir = tempfile::TempDir::new()?;
    let mut acked = Acked::new();
    for i in 0..iterations() {
        let n = run_child(dir.path(), name, 1000 + i as u64, &mut acked)?;
        let total = verify(dir.path(), name, &acked).await?;
        let acks: usize = acked.values().map(BTreeMap::len).sum();
        eprintln!(
            "{name} WAL, kill {i}: {n} new acks, {acks} acked in all, {total} batches stored"
        );
        ensure!(n > 0, "the child acknowledged nothing before the kill");
        ensure!(total as usize >= acks);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_file_wal() -> Result<()> {
    crash_loop("file").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_file_wal_direct_io() -> Result<()> {
    crash_loop("file-direct").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_object_wal() -> Result<()> {
    crash_loop("object").await
}

/// The child: when `SKIFF_CRASH_CHILD=<dir>|<file|object>|<seed>` is set,
/// append random sizes across [`STREAMS`] streams forever, printing
/// `ACK <stream> <base> <records> <len>` for each acknowledged append.
/// Without the variable (a normal test run) it does nothing.
#[test]
fn crash_child_entry() -> Result<()> {
    let Ok(spec) = std::env::var("SKIFF_CRASH_CHILD") else {
        return Ok(());
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [dir, kind, seed] = parts.as_slice() else {
        bail!("bad SKIFF_CRASH_CHILD {spec}");
    };
    let dir = PathBuf::from(dir);
    let name = kind.to_string();
    let seed: u64 = seed.parse()?;
    let streams = STREAMS;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async move {
            std::fs::create_dir_all(dir.join("store"))?;
            let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
                dir.join("store"),
            )?);
            let catalog = Arc::new(FileCatalog::open(&dir.join("catalog.log")).await?);
            let storage =
                Arc::new(Storage::open(config(&dir, &name), store, catalog.clone()).await?);
            let mut handles = Vec::new();
            for s in 0..streams {
                let id = StreamId(s);
                let epoch = match catalog.stream(id).await {
                    Ok(m) => m.epoch,
                    Err(CatalogError::UnknownStream(_)) => catalog.open_stream(id)?,
                    Err(e) => return Err(e.into()),
                };
                handles.push(storage.open_stream(id, epoch).await?);
            }
            println!("READY");
            // A few writers, each pipelining appends over its share of the streams.
            let mut tasks = Vec::new();
            for w in 0..4u64 {
                let mine: Vec<_> = handles
                    .iter()
                    .filter(|h| h.id().0 % 4 == w)
                    .cloned()
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                tasks.push(tokio::spawn(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (w << 32));
                    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
                    let printer = tokio::spawn(async move {
                        while let Some((stream, pending, len)) = rx.recv().await {
                            let pending: skiff_storage::PendingAppend = pending;
                            let r = pending.await.expect("append acknowledged");
                            let mut out = std::io::stdout().lock();
                            writeln!(
                                out,
                                "ACK {stream} {} {} {len}",
                                r.base_offset,
                                r.end_offset - r.base_offset
                            )
                            .and_then(|_| out.flush())
                            .expect("stdout");
                        }
                    });
                    loop {
                        let h = &mine[rng.random_range(0..mine.len())];
                        let len = rng.random_range(payload::HEADER..8192);
                        let records = rng.random_range(1..5u32);
                        let stream = h.id().0;
                        let p = h
                            .append_with(records, |base| payload::make(stream, base, len))
                            .await
                            .expect("append accepted");
                        if tx.send((stream, p, len)).await.is_err() {
                            break;
                        }
                    }
                    drop(tx);
                    let _ = printer.await;
                }));
            }
            for t in tasks {
                t.await?;
            }
            Ok(())
        })
}
