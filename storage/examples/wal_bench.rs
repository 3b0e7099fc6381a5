//! WAL benchmark driver: raw fsync'd sequential bandwidth, then for each
//! stream count the append throughput with fsync for 1 KiB batches and the
//! p50/p99 append latency at half that throughput. Prints the figures
//! recorded in `storage/BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p skiff-storage --example wal_bench -- [DIR] [STREAMS,...] [APPENDS]
//! ```
//! Defaults: DIR = a temp dir under /tmp, STREAMS = 10,1000,10000,
//! APPENDS = 400000 per throughput run.

#[allow(dead_code)]
#[path = "../benches/common/wal_load.rs"]
mod wal_load;

use std::time::Duration;

const BATCH: usize = 1024;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let tmp = tempfile::TempDir::new()?;
    let dir = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let streams: Vec<u64> = args
        .get(2)
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 1000, 10_000]);
    let appends: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(400_000);

    let raw = wal_load::raw_fsync_bandwidth(&dir, 1 << 20, 512 << 20)?;
    let lat4k = wal_load::raw_fsync_latencies(&dir, 4 << 10, 2000)?;
    println!(
        "raw: 1 MiB write+fdatasync {:.0} MB/s; 4 KiB write+fdatasync p50 {:?} p99 {:?}",
        raw / 1e6,
        wal_load::quantile(&lat4k, 0.5),
        wal_load::quantile(&lat4k, 0.99),
    );
    for n in streams {
        let run = tempfile::TempDir::new_in(&dir)?;
        let (storage, handles) = wal_load::engine(run.path(), n).await;
        // Warm up, then measure.
        wal_load::saturate(&handles, 8, 512, BATCH, appends / 10).await;
        let took = wal_load::saturate(&handles, 8, 512, BATCH, appends).await;
        let rate = appends as f64 / took.as_secs_f64();
        let bw = rate * BATCH as f64;
        println!(
            "streams {n:>5}: {rate:>9.0} appends/s, {:>6.0} MB/s payload = {:>4.0}% of raw",
            bw / 1e6,
            100.0 * bw / raw
        );
        let mut rates = vec![rate / 2.0];
        if let Ok(extra) = std::env::var("WAL_BENCH_RATES") {
            rates = extra.split(',').filter_map(|x| x.parse().ok()).collect();
        }
        for r in rates {
            let lat = wal_load::latencies(&handles, r, Duration::from_secs(5), BATCH).await;
            println!(
                "streams {n:>5}: at {:.0} appends/s: p50 {:?}  p99 {:?}  p99.9 {:?}  ({} samples)",
                r,
                wal_load::quantile(&lat, 0.5),
                wal_load::quantile(&lat, 0.99),
                wal_load::quantile(&lat, 0.999),
                lat.len()
            );
        }
        storage.shutdown().await;
    }
    let run = tempfile::TempDir::new_in(&dir)?;
    let rate = wal_load::catchup_read(run.path(), 512 << 20, 16 << 10, 1 << 20).await;
    println!(
        "catch-up read of 512 MiB (16 KiB batches, 1 MiB fetches) from objects: {:.0} MB/s",
        rate / 1e6
    );
    Ok(())
}
