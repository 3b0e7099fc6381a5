//! The group coordinator: classic consumer groups (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) and committed offsets.
//!
//! **Where state lives.** The coordinator of a group is the owner of the
//! group's partition of the internal topic `__consumer_offsets` (Kafka's
//! hash of the group id, [`skiff_metadata::state::ClusterState::coordinator_for`]). That partition
//! is an ordinary storage stream opened by the partition manager, so it is
//! durable through the WAL and the object store like any topic. Group
//! metadata and committed offsets are records in it, in Kafka's own
//! key/value schema ([`records`]), appended through the same
//! `StreamHandle::append_with` path Produce uses; a commit is acknowledged
//! only once its record is durable.
//!
//! **Replay.** In memory, each group ([`group::Group`]) holds members,
//! generation and offsets. The first request for a group whose partition
//! this coordinator has not loaded at the stream's current epoch replays the
//! partition from its start (last record per key wins; a null value is a
//! tombstone), under the partition's write lock, before answering. A new
//! epoch (the partition reopened, e.g. after a restart) reloads it.
//!
//! **Consumer protocol** (KIP-848) groups live in [`consumer`]: the
//! coordinator assigns partitions itself through ConsumerGroupHeartbeat.
//! Their offsets are kept in the classic [`group::Group`] of the same id,
//! so commits, fetches and deletes share one path.
//!
//! **Compaction and cleanup** ([`compaction`]): a partition that grew enough
//! gets its live state re-appended and its stream trimmed to that rewrite,
//! so replay stays short; offsets of deleted topics and expired offsets of
//! empty groups become tombstones. The internal topic is created with
//! `retention.ms=-1` so time retention never drops offsets.
//!
//! The rebalance state machine itself is in [`group`]; a background task
//! ([`run`]) expires sessions and finishes timed-out rebalances.

pub mod compaction;
pub mod config;
pub mod consumer;
pub mod group;
pub mod records;
pub mod txn_offsets;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use skiff_storage::PendingAppend;
use skiff_wire::kafka_protocol::error::ResponseError as E;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::cluster::now_ms;
use crate::errors::KafkaError;
use crate::internal_topic::{self, Entry, LoadState};
use crate::partitions::Partition;

pub use config::GroupConfig;
use group::{Group, GroupState, JoinRequest, JoinResult, Reply, SyncResult};
use records::{OffsetValue, RecordKey};
use txn_offsets::TxnOffsets;

/// The internal topic holding group state and offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often sessions and rebalance timeouts are checked.
const TICK: Duration = Duration::from_millis(100);

/// How often partitions are checked for compaction.
const COMPACTION_CHECK: Duration = Duration::from_secs(1);

/// A group-level error code for a whole request.
pub type Code = i16;

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// What DescribeGroups and the admin CLI show of a group.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// Kafka's state name (classic or consumer-protocol states).
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// member id, instance id, client id, host, metadata, assignment
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
}

/// The coordinator for every group whose offsets partition this broker owns.
#[derive(Debug, Default)]
pub struct GroupCoordinator {
    cfg: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    /// Replayed partitions and the per-partition lock that serialises
    /// replay and appends (so records reach memory in stream order).
    load: LoadState,
    /// Transactional offset commits awaiting their producer's marker.
    txn_offsets: TxnOffsets,
    /// Consumer-protocol groups (lock after `groups` when both are held).
    consumer: Mutex<HashMap<String, consumer::ConsumerGroup>>,
    /// Per offsets partition: where its last compaction began.
    compacted: Mutex<HashMap<u32, compaction::Compacted>>,
}

impl GroupCoordinator {
    pub fn new(cfg: GroupConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.cfg
    }

    fn lock_for(&self, partition: u32) -> Arc<tokio::sync::Mutex<()>> {
        self.load.lock_for(partition)
    }

    /// Create `__consumer_offsets` if it does not exist yet.
    pub async fn ensure_topic(&self, broker: &Broker) -> Result<(), KafkaError> {
        internal_topic::ensure(broker, OFFSETS_TOPIC, self.cfg.offsets_topic_num_partitions).await
    }

    /// The coordinator of `key`: its offsets partition and owner, or the
    /// error FindCoordinator should answer.
    pub async fn find(&self, broker: &Broker, key: &str) -> Result<(u32, i32), KafkaError> {
        internal_topic::find(
            broker,
            OFFSETS_TOPIC,
            self.cfg.offsets_topic_num_partitions,
            key,
        )
        .await
    }

