//! The block cache: object blocks in memory and on local disk.
//!
//! A [foyer] hybrid cache keyed by `(object id, block position)` holds the
//! raw bytes of object blocks whose crc was verified when they were fetched.
//! Blocks enter memory; those evicted from memory are written to the disk
//! tier (foyer's write-on-eviction policy), so a hot working set costs no
//! disk writes.
//! Objects are immutable and ids never reused, so entries never go stale; the
//! cache only evicts. A second, memory-only cache holds decoded object
//! indexes (footer + index), so a reader fetches those once per object.
//!
//! Hit/miss counters ([`BlockCacheStats`]) feed the broker's metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, Cache, CacheBuilder, Code, DeviceBuilder, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, HybridCachePolicy, RecoverMode, Source,
};
use serde::Deserialize;
use skiff_common::ObjectId;

use crate::object::ObjectIndex;

/// The disk tier's size when objects are remote and nothing else is said.
pub const DEFAULT_DISK_BYTES: usize = 1 << 30;

/// Sizes of the block cache. Embedded in the storage config as `[block_cache]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockCacheConfig {
    /// Bytes of object blocks kept in memory. Default 64 MiB.
    pub memory_bytes: usize,
    /// Bytes of object blocks kept on local disk (the second tier). 0 turns
    /// the disk tier off. Unset: [`DEFAULT_DISK_BYTES`] for a remote object
    /// store; whoever knows the store decides ([`Self::resolve_disk_tier`]):
    /// the broker turns the tier off when objects are on the local file
    /// system, where it would only copy what the disk already holds (and a
    /// catch-up read would write every block it reads a second time).
    pub disk_bytes: Option<usize>,
    /// Directory of the disk tier. Default: `<data dir>/block-cache`, chosen
    /// by whoever builds the cache ([`BlockCache::open`] takes the default).
    pub disk_dir: Option<PathBuf>,
    /// Size of the disk tier's eviction unit; also the largest block that can
    /// be cached on disk. Rounded up to 4 KiB. Default 16 MiB.
    pub disk_region_bytes: usize,
    /// Bytes of decoded object indexes kept in memory. Default 16 MiB.
    pub index_bytes: usize,
    /// How far ahead of a sequential reader blocks are prefetched, in bytes
    /// (0 disables read-ahead). Default 8 MiB.
    pub readahead_bytes: usize,
    /// How many read-ahead fetches may run at once (over all readers).
    /// Default 4.
    pub readahead_concurrency: usize,
}

impl Default for BlockCacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            disk_bytes: None,
            disk_dir: None,
            disk_region_bytes: 16 << 20,
            index_bytes: 16 << 20,
            readahead_bytes: 8 << 20,
            readahead_concurrency: 4,
        }
    }
}

/// A [`BlockCacheConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block_cache.{key}: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

impl BlockCacheConfig {
    /// A small memory-only cache for tests.
    pub fn memory_only(memory_bytes: usize) -> Self {
        Self {
            memory_bytes,
            disk_bytes: Some(0),
            ..Self::default()
        }
    }

    /// Fill an unset `disk_bytes`: [`DEFAULT_DISK_BYTES`] when objects are
    /// remote, 0 (no disk tier) when they already are on local storage.
    pub fn resolve_disk_tier(&mut self, objects_are_local: bool) {
        self.disk_bytes.get_or_insert(if objects_are_local {
            0
        } else {
            DEFAULT_DISK_BYTES
        });
    }

    /// The disk tier's size (unset counts as [`DEFAULT_DISK_BYTES`]).
    pub fn disk_tier_bytes(&self) -> usize {
        self.disk_bytes.unwrap_or(DEFAULT_DISK_BYTES)
    }

    /// Check the sizes are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, reason: &str| {
            Err(ConfigError {
                key,
                reason: reason.into(),
            })
        };
        if self.memory_bytes < (1 << 20) {
            return err("memory_bytes", "must be at least 1 MiB");
        }
        if self.index_bytes < (64 << 10) {
            return err("index_bytes", "must be at least 64 KiB");
        }
        let disk_bytes = self.disk_tier_bytes();
        if disk_bytes > 0 {
            if self.disk_region_bytes < (64 << 10) {
                return err("disk_region_bytes", "must be at least 64 KiB");
            }
            if disk_bytes < self.disk_region_bytes.saturating_mul(4) {
                return err("disk_bytes", "must hold at least 4 regions (or be 0)");
            }
        }
        if self.readahead_bytes > 0 && self.readahead_concurrency == 0 {
            return err("readahead_concurrency", "must be > 0 when read-ahead is on");
        }
        Ok(())
    }
}

/// Failure to open the cache.
#[derive(Debug, thiserror::Error)]
pub enum BlockCacheError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("block cache disk tier at {dir}: {source}")]
    Disk { dir: PathBuf, source: foyer::Error },
}

/// Cache key of one block: the object and the block's byte position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub object: ObjectId,
    pub position: u64,
}

impl Code for BlockKey {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        writer
            .write_all(&self.object.0.to_le_bytes())
            .and_then(|()| writer.write_all(&self.position.to_le_bytes()))
            .map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        let mut b = [0u8; 16];
        reader.read_exact(&mut b).map_err(foyer::Error::io_error)?;
        let (o, p) = b.split_at(8);
        Ok(Self {
            object: ObjectId(u64::from_le_bytes(o.try_into().expect("8 bytes"))),
            position: u64::from_le_bytes(p.try_into().expect("8 bytes")),
        })
    }

    fn estimated_size(&self) -> usize {
        16
    }
}

