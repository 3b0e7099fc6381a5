//! The engine over a fault-injecting store: failed, lost-answer and slow
//! PUTs are retried (nothing acknowledged is lost or duplicated, before or
//! after a crash), failed GETs surface as retriable read errors, and a slow
//! store slows appends down instead of growing memory.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use bytes::Bytes;
use object_store::ObjectStore;
use skiff_common::{StreamEpoch, StreamId};
use skiff_storage::block_cache::BlockCacheConfig;
use skiff_storage::catalog::{Catalog, InMemoryCatalog};
use skiff_storage::config::WalKind;
use skiff_storage::error::ReadError;
use skiff_storage::store::{FaultController, FaultPlan, FaultStore, Op};
use skiff_storage::{Storage, StorageConfig, StreamHandle};
use tempfile::TempDir;

struct Env {
    store: Arc<dyn ObjectStore>,
    faults: FaultController,
    catalog: Arc<InMemoryCatalog>,
    dir: TempDir,
}

impl Env {
    fn new() -> Self {
        let fs = FaultStore::new(Arc::new(object_store::memory::InMemory::new()));
        Self {
            faults: fs.controller(),
            store: Arc::new(fs),
            catalog: Arc::new(InMemoryCatalog::new()),
            dir: TempDir::new().expect("tempdir"),
        }
    }

    fn config(&self, kind: WalKind) -> StorageConfig {
        let mut c = match kind {
            WalKind::File => StorageConfig::default(),
            WalKind::Object => StorageConfig::object_wal("f"),
        };
        c.data_dir = self.dir.path().to_path_buf();
        c.wal.group_commit_max_delay = Duration::from_millis(1);
        c.upload.interval = Duration::from_millis(20);
        c.upload.seal_bytes = 16 << 10;
        c.upload.retry_backoff = Duration::from_millis(1);
        c.max_unuploaded_bytes = 256 << 10;
        c.log_cache_bytes = 256 << 10;
        c.wal.max_record_bytes = 64 << 10;
        c.block_cache = BlockCacheConfig::memory_only(4 << 20);
        c
    }

    async fn storage(&self, kind: WalKind) -> Result<Storage> {
        Ok(Storage::open(self.config(kind), self.store.clone(), self.catalog.clone()).await?)
    }
}

fn payload(i: usize) -> Bytes {
    Bytes::from(vec![(i % 251) as u8; 100 + (i * 37) % 2000])
}

async fn append(s: &StreamHandle, n: usize) -> Result<()> {
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(s.append(1, payload(i)).await?);
    }
    for (i, p) in pending.into_iter().enumerate() {
        ensure!(p.await?.base_offset == i as u64);
    }
    Ok(())
}

