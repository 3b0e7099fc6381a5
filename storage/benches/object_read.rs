//! Object encode/decode and catch-up read throughput through the block cache.
//!
//! Run: `cargo bench -p skiff-storage --bench object_read`
//! Results and the machine they came from: storage/BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use object_store::ObjectStore;
use skiff_common::{ObjectId, StreamId};
use skiff_storage::block_cache::{BlockCache, BlockCacheConfig};
use skiff_storage::catalog::{ObjectKind, ObjectSlice};
use skiff_storage::object::{ObjectBuilder, ObjectReader, decode_object, put_object};
use skiff_storage::store::{ObjectStoreConfig, build_store};

/// Object size for the read benchmarks.
const OBJECT_BYTES: usize = 64 << 20;
/// Batch payload size (a typical producer batch).
const BATCH_BYTES: usize = 16 << 10;
/// Block size (the compaction default).
const BLOCK_BYTES: usize = 1 << 20;
/// Bytes per read call (Kafka's default max.partition.fetch.bytes).
const FETCH_BYTES: usize = 1 << 20;

fn build_object(total: usize) -> (Bytes, u64) {
    let mut b = ObjectBuilder::with_capacity(BLOCK_BYTES, total + total / 64);
    let payload: Vec<u8> = (0..BATCH_BYTES).map(|i| (i * 31) as u8).collect();
    let mut offset = 0u64;
    for _ in 0..total / BATCH_BYTES {
        b.push(StreamId(1), offset, 16, &payload)
            .expect("offsets in order");
        offset += 16;
    }
    (b.finish().0, offset)
}

fn encode_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("object_codec");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let total = 32 << 20;
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("encode_32MiB_16KiB_batches", |b| {
        b.iter(|| build_object(total))
    });
    let (bytes, _) = build_object(total);
    g.bench_function("decode_32MiB_16KiB_batches", |b| {
        b.iter(|| decode_object(&bytes).expect("valid object"))
    });
    g.finish();
}

/// Read the whole slice in FETCH_BYTES steps, like a catch-up consumer.
async fn catch_up(reader: &ObjectReader, slice: &ObjectSlice) -> usize {
    let mut from = slice.start;
    let mut bytes = 0;
    while from < slice.end {
        let part = reader
            .read(slice, StreamId(1), from, FETCH_BYTES)
            .await
            .expect("read");
        from = part.last().expect("data up to the end").end_offset();
        bytes += part.iter().map(|b| b.payload.len()).sum::<usize>();
    }
    bytes
}

fn catch_up_reads(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = build_store(&ObjectStoreConfig::default(), dir.path())
        .expect("local fs store")
        .store;
    let (bytes, end) = build_object(OBJECT_BYTES);
    let slice = ObjectSlice {
        object: ObjectId(1),
        kind: ObjectKind::Stream,
        object_size: bytes.len() as u64,
        start: 0,
        end,
    };
    rt.block_on(put_object(store.as_ref(), ObjectId(1), bytes))
        .expect("put");

    let mut g = c.benchmark_group("catch_up_read_local_fs");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(OBJECT_BYTES as u64));

    // Cold: a fresh cache every time; blocks come from the store (the local
    // file system, i.e. the OS page cache here) with read-ahead.
    g.bench_function("cold_64MiB", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = store.clone();
            async move {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let cache = BlockCache::in_memory(256 << 20).await.expect("cache");
                    let reader = ObjectReader::new(store.clone(), cache);
                    let t = Instant::now();
                    catch_up(&reader, &slice).await;
                    spent += t.elapsed();
                    reader.quiesce().await;
                }
                spent
            }
        })
    });

    // Warm memory tier.
    let cache = rt
        .block_on(BlockCache::in_memory(256 << 20))
        .expect("cache");
    let reader = ObjectReader::new(store.clone(), cache);
    rt.block_on(catch_up(&reader, &slice));
    rt.block_on(reader.quiesce());
    g.bench_function("warm_memory_64MiB", |b| {
        b.to_async(&rt).iter(|| catch_up(&reader, &slice))
    });

    // Warm disk tier: every block offloaded from memory to local disk first.
    let cache_dir = tempfile::tempdir().expect("tempdir");
    let config = BlockCacheConfig {
        memory_bytes: 256 << 20,
        disk_bytes: Some(512 << 20),
        disk_region_bytes: 16 << 20,
        ..BlockCacheConfig::default()
    };
    let cache = rt
        .block_on(BlockCache::open(config, cache_dir.path()))
        .expect("cache");
    let reader = ObjectReader::new(store.clone(), cache.clone());
    rt.block_on(catch_up(&reader, &slice));
    g.bench_function("warm_disk_tier_64MiB", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let reader = reader.clone();
            let cache = cache.clone();
            async move {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    reader.quiesce().await;
                    cache.offload_memory().await;
                    let t = Instant::now();
                    catch_up(&reader, &slice).await;
                    spent += t.elapsed();
                }
                spent
            }
        })
    });
    g.finish();
    // fetched_bytes staying near one object's size shows the disk tier,
    // not the store, served the warm-disk runs.
    println!("disk tier cache counters: {:?}", cache.counters());
}

criterion_group!(benches, encode_decode, catch_up_reads);
criterion_main!(benches);