/// Counters of cache use since start.
#[derive(Debug, Default)]
pub struct BlockCacheStats {
    pub memory_hits: AtomicU64,
    pub disk_hits: AtomicU64,
    pub misses: AtomicU64,
    pub index_hits: AtomicU64,
    pub index_misses: AtomicU64,
    /// Bytes fetched from the object store (blocks and indexes).
    pub fetched_bytes: AtomicU64,
    /// Blocks fetched by read-ahead.
    pub readahead_blocks: AtomicU64,
}

/// A snapshot of [`BlockCacheStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCacheCounters {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub misses: u64,
    pub index_hits: u64,
    pub index_misses: u64,
    pub fetched_bytes: u64,
    pub readahead_blocks: u64,
}

/// The shared block and index cache. Cheap to clone.
#[derive(Clone)]
pub struct BlockCache {
    blocks: HybridCache<BlockKey, Bytes>,
    indexes: Cache<ObjectId, Arc<ObjectIndex>>,
    stats: Arc<BlockCacheStats>,
    config: Arc<BlockCacheConfig>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl BlockCache {
    /// Open the cache. `default_disk_dir` is used when the config names no
    /// directory (the broker passes `<data dir>/block-cache`). The disk tier
    /// starts empty: its content from a previous run is not trusted.
    pub async fn open(
        config: BlockCacheConfig,
        default_disk_dir: &Path,
    ) -> Result<Self, BlockCacheError> {
        config.validate()?;
        let builder = HybridCacheBuilder::new()
            .with_name("skiff-blocks")
            .with_policy(HybridCachePolicy::WriteOnEviction)
            .memory(config.memory_bytes)
            .with_weighter(|_k: &BlockKey, v: &Bytes| v.len() + 64)
            .storage();
        let blocks = if config.disk_tier_bytes() > 0 {
            let dir = config
                .disk_dir
                .clone()
                .unwrap_or_else(|| default_disk_dir.to_path_buf());
            let disk = |source| BlockCacheError::Disk {
                dir: dir.clone(),
                source,
            };
            let device = FsDeviceBuilder::new(&dir)
                .with_capacity(config.disk_tier_bytes())
                .build()
                .map_err(disk)?;
            builder
                .with_engine_config(
                    BlockEngineConfig::new(device).with_block_size(config.disk_region_bytes),
                )
                // Start cold: a previous process's tier may be half-written.
                .with_recover_mode(RecoverMode::None)
                .build()
                .await
                .map_err(disk)?
        } else {
            builder
                .build()
                .await
                .map_err(|source| BlockCacheError::Disk {
                    dir: PathBuf::new(),
                    source,
                })?
        };
        let indexes = CacheBuilder::new(config.index_bytes)
            .with_weighter(|_k: &ObjectId, v: &Arc<ObjectIndex>| v.weight())
            .build();
        Ok(Self {
            blocks,
            indexes,
            stats: Arc::default(),
            config: Arc::new(config),
        })
    }

    /// A memory-only cache (tests, tools).
    pub async fn in_memory(memory_bytes: usize) -> Result<Self, BlockCacheError> {
        Self::open(BlockCacheConfig::memory_only(memory_bytes), Path::new("")).await
    }

    pub fn config(&self) -> &BlockCacheConfig {
        &self.config
    }

    /// A verified block, if cached (memory or disk).
    pub async fn get_block(&self, key: BlockKey) -> Option<Bytes> {
        match self.blocks.get(&key).await {
            Ok(Some(entry)) => {
                let counter = match entry.source() {
                    Source::Disk => &self.stats.disk_hits,
                    _ => &self.stats.memory_hits,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Some(entry.value().clone())
            }
            Ok(None) => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                // A disk-tier read error is a miss: the store still has the block.
                tracing::warn!(error = %e, "block cache read failed");
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// True if the block is cached in memory or (probably) on disk, without loading it.
    pub fn contains_block(&self, key: &BlockKey) -> bool {
        self.blocks.contains(key)
    }

    /// Cache a block whose crc was verified.
    pub fn insert_block(&self, key: BlockKey, block: Bytes) {
        self.blocks.insert(key, block);
    }

    /// A cached object index.
    pub fn get_index(&self, object: ObjectId) -> Option<Arc<ObjectIndex>> {
        let hit = self.indexes.get(&object).map(|e| e.value().clone());
        let counter = if hit.is_some() {
            &self.stats.index_hits
        } else {
            &self.stats.index_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    pub fn insert_index(&self, object: ObjectId, index: Arc<ObjectIndex>) {
        self.indexes.insert(object, index);
    }

    pub(crate) fn stats(&self) -> &BlockCacheStats {
        &self.stats
    }

    /// The counters so far.
    pub fn counters(&self) -> BlockCacheCounters {
        let s = &self.stats;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BlockCacheCounters {
            memory_hits: l(&s.memory_hits),
            disk_hits: l(&s.disk_hits),
            misses: l(&s.misses),
            index_hits: l(&s.index_hits),
            index_misses: l(&s.index_misses),
            fetched_bytes: l(&s.fetched_bytes),
            readahead_blocks: l(&s.readahead_blocks),
        }
    }

    /// Move every block from memory to the disk tier (or drop it, without
    /// one) and wait for the disk writes: benchmarks and tests of the disk tier.
    pub async fn offload_memory(&self) {
        self.blocks.flush_if(|_, _| true).await;
        self.blocks.storage().wait().await;
    }

    /// Flush and close the disk tier.
    pub async fn close(&self) -> Result<(), foyer::Error> {
        self.blocks.close().await
    }
}
