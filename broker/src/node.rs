//! Starting and stopping a broker process (`skiff serve`).
//!
//! Start-up order matters for durability:
//!
//! 1. The metadata node starts (single voter by default) and becomes ready.
//! 2. The storage engine opens: WAL recovery re-commits every acknowledged
//!    byte not yet in objects, at the epochs it was written under — before
//!    any partition epoch moves.
//! 3. The broker registers (a new incarnation epoch) and starts its
//!    heartbeat; the controller duties place partitions that have no owner.
//! 4. The partition manager opens the streams this broker owns; then the
//!    Kafka listener accepts clients and `/readyz` turns ready.
//!
//! Shutdown runs the other way: stop accepting, let connections finish,
//! close partitions (their WAL tails are committed into objects), flush and
//! stop storage, stop metadata.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use skiff_common::BrokerId;
use skiff_metadata::node::MetadataNode;
use skiff_storage::Storage;
use skiff_storage::compaction::Compactor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::broker::{Broker, NodeIdentity};
use crate::catalog_adapter::MetadataCatalog;
use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::controller;
use crate::fetch_session::FetchSessionCache;
use crate::http::{self, Readiness};
use crate::metrics::{Metrics, StorageGauges};
use crate::partitions::PartitionManager;
use crate::raft_backend::RaftBackend;
use crate::router::Router;
use crate::{retention, server};

/// Storage figures for `/metrics`.
struct StorageFigures(Arc<Storage>);

impl StorageGauges for StorageFigures {
    fn wal_unuploaded_bytes(&self) -> u64 {
        self.0.unuploaded_bytes()
    }
    fn upload_lag_seconds(&self) -> f64 {
        self.0.upload_lag().as_secs_f64()
    }
    fn cache_hits_misses(&self) -> (u64, u64) {
        let c = self.0.cache_counters();
        (c.memory_hits + c.disk_hits, c.misses)
    }
}

/// Start this broker's metadata node: a single voter with no network by
/// default, or a member of a multi-node quorum when `[metadata]` sets
/// `listen_addr` and `initial_voters` or `join`.
async fn start_metadata(config: &BrokerConfig) -> anyhow::Result<MetadataNode> {
    MetadataNode::start(config.metadata.clone())
        .await
        .context("metadata node failed to start")
}

/// A running broker.
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    pub kafka_addr: std::net::SocketAddr,
    pub http_addr: Option<std::net::SocketAddr>,
    metadata: MetadataNode,
    storage: Arc<Storage>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    ready: Readiness,
}

