//! In-process transport for tests, benchmarks and the simulation.
//!
//! [`MemRouter`] delivers an [`Rpc`] by calling the target node's handler
//! directly (no serialization). [`Faults`] inject what a real network does:
//! lost requests, lost replies, random delay, and partitions (pairs of nodes
//! that cannot talk, or isolated nodes). Fault decisions come from a seeded
//! RNG.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Rpc, RpcHandler, RpcReply, Transport, TransportError};
use crate::config::MetadataConfig;
use crate::error::StartError;
use crate::node::MetadataNode;
use crate::types::NodeId;

/// Network faults to inject.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Probability that a request is lost before delivery.
    pub request_loss: f64,
    /// Probability that a reply is lost after the request was handled.
    pub reply_loss: f64,
    /// Each delivery is delayed by a uniform random time up to this.
    pub max_delay: Duration,
    /// Nodes that can reach no one and that no one can reach.
    pub isolated: BTreeSet<NodeId>,
    /// Unordered pairs of nodes that cannot reach each other.
    pub cut: BTreeSet<(NodeId, NodeId)>,
}

impl Faults {
    fn blocked(&self, a: NodeId, b: NodeId) -> bool {
        self.isolated.contains(&a)
            || self.isolated.contains(&b)
            || self.cut.contains(&(a.min(b), a.max(b)))
    }
}

struct State {
    nodes: HashMap<NodeId, Arc<dyn RpcHandler>>,
    addrs: HashMap<String, NodeId>,
    faults: Faults,
    rng: StdRng,
}

/// An in-process network of metadata nodes. Cheap to clone.
#[derive(Clone)]
pub struct MemRouter {
    state: Arc<Mutex<State>>,
}

impl MemRouter {
    /// A router whose fault decisions are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                nodes: HashMap::new(),
                addrs: HashMap::new(),
                faults: Faults::default(),
                rng: StdRng::seed_from_u64(seed),
            })),
        }
    }

    /// Start a node on this network and register it under its id and
    /// advertised address.
    pub async fn start_node(&self, config: MetadataConfig) -> Result<MetadataNode, StartError> {
        let addr = config.advertised();
        let node = MetadataNode::start_with_transport(config, Arc::new(self.clone())).await?;
        self.register(node.id(), addr, node.handler());
        Ok(node)
    }

    /// Make `handler` reachable as node `id` at `addr`.
    pub fn register(&self, id: NodeId, addr: String, handler: Arc<dyn RpcHandler>) {
        let mut s = self.state.lock();
        s.nodes.insert(id, handler);
        s.addrs.insert(addr, id);
    }

    /// Make node `id` unreachable (crash).
    pub fn unregister(&self, id: NodeId) {
        let mut s = self.state.lock();
        s.nodes.remove(&id);
        s.addrs.retain(|_, v| *v != id);
    }

    /// Replace the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().faults = faults;
    }

    /// Change the injected faults in place.
    pub fn update_faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.state.lock().faults);
    }
}

#[async_trait::async_trait]
impl Transport for MemRouter {
    async fn call(
        &self,
        from: NodeId,
        target: NodeId,
        addr: &str,
        rpc: Rpc,
        timeout: Duration,
    ) -> Result<RpcReply, TransportError> {
        let (handler, target, lose_req, lose_reply, delay) = {
            let mut s = self.state.lock();
            let target = s.addrs.get(addr).copied().unwrap_or(target);
            if s.faults.blocked(from, target) {
                return Err(TransportError::Unreachable(target, "partitioned".into()));
            }
            let Some(h) = s.nodes.get(&target).cloned() else {
                return Err(TransportError::Unreachable(target, "no such node".into()));
            };
            let (rl, pl, md) = (
                s.faults.request_loss,
                s.faults.reply_loss,
                s.faults.max_delay,
            );
            let lose_req = rl > 0.0 && s.rng.random_bool(rl.min(1.0));
            let lose_reply = pl > 0.0 && s.rng.random_bool(pl.min(1.0));
            let delay = if md.is_zero() {
                Duration::ZERO
            } else {
                md.mul_f64(s.rng.random::<f64>())
            };
            (h, target, lose_req, lose_reply, delay)
        };
        let lost = || TransportError::Network(target, "message lost".into());
        if lose_req {
            tokio::time::sleep(timeout.min(delay + Duration::from_millis(10))).await;
            return Err(lost());
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let reply = tokio::time::timeout(timeout, handler.handle(rpc))
            .await
            .map_err(|_| TransportError::Network(target, "timed out".into()))?;
        // A partition that started while the request was in flight eats the reply.
        if lose_reply || self.state.lock().faults.blocked(from, target) {
            return Err(lost());
        }
        Ok(reply)
    }
}
