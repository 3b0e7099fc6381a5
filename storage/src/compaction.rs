//! Compaction and garbage collection of objects.
//!
//! The uploader writes many small **stream-set** objects (every stream with
//! data in one upload interval shares one object). Compaction rewrites them:
//!
//! - **merge**: small stream-set objects are merged into bigger ones, so a
//!   catch-up reader of a stream issues fewer GETs;
//! - **split**: a stream whose data in the merged inputs reaches
//!   `stream_object_min_bytes`, and every stream of inputs older than
//!   `split_after`, gets a per-stream **stream object**, so long-lived data
//!   of a partition ends up contiguous and deletable on its own;
//! - stream objects of one stream that are small and adjacent are merged.
//!
//! Each rewrite is committed with one [`Commit`] whose `replaces` lists the
//! inputs: the catalog swaps the layout atomically and marks the inputs for
//! deletion. [`Compactor::collect_garbage`] deletes marked objects only after
//! `gc_grace` (a reader may have looked one up just before the swap), then
//! tells the catalog to forget them; [`Compactor::sweep_orphans`] deletes
//! objects the catalog never heard of (their writer died between PUT and
//! commit) once they are `orphan_grace` old. A compaction that loses a race (the
//! stream was reopened at a new epoch, or an input was trimmed away) is
//! rejected by the catalog, its outputs are deleted, and the next round
//! plans again from the new layout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Deserialize;
use skiff_common::{ObjectId, StreamEpoch, StreamId};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batch::StoredBatch;
use crate::catalog::{
    Catalog, CatalogError, Commit, CommitRange, NewObject, ObjectInfo, ObjectKind,
};
use crate::object::{
    BuildError, FormatError, OBJECTS_PREFIX, ObjectBuilder, decode_object, object_key,
    parse_object_key, put_object, stream_ranges,
};

/// Compaction and GC settings. `[compaction]` in the storage config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    /// Run compaction and GC. Default true.
    pub enabled: bool,
    /// Time between rounds. Default 30s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Objects smaller than this are merged. Default 32 MiB.
    pub small_object_bytes: u64,
    /// Stream-set objects older than this are split into stream objects.
    /// Default 10 minutes.
    #[serde(with = "humantime_serde")]
    pub split_after: Duration,
    /// A stream with at least this much data among the inputs gets its own
    /// stream object. Default 4 MiB.
    pub stream_object_min_bytes: u64,
    /// Bytes of input one compaction reads (and holds in memory) at most.
    /// Default 64 MiB.
    pub max_input_bytes: u64,
    /// Block size of compaction outputs. Default 1 MiB.
    pub block_bytes: usize,
    /// Replaced or trimmed objects are deleted this long after they were
    /// marked (readers may still hold them). Default 10 minutes.
    #[serde(with = "humantime_serde")]
    pub gc_grace: Duration,
    /// Objects in the store that the catalog does not know (PUT by an
    /// uploader or compaction that died before committing) are deleted once
    /// they are this old. Must exceed the longest PUT-to-commit time.
    /// Default 1 hour.
    #[serde(with = "humantime_serde")]
    pub orphan_grace: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(30),
            small_object_bytes: 32 << 20,
            split_after: Duration::from_secs(600),
            stream_object_min_bytes: 4 << 20,
            max_input_bytes: 64 << 20,
            block_bytes: 1 << 20,
            gc_grace: Duration::from_secs(600),
            orphan_grace: Duration::from_secs(3600),
        }
    }
}

impl CompactionConfig {
    /// Check the settings are usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("compaction.interval must be > 0".into());
        }
        if self.max_input_bytes < self.small_object_bytes {
            return Err("compaction.max_input_bytes must be >= small_object_bytes".into());
        }
        if self.block_bytes < 4096 {
            return Err("compaction.block_bytes must be at least 4 KiB".into());
        }
        Ok(())
    }
}

