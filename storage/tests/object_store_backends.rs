//! Objects written, read, compacted and collected on every backend: the
//! in-memory store, the local file system and a real S3-compatible server
//! (moto) on loopback.

mod support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use skiff_common::{ObjectId, StreamEpoch, StreamId};
use skiff_storage::batch::StoredBatch;
use skiff_storage::block_cache::BlockCache;
use skiff_storage::catalog::{
    Catalog, CatalogError, Commit, CommitRange, InMemoryCatalog, NewObject, ObjectInfo, ObjectKind,
    ObjectSlice, StreamMeta,
};
use skiff_storage::compaction::{CompactionConfig, Compactor};
use skiff_storage::object::{
    ObjectBuilder, ObjectReader, ReadError, object_key, put_object, stream_ranges,
};
use skiff_storage::store::{
    BuiltStore, FaultPlan, ObjectStoreConfig, Op, RetryPolicy, build_store,
};

/// `n` batches of `stream` from offset `from`, of varied sizes and record counts.
fn make_batches(stream: u64, from: u64, n: usize) -> Vec<StoredBatch> {
    let mut out = Vec::with_capacity(n);
    let mut next = from;
    for i in 0..n {
        let records = 1 + (i % 7) as u32;
        let len = 10 + (i * 37 + stream as usize * 11) % 900;
        let payload: Vec<u8> = (0..len).map(|j| (j as u64 ^ stream ^ next) as u8).collect();
        out.push(StoredBatch {
            base_offset: next,
            records,
            payload: Bytes::from(payload),
        });
        next += u64::from(records);
    }
    out
}

/// Run each scenario (an async fn taking the store) on the in-memory store,
/// the local file system and moto S3, as `<scenario>::{memory,local_fs,s3}`.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;

            #[tokio::test]
            async fn memory() -> Result<()> {
                let built = build_store(&ObjectStoreConfig::memory(), std::path::Path::new("/"))?;
                super::$scenario(built.store).await
            }

            #[tokio::test]
            async fn local_fs() -> Result<()> {
                let dir = tempfile::tempdir()?;
                let built = build_store(&ObjectStoreConfig::default(), dir.path())?;
                super::$scenario(built.store).await
            }

            #[tokio::test]
            async fn s3() -> Result<()> {
                let Some(moto) = support::start_moto().await else {
                    return Ok(());
                };
                super::$scenario(moto.store.clone()).await
            }
        }
    )*};
}

on_every_backend!(objects_round_trip, compaction_and_gc);

