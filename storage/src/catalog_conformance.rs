//! Conformance suite for [`Catalog`] implementations.
//!
//! Every implementation (the in-memory one here, the Raft-backed adapter in
//! the broker) runs [`run_all`], so the rules documented on the trait hold the
//! same way everywhere. Enabled by the `testing` feature (and in this crate's
//! own tests).
//!
//! An implementation provides a [`CatalogHarness`]: the catalog plus a way to
//! do what metadata does outside the trait, opening a stream at a new epoch.

use std::time::Duration;

use skiff_common::{ObjectId, StreamEpoch, StreamId};

use crate::catalog::{Catalog, CatalogError, CommitRange, NewObject, ObjectKind};

/// What the suite needs besides the trait.
#[async_trait::async_trait]
pub trait CatalogHarness: Send + Sync {
    fn catalog(&self) -> &dyn Catalog;
    /// Create a new, empty stream (metadata allocates stream ids).
    async fn new_stream(&self) -> StreamId;
    /// Bump the stream's epoch, as an ownership change does.
    async fn open_stream(&self, stream: StreamId) -> StreamEpoch;
}

/// Run every check, each on streams of its own.
pub async fn run_all(h: &dyn CatalogHarness) {
    reserve_is_unique(h).await;
    commit_lookup_and_contiguity(h, h.new_stream().await).await;
    fencing_rejects_whole_commit(h, h.new_stream().await, h.new_stream().await).await;
    compaction_replaces_atomically(h, h.new_stream().await).await;
    trim_and_gc(h, h.new_stream().await).await;
}

fn range(stream: StreamId, epoch: StreamEpoch, start: u64, end: u64) -> CommitRange {
    CommitRange {
        stream,
        epoch,
        start,
        end,
    }
}

async fn new_object(h: &dyn CatalogHarness, ranges: Vec<CommitRange>) -> NewObject {
    let ids = h.catalog().reserve_object_ids(1).await.expect("reserve");
    NewObject {
        id: ObjectId(ids.start),
        kind: ObjectKind::StreamSet,
        size: 100,
        ranges,
    }
}

async fn commit(h: &dyn CatalogHarness, objects: Vec<NewObject>) -> Result<(), CatalogError> {
    h.catalog()
        .commit(crate::catalog::Commit {
            objects,
            replaces: vec![],
        })
        .await
}

async fn reserve_is_unique(h: &dyn CatalogHarness) {
    let a = h.catalog().reserve_object_ids(10).await.expect("reserve");
    let b = h.catalog().reserve_object_ids(5).await.expect("reserve");
    assert_eq!(a.end - a.start, 10);
    assert_eq!(b.end - b.start, 5);
    assert!(a.end <= b.start || b.end <= a.start, "{a:?} overlaps {b:?}");
}

async fn commit_lookup_and_contiguity(h: &dyn CatalogHarness, s: StreamId) {
    let e = h.open_stream(s).await;
    let o1 = new_object(h, vec![range(s, e, 0, 10)]).await;
    let o2 = new_object(h, vec![range(s, e, 10, 25)]).await;
    let (id1, id2) = (o1.id, o2.id);
    commit(h, vec![o1]).await.expect("first commit");
    commit(h, vec![o2]).await.expect("contiguous commit");
    let meta = h.catalog().stream(s).await.expect("stream");
    assert_eq!((meta.start_offset, meta.end_offset, meta.epoch), (0, 25, e));

    // gap and overlap are both rejected
    let gap = new_object(h, vec![range(s, e, 26, 30)]).await;
    assert!(matches!(
        commit(h, vec![gap]).await,
        Err(CatalogError::RangeConflict { .. })
    ));
    let overlap = new_object(h, vec![range(s, e, 20, 30)]).await;
    assert!(matches!(
        commit(h, vec![overlap]).await,
        Err(CatalogError::RangeConflict { .. })
    ));
    // an unreserved object id is rejected
    let bogus = NewObject {
        id: ObjectId(u64::MAX - 1),
        kind: ObjectKind::StreamSet,
        size: 1,
        ranges: vec![range(s, e, 25, 26)],
    };
    assert!(commit(h, vec![bogus]).await.is_err());

    let slices = h.catalog().lookup(s, 0, 10).await.expect("lookup");
    assert_eq!(
        slices
            .iter()
            .map(|x| (x.object, x.start, x.end))
            .collect::<Vec<_>>(),
        vec![(id1, 0, 10), (id2, 10, 25)]
    );
    // lookup from the middle of a slice starts with that slice
    let slices = h.catalog().lookup(s, 12, 10).await.expect("lookup");
    assert_eq!(slices[0].object, id2);
    assert_eq!(h.catalog().lookup(s, 25, 10).await.expect("lookup"), vec![]);
    assert!(matches!(
        h.catalog().lookup(StreamId(u64::MAX), 0, 1).await,
        Err(CatalogError::UnknownStream(_))
    ));
}

