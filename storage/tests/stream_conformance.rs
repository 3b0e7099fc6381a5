//! The stream API conformance suite: every case runs on every object store
//! backend (in-memory, local file system, a real S3 server (moto) on
//! loopback) with both WAL kinds (file, object).
//!
//! Cases: dense offsets and read-back, whole-batch reads from the middle,
//! cold reads from objects after a restart, trim, close and reopen at a new
//! epoch, fencing of the old owner, recovery of un-uploaded WAL data after a
//! crash (including another node recovering an object WAL), wake-ups for
//! long polls, `commit` before durability, and backpressure at the un-uploaded cap.

mod support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use bytes::Bytes;
use object_store::ObjectStore;
use skiff_common::{StreamEpoch, StreamId};
use skiff_storage::batch::StoredBatch;
use skiff_storage::block_cache::BlockCacheConfig;
use skiff_storage::catalog::InMemoryCatalog;
use skiff_storage::config::{StorageConfig, WalKind};
use skiff_storage::error::{AppendError, CloseError, OpenError, ReadError};
use skiff_storage::{Storage, StreamHandle, TryAppendError};
use tempfile::TempDir;

/// One backend + WAL kind; the catalog and store are shared by all cases
/// (object ids come from the catalog, so they never collide).
struct Env {
    store: Arc<dyn ObjectStore>,
    catalog: Arc<InMemoryCatalog>,
    kind: WalKind,
    dirs: TempDir,
    _moto: Option<support::MotoServer>,
}

impl Env {
    fn new(store: Arc<dyn ObjectStore>, kind: WalKind, moto: Option<support::MotoServer>) -> Self {
        Self {
            store,
            catalog: Arc::new(InMemoryCatalog::new()),
            kind,
            dirs: TempDir::new().expect("tempdir"),
            _moto: moto,
        }
    }

    /// A small config for node `node` (its own data dir and object-WAL prefix).
    fn config(&self, node: &str) -> StorageConfig {
        let mut c = match self.kind {
            WalKind::File => StorageConfig::default(),
            WalKind::Object => StorageConfig::object_wal(node),
        };
        c.wal.node = node.to_string();
        c.wal.group_commit_max_delay = Duration::from_millis(2);
        c.data_dir = self.dirs.path().join(node);
        c.upload.interval = Duration::from_millis(50);
        c.upload.seal_bytes = 64 << 10;
        c.upload.stream_object_bytes = 32 << 10;
        c.upload.retry_backoff = Duration::from_millis(10);
        c.wal.max_record_bytes = 256 << 10;
        c.max_unuploaded_bytes = 1 << 20;
        c.log_cache_bytes = 1 << 20;
        c.block_cache = BlockCacheConfig::memory_only(8 << 20);
        c
    }

    async fn storage(&self, node: &str) -> Result<Storage> {
        self.storage_with(self.config(node)).await
    }

    async fn storage_with(&self, cfg: StorageConfig) -> Result<Storage> {
        Ok(Storage::open(cfg, self.store.clone(), self.catalog.clone()).await?)
    }

    /// Create the stream (or bump its epoch) and open it on `storage`.
    async fn open(&self, storage: &Storage, id: u64) -> Result<StreamHandle> {
        let epoch = self.catalog.open_stream(StreamId(id));
        Ok(storage.open_stream(StreamId(id), epoch).await?)
    }
}

fn payload(stream: u64, i: usize) -> Bytes {
    let len = 1 + (i * 131 + stream as usize * 17) % 3000;
    Bytes::from((0..len).map(|j| (j + i) as u8).collect::<Vec<u8>>())
}

/// Append `n` batches (pipelined), return them as stored.
async fn append_n(s: &StreamHandle, n: usize, salt: usize) -> Result<Vec<StoredBatch>> {
    let mut pending = Vec::new();
    let mut expect = Vec::new();
    for i in 0..n {
        let records = 1 + (i % 5) as u32;
        let p = payload(s.id().0, i + salt);
        let mut base = 0;
        pending.push(
            s.append_with(records, |b| {
                base = b;
                p.clone()
            })
            .await?,
        );
        expect.push(StoredBatch {
            base_offset: base,
            records,
            payload: p,
        });
    }
    for (p, e) in pending.into_iter().zip(&expect) {
        let r = p.await?;
        ensure!(r.base_offset == e.base_offset && r.end_offset == e.end_offset());
    }
    Ok(expect)
}

/// Read everything from `from` in chunks of `max_bytes`.
async fn read_all(s: &StreamHandle, from: u64, max_bytes: usize) -> Result<Vec<StoredBatch>> {
    let mut out: Vec<StoredBatch> = Vec::new();
    let mut pos = from;
    loop {
        let got = s.read(pos, max_bytes).await?;
        let Some(last) = got.last() else { break };
        pos = last.end_offset();
        out.extend(got);
    }
    Ok(out)
}

