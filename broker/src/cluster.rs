//! The broker's view of cluster metadata: reads of the replicated state,
//! proposals of commands, and the stream of changes.
//!
//! [`Cluster`] hides which metadata backend is in use behind
//! [`MetadataBackend`]: the Raft quorum in a real broker (see `raft_backend`),
//! or [`LocalBackend`] — one `ClusterState` in memory, applied directly — in
//! unit tests of handlers. The shipped `skiff serve` always uses Raft.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::Mutex;
use skiff_metadata::command::{Command, CommandError, Output};
use skiff_metadata::state::{Change, ClusterState};
use tokio::sync::broadcast;

/// Why a proposal did not apply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// The state machine rejected the command.
    #[error(transparent)]
    Rejected(#[from] CommandError),
    /// The quorum could not be reached in time. Retriable.
    #[error("metadata quorum unavailable: {0}")]
    Unavailable(String),
}

/// What the broker needs from a metadata store.
#[async_trait]
pub trait MetadataBackend: Send + Sync + 'static {
    /// Run `f` over the locally applied state.
    fn with_state(&self, f: &mut dyn FnMut(&ClusterState));
    /// Replicate and apply a command; resolves once applied on this node.
    async fn propose(&self, cmd: Command) -> Result<Output, ClusterError>;
    /// Changes applied from now on.
    fn subscribe(&self) -> broadcast::Receiver<Change>;
    /// The node id of the current Raft leader, if known (Kafka's controller id).
    fn leader(&self) -> Option<u64>;
}

/// Cluster metadata as the broker uses it.
#[derive(Clone)]
pub struct Cluster {
    backend: Arc<dyn MetadataBackend>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(backend: Arc<dyn MetadataBackend>) -> Self {
        Self { backend }
    }

    /// Read from the locally applied state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let mut f = Some(f);
        let mut out = None;
        self.backend.with_state(&mut |s| {
            if let Some(f) = f.take() {
                out = Some(f(s));
            }
        });
        out.expect("with_state calls its closure exactly once")
    }

    pub async fn propose(&self, cmd: Command) -> Result<Output, ClusterError> {
        self.backend.propose(cmd).await
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.backend.subscribe()
    }

    /// Kafka's controller id: the Raft leader's node id, or -1.
    pub fn controller_id(&self) -> i32 {
        self.backend
            .leader()
            .and_then(|id| i32::try_from(id).ok())
            .unwrap_or(-1)
    }
}

/// Milliseconds since the Unix epoch, as commands carry it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A metadata store that is one in-memory `ClusterState`: for unit tests of
/// code above the metadata layer. Not durable; never used by `skiff serve`.
pub struct LocalBackend {
    state: Mutex<ClusterState>,
    changes: broadcast::Sender<Change>,
}

impl LocalBackend {
    pub fn new() -> Arc<Self> {
        let (changes, _) = broadcast::channel(1024);
        let b = Arc::new(Self {
            state: Mutex::new(ClusterState::default()),
            changes,
        });
        let (resp, _) = b.state.lock().apply(&Command::InitCluster {
            cluster_id: uuid::Uuid::new_v4(),
        });
        resp.expect("a new state accepts InitCluster");
        b
    }
}

#[async_trait]
impl MetadataBackend for LocalBackend {
    fn with_state(&self, f: &mut dyn FnMut(&ClusterState)) {
        f(&self.state.lock());
    }

    async fn propose(&self, cmd: Command) -> Result<Output, ClusterError> {
        let (resp, changes) = self.state.lock().apply(&cmd);
        for c in changes {
            let _ = self.changes.send(c);
        }
        Ok(resp?)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn leader(&self) -> Option<u64> {
        Some(1)
    }
}
