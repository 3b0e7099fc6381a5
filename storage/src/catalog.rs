//! The catalog: what storage needs from the metadata quorum.
//!
//! Storage never talks to Raft directly. The broker plugs the metadata client
//! into this trait; tests use [`InMemoryCatalog`]. The rules every
//! implementation enforces (the conformance tests in `tests/catalog.rs` check
//! them for each implementation):
//!
//! - **Fencing.** A commit carries, for every stream range it adds, the epoch
//!   the writer opened the stream at. If the stream's current epoch is newer,
//!   the whole commit is rejected with [`CatalogError::Fenced`] and nothing of
//!   it is applied.
//! - **Contiguity.** A committed range of a stream starts exactly at the
//!   stream's current committed end offset: ranges never overlap and never
//!   leave gaps. Anything else is [`CatalogError::RangeConflict`].
//! - **Atomicity.** A commit that replaces objects (compaction) adds the new
//!   objects and marks the replaced ones for deletion in one step; readers see
//!   either the old layout or the new one.
//! - **Object ids** are reserved before the object is written and never reused.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;
use skiff_common::{ObjectId, StreamEpoch, StreamId};

/// What the catalog knows of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamMeta {
    pub stream: StreamId,
    /// The current owner epoch.
    pub epoch: StreamEpoch,
    /// First readable offset (moved forward by trims: retention, DeleteRecords).
    pub start_offset: u64,
    /// One past the last committed offset in objects.
    pub end_offset: u64,
}

/// One stream's slice inside an object being committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRange {
    pub stream: StreamId,
    /// The epoch the writer holds the stream at.
    pub epoch: StreamEpoch,
    pub start: u64,
    pub end: u64,
}

/// Whether an object holds many streams (uploader output) or a single one
/// (compaction output for long-lived data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    StreamSet,
    Stream,
}

/// A new object to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewObject {
    pub id: ObjectId,
    pub kind: ObjectKind,
    /// Total object size in bytes.
    pub size: u64,
    pub ranges: Vec<CommitRange>,
}

/// An atomic change to the object layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// Objects to add. For uploader commits, every range extends its stream's
    /// end offset. For compaction commits (`replaces` non-empty), the ranges
    /// re-cover offsets that the replaced objects covered.
    pub objects: Vec<NewObject>,
    /// Objects this commit replaces (compaction). They are marked for deletion.
    pub replaces: Vec<ObjectId>,
}

/// Where a piece of a stream lives: `[start, end)` of `stream` is in `object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectSlice {
    pub object: ObjectId,
    pub kind: ObjectKind,
    pub object_size: u64,
    pub start: u64,
    pub end: u64,
}

/// A committed object as listed for compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub id: ObjectId,
    pub kind: ObjectKind,
    pub size: u64,
    pub committed_at: SystemTime,
    /// `(stream, start, end)` slices the object holds, in stream order.
    pub ranges: Vec<(StreamId, u64, u64)>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("stream {stream} is at epoch {current}, writer holds {held}")]
    Fenced {
        stream: StreamId,
        current: StreamEpoch,
        held: StreamEpoch,
    },
    #[error(
        "stream {stream}: range {start}..{end} does not continue the committed end {end_offset}"
    )]
    RangeConflict {
        stream: StreamId,
        start: u64,
        end: u64,
        end_offset: u64,
    },
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
    #[error("object {0} is unknown or not reserved")]
    UnknownObject(ObjectId),
    #[error("invalid commit: {0}")]
    Invalid(String),
    /// The metadata quorum could not be reached or did not answer in time.
    /// Retriable.
    #[error("metadata unavailable: {0}")]
    Unavailable(String),
}

/// The operations storage needs from metadata.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Reserve `count` fresh object ids (never handed out again).
    async fn reserve_object_ids(&self, count: u32) -> Result<Range<u64>, CatalogError>;

    /// Current state of a stream.
    async fn stream(&self, stream: StreamId) -> Result<StreamMeta, CatalogError>;

    /// Apply an atomic layout change (see [`Commit`]).
    async fn commit(&self, commit: Commit) -> Result<(), CatalogError>;

    /// Committed slices of `stream` covering offsets from `from` onward, in
    /// offset order, at most `limit` of them.
    async fn lookup(
        &self,
        stream: StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ObjectSlice>, CatalogError>;

    /// Move the stream's start offset forward (retention, DeleteRecords).
    /// Objects whose every range lies below the start of its stream become
    /// deletable. Moving it backwards is a no-op.
    async fn trim(
        &self,
        stream: StreamId,
        epoch: StreamEpoch,
        new_start: u64,
    ) -> Result<(), CatalogError>;

    /// All live committed objects (compaction planning).
    async fn list_objects(&self) -> Result<Vec<ObjectInfo>, CatalogError>;

    /// Objects marked for deletion at least `grace` ago: safe to delete from the store.
    async fn deletable_objects(&self, grace: Duration) -> Result<Vec<ObjectId>, CatalogError>;

    /// Forget objects that were deleted from the store.
    async fn forget_objects(&self, ids: Vec<ObjectId>) -> Result<(), CatalogError>;
}