async fn fencing_rejects_whole_commit(h: &dyn CatalogHarness, a: StreamId, b: StreamId) {
    let ea = h.open_stream(a).await;
    let eb_old = h.open_stream(b).await;
    let eb_new = h.open_stream(b).await;
    assert!(eb_new > eb_old, "epochs only grow");
    // one object with a fresh range of `a` and a stale range of `b`
    let obj = new_object(h, vec![range(a, ea, 0, 5), range(b, eb_old, 0, 5)]).await;
    assert!(matches!(
        commit(h, vec![obj]).await,
        Err(CatalogError::Fenced { .. })
    ));
    // nothing of it applied
    assert_eq!(h.catalog().stream(a).await.expect("a").end_offset, 0);
    assert_eq!(h.catalog().stream(b).await.expect("b").end_offset, 0);
    // stale trim is fenced too
    assert!(matches!(
        h.catalog().trim(b, eb_old, 1).await,
        Err(CatalogError::Fenced { .. })
    ));
}

async fn compaction_replaces_atomically(h: &dyn CatalogHarness, s: StreamId) {
    let e = h.open_stream(s).await;
    let o1 = new_object(h, vec![range(s, e, 0, 10)]).await;
    let o2 = new_object(h, vec![range(s, e, 10, 20)]).await;
    let old = vec![o1.id, o2.id];
    commit(h, vec![o1, o2]).await.expect("commit");

    // a merge that does not cover exactly the replaced ranges is invalid
    let short = new_object(h, vec![range(s, e, 0, 15)]).await;
    let res = h
        .catalog()
        .commit(crate::catalog::Commit {
            objects: vec![short],
            replaces: old.clone(),
        })
        .await;
    assert!(res.is_err(), "partial cover accepted: {res:?}");

    let mut merged = new_object(h, vec![range(s, e, 0, 20)]).await;
    merged.kind = ObjectKind::Stream;
    let merged_id = merged.id;
    h.catalog()
        .commit(crate::catalog::Commit {
            objects: vec![merged],
            replaces: old.clone(),
        })
        .await
        .expect("compaction commit");
    let slices = h.catalog().lookup(s, 0, 10).await.expect("lookup");
    assert_eq!(
        slices
            .iter()
            .map(|x| (x.object, x.start, x.end))
            .collect::<Vec<_>>(),
        vec![(merged_id, 0, 20)]
    );
    let live: Vec<ObjectId> = h
        .catalog()
        .list_objects()
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert!(live.contains(&merged_id));
    assert!(!live.iter().any(|id| old.contains(id)));
    let deletable = h
        .catalog()
        .deletable_objects(Duration::ZERO)
        .await
        .expect("deletable");
    for id in &old {
        assert!(deletable.contains(id), "{id} not deletable");
    }
    let later = h
        .catalog()
        .deletable_objects(Duration::from_secs(3600))
        .await
        .expect("deletable");
    assert!(!later.iter().any(|id| old.contains(id)), "grace ignored");
    h.catalog()
        .forget_objects(old.clone())
        .await
        .expect("forget");
    let deletable = h
        .catalog()
        .deletable_objects(Duration::ZERO)
        .await
        .expect("deletable");
    assert!(!deletable.iter().any(|id| old.contains(id)));
}

async fn trim_and_gc(h: &dyn CatalogHarness, s: StreamId) {
    let e = h.open_stream(s).await;
    let o1 = new_object(h, vec![range(s, e, 0, 10)]).await;
    let o2 = new_object(h, vec![range(s, e, 10, 20)]).await;
    let (id1, id2) = (o1.id, o2.id);
    commit(h, vec![o1, o2]).await.expect("commit");
    h.catalog().trim(s, e, 12).await.expect("trim");
    h.catalog()
        .trim(s, e, 5)
        .await
        .expect("trim backwards is a no-op");
    let meta = h.catalog().stream(s).await.expect("stream");
    assert_eq!((meta.start_offset, meta.end_offset), (12, 20));
    let slices = h.catalog().lookup(s, 0, 10).await.expect("lookup");
    assert_eq!(
        slices.iter().map(|x| x.object).collect::<Vec<_>>(),
        vec![id2]
    );
    let deletable = h
        .catalog()
        .deletable_objects(Duration::ZERO)
        .await
        .expect("deletable");
    assert!(deletable.contains(&id1));
    assert!(!deletable.contains(&id2));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::InMemoryCatalog;

    struct Mem(InMemoryCatalog, std::sync::atomic::AtomicU64);

    #[async_trait::async_trait]
    impl CatalogHarness for Mem {
        fn catalog(&self) -> &dyn Catalog {
            &self.0
        }
        async fn new_stream(&self) -> StreamId {
            let id = StreamId(self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            self.0.open_stream(id);
            id
        }
        async fn open_stream(&self, stream: StreamId) -> StreamEpoch {
            self.0.open_stream(stream)
        }
    }

    #[tokio::test]
    async fn in_memory_catalog_conforms() {
        run_all(&Mem(InMemoryCatalog::new(), 1.into())).await;
    }
}
