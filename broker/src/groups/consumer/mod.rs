//! KIP-848 consumer-protocol groups (ConsumerGroupHeartbeat): the
//! coordinator owns the assignment. Like Kafka's `GroupMetadataManager`:
//!
//! - the **group epoch** is bumped whenever what the assignment depends on
//!   changes (a member joins or leaves, a subscription or the partitions of a
//!   subscribed topic change);
//! - the **target assignment** is recomputed by the server-side assignor
//!   ([`assignor`]) when the group epoch is ahead of the assignment epoch;
//! - each member's **current assignment** moves towards its target one
//!   heartbeat at a time ([`reconcile`]), revoking before reassigning, and
//!   its **member epoch** reaches the target epoch once it owns nothing it
//!   must give up.
//!
//! Everything here is synchronous and takes `now` and a [`TopicsView`] of
//! the cluster's topics, so it is tested without a broker. Durable form:
//! [`record`].

pub mod assignor;
pub mod coordinator;
pub mod reconcile;
pub mod record;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use skiff_wire::kafka_protocol::error::ResponseError as E;
use tokio::time::Instant;
use uuid::Uuid;

use super::config::GroupConfig;
use assignor::{AssignmentSpec, Assignor, MemberSpec, TopicPartitions};
use reconcile::{MemberState, Reconciliation};

/// Member epoch of a member leaving the group.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving temporarily (it keeps its
/// assignment until its session expires).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Topics of the cluster: name -> (id, partition count).
pub type TopicsView = BTreeMap<String, (Uuid, i32)>;

/// What a ConsumerGroupHeartbeat asks.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub version: i16,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<TopicPartitions>,
    pub client_id: String,
    pub client_host: String,
}

/// A ConsumerGroupHeartbeat answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    pub assignment: Option<TopicPartitions>,
}

impl HeartbeatAnswer {
    pub fn error(code: E, message: impl Into<String>) -> Self {
        Self {
            error: code.code(),
            message: Some(message.into()),
            member_epoch: -1,
            ..Self::default()
        }
    }
}

/// One consumer-protocol member.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub rec: Reconciliation,
    pub deadline: Instant,
    /// Set while it has partitions to revoke: fenced when it passes.
    pub revoke_deadline: Option<Instant>,
}

/// A consumer-protocol group (its offsets live in the classic
/// [`super::group::Group`] of the same id).
#[derive(Debug)]
pub struct ConsumerGroup {
    pub id: String,
    pub partition: u32,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// member id -> target assignment at `assignment_epoch`.
    pub target: BTreeMap<String, TopicPartitions>,
    /// The subscribed topics as of the last epoch bump: id -> (name, partitions).
    pub subscribed: BTreeMap<Uuid, (String, i32)>,
    regexes: HashMap<String, regex::Regex>,
}

