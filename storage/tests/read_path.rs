//! The object read path: block cache tiers and read-ahead.

use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use skiff_common::{ObjectId, StreamId};
use skiff_storage::block_cache::{BlockCache, BlockCacheConfig};
use skiff_storage::catalog::{ObjectKind, ObjectSlice};
use skiff_storage::object::{ObjectBuilder, ObjectReader, put_object};

/// One object with 2,000 batches of stream 1 (about 2 MB), in 16 KiB blocks.
async fn one_object(store: &dyn ObjectStore) -> Result<ObjectSlice> {
    let mut b = ObjectBuilder::new(16 << 10);
    for i in 0..2000u64 {
        let payload = vec![(i % 251) as u8; 1000];
        b.push(StreamId(1), i * 2, 2, &payload)?;
    }
    let (bytes, _) = b.finish();
    let size = bytes.len() as u64;
    put_object(store, ObjectId(1), bytes).await?;
    Ok(ObjectSlice {
        object: ObjectId(1),
        kind: ObjectKind::Stream,
        object_size: size,
        start: 0,
        end: 4000,
    })
}

async fn read_all(reader: &ObjectReader, slice: &ObjectSlice, max: usize) -> Result<Vec<Bytes>> {
    let mut from = 0;
    let mut out = Vec::new();
    while from < slice.end {
        let part = reader.read(slice, StreamId(1), from, max).await?;
        from = part.last().expect("data up to the end").end_offset();
        out.extend(part.into_iter().map(|b| b.payload));
    }
    Ok(out)
}

#[tokio::test]
async fn disk_tier_serves_blocks_evicted_from_memory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let slice = one_object(store.as_ref()).await?;
    let config = BlockCacheConfig {
        memory_bytes: 8 << 20,
        disk_bytes: 16 << 20,
        disk_region_bytes: 1 << 20,
        readahead_bytes: 0,
        ..BlockCacheConfig::default()
    };
    let cache = BlockCache::open(config, dir.path()).await?;
    let reader = ObjectReader::new(store, cache.clone());
    let first = read_all(&reader, &slice, 64 << 10).await?;
    assert_eq!(first.len(), 2000);
    let fetched = cache.counters().fetched_bytes;
    assert!(fetched >= 2_000_000);

    cache.offload_memory().await;
    let second = read_all(&reader, &slice, 64 << 10).await?;
    assert_eq!(first, second);
    let c = cache.counters();
    assert!(c.disk_hits > 0, "{c:?}");
    assert_eq!(
        c.fetched_bytes, fetched,
        "everything came from the disk tier"
    );
    cache.close().await?;
    Ok(())
}

#[tokio::test]
async fn sequential_readers_get_read_ahead() -> Result<()> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let slice = one_object(store.as_ref()).await?;
    let config = BlockCacheConfig {
        readahead_bytes: 256 << 10,
        ..BlockCacheConfig::memory_only(64 << 20)
    };
    let cache = BlockCache::open(config, std::path::Path::new("")).await?;
    let reader = ObjectReader::new(store, cache.clone());
    // Small reads in offset order: the second read on is sequential.
    let mut from = 0;
    while from < slice.end {
        let part = reader.read(&slice, StreamId(1), from, 4000).await?;
        from = part.last().expect("data").end_offset();
        reader.quiesce().await;
    }
    let c = cache.counters();
    assert!(c.readahead_blocks > 0, "{c:?}");
    // Read-ahead fetched blocks before the reader asked: most reads hit.
    assert!(c.memory_hits > c.misses * 4, "{c:?}");
    // Random reads trigger none.
    let cold = BlockCache::in_memory(64 << 20).await?;
    let reader = ObjectReader::new(reader.store().clone(), cold.clone());
    for from in [3000, 10, 2000, 500] {
        reader.read(&slice, StreamId(1), from, 1).await?;
    }
    reader.quiesce().await;
    assert_eq!(cold.counters().readahead_blocks, 0);
    Ok(())
}
