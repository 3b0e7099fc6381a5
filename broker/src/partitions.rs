//! The partition manager: which partitions this broker serves, each backed by
//! an open storage stream at the epoch metadata gave it.
//!
//! It follows the metadata watch stream. When metadata says this broker owns
//! a partition (state online or moving away, owner = this broker), the stream
//! is opened at the partition's epoch; when ownership moves elsewhere or the
//! topic is deleted, the stream is closed (which commits its WAL tail into
//! objects, so the next owner continues exactly at the end offset). A request
//! for a partition that is being opened waits briefly for it rather than
//! bouncing the client.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use skiff_common::{BrokerId, StreamEpoch, StreamId};
use skiff_metadata::command::PartitionState;
use skiff_storage::{Storage, StreamHandle};
use skiff_wire::kafka_protocol::error::ResponseError;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::errors::KafkaError;
use crate::producer_state::PartitionProducers;
use crate::topic_config::TopicPolicy;

/// A topic-partition key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

/// A partition this broker serves.
#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: u32,
    pub stream: StreamHandle,
    /// Idempotent and transactional producers' state on this partition.
    pub producers: PartitionProducers,
    policy: RwLock<TopicPolicy>,
}

impl Partition {
    /// Kafka's leader epoch for this partition: the stream epoch.
    pub fn leader_epoch(&self) -> i32 {
        i32::try_from(self.stream.epoch().0).unwrap_or(i32::MAX)
    }
    /// The topic's enforced configs.
    pub fn policy(&self) -> TopicPolicy {
        self.policy.read().clone()
    }
    /// Log start offset.
    pub fn log_start_offset(&self) -> i64 {
        self.stream.start_offset() as i64
    }
    /// High watermark: with one durable copy, everything durable is committed.
    pub fn high_watermark(&self) -> i64 {
        self.stream.end_offset() as i64
    }
}

/// What metadata says about a partition, as far as this broker cares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    stream: StreamId,
    epoch: StreamEpoch,
    topic_id: Uuid,
    configs: BTreeMap<String, String>,
}

/// The partitions this broker serves.
pub struct PartitionManager {
    me: BrokerId,
    storage: Arc<Storage>,
    /// Where producer-state snapshots live (the storage's object store).
    snapshots: Arc<dyn object_store::ObjectStore>,
    cluster: Cluster,
    config: BrokerConfig,
    open: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Partitions being opened right now.
    opening: RwLock<HashSet<TopicPartition>>,
    changed: Notify,
}

impl std::fmt::Debug for PartitionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionManager")
            .field("open", &self.open.read().len())
            .finish()
    }
}

/// How long a request waits for a partition this broker is opening.
const OPEN_WAIT: Duration = Duration::from_secs(5);

impl PartitionManager {
    pub fn new(
        me: BrokerId,
        storage: Arc<Storage>,
        cluster: Cluster,
        config: BrokerConfig,
    ) -> Self {
        Self {
            me,
            snapshots: storage.store(),
            storage,
            cluster,
            config,
            open: RwLock::default(),
            opening: RwLock::default(),
            changed: Notify::new(),
        }
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Every partition currently served.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.open.read().values().cloned().collect()
    }

