//! [`super::open`]: a partition whose producer state fails to load (an
//! object-store error while replaying) can be opened again once the store
//! recovers, without a restart.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStore;
use skiff_common::StreamId;
use skiff_storage::block_cache::BlockCacheConfig;
use skiff_storage::catalog::InMemoryCatalog;
use skiff_storage::store::{FaultPlan, FaultStore, Op};
use skiff_storage::{Storage, StorageConfig};

fn config(dir: &std::path::Path, node: &str) -> StorageConfig {
    let mut c = StorageConfig::default();
    c.wal.node = node.to_string();
    c.wal.group_commit_max_delay = Duration::from_millis(2);
    c.data_dir = dir.join(node);
    c.upload.interval = Duration::from_millis(20);
    c.upload.retry_backoff = Duration::from_millis(10);
    c.block_cache = BlockCacheConfig::memory_only(1 << 20);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_releases_the_stream() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let faulty = FaultStore::new(Arc::new(object_store::memory::InMemory::new()));
    let faults = faulty.controller();
    let store: Arc<dyn ObjectStore> = Arc::new(faulty);
    let catalog = Arc::new(InMemoryCatalog::new());
    let id = StreamId(7);

    // Some data, committed into objects by a first owner.
    let first = Storage::open(config(dir.path(), "a"), store.clone(), catalog.clone())
        .await
        .expect("storage a");
    let s = first
        .open_stream(id, catalog.open_stream(id))
        .await
        .expect("open");
    s.append(1, Bytes::from_static(b"not a kafka batch"))
        .await
        .expect("append")
        .await
        .expect("durable");
    s.close().await.expect("close");
    first.shutdown().await;

    // A new owner (cold caches) opens it while every GET fails.
    let second = Storage::open(config(dir.path(), "b"), store.clone(), catalog.clone())
        .await
        .expect("storage b");
    let epoch = catalog.open_stream(id);
    faults.set(
        Op::Get,
        FaultPlan {
            fail_next: u32::MAX,
            ..FaultPlan::default()
        },
    );
    let failed = super::open(&second, &store, id, epoch).await;
    assert!(failed.is_err(), "the replay read must fail");
    faults.clear();
    let retried = super::open(&second, &store, id, epoch).await;
    let (stream, _producers) = retried.expect("the retry opens the stream, not 'already open'");
    assert_eq!(stream.end_offset(), 1);
    second.shutdown().await;
}