/// Every offset `0..n` exactly once with its payload.
async fn check(s: &StreamHandle, n: usize) -> Result<()> {
    let mut next = 0u64;
    loop {
        let got = loop {
            match s.read(next, 32 << 10).await {
                Ok(g) => break g,
                Err(e) if e.is_retriable() => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let Some(last) = got.last() else { break };
        let last_end = last.end_offset();
        for b in &got {
            ensure!(b.base_offset == next, "dense at {next}");
            ensure!(b.payload == payload(next as usize), "payload at {next}");
            next += 1;
        }
        ensure!(next == last_end);
    }
    ensure!(next == n as u64, "read {next} of {n}");
    Ok(())
}

async fn put_faults_lose_nothing(kind: WalKind) -> Result<()> {
    let env = Env::new();
    let st = env.storage(kind).await?;
    let epoch = env.catalog.open_stream(StreamId(1));
    let s = st.open_stream(StreamId(1), epoch).await?;
    env.faults.set(
        Op::Put,
        FaultPlan {
            fail_next: 3,
            error_rate: 0.3,
            lost_response_rate: 0.2,
            jitter: Duration::from_millis(3),
            ..FaultPlan::default()
        },
    );
    append(&s, 300).await?;
    st.flush().await;
    ensure!(s.committed_offset() == 300);
    let (_, injected) = env.faults.counts();
    ensure!(injected >= 3, "faults were injected ({injected})");
    check(&s, 300).await?;
    // Crash while PUTs keep failing; recovery still sees each append once.
    append_more_then_crash(&st, &s).await?;
    env.faults.clear();
    let st = env.storage(kind).await?;
    let s = st.open_stream(StreamId(1), StreamEpoch(1)).await?;
    check(&s, 400).await?;
    let meta = env.catalog.stream(StreamId(1)).await?;
    ensure!(meta.end_offset == 400);
    st.shutdown().await;
    Ok(())
}

async fn append_more_then_crash(st: &Storage, s: &StreamHandle) -> Result<()> {
    let mut pending = Vec::new();
    for i in 300..400 {
        pending.push(s.append(1, payload(i)).await?);
    }
    for p in pending {
        p.await?;
    }
    st.abort().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_puts_file_wal() -> Result<()> {
    put_faults_lose_nothing(WalKind::File).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_puts_object_wal() -> Result<()> {
    put_faults_lose_nothing(WalKind::Object).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_gets_are_retriable() -> Result<()> {
    let env = Env::new();
    let st = env.storage(WalKind::File).await?;
    let epoch = env.catalog.open_stream(StreamId(2));
    let s = st.open_stream(StreamId(2), epoch).await?;
    append(&s, 50).await?;
    st.shutdown().await;
    // A fresh engine has nothing cached: reads go to the store.
    let st = env.storage(WalKind::File).await?;
    let s = st.open_stream(StreamId(2), StreamEpoch(1)).await?;
    env.faults.set(
        Op::Get,
        FaultPlan {
            error_rate: 1.0,
            ..FaultPlan::default()
        },
    );
    let err = s.read(0, 1 << 20).await.expect_err("GETs fail");
    ensure!(
        matches!(err, ReadError::Object { .. }) && err.is_retriable(),
        "{err}"
    );
    env.faults.clear();
    check(&s, 50).await?;
    st.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_puts_apply_backpressure() -> Result<()> {
    let env = Env::new();
    let st = env.storage(WalKind::File).await?;
    let epoch = env.catalog.open_stream(StreamId(3));
    let s = st.open_stream(StreamId(3), epoch).await?;
    env.faults.set(
        Op::Put,
        FaultPlan {
            latency: Duration::from_millis(30),
            ..FaultPlan::default()
        },
    );
    let mut pending = Vec::new();
    let mut peak = 0;
    for i in 0..600 {
        pending.push(s.append(1, payload(i)).await?);
        peak = peak.max(st.unuploaded_bytes());
    }
    for p in pending {
        p.await?;
    }
    let written: usize = (0..600).map(|i| payload(i).len()).sum();
    ensure!(written > 2 * (256 << 10));
    ensure!(peak <= 256 << 10, "un-uploaded peak {peak} over the cap");
    check(&s, 600).await?;
    st.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_wal_never_acks_what_the_store_did_not_take() -> Result<()> {
    let env = Env::new();
    let st = env.storage(WalKind::Object).await?;
    let epoch = env.catalog.open_stream(StreamId(4));
    let s = st.open_stream(StreamId(4), epoch).await?;
    append(&s, 5).await?;
    // The store stops answering PUTs: the append must not be acknowledged.
    env.faults.set(
        Op::Put,
        FaultPlan {
            black_hole: true,
            ..FaultPlan::default()
        },
    );
    let mut pending = s.append(1, payload(5)).await?;
    ensure!(
        tokio::time::timeout(Duration::from_millis(300), &mut pending)
            .await
            .is_err(),
        "acknowledged without a successful PUT"
    );
    // Shutting down gives up on it after a grace period: an error, not an ack.
    st.abort().await;
    ensure!(pending.await.is_err());
    env.faults.clear();
    let st = env.storage(WalKind::Object).await?;
    let s = st.open_stream(StreamId(4), StreamEpoch(1)).await?;
    check(&s, 5).await?;
    st.shutdown().await;
    Ok(())
}

/// A catalog whose commits fail as unavailable while `failing` is set
/// (a metadata quorum without a leader).
struct FlakyCatalog {
    inner: InMemoryCatalog,
    failing: std::sync::atomic::AtomicBool,
    refused: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl Catalog for FlakyCatalog {
    async fn reserve_object_ids(
        &self,
        count: u32,
    ) -> Result<std::ops::Range<u64>, skiff_storage::catalog::CatalogError> {
        self.inner.reserve_object_ids(count).await
    }
    async fn stream(
        &self,
        s: StreamId,
    ) -> Result<skiff_storage::catalog::StreamMeta, skiff_storage::catalog::CatalogError> {
        self.inner.stream(s).await
    }
    async fn commit(
        &self,
        c: skiff_storage::catalog::Commit,
    ) -> Result<(), skiff_storage::catalog::CatalogError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(skiff_storage::catalog::CatalogError::Unavailable(
                "no leader".into(),
            ));
        }
        self.inner.commit(c).await
    }
    async fn lookup(
        &self,
        s: StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<skiff_storage::catalog::ObjectSlice>, skiff_storage::catalog::CatalogError>
    {
        self.inner.lookup(s, from, limit).await
    }
    async fn trim(
        &self,
        s: StreamId,
        e: StreamEpoch,
        n: u64,
    ) -> Result<(), skiff_storage::catalog::CatalogError> {
        self.inner.trim(s, e, n).await
    }
    async fn list_objects(
        &self,
    ) -> Result<Vec<skiff_storage::catalog::ObjectInfo>, skiff_storage::catalog::CatalogError> {
        self.inner.list_objects().await
    }
    async fn deletable_objects(
        &self,
        grace: Duration,
    ) -> Result<Vec<skiff_common::ObjectId>, skiff_storage::catalog::CatalogError> {
        self.inner.deletable_objects(grace).await
    }
    async fn forget_objects(
        &self,
        ids: Vec<skiff_common::ObjectId>,
    ) -> Result<(), skiff_storage::catalog::CatalogError> {
        self.inner.forget_objects(ids).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_catalog_delays_commits_and_loses_nothing() -> Result<()> {
    let env = Env::new();
    let catalog = Arc::new(FlakyCatalog {
        inner: InMemoryCatalog::new(),
        failing: true.into(),
        refused: 0.into(),
    });
    let st = Storage::open(
        env.config(WalKind::File),
        env.store.clone(),
        catalog.clone(),
    )
    .await?;
    let epoch = catalog.inner.open_stream(StreamId(5));
    let s = st.open_stream(StreamId(5), epoch).await?;
    append(&s, 200).await?;
    // Appends are acknowledged from the WAL; nothing can be committed yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    ensure!(catalog.refused.load(std::sync::atomic::Ordering::SeqCst) > 0);
    ensure!(s.committed_offset() == 0);
    check(&s, 200).await?; // served from the log cache
    catalog
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    st.flush().await;
    ensure!(s.committed_offset() == 200);
    ensure!(catalog.stream(StreamId(5)).await?.end_offset == 200);
    st.shutdown().await;
    Ok(())
}