/// Why a compaction or GC step failed. Nothing is lost by a failure: the
/// old layout stays until a commit succeeds.
#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("object {object}: store: {source}")]
    Store {
        object: ObjectId,
        source: object_store::Error,
    },
    #[error("listing objects: {0}")]
    List(object_store::Error),
    #[error("object {object} is corrupt: {source}")]
    Corrupt {
        object: ObjectId,
        source: FormatError,
    },
    #[error("inputs overlap: {0}")]
    Build(#[from] BuildError),
}

/// What one compaction round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub compactions: usize,
    pub objects_in: usize,
    pub objects_out: usize,
    pub bytes_in: u64,
    /// Compactions the catalog rejected (lost a race; retried next round).
    pub rejected: usize,
}

/// One planned rewrite: inputs to replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub inputs: Vec<ObjectInfo>,
    /// Put every stream in its own stream object.
    pub split_all: bool,
}

/// Runs compaction and GC against a catalog and a store.
#[derive(Clone)]
pub struct Compactor {
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    config: CompactionConfig,
}

impl std::fmt::Debug for Compactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Compactor {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        store: Arc<dyn ObjectStore>,
        config: CompactionConfig,
    ) -> Self {
        Self {
            catalog,
            store,
            config,
        }
    }

    /// Decide what to rewrite from the live objects (pure; see module docs).
    pub fn plan(&self, objects: &[ObjectInfo], now: SystemTime) -> Vec<Plan> {
        let c = &self.config;
        let aged = |o: &ObjectInfo| {
            now.duration_since(o.committed_at).unwrap_or_default() >= c.split_after
        };
        let mut plans = Vec::new();

        // Stream-set objects: small ones are merged, old ones split.
        let mut sets: Vec<&ObjectInfo> = objects
            .iter()
            .filter(|o| {
                o.kind == ObjectKind::StreamSet && (o.size < c.small_object_bytes || aged(o))
            })
            .collect();
        sets.sort_by_key(|o| o.id);
        let mut group: Vec<ObjectInfo> = Vec::new();
        let mut bytes = 0u64;
        // A group is rewritten when that makes progress: it merges objects,
        // or it turns old stream-set data into stream objects (which are
        // never split again).
        let flush = |group: &mut Vec<ObjectInfo>, plans: &mut Vec<Plan>| {
            let split_all = !group.is_empty() && group.iter().all(aged);
            if group.len() >= 2 || split_all {
                plans.push(Plan {
                    inputs: std::mem::take(group),
                    split_all,
                });
            }
            group.clear();
        };
        for o in sets {
            if !group.is_empty() && bytes + o.size > c.max_input_bytes {
                flush(&mut group, &mut plans);
                bytes = 0;
            }
            bytes += o.size;
            group.push(o.clone());
        }
        flush(&mut group, &mut plans);

        // Stream objects: merge small adjacent ones of the same stream.
        let mut by_stream: BTreeMap<StreamId, Vec<&ObjectInfo>> = BTreeMap::new();
        for o in objects.iter().filter(|o| o.kind == ObjectKind::Stream) {
            if let [(s, _, _)] = o.ranges.as_slice() {
                by_stream.entry(*s).or_default().push(o);
            }
        }
        for (_, mut objs) in by_stream {
            objs.sort_by_key(|o| o.ranges[0].1);
            let mut run: Vec<ObjectInfo> = Vec::new();
            let mut bytes = 0u64;
            let mut end = None;
            for o in objs {
                let (_, start, stop) = o.ranges[0];
                let fits = o.size < c.small_object_bytes
                    && end == Some(start)
                    && bytes + o.size <= c.max_input_bytes;
                if !fits {
                    if run.len() >= 2 {
                        plans.push(Plan {
                            inputs: std::mem::take(&mut run),
                            split_all: true,
                        });
                    }
                    run.clear();
                    bytes = 0;
                }
                if o.size < c.small_object_bytes {
                    bytes += o.size;
                    run.push(o.clone());
                }
                end = Some(stop);
            }
            if run.len() >= 2 {
                plans.push(Plan {
                    inputs: run,
                    split_all: true,
                });
            }
        }
        plans
    }

    /// One round: plan, then run every plan. Failures of one plan are
    /// logged and counted; the round goes on.
    pub async fn compact_once(&self) -> Result<CompactionReport, CompactionError> {
        let objects = self.catalog.list_objects().await?;
        let mut report = CompactionReport::default();
        for plan in self.plan(&objects, SystemTime::now()) {
            let n_in = plan.inputs.len();
            let bytes_in: u64 = plan.inputs.iter().map(|o| o.size).sum();
            match self.run(&plan).await {
                Ok(n_out) => {
                    report.compactions += 1;
                    report.objects_in += n_in;
                    report.objects_out += n_out;
                    report.bytes_in += bytes_in;
                }
                Err(CompactionError::Catalog(e)) => {
                    tracing::info!(error = %e, "compaction rejected by the catalog; will replan");
                    report.rejected += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Rewrite one plan's inputs and commit; returns the number of outputs.
    pub async fn run(&self, plan: &Plan) -> Result<usize, CompactionError> {
        // Read every input; gather batches per stream in offset order.
        let mut streams: BTreeMap<StreamId, Vec<StoredBatch>> = BTreeMap::new();
        for o in &plan.inputs {
            let bytes = self.fetch(o.id).await?;
            let blocks = decode_object(&bytes).map_err(|source| CompactionError::Corrupt {
                object: o.id,
                source,
            })?;
            for (s, batches) in blocks {
                streams.entry(s).or_default().extend(batches);
            }
        }
        let mut epochs: HashMap<StreamId, StreamEpoch> = HashMap::new();
        for s in streams.keys() {
            epochs.insert(*s, self.catalog.stream(*s).await?.epoch);
        }

        // Lay out outputs: own objects for big streams (or all, when splitting).
        let mut outputs: Vec<(ObjectKind, ObjectBuilder)> = Vec::new();
        let input_bytes: u64 = plan.inputs.iter().map(|o| o.size).sum();
        let mut shared =
            ObjectBuilder::with_capacity(self.config.block_bytes, input_bytes as usize);
        for (s, mut batches) in streams {
            batches.sort_by_key(|b| b.base_offset);
            let bytes: u64 = batches.iter().map(|b| b.payload.len() as u64).sum();
            let own = plan.split_all || bytes >= self.config.stream_object_min_bytes;
            let mut single = ObjectBuilder::new(self.config.block_bytes);
            let target = if own { &mut single } else { &mut shared };
            for b in &batches {
                target.push(s, b.base_offset, b.records, &b.payload)?;
            }
            if own {
                outputs.push((ObjectKind::Stream, single));
            }
        }
        if !shared.is_empty() {
            outputs.push((ObjectKind::StreamSet, shared));
        }

        let ids = self
            .catalog
            .reserve_object_ids(outputs.len() as u32)
            .await?;
        let mut new = Vec::with_capacity(outputs.len());
        for ((kind, builder), id) in outputs.into_iter().zip(ids) {
            let id = ObjectId(id);
            let (bytes, index) = builder.finish();
            let size = bytes.len() as u64;
            let ranges = stream_ranges(&index)
                .into_iter()
                .map(|(stream, start, end)| CommitRange {
                    stream,
                    epoch: epochs[&stream],
                    start,
                    end,
                })
                .collect();
            if let Err(source) = put_object(self.store.as_ref(), id, bytes).await {
                let mut put: Vec<ObjectId> = new.iter().map(|o: &NewObject| o.id).collect();
                put.push(id);
                self.delete_quietly(put).await;
                return Err(CompactionError::Store { object: id, source });
            }
            new.push(NewObject {
                id,
                kind,
                size,
                ranges,
            });
        }
        let n_out = new.len();
        let out_ids: Vec<ObjectId> = new.iter().map(|o| o.id).collect();
        let commit = Commit {
            objects: new,
            replaces: plan.inputs.iter().map(|o| o.id).collect(),
        };
        if let Err(e) = self.catalog.commit(commit).await {
            // Never committed: nobody can read the outputs.
            self.delete_quietly(out_ids).await;
            return Err(e.into());
        }
        tracing::debug!(
            inputs = plan.inputs.len(),
            outputs = n_out,
            "compacted objects"
        );
        Ok(n_out)
    }

    async fn fetch(&self, id: ObjectId) -> Result<Bytes, CompactionError> {
        let store = |source| CompactionError::Store { object: id, source };
        self.store
            .get(&object_key(id))
            .await
            .map_err(store)?
            .bytes()
            .await
            .map_err(store)
    }

    async fn delete_quietly(&self, ids: Vec<ObjectId>) {
        for id in ids {
            if let Err(e) = self.store.delete(&object_key(id)).await {
                tracing::warn!(object = %id, error = %e, "could not delete an uncommitted compaction output");
            }
        }
    }

    /// Delete objects marked for deletion more than `gc_grace` ago, then
    /// have the catalog forget them. Returns how many were deleted.
    pub async fn collect_garbage(&self) -> Result<usize, CompactionError> {
        let ids = self.catalog.deletable_objects(self.config.gc_grace).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let results: Vec<(ObjectId, object_store::Result<()>)> = futures::stream::iter(ids)
            .map(|id| {
                let store = Arc::clone(&self.store);
                async move { (id, store.delete(&object_key(id)).await) }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut deleted = Vec::with_capacity(results.len());
        let mut failure = None;
        for (id, r) in results {
            match r {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted.push(id),
                Err(e) if crate::store::is_transient(&e) => {
                    tracing::info!(object = %id, error = %e, "GC delete failed; will retry");
                }
                Err(source) => failure = Some(CompactionError::Store { object: id, source }),
            }
        }
        // Forget what is gone even when another delete failed for good.
        if let Some(e) = failure {
            self.catalog.forget_objects(deleted).await?;
            return Err(e);
        }
        let n = deleted.len();
        self.catalog.forget_objects(deleted).await?;
        Ok(n)
    }

    /// Delete objects under the objects prefix that the catalog does not
    /// know and that are older than `orphan_grace`. Returns how many.
    pub async fn sweep_orphans(&self) -> Result<usize, CompactionError> {
        let prefix = object_store::path::Path::from(OBJECTS_PREFIX);
        // List the store first: anything committed after this is in the
        // catalog lists below, anything uploaded after it is not listed.
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(CompactionError::List)?;
        let mut known: HashSet<ObjectId> = self
            .catalog
            .list_objects()
            .await?
            .iter()
            .map(|o| o.id)
            .collect();
        known.extend(self.catalog.deletable_objects(Duration::ZERO).await?);
        let now = SystemTime::now();
        let mut orphans = Vec::new();
        for meta in listed {
            let Some(id) = parse_object_key(&meta.location) else {
                continue;
            };
            let age = now
                .duration_since(SystemTime::from(meta.last_modified))
                .unwrap_or_default();
            if !known.contains(&id) && age >= self.config.orphan_grace {
                orphans.push(id);
            }
        }
        let n = orphans.len();
        if n > 0 {
            tracing::info!(count = n, "deleting orphan objects");
            self.delete_quietly(orphans).await;
        }
        Ok(n)
    }

    /// Run compaction and GC every `interval` until `shutdown` is cancelled.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            if !self.config.enabled {
                return;
            }
            let mut last_sweep = None;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(self.config.interval) => {}
                }
                // A round in progress is dropped at shutdown: nothing it did
                // is visible until its commit. Outputs it had put but not
                // committed stay behind as unreferenced objects.
                let round = async {
                    match self.compact_once().await {
                        Ok(r) if r.compactions > 0 || r.rejected > 0 => {
                            tracing::info!(?r, "compaction round");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "compaction round failed"),
                    }
                    match self.collect_garbage().await {
                        Ok(n) if n > 0 => tracing::info!(deleted = n, "object GC"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "object GC failed"),
                    }
                    // Listing every object is costly on S3: sweep only
                    // once per orphan_grace.
                    if last_sweep
                        .is_none_or(|t: std::time::Instant| t.elapsed() >= self.config.orphan_grace)
                    {
                        last_sweep = Some(std::time::Instant::now());
                        if let Err(e) = self.sweep_orphans().await {
                            tracing::warn!(error = %e, "orphan sweep failed");
                        }
                    }
                };
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = round => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
