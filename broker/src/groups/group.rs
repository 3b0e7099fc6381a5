//! One classic-protocol group: members, generations and the rebalance state
//! machine (Empty -> PreparingRebalance -> CompletingRebalance -> Stable),
//! as Kafka's `GroupCoordinator` runs it, plus the group's committed offsets.
//!
//! Everything here is synchronous and takes `now` as an argument, so the
//! state machine is unit-tested without a broker or a clock. A JoinGroup or
//! SyncGroup that must wait for other members gets a [`Reply::Wait`] with a
//! oneshot receiver; the coordinator completes it when the rebalance moves
//! on (all members joined, the leader synced, a timeout expired).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use skiff_wire::kafka_protocol::error::ResponseError as E;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::config::GroupConfig;
use super::records::{GroupValue, OffsetValue, StoredMember};

/// A group's state, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub skip_assignment: bool,
    /// For the leader: every member's id, instance id and metadata.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(code: E, member_id: &str) -> Self {
        Self {
            error: code.code(),
            generation: -1,
            member_id: member_id.to_string(),
            ..Self::default()
        }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(code: E) -> Self {
        Self {
            error: code.code(),
            ..Self::default()
        }
    }
}

/// An answer now, or one to wait for.
#[derive(Debug)]
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// What a JoinGroup asks for.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join without member id gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    deadline: Instant,
}

impl Member {
    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| Some(n.as_str()) == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A group and its committed offsets.
#[derive(Debug)]
pub struct Group {
    pub id: String,
    /// The `__consumer_offsets` partition holding its records.
    pub partition: u32,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    statics: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    initial_delay_until: Option<Instant>,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

impl Group {
    pub fn new(id: String, partition: u32) -> Self {
        Self {
            id,
            partition,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            statics: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            offsets: BTreeMap::new(),
        }
    }

    /// Rebuild a group from its stored metadata (replay). Members get a
    /// fresh session: they heartbeat or expire as usual.
    pub fn restore(&mut self, v: GroupValue, now: Instant) {
        self.generation = v.generation;
        self.protocol_type = Some(v.protocol_type).filter(|s| !s.is_empty());
        self.protocol = v.protocol;
        self.leader = v.leader;
        self.members.clear();
        self.statics.clear();
        self.pending.clear();
        for m in v.members {
            if let Some(i) = &m.instance_id {
                self.statics.insert(i.clone(), m.member_id.clone());
            }
            let protocol = self.protocol.clone().unwrap_or_default();
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: ms(m.session_timeout_ms),
                    rebalance_timeout: ms(m.rebalance_timeout_ms),
                    protocols: vec![(protocol, m.subscription)],
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    deadline: now + ms(m.session_timeout_ms),
                },
            );
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }

    /// The durable form of the group's metadata.
    pub fn snapshot(&self, now_ms: i64) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: now_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: m.metadata(self.protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Is `instance_id` registered to a member other than `member_id`?
    fn fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.statics.get(i))
            .is_some_and(|m| m != member_id)
    }