    /// The partition if this broker serves it, else the Kafka error a client
    /// should see: NOT_LEADER_OR_FOLLOWER when another broker owns it (or it
    /// is moving), UNKNOWN_TOPIC_OR_PARTITION when it does not exist.
    pub async fn get(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, KafkaError> {
        let unknown = || {
            KafkaError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist"),
            )
        };
        let index = u32::try_from(partition).map_err(|_| unknown())?;
        let key = TopicPartition {
            topic: topic.to_string(),
            partition: index,
        };
        let deadline = tokio::time::Instant::now() + OPEN_WAIT;
        loop {
            let notified = self.changed.notified();
            if let Some(p) = self.open.read().get(&key) {
                return Ok(p.clone());
            }
            let mine = self.cluster.read(|s| match s.partition(topic, index) {
                None => Err(unknown()),
                Some(p) if p.owner == Some(self.me) && p.state != PartitionState::Offline => Ok(()),
                Some(_) => Err(KafkaError::new(
                    ResponseError::NotLeaderOrFollower,
                    format!("broker {} does not lead {topic}-{partition}", self.me),
                )),
            });
            mine?;
            // Ours per metadata but not open yet: wait for the reconciler.
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(KafkaError::new(
                    ResponseError::NotLeaderOrFollower,
                    format!("{topic}-{partition} is still being opened"),
                ));
            }
        }
    }

    /// Follow metadata until `shutdown`: open what this broker owns, close
    /// what it no longer does. Runs once at start and on every change.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut changes = self.cluster.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            self.reconcile().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = changes.recv() => {
                    if let Err(broadcast::error::RecvError::Closed) = r {
                        break;
                    }
                    // Coalesce a burst of changes into one pass.
                    while changes.try_recv().is_ok() {}
                }
                _ = tick.tick() => {}
            }
        }
    }

    fn wanted(&self) -> HashMap<TopicPartition, Wanted> {
        self.cluster.read(|s| {
            let mut out = HashMap::new();
            for t in s.topics.values() {
                for (i, p) in t.partitions.iter().enumerate() {
                    if p.owner == Some(self.me) && p.state != PartitionState::Offline {
                        out.insert(
                            TopicPartition {
                                topic: t.name.clone(),
                                partition: i as u32,
                            },
                            Wanted {
                                stream: p.stream,
                                epoch: p.epoch,
                                topic_id: t.id,
                                configs: t.configs.clone(),
                            },
                        );
                    }
                }
            }
            out
        })
    }

    /// One pass: close what is no longer ours (or changed epoch), open what is.
    /// A partition whose stream failed (a WAL write error, e.g. a full disk)
    /// is closed and opened again at the same epoch: the close commits its
    /// durable data, the reopen continues after it and rebuilds the producer
    /// state, so it takes writes again once the WAL can write.
    pub async fn reconcile(&self) {
        let wanted = self.wanted();
        let to_close: Vec<(TopicPartition, Arc<Partition>)> = self
            .open
            .read()
            .iter()
            .filter(|(k, p)| {
                p.stream.is_failed()
                    || wanted
                        .get(*k)
                        .is_none_or(|w| w.epoch != p.stream.epoch() || w.stream != p.stream.id())
            })
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        for (key, p) in to_close {
            self.open.write().remove(&key);
            match p.stream.close().await {
                Ok(end) => {
                    self.snapshot_closed(&p, end).await;
                    info!(topic = %key.topic, partition = key.partition, end, "closed partition")
                }
                Err(e) => {
                    warn!(topic = %key.topic, partition = key.partition, error = %e, "closing partition")
                }
            }
        }
        for (key, w) in wanted {
            if let Some(p) = self.open.read().get(&key) {
                let policy = TopicPolicy::resolve(&w.configs, &self.config);
                if *p.policy.read() != policy {
                    *p.policy.write() = policy;
                }
                continue;
            }
            if !self.opening.write().insert(key.clone()) {
                continue;
            }
            let result =
                crate::producer_state::open(&self.storage, &self.snapshots, w.stream, w.epoch)
                    .await;
            self.opening.write().remove(&key);
            match result {
                Ok((stream, producers)) => {
                    debug!(topic = %key.topic, partition = key.partition, epoch = w.epoch.0, "opened partition");
                    let p = Arc::new(Partition {
                        topic: key.topic.clone(),
                        topic_id: w.topic_id,
                        index: key.partition,
                        stream,
                        producers,
                        policy: RwLock::new(TopicPolicy::resolve(&w.configs, &self.config)),
                    });
                    self.open.write().insert(key, p);
                }
                Err(e) => {
                    warn!(topic = %key.topic, partition = key.partition, error = %e, "could not open partition");
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Close every partition (graceful shutdown): their WAL tails are
    /// committed into objects.
    pub async fn close_all(&self) {
        let all: Vec<Arc<Partition>> = self.open.write().drain().map(|(_, p)| p).collect();
        for p in all {
            match p.stream.close().await {
                Ok(end) => self.snapshot_closed(&p, end).await,
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "closing partition")
                }
            }
        }
    }

    async fn snapshot_closed(&self, p: &Partition, end: u64) {
        crate::producer_state::snapshot_closed(&self.snapshots, &p.stream, &p.producers, end).await;
    }

    /// Snapshot producer state, expire idle producers: every
    /// `producer_state_snapshot_interval` until `shutdown`.
    pub async fn maintain_producers(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.producer_state_snapshot_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            for p in self.all() {
                crate::producer_state::maintain(
                    &self.snapshots,
                    &p.stream,
                    &p.producers,
                    &self.config,
                )
                .await;
            }
        }
    }
}
