//! [`Broker`]: the state every handler shares — configuration, the router,
//! metrics, cluster metadata, this node's identity and its partitions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use skiff_common::BrokerId;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::groups::GroupCoordinator;
use crate::metrics::Metrics;
use crate::partitions::PartitionManager;
use crate::producer_ids::ProducerIdManager;
use crate::router::Router;
use crate::transactions::TransactionCoordinator;

/// This broker's identity in the cluster.
#[derive(Debug)]
pub struct NodeIdentity {
    pub id: BrokerId,
    /// The incarnation epoch from registration; requests to metadata that
    /// carry an older one are fenced.
    epoch: Arc<AtomicU64>,
    /// Advertised Kafka listener.
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl NodeIdentity {
    pub fn new(id: BrokerId, host: String, port: i32) -> Self {
        Self {
            id,
            epoch: Arc::new(AtomicU64::new(0)),
            host,
            port,
            rack: None,
        }
    }
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }
    /// The epoch cell, for components that send it to metadata.
    pub fn epoch_cell(&self) -> Arc<AtomicU64> {
        self.epoch.clone()
    }
    pub fn set_epoch(&self, e: u64) {
        self.epoch.store(e, Ordering::Release);
    }
}

/// Shared broker state.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub router: Router,
    pub metrics: Metrics,
    pub cluster: Cluster,
    pub node: NodeIdentity,
    pub partitions: Arc<PartitionManager>,
    /// Consumer groups and committed offsets.
    pub groups: GroupCoordinator,
    /// Transactional ids and the two-phase end of transactions.
    pub transactions: TransactionCoordinator,
    /// Producer ids for InitProducerId.
    pub producer_ids: ProducerIdManager,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: FetchSessionCache,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
}

impl Broker {
    /// This broker's id as Kafka's i32.
    pub fn id(&self) -> i32 {
        self.node.id.0
    }
}
