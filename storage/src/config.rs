//! [`StorageConfig`]: every knob of the storage engine, with defaults that run
//! a single node well and a [`StorageConfig::validate`] that rejects
//! combinations that cannot work.
//!
//! The broker embeds it in its TOML file (durations are human-readable:
//! `"200ms"`, `"5s"`):
//!
//! ```
//! let cfg: skiff_storage::config::StorageConfig = toml::from_str(r#"
//!     data_dir = "/var/lib/skiff"
//!     [wal]
//!     kind = "file"
//!     group_commit_max_delay = "0ms"
//!     [upload]
//!     interval = "250ms"
//! "#).unwrap();
//! cfg.validate().unwrap();
//! assert_eq!(cfg.upload.interval, std::time::Duration::from_millis(250));
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::block_cache::BlockCacheConfig;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Which write-ahead log backs appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalKind {
    /// Segmented files under `data_dir/wal`, group-committed with `fdatasync`
    /// (the default).
    File,
    /// Stateless mode: appends are batched into create-only object PUTs under
    /// `wal/<node>/` in the object store; any broker can recover them.
    Object,
}

/// The storage engine's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Local directory for the file WAL (`<data_dir>/wal`) and the block
    /// cache's disk tier (`<data_dir>/cache`). Default `./skiff-data/storage`.
    pub data_dir: PathBuf,
    /// Write-ahead log settings.
    pub wal: WalConfig,
    /// Uploader settings: when WAL data is sealed into objects.
    pub upload: UploadConfig,
    /// Upper bound on the log cache (recent batches per stream that serve tail
    /// reads). Batches not yet uploaded are never evicted, so this must be at
    /// least `max_unuploaded_bytes`. Default 128 MiB.
    pub log_cache_bytes: u64,
    /// Backpressure cap: appended bytes that are not yet committed in objects.
    /// When reached, appends wait until the uploader catches up. Default 64 MiB.
    pub max_unuploaded_bytes: u64,
    /// Block cache for object reads (memory plus a local-disk tier); its
    /// keys are documented on [`BlockCacheConfig`]. The disk tier defaults
    /// to `<data_dir>/block-cache`.
    pub block_cache: BlockCacheConfig,
}

/// Write-ahead log settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    /// `file` (default) or `object`.
    pub kind: WalKind,
    /// Name of this node's WAL, used for object WAL keys (`wal/<node>/...`).
    /// Each broker must use its own; the broker sets it to its node id.
    /// Default `"0"`.
    pub node: String,
    /// Longest time the WAL writer waits to gather more appends into one
    /// write after the first one arrives. `0ms` (the file WAL default) writes
    /// as soon as the previous write is durable: appends that arrive during a
    /// write+fsync share the next one, which is the whole group commit at
    /// any load. The object WAL defaults to `20ms` because each write is a PUT.
    #[serde(with = "humantime_serde")]
    pub group_commit_max_delay: Duration,
    /// Most bytes gathered into one group-commit write (one fsync or one
    /// PUT). A single larger record is still written alone. Default 4 MiB.
    pub group_commit_max_bytes: u64,
    /// Size at which the file WAL starts a new segment file. Segments are
    /// deleted once all their records are in committed objects. Default 64 MiB.
    pub segment_bytes: u64,
    /// Largest payload a single append may carry. Default 16 MiB.
    pub max_record_bytes: u64,
    /// Write the file WAL's large groups (256 KiB and more) with
    /// `O_DIRECT`: such a group is copied once into a block-aligned buffer
    /// the device reads, instead of into new page-cache pages the WAL never
    /// reads back. Smaller groups stay buffered (their `fdatasync` waits
    /// less). Where the file system refuses `O_DIRECT` the WAL logs a
    /// warning and writes through the page cache. Default false: on the
    /// benchmark machine's disk it cut broker CPU per GB produced by about a
    /// fifth but also produce throughput by about a sixth (BENCHMARKS.md);
    /// turn it on where the broker is short of CPU rather than of disk.
    pub direct_io: bool,
}