    /// This broker's open, replayed offsets partition for `group`.
    pub(crate) async fn partition(
        &self,
        broker: &Broker,
        group: &str,
    ) -> Result<Arc<Partition>, Code> {
        let p = internal_topic::open(broker, OFFSETS_TOPIC, group).await?;
        self.load(&p).await.map_err(|e| {
            warn!(partition = p.index, error = %e, "replaying group state failed");
            E::CoordinatorLoadInProgress.code()
        })?;
        Ok(p)
    }

    /// Replay `p` unless it was replayed at its current stream epoch.
    async fn load(&self, p: &Partition) -> Result<(), String> {
        let Some(_guard) = self.load.begin(p).await else {
            return Ok(());
        };
        self.replay(p).await?;
        self.load.finish(p);
        Ok(())
    }

    /// Rebuild the groups of one offsets partition from its records.
    async fn replay(&self, p: &Partition) -> Result<(), String> {
        let started = std::time::Instant::now();
        self.groups.lock().retain(|_, g| g.partition != p.index);
        self.consumer.lock().retain(|_, g| g.partition != p.index);
        self.compacted.lock().remove(&p.index);
        self.txn_offsets.clear_partition(p.index);
        let count = internal_topic::replay(p, |entry| match entry {
            Entry::Record { key, value, txn } => match RecordKey::decode(key) {
                Ok(k) => match txn {
                    Some((producer, epoch)) => {
                        self.txn_offsets.add(p.index, producer, epoch, k, value)
                    }
                    None => self.apply(p.index, k, value),
                },
                Err(e) => warn!(error = %e, "skipping an undecodable offsets record"),
            },
            Entry::Marker {
                producer_id,
                producer_epoch,
                commit,
            } => {
                for (k, v) in
                    self.txn_offsets
                        .complete(p.index, producer_id, producer_epoch, commit)
                {
                    self.apply(p.index, k, v);
                }
            }
        })
        .await?;
        info!(
            partition = p.index,
            records = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "replayed group state"
        );
        Ok(())
    }

    /// Apply one record (replay, or after appending it).
    fn apply(&self, partition: u32, key: RecordKey, value: Option<Bytes>) {
        if let RecordKey::ConsumerGroup { group } = key {
            return self.apply_consumer(partition, group, value);
        }
        let mut groups = self.groups.lock();
        let id = key.group().to_string();
        match key {
            RecordKey::Offset {
                topic,
                partition: p,
                ..
            } => {
                let value = value.and_then(|v| OffsetValue::decode(v).ok());
                let g = groups
                    .entry(id.clone())
                    .or_insert_with(|| Group::new(id, partition));
                match value {
                    Some(v) => {
                        g.offsets.insert((topic, p), v);
                    }
                    None => {
                        g.offsets.remove(&(topic, p));
                    }
                }
            }
            RecordKey::Group { .. } => {
                match value.and_then(|v| records::GroupValue::decode(v).ok()) {
                    Some(v) => groups
                        .entry(id.clone())
                        .or_insert_with(|| Group::new(id, partition))
                        .restore(v, Instant::now()),
                    None => {
                        groups.remove(&id);
                    }
                }
            }
            RecordKey::ConsumerGroup { .. } => {}
        }
    }

