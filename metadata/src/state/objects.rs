//! The stream -> object index: commits with fencing and contiguity, atomic
//! compaction replacement, trims, and the read queries storage's `Catalog`
//! needs. The rules are exactly those of `storage::catalog` (see its docs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skiff_common::{ObjectId, StreamEpoch, StreamId};

use super::{ClusterState, ObjectState};
use crate::command::{CommandError, ObjectCommit, ObjectKind, limits};

/// What the index knows of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub stream: StreamId,
    pub epoch: StreamEpoch,
    pub start_offset: u64,
    pub end_offset: u64,
}

/// `[start, end)` of a stream is in `object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSlice {
    pub object: ObjectId,
    pub kind: ObjectKind,
    pub object_size: u64,
    pub start: u64,
    pub end: u64,
}

/// A live committed object, for compaction planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub id: ObjectId,
    pub kind: ObjectKind,
    pub size: u64,
    pub committed_at_ms: u64,
    pub ranges: Vec<(StreamId, u64, u64)>,
}

impl ClusterState {
    /// Validate an object commit against the current state without changing it.
    pub(super) fn check_commit(&self, commit: &ObjectCommit) -> Result<(), CommandError> {
        let items = commit.replaces.len()
            + commit
                .objects
                .iter()
                .map(|o| 1 + o.ranges.len())
                .sum::<usize>();
        if commit.objects.is_empty() || items > limits::MAX_COMMIT_ITEMS {
            return Err(CommandError::Invalid(format!(
                "a commit needs 1..={} objects and ranges, got {} objects ({items} items)",
                limits::MAX_COMMIT_ITEMS,
                commit.objects.len()
            )));
        }
        for (i, id) in commit.replaces.iter().enumerate() {
            match self.objects.get(id) {
                Some(o) if o.deleted_at_ms.is_none() => {}
                _ => return Err(CommandError::UnknownObject(*id)),
            }
            if commit.replaces[..i].contains(id) {
                return Err(CommandError::Invalid(format!("object {id} replaced twice")));
            }
        }
        let mut ends: BTreeMap<StreamId, u64> = BTreeMap::new();
        for (i, obj) in commit.objects.iter().enumerate() {
            if !self.reserved.contains(obj.id.0) {
                return Err(CommandError::UnknownObject(obj.id));
            }
            if commit.objects[..i].iter().any(|o| o.id == obj.id) {
                return Err(CommandError::Invalid(format!(
                    "object {} committed twice",
                    obj.id
                )));
            }
            if obj.ranges.is_empty() {
                return Err(CommandError::Invalid(format!(
                    "object {} has no ranges",
                    obj.id
                )));
            }
            for r in &obj.ranges {
                if r.end <= r.start {
                    return Err(CommandError::Invalid(format!(
                        "empty range {}..{} for stream {}",
                        r.start, r.end, r.stream
                    )));
                }
                let s = self
                    .streams
                    .get(&r.stream)
                    .ok_or(CommandError::UnknownStream(r.stream))?;
                if r.epoch.0 != s.epoch {
                    return Err(CommandError::Fenced {
                        stream: r.stream,
                        current: StreamEpoch(s.epoch),
                        held: r.epoch,
                    });
                }
                if commit.replaces.is_empty() {
                    let end = ends.entry(r.stream).or_insert(s.end);
                    if r.start != *end {
                        return Err(CommandError::RangeConflict {
                            stream: r.stream,
                            start: r.start,
                            end: r.end,
                            end_offset: *end,
                        });
                    }
                    *end = r.end;
                } else if r.end > s.end {
                    return Err(CommandError::RangeConflict {
                        stream: r.stream,
                        start: r.start,
                        end: r.end,
                        end_offset: s.end,
                    });
                }
            }
        }
        if !commit.replaces.is_empty() {
            let mut old: Vec<(StreamId, u64, u64)> = commit
                .replaces
                .iter()
                .flat_map(|id| self.objects[id].ranges.iter().copied())
                .collect();
            let mut new: Vec<(StreamId, u64, u64)> = commit
                .objects
                .iter()
                .flat_map(|o| o.ranges.iter().map(|r| (r.stream, r.start, r.end)))
                .collect();
            old.sort();
            new.sort();
            if merge_ranges(old) != merge_ranges(new) {
                return Err(CommandError::Invalid(
                    "compaction output does not cover exactly the replaced ranges".into(),
                ));
            }
        }
        Ok(())
    }