fn check_dense(batches: &[StoredBatch], start: u64) -> Result<()> {
    let mut next = start;
    for b in batches {
        ensure!(
            b.base_offset == next,
            "gap or overlap at {next}: {}",
            b.base_offset
        );
        next = b.end_offset();
    }
    Ok(())
}

async fn append_and_read(env: &Env) -> Result<()> {
    let st = env.storage("append").await?;
    let s = env.open(&st, 1).await?;
    ensure!(s.start_offset() == 0 && s.end_offset() == 0);
    ensure!(
        s.read(0, 1 << 20).await?.is_empty(),
        "empty stream reads nothing"
    );
    let written = append_n(&s, 200, 0).await?;
    check_dense(&written, 0)?;
    ensure!(s.end_offset() == written.last().unwrap().end_offset());
    ensure!(read_all(&s, 0, 10_000).await? == written);
    // A read from the middle of a batch starts with that whole batch.
    let mid = written[50].base_offset + u64::from(written[50].records) - 1;
    let got = s.read(mid, 1).await?;
    ensure!(
        got == written[50..51],
        "one whole batch containing the offset"
    );
    // Out of range.
    let end = s.end_offset();
    ensure!(matches!(
        s.read(end + 1, 100).await,
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    ensure!(matches!(
        s.append(0, Bytes::new()).await,
        Err(AppendError::Empty)
    ));
    // A refused try_append_with assigns nothing and does not commit.
    let mut committed = false;
    let refused = s
        .try_append_with(3, |_| Err::<(Bytes, ()), _>("no"), |()| committed = true)
        .await;
    ensure!(matches!(refused, Err(TryAppendError::Rejected("no"))) && !committed);
    let mut token = None;
    let too_big = s
        .try_append_with(
            1,
            |b| Ok::<_, ()>((Bytes::from(vec![0u8; 1 << 20]), b)),
            |b| token = Some(b),
        )
        .await;
    ensure!(matches!(
        too_big,
        Err(TryAppendError::Append(AppendError::TooLarge { .. }))
    ));
    ensure!(token.is_none(), "commit must not run for a refused append");
    let ok = s
        .try_append_with(
            2,
            |b| Ok::<_, ()>((payload(1, 999), b)),
            |b| token = Some(b),
        )
        .await;
    ensure!(
        ok.is_ok() && token == Some(end),
        "commit gets the token once queued"
    );
    ok.map_err(|e| anyhow::anyhow!("{e}"))?.await?;
    let end = s.end_offset();
    let mut written = written;
    written.push(StoredBatch {
        base_offset: end - 2,
        records: 2,
        payload: payload(1, 999),
    });
    // After upload, reads still see the same (cache or objects).
    st.flush().await;
    ensure!(s.committed_offset() == end);
    ensure!(read_all(&s, 0, 64 << 10).await? == written);
    st.shutdown().await;
    Ok(())
}

/// A few small appends (far below `seal_bytes`) after an idle start are
/// sealed and committed within a few `upload.interval`s, without a flush.
async fn upload_interval_seals_small_appends(env: &Env) -> Result<()> {
    let st = env.storage("interval").await?;
    let s = env.open(&st, 7).await?;
    // Idle first: the sealer has nothing pending and no deadline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    append_n(&s, 3, 0).await?;
    let end = s.end_offset();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.committed_offset() < end {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "small appends not uploaded after 20s (interval {:?}): committed {} of {end}",
            env.config("interval").upload.interval,
            s.committed_offset()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    st.shutdown().await;
    Ok(())
}

async fn cold_reads_after_restart(env: &Env) -> Result<()> {
    let st = env.storage("cold").await?;
    let a = env.open(&st, 10).await?;
    let b = env.open(&st, 11).await?;
    let wa = append_n(&a, 300, 1).await?;
    let wb = append_n(&b, 20, 2).await?;
    st.shutdown().await;
    let st = env.storage("cold").await?;
    // Same epoch: shutdown closed nothing in the catalog.
    let a = st.open_stream(StreamId(10), StreamEpoch(1)).await?;
    ensure!(a.end_offset() == wa.last().unwrap().end_offset());
    ensure!(
        read_all(&a, 0, 5_000).await? == wa,
        "objects give back what was written"
    );
    let b = st.open_stream(StreamId(11), StreamEpoch(1)).await?;
    ensure!(read_all(&b, 0, 1 << 20).await? == wb);
    // Append continues densely after the recovered end.
    let more = append_n(&a, 10, 3).await?;
    check_dense(&more, wa.last().unwrap().end_offset())?;
    st.shutdown().await;
    Ok(())
}

async fn trim(env: &Env) -> Result<()> {
    let st = env.storage("trim").await?;
    let s = env.open(&st, 20).await?;
    let w = append_n(&s, 50, 0).await?;
    let cut = w[10].base_offset;
    ensure!(s.trim(cut).await? == cut);
    ensure!(s.start_offset() == cut);
    ensure!(matches!(
        s.read(cut - 1, 100).await,
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    ensure!(read_all(&s, cut, 1 << 20).await? == w[10..]);
    ensure!(s.trim(1).await? == cut, "trimming backwards is a no-op");
    let end = s.close().await?;
    let s = env.open(&st, 20).await?;
    ensure!(
        s.start_offset() == cut && s.end_offset() == end,
        "trim survives reopen"
    );
    st.shutdown().await;
    Ok(())
}

async fn close_and_reopen_elsewhere(env: &Env) -> Result<()> {
    let a = env.storage("owner-a").await?;
    let b = env.storage("owner-b").await?;
    let s = env.open(&a, 30).await?;
    let w1 = append_n(&s, 40, 0).await?;
    let end = s.close().await?;
    ensure!(end == w1.last().unwrap().end_offset());
    ensure!(matches!(
        s.append(1, Bytes::new()).await,
        Err(AppendError::Closed(_))
    ));
    // The new owner opens at the next epoch from the committed end.
    let s2 = env.open(&b, 30).await?;
    ensure!(s2.epoch() == StreamEpoch(2) && s2.end_offset() == end);
    let w2 = append_n(&s2, 40, 1).await?;
    check_dense(&w2, end)?;
    let all = read_all(&s2, 0, 8_000).await?;
    ensure!(all[..w1.len()] == w1[..] && all[w1.len()..] == w2[..]);
    // Opening at a stale epoch is refused.
    ensure!(matches!(
        a.open_stream(StreamId(30), StreamEpoch(1)).await,
        Err(OpenError::Fenced { .. })
    ));
    ensure!(matches!(
        b.open_stream(StreamId(30), StreamEpoch(2)).await,
        Err(OpenError::AlreadyOpen(_))
    ));
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

async fn old_owner_is_fenced(env: &Env) -> Result<()> {
    let st = env.storage("fenced").await?;
    let s = env.open(&st, 40).await?;
    append_n(&s, 5, 0).await?;
    st.flush().await;
    // Metadata hands the stream to someone else without a close.
    let new = env.catalog.open_stream(StreamId(40));
    let ack = s.append(1, Bytes::from_static(b"late")).await?.await?;
    st.flush().await;
    let err = s.append(1, Bytes::from_static(b"later")).await.unwrap_err();
    ensure!(matches!(err, AppendError::Fenced(_)), "got {err:?}");
    ensure!(matches!(s.close().await, Err(CloseError::Fenced(_))));
    let meta = skiff_storage::catalog::Catalog::stream(env.catalog.as_ref(), StreamId(40)).await?;
    ensure!(
        meta.end_offset == ack.base_offset,
        "the fenced append is not committed"
    );
    // The stream can come back to this node at the new epoch.
    let again = st.open_stream(StreamId(40), new).await?;
    ensure!(again.end_offset() == meta.end_offset);
    st.shutdown().await;
    Ok(())
}

async fn crash_recovery(env: &Env) -> Result<()> {
    let mut cfg = env.config("crash");
    cfg.upload.interval = Duration::from_secs(3600);
    cfg.upload.seal_bytes = 1 << 20;
    let st = env.storage_with(cfg.clone()).await?;
    let s = env.open(&st, 50).await?;
    let t = env.open(&st, 51).await?;
    let ws = append_n(&s, 100, 0).await?;
    let wt = append_n(&t, 3, 0).await?;
    ensure!(s.committed_offset() == 0, "nothing uploaded yet");
    st.abort().await; // a crash: only the WAL has the data
    let st = env.storage_with(cfg.clone()).await?;
    let s = st.open_stream(StreamId(50), StreamEpoch(1)).await?;
    ensure!(
        s.end_offset() == ws.last().unwrap().end_offset(),
        "recovered end"
    );
    ensure!(read_all(&s, 0, 1 << 20).await? == ws);
    let t = st.open_stream(StreamId(51), StreamEpoch(1)).await?;
    ensure!(read_all(&t, 0, 1 << 20).await? == wt);
    // A second restart replays nothing twice.
    st.abort().await;
    let st = env.storage_with(cfg).await?;
    let s = st.open_stream(StreamId(50), StreamEpoch(1)).await?;
    ensure!(read_all(&s, 0, 1 << 20).await? == ws);
    st.shutdown().await;
    Ok(())
}

async fn another_node_recovers_object_wal(env: &Env) -> Result<()> {
    if env.kind != WalKind::Object {
        return Ok(());
    }
    let mut cfg = env.config("dead");
    cfg.upload.interval = Duration::from_secs(3600);
    let dead = env.storage_with(cfg).await?;
    let s = env.open(&dead, 60).await?;
    let w = append_n(&s, 30, 0).await?;
    dead.abort().await;
    let other = env.storage("rescuer").await?;
    other.recover_object_wal_of("dead").await?;
    let s = env.open(&other, 60).await?;
    ensure!(
        read_all(&s, 0, 1 << 20).await? == w,
        "all acked data recovered"
    );
    other.shutdown().await;
    Ok(())
}

async fn wakes_long_polls(env: &Env) -> Result<()> {
    let st = env.storage("poll").await?;
    let s = env.open(&st, 70).await?;
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.wait_for_data(0).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    ensure!(!waiter.is_finished());
    s.append(3, Bytes::from_static(b"abc")).await?.await?;
    ensure!(tokio::time::timeout(Duration::from_secs(10), waiter).await?? == 3);
    st.shutdown().await;
    Ok(())
}

/// What `try_append_with`'s `commit` records (the broker's producer state:
/// ongoing transactions, hence the last stable offset) is in place before
/// the record can be durable: a read_committed fetch woken by the durable
/// offset must find it. Here `commit` lingers; the record must not become
/// durable meanwhile (it did when `commit` ran after the WAL hand-off).
async fn commit_precedes_durability(env: &Env) -> Result<()> {
    let st = env.storage("commit").await?;
    let s = env.open(&st, 90).await?;
    s.append(1, payload(90, 0)).await?.await?;
    let mut durable_in_commit = None;
    let pending = s
        .try_append_with(
            1,
            |b| Ok::<_, ()>((payload(90, 1), b)),
            |b| {
                // Plenty for a 2 ms group commit to finish on another worker.
                std::thread::sleep(Duration::from_millis(300));
                durable_in_commit = Some(s.end_offset() > b);
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    pending.await?;
    ensure!(
        durable_in_commit == Some(false),
        "the record was durable before commit had run"
    );
    ensure!(s.end_offset() == 2);
    st.shutdown().await;
    Ok(())
}

async fn backpressure_caps_unuploaded_bytes(env: &Env) -> Result<()> {
    let mut cfg = env.config("bp");
    cfg.max_unuploaded_bytes = 256 << 10;
    cfg.log_cache_bytes = 256 << 10;
    cfg.upload.seal_bytes = 64 << 10;
    cfg.upload.max_in_flight = 1;
    let st = env.storage_with(cfg).await?;
    let s = env.open(&st, 80).await?;
    let mut pending = Vec::new();
    let mut peak = 0;
    for i in 0..1000 {
        pending.push(s.append(1, payload(80, i)).await?);
        peak = peak.max(st.unuploaded_bytes());
        ensure!(st.log_cache_bytes() <= 256 << 10, "log cache over cap");
    }
    for p in pending {
        p.await?;
    }
    ensure!(peak <= 256 << 10, "un-uploaded bytes {peak} over cap");
    let total: usize = (0..1000).map(|i| payload(80, i).len()).sum();
    ensure!(total > 3 * (256 << 10), "the test wrote well past the cap");
    st.shutdown().await;
    Ok(())
}

async fn suite(env: Env) -> Result<()> {
    append_and_read(&env).await?;
    upload_interval_seals_small_appends(&env).await?;
    cold_reads_after_restart(&env).await?;
    trim(&env).await?;
    close_and_reopen_elsewhere(&env).await?;
    old_owner_is_fenced(&env).await?;
    crash_recovery(&env).await?;
    another_node_recovers_object_wal(&env).await?;
    wakes_long_polls(&env).await?;
    commit_precedes_durability(&env).await?;
    backpressure_caps_unuploaded_bytes(&env).await?;
    Ok(())
}

fn memory() -> Arc<dyn ObjectStore> {
    Arc::new(object_store::memory::InMemory::new())
}

fn local(dir: &TempDir) -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local store"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_file_wal() -> Result<()> {
    suite(Env::new(memory(), WalKind::File, None)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_object_wal() -> Result<()> {
    suite(Env::new(memory(), WalKind::Object, None)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fs_file_wal() -> Result<()> {
    let dir = TempDir::new()?;
    suite(Env::new(local(&dir), WalKind::File, None)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fs_object_wal() -> Result<()> {
    let dir = TempDir::new()?;
    suite(Env::new(local(&dir), WalKind::Object, None)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_file_wal() -> Result<()> {
    let Some(moto) = support::start_moto().await else {
        return Ok(());
    };
    suite(Env::new(moto.store.clone(), WalKind::File, Some(moto))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_object_wal() -> Result<()> {
    let Some(moto) = support::start_moto().await else {
        return Ok(());
    };
    suite(Env::new(moto.store.clone(), WalKind::Object, Some(moto))).await
}