    /// Does the group support one of `protocols` for every member?
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// JoinGroup. `persist` is set when the group's durable state changed.
    pub fn join(
        &mut self,
        req: JoinRequest,
        now: Instant,
        cfg: &GroupConfig,
        persist: &mut bool,
    ) -> Reply<JoinResult> {
        let member_id = req.member_id.clone();
        let fail = |code| Reply::Now(JoinResult::error(code, &member_id));
        if self.state == GroupState::Dead {
            return fail(E::CoordinatorNotAvailable);
        }
        if req.session_timeout_ms < cfg.min_session_timeout_ms
            || req.session_timeout_ms > cfg.max_session_timeout_ms
        {
            return fail(E::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty()
            || req.protocols.is_empty()
            || !self.supports(&req.protocol_type, &req.protocols)
        {
            return fail(E::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            if let Some(old) = req.instance_id.as_ref().and_then(|i| self.statics.get(i)) {
                let old = old.clone();
                return self.rejoin_static(old, req, now, persist);
            }
            if self.members.len() + self.pending.len() >= cfg.max_size {
                return fail(E::GroupMaxSizeReached);
            }
            let id = new_member_id(req.instance_id.as_deref().unwrap_or(&req.client_id));
            if req.require_known_member_id && req.instance_id.is_none() {
                self.pending
                    .insert(id.clone(), now + ms(req.session_timeout_ms));
                return Reply::Now(JoinResult::error(E::MemberIdRequired, &id));
            }
            return self.add_and_rebalance(id, req, now, cfg);
        }
        if self.pending.remove(&req.member_id).is_some() {
            if self.fenced(req.instance_id.as_deref(), &req.member_id) {
                return fail(E::FencedInstanceId);
            }
            let id = req.member_id.clone();
            return self.add_and_rebalance(id, req, now, cfg);
        }
        if self.fenced(req.instance_id.as_deref(), &req.member_id) {
            return fail(E::FencedInstanceId);
        }
        let Some(m) = self.members.get_mut(&req.member_id) else {
            return fail(E::UnknownMemberId);
        };
        let changed = m.protocols != req.protocols;
        m.protocols = req.protocols;
        m.session_timeout = ms(req.session_timeout_ms);
        m.rebalance_timeout = ms(req.rebalance_timeout_ms);
        m.deadline = now + m.session_timeout;
        // A stable group rebalances when its leader rejoins (it may want a
        // new assignment) or a member's protocols changed.
        let leader_rejoins =
            self.state == GroupState::Stable && self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => self.wait_join(&member_id, now),
            GroupState::CompletingRebalance | GroupState::Stable if !changed && !leader_rejoins => {
                Reply::Now(self.join_result(&member_id, false))
            }
            _ => {
                self.prepare_rebalance(now, cfg);
                self.wait_join(&member_id, now)
            }
        }
    }

    fn add_and_rebalance(
        &mut self,
        id: String,
        req: JoinRequest,
        now: Instant,
        cfg: &GroupConfig,
    ) -> Reply<JoinResult> {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.instance_id {
            self.statics.insert(i.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout: ms(req.session_timeout_ms),
                rebalance_timeout: ms(req.rebalance_timeout_ms),
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: None,
                sync_waiter: None,
                deadline: now + ms(req.session_timeout_ms),
            },
        );
        if self.state == GroupState::PreparingRebalance {
            // New members during the initial delay push it back (Kafka's
            // InitialDelayedJoin), up to the rebalance timeout.
            if let (Some(_), Some(deadline)) = (self.initial_delay_until, self.rebalance_deadline) {
                self.initial_delay_until = Some((now + cfg.initial_rebalance_delay).min(deadline));
            }
        } else {
            self.prepare_rebalance(now, cfg);
        }
        self.wait_join(&id, now)
    }

    /// A static member came back without its member id: it takes over the
    /// old member's place (and assignment) under a new id. A stable group
    /// does not rebalance for it (KIP-345).
    fn rejoin_static(
        &mut self,
        old: String,
        req: JoinRequest,
        now: Instant,
        persist: &mut bool,
    ) -> Reply<JoinResult> {
        let Some(mut m) = self.members.remove(&old) else {
            return Reply::Now(JoinResult::error(E::UnknownMemberId, ""));
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(E::FencedInstanceId, &old));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(E::FencedInstanceId));
        }
        let id = new_member_id(req.instance_id.as_deref().unwrap_or("static"));
        let changed = m.protocols != req.protocols;
        m.id = id.clone();
        m.protocols = req.protocols;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.session_timeout = ms(req.session_timeout_ms);
        m.rebalance_timeout = ms(req.rebalance_timeout_ms);
        m.deadline = now + m.session_timeout;
        if let Some(i) = &m.instance_id {
            self.statics.insert(i.clone(), id.clone());
        }
        self.members.insert(id.clone(), m);
        if self.leader.as_deref() == Some(old.as_str()) {
            self.leader = Some(id.clone());
        }
        match self.state {
            GroupState::Stable if !changed => {
                *persist = true;
                let leader = self.leader.as_deref() == Some(id.as_str());
                Reply::Now(self.join_result(&id, leader))
            }
            GroupState::PreparingRebalance => self.wait_join(&id, now),
            _ => {
                self.prepare_rebalance(now, &GroupConfig::default());
                self.wait_join(&id, now)
            }
        }
    }

