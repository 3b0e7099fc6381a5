//! [`FaultStore`]: injects latency, errors, timeouts and black holes into
//! the wrapped store, per kind of operation, switchable at run time through
//! a [`FaultController`]. Used by tests, benchmarks and the jepsen harness.
//!
//! ```
//! # use std::sync::Arc;
//! # use std::time::Duration;
//! use object_store::memory::InMemory;
//! use skiff_storage::store::{FaultPlan, FaultStore, Op};
//!
//! let store = FaultStore::new(Arc::new(InMemory::new()));
//! let faults = store.controller();
//! // The next 2 PUTs fail, then one in ten GETs fails, and GETs are slow.
//! faults.set(Op::Put, FaultPlan { fail_next: 2, ..FaultPlan::default() });
//! faults.set(Op::Get, FaultPlan {
//!     error_rate: 0.1,
//!     latency: Duration::from_millis(20),
//!     ..FaultPlan::default()
//! });
//! faults.clear();
//! ```

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use parking_lot::Mutex;
use tokio::sync::watch;

/// Kinds of operation a plan applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    /// GET, ranged GET and HEAD.
    Get,
    Delete,
    /// Listing.
    List,
    /// Copy and rename.
    Copy,
}

/// What to do to operations of one kind. Faults are checked in this order:
/// black hole, scheduled failures (`fail_next`), timeouts, errors, lost
/// responses; latency is added to every operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// Added before every operation.
    pub latency: Duration,
    /// Extra uniformly random latency in `[0, jitter)`.
    pub jitter: Duration,
    /// Fraction of operations failing at once with a transient error.
    pub error_rate: f64,
    /// Fraction of operations that hang for `timeout` and then fail with a
    /// transient error (a request timing out).
    pub timeout_rate: f64,
    pub timeout: Duration,
    /// Fraction of operations that are applied, but whose answer is lost
    /// (a transient error is returned after the inner store succeeded).
    pub lost_response_rate: f64,
    /// The next `fail_next` operations fail with a transient error.
    pub fail_next: u32,
    /// Operations hang until the plan is changed (a partition or a dead
    /// endpoint); callers' timeouts fire.
    pub black_hole: bool,
}

/// Counters of injected faults.
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    injected: AtomicU64,
}

#[derive(Debug, Default)]
struct Shared {
    plans: Mutex<HashMap<Op, FaultPlan>>,
    counters: Counters,
}

/// Switches the faults of a [`FaultStore`] at run time. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FaultController {
    shared: Arc<Shared>,
    /// Bumped on every plan change: wakes black-holed operations.
    generation: watch::Sender<u64>,
}

impl FaultController {
    /// Replace the plan for one kind of operation.
    pub fn set(&self, op: Op, plan: FaultPlan) {
        self.shared.plans.lock().insert(op, plan);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Apply `plan` to every kind of operation.
    pub fn set_all(&self, plan: FaultPlan) {
        for op in [Op::Put, Op::Get, Op::Delete, Op::List, Op::Copy] {
            self.shared.plans.lock().insert(op, plan.clone());
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// Remove every fault.
    pub fn clear(&self) {
        self.shared.plans.lock().clear();
        self.generation.send_modify(|g| *g += 1);
    }

    /// Operations seen and faults injected so far.
    pub fn counts(&self) -> (u64, u64) {
        let c = &self.shared.counters;
        (
            c.calls.load(Ordering::Relaxed),
            c.injected.load(Ordering::Relaxed),
        )
    }
}

/// What the fault layer decided for one operation.
enum Verdict {
    Proceed,
    Fail(&'static str),
    LoseResponse,
}

/// The fault-injecting wrapper (see the module docs).
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    controller: FaultController,
}

impl FaultStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        let (generation, _) = watch::channel(0);
        Self {
            inner,
            controller: FaultController {
                shared: Arc::default(),
                generation,
            },
        }
    }

    pub fn controller(&self) -> FaultController {
        self.controller.clone()
    }

    /// Apply the current plan for `op`: wait, then decide.
    async fn before(&self, op: Op) -> Verdict {
        let c = &self.controller;
        c.shared.counters.calls.fetch_add(1, Ordering::Relaxed);
        let mut gen_rx = c.generation.subscribe();
        loop {
            let plan = {
                let mut plans = c.shared.plans.lock();
                let Some(plan) = plans.get_mut(&op) else {
                    return Verdict::Proceed;
                };
                if plan.black_hole {
                    None
                } else if plan.fail_next > 0 {
                    plan.fail_next -= 1;
                    c.shared.counters.injected.fetch_add(1, Ordering::Relaxed);
                    return Verdict::Fail("scheduled failure");
                } else {
                    Some(plan.clone())
                }
            };
            let Some(plan) = plan else {
                // Black hole: wait for the plan to change, then look again.
                gen_rx.borrow_and_update();
                if gen_rx.changed().await.is_err() {
                    return Verdict::Fail("black hole");
                }
                continue;
            };
            let mut delay = plan.latency;
            if !plan.jitter.is_zero() {
                delay += plan.jitter.mul_f64(rand::random::<f64>());
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let roll = rand::random::<f64>();
            let injected = |v| {
                c.shared.counters.injected.fetch_add(1, Ordering::Relaxed);
                v
            };
            if roll < plan.timeout_rate {
                tokio::time::sleep(plan.timeout).await;
                return injected(Verdict::Fail("timeout"));
            }
            let roll = roll - plan.timeout_rate;
            if roll >= 0.0 && roll < plan.error_rate {
                return injected(Verdict::Fail("error"));
            }
            let roll = roll - plan.error_rate;
            if roll >= 0.0 && roll < plan.lost_response_rate {
                return injected(Verdict::LoseResponse);
            }
            return Verdict::Proceed;
        }
    }

    async fn run<T, F>(&self, op: Op, f: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        match self.before(op).await {
            Verdict::Proceed => f.await,
            Verdict::Fail(what) => Err(injected_error(op, what)),
            Verdict::LoseResponse => {
                f.await?;
                Err(injected_error(op, "lost response"))
            }
        }
    }
}

fn injected_error(op: Op, what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultStore",
        source: format!("injected {what} on {op:?}").into(),
    }
}

impl std::fmt::Display for FaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.run(Op::Put, self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.run(Op::Put, self.inner.put_multipart_opts(location, opts))
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.run(Op::Get, self.inner.get_opts(location, options))
            .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.run(Op::Get, self.inner.get_ranges(location, ranges))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let this = FaultStore {
            inner: Arc::clone(&self.inner),
            controller: self.controller.clone(),
        };
        let this = Arc::new(this);
        locations
            .then(move |location| {
                let this = Arc::clone(&this);
                async move {
                    let location = location?;
                    let one = futures::stream::iter([Ok(location.clone())]).boxed();
                    this.run(Op::Delete, async {
                        let mut out = this.inner.delete_stream(one);
                        out.next().await.unwrap_or(Ok(location.clone()))
                    })
                    .await
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let plan = self.controller.shared.plans.lock().get(&Op::List).cloned();
        match plan {
            Some(p) if p.error_rate > 0.0 && rand::random::<f64>() < p.error_rate => {
                futures::stream::iter([Err(injected_error(Op::List, "error"))]).boxed()
            }
            _ => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.run(Op::List, self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.run(Op::Copy, self.inner.copy_opts(from, to, options))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.run(Op::Copy, self.inner.rename_opts(from, to, options))
            .await
    }
}