#[derive(Debug, Default)]
struct StreamState {
    epoch: u64,
    start: u64,
    end: u64,
    /// start offset -> (end offset, object)
    slices: BTreeMap<u64, (u64, ObjectId)>,
}

#[derive(Debug)]
struct ObjectState {
    kind: ObjectKind,
    size: u64,
    committed_at: SystemTime,
    ranges: Vec<(StreamId, u64, u64)>,
    deleted_at: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct Inner {
    next_object: u64,
    reserved: std::collections::HashSet<u64>,
    streams: HashMap<StreamId, StreamState>,
    objects: BTreeMap<ObjectId, ObjectState>,
}

/// An in-memory catalog for tests and single-process tools. Streams are
/// created and their epochs bumped with [`InMemoryCatalog::open_stream`], which
/// stands in for the metadata quorum's ownership change.
#[derive(Debug, Default)]
pub struct InMemoryCatalog {
    inner: Mutex<Inner>,
}

impl InMemoryCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Create the stream if needed and bump its epoch, as metadata does when
    /// an owner opens it. Returns the new epoch.
    pub fn open_stream(&self, stream: StreamId) -> StreamEpoch {
        let mut inner = self.inner.lock();
        let s = inner.streams.entry(stream).or_default();
        s.epoch += 1;
        StreamEpoch(s.epoch)
    }

