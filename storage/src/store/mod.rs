//! Building the object store: backends from config, and the wrapper stores.
//!
//! [`build_store`] turns an [`ObjectStoreConfig`] into an
//! `Arc<dyn ObjectStore>`, layered (innermost first):
//!
//! 1. the backend: `file://` (local file system, the embedded default, under
//!    the data directory: [`LocalStore`], large PUTs written with `O_DIRECT`), `s3://bucket/prefix` (AWS or any S3-compatible
//!    endpoint; the S3 client retries HTTP failures itself), `memory://`;
//! 2. [`FaultStore`] when `fault_injection` is on: latency, errors,
//!    timeouts and black holes switched at run time through its
//!    [`FaultController`] (tests, benchmarks, the jepsen harness);
//! 3. [`RetryStore`] for transient errors (for every backend but a bare S3,
//!    whose client already retries);
//! 4. object_store's [`LimitStore`]: at most `max_concurrency` requests.
//!
//! Errors that are worth retrying are told apart by [`is_transient`].

mod fault;
mod local;
mod retry;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::limit::LimitStore;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore};
use serde::Deserialize;

pub use fault::{FaultController, FaultPlan, FaultStore, Op};
pub use local::LocalStore;
pub use retry::{RetryPolicy, RetryStore};

/// Where objects live and how to reach them. Embedded in the storage config
/// as `[object_store]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// `file:///absolute/dir`, `s3://bucket[/prefix]` or `memory://`.
    /// Unset: the local file system under `<data dir>/objects-store`.
    pub url: Option<String>,
    /// S3: endpoint URL for S3-compatible servers (MinIO, moto, R2, ...).
    /// Unset: AWS, or `AWS_ENDPOINT_URL` from the environment.
    pub endpoint: Option<String>,
    /// S3: region. Unset: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// S3: access key id. Unset: `AWS_ACCESS_KEY_ID` or the instance's role.
    pub access_key_id: Option<String>,
    /// S3: secret key. Unset: `AWS_SECRET_ACCESS_KEY` or the instance's role.
    pub secret_access_key: Option<String>,
    /// S3: session token for temporary credentials (`AWS_SESSION_TOKEN`).
    pub session_token: Option<String>,
    /// S3: path-style requests (`endpoint/bucket/key`), which most
    /// S3-compatible servers need. Default true when `endpoint` is set.
    pub path_style: Option<bool>,
    /// S3: allow plain `http://` endpoints (loopback test servers). Default false.
    pub allow_http: bool,
    /// S3: use conditional (create-only) PUTs. Default true; turn off for
    /// servers that reject `If-None-Match`.
    pub conditional_put: bool,
    /// S3: timeout of one HTTP request. Default 30s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests in flight to the store at most. Default 64.
    pub max_concurrency: usize,
    /// Retries of transient errors.
    pub retry: RetryPolicy,
    /// Insert a [`FaultStore`] (tests, chaos runs). Default false.
    pub fault_injection: bool,
    /// file://: write objects of 256 KiB and more with `O_DIRECT` (see
    /// [`LocalStore`]); falls back to the page cache where the file system
    /// refuses it. Default true.
    pub direct_io: bool,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            path_style: None,
            allow_http: false,
            conditional_put: true,
            request_timeout: Duration::from_secs(30),
            max_concurrency: 64,
            retry: RetryPolicy::default(),
            fault_injection: false,
            direct_io: true,
        }
    }
}

/// A store config that cannot work, or a backend that failed to start.
#[derive(Debug, thiserror::Error)]
pub enum StoreConfigError {
    #[error("object_store.{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("object_store: cannot create {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("object_store: {0}")]
    Backend(#[from] object_store::Error),
}

fn invalid(key: &'static str, reason: impl Into<String>) -> StoreConfigError {
    StoreConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The backend a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    File(PathBuf),
    S3 { bucket: String, prefix: String },
    Memory,
}

impl ObjectStoreConfig {
    /// An in-memory store (tests).
    pub fn memory() -> Self {
        Self {
            url: Some("memory://".into()),
            ..Self::default()
        }
    }

