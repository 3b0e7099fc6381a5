//! [`MetadataNode`]: one member of the metadata quorum and the client API
//! the broker uses.
//!
//! A node owns its Raft instance, its log and state machine stores and two
//! background tasks: *leader duties* (initialize the cluster state once a
//! leader exists, fence brokers whose session expired) and, on first start
//! of a joining node, *join* (ask an existing member to add it as a voter).
//!
//! Writes go to the local Raft if it leads, else they are forwarded to the
//! leader over the node's transport ([`crate::net::Rpc::Write`]). Reads are
//! linearizable: the leader confirms its leadership with a quorum round
//! (read index), a follower asks the leader for that index and waits until
//! it has applied it, then reads its own copy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError,
};
use openraft::{ChangeMembers, ServerState};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
// tokio's clock, so a simulation on a paused clock sees the same deadlines.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::command::{Command, CommandError, Output, limits};
use crate::config::MetadataConfig;
use crate::error::{MetadataError, StartError};
use crate::net::{NetworkFactory, Rpc, RpcHandler, RpcReply, Transport};
use crate::state::{Change, ClusterState};
use crate::store::log::LogStore;
use crate::store::sm::{SmShared, StateMachineStore};
use crate::types::{Node, NodeId, Raft};

/// Milliseconds since the Unix epoch: the time stamped into commands.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A command waiting to be proposed, with where its answer goes.
type Proposal = (Command, oneshot::Sender<Result<Output, MetadataError>>);

/// Proposals queued before writers wait (backpressure).
const PROPOSAL_QUEUE: usize = 8192;

pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) sm: Arc<SmShared>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) config: MetadataConfig,
    /// Set on a leader handing leadership over: it stops taking writes.
    transferring: AtomicBool,
    /// Commands to propose on the local Raft, batched by the proposer task.
    proposals: mpsc::Sender<Proposal>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// A running metadata node. Cheap to clone.
#[derive(Clone)]
pub struct MetadataNode {
    pub(crate) inner: Arc<Inner>,
}

/// A stream of applied changes. When the watcher falls behind it receives
/// [`Change::Resync`] and should re-read the whole state.
pub struct Watch {
    rx: broadcast::Receiver<Change>,
}