/// Compile a subscription regex (RE2/J syntax; the `regex` crate is close:
/// both are linear-time, without backreferences or lookaround). Kafka
/// matches whole topic names.
pub fn compile_regex(re: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

impl ConsumerGroup {
    pub fn new(id: String, partition: u32) -> Self {
        Self {
            id,
            partition,
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            regexes: HashMap::new(),
        }
    }

    /// Kafka's state names: Empty, Assigning, Reconciling, Stable.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.rec.epoch != self.assignment_epoch || m.rec.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor most members ask for, else the configured default.
    pub fn assignor(&self, cfg: &GroupConfig) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(n, c)| (*c, std::cmp::Reverse(*n)))
            .and_then(|(n, _)| Assignor::from_name(n))
            .or_else(|| {
                cfg.consumer_assignors
                    .first()
                    .and_then(|n| Assignor::from_name(n))
            })
            .unwrap_or(Assignor::Uniform)
    }

    /// The topics `m` subscribes to that exist.
    fn member_topics(&mut self, m: &ConsumerMember, topics: &TopicsView) -> BTreeSet<Uuid> {
        let mut out: BTreeSet<Uuid> = m
            .subscribed_topic_names
            .iter()
            .filter_map(|n| topics.get(n).map(|(id, _)| *id))
            .collect();
        if let Some(re) = &m.subscribed_topic_regex {
            if !self.regexes.contains_key(re)
                && let Ok(r) = compile_regex(re)
            {
                self.regexes.insert(re.clone(), r);
            }
            if let Some(r) = self.regexes.get(re) {
                out.extend(
                    topics
                        .iter()
                        .filter(|(n, _)| !n.starts_with("__") && r.is_match(n))
                        .map(|(_, (id, _))| *id),
                );
            }
        }
        out
    }

    /// Bump the group epoch if the subscribed topics or their partition
    /// counts changed.
    pub fn refresh_metadata(&mut self, topics: &TopicsView) {
        let members: Vec<ConsumerMember> = self.members.values().cloned().collect();
        let mut ids = BTreeSet::new();
        for m in &members {
            ids.extend(self.member_topics(m, topics));
        }
        let now: BTreeMap<Uuid, (String, i32)> = topics
            .iter()
            .filter(|(_, (id, _))| ids.contains(id))
            .map(|(n, (id, count))| (*id, (n.clone(), *count)))
            .collect();
        if now != self.subscribed {
            self.subscribed = now;
            self.epoch += 1;
        }
    }

    /// Recompute the target assignment if the group epoch moved.
    fn update_target(&mut self, topics: &TopicsView, cfg: &GroupConfig) {
        if self.assignment_epoch >= self.epoch {
            return;
        }
        let members: Vec<ConsumerMember> = self.members.values().cloned().collect();
        let mut spec = AssignmentSpec {
            topics: self
                .subscribed
                .iter()
                .map(|(id, (_, n))| (*id, *n))
                .collect(),
            ..AssignmentSpec::default()
        };
        for m in &members {
            let member_topics = self.member_topics(m, topics);
            spec.members.insert(
                m.id.clone(),
                MemberSpec {
                    topics: member_topics,
                    current: self.target.get(&m.id).cloned().unwrap_or_default(),
                },
            );
        }
        self.target = self.assignor(cfg).assign(&spec);
        self.assignment_epoch = self.epoch;
    }

    /// Is (t, p) owned or being revoked by a member other than `me`?
    fn taken_by_other(&self, me: &str, t: &Uuid, p: i32) -> bool {
        self.members.iter().any(|(id, m)| {
            id != me
                && (m.rec.assigned.get(t).is_some_and(|s| s.contains(&p))
                    || m.rec.revoking.get(t).is_some_and(|s| s.contains(&p)))
        })
    }

    fn remove_member(&mut self, id: &str) {
        if self.members.remove(id).is_some() {
            self.target.remove(id);
            self.epoch += 1;
        }
    }

    /// ConsumerGroupHeartbeat for this group (the request was validated by
    /// [`validate`]). `changed` is set when the durable state changed.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &TopicsView,
        now: Instant,
        cfg: &GroupConfig,
        changed: &mut bool,
    ) -> HeartbeatAnswer {
        let interval = cfg.consumer_heartbeat_interval_ms();
        let session = ms(cfg.consumer_session_timeout_ms());
        if hb.member_epoch == LEAVE_EPOCH || hb.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&hb, changed);
        }
        let mut member_id = hb.member_id.clone();
        if hb.member_epoch == 0 {
            if member_id.is_empty() {
                member_id = Uuid::new_v4().to_string();
            }
            if let Some(inst) = &hb.instance_id
                && let Some(old) = self
                    .members
                    .values()
                    .find(|m| m.instance_id.as_ref() == Some(inst))
                    .cloned()
                && old.id != member_id
            {
                if old.rec.epoch != STATIC_LEAVE_EPOCH {
                    return HeartbeatAnswer::error(
                        E::UnreleasedInstanceId,
                        format!("static member {inst} is still in use by another member"),
                    );
                }
                // A static member rejoins: it takes its predecessor's place
                // and assignment without a rebalance.
                let mut m = old.clone();
                self.members.remove(&old.id);
                let target = self.target.remove(&old.id);
                m.id = member_id.clone();
                m.rec.epoch = old.rec.previous_epoch;
                if let Some(t) = target {
                    self.target.insert(member_id.clone(), t);
                }
                self.members.insert(member_id.clone(), m);
                *changed = true;
            }
            if !self.members.contains_key(&member_id) {
                if self.members.len() >= cfg.consumer_max_size {
                    return HeartbeatAnswer::error(
                        E::GroupMaxSizeReached,
                        format!(
                            "the group reached its maximum size {}",
                            cfg.consumer_max_size
                        ),
                    );
                }
                self.members.insert(
                    member_id.clone(),
                    ConsumerMember {
                        id: member_id.clone(),
                        instance_id: hb.instance_id.clone(),
                        rack_id: None,
                        client_id: String::new(),
                        client_host: String::new(),
                        subscribed_topic_names: Vec::new(),
                        subscribed_topic_regex: None,
                        server_assignor: None,
                        rebalance_timeout_ms: hb.rebalance_timeout_ms,
                        rec: Reconciliation::default(),
                        deadline: now + session,
                        revoke_deadline: None,
                    },
                );
                self.epoch += 1;
                *changed = true;
            }
        } else {
            let Some(m) = self.members.get(&member_id) else {
                return HeartbeatAnswer::error(
                    E::UnknownMemberId,
                    format!("member {member_id} is not in group {}", self.id),
                );
            };
            let ok = hb.member_epoch == m.rec.epoch
                || (hb.member_epoch == m.rec.previous_epoch
                    && hb.member_epoch < m.rec.epoch
                    && hb.owned.as_ref().is_some_and(|o| {
                        reconcile::flat(o).is_subset(&reconcile::flat(&m.rec.assigned))
                    }));
            if !ok {
                return HeartbeatAnswer::error(
                    E::FencedMemberEpoch,
                    format!(
                        "member epoch {} is fenced, the current one is {}",
                        hb.member_epoch, m.rec.epoch
                    ),
                );
            }
        }
        // Update the member's subscription.
        let m = self.members.get_mut(&member_id).expect("member present");
        m.deadline = now + session;
        m.client_id = hb.client_id.clone();
        m.client_host = hb.client_host.clone();
        if hb.rebalance_timeout_ms > 0 {
            m.rebalance_timeout_ms = hb.rebalance_timeout_ms;
        }
        if hb.rack_id.is_some() {
            m.rack_id = hb.rack_id.clone();
        }
        let mut bump = false;
        if let Some(names) = &hb.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            if names != m.subscribed_topic_names {
                m.subscribed_topic_names = names;
                bump = true;
            }
        }
        if let Some(re) = &hb.subscribed_topic_regex {
            let re = Some(re.clone()).filter(|r| !r.is_empty());
            if re != m.subscribed_topic_regex {
                m.subscribed_topic_regex = re;
                bump = true;
            }
        }
        if let Some(a) = &hb.server_assignor
            && Some(a) != m.server_assignor.as_ref()
        {
            m.server_assignor = Some(a.clone());
            bump = true;
        }
        if bump {
            self.epoch += 1;
            *changed = true;
        }
        self.refresh_metadata(topics);
        self.update_target(topics, cfg);
        // Reconcile.
        let target = self.target.get(&member_id).cloned().unwrap_or_default();
        let m = &self.members[&member_id];
        let before = m.rec.clone();
        let next = before.next(
            self.assignment_epoch,
            &target,
            |t, p| self.taken_by_other(&member_id, t, p),
            hb.owned.as_ref(),
        );
        let m = self.members.get_mut(&member_id).expect("member present");
        if next != before {
            *changed = true;
            m.revoke_deadline = (next.state == MemberState::UnrevokedPartitions)
                .then(|| now + ms(m.rebalance_timeout_ms.max(1000)));
            m.rec = next;
        }
        // As Kafka: the assignment goes out on a full request (a join, or
        // one with every field set, as after an error) or when it changed.
        let full = hb.member_epoch == 0
            || (hb.rebalance_timeout_ms != -1
                && hb.subscribed_topic_names.is_some()
                && hb.owned.is_some());
        let send = full || m.rec.assigned != before.assigned;
        HeartbeatAnswer {
            error: 0,
            message: None,
            member_id,
            member_epoch: m.rec.epoch,
            heartbeat_interval_ms: interval,
            assignment: send.then(|| m.rec.assigned.clone()),
        }
    }

    fn leave(&mut self, hb: &Heartbeat, changed: &mut bool) -> HeartbeatAnswer {
        let found = match &hb.instance_id {
            Some(inst) => self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(inst))
                .map(|m| m.id.clone()),
            None => self
                .members
                .contains_key(&hb.member_id)
                .then(|| hb.member_id.clone()),
        };
        let Some(id) = found else {
            return HeartbeatAnswer::error(
                E::UnknownMemberId,
                format!("member {} is not in group {}", hb.member_id, self.id),
            );
        };
        if id != hb.member_id {
            return HeartbeatAnswer::error(
                E::FencedInstanceId,
                "the instance id belongs to another member",
            );
        }
        *changed = true;
        if hb.member_epoch == STATIC_LEAVE_EPOCH && hb.instance_id.is_some() {
            // Keep the assignment for the static member's return.
            let m = self.members.get_mut(&id).expect("member present");
            if m.rec.epoch != STATIC_LEAVE_EPOCH {
                m.rec.previous_epoch = m.rec.epoch;
            }
            m.rec.epoch = STATIC_LEAVE_EPOCH;
        } else {
            self.remove_member(&id);
        }
        HeartbeatAnswer {
            member_id: id,
            member_epoch: hb.member_epoch,
            ..HeartbeatAnswer::default()
        }
    }

    /// Expire sessions and fence members that did not revoke in time;
    /// returns whether anything changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.deadline <= now || m.revoke_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            tracing::info!(group = %self.id, member = %id, "consumer member expired");
            self.remove_member(id);
        }
        !gone.is_empty()
    }

    /// OffsetCommit / OffsetFetch check of a consumer-protocol member
    /// (epoch < 0 without member id: from outside the group, allowed while
    /// it is empty).
    pub fn check_member_epoch(&self, member_id: &str, epoch: i32) -> i16 {
        if epoch < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                0
            } else {
                E::UnknownMemberId.code()
            };
        }
        match self.members.get(member_id) {
            None => E::UnknownMemberId.code(),
            Some(m) if m.rec.epoch == epoch => 0,
            // A commit racing the heartbeat response that moved the member to
            // its new epoch (it gained partitions; revoked ones move only
            // after the member acknowledged them, so its previous epoch's
            // assignment is still its own). Kafka's KIP-1251 accepts such
            // commits for the same reason; refusing them makes synchronous
            // commits fail at every rebalance.
            Some(m) if m.rec.previous_epoch > 0 && m.rec.previous_epoch == epoch => 0,
            Some(_) => E::StaleMemberEpoch.code(),
        }
    }

    /// Is a topic subscribed by a member (OffsetDelete)?
    pub fn subscribes(&self, topic: &str) -> bool {
        self.subscribed.values().any(|(n, _)| n == topic)
    }
}

