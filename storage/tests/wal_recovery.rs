//! File WAL recovery on damaged segments: a torn tail is truncated and
//! everything before it recovered; a corrupt record before the tail stops
//! start-up with an error naming the file and byte position.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use bytes::Bytes;
use skiff_common::{StreamEpoch, StreamId};
use skiff_storage::block_cache::BlockCacheConfig;
use skiff_storage::catalog::InMemoryCatalog;
use skiff_storage::error::OpenError;
use skiff_storage::wal::WalError;
use skiff_storage::{Storage, StorageConfig};
use tempfile::TempDir;

fn config(dir: &Path) -> StorageConfig {
    let mut c = StorageConfig {
        data_dir: dir.to_path_buf(),
        ..StorageConfig::default()
    };
    c.upload.interval = Duration::from_secs(3600); // keep everything in the WAL
    c.block_cache = BlockCacheConfig::memory_only(4 << 20);
    c
}

/// Append 10 one-record batches of 100 bytes each in separate group commits,
/// then crash. Returns the WAL segment holding them.
async fn write_and_crash(
    dir: &Path,
    store: Arc<dyn object_store::ObjectStore>,
    catalog: Arc<InMemoryCatalog>,
) -> Result<PathBuf> {
    let st = Storage::open(config(dir), store, catalog.clone()).await?;
    let epoch = catalog.open_stream(StreamId(1));
    let s = st.open_stream(StreamId(1), epoch).await?;
    for i in 0..10u8 {
        s.append(1, Bytes::from(vec![i; 100])).await?.await?;
    }
    st.abort().await;
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    segs.sort();
    ensure!(segs.len() == 1, "one segment: {segs:?}");
    Ok(segs.remove(0))
}

/// A node that wrote 10 records and crashed, with its WAL segment.
struct Crashed {
    dir: TempDir,
    store: Arc<dyn object_store::ObjectStore>,
    catalog: Arc<InMemoryCatalog>,
    seg: PathBuf,
}

async fn crash() -> Result<Crashed> {
    let dir = TempDir::new()?;
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let catalog = Arc::new(InMemoryCatalog::new());
    let seg = write_and_crash(dir.path(), store.clone(), catalog.clone()).await?;
    Ok(Crashed {
        dir,
        store,
        catalog,
        seg,
    })
}

/// Set the length of a file (cut a torn write, or grow it with zeros).
fn set_len(path: &Path, len: u64) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(len)?;
    Ok(())
}

const FRAME: u64 = 12 + 32 + 100;

#[tokio::test]
async fn torn_tail_is_truncated() -> Result<()> {
    let Crashed {
        dir,
        store,
        catalog,
        seg,
    } = crash().await?;
    ensure!(std::fs::metadata(&seg)?.len() == 10 * FRAME);
    // The last record is half written (a crash during its write).
    set_len(&seg, 9 * FRAME + 50)?;
    let st = Storage::open(config(dir.path()), store, catalog).await?;
    let s = st.open_stream(StreamId(1), StreamEpoch(1)).await?;
    ensure!(s.end_offset() == 9, "nine whole records survive");
    let got = s.read(0, 1 << 20).await?;
    ensure!(got.len() == 9);
    for (i, b) in got.iter().enumerate() {
        ensure!(b.base_offset == i as u64 && b.payload == vec![i as u8; 100]);
    }
    // New appends continue densely.
    let r = s.append(1, Bytes::from_static(b"x")).await?.await?;
    ensure!(r.base_offset == 9);
    st.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn garbage_after_tail_is_truncated() -> Result<()> {
    let Crashed {
        dir,
        store,
        catalog,
        seg,
    } = crash().await?;
    // A write whose data never reached the disk: the size grew, zeros remain.
    set_len(&seg, 10 * FRAME + 4096)?;
    let st = Storage::open(config(dir.path()), store, catalog).await?;
    let s = st.open_stream(StreamId(1), StreamEpoch(1)).await?;
    ensure!(s.end_offset() == 10);
    st.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn corrupt_record_before_tail_stops_startup() -> Result<()> {
    let Crashed {
        dir,
        store,
        catalog,
        seg,
    } = crash().await?;
    let mut bytes = std::fs::read(&seg)?;
    let at = (3 * FRAME + 60) as usize; // inside the 4th record's payload
    bytes[at] ^= 0xff;
    std::fs::write(&seg, &bytes)?;
    let err = Storage::open(config(dir.path()), store, catalog.clone())
        .await
        .expect_err("start-up must stop");
    match &err {
        OpenError::Wal(WalError::Corrupt { file, position, .. }) => {
            ensure!(file.ends_with(&*seg.file_name().unwrap().to_string_lossy()));
            ensure!(*position == 3 * FRAME, "position {position}");
        }
        other => anyhow::bail!("expected a corrupt-record error, got {other}"),
    }
    ensure!(err.to_string().contains(&format!("at byte {}", 3 * FRAME)));
    // Nothing was committed and the file is untouched.
    let meta = skiff_storage::catalog::Catalog::stream(catalog.as_ref(), StreamId(1)).await?;
    ensure!(meta.end_offset == 0);
    ensure!(std::fs::read(&seg)? == bytes);
    Ok(())
}
