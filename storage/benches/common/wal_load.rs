//! Load generation shared by `benches/wal.rs` (criterion) and the
//! `wal_bench` example (the driver that prints the BENCHMARKS.md figures).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use skiff_common::StreamId;
use skiff_storage::block_cache::BlockCacheConfig;
use skiff_storage::catalog::InMemoryCatalog;
use skiff_storage::{PendingAppend, Storage, StorageConfig, StreamHandle};

/// Sequential 1 MiB writes, each followed by `fdatasync`, for `total` bytes
/// in a fresh file under `dir`. Returns bytes per second.
pub(crate) fn raw_fsync_bandwidth(dir: &Path, chunk: usize, total: usize) -> std::io::Result<f64> {
    let path = dir.join("raw-fsync.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let buf = vec![0x5au8; chunk];
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        f.write_all(&buf)?;
        f.sync_data()?;
        done += chunk;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(done as f64 / secs)
}

/// Latency of `n` sequential `len`-byte writes each followed by `fdatasync`
/// (the floor under any durable append). Returns sorted latencies.
pub(crate) fn raw_fsync_latencies(
    dir: &Path,
    len: usize,
    n: usize,
) -> std::io::Result<Vec<Duration>> {
    let path = dir.join("raw-fsync-lat.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let buf = vec![0x5au8; len];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        out.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    out.sort();
    Ok(out)
}

/// An engine with the file WAL under `dir`, uploading to an in-memory store.
pub(crate) async fn engine(dir: &Path, streams: u64) -> (Storage, Vec<StreamHandle>) {
    let mut cfg = StorageConfig {
        data_dir: dir.to_path_buf(),
        ..StorageConfig::default()
    };
    cfg.block_cache = BlockCacheConfig::memory_only(16 << 20);
    cfg.max_unuploaded_bytes = 512 << 20;
    cfg.log_cache_bytes = 512 << 20;
    let catalog = Arc::new(InMemoryCatalog::new());
    let store = Arc::new(object_store::memory::InMemory::new());
    let storage = Storage::open(cfg, store, catalog.clone())
        .await
        .expect("engine opens");
    let mut handles = Vec::new();
    for s in 0..streams {
        let epoch = catalog.open_stream(StreamId(s));
        handles.push(
            storage
                .open_stream(StreamId(s), epoch)
                .await
                .expect("stream opens"),
        );
    }
    (storage, handles)
}

/// Closed loop: `writers` tasks, each with up to `window` appends in flight,
/// append `batch`-byte batches round-robin over their share of the streams
/// until `count` appends are acknowledged. Returns the elapsed time.
pub(crate) async fn saturate(
    handles: &[StreamHandle],
    writers: usize,
    window: usize,
    batch: usize,
    count: usize,
) -> Duration {
    let payload = Bytes::from(vec![0x42u8; batch]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mine: Vec<StreamHandle> = handles
            .iter()
            .skip(w % handles.len())
            .step_by(writers.min(handles.len()))
            .cloned()
            .collect();
        let n = count / writers;
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut inflight = FuturesOrdered::new();
            for i in 0..n {
                let h = &mine[i % mine.len()];
                inflight.push_back(h.append(1, payload.clone()).await.expect("append"));
                if inflight.len() >= window {
                    inflight.next().await.expect("one").expect("durable");
                }
            }
            while let Some(r) = inflight.next().await {
                r.expect("durable");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    start.elapsed()
}

/// Open loop at `rate` appends/s for `duration`: each append's latency from
/// the call to its durable acknowledgement. Returns sorted latencies.
pub(crate) async fn latencies(
    handles: &[StreamHandle],
    rate: f64,
    duration: Duration,
    batch: usize,
) -> Vec<Duration> {
    let payload = Bytes::from(vec![0x42u8; batch]);
    // Appends become durable in submission order (one WAL queue), so one
    // collector awaiting them in order sees each as soon as it completes.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, PendingAppend)>();
    let collector = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some((t0, pending)) = rx.recv().await {
            pending.await.expect("durable");
            out.push(t0.elapsed());
        }
        out
    });
    // Ticks of 1 ms; each tick issues the appends due by then.
    let start = Instant::now();
    let mut issued = 0u64;
    let mut i = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while start.elapsed() < duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while issued < due {
            let h = &handles[i % handles.len()];
            i += 1;
            issued += 1;
            let t0 = Instant::now();
            let pending = h.append(1, payload.clone()).await.expect("append");
            let _ = tx.send((t0, pending));
        }
    }
    drop(tx);
    let mut out = collector.await.expect("collector");
    out.sort();
    out
}

/// The `p`-quantile (0..=1) of sorted values.
pub(crate) fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Catch-up read: append `total` bytes of `batch`-byte batches to one
/// stream, restart the engine (log cache empty), then read the stream from
/// offset 0 to the end sequentially, `fetch` bytes per read, through the
/// object reader and block cache. Returns bytes per second of the reads.
pub(crate) async fn catchup_read(dir: &Path, total: usize, batch: usize, fetch: usize) -> f64 {
    let catalog = Arc::new(InMemoryCatalog::new());
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let cfg = || {
        let mut c = StorageConfig {
            data_dir: dir.to_path_buf(),
            ..StorageConfig::default()
        };
        c.block_cache = BlockCacheConfig::memory_only(256 << 20);
        c
    };
    let storage = Storage::open(cfg(), store.clone(), catalog.clone())
        .await
        .expect("engine opens");
    let epoch = catalog.open_stream(StreamId(0));
    let h = storage.open_stream(StreamId(0), epoch).await.expect("open");
    let payload = Bytes::from(vec![7u8; batch]);
    let mut inflight = FuturesOrdered::new();
    for _ in 0..total / batch {
        inflight.push_back(h.append(1, payload.clone()).await.expect("append"));
        if inflight.len() >= 256 {
            inflight.next().await.expect("one").expect("durable");
        }
    }
    while let Some(r) = inflight.next().await {
        r.expect("durable");
    }
    storage.shutdown().await;
    let storage = Storage::open(cfg(), store, catalog).await.expect("reopen");
    let h = storage.open_stream(StreamId(0), epoch).await.expect("open");
    let end = h.end_offset();
    let start = Instant::now();
    let (mut pos, mut bytes) = (0, 0usize);
    while pos < end {
        let got = h.read(pos, fetch).await.expect("read");
        for b in &got {
            bytes += b.payload.len();
        }
        pos = got.last().expect("data below the end").end_offset();
    }
    let rate = bytes as f64 / start.elapsed().as_secs_f64();
    storage.shutdown().await;
    rate
}