/// Write one object holding `streams` streams of `batches` batches, read it
/// back through the reader in pieces, check corruption and absence.
async fn objects_round_trip(store: Arc<dyn ObjectStore>) -> Result<()> {
    let cache = BlockCache::in_memory(16 << 20).await?;
    let reader = ObjectReader::new(store.clone(), cache.clone());
    let mut b = ObjectBuilder::new(4096);
    let mut expect: Vec<Vec<StoredBatch>> = Vec::new();
    for s in 0..5u64 {
        let batches = make_batches(s, 0, 200);
        for x in &batches {
            b.push(StreamId(s), x.base_offset, x.records, &x.payload)?;
        }
        expect.push(batches);
    }
    let (bytes, index) = b.finish();
    let size = bytes.len() as u64;
    put_object(store.as_ref(), ObjectId(1), bytes.clone()).await?;
    // Re-putting (a retry) is fine; a different object under the id is not.
    put_object(store.as_ref(), ObjectId(1), bytes.clone()).await?;
    assert!(
        put_object(store.as_ref(), ObjectId(1), Bytes::from_static(b"x"))
            .await
            .is_err()
    );

    for (s, (stream, start, end)) in stream_ranges(&index).into_iter().enumerate() {
        let slice = ObjectSlice {
            object: ObjectId(1),
            kind: ObjectKind::StreamSet,
            object_size: size,
            start,
            end,
        };
        // Read the whole stream in pieces of ~3 KiB, from a mid-batch offset.
        let mut got = Vec::new();
        let mut from = start;
        loop {
            let part = reader.read(&slice, stream, from, 3000).await?;
            let Some(last) = part.last() else { break };
            from = last.end_offset();
            got.extend(part);
        }
        assert_eq!(got, expect[s], "stream {s}");
        let mid = expect[s][10].base_offset + 1;
        let part = reader.read(&slice, stream, mid, 1).await?;
        assert_eq!(
            part,
            vec![expect[s][10].clone()],
            "a read returns the batch holding `from`"
        );
    }
    let c = cache.counters();
    assert!(c.misses > 0 && c.memory_hits > 0, "{c:?}");

    // A block flipped on the store is reported as corrupt (with a cold cache).
    let mut bad = bytes.to_vec();
    bad[100] ^= 0xff;
    put_object(store.as_ref(), ObjectId(2), Bytes::from(bad)).await?;
    let cold = ObjectReader::new(store.clone(), BlockCache::in_memory(16 << 20).await?);
    let slice = ObjectSlice {
        object: ObjectId(2),
        kind: ObjectKind::StreamSet,
        object_size: size,
        start: 0,
        end: 200,
    };
    let err = cold
        .read(&slice, StreamId(0), 0, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, ReadError::Corrupt { .. }), "{err}");
    assert!(!err.is_retriable());

    // A missing object is NotFound, not retriable.
    let slice = ObjectSlice {
        object: ObjectId(3),
        ..slice
    };
    let err = cold
        .read(&slice, StreamId(0), 0, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, ReadError::NotFound { .. }), "{err}");

    // Objects live under their spread keys.
    let got = store.get(&object_key(ObjectId(1))).await?.bytes().await?;
    assert_eq!(got, bytes);
    store
        .put(&object_key(ObjectId(9)), PutPayload::from_static(b"z"))
        .await?;
    Ok(())
}

/// Upload-style objects: `rounds` stream-set objects, each with data of
/// streams 0..4 (stream 0 has 4x the data). Returns what each stream holds.
async fn upload_rounds(
    catalog: &InMemoryCatalog,
    store: &dyn ObjectStore,
    rounds: usize,
) -> Result<Vec<Vec<StoredBatch>>> {
    let epochs: Vec<StreamEpoch> = (0..4).map(|s| catalog.open_stream(StreamId(s))).collect();
    let mut expect: Vec<Vec<StoredBatch>> = vec![Vec::new(); 4];
    for _ in 0..rounds {
        let mut b = ObjectBuilder::new(4096);
        for s in 0..4u64 {
            let from = expect[s as usize].last().map_or(0, StoredBatch::end_offset);
            let n = if s == 0 { 80 } else { 20 };
            for x in make_batches(s, from, n) {
                b.push(StreamId(s), x.base_offset, x.records, &x.payload)?;
                expect[s as usize].push(x);
            }
        }
        let (bytes, index) = b.finish();
        let id = ObjectId(catalog.reserve_object_ids(1).await?.start);
        let size = bytes.len() as u64;
        put_object(store, id, bytes).await?;
        let ranges = stream_ranges(&index)
            .into_iter()
            .map(|(stream, start, end)| CommitRange {
                stream,
                epoch: epochs[stream.0 as usize],
                start,
                end,
            })
            .collect();
        catalog
            .commit(Commit {
                objects: vec![NewObject {
                    id,
                    kind: ObjectKind::StreamSet,
                    size,
                    ranges,
                }],
                replaces: vec![],
            })
            .await?;
    }
    Ok(expect)
}

/// Everything of `stream` from `from`, following the catalog's slices.
async fn read_stream(
    catalog: &InMemoryCatalog,
    reader: &ObjectReader,
    stream: StreamId,
    mut from: u64,
) -> Result<Vec<StoredBatch>> {
    let mut out = Vec::new();
    loop {
        let slices = catalog.lookup(stream, from, 16).await?;
        if slices.is_empty() {
            return Ok(out);
        }
        for slice in slices {
            while from < slice.end {
                let part = reader.read(&slice, stream, from, 64 << 10).await?;
                let last = part.last().expect("a slice has data up to its end");
                from = last.end_offset();
                out.extend(part);
            }
        }
    }
}

