//! The coordinator side of consumer-protocol groups: heartbeats and
//! describes against the in-memory groups, the durable snapshot record,
//! and how they meet classic groups of the same id (Kafka's rules: a
//! consumer-protocol heartbeat to a non-empty classic group gets
//! GROUP_ID_NOT_FOUND, a JoinGroup to a non-empty consumer group gets
//! INCONSISTENT_GROUP_PROTOCOL).

use bytes::{BufMut, Bytes};
use skiff_wire::kafka_protocol::error::ResponseError as E;
use tokio::time::Instant;
use tracing::warn;

use super::super::records::{RecordKey, put_str};
use super::super::{Code, GroupCoordinator};
use super::{ConsumerGroup, Heartbeat, HeartbeatAnswer, TopicsView};
use crate::broker::Broker;
use crate::partitions::Partition;

/// A consumer group as ConsumerGroupDescribe and the admin CLI show it.
#[derive(Debug, Clone)]
pub struct ConsumerDescription {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<super::ConsumerMember>,
    /// member id -> target assignment
    pub target: std::collections::BTreeMap<String, super::assignor::TopicPartitions>,
    /// topic id -> name, for the assignments
    pub names: std::collections::BTreeMap<uuid::Uuid, String>,
}

/// Every topic of the cluster, as the assignors see them.
pub fn topics_view(broker: &Broker) -> TopicsView {
    broker.cluster.read(|s| {
        s.topics
            .iter()
            .map(|(n, t)| (n.clone(), (t.id, t.partitions.len() as i32)))
            .collect()
    })
}

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat.
    pub async fn consumer_heartbeat(
        &self,
        broker: &Broker,
        group: &str,
        hb: Heartbeat,
    ) -> HeartbeatAnswer {
        if let Err((code, msg)) = super::validate(&hb, group, &self.cfg.consumer_assignors) {
            return HeartbeatAnswer::error(code, msg);
        }
        let p = match self.partition(broker, group).await {
            Ok(p) => p,
            Err(code) => {
                return HeartbeatAnswer {
                    error: code,
                    member_epoch: -1,
                    ..HeartbeatAnswer::default()
                };
            }
        };
        if self.groups.lock().get(group).is_some_and(|g| !g.is_empty()) {
            return HeartbeatAnswer::error(
                E::GroupIdNotFound,
                format!("Group {group} is not a consumer group."),
            );
        }
        let topics = topics_view(broker);
        let mut changed = false;
        let answer = {
            let mut groups = self.consumer.lock();
            if !groups.contains_key(group) {
                if hb.member_epoch != 0 {
                    return HeartbeatAnswer::error(
                        E::UnknownMemberId,
                        format!("group {group} has no member {}", hb.member_id),
                    );
                }
                groups.insert(
                    group.to_string(),
                    ConsumerGroup::new(group.to_string(), p.index),
                );
            }
            let g = groups.get_mut(group).expect("inserted above");
            g.heartbeat(hb, &topics, Instant::now(), &self.cfg, &mut changed)
        };
        if changed && let Err(code) = self.persist_consumer(&p, group).await {
            warn!(group, code, "could not persist consumer group");
            return HeartbeatAnswer {
                error: code,
                member_epoch: -1,
                ..HeartbeatAnswer::default()
            };
        }
        answer
    }

    /// Write the group's snapshot (taken under the partition lock, so
    /// snapshots reach the stream in the order of the states they show).
    pub(in crate::groups) async fn persist_consumer(
        &self,
        p: &Partition,
        group: &str,
    ) -> Result<(), Code> {
        let key = RecordKey::ConsumerGroup {
            group: group.to_string(),
        }
        .encode();
        let pending = {
            let lock = self.lock_for(p.index);
            let _guard = lock.lock().await;
            let value: Option<Bytes> = self.consumer.lock().get(group).map(super::record::encode);
            self.append(p, &[(key, value)]).await?
        };
        pending
            .await
            .map(|_| ())
            .map_err(|_| E::NotCoordinator.code())
    }

    /// Apply a replayed snapshot (or its tombstone).
    pub(in crate::groups) fn apply_consumer(
        &self,
        partition: u32,
        group: String,
        value: Option<Bytes>,
    ) {
        let session =
            std::time::Duration::from_millis(self.cfg.consumer_session_timeout_ms().max(0) as u64);
        let mut groups = self.consumer.lock();
        match value
            .map(|v| super::record::decode(group.clone(), partition, v, Instant::now(), session))
        {
            Some(Ok(g)) => {
                groups.insert(group, g);
            }
            Some(Err(e)) => warn!(group, error = %e, "skipping an undecodable consumer group"),
            None => {
                groups.remove(&group);
            }
        }
    }

    /// The check of OffsetCommit / OffsetFetch against a consumer-protocol
    /// group: `None` when `group` is not one.
    pub(in crate::groups) fn consumer_check(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
    ) -> Option<Code> {
        self.consumer
            .lock()
            .get(group)
            .map(|g| g.check_member_epoch(member, epoch))
    }

    /// OffsetFetch v9+ with a member id and epoch.
    pub async fn check_fetch_member(
        &self,
        broker: &Broker,
        group: &str,
        member: Option<&str>,
        epoch: i32,
    ) -> Result<(), Code> {
        let Some(member) = member else {
            return Ok(());
        };
        self.partition(broker, group).await?;
        match self.consumer_check(group, member, epoch) {
            Some(0) | None => Ok(()),
            Some(code) => Err(code),
        }
    }

    /// Is `group` a non-empty consumer-protocol group (JoinGroup conflict)?
    pub(in crate::groups) fn is_active_consumer_group(&self, group: &str) -> bool {
        self.consumer
            .lock()
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// ConsumerGroupDescribe for one group: `Err` is the group's error.
    pub async fn consumer_describe(
        &self,
        broker: &Broker,
        group: &str,
    ) -> Result<ConsumerDescription, (Code, String)> {
        self.partition(broker, group)
            .await
            .map_err(|c| (c, String::new()))?;
        let names = broker.cluster.read(|s| s.topic_names.clone());
        let groups = self.consumer.lock();
        let Some(g) = groups.get(group) else {
            let msg = if self.groups.lock().contains_key(group) {
                format!("Group {group} is not a consumer group.")
            } else {
                format!("Group {group} not found.")
            };
            return Err((E::GroupIdNotFound.code(), msg));
        };
        Ok(ConsumerDescription {
            state: g.state(),
            epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g.assignor(&self.cfg).name(),
            members: g.members.values().cloned().collect(),
            target: g.target.clone(),
            names: names.into_iter().collect(),
        })
    }

    /// DescribeGroups of a consumer-protocol group, in the classic shape:
    /// subscriptions and assignments encoded as the consumer protocol's
    /// `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` v0.
    pub(in crate::groups) fn describe_consumer_classic(
        &self,
        broker: &Broker,
        group: &str,
    ) -> Option<super::super::GroupDescription> {
        let names = broker.cluster.read(|s| s.topic_names.clone());
        let groups = self.consumer.lock();
        let g = groups.get(group)?;
        Some(super::super::GroupDescription {
            state: g.state(),
            protocol_type: "consumer".to_string(),
            protocol: g.assignor(&self.cfg).name().to_string(),
            members: g
                .members
                .values()
                .map(|m| {
                    let mut topics: Vec<&str> = m
                        .subscribed_topic_names
                        .iter()
                        .map(String::as_str)
                        .collect();
                    topics.extend(
                        g.subscribed
                            .values()
                            .map(|(n, _)| n.as_str())
                            .filter(|n| !m.subscribed_topic_names.iter().any(|s| s == n)),
                    );
                    let assigned: Vec<(&str, Vec<i32>)> = m
                        .rec
                        .assigned
                        .iter()
                        .filter_map(|(id, ps)| {
                            names
                                .get(id)
                                .map(|n| (n.as_str(), ps.iter().copied().collect()))
                        })
                        .collect();
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        encode_subscription(&topics),
                        encode_assignment(&assigned),
                    )
                })
                .collect(),
        })
    }

    /// Expire consumer-protocol sessions; returns the groups that changed.
    pub(in crate::groups) fn consumer_tick(&self) -> Vec<(String, u32)> {
        let now = Instant::now();
        self.consumer
            .lock()
            .values_mut()
            .filter_map(|g| g.tick(now).then(|| (g.id.clone(), g.partition)))
            .collect()
    }

    /// Persist groups changed by [`Self::consumer_tick`].
    pub(in crate::groups) async fn persist_consumer_group(&self, broker: &Broker, group: &str) {
        match self.partition(broker, group).await {
            Ok(p) => {
                if let Err(code) = self.persist_consumer(&p, group).await {
                    warn!(group, code, "could not persist consumer group");
                }
            }
            Err(code) => warn!(group, code, "consumer group partition unavailable"),
        }
    }
}

/// `ConsumerProtocolSubscription` v0: topics, null user data.
fn encode_subscription(topics: &[&str]) -> Bytes {
    let mut b = bytes::BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        put_str(&mut b, t);
    }
    b.put_i32(-1);
    b.freeze()
}

/// `ConsumerProtocolAssignment` v0: topic -> partitions, null user data.
fn encode_assignment(parts: &[(&str, Vec<i32>)]) -> Bytes {
    let mut b = bytes::BytesMut::new();
    b.put_i16(0);
    b.put_i32(parts.len() as i32);
    for (t, ps) in parts {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1);
    b.freeze()
}