    fn check_commit(inner: &Inner, commit: &Commit) -> Result<(), CatalogError> {
        for id in &commit.replaces {
            match inner.objects.get(id) {
                Some(o) if o.deleted_at.is_none() => {}
                _ => return Err(CatalogError::UnknownObject(*id)),
            }
        }
        // Simulated per-stream end offsets as this commit applies.
        let mut ends: HashMap<StreamId, u64> = HashMap::new();
        for obj in &commit.objects {
            if !inner.reserved.contains(&obj.id.0) {
                return Err(CatalogError::UnknownObject(obj.id));
            }
            for r in &obj.ranges {
                if r.end <= r.start {
                    return Err(CatalogError::Invalid(format!(
                        "empty range {}..{} for stream {}",
                        r.start, r.end, r.stream
                    )));
                }
                let s = inner
                    .streams
                    .get(&r.stream)
                    .ok_or(CatalogError::UnknownStream(r.stream))?;
                if r.epoch.0 != s.epoch {
                    return Err(CatalogError::Fenced {
                        stream: r.stream,
                        current: StreamEpoch(s.epoch),
                        held: r.epoch,
                    });
                }
                if commit.replaces.is_empty() {
                    let end = ends.entry(r.stream).or_insert(s.end);
                    if r.start != *end {
                        return Err(CatalogError::RangeConflict {
                            stream: r.stream,
                            start: r.start,
                            end: r.end,
                            end_offset: *end,
                        });
                    }
                    *end = r.end;
                } else if r.end > s.end {
                    return Err(CatalogError::RangeConflict {
                        stream: r.stream,
                        start: r.start,
                        end: r.end,
                        end_offset: s.end,
                    });
                }
            }
        }
        if !commit.replaces.is_empty() {
            // The new objects must cover exactly what the replaced ones covered
            // (above each stream's start offset, which may have moved).
            let mut old: Vec<(StreamId, u64, u64)> = commit
                .replaces
                .iter()
                .flat_map(|id| inner.objects[id].ranges.iter().copied())
                .collect();
            let mut new: Vec<(StreamId, u64, u64)> = commit
                .objects
                .iter()
                .flat_map(|o| o.ranges.iter().map(|r| (r.stream, r.start, r.end)))
                .collect();
            old.sort();
            new.sort();
            if merge_ranges(old) != merge_ranges(new) {
                return Err(CatalogError::Invalid(
                    "compaction output does not cover exactly the replaced ranges".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Merge adjacent `(stream, start, end)` ranges so two layouts can be compared.
fn merge_ranges(sorted: Vec<(StreamId, u64, u64)>) -> Vec<(StreamId, u64, u64)> {
    let mut out: Vec<(StreamId, u64, u64)> = Vec::with_capacity(sorted.len());
    for (s, a, b) in sorted {
        match out.last_mut() {
            Some(last) if last.0 == s && last.2 == a => last.2 = b,
            _ => out.push((s, a, b)),
        }
    }
    out
}

#[async_trait]
impl Catalog for InMemoryCatalog {
    async fn reserve_object_ids(&self, count: u32) -> Result<Range<u64>, CatalogError> {
        let mut inner = self.inner.lock();
        let start = inner.next_object;
        inner.next_object += u64::from(count);
        for id in start..inner.next_object {
            inner.reserved.insert(id);
        }
        Ok(start..inner.next_object)
    }

    async fn stream(&self, stream: StreamId) -> Result<StreamMeta, CatalogError> {
        let inner = self.inner.lock();
        let s = inner
            .streams
            .get(&stream)
            .ok_or(CatalogError::UnknownStream(stream))?;
        Ok(StreamMeta {
            stream,
            epoch: StreamEpoch(s.epoch),
            start_offset: s.start,
            end_offset: s.end,
        })
    }

    async fn commit(&self, commit: Commit) -> Result<(), CatalogError> {
        let mut inner = self.inner.lock();
        Self::check_commit(&inner, &commit)?;
        let now = SystemTime::now();
        for id in &commit.replaces {
            let ranges = {
                let o = inner.objects.get_mut(id).expect("checked above");
                o.deleted_at = Some(now);
                o.ranges.clone()
            };
            for (stream, start, _) in ranges {
                if let Some(s) = inner.streams.get_mut(&stream)
                    && s.slices.get(&start).map(|(_, o)| o) == Some(id)
                {
                    s.slices.remove(&start);
                }
            }
        }
        for obj in commit.objects {
            inner.reserved.remove(&obj.id.0);
            let ranges: Vec<_> = obj
                .ranges
                .iter()
                .map(|r| (r.stream, r.start, r.end))
                .collect();
            for r in &obj.ranges {
                let s = inner.streams.get_mut(&r.stream).expect("checked above");
                s.slices.insert(r.start, (r.end, obj.id));
                s.end = s.end.max(r.end);
            }
            inner.objects.insert(
                obj.id,
                ObjectState {
                    kind: obj.kind,
                    size: obj.size,
                    committed_at: now,
                    ranges,
                    deleted_at: None,
                },
            );
        }
        Ok(())
    }

    async fn lookup(
        &self,
        stream: StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ObjectSlice>, CatalogError> {
        let inner = self.inner.lock();
        let s = inner
            .streams
            .get(&stream)
            .ok_or(CatalogError::UnknownStream(stream))?;
        let from = from.max(s.start);
        // The slice containing `from` starts at or before it.
        let first = s
            .slices
            .range(..=from)
            .next_back()
            .filter(|(_, (end, _))| *end > from)
            .map(|(start, _)| *start)
            .unwrap_or(from);
        Ok(s.slices
            .range(first..)
            .take(limit)
            .map(|(start, (end, id))| {
                let o = &inner.objects[id];
                ObjectSlice {
                    object: *id,
                    kind: o.kind,
                    object_size: o.size,
                    start: *start,
                    end: *end,
                }
            })
            .collect())
    }

    async fn trim(
        &self,
        stream: StreamId,
        epoch: StreamEpoch,
        new_start: u64,
    ) -> Result<(), CatalogError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let s = inner
            .streams
            .get_mut(&stream)
            .ok_or(CatalogError::UnknownStream(stream))?;
        if s.epoch != epoch.0 {
            return Err(CatalogError::Fenced {
                stream,
                current: StreamEpoch(s.epoch),
                held: epoch,
            });
        }
        if new_start <= s.start {
            return Ok(());
        }
        s.start = new_start;
        let dead: Vec<u64> = s
            .slices
            .range(..new_start)
            .filter(|(_, (end, _))| *end <= new_start)
            .map(|(start, _)| *start)
            .collect();
        let mut touched = Vec::new();
        for start in dead {
            if let Some((_, id)) = s.slices.remove(&start) {
                touched.push(id);
            }
        }
        let now = SystemTime::now();
        for id in touched {
            let streams = &inner.streams;
            if let Some(o) = inner.objects.get_mut(&id) {
                let live = o
                    .ranges
                    .iter()
                    .any(|(st, _, end)| streams.get(st).is_some_and(|s| *end > s.start));
                if !live && o.deleted_at.is_none() {
                    o.deleted_at = Some(now);
                }
            }
        }
        Ok(())
    }

    async fn list_objects(&self) -> Result<Vec<ObjectInfo>, CatalogError> {
        let inner = self.inner.lock();
        Ok(inner
            .objects
            .iter()
            .filter(|(_, o)| o.deleted_at.is_none())
            .map(|(id, o)| ObjectInfo {
                id: *id,
                kind: o.kind,
                size: o.size,
                committed_at: o.committed_at,
                ranges: o.ranges.clone(),
            })
            .collect())
    }

    async fn deletable_objects(&self, grace: Duration) -> Result<Vec<ObjectId>, CatalogError> {
        let inner = self.inner.lock();
        let now = SystemTime::now();
        Ok(inner
            .objects
            .iter()
            .filter(|(_, o)| {
                o.deleted_at
                    .is_some_and(|t| now.duration_since(t).unwrap_or_default() >= grace)
            })
            .map(|(id, _)| *id)
            .collect())
    }

    async fn forget_objects(&self, ids: Vec<ObjectId>) -> Result<(), CatalogError> {
        let mut inner = self.inner.lock();
        for id in ids {
            if inner
                .objects
                .get(&id)
                .is_some_and(|o| o.deleted_at.is_some())
            {
                inner.objects.remove(&id);
            }
        }
        Ok(())
    }
}
