//! [`MetadataBackend`] over a metadata quorum node (openraft).

use async_trait::async_trait;
use skiff_metadata::command::{Command, Output};
use skiff_metadata::error::MetadataError;
use skiff_metadata::node::MetadataNode;
use skiff_metadata::state::{Change, ClusterState};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::cluster::{ClusterError, MetadataBackend};

/// The quorum-backed metadata store of a running broker.
pub struct RaftBackend {
    node: MetadataNode,
    changes: broadcast::Sender<Change>,
}

impl RaftBackend {
    /// Wrap `node`, forwarding its watch stream to broker subscribers until
    /// `shutdown`.
    pub fn new(node: MetadataNode, shutdown: CancellationToken) -> Self {
        let (changes, _) = broadcast::channel(4096);
        let tx = changes.clone();
        let mut watch = node.watch();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    c = watch.next() => match c {
                        Some(c) => { let _ = tx.send(c); }
                        None => break,
                    },
                }
            }
        });
        Self { node, changes }
    }

    pub fn node(&self) -> &MetadataNode {
        &self.node
    }
}

fn cluster_error(e: MetadataError) -> ClusterError {
    match e {
        MetadataError::Command(c) => ClusterError::Rejected(c),
        other => ClusterError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl MetadataBackend for RaftBackend {
    fn with_state(&self, f: &mut dyn FnMut(&ClusterState)) {
        self.node.read_local(|s| f(s));
    }

    async fn propose(&self, cmd: Command) -> Result<Output, ClusterError> {
        self.node.write(cmd).await.map_err(cluster_error)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn leader(&self) -> Option<u64> {
        self.node.current_leader()
    }
}