impl Watch {
    /// The next change; `None` once the node has shut down.
    pub async fn next(&mut self) -> Option<Change> {
        match self.rx.recv().await {
            Ok(c) => Some(c),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

fn fatal(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Fatal(e.to_string())
}

impl MetadataNode {
    /// Start a node as configured: with `listen_addr`, serve peers over TCP
    /// (a port of 0 picks a free one, advertised unless `advertised_addr`
    /// is set); without it, run a single-node cluster with no network.
    pub async fn start(mut config: MetadataConfig) -> Result<Self, StartError> {
        let Some(listen) = config.listen_addr.clone() else {
            if config.initial_voters.len() > 1 || !config.join.is_empty() {
                return Err(StartError::Config(
                    "a multi-node cluster needs listen_addr".into(),
                ));
            }
            return Self::start_with_transport(config, Arc::new(crate::net::tcp::NoNetwork)).await;
        };
        let listen_err = |source| StartError::Listen {
            addr: listen.clone(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(listen_err)?;
        let local = listener.local_addr().map_err(listen_err)?;
        if config.advertised_addr.is_none() {
            config.advertised_addr = Some(local.to_string());
        }
        let max_frame = config.max_frame_bytes;
        let transport = Arc::new(crate::net::tcp::TcpTransport::new(max_frame));
        let node = Self::start_with_transport(config, transport).await?;
        let (handler, cancel) = (node.handler(), node.inner.cancel.clone());
        node.inner
            .tasks
            .spawn(crate::net::tcp::serve(listener, handler, max_frame, cancel));
        Ok(node)
    }

    /// The address peers reach this node at.
    pub fn advertised_addr(&self) -> String {
        self.inner.config.advertised()
    }

    /// Start a node with `transport` for talking to its peers, recovering
    /// from `config.data_dir`. On first start it bootstraps or joins the
    /// cluster as configured. Serving RPCs from peers is the caller's part:
    /// hand [`MetadataNode::handler`] to the transport's server side.
    pub async fn start_with_transport(
        config: MetadataConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let raft_config = Arc::new(config.raft_config().map_err(StartError::Config)?);
        let storage_err = |source| StartError::Storage {
            path: config.data_dir.clone(),
            source,
        };
        let log = LogStore::open(
            &config.data_dir.join("raft"),
            config.fsync,
            config.segment_bytes,
        )
        .map_err(storage_err)?;
        let sm = StateMachineStore::open(
            &config.data_dir.join("state"),
            config.fsync,
            config.watch_capacity,
        )
        .map_err(storage_err)?;
        let shared = sm.shared();
        let network = NetworkFactory {
            id: config.node_id,
            transport: transport.clone(),
        };
        let raft = Raft::new(config.node_id, raft_config, network, log, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let (proposals, proposal_rx) = mpsc::channel(PROPOSAL_QUEUE);
        let inner = Arc::new(Inner {
            id: config.node_id,
            raft,
            sm: shared,
            transport,
            config,
            transferring: AtomicBool::new(false),
            proposals,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let node = Self { inner };
        let n = node.clone();
        node.inner
            .tasks
            .spawn(async move { n.proposer(proposal_rx).await });
        let initialized = node
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized {
            node.bootstrap().await?;
        }
        let n = node.clone();
        node.inner
            .tasks
            .spawn(async move { n.leader_duties().await });
        Ok(node)
    }

    async fn bootstrap(&self) -> Result<(), StartError> {
        let c = &self.inner.config;
        if !c.join.is_empty() {
            let n = self.clone();
            self.inner.tasks.spawn(async move { n.join_loop().await });
            return Ok(());
        }
        let voters: BTreeMap<NodeId, Node> = if c.initial_voters.is_empty() {
            BTreeMap::from([(
                c.node_id,
                Node {
                    addr: c.advertised(),
                },
            )])
        } else {
            c.initial_voters
                .iter()
                .map(|p| {
                    (
                        p.id,
                        Node {
                            addr: p.addr.clone(),
                        },
                    )
                })
                .collect()
        };
        // Only the lowest id initializes; the others wait to be contacted.
        if voters.keys().next() == Some(&c.node_id) {
            self.inner
                .raft
                .initialize(voters)
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
        }
        Ok(())
    }

    async fn join_loop(&self) {
        let addr = self.inner.config.advertised();
        loop {
            for target in &self.inner.config.join {
                let rpc = Rpc::Join {
                    id: self.inner.id,
                    addr: addr.clone(),
                    voter: true,
                };
                let r = self
                    .inner
                    .transport
                    .call(
                        self.inner.id,
                        0,
                        target,
                        rpc,
                        self.inner.config.request_timeout,
                    )
                    .await;
                if let Ok(RpcReply::Join(Ok(()))) = r {
                    tracing::info!(node = self.inner.id, via = %target, "joined the metadata cluster");
                    return;
                }
                tracing::debug!(node = self.inner.id, via = %target, ?r, "join attempt failed");
            }
            tokio::select! {
                biased;
                _ = self.inner.cancel.cancelled() => return,
                _ = tokio::time::sleep(self.inner.config.election_timeout_max) => {}
            }
        }
    }

    /// Background work of the leader: write the cluster id once, fence
    /// brokers whose session expired (only after leading for a full session
    /// timeout, so brokers get a chance to reach a new leader).
    async fn leader_duties(&self) {
        let c = &self.inner.config;
        let tick = (c.session_timeout / 4)
            .min(c.election_timeout_min)
            .max(c.heartbeat_interval);
        let mut leading_since: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = self.inner.cancel.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            if !self.is_leader() {
                leading_since = None;
                continue;
            }
            let since = *leading_since.get_or_insert_with(Instant::now);
            let (initialized, expired) = {
                let a = self.inner.sm.applied.read();
                let now = now_ms();
                let timeout = c.session_timeout.as_millis() as u64;
                let expired = a.state.brokers.values().any(|b| {
                    b.state != crate::command::BrokerState::Fenced
                        && b.last_heartbeat_ms.saturating_add(timeout) < now
                });
                (a.state.cluster_id.is_some(), expired)
            };
            if !initialized {
                let id = uuid::Uuid::new_v4();
                match self.write(Command::InitCluster { cluster_id: id }).await {
                    Ok(_) | Err(MetadataError::Command(CommandError::AlreadyInitialized)) => {}
                    Err(e) => tracing::debug!(error = %e, "cluster init failed; will retry"),
                }
            } else if expired && since.elapsed() >= c.session_timeout {
                let cmd = Command::ExpireSessions {
                    now_ms: now_ms(),
                    session_timeout_ms: c.session_timeout.as_millis() as u64,
                };
                if let Ok(Output::SessionsExpired { fenced }) = self.write(cmd).await
                    && !fenced.is_empty()
                {
                    tracing::warn!(?fenced, "fenced brokers whose session expired");
                }
            }
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The underlying openraft instance (metrics, tests).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The RPC handler peers' requests must be delivered to.
    pub fn handler(&self) -> Arc<dyn RpcHandler> {
        Arc::new(self.clone())
    }

    /// True when this node currently believes it leads.
    pub fn is_leader(&self) -> bool {
        let m = self.inner.raft.metrics().borrow().clone();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.id)
    }

    /// The leader this node knows of.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// Wait until the cluster has a leader and its state is initialized.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), MetadataError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.read_local(|s| s.cluster_id.is_some()) && self.current_leader().is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(MetadataError::Unavailable("cluster not ready".into()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Propose a command and wait for its result, forwarding to the leader
    /// when this node does not lead. Retries only when the command surely
    /// was not proposed (no leader known, leader unreachable); a request
    /// whose answer was lost fails with [`MetadataError::Unavailable`].
    pub async fn write(&self, cmd: Command) -> Result<Output, MetadataError> {
        let deadline = Instant::now() + self.inner.config.request_timeout;
        let mut backoff = Duration::from_millis(5);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(MetadataError::Unavailable(
                    "no leader answered in time".into(),
                ));
            }
            match self.write_local(cmd.clone(), remaining).await {
                Err(MetadataError::NotLeader {
                    leader_id: Some(id),
                    leader_addr: Some(addr),
                }) if id != self.inner.id => {
                    let r = self
                        .inner
                        .transport
                        .call(self.inner.id, id, &addr, Rpc::Write(cmd.clone()), remaining)
                        .await;
                    match r {
                        Ok(RpcReply::Write(Ok(resp))) => return resp.map_err(MetadataError::from),
                        Ok(RpcReply::Write(Err(MetadataError::NotLeader { .. })))
                        | Err(crate::net::TransportError::Unreachable(..)) => {}
                        // The leader's own node failed: the outcome is unknown here.
                        Ok(RpcReply::Write(Err(MetadataError::Fatal(e)))) => {
                            return Err(MetadataError::Unavailable(format!(
                                "leader {id} failed: {e}"
                            )));
                        }
                        Ok(RpcReply::Write(Err(e))) => return Err(e),
                        Ok(other) => return Err(fatal(format!("unexpected reply {other:?}"))),
                        Err(e) => return Err(MetadataError::Unavailable(e.to_string())),
                    }
                }
                Err(MetadataError::NotLeader { .. }) => {}
                other => return other,
            }
            tokio::time::sleep(backoff.min(remaining)).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// Propose on the local Raft only (through the batching proposer).
    pub(crate) async fn write_local(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> Result<Output, MetadataError> {
        if self.inner.transferring.load(Ordering::Acquire) {
            return Err(MetadataError::NotLeader {
                leader_id: None,
                leader_addr: None,
            });
        }
        let (tx, rx) = oneshot::channel();
        let send = tokio::time::timeout(timeout, self.inner.proposals.send((cmd, tx)));
        match send.await {
            Err(_) => return Err(MetadataError::Unavailable("proposal queue full".into())),
            Ok(Err(_)) => return Err(fatal("node stopped")),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(MetadataError::Unavailable("write timed out".into())),
            Ok(Err(_)) => Err(fatal("node stopped")),
            Ok(Ok(r)) => r,
        }
    }

    /// Group commit: openraft 0.9 flushes the log once per proposal, so
    /// concurrent commands are packed into one [`Command::Batch`] entry —
    /// one append, one fsync, many commands. A batch is cut whenever a
    /// slot frees up, so a lone command waits for nothing.
    async fn proposer(&self, mut rx: mpsc::Receiver<Proposal>) {
        let slots = Arc::new(Semaphore::new(self.inner.config.batches_in_flight));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let first = tokio::select! {
                biased;
                _ = self.inner.cancel.cancelled() => return,
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return,
                },
            };
            let mut batch = vec![first];
            while batch.len() < limits::MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let raft = self.inner.raft.clone();
            self.inner.tasks.spawn(async move {
                propose(&raft, batch).await;
                drop(permit);
            });
        }
    }

    /// The log index a linearizable read must wait for, asked of the local
    /// Raft only.
    pub(crate) async fn read_index_local(&self) -> Result<u64, MetadataError> {
        match self.inner.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(f)),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(MetadataError::Unavailable(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// A linearizable read: `f` sees every write acknowledged before the
    /// call started.
    pub async fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> Result<T, MetadataError> {
        let deadline = Instant::now() + self.inner.config.request_timeout;
        let index = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(MetadataError::Unavailable(
                    "no leader answered in time".into(),
                ));
            }
            match self.read_index_local().await {
                Ok(i) => break i,
                Err(MetadataError::NotLeader {
                    leader_id: Some(id),
                    leader_addr: Some(addr),
                }) if id != self.inner.id => {
                    match self
                        .inner
                        .transport
                        .call(self.inner.id, id, &addr, Rpc::ReadIndex, remaining)
                        .await
                    {
                        Ok(RpcReply::ReadIndex(Ok(i))) => break i,
                        Ok(RpcReply::ReadIndex(Err(MetadataError::NotLeader { .. }))) | Err(_) => {}
                        Ok(RpcReply::ReadIndex(Err(e))) => return Err(e),
                        Ok(other) => return Err(fatal(format!("unexpected reply {other:?}"))),
                    }
                }
                Err(MetadataError::NotLeader { .. }) => {}
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(20).min(remaining)).await;
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.inner
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| MetadataError::Unavailable(e.to_string()))?;
        Ok(self.read_local(f))
    }

    /// Read this node's applied state without a quorum round (may be stale).
    pub fn read_local<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        f(&self.inner.sm.applied.read().state)
    }

    /// Index of the last entry applied locally.
    pub fn applied_index(&self) -> u64 {
        self.inner
            .sm
            .applied
            .read()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// Subscribe to changes applied from now on.
    pub fn watch(&self) -> Watch {
        Watch {
            rx: self.inner.sm.changes.subscribe(),
        }
    }

    /// Current voters and learners as `(voters, learners)`.
    pub fn membership(&self) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let a = self.inner.sm.applied.read();
        let m = a.membership.membership();
        let voters: BTreeSet<NodeId> = m.voter_ids().collect();
        let learners: BTreeSet<NodeId> = m.learner_ids().collect();
        (voters, learners)
    }

    /// Run a membership change, waiting out one that is still in progress.
    async fn change(&self, changes: ChangeMembers<NodeId, Node>) -> Result<(), MetadataError> {
        let deadline = Instant::now() + self.inner.config.request_timeout;
        loop {
            match self
                .inner
                .raft
                .change_membership(changes.clone(), false)
                .await
            {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(write_err(e)),
            }
        }
    }

    /// Add a learner (on the leader); returns once it has caught up.
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<(), MetadataError> {
        let deadline = Instant::now() + self.inner.config.request_timeout;
        loop {
            match self
                .inner
                .raft
                .add_learner(id, Node { addr: addr.clone() }, true)
                .await
            {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(write_err(e)),
            }
        }
    }

    /// Promote learners to voters (on the leader).
    pub async fn promote(&self, ids: BTreeSet<NodeId>) -> Result<(), MetadataError> {
        self.change(ChangeMembers::AddVoterIds(ids)).await
    }

    /// Remove members (voters or learners) from the cluster (on the leader).
    pub async fn remove(&self, ids: BTreeSet<NodeId>) -> Result<(), MetadataError> {
        let (voters, learners) = self.membership();
        let v: BTreeSet<NodeId> = ids.intersection(&voters).copied().collect();
        let l: BTreeSet<NodeId> = ids.intersection(&learners).copied().collect();
        if !v.is_empty() {
            self.change(ChangeMembers::RemoveVoters(v)).await?;
        }
        if !l.is_empty() {
            self.change(ChangeMembers::RemoveNodes(l)).await?;
        }
        Ok(())
    }

    /// Hand leadership to voter `to` (call on the leader). openraft 0.9 has
    /// no transfer API, so the leader stops taking writes and heartbeats,
    /// lets its lease run out on the followers and asks `to` to campaign:
    /// followers only campaign themselves a full election timeout after
    /// the lease, so `to` (already caught up) wins.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<(), MetadataError> {
        if !self.is_leader() {
            return Err(MetadataError::NotLeader {
                leader_id: self.current_leader(),
                leader_addr: None,
            });
        }
        let addr = {
            let a = self.inner.sm.applied.read();
            a.membership
                .membership()
                .get_node(&to)
                .map(|n| n.addr.clone())
                .ok_or_else(|| MetadataError::Membership(format!("node {to} is not a member")))?
        };
        self.inner.transferring.store(true, Ordering::Release);
        let result = self.transfer_inner(to, &addr).await;
        self.inner.raft.runtime_config().heartbeat(true);
        self.inner.transferring.store(false, Ordering::Release);
        result
    }

    async fn transfer_inner(&self, to: NodeId, addr: &str) -> Result<(), MetadataError> {
        let c = &self.inner.config;
        let deadline = Instant::now() + c.request_timeout;
        // Wait until the target holds everything we have.
        loop {
            let m = self.inner.raft.metrics().borrow().clone();
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&to).cloned())
                .flatten()
                .map(|l| l.index);
            let caught_up = matched.is_some() && matched == m.last_log_index;
            if caught_up {
                break;
            }
            if Instant::now() >= deadline {
                return Err(MetadataError::Unavailable(format!(
                    "node {to} did not catch up"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.inner.raft.runtime_config().heartbeat(false);
        tokio::time::sleep(c.election_timeout_max + c.heartbeat_interval).await;
        match self
            .inner
            .transport
            .call(self.inner.id, to, addr, Rpc::Elect, c.request_timeout)
            .await
        {
            Ok(RpcReply::Elect(Ok(()))) => {}
            Ok(RpcReply::Elect(Err(e))) => return Err(e),
            Ok(other) => return Err(fatal(format!("unexpected reply {other:?}"))),
            Err(e) => return Err(MetadataError::Unavailable(e.to_string())),
        }
        while Instant::now() < deadline {
            if self.current_leader() == Some(to) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(MetadataError::Unavailable(format!(
            "node {to} did not take over"
        )))
    }

    /// Stop the node: background tasks end, Raft shuts down.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        // Raft first: a proposal waiting for a commit that a lost quorum
        // will never give only ends when Raft stops.
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.inner.tasks.wait().await;
    }
}

/// Propose one batch and hand every command its own answer.
async fn propose(raft: &Raft, mut batch: Vec<Proposal>) {
    if batch.len() == 1 {
        let (cmd, tx) = batch.pop().expect("one element");
        let _ = tx.send(client_write(raft, cmd).await);
        return;
    }
    let (cmds, txs): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
    match client_write(raft, Command::Batch(cmds)).await {
        Ok(Output::Batch(responses)) if responses.len() == txs.len() => {
            for (tx, r) in txs.into_iter().zip(responses) {
                let _ = tx.send(r.map_err(MetadataError::from));
            }
        }
        Ok(other) => {
            for tx in txs {
                let _ = tx.send(Err(fatal(format!("unexpected batch output {other:?}"))));
            }
        }
        Err(e) => {
            for tx in txs {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}

async fn client_write(raft: &Raft, cmd: Command) -> Result<Output, MetadataError> {
    match raft.client_write(cmd).await {
        Ok(resp) => resp.data.map_err(MetadataError::from),
        Err(e) => Err(write_err(e)),
    }
}

fn not_leader(f: ForwardToLeader<NodeId, Node>) -> MetadataError {
    MetadataError::NotLeader {
        leader_id: f.leader_id,
        leader_addr: f.leader_node.map(|n| n.addr),
    }
}

fn write_err(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> MetadataError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            MetadataError::Membership(e.to_string())
        }
        RaftError::Fatal(e) => fatal(e),
    }
}

#[async_trait::async_trait]
impl RpcHandler for MetadataNode {
    async fn handle(&self, rpc: Rpc) -> RpcReply {
        let raft = &self.inner.raft;
        match rpc {
            Rpc::AppendEntries(r) => RpcReply::AppendEntries(raft.append_entries(r).await),
            Rpc::Vote(r) => RpcReply::Vote(raft.vote(r).await),
            Rpc::InstallSnapshot(r) => RpcReply::InstallSnapshot(raft.install_snapshot(r).await),
            Rpc::Write(cmd) => {
                let r = self
                    .write_local(cmd, self.inner.config.request_timeout)
                    .await;
                RpcReply::Write(match r {
                    Ok(o) => Ok(Ok(o)),
                    Err(MetadataError::Command(e)) => Ok(Err(e)),
                    Err(e) => Err(e),
                })
            }
            Rpc::ReadIndex => RpcReply::ReadIndex(self.read_index_local().await),
            Rpc::Join { id, addr, voter } => {
                RpcReply::Join(self.handle_join(id, addr, voter).await)
            }
            Rpc::Elect => RpcReply::Elect(raft.trigger().elect().await.map_err(fatal)),
        }
    }
}

impl MetadataNode {
    async fn handle_join(
        &self,
        id: NodeId,
        addr: String,
        voter: bool,
    ) -> Result<(), MetadataError> {
        if !self.is_leader() {
            // Forward to the leader once.
            let leader = self.current_leader();
            let addr_of_leader = leader.and_then(|l| {
                let a = self.inner.sm.applied.read();
                a.membership
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            });
            return match (leader, addr_of_leader) {
                (Some(l), Some(la)) if l != self.inner.id => {
                    let rpc = Rpc::Join { id, addr, voter };
                    match self
                        .inner
                        .transport
                        .call(
                            self.inner.id,
                            l,
                            &la,
                            rpc,
                            self.inner.config.request_timeout,
                        )
                        .await
                    {
                        Ok(RpcReply::Join(r)) => r,
                        Ok(other) => Err(fatal(format!("unexpected reply {other:?}"))),
                        Err(e) => Err(MetadataError::Unavailable(e.to_string())),
                    }
                }
                _ => Err(MetadataError::NotLeader {
                    leader_id: None,
                    leader_addr: None,
                }),
            };
        }
        let (voters, _) = self.membership();
        if voters.contains(&id) {
            return Ok(());
        }
        self.add_learner(id, addr).await?;
        if voter {
            self.promote(BTreeSet::from([id])).await?;
        }
        Ok(())
    }
}
