//! Node-to-node messages and the transports that carry them.
//!
//! Every message between metadata nodes is an [`Rpc`] answered by an
//! [`RpcReply`]: the three Raft RPCs plus the client requests a follower
//! forwards to the leader (writes and read-index requests) and a join
//! request from a new node. A [`Transport`] delivers an `Rpc` to a node and
//! returns its reply; [`NetworkFactory`] adapts any transport to openraft's
//! `RaftNetworkFactory`. Two transports exist: [`mem::MemRouter`]
//! (in-process, with injectable loss, delay and partitions) and
//! [`tcp::TcpTransport`] (length-prefixed checksummed frames).

pub mod mem;
pub mod tcp;

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::Response;
use crate::command::Command;
use crate::error::MetadataError;
use crate::types::{Node, NodeId, TypeConfig};

/// A request from one metadata node to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Rpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client write forwarded to the leader.
    Write(Command),
    /// Ask the leader for a linearizable read index.
    ReadIndex,
    /// A new node asks to join as a voter (`voter` false: stay a learner).
    Join {
        id: NodeId,
        addr: String,
        voter: bool,
    },
    /// Campaign now (leadership transfer).
    Elect,
}

/// The answer to an [`Rpc`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Write(Result<Response, MetadataError>),
    ReadIndex(Result<u64, MetadataError>),
    Join(Result<(), MetadataError>),
    Elect(Result<(), MetadataError>),
}

/// Why an RPC got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The target cannot be reached (connection refused, partitioned,
    /// unknown node). Retry later.
    #[error("node {0} unreachable: {1}")]
    Unreachable(NodeId, String),
    /// The request was sent but the answer was lost or late.
    #[error("rpc to node {0} failed: {1}")]
    Network(NodeId, String),
}

/// Serves RPCs for one node.
#[async_trait::async_trait]
pub trait RpcHandler: Send + Sync + 'static {
    async fn handle(&self, rpc: Rpc) -> RpcReply;
}

/// Delivers RPCs to nodes.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Send `rpc` to node `target` at `addr` and wait at most `timeout`.
    async fn call(
        &self,
        from: NodeId,
        target: NodeId,
        addr: &str,
        rpc: Rpc,
        timeout: Duration,
    ) -> Result<RpcReply, TransportError>;
}

/// openraft's network factory over any [`Transport`].
#[derive(Clone)]
pub struct NetworkFactory {
    pub(crate) id: NodeId,
    pub(crate) transport: Arc<dyn Transport>,
}

/// One replication target.
pub struct Network {
    id: NodeId,
    target: NodeId,
    addr: String,
    transport: Arc<dyn Transport>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Network {
        Network {
            id: self.id,
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

impl Network {
    async fn call<E: std::error::Error>(
        &self,
        rpc: Rpc,
        option: &RPCOption,
    ) -> Result<RpcReply, RpcErr<E>> {
        self.transport
            .call(self.id, self.target, &self.addr, rpc, option.hard_ttl())
            .await
            .map_err(|e| match e {
                TransportError::Unreachable(..) => RPCError::Unreachable(Unreachable::new(&e)),
                TransportError::Network(..) => RPCError::Network(NetworkError::new(&e)),
            })
    }

    fn unexpected<E: std::error::Error>(&self, reply: &RpcReply) -> RpcErr<E> {
        let e = TransportError::Network(self.target, format!("unexpected reply {reply:?}"));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self.call(Rpc::AppendEntries(rpc), &option).await? {
            RpcReply::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self.call(Rpc::InstallSnapshot(rpc), &option).await? {
            RpcReply::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.call(Rpc::Vote(rpc), &option).await? {
            RpcReply::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }
}