async fn count_objects(store: &dyn ObjectStore) -> Result<usize> {
    let prefix = object_store::path::Path::from(skiff_storage::object::OBJECTS_PREFIX);
    Ok(store
        .list(Some(&prefix))
        .try_collect::<Vec<_>>()
        .await?
        .len())
}

async fn check_all_streams(
    catalog: &InMemoryCatalog,
    reader: &ObjectReader,
    expect: &[Vec<StoredBatch>],
) -> Result<()> {
    for (s, want) in expect.iter().enumerate() {
        let start = catalog.stream(StreamId(s as u64)).await?.start_offset;
        let got = read_stream(catalog, reader, StreamId(s as u64), start).await?;
        let want: Vec<_> = want
            .iter()
            .filter(|b| b.end_offset() > start)
            .cloned()
            .collect();
        assert_eq!(got, want, "stream {s}");
    }
    Ok(())
}

fn upload_like_object() -> Bytes {
    let mut b = ObjectBuilder::new(4096);
    b.push(StreamId(77), 0, 1, b"never committed")
        .expect("one batch");
    b.finish().0
}

fn compaction_config() -> CompactionConfig {
    CompactionConfig {
        small_object_bytes: 1 << 20,
        split_after: Duration::from_secs(3600),
        stream_object_min_bytes: 100 << 10,
        max_input_bytes: 64 << 20,
        block_bytes: 4096,
        gc_grace: Duration::ZERO,
        ..CompactionConfig::default()
    }
}

/// Merge, split, GC and trim on one backend; data reads back unchanged
/// after every step.
async fn compaction_and_gc(store: Arc<dyn ObjectStore>) -> Result<()> {
    let catalog = Arc::new(InMemoryCatalog::new());
    let expect = upload_rounds(&catalog, store.as_ref(), 6).await?;
    let reader = ObjectReader::new(store.clone(), BlockCache::in_memory(16 << 20).await?);
    check_all_streams(&catalog, &reader, &expect).await?;

    // Merge: 6 small stream-set objects -> stream 0 in its own stream object
    // (it has > 100 KiB), the rest in one stream-set object.
    let c = Compactor::new(catalog.clone(), store.clone(), compaction_config());
    let r = c.compact_once().await?;
    assert_eq!(
        (r.compactions, r.objects_in, r.objects_out),
        (1, 6, 2),
        "{r:?}"
    );
    let mut kinds: Vec<_> = catalog
        .list_objects()
        .await?
        .iter()
        .map(|o| o.kind)
        .collect();
    kinds.sort_by_key(|k| *k == ObjectKind::StreamSet);
    assert_eq!(kinds, vec![ObjectKind::Stream, ObjectKind::StreamSet]);
    // Old readers' slices still work until GC: then the inputs are gone.
    check_all_streams(&catalog, &reader, &expect).await?;
    assert_eq!(count_objects(store.as_ref()).await?, 8);
    assert_eq!(c.collect_garbage().await?, 6);
    assert_eq!(count_objects(store.as_ref()).await?, 2);
    assert!(catalog.deletable_objects(Duration::ZERO).await?.is_empty());
    let cold = ObjectReader::new(store.clone(), BlockCache::in_memory(16 << 20).await?);
    check_all_streams(&catalog, &cold, &expect).await?;

    // Split: once old, the stream-set object becomes per-stream objects.
    let split = Compactor::new(
        catalog.clone(),
        store.clone(),
        CompactionConfig {
            split_after: Duration::ZERO,
            ..compaction_config()
        },
    );
    let r = split.compact_once().await?;
    assert_eq!(
        (r.compactions, r.objects_in, r.objects_out),
        (1, 1, 3),
        "{r:?}"
    );
    assert!(
        catalog
            .list_objects()
            .await?
            .iter()
            .all(|o| o.kind == ObjectKind::Stream && o.ranges.len() == 1)
    );
    assert_eq!(split.collect_garbage().await?, 1);
    check_all_streams(&catalog, &cold, &expect).await?;
    // Nothing left to do: compaction reaches a fixed point.
    assert_eq!(split.compact_once().await?.compactions, 0);

    // Trimming a stream past its object makes the object garbage.
    let s1 = catalog.stream(StreamId(1)).await?;
    catalog.trim(StreamId(1), s1.epoch, s1.end_offset).await?;
    assert_eq!(split.collect_garbage().await?, 1);
    assert_eq!(count_objects(store.as_ref()).await?, 3);
    check_all_streams(&catalog, &cold, &expect).await?;

    // With a grace period nothing is deleted early.
    let s2 = catalog.stream(StreamId(2)).await?;
    catalog.trim(StreamId(2), s2.epoch, s2.end_offset).await?;
    let patient = Compactor::new(
        catalog.clone(),
        store.clone(),
        CompactionConfig {
            gc_grace: Duration::from_secs(3600),
            ..compaction_config()
        },
    );
    assert_eq!(patient.collect_garbage().await?, 0);
    assert_eq!(count_objects(store.as_ref()).await?, 3);

    // Orphans: an object PUT but never committed goes once old enough;
    // committed and marked objects stay.
    let orphan = ObjectId(catalog.reserve_object_ids(1).await?.start);
    put_object(store.as_ref(), orphan, upload_like_object()).await?;
    assert_eq!(patient.sweep_orphans().await?, 0, "too young");
    let eager = Compactor::new(
        catalog.clone(),
        store.clone(),
        CompactionConfig {
            orphan_grace: Duration::ZERO,
            gc_grace: Duration::from_secs(3600),
            ..compaction_config()
        },
    );
    assert_eq!(eager.sweep_orphans().await?, 1);
    assert_eq!(count_objects(store.as_ref()).await?, 3);
    assert!(matches!(
        store.head(&object_key(orphan)).await,
        Err(object_store::Error::NotFound { .. })
    ));
    check_all_streams(&catalog, &cold, &expect).await?;
    Ok(())
}

