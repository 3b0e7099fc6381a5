//! [`RetryStore`]: retries transient errors with exponential backoff and
//! bounds each attempt with a timeout (which turns a hung request into a
//! retriable error).

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use serde::Deserialize;

use super::is_transient;

/// How transient errors are retried. `[object_store.retry]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying). Default 5.
    pub max_retries: u32,
    /// Wait before the first retry; doubles each retry. Default 50ms.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between retries. Default 2s.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Give up retrying once this much time has passed since the first
    /// attempt. Default 30s.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Duration,
    /// Time limit of one attempt (a GET's limit covers receiving the
    /// response head, not the body). Default 30s.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.attempt_timeout.is_zero() {
            return Err("attempt_timeout must be > 0".into());
        }
        if self.max_backoff < self.initial_backoff {
            return Err("max_backoff must be >= initial_backoff".into());
        }
        Ok(())
    }

    /// Run `op` until it succeeds, fails permanently, or retries run out.
    pub async fn run<T, F, Fut>(&self, what: &'static str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut backoff = self.initial_backoff;
        let mut attempt = 0u32;
        loop {
            let result = match tokio::time::timeout(self.attempt_timeout, op()).await {
                Ok(r) => r,
                Err(_) => Err(object_store::Error::Generic {
                    store: "RetryStore",
                    source: format!("{what} timed out after {:?}", self.attempt_timeout).into(),
                }),
            };
            match result {
                Err(e)
                    if is_transient(&e)
                        && attempt < self.max_retries
                        && start.elapsed() + backoff < self.max_elapsed =>
                {
                    attempt += 1;
                    tracing::debug!(op = what, attempt, error = %e, "retrying object store request");
                    let jitter = rand::random_range(0.5..1.0);
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
                r => return r,
            }
        }
    }
}

/// Retries transient failures of the wrapped store (see [`RetryPolicy`]).
/// Listing streams and multipart uploads pass through unretried.
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl RetryStore {
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }
}

impl std::fmt::Display for RetryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RetryStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        // A create-only PUT whose first attempt landed but whose answer was
        // lost fails its retry with AlreadyExists: callers treat that as done
        // (see `object::put_object`).
        self.policy
            .run("put", || {
                self.inner.put_opts(location, payload.clone(), opts.clone())
            })
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.policy
            .run("get", || self.inner.get_opts(location, options.clone()))
            .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.policy
            .run("get_ranges", || self.inner.get_ranges(location, ranges))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let policy = self.policy.clone();
        locations
            .then(move |location| {
                let inner = Arc::clone(&inner);
                let policy = policy.clone();
                async move {
                    let location = location?;
                    policy
                        .run("delete", || {
                            let one = futures::stream::iter([Ok(location.clone())]).boxed();
                            let inner = Arc::clone(&inner);
                            let location = location.clone();
                            async move {
                                let mut out = inner.delete_stream(one);
                                out.next().await.unwrap_or(Ok(location.clone()))
                            }
                        })
                        .await
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.policy
            .run("list", || self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.policy
            .run("copy", || self.inner.copy_opts(from, to, options.clone()))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