    /// The backend, resolving the default against `data_dir`.
    pub fn backend(&self, data_dir: &Path) -> Result<Backend, StoreConfigError> {
        let Some(url) = self.url.as_deref() else {
            return Ok(Backend::File(data_dir.join("objects-store")));
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid("url", "file:// needs an absolute path"));
            }
            Ok(Backend::File(PathBuf::from(path)))
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("url", "s3:// needs a bucket"));
            }
            Ok(Backend::S3 {
                bucket: bucket.into(),
                prefix: prefix.trim_matches('/').into(),
            })
        } else if url == "memory://" || url == "memory:" {
            Ok(Backend::Memory)
        } else {
            Err(invalid(
                "url",
                format!("{url:?}: expected file:///dir, s3://bucket[/prefix] or memory://"),
            ))
        }
    }

    /// Objects are on this machine (the local file system or memory), so a
    /// local-disk block cache in front of them would only duplicate them.
    pub fn is_local(&self) -> bool {
        matches!(
            self.backend(Path::new("/")),
            Ok(Backend::File(_) | Backend::Memory)
        )
    }

    /// Check the settings are usable.
    pub fn validate(&self) -> Result<(), StoreConfigError> {
        self.backend(Path::new("/"))?;
        if self.max_concurrency == 0 {
            return Err(invalid("max_concurrency", "must be > 0"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be > 0"));
        }
        self.retry.validate().map_err(|r| invalid("retry", r))
    }
}

/// The built store, and the fault switch when `fault_injection` is on.
#[derive(Debug, Clone)]
pub struct BuiltStore {
    pub store: Arc<dyn ObjectStore>,
    pub faults: Option<FaultController>,
}

/// Build the store described by `config`; the default location is under `data_dir`.
pub fn build_store(
    config: &ObjectStoreConfig,
    data_dir: &Path,
) -> Result<BuiltStore, StoreConfigError> {
    config.validate()?;
    let backend = config.backend(data_dir)?;
    let (base, self_retrying): (Arc<dyn ObjectStore>, bool) = match backend {
        Backend::Memory => (Arc::new(InMemory::new()), false),
        Backend::File(dir) => {
            std::fs::create_dir_all(&dir).map_err(|source| StoreConfigError::Dir {
                dir: dir.clone(),
                source,
            })?;
            // fsync each object (and its directory) before the PUT returns:
            // once an upload commits, the WAL range it covers is trimmed, so
            // the object must survive a power loss, not only a process crash.
            (Arc::new(LocalStore::new(&dir, config.direct_io)?), false)
        }
        Backend::S3 { bucket, prefix } => {
            let s3 = s3_builder(config, &bucket).build()?;
            let s3: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix.as_str()))
            };
            (s3, true)
        }
    };
    let (store, faults) = if config.fault_injection {
        let f = FaultStore::new(base);
        let c = f.controller();
        (Arc::new(f) as Arc<dyn ObjectStore>, Some(c))
    } else {
        (base, None)
    };
    let store = if faults.is_some() || !self_retrying {
        Arc::new(RetryStore::new(store, config.retry.clone())) as Arc<dyn ObjectStore>
    } else {
        store
    };
    let store = Arc::new(LimitStore::new(store, config.max_concurrency));
    Ok(BuiltStore { store, faults })
}

fn s3_builder(config: &ObjectStoreConfig, bucket: &str) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(e) = &config.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &config.region {
        b = b.with_region(r);
    }
    if let Some(k) = &config.access_key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(s) = &config.secret_access_key {
        b = b.with_secret_access_key(s);
    }
    if let Some(t) = &config.session_token {
        b = b.with_token(t);
    }
    let path_style = config.path_style.unwrap_or(config.endpoint.is_some());
    let r = &config.retry;
    b.with_virtual_hosted_style_request(!path_style)
        .with_allow_http(config.allow_http)
        .with_conditional_put(if config.conditional_put {
            object_store::aws::S3ConditionalPut::ETagMatch
        } else {
            object_store::aws::S3ConditionalPut::Disabled
        })
        .with_client_options(
            ClientOptions::new()
                .with_timeout(config.request_timeout)
                .with_allow_http(config.allow_http),
        )
        .with_retry(object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: r.initial_backoff,
                max_backoff: r.max_backoff,
                base: 2.0,
            },
            max_retries: r.max_retries as usize,
            retry_timeout: r.max_elapsed,
        })
}

/// True for errors worth retrying: network failures, timeouts, throttling,
/// server errors (object_store reports all of these as `Generic`) and
/// injected faults. Missing objects, precondition failures, bad credentials
/// and the like are permanent.
pub fn is_transient(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}

#[cfg(test)]
mod tests;