    fn wait_join(&mut self, member_id: &str, now: Instant) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(member_id) {
            m.join_waiter = Some(tx);
        }
        let mut persist = false;
        self.try_complete_join(now, &mut persist);
        Reply::Wait(rx)
    }

    /// The answer for `member_id` in the current generation.
    fn join_result(&self, member_id: &str, skip_assignment: bool) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            skip_assignment,
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.metadata(self.protocol.as_deref()),
                        )
                    })
                    .collect()
            } else {
                vec![]
            },
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, cfg: &GroupConfig) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult::error(E::RebalanceInProgress));
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay_until = (self.state == GroupState::Empty
            && !cfg.initial_rebalance_delay.is_zero())
        .then(|| (now + cfg.initial_rebalance_delay).min(now + timeout));
        self.state = GroupState::PreparingRebalance;
    }

    /// Finish the join phase when every member has rejoined (or the
    /// rebalance timeout expired: members that did not rejoin are removed).
    pub fn try_complete_join(&mut self, now: Instant, persist: &mut bool) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.initial_delay_until.is_some_and(|t| now < t) {
            return;
        }
        self.initial_delay_until = None;
        let all_joined =
            self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        let expired = self.rebalance_deadline.is_none_or(|d| now >= d);
        if !all_joined && !expired {
            return;
        }
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            *persist = true;
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(&id, false);
            if let Some(m) = self.members.get_mut(&id) {
                m.deadline = now + m.session_timeout;
                m.assignment = Bytes::new();
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(result);
                }
            }
        }
    }

    /// The protocol every member supports with the most first-choice votes.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|n| votes.get(*n).copied().unwrap_or(0))
            .map(|n| (*n).clone())
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(i) = &m.instance_id
                && self.statics.get(i).map(String::as_str) == Some(id)
            {
                self.statics.remove(i);
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(E::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(E::UnknownMemberId));
            }
        }
    }

    /// After members left: rebalance the rest.
    fn members_removed(&mut self, now: Instant, persist: &mut bool) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, &GroupConfig::no_delay());
                self.try_complete_join(now, persist);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, persist),
            _ => {}
        }
    }

    /// Checks shared by Heartbeat, SyncGroup and OffsetCommit.
    pub(crate) fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return E::CoordinatorNotAvailable.code();
        }
        if self.fenced(instance_id, member_id) {
            return E::FencedInstanceId.code();
        }
        if !self.members.contains_key(member_id) {
            return E::UnknownMemberId.code();
        }
        if generation != self.generation {
            return E::IllegalGeneration.code();
        }
        0
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        let code = self.check_member(member_id, instance_id, generation);
        if code != 0 {
            return code;
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.deadline = now + m.session_timeout;
        }
        match self.state {
            GroupState::PreparingRebalance => E::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
        persist: &mut bool,
    ) -> Reply<SyncResult> {
        let code = self.check_member(member_id, instance_id, generation);
        if code != 0 {
            return Reply::Now(SyncResult {
                error: code,
                ..SyncResult::default()
            });
        }
        if protocol_type.is_some_and(|p| Some(p) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return Reply::Now(SyncResult::error(E::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::PreparingRebalance => Reply::Now(SyncResult::error(E::RebalanceInProgress)),
            GroupState::Stable => {
                let m = &self.members[member_id];
                Reply::Now(self.sync_result(m.assignment.clone()))
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.deadline = now + m.session_timeout;
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    *persist = true;
                    let results: Vec<(String, SyncResult)> = self
                        .members
                        .values()
                        .map(|m| (m.id.clone(), self.sync_result(m.assignment.clone())))
                        .collect();
                    for (id, r) in results {
                        if let Some(w) =
                            self.members.get_mut(&id).and_then(|m| m.sync_waiter.take())
                        {
                            let _ = w.send(r);
                        }
                    }
                }
                Reply::Wait(rx)
            }
        }
    }

    fn sync_result(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment,
        }
    }

    /// LeaveGroup for one member (by id, or by instance id for static
    /// members).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        persist: &mut bool,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return E::CoordinatorNotAvailable.code();
        }
        let target = match instance_id {
            Some(i) => match self.statics.get(i) {
                None => return E::UnknownMemberId.code(),
                Some(m) if !member_id.is_empty() && m != member_id => {
                    return E::FencedInstanceId.code();
                }
                Some(m) => m.clone(),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&target).is_some() {
            self.members_removed(now, persist);
            return 0;
        }
        if !self.members.contains_key(&target) {
            return E::UnknownMemberId.code();
        }
        self.remove_member(&target);
        self.members_removed(now, persist);
        0
    }

    /// Expire members whose session ended and finish timed-out rebalances.
    pub fn tick(&mut self, now: Instant, persist: &mut bool) {
        self.pending.retain(|_, d| *d > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.deadline <= now && m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "session expired");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.members_removed(now, persist);
        }
        self.try_complete_join(now, persist);
    }

    /// Check an OffsetCommit from a member (generation -1 and no member id:
    /// a commit from outside the group, allowed while it is empty).
    pub fn check_commit(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> i16 {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                0
            } else {
                E::UnknownMemberId.code()
            };
        }
        let code = self.check_member(member_id, instance_id, generation);
        if code != 0 {
            return code;
        }
        if self.state == GroupState::CompletingRebalance {
            return E::RebalanceInProgress.code();
        }
        0
    }

    /// Topics the members subscribe to (consumer protocol), for OffsetDelete.
    pub fn subscribed(&self, topic: &str) -> bool {
        self.protocol_type.as_deref() == Some("consumer")
            && self.members.values().any(|m| {
                super::records::subscription_topics(&m.metadata(self.protocol.as_deref()))
                    .is_some_and(|ts| ts.iter().any(|t| t == topic))
            })
    }
}

#[cfg(test)]
mod tests;
