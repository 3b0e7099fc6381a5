//! Validation and application of cluster commands (brokers, topics,
//! partitions, ids). Object index commands are in `objects.rs`.

use std::collections::BTreeMap;

use skiff_common::{BrokerId, StreamEpoch, StreamId};

use super::{BrokerInfo, Change, ClusterState, PartitionInfo, StreamState, TopicInfo};
use crate::command::{
    BrokerState, Command, CommandError, Listener, Output, PartitionState, Response, limits,
};

impl ClusterState {
    pub(super) fn apply_inner(&mut self, cmd: &Command, changes: &mut Vec<Change>) -> Response {
        if self.cluster_id.is_none()
            && !matches!(cmd, Command::InitCluster { .. } | Command::Batch(_))
        {
            return Err(CommandError::NotInitialized);
        }
        match cmd {
            Command::InitCluster { cluster_id } => {
                if self.cluster_id.is_some() {
                    return Err(CommandError::AlreadyInitialized);
                }
                self.cluster_id = Some(*cluster_id);
                Ok(Output::Done)
            }
            Command::RegisterBroker {
                broker,
                listeners,
                rack,
                now_ms,
            } => self.register_broker(*broker, listeners, rack, *now_ms, changes),
            Command::Heartbeat {
                broker,
                broker_epoch,
                now_ms,
            } => {
                self.check_broker(*broker, *broker_epoch)?;
                let b = self.brokers.get_mut(broker).expect("checked above");
                b.last_heartbeat_ms = b.last_heartbeat_ms.max(*now_ms);
                Ok(Output::Done)
            }
            Command::SetBrokerState {
                broker,
                broker_epoch,
                state,
            } => {
                self.check_broker(*broker, *broker_epoch)?;
                if *state == BrokerState::Fenced {
                    self.fence_broker(*broker, changes);
                } else {
                    let b = self.brokers.get_mut(broker).expect("checked above");
                    b.state = *state;
                    changes.push(Change::BrokerStateChanged {
                        broker: *broker,
                        state: *state,
                    });
                }
                Ok(Output::Done)
            }
            Command::ExpireSessions {
                now_ms,
                session_timeout_ms,
            } => {
                let expired: Vec<BrokerId> = self
                    .brokers
                    .values()
                    .filter(|b| {
                        b.state != BrokerState::Fenced
                            && b.last_heartbeat_ms.saturating_add(*session_timeout_ms) < *now_ms
                    })
                    .map(|b| b.id)
                    .collect();
                for b in &expired {
                    self.fence_broker(*b, changes);
                }
                Ok(Output::SessionsExpired { fenced: expired })
            }
            Command::CreateTopic {
                name,
                topic_id,
                partitions,
                configs,
            } => {
                validate_topic_name(name)?;
                if self.topics.contains_key(name) {
                    return Err(CommandError::TopicExists(name.clone()));
                }
                if topic_id.is_nil() || self.topic_names.contains_key(topic_id) {
                    return Err(CommandError::TopicIdExists(*topic_id));
                }
                if *partitions == 0 || *partitions > limits::MAX_PARTITIONS {
                    return Err(CommandError::InvalidPartitionCount {
                        requested: *partitions,
                        current: 0,
                        max: limits::MAX_PARTITIONS,
                    });
                }
                for (k, v) in configs {
                    validate_config(k, v)?;
                }
                let parts: Vec<PartitionInfo> =
                    (0..*partitions).map(|_| self.new_partition()).collect();
                let streams = parts.iter().map(|p| p.stream).collect();
                self.topics.insert(
                    name.clone(),
                    TopicInfo {
                        name: name.clone(),
                        id: *topic_id,
                        configs: configs.clone(),
                        partitions: parts,
                    },
                );
                self.topic_names.insert(*topic_id, name.clone());
                changes.push(Change::TopicCreated {
                    name: name.clone(),
                    topic_id: *topic_id,
                });
                Ok(Output::TopicCreated {
                    topic_id: *topic_id,
                    streams,
                })
            }
            Command::DeleteTopic { name, now_ms } => {
                let t = self
                    .topics
                    .remove(name)
                    .ok_or_else(|| CommandError::UnknownTopic(name.clone()))?;
                self.topic_names.remove(&t.id);
                for p in &t.partitions {
                    self.drop_stream(p.stream, *now_ms);
                }
                changes.push(Change::TopicDeleted {
                    name: name.clone(),
                    topic_id: t.id,
                });
                Ok(Output::Done)
            }
            Command::CreatePartitions { name, total } => {
                let current = self
                    .topics
                    .get(name)
                    .ok_or_else(|| CommandError::UnknownTopic(name.clone()))?
                    .partitions
                    .len() as u32;
                if *total <= current || *total > limits::MAX_PARTITIONS {
                    return Err(CommandError::InvalidPartitionCount {
                        requested: *total,
                        current,
                        max: limits::MAX_PARTITIONS,
                    });
                }
                let new: Vec<PartitionInfo> =
                    (current..*total).map(|_| self.new_partition()).collect();
                self.topics
                    .get_mut(name)
                    .expect("checked above")
                    .partitions
                    .extend(new);
                changes.push(Change::PartitionsAdded {
                    name: name.clone(),
                    total: *total,
                });
                Ok(Output::Done)
            }
            Command::AlterTopicConfigs { name, set, delete } => {
                if !self.topics.contains_key(name) {
                    return Err(CommandError::UnknownTopic(name.clone()));
                }
                for (k, v) in set {
                    validate_config(k, v)?;
                }
                let t = self.topics.get_mut(name).expect("checked above");
                for k in delete {
                    t.configs.remove(k);
                }
                for (k, v) in set {
                    t.configs.insert(k.clone(), v.clone());
                }
                changes.push(Change::TopicConfigsChanged { name: name.clone() });
                Ok(Output::Done)
            }
            Command::AssignPartition {
                topic,
                partition,
                broker,
                broker_epoch,
                expected_epoch,
            } => self.assign_partition(
                topic,
                *partition,
                *broker,
                *broker_epoch,
                *expected_epoch,
                changes,
            ),
            Command::BeginMove {
                topic,
                partition,
                to,
            } => {
                match self.brokers.get(to) {
                    None => return Err(CommandError::UnknownBroker(*to)),
                    Some(b) if b.state == BrokerState::Fenced => {
                        return Err(CommandError::BrokerFenced(*to));
                    }
                    Some(_) => {}
                }
                let p = self.partition_mut(topic, *partition)?;
                if p.state == PartitionState::Offline {
                    return Err(CommandError::Invalid(format!(
                        "partition {topic}-{partition} is offline: assign it instead of moving it"
                    )));
                }
                p.state = PartitionState::Moving { to: *to };
                let info = p.clone();
                changes.push(Change::Partition {
                    topic: topic.clone(),
                    partition: *partition,
                    info,
                });
                Ok(Output::Done)
            }
            Command::ReserveObjectIds { count } => {
                check_block(*count)?;
                let start = self.next_object_id;
                let end = start + u64::from(*count);
                self.next_object_id = end;
                self.reserved.insert_range(start, end);
                Ok(Output::IdRange { start, end })
            }
            Command::CommitObjects { commit, now_ms } => {
                self.check_commit(commit)?;
                self.apply_commit(commit, *now_ms);
                Ok(Output::Done)
            }
            Command::TrimStream {
                stream,
                epoch,
                new_start,
                now_ms,
            } => {
                self.trim(*stream, *epoch, *new_start, *now_ms)?;
                Ok(Output::Done)
            }
            Command::ForgetObjects { ids } => {
                for id in ids {
                    if self
                        .objects
                        .get(id)
                        .is_some_and(|o| o.deleted_at_ms.is_some())
                    {
                        self.objects.remove(id);
                    }
                }
                Ok(Output::Done)
            }
            Command::AllocateProducerIds {
                broker,
                broker_epoch,
                count,
            } => {
                self.check_broker(*broker, *broker_epoch)?;
                check_block(*count)?;
                let start = self.next_producer_id;
                self.next_producer_id += u64::from(*count);
                Ok(Output::IdRange {
                    start,
                    end: self.next_producer_id,
                })
            }
            Command::Batch(cmds) => {
                if cmds.len() > limits::MAX_BATCH
                    || cmds.iter().any(|c| matches!(c, Command::Batch(_)))
                {
                    return Err(CommandError::Invalid("batch too large or nested".into()));
                }
                let mut out = Vec::with_capacity(cmds.len());
                for c in cmds {
                    let (resp, ch) = self.apply(c);
                    changes.extend(ch);
                    out.push(resp);
                }
                Ok(Output::Batch(out))
            }
            Command::SetFeature { name, level } => {
                if name.is_empty() || name.len() > limits::MAX_STRING {
                    return Err(CommandError::Invalid("bad feature name".into()));
                }
                self.features.insert(name.clone(), *level);
                Ok(Output::Done)
            }
        }
    }