/// Check a heartbeat as Kafka does before touching the group; `supported`
/// are the configured assignors.
pub fn validate(hb: &Heartbeat, group_id: &str, supported: &[String]) -> Result<(), (E, String)> {
    let bad = |m: &str| Err((E::InvalidRequest, m.to_string()));
    if group_id.is_empty() {
        return bad("GroupId can't be empty.");
    }
    if hb.instance_id.as_deref() == Some("") {
        return bad("InstanceId can't be empty.");
    }
    if hb.rack_id.as_deref() == Some("") {
        return bad("RackId can't be empty.");
    }
    if hb.member_epoch < STATIC_LEAVE_EPOCH {
        return bad("MemberEpoch is invalid.");
    }
    if hb.member_id.is_empty() && (hb.version >= 1 || hb.member_epoch != 0) {
        return bad("MemberId can't be empty.");
    }
    if hb.member_epoch == STATIC_LEAVE_EPOCH && hb.instance_id.is_none() {
        return bad("InstanceId can't be null when leaving as a static member.");
    }
    if hb.member_epoch == 0 {
        if hb.rebalance_timeout_ms == -1 {
            return bad("RebalanceTimeoutMs must be provided in first request.");
        }
        if hb
            .owned
            .as_ref()
            .is_some_and(|o| o.values().any(|p| !p.is_empty()))
        {
            return bad("TopicPartitions must be empty when (re-)joining.");
        }
        let no_names = hb
            .subscribed_topic_names
            .as_ref()
            .is_none_or(|n| n.is_empty());
        let no_regex = hb
            .subscribed_topic_regex
            .as_ref()
            .is_none_or(|r| r.is_empty());
        if no_names && no_regex {
            return bad(
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            );
        }
    }
    if let Some(a) = &hb.server_assignor
        && !supported.iter().any(|s| s == a)
    {
        return Err((
            E::UnsupportedAssignor,
            format!("ServerAssignor {a} is not supported. Supported assignors: {supported:?}."),
        ));
    }
    if let Some(re) = &hb.subscribed_topic_regex
        && !re.is_empty()
        && let Err(e) = compile_regex(re)
    {
        return Err((
            E::InvalidRegularExpression,
            format!("SubscribedTopicRegex {re} is invalid: {e}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
