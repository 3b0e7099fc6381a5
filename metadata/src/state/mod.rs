//! The replicated cluster state and its read queries.
//!
//! [`ClusterState`] is a plain value: [`ClusterState::apply`] (in `apply.rs`)
//! is a deterministic function of the state and one [`Command`], so every
//! replica that applies the same log holds the same state. Reads never change
//! it. Collections are `BTreeMap`s so that iteration order and snapshots are
//! deterministic too.

mod apply;
mod objects;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skiff_common::{BrokerId, ObjectId, StreamEpoch, StreamId};
use uuid::Uuid;

use crate::command::{
    BrokerState, Command, CommandError, Listener, ObjectKind, PartitionState, Response,
};

pub use objects::{ObjectInfo, ObjectSlice, StreamMeta};

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: BrokerId,
    /// Incarnation: a fresh, cluster-wide increasing number per registration.
    pub epoch: u64,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    pub state: BrokerState,
    /// Time of the last registration or heartbeat (proposer's clock).
    pub last_heartbeat_ms: u64,
}

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub stream: StreamId,
    /// The current or (when `Offline`) last owner.
    pub owner: Option<BrokerId>,
    /// Equals the stream's epoch; doubles as Kafka's leader epoch.
    pub epoch: StreamEpoch,
    pub state: PartitionState,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    /// Kafka config names (`retention.ms`, `cleanup.policy`, ...).
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionInfo>,
}

/// The stream -> object index of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    pub epoch: u64,
    pub start: u64,
    pub end: u64,
    /// start offset -> (end offset, object)
    pub slices: BTreeMap<u64, (u64, ObjectId)>,
}

/// A committed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectState {
    pub kind: ObjectKind,
    pub size: u64,
    pub committed_at_ms: u64,
    pub ranges: Vec<(StreamId, u64, u64)>,
    /// Set when the object was replaced or fully trimmed.
    pub deleted_at_ms: Option<u64>,
}

/// A set of ids kept as disjoint `[start, end)` ranges, so reserving a
/// block of a million ids costs one entry, not a million.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRanges(BTreeMap<u64, u64>);

impl IdRanges {
    /// Add `[start, end)`, which must not overlap what is held (ids are
    /// handed out once).
    pub fn insert_range(&mut self, start: u64, end: u64) {
        if start < end {
            self.0.insert(start, end);
        }
    }

    pub fn contains(&self, id: u64) -> bool {
        self.0
            .range(..=id)
            .next_back()
            .is_some_and(|(_, end)| id < *end)
    }

    /// Remove one id, splitting its range.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some((&start, &end)) = self.0.range(..=id).next_back() else {
            return false;
        };
        if id >= end {
            return false;
        }
        self.0.remove(&start);
        if start < id {
            self.0.insert(start, id);
        }
        if id + 1 < end {
            self.0.insert(id + 1, end);
        }
        true
    }

    /// Number of ranges held.
    pub fn ranges(&self) -> usize {
        self.0.len()
    }
}

/// One change, as published on the watch stream after it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    BrokerRegistered {
        broker: BrokerId,
        epoch: u64,
    },
    BrokerStateChanged {
        broker: BrokerId,
        state: BrokerState,
    },
    TopicCreated {
        name: String,
        topic_id: Uuid,
    },
    TopicDeleted {
        name: String,
        topic_id: Uuid,
    },
    TopicConfigsChanged {
        name: String,
    },
    PartitionsAdded {
        name: String,
        total: u32,
    },
    /// Ownership, epoch or state of a partition changed.
    Partition {
        topic: String,
        partition: u32,
        info: PartitionInfo,
    },
    /// The whole state was replaced (snapshot install) or the watcher fell
    /// behind: re-read everything.
    Resync,
}

/// The whole replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster_id: Option<Uuid>,
    pub features: BTreeMap<String, u16>,
    pub brokers: BTreeMap<BrokerId, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
    pub topic_names: BTreeMap<Uuid, String>,
    pub streams: BTreeMap<StreamId, StreamState>,
    pub objects: BTreeMap<ObjectId, ObjectState>,
    /// Reserved but not yet committed object ids.
    pub reserved: IdRanges,
    pub next_object_id: u64,
    pub next_stream_id: u64,
    pub next_producer_id: u64,
    pub next_broker_epoch: u64,
}

impl ClusterState {
    /// Apply one command: validated first; on error nothing changes.
    /// Returns the response and the changes to publish.
    pub fn apply(&mut self, cmd: &Command) -> (Response, Vec<Change>) {
        let mut changes = Vec::new();
        let resp = self.apply_inner(cmd, &mut changes);
        if resp.is_err() {
            changes.clear();
        }
        (resp, changes)
    }

    /// The live broker entry for a request carrying `broker_epoch`.
    pub fn check_broker(
        &self,
        broker: BrokerId,
        broker_epoch: u64,
    ) -> Result<&BrokerInfo, CommandError> {
        let b = self
            .brokers
            .get(&broker)
            .ok_or(CommandError::UnknownBroker(broker))?;
        if b.epoch != broker_epoch {
            return Err(CommandError::StaleBrokerEpoch {
                broker,
                current: b.epoch,
                held: broker_epoch,
            });
        }
        if b.state == BrokerState::Fenced {
            return Err(CommandError::BrokerFenced(broker));
        }
        Ok(b)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicInfo> {
        self.topic_names.get(&id).and_then(|n| self.topics.get(n))
    }

    /// A partition by topic name and index.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionInfo> {
        self.topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
    }

    /// Every partition `broker` currently owns (online or moving away).
    pub fn partitions_owned_by(&self, broker: BrokerId) -> Vec<(String, u32, PartitionInfo)> {
        let mut out = Vec::new();
        for t in self.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.owner == Some(broker) && p.state != PartitionState::Offline {
                    out.push((t.name.clone(), i as u32, p.clone()));
                }
            }
        }
        out
    }

    /// The coordinator partition of a consumer group or transactional id:
    /// Kafka's `abs(javaStringHashCode(key)) % partitions`, so placement
    /// matches what Kafka tooling expects.
    pub fn coordinator_partition(key: &str, partitions: u32) -> u32 {
        if partitions == 0 {
            return 0;
        }
        let mut h: i32 = 0;
        for unit in key.encode_utf16() {
            h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
        }
        // Kafka's Utils.abs: i32::MIN maps to 0.
        let abs = if h == i32::MIN { 0 } else { h.abs() };
        abs as u32 % partitions
    }

    /// The broker owning the coordinator partition of `key` in the internal
    /// topic `internal_topic` (e.g. `__consumer_offsets`).
    pub fn coordinator_for(&self, internal_topic: &str, key: &str) -> Option<(u32, BrokerId)> {
        let t = self.topics.get(internal_topic)?;
        let p = Self::coordinator_partition(key, t.partitions.len() as u32);
        let info = t.partitions.get(p as usize)?;
        match info.state {
            PartitionState::Offline => None,
            _ => info.owner.map(|b| (p, b)),
        }
    }
}

#[cfg(test)]
mod tests;