    /// Apply a commit that [`Self::check_commit`] accepted.
    pub(super) fn apply_commit(&mut self, commit: &ObjectCommit, now_ms: u64) {
        for id in &commit.replaces {
            let ranges = match self.objects.get_mut(id) {
                Some(o) => {
                    o.deleted_at_ms = Some(now_ms);
                    o.ranges.clone()
                }
                None => continue,
            };
            for (stream, start, _) in ranges {
                if let Some(s) = self.streams.get_mut(&stream)
                    && s.slices.get(&start).map(|(_, o)| o) == Some(id)
                {
                    s.slices.remove(&start);
                }
            }
        }
        for obj in &commit.objects {
            self.reserved.remove(obj.id.0);
            let ranges: Vec<_> = obj
                .ranges
                .iter()
                .map(|r| (r.stream, r.start, r.end))
                .collect();
            for r in &obj.ranges {
                if let Some(s) = self.streams.get_mut(&r.stream) {
                    s.slices.insert(r.start, (r.end, obj.id));
                    s.end = s.end.max(r.end);
                }
            }
            self.objects.insert(
                obj.id,
                ObjectState {
                    kind: obj.kind,
                    size: obj.size,
                    committed_at_ms: now_ms,
                    ranges,
                    deleted_at_ms: None,
                },
            );
        }
    }

    pub(super) fn trim(
        &mut self,
        stream: StreamId,
        epoch: StreamEpoch,
        new_start: u64,
        now_ms: u64,
    ) -> Result<(), CommandError> {
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(CommandError::UnknownStream(stream))?;
        if s.epoch != epoch.0 {
            return Err(CommandError::Fenced {
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
        self.mark_dead_objects(touched.into_iter(), now_ms);
        Ok(())
    }

    /// Mark for deletion every object among `ids` that no longer holds any
    /// live data of a live stream.
    pub(super) fn mark_dead_objects(&mut self, ids: impl Iterator<Item = ObjectId>, now_ms: u64) {
        for id in ids {
            let streams = &self.streams;
            if let Some(o) = self.objects.get_mut(&id) {
                let live = o
                    .ranges
                    .iter()
                    .any(|(st, _, end)| streams.get(st).is_some_and(|s| *end > s.start));
                if !live && o.deleted_at_ms.is_none() {
                    o.deleted_at_ms = Some(now_ms);
                }
            }
        }
    }

    /// Current state of a stream.
    pub fn stream_meta(&self, stream: StreamId) -> Option<StreamMeta> {
        self.streams.get(&stream).map(|s| StreamMeta {
            stream,
            epoch: StreamEpoch(s.epoch),
            start_offset: s.start,
            end_offset: s.end,
        })
    }

    /// Committed slices of `stream` from offset `from` on, at most `limit`.
    pub fn lookup(&self, stream: StreamId, from: u64, limit: usize) -> Option<Vec<ObjectSlice>> {
        let s = self.streams.get(&stream)?;
        let from = from.max(s.start);
        let first = s
            .slices
            .range(..=from)
            .next_back()
            .filter(|(_, (end, _))| *end > from)
            .map(|(start, _)| *start)
            .unwrap_or(from);
        Some(
            s.slices
                .range(first..)
                .take(limit)
                .filter_map(|(start, (end, id))| {
                    let o = self.objects.get(id)?;
                    Some(ObjectSlice {
                        object: *id,
                        kind: o.kind,
                        object_size: o.size,
                        start: *start,
                        end: *end,
                    })
                })
                .collect(),
        )
    }

    /// All live committed objects.
    pub fn list_objects(&self) -> Vec<ObjectInfo> {
        self.objects
            .iter()
            .filter(|(_, o)| o.deleted_at_ms.is_none())
            .map(|(id, o)| ObjectInfo {
                id: *id,
                kind: o.kind,
                size: o.size,
                committed_at_ms: o.committed_at_ms,
                ranges: o.ranges.clone(),
            })
            .collect()
    }

    /// Objects marked for deletion at or before `now_ms - grace_ms`.
    pub fn deletable_objects(&self, now_ms: u64, grace_ms: u64) -> Vec<ObjectId> {
        self.objects
            .iter()
            .filter(|(_, o)| {
                o.deleted_at_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) >= grace_ms)
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Merge adjacent `(stream, start, end)` ranges so two layouts compare equal.
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