/// A catalog where a new owner opens stream 3 just before each compaction
/// commit: the race fencing exists for.
struct RacingCatalog(Arc<InMemoryCatalog>);

#[async_trait::async_trait]
impl Catalog for RacingCatalog {
    async fn reserve_object_ids(&self, n: u32) -> Result<std::ops::Range<u64>, CatalogError> {
        self.0.reserve_object_ids(n).await
    }
    async fn stream(&self, s: StreamId) -> Result<StreamMeta, CatalogError> {
        self.0.stream(s).await
    }
    async fn commit(&self, commit: Commit) -> Result<(), CatalogError> {
        self.0.open_stream(StreamId(3));
        self.0.commit(commit).await
    }
    async fn lookup(
        &self,
        s: StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ObjectSlice>, CatalogError> {
        self.0.lookup(s, from, limit).await
    }
    async fn trim(&self, s: StreamId, e: StreamEpoch, to: u64) -> Result<(), CatalogError> {
        self.0.trim(s, e, to).await
    }
    async fn list_objects(&self) -> Result<Vec<ObjectInfo>, CatalogError> {
        self.0.list_objects().await
    }
    async fn deletable_objects(&self, grace: Duration) -> Result<Vec<ObjectId>, CatalogError> {
        self.0.deletable_objects(grace).await
    }
    async fn forget_objects(&self, ids: Vec<ObjectId>) -> Result<(), CatalogError> {
        self.0.forget_objects(ids).await
    }
}

#[tokio::test]
async fn fenced_compaction_commits_nothing_and_cleans_up() -> Result<()> {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let catalog = Arc::new(InMemoryCatalog::new());
    let expect = upload_rounds(&catalog, store.as_ref(), 3).await?;
    let before = catalog.list_objects().await?;
    let racing = Arc::new(RacingCatalog(catalog.clone()));
    let c = Compactor::new(racing, store.clone(), compaction_config());
    let r = c.compact_once().await?;
    assert_eq!((r.compactions, r.rejected), (0, 1), "{r:?}");
    assert_eq!(catalog.list_objects().await?, before, "layout unchanged");
    assert_eq!(
        count_objects(store.as_ref()).await?,
        3,
        "outputs were deleted"
    );
    let reader = ObjectReader::new(store.clone(), BlockCache::in_memory(16 << 20).await?);
    check_all_streams(&catalog, &reader, &expect).await?;
    Ok(())
}

#[tokio::test]
async fn background_task_compacts_collects_and_stops() -> Result<()> {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let catalog = Arc::new(InMemoryCatalog::new());
    let expect = upload_rounds(&catalog, store.as_ref(), 4).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = CompactionConfig {
        interval: Duration::from_millis(10),
        ..compaction_config()
    };
    let task = Compactor::new(catalog.clone(), store.clone(), config).spawn(shutdown.clone());
    // 4 inputs -> 2 outputs, and the inputs deleted by GC.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count_objects(store.as_ref()).await? != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "background compaction never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await?;
    let reader = ObjectReader::new(store.clone(), BlockCache::in_memory(16 << 20).await?);
    check_all_streams(&catalog, &reader, &expect).await?;
    Ok(())
}

/// Failed and slow GET/PUT under compaction and reads: retried, or
/// surfaced as retriable errors; nothing committed is lost.
async fn faults_are_retried_or_retriable(built: BuiltStore) -> Result<()> {
    let store = built.store;
    let faults = built.faults.expect("fault injection on");
    let catalog = Arc::new(InMemoryCatalog::new());
    let expect = upload_rounds(&catalog, store.as_ref(), 4).await?;
    // Every other GET and PUT fails once, and all are slow: compaction retries through.
    let flaky = FaultPlan {
        error_rate: 0.3,
        latency: Duration::from_millis(2),
        ..FaultPlan::default()
    };
    faults.set(Op::Get, flaky.clone());
    faults.set(Op::Put, flaky);
    let c = Compactor::new(catalog.clone(), store.clone(), compaction_config());
    let r = c.compact_once().await?;
    assert_eq!(r.compactions, 1, "{r:?}");
    let reader = ObjectReader::new(store.clone(), BlockCache::in_memory(16 << 20).await?);
    check_all_streams(&catalog, &reader, &expect).await?;
    assert!(faults.counts().1 > 0, "faults were injected");

    // A store that keeps failing: reads surface a retriable error.
    faults.set(
        Op::Get,
        FaultPlan {
            error_rate: 1.0,
            ..FaultPlan::default()
        },
    );
    let cold = ObjectReader::new(store.clone(), BlockCache::in_memory(16 << 20).await?);
    let slice = catalog.lookup(StreamId(0), 0, 1).await?[0];
    let err = cold
        .read(&slice, StreamId(0), 0, 1 << 20)
        .await
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    // And a failing compaction leaves the layout as it was.
    let split = Compactor::new(
        catalog.clone(),
        store.clone(),
        CompactionConfig {
            split_after: Duration::ZERO,
            ..compaction_config()
        },
    );
    let before = catalog.list_objects().await?;
    assert!(split.compact_once().await.is_err());
    assert_eq!(catalog.list_objects().await?, before);
    faults.clear();
    check_all_streams(&catalog, &cold, &expect).await?;
    Ok(())
}

fn fault_config(mut c: ObjectStoreConfig) -> ObjectStoreConfig {
    c.fault_injection = true;
    // Enough retries that a request failing every one of them at a 30%
    // error rate (0.3^31) never happens: with 8, about one run in a few
    // thousand drew nine failures in a row for one GET and failed.
    c.retry = RetryPolicy {
        max_retries: 30,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        max_elapsed: Duration::from_secs(20),
        attempt_timeout: Duration::from_secs(5),
    };
    c
}

#[tokio::test]
async fn memory_faults_are_retried_or_retriable() -> Result<()> {
    let built = build_store(
        &fault_config(ObjectStoreConfig::memory()),
        std::path::Path::new("/"),
    )?;
    faults_are_retried_or_retriable(built).await
}

#[tokio::test]
async fn s3_faults_are_retried_or_retriable() -> Result<()> {
    let Some(moto) = support::start_moto().await else {
        return Ok(());
    };
    let built = moto.build(|c| *c = fault_config(c.clone()));
    faults_are_retried_or_retriable(built).await
}