/// Start a broker with `config`.
pub async fn start(config: BrokerConfig) -> anyhow::Result<RunningBroker> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let metrics = Metrics::new();
    let ready = Readiness::default();

    // The HTTP endpoint first, so /healthz answers during recovery.
    let http_addr = if config.http_listen.is_empty() {
        None
    } else {
        let l = TcpListener::bind(&config.http_listen)
            .await
            .with_context(|| format!("cannot listen on http_listen {}", config.http_listen))?;
        let addr = l.local_addr()?;
        tasks.spawn(http::serve(
            l,
            metrics.clone(),
            ready.clone(),
            shutdown.clone(),
        ));
        Some(addr)
    };
    let kafka_listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let kafka_addr = kafka_listener.local_addr()?;

    if config.unsafe_ack_before_fsync {
        warn!(
            "unsafe_ack_before_fsync is on: produce acknowledgements do not wait for the WAL; acknowledged writes WILL be lost on a crash (testing only)"
        );
    }
    info!(data_dir = %config.data_dir.display(), "starting metadata node");
    let metadata = start_metadata(&config).await?;
    metadata
        .wait_ready(Duration::from_secs(30))
        .await
        .context("metadata quorum not ready")?;
    let cluster = Cluster::new(Arc::new(RaftBackend::new(
        metadata.clone(),
        shutdown.clone(),
    )));

    info!("opening storage (WAL recovery)");
    let built = skiff_storage::store::build_store(&config.object_store, &config.data_dir)
        .context("object store")?;
    let catalog = Arc::new(MetadataCatalog::new(cluster.clone()));
    let mut storage_config = config.storage.clone();
    storage_config
        .block_cache
        .resolve_disk_tier(config.object_store.is_local());
    let storage = Arc::new(
        Storage::open(storage_config, built.store.clone(), catalog.clone())
            .await
            .context("storage failed to open")?,
    );
    metrics.set_storage_source(Arc::new(StorageFigures(storage.clone())));

    let (host, port) = config.advertised()?;
    let node = NodeIdentity::new(BrokerId(config.node_id), host, port);
    let partitions = Arc::new(PartitionManager::new(
        node.id,
        storage.clone(),
        cluster.clone(),
        config.clone(),
    ));
    let producer_ids =
        crate::producer_ids::ProducerIdManager::new(cluster.clone(), node.id, node.epoch_cell());
    let broker = Arc::new(Broker {
        router: Router::with_all_handlers(),
        metrics,
        cluster,
        node,
        partitions: partitions.clone(),
        groups: crate::groups::GroupCoordinator::new(config.groups.clone()),
        transactions: crate::transactions::TransactionCoordinator::new(
            crate::transactions::TxnConfig {
                num_partitions: config.transaction_state_log_num_partitions,
                max_timeout_ms: config.transaction_max_timeout_ms,
            },
        ),
        producer_ids,
        fetch_sessions: FetchSessionCache::new(
            config.max_incremental_fetch_session_cache_slots,
            crate::fetch_session::DEFAULT_EVICTION_AFTER,
        ),
        shutdown: shutdown.clone(),
        config,
    });
    // Register this incarnation (after WAL recovery: see the module docs).
    controller::register(&broker)
        .await
        .map_err(|e| anyhow::anyhow!("broker registration failed: {e}"))?;

    tasks.spawn(controller::heartbeat(broker.clone(), shutdown.clone()));
    tasks.spawn(controller::place_offline_partitions(
        broker.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(retention::run(broker.clone(), shutdown.clone()));
    if broker.config.compaction.enabled {
        let compactor = Compactor::new(
            catalog,
            built.store.clone(),
            broker.config.compaction.clone(),
        );
        let token = shutdown.clone();
        tasks.spawn(async move {
            let _ = compactor.spawn(token).await;
        });
    }
    tasks.spawn(crate::groups::run(broker.clone(), shutdown.clone()));
    tasks.spawn(crate::transactions::run(broker.clone(), shutdown.clone()));
    partitions.reconcile().await;
    tasks.spawn(partitions.clone().run(shutdown.clone()));
    tasks.spawn(partitions.clone().maintain_producers(shutdown.clone()));
    tasks.spawn(server::run(
        broker.clone(),
        kafka_listener,
        shutdown.clone(),
    ));
    ready.set_ready(true);
    info!(%kafka_addr, http = ?http_addr, "skiff broker ready");
    Ok(RunningBroker {
        broker,
        kafka_addr,
        http_addr,
        metadata,
        storage,
        tasks,
        shutdown,
        ready,
    })
}

impl RunningBroker {
    /// Graceful stop: see the module docs for the order.
    pub async fn stop(self) {
        info!("shutting down");
        self.ready.set_ready(false);
        self.shutdown.cancel();
        self.tasks.close();
        let grace = self.broker.config.shutdown_grace;
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("background tasks did not stop within {grace:?}");
        }
        self.broker.partitions.close_all().await;
        self.storage.shutdown().await;
        self.metadata.shutdown().await;
        info!("stopped");
    }
}

/// Run until SIGINT or SIGTERM, then stop gracefully.
pub async fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let running = start(config).await?;
    wait_for_signal().await;
    running.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
        _ = term.recv() => info!("SIGTERM received"),
    }
}