/// When appended data is sealed into objects.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    /// Seal at the latest this long after the oldest pending append. Default 250ms.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Seal as soon as this many bytes are pending. Default 8 MiB.
    pub seal_bytes: u64,
    /// A stream with at least this many bytes in one seal gets its own stream
    /// object instead of sharing the stream-set object. Default 4 MiB.
    pub stream_object_bytes: u64,
    /// Most seals being PUT at once (commits still happen in seal order).
    /// Default 4.
    pub max_in_flight: usize,
    /// First delay between retries of a failed PUT or a catalog commit that
    /// was unavailable; doubles up to 5s. Default 100ms.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("skiff-data/storage"),
            wal: WalConfig::default(),
            upload: UploadConfig::default(),
            log_cache_bytes: 128 * MIB,
            max_unuploaded_bytes: 64 * MIB,
            block_cache: BlockCacheConfig::default(),
        }
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            kind: WalKind::File,
            node: "0".into(),
            group_commit_max_delay: Duration::ZERO,
            group_commit_max_bytes: 4 * MIB,
            segment_bytes: 64 * MIB,
            max_record_bytes: 16 * MIB,
            direct_io: false,
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(250),
            seal_bytes: 8 * MIB,
            stream_object_bytes: 4 * MIB,
            max_in_flight: 4,
            retry_backoff: Duration::from_millis(100),
        }
    }
}

/// A configuration that cannot work, with the key at fault.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid storage config `{key}`: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

fn check(ok: bool, key: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            key,
            reason: reason.into(),
        })
    }
}

impl StorageConfig {
    /// A config for the object WAL with its usual batching delay.
    pub fn object_wal(node: impl Into<String>) -> Self {
        let mut cfg = Self::default();
        cfg.wal.kind = WalKind::Object;
        cfg.wal.node = node.into();
        cfg.wal.group_commit_max_delay = Duration::from_millis(20);
        cfg
    }

    /// Reject settings that cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let w = &self.wal;
        let u = &self.upload;
        check(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir",
            "must not be empty",
        )?;
        check(
            !w.node.is_empty() && !w.node.contains('/'),
            "wal.node",
            "must be a non-empty name without '/'",
        )?;
        check(
            w.group_commit_max_bytes >= 4 * KIB,
            "wal.group_commit_max_bytes",
            "must be at least 4 KiB",
        )?;
        check(
            w.segment_bytes >= w.group_commit_max_bytes,
            "wal.segment_bytes",
            "must be at least wal.group_commit_max_bytes",
        )?;
        check(
            w.max_record_bytes >= 1 && w.max_record_bytes <= crate::wal::record::MAX_PAYLOAD as u64,
            "wal.max_record_bytes",
            format!("must be in 1..={}", crate::wal::record::MAX_PAYLOAD),
        )?;
        check(
            w.group_commit_max_delay <= Duration::from_secs(1),
            "wal.group_commit_max_delay",
            "must be at most 1s (appends wait for it)",
        )?;
        check(!u.interval.is_zero(), "upload.interval", "must be positive")?;
        check(
            u.seal_bytes >= KIB,
            "upload.seal_bytes",
            "must be at least 1 KiB",
        )?;
        check(
            u.max_in_flight >= 1,
            "upload.max_in_flight",
            "must be at least 1",
        )?;
        check(
            self.max_unuploaded_bytes >= u.seal_bytes.max(w.max_record_bytes),
            "max_unuploaded_bytes",
            "must be at least upload.seal_bytes and wal.max_record_bytes",
        )?;
        check(
            self.log_cache_bytes >= self.max_unuploaded_bytes,
            "log_cache_bytes",
            "must be at least max_unuploaded_bytes (un-uploaded batches stay cached)",
        )?;
        self.block_cache.validate().map_err(|e| ConfigError {
            key: "block_cache",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        StorageConfig::default().validate().unwrap();
        StorageConfig::object_wal("b1").validate().unwrap();
    }

    #[test]
    fn rejects_cache_smaller_than_unuploaded_cap() {
        let mut cfg = StorageConfig::default();
        cfg.log_cache_bytes = cfg.max_unuploaded_bytes - 1;
        assert_eq!(cfg.validate().unwrap_err().key, "log_cache_bytes");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<StorageConfig>("wal_kind = 'file'").is_err());
    }
}