    fn register_broker(
        &mut self,
        broker: BrokerId,
        listeners: &[Listener],
        rack: &Option<String>,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Response {
        if broker.0 < 0 {
            return Err(CommandError::Invalid(format!(
                "negative broker id {broker}"
            )));
        }
        if listeners.is_empty() {
            return Err(CommandError::Invalid(
                "a broker needs at least one listener".into(),
            ));
        }
        for l in listeners {
            if l.name.is_empty() || l.host.is_empty() || l.host.len() > limits::MAX_STRING {
                return Err(CommandError::Invalid(format!("bad listener {l:?}")));
            }
        }
        if rack.as_ref().is_some_and(|r| r.len() > limits::MAX_STRING) {
            return Err(CommandError::Invalid("rack too long".into()));
        }
        // A new incarnation: partitions held by the old one go offline,
        // exactly as if its session had expired.
        if self
            .brokers
            .get(&broker)
            .is_some_and(|b| b.state != BrokerState::Fenced)
        {
            self.fence_broker(broker, changes);
        }
        self.next_broker_epoch += 1;
        let epoch = self.next_broker_epoch;
        self.brokers.insert(
            broker,
            BrokerInfo {
                id: broker,
                epoch,
                listeners: listeners.to_vec(),
                rack: rack.clone(),
                state: BrokerState::Active,
                last_heartbeat_ms: now_ms,
            },
        );
        changes.push(Change::BrokerRegistered { broker, epoch });
        Ok(Output::BrokerRegistered {
            broker_epoch: epoch,
        })
    }

    /// Fence a broker: its requests carrying its broker epoch fail and its
    /// partitions go offline at their current epoch (recovery of its WAL
    /// may still commit at it); reopening a partition bumps the epoch.
    fn fence_broker(&mut self, broker: BrokerId, changes: &mut Vec<Change>) {
        if let Some(b) = self.brokers.get_mut(&broker) {
            b.state = BrokerState::Fenced;
        }
        changes.push(Change::BrokerStateChanged {
            broker,
            state: BrokerState::Fenced,
        });
        for t in self.topics.values_mut() {
            for (i, p) in t.partitions.iter_mut().enumerate() {
                if p.owner == Some(broker) && p.state != PartitionState::Offline {
                    // The epoch stays: the fenced owner's WAL may hold
                    // acknowledged data not yet in objects, which its
                    // recovery commits at this epoch. Whoever reopens the
                    // partition next bumps the epoch (AssignPartition), and
                    // only from then on are the old owner's commits refused.
                    p.state = PartitionState::Offline;
                    changes.push(Change::Partition {
                        topic: t.name.clone(),
                        partition: i as u32,
                        info: p.clone(),
                    });
                }
            }
        }
    }

    fn assign_partition(
        &mut self,
        topic: &str,
        partition: u32,
        broker: BrokerId,
        broker_epoch: u64,
        expected_epoch: Option<StreamEpoch>,
        changes: &mut Vec<Change>,
    ) -> Response {
        self.check_broker(broker, broker_epoch)?;
        let current = self
            .partition(topic, partition)
            .ok_or_else(|| CommandError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?
            .epoch;
        if let Some(expected) = expected_epoch
            && expected != current
        {
            return Err(CommandError::EpochMismatch {
                topic: topic.to_string(),
                partition,
                expected,
                current,
            });
        }
        let stream_id = self.partition_mut(topic, partition)?.stream;
        let s = self.streams.entry(stream_id).or_default();
        s.epoch += 1;
        let (epoch, end_offset) = (StreamEpoch(s.epoch), s.end);
        let p = self.partition_mut(topic, partition)?;
        p.owner = Some(broker);
        p.epoch = epoch;
        p.state = PartitionState::Online;
        let info = p.clone();
        changes.push(Change::Partition {
            topic: topic.to_string(),
            partition,
            info,
        });
        Ok(Output::PartitionAssigned {
            stream: stream_id,
            epoch,
            end_offset,
        })
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<&mut PartitionInfo, CommandError> {
        self.topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
            .ok_or_else(|| CommandError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    fn new_partition(&mut self) -> PartitionInfo {
        let stream = StreamId(self.next_stream_id);
        self.next_stream_id += 1;
        self.streams.insert(stream, StreamState::default());
        PartitionInfo {
            stream,
            owner: None,
            epoch: StreamEpoch(0),
            state: PartitionState::Offline,
        }
    }
}

fn check_block(count: u32) -> Result<(), CommandError> {
    if count == 0 || count > limits::MAX_ID_BLOCK {
        return Err(CommandError::Invalid(format!(
            "block size {count} not in 1..={}",
            limits::MAX_ID_BLOCK
        )));
    }
    Ok(())
}

/// Kafka's topic name rules.
fn validate_topic_name(name: &str) -> Result<(), CommandError> {
    let ok = !name.is_empty()
        && name.len() <= limits::MAX_TOPIC_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CommandError::InvalidTopicName(name.to_string()))
    }
}

/// Topic configs keep Kafka's names; the ones we interpret are type-checked.
fn validate_config(key: &str, value: &str) -> Result<(), CommandError> {
    let bad = |reason: &str| {
        Err(CommandError::InvalidConfig {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() || key.len() > limits::MAX_STRING || value.len() > limits::MAX_STRING {
        return bad("empty or too long");
    }
    const NUMERIC: &[&str] = &[
        "retention.ms",
        "retention.bytes",
        "segment.ms",
        "segment.bytes",
        "max.message.bytes",
        "min.insync.replicas",
        "delete.retention.ms",
        "min.compaction.lag.ms",
        "max.compaction.lag.ms",
        "message.timestamp.difference.max.ms",
        "local.retention.ms",
        "local.retention.bytes",
    ];
    if NUMERIC.contains(&key) && value.parse::<i64>().is_err() {
        return bad("not an integer");
    }
    if key == "cleanup.policy" {
        let ok = value
            .split(',')
            .all(|p| matches!(p.trim(), "delete" | "compact"));
        if !ok {
            return bad("must be delete, compact or both");
        }
    }
    Ok(())
}

impl ClusterState {
    /// Drop a stream's index; its objects that hold no other live data
    /// become deletable.
    fn drop_stream(&mut self, stream: StreamId, now_ms: u64) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        let mut touched: BTreeMap<_, ()> = BTreeMap::new();
        for (_, id) in s.slices.values() {
            touched.insert(*id, ());
        }
        self.mark_dead_objects(touched.keys().copied(), now_ms);
    }
}
