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
        disk_bytes: Some(16 << 20),
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

mod reads_match_the_model {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any (stream, from, max_bytes) read returns exactly the batches a
        /// simple model says: from the one holding `from`, in order, until
        /// `max_bytes` is reached (at least one), never past the slice.
        #[test]
        fn reads_match_the_model(
            sizes in prop::collection::vec(prop::collection::vec((1u32..5, 1usize..3000), 1..60), 1..4),
            block in 512usize..8192,
            reads in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1usize..20_000), 1..20),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
                let mut b = ObjectBuilder::new(block);
                let mut model = Vec::new();
                for (s, batches) in sizes.iter().enumerate() {
                    let mut next = 100 * s as u64;
                    let mut v = Vec::new();
                    for (records, len) in batches {
                        let payload = vec![s as u8; *len];
                        b.push(StreamId(s as u64), next, *records, &payload).unwrap();
                        v.push((next, *records, *len));
                        next += u64::from(*records);
                    }
                    model.push(v);
                }
                let (bytes, _) = b.finish();
                let size = bytes.len() as u64;
                put_object(store.as_ref(), ObjectId(1), bytes).await.unwrap();
                let reader = ObjectReader::new(store, BlockCache::in_memory(8 << 20).await.unwrap());
                for (si, oi, max) in &reads {
                    let s = si.index(model.len());
                    let batches = &model[s];
                    let start = batches[0].0;
                    let end = batches.last().map(|(o, r, _)| o + u64::from(*r)).unwrap();
                    let from = start + oi.index((end - start) as usize) as u64;
                    let slice = ObjectSlice {
                        object: ObjectId(1),
                        kind: ObjectKind::StreamSet,
                        object_size: size,
                        start,
                        end,
                    };
                    let got = reader.read(&slice, StreamId(s as u64), from, *max).await.unwrap();
                    let first = batches.iter().position(|(o, r, _)| o + u64::from(*r) > from).unwrap();
                    let mut want = Vec::new();
                    let mut total = 0;
                    for &(o, r, len) in &batches[first..] {
                        if !want.is_empty() && total >= *max {
                            break;
                        }
                        total += len;
                        want.push((o, r, len));
                    }
                    let got: Vec<_> = got.iter().map(|b| (b.base_offset, b.records, b.payload.len())).collect();
                    assert_eq!(got, want, "stream {s} from {from} max {max}");
                }
            });
        }
    }
}
