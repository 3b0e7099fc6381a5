//! Objects written, read, compacted and collected on every backend: the
//! in-memory store, the local file system and a real S3-compatible server
//! (moto) on loopback.

mod support;

use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use skiff_common::{ObjectId, StreamId};
use skiff_storage::batch::StoredBatch;
use skiff_storage::block_cache::BlockCache;
use skiff_storage::catalog::{ObjectKind, ObjectSlice};
use skiff_storage::object::{
    ObjectBuilder, ObjectReader, ReadError, object_key, put_object, stream_ranges,
};
use skiff_storage::store::{ObjectStoreConfig, build_store};

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

#[tokio::test]
async fn memory_objects_round_trip() -> Result<()> {
    let built = build_store(&ObjectStoreConfig::memory(), std::path::Path::new("/"))?;
    objects_round_trip(built.store).await
}

#[tokio::test]
async fn local_fs_objects_round_trip() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let built = build_store(&ObjectStoreConfig::default(), dir.path())?;
    objects_round_trip(built.store).await
}

#[tokio::test]
async fn s3_objects_round_trip() -> Result<()> {
    let Some(moto) = support::start_moto().await else {
        return Ok(());
    };
    objects_round_trip(moto.store.clone()).await
}
