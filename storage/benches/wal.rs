//! Criterion benchmarks of the file WAL through the stream API: append
//! throughput with fsync for 1 KiB batches over 10, 1,000 and 10,000
//! streams, and the raw fsync'd sequential write bandwidth of the same disk
//! for comparison. Latency percentiles at half load come from the driver,
//! `cargo run --release -p skiff-storage --example wal_bench` (see
//! `storage/BENCHMARKS.md`).
//!
//! `cargo bench -p skiff-storage --bench wal` (set `SKIFF_BENCH_DIR` to
//! measure another disk; default: a temp dir).

#[allow(dead_code)]
#[path = "common/wal_load.rs"]
mod wal_load;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 1024;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("SKIFF_BENCH_DIR") {
        Some(d) => tempfile::TempDir::new_in(d).expect("bench dir"),
        None => tempfile::TempDir::new().expect("temp dir"),
    }
}

fn raw(c: &mut Criterion) {
    let dir = bench_dir();
    let mut g = c.benchmark_group("raw_fsync");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("write_1MiB_fdatasync", |b| {
        b.iter_custom(|iters| {
            let total = (iters as usize).max(1) << 20;
            let t = Instant::now();
            wal_load::raw_fsync_bandwidth(dir.path(), 1 << 20, total).expect("raw write");
            t.elapsed()
        })
    });
    g.finish();
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("wal_append_1KiB");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(BATCH as u64));
    for streams in [10u64, 1000, 10_000] {
        let dir = bench_dir();
        let (storage, handles) = rt.block_on(wal_load::engine(dir.path(), streams));
        g.bench_function(format!("{streams}_streams"), |b| {
            b.iter_custom(|iters| {
                let n = (iters as usize).max(8);
                rt.block_on(wal_load::saturate(&handles, 8, 512, BATCH, n))
            })
        });
        rt.block_on(storage.shutdown());
    }
    g.finish();
}

criterion_group!(benches, raw, append);
criterion_main!(benches);