    /// Append records to an offsets partition; returns once queued (the
    /// caller awaits durability). Call with the partition's lock held.
    async fn append(
        &self,
        p: &Partition,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<PendingAppend, Code> {
        internal_topic::append(p, records, None).await
    }

    /// Append and apply `records`, then wait until they are durable.
    async fn write(
        &self,
        p: &Partition,
        records: Vec<(RecordKey, Option<Bytes>)>,
    ) -> Result<(), Code> {
        if records.is_empty() {
            return Ok(());
        }
        let encoded: Vec<(Bytes, Option<Bytes>)> = records
            .iter()
            .map(|(k, v)| (k.encode(), v.clone()))
            .collect();
        let pending = {
            let lock = self.lock_for(p.index);
            let _guard = lock.lock().await;
            let pending = self.append(p, &encoded).await?;
            for (k, v) in records {
                self.apply(p.index, k, v);
            }
            pending
        };
        pending
            .await
            .map(|_| ())
            .map_err(|_| E::NotCoordinator.code())
    }

    /// Write the group's metadata record (after a generation became stable
    /// or the group emptied).
    async fn persist(&self, broker: &Broker, group: &str) -> Result<(), Code> {
        let p = self.partition(broker, group).await?;
        let value = {
            let groups = self.groups.lock();
            match groups.get(group) {
                Some(g) => g.snapshot(now_ms() as i64).encode(),
                None => return Ok(()),
            }
        };
        let key = RecordKey::Group {
            group: group.to_string(),
        };
        // Persisting the metadata must not overwrite in-memory state it was
        // taken from: write the record without re-applying it.
        let pending = {
            let lock = self.lock_for(p.index);
            let _guard = lock.lock().await;
            self.append(&p, &[(key.encode(), Some(value))]).await?
        };
        pending
            .await
            .map(|_| ())
            .map_err(|_| E::NotCoordinator.code())
    }

    /// Run `f` on the group (created empty when missing and `create`).
    fn with_group<R>(
        &self,
        id: &str,
        partition: u32,
        create: bool,
        f: impl FnOnce(&mut Group) -> R,
    ) -> Option<R> {
        let mut groups = self.groups.lock();
        if create && !groups.contains_key(id) {
            groups.insert(id.to_string(), Group::new(id.to_string(), partition));
        }
        groups.get_mut(id).map(f)
    }

    /// JoinGroup: the answer now or a receiver of it.
    pub async fn join(&self, broker: &Broker, group: &str, req: JoinRequest) -> Reply<JoinResult> {
        let member = req.member_id.clone();
        if group.is_empty() {
            return Reply::Now(JoinResult::error(E::InvalidGroupId, &member));
        }
        let p = match self.partition(broker, group).await {
            Ok(p) => p,
            Err(code) => {
                return Reply::Now(JoinResult {
                    error: code,
                    generation: -1,
                    member_id: member,
                    ..JoinResult::default()
                });
            }
        };
        if self.is_active_consumer_group(group) {
            return Reply::Now(JoinResult::error(E::InconsistentGroupProtocol, &member));
        }
        let mut persist = false;
        // Only a first join creates a group.
        let create = req.member_id.is_empty();
        let reply = self
            .with_group(group, p.index, create, |g| {
                g.join(req, Instant::now(), &self.cfg, &mut persist)
            })
            .unwrap_or(Reply::Now(JoinResult::error(E::UnknownMemberId, &member)));
        if persist {
            let _ = self.persist(broker, group).await;
        }
        reply
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        broker: &Broker,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Reply<SyncResult> {
        if let Err(code) = self.partition(broker, group).await {
            return Reply::Now(SyncResult {
                error: code,
                ..SyncResult::default()
            });
        }
        let mut persist = false;
        let reply = self
            .with_group(group, 0, false, |g| {
                g.sync(
                    member,
                    instance,
                    generation,
                    protocol_type,
                    protocol,
                    assignments,
                    Instant::now(),
                    &mut persist,
                )
            })
            .unwrap_or(Reply::Now(SyncResult::error(E::UnknownMemberId)));
        if persist && let Err(code) = self.persist(broker, group).await {
            warn!(group, code, "could not persist group metadata");
        }
        reply
    }

    pub async fn heartbeat(
        &self,
        broker: &Broker,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Code {
        if let Err(code) = self.partition(broker, group).await {
            return code;
        }
        self.with_group(group, 0, false, |g| {
            g.heartbeat(member, instance, generation, Instant::now())
        })
        .unwrap_or(E::UnknownMemberId.code())
    }

    /// LeaveGroup for several members: a code per member.
    pub async fn leave(
        &self,
        broker: &Broker,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Code>, Code> {
        self.partition(broker, group).await?;
        let mut persist = false;
        let codes = self
            .with_group(group, 0, false, |g| {
                members
                    .iter()
                    .map(|(m, i)| g.leave(m, i.as_deref(), Instant::now(), &mut persist))
                    .collect()
            })
            .unwrap_or_else(|| vec![E::UnknownMemberId.code(); members.len()]);
        if persist {
            let _ = self.persist(broker, group).await;
        }
        Ok(codes)
    }

    /// OffsetCommit: a code per entry, or a code for the whole request.
    pub async fn commit(
        &self,
        broker: &Broker,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        entries: &[CommitEntry],
    ) -> Result<Vec<Code>, Code> {
        if group.is_empty() {
            return Err(E::InvalidGroupId.code());
        }
        let p = self.partition(broker, group).await?;
        let simple = generation < 0 && member.is_empty();
        let check = match self.consumer_check(group, member, generation) {
            Some(code) => code,
            None => self
                .with_group(group, p.index, simple, |g| {
                    g.check_commit(member, instance, generation)
                })
                .unwrap_or(E::IllegalGeneration.code()),
        };
        if check != 0 {
            return Err(check);
        }
        let (codes, records) = self.offset_records(broker, group, entries);
        let result = self.write(&p, records).await;
        Ok(with_write_result(codes, result))
    }

    /// The records of an offset commit and a code per entry (0 for the
    /// entries that became records).
    fn offset_records(
        &self,
        broker: &Broker,
        group: &str,
        entries: &[CommitEntry],
    ) -> (Vec<Code>, Vec<(RecordKey, Option<Bytes>)>) {
        let now = now_ms() as i64;
        let mut codes = Vec::with_capacity(entries.len());
        let mut records = Vec::new();
        for e in entries {
            let metadata = e.metadata.clone().unwrap_or_default();
            let known = broker.cluster.read(|s| {
                u32::try_from(e.partition)
                    .ok()
                    .and_then(|i| s.partition(&e.topic, i))
                    .is_some()
            });
            let code = if metadata.len() > self.cfg.offset_metadata_max_bytes {
                E::OffsetMetadataTooLarge.code()
            } else if !known {
                E::UnknownTopicOrPartition.code()
            } else {
                records.push((
                    RecordKey::Offset {
                        group: group.to_string(),
                        topic: e.topic.clone(),
                        partition: e.partition,
                    },
                    Some(
                        OffsetValue {
                            offset: e.offset,
                            leader_epoch: e.leader_epoch,
                            metadata,
                            commit_timestamp: now,
                        }
                        .encode(),
                    ),
                ));
                0
            };
            codes.push(code);
        }
        (codes, records)
    }

    /// OffsetFetch: committed offsets of `topics` (all when `None`).
    pub async fn fetch_offsets(
        &self,
        broker: &Broker,
        group: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<(i32, Option<OffsetValue>)>)>, Code> {
        self.partition(broker, group).await?;
        let groups = self.groups.lock();
        let offsets = groups.get(group).map(|g| &g.offsets);
        Ok(match topics {
            Some(ts) => ts
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| (p, offsets.and_then(|o| o.get(&(t.clone(), p))).cloned()))
                        .collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> =
                    BTreeMap::new();
                for ((t, p), v) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(t.clone())
                        .or_default()
                        .push((*p, Some(v.clone())));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// DescribeGroups for one group (`None`: no such group).
    pub async fn describe(
        &self,
        broker: &Broker,
        group: &str,
    ) -> Result<Option<GroupDescription>, Code> {
        self.partition(broker, group).await?;
        if let Some(d) = self.describe_consumer_classic(broker, group) {
            return Ok(Some(d));
        }
        let groups = self.groups.lock();
        Ok(groups.get(group).map(|g| GroupDescription {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if g.state == GroupState::Stable {
                g.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        m.metadata(g.protocol.as_deref()),
                        m.assignment.clone(),
                    )
                })
                .collect(),
        }))
    }

    /// Every group this broker coordinates: id, protocol type, state.
    pub async fn list(&self, broker: &Broker) -> Vec<ListedGroup> {
        // Load every offsets partition this broker owns first.
        for index in internal_topic::owned_partitions(broker, OFFSETS_TOPIC) {
            if let Ok(p) = broker.partitions.get(OFFSETS_TOPIC, index as i32).await
                && let Err(e) = self.load(&p).await
            {
                warn!(partition = index, error = %e, "replaying group state failed");
            }
        }
        let groups = self.groups.lock();
        let consumer = self.consumer.lock();
        let mut out: Vec<ListedGroup> = groups
            .values()
            .filter(|g| g.state != GroupState::Dead && !consumer.contains_key(&g.id))
            .map(|g| ListedGroup {
                id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
                group_type: "classic",
            })
            .chain(consumer.values().map(|g| ListedGroup {
                id: g.id.clone(),
                protocol_type: "consumer".to_string(),
                state: g.state(),
                group_type: "consumer",
            }))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// DeleteGroups for one group: only empty groups can be deleted.
    pub async fn delete_group(&self, broker: &Broker, group: &str) -> Code {
        let p = match self.partition(broker, group).await {
            Ok(p) => p,
            Err(c) => return c,
        };
        let tombstones = {
            let groups = self.groups.lock();
            let consumer = self.consumer.lock();
            let c = consumer.get(group);
            if c.is_some_and(|c| !c.members.is_empty()) {
                return E::NonEmptyGroup.code();
            }
            let g = groups.get(group);
            if g.is_none() && c.is_none() {
                return E::GroupIdNotFound.code();
            }
            if g.is_some_and(|g| !g.is_empty()) {
                return E::NonEmptyGroup.code();
            }
            let mut t: Vec<(RecordKey, Option<Bytes>)> = g
                .iter()
                .flat_map(|g| g.offsets.keys())
                .map(|(topic, partition)| {
                    (
                        RecordKey::Offset {
                            group: group.to_string(),
                            topic: topic.clone(),
                            partition: *partition,
                        },
                        None,
                    )
                })
                .collect();
            if g.is_some() {
                t.push((
                    RecordKey::Group {
                        group: group.to_string(),
                    },
                    None,
                ));
            }
            if c.is_some() {
                t.push((
                    RecordKey::ConsumerGroup {
                        group: group.to_string(),
                    },
                    None,
                ));
            }
            t
        };
        match self.write(&p, tombstones).await {
            Ok(()) => {
                self.groups.lock().remove(group);
                self.consumer.lock().remove(group);
                0
            }
            Err(c) => c,
        }
    }

    /// OffsetDelete: a code per partition, or a group-level code.
    pub async fn delete_offsets(
        &self,
        broker: &Broker,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Code>, Code> {
        let p = self.partition(broker, group).await?;
        let (codes, tombstones) = {
            let groups = self.groups.lock();
            let g = groups.get(group).ok_or(E::GroupIdNotFound.code())?;
            let consumer = self.consumer.lock();
            let c = consumer.get(group).filter(|c| !c.members.is_empty());
            let mut codes = Vec::new();
            let mut tombstones = Vec::new();
            for (topic, partition) in partitions {
                if (g.state != GroupState::Empty && g.subscribed(topic))
                    || c.is_some_and(|c| c.subscribes(topic))
                {
                    codes.push(E::GroupSubscribedToTopic.code());
                } else {
                    codes.push(0);
                    if g.offsets.contains_key(&(topic.clone(), *partition)) {
                        tombstones.push((
                            RecordKey::Offset {
                                group: group.to_string(),
                                topic: topic.clone(),
                                partition: *partition,
                            },
                            None,
                        ));
                    }
                }
            }
            (codes, tombstones)
        };
        self.write(&p, tombstones).await?;
        Ok(codes)
    }

    /// One pass of timers over every group; returns the groups whose
    /// metadata changed.
    fn tick(&self) -> Vec<String> {
        let now = Instant::now();
        let mut groups = self.groups.lock();
        let mut changed = Vec::new();
        for g in groups.values_mut() {
            let mut persist = false;
            g.tick(now, &mut persist);
            if persist {
                changed.push(g.id.clone());
            }
        }
        changed
    }
}

/// The entries' codes after writing their records: a failed write turns
/// every accepted entry's code into the write's.
fn with_write_result(codes: Vec<Code>, result: Result<(), Code>) -> Vec<Code> {
    match result {
        Ok(()) => codes,
        Err(code) => codes
            .into_iter()
            .map(|c| if c == 0 { code } else { c })
            .collect(),
    }
}

/// Expire sessions and finish timed-out rebalances until `shutdown`.
pub async fn run(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_compaction = Instant::now() + COMPACTION_CHECK;
    let mut next_cleanup = Instant::now() + broker.groups.cfg.offsets_retention_check_interval;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        for group in broker.groups.tick() {
            if let Err(code) = broker.groups.persist(&broker, &group).await {
                warn!(group, code, "could not persist group metadata");
            }
        }
        for (group, _) in broker.groups.consumer_tick() {
            broker.groups.persist_consumer_group(&broker, &group).await;
        }
        let now = Instant::now();
        if now >= next_compaction {
            next_compaction = now + COMPACTION_CHECK;
            broker.groups.compact_owned(&broker).await;
        }
        if now >= next_cleanup {
            next_cleanup = now + broker.groups.cfg.offsets_retention_check_interval;
            broker.groups.cleanup(&broker).await;
        }
    }
}
