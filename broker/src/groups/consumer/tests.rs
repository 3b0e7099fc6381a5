//! The consumer-protocol group state machine, driven by hand-made
//! heartbeats and a fake clock.

use std::collections::BTreeSet;

use super::*;

fn topics(n: i32) -> TopicsView {
    [("t".to_string(), (Uuid::from_bytes([9; 16]), n))].into()
}

fn cfg() -> GroupConfig {
    GroupConfig::default()
}

fn join(id: &str) -> Heartbeat {
    Heartbeat {
        version: 1,
        member_id: id.to_string(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(TopicPartitions::new()),
        ..Heartbeat::default()
    }
}

fn beat(id: &str, epoch: i32, owned: &TopicPartitions) -> Heartbeat {
    Heartbeat {
        version: 1,
        member_id: id.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: 30_000,
        owned: Some(owned.clone()),
        ..Heartbeat::default()
    }
}

/// Simulated clients: each remembers its epoch and what it owns, and
/// heartbeats until nothing changes.
struct Sim {
    g: ConsumerGroup,
    topics: TopicsView,
    now: Instant,
    clients: BTreeMap<String, (i32, TopicPartitions)>,
}

impl Sim {
    fn new(n: i32) -> Self {
        Self {
            g: ConsumerGroup::new("g".into(), 0),
            topics: topics(n),
            now: Instant::now(),
            clients: BTreeMap::new(),
        }
    }

    fn send(&mut self, hb: Heartbeat) -> HeartbeatAnswer {
        let mut changed = false;
        let id = hb.member_id.clone();
        let a = self
            .g
            .heartbeat(hb, &self.topics, self.now, &cfg(), &mut changed);
        if a.error == 0 && a.member_epoch >= 0 {
            let entry = self.clients.entry(id).or_default();
            entry.0 = a.member_epoch;
            if let Some(asg) = &a.assignment {
                entry.1 = asg.clone();
            }
        }
        a
    }

    fn join(&mut self, id: &str) {
        let a = self.send(join(id));
        assert_eq!(a.error, 0, "{a:?}");
    }

    /// Heartbeat everyone until quiet; checks no partition is ever owned
    /// by two clients.
    fn settle(&mut self) {
        for _ in 0..20 {
            let before = self.clients.clone();
            for (id, (epoch, owned)) in before.clone() {
                let a = self.send(beat(&id, epoch, &owned));
                assert_eq!(a.error, 0, "{a:?}");
                let mut seen = BTreeSet::new();
                for (_, o) in self.clients.values() {
                    for tp in reconcile::flat(o) {
                        assert!(seen.insert(tp), "{tp:?} owned twice");
                    }
                }
            }
            if self.clients == before {
                return;
            }
        }
        panic!("did not settle: {:?}", self.clients);
    }

    fn sizes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .clients
            .values()
            .map(|(_, o)| reconcile::flat(o).len())
            .collect();
        v.sort();
        v
    }
}

#[test]
fn three_members_share_six_partitions_then_leave_and_join() {
    let mut s = Sim::new(6);
    for id in ["a", "b", "c"] {
        s.join(id);
    }
    s.settle();
    assert_eq!(s.sizes(), vec![2, 2, 2]);
    assert_eq!(s.g.state(), "Stable");
    let epoch = s.g.epoch;

    let (e, _) = s.clients.remove("c").unwrap();
    let mut changed = false;
    let a = s.g.heartbeat(
        beat("c", e, &TopicPartitions::new()).leave(),
        &s.topics,
        s.now,
        &cfg(),
        &mut changed,
    );
    assert_eq!((a.error, a.member_epoch), (0, LEAVE_EPOCH));
    s.settle();
    assert_eq!(s.sizes(), vec![3, 3]);
    assert!(s.g.epoch > epoch);

    s.join("d");
    s.settle();
    assert_eq!(s.sizes(), vec![2, 2, 2]);
    assert!(s.clients.values().all(|(e, _)| *e == s.g.epoch));
}

impl Heartbeat {
    fn leave(mut self) -> Self {
        self.member_epoch = LEAVE_EPOCH;
        self
    }
}

#[test]
fn a_partition_moves_only_after_its_owner_revoked_it() {
    let mut s = Sim::new(2);
    s.join("a");
    s.settle();
    assert_eq!(s.sizes(), vec![2]);
    // b joins: its target holds one of a's partitions, which it gets only
    // once a acknowledged the revocation.
    let a = s.send(join("b"));
    assert!(a.assignment.unwrap().is_empty());
    assert_eq!(
        s.g.members["b"].rec.state,
        MemberState::UnreleasedPartitions
    );
    let (ea, owned_a) = s.clients["a"].clone();
    let r = s.send(beat("a", ea, &owned_a));
    assert_eq!(r.member_epoch, ea, "a keeps its epoch until it revoked");
    assert_eq!(s.g.members["a"].rec.state, MemberState::UnrevokedPartitions);
    // b asks again before a acknowledged: still nothing.
    let (eb, owned_b) = s.clients["b"].clone();
    s.send(beat("b", eb, &owned_b));
    assert!(s.clients["b"].1.is_empty());
    s.settle();
    assert_eq!(s.sizes(), vec![1, 1]);
}

#[test]
fn session_expiry_and_revocation_timeout_remove_members() {
    let mut s = Sim::new(4);
    s.join("a");
    s.join("b");
    s.settle();
    let later = s.now + Duration::from_millis(cfg().consumer_session_timeout_ms() as u64 + 1);
    // a keeps heartbeating, b goes silent.
    s.now = later - Duration::from_millis(10);
    let (ea, oa) = s.clients["a"].clone();
    s.send(beat("a", ea, &oa));
    assert!(s.g.tick(later));
    assert_eq!(s.g.members.keys().collect::<Vec<_>>(), vec!["a"]);
    s.clients.remove("b");
    s.settle();
    assert_eq!(s.sizes(), vec![4]);
}

#[test]
fn epochs_are_checked_and_fenced() {
    let mut s = Sim::new(2);
    s.join("a");
    let (e, o) = s.clients["a"].clone();
    assert_eq!(
        s.send(beat("a", e + 1, &o)).error,
        E::FencedMemberEpoch.code()
    );
    assert_eq!(s.send(beat("zz", e, &o)).error, E::UnknownMemberId.code());
    assert_eq!(s.g.check_member_epoch("a", e), 0);
    assert_eq!(
        s.g.check_member_epoch("a", e - 1),
        E::StaleMemberEpoch.code()
    );
    assert_eq!(s.g.check_member_epoch("zz", e), E::UnknownMemberId.code());
    assert_eq!(s.g.check_member_epoch("", -1), E::UnknownMemberId.code());
    // After a rebalance moves "a" to a new epoch, a commit still carrying
    // the previous one (in flight with the heartbeat) is accepted; older
    // ones are stale.
    s.join("b");
    s.settle();
    let (e2, _) = s.clients["a"].clone();
    let prev = s.g.members["a"].rec.previous_epoch;
    assert!(e2 > e && prev > 0, "a moved to a new epoch");
    assert_eq!(s.g.check_member_epoch("a", e2), 0);
    assert_eq!(s.g.check_member_epoch("a", prev), 0);
    assert_eq!(
        s.g.check_member_epoch("a", prev - 1),
        E::StaleMemberEpoch.code()
    );
}

#[test]
fn static_members_come_back_with_their_assignment() {
    let mut s = Sim::new(4);
    let mut a = join("a1");
    a.instance_id = Some("ia".into());
    s.send(a.clone());
    s.join("b");
    s.settle();
    let owned = s.clients["a1"].1.clone();
    let epoch = s.g.epoch;
    // Another member with the same instance id while a1 is active.
    let mut thief = join("a2");
    thief.instance_id = Some("ia".into());
    assert_eq!(s.send(thief.clone()).error, E::UnreleasedInstanceId.code());
    // a1 leaves temporarily; a2 takes over without a new group epoch.
    let mut leave = beat("a1", s.clients["a1"].0, &owned);
    leave.member_epoch = STATIC_LEAVE_EPOCH;
    leave.instance_id = Some("ia".into());
    assert_eq!(s.send(leave).member_epoch, STATIC_LEAVE_EPOCH);
    s.clients.remove("a1");
    let r = s.send(thief);
    assert_eq!(r.error, 0);
    assert_eq!(r.assignment.unwrap(), owned);
    assert_eq!(s.g.epoch, epoch);
}

#[test]
fn requests_are_validated_like_kafka() {
    let names = vec!["uniform".to_string(), "range".to_string()];
    let mut hb = join("m");
    hb.server_assignor = Some("sticky".into());
    assert_eq!(
        validate(&hb, "g", &names).unwrap_err().0,
        E::UnsupportedAssignor
    );
    let mut hb = join("m");
    hb.subscribed_topic_names = None;
    hb.subscribed_topic_regex = Some("a(".into());
    assert_eq!(
        validate(&hb, "g", &names).unwrap_err().0,
        E::InvalidRegularExpression
    );
    let mut hb = join("m");
    hb.subscribed_topic_names = None;
    assert_eq!(validate(&hb, "g", &names).unwrap_err().0, E::InvalidRequest);
    assert_eq!(
        validate(&join(""), "g", &names).unwrap_err().0,
        E::InvalidRequest
    );
    assert_eq!(
        validate(&join("m"), "", &names).unwrap_err().0,
        E::InvalidRequest
    );
    assert!(validate(&join("m"), "g", &names).is_ok());
}

#[test]
fn regex_subscriptions_follow_new_topics_and_partitions() {
    let mut s = Sim::new(2);
    let mut hb = join("a");
    hb.subscribed_topic_names = None;
    hb.subscribed_topic_regex = Some("t|u.*".into());
    s.send(hb);
    s.settle();
    assert_eq!(s.sizes(), vec![2]);
    s.topics.insert("u1".into(), (Uuid::from_bytes([3; 16]), 3));
    s.topics.insert("x".into(), (Uuid::from_bytes([4; 16]), 3));
    s.settle();
    assert_eq!(s.sizes(), vec![5]);
    s.topics.get_mut("t").unwrap().1 = 4;
    s.settle();
    assert_eq!(s.sizes(), vec![7]);
}

#[test]
fn snapshots_round_trip() {
    let mut s = Sim::new(6);
    for id in ["a", "b", "c"] {
        s.join(id);
    }
    s.settle();
    let bytes = record::encode(&s.g);
    let g = record::decode("g".into(), 0, bytes, s.now, Duration::from_secs(1)).unwrap();
    assert_eq!(
        (g.epoch, g.assignment_epoch),
        (s.g.epoch, s.g.assignment_epoch)
    );
    assert_eq!(g.target, s.g.target);
    for (id, m) in &s.g.members {
        assert_eq!(g.members[id].rec, m.rec);
        assert_eq!(
            g.members[id].subscribed_topic_names,
            m.subscribed_topic_names
        );
    }
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let mut s = Sim::new(2);
    s.join("a");
    s.settle();
    s.join("b");
    // a is told to revoke but never acknowledges.
    let (ea, oa) = s.clients["a"].clone();
    s.send(beat("a", ea, &oa));
    assert_eq!(s.g.members["a"].rec.state, MemberState::UnrevokedPartitions);
    let deadline = s.g.members["a"].revoke_deadline.unwrap();
    assert!(!s.g.tick(deadline - Duration::from_millis(1)));
    assert!(s.g.tick(deadline));
    assert!(!s.g.members.contains_key("a"));
    s.clients.remove("a");
    s.settle();
    assert_eq!(s.sizes(), vec![2]);
}

#[test]
fn the_group_size_is_bounded() {
    let mut g = ConsumerGroup::new("g".into(), 0);
    let cfg = GroupConfig {
        consumer_max_size: 1,
        ..GroupConfig::default()
    };
    let mut changed = false;
    let now = Instant::now();
    assert_eq!(
        g.heartbeat(join("a"), &topics(1), now, &cfg, &mut changed)
            .error,
        0
    );
    let a = g.heartbeat(join("b"), &topics(1), now, &cfg, &mut changed);
    assert_eq!(a.error, E::GroupMaxSizeReached.code());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Join(u8),
        Leave(u8),
        Beat(u8),
        AddPartitions(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..5).prop_map(Op::Join),
            (0u8..5).prop_map(Op::Leave),
            (0u8..5).prop_map(Op::Beat),
            (0u8..5).prop_map(Op::Beat),
            (0u8..5).prop_map(Op::Beat),
            (1u8..3).prop_map(Op::AddPartitions),
        ]
    }

    /// Whatever joins, leaves, heartbeats (in any order) and partition
    /// additions happen, no partition is ever owned by two clients at once
    /// (clients give partitions up only when the coordinator says so), and
    /// once everyone heartbeats until quiet, every partition is owned and
    /// the loads differ by at most one.
    fn check_no_double_ownership(s: &Sim) -> Result<(), TestCaseError> {
        let mut seen = BTreeSet::new();
        for (_, o) in s.clients.values() {
            for tp in reconcile::flat(o) {
                prop_assert!(seen.insert(tp), "{:?} owned twice", tp);
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_interleaving_is_safe_and_settles_balanced(ops in proptest::collection::vec(op(), 1..40)) {
            let mut s = Sim::new(6);
            for op in ops {
                match op {
                    Op::Join(i) => {
                        let id = format!("m{i}");
                        if !s.clients.contains_key(&id) {
                            s.join(&id);
                        }
                    }
                    Op::Leave(i) => {
                        let id = format!("m{i}");
                        if let Some((e, o)) = s.clients.remove(&id) {
                            let mut changed = false;
                            let a = s.g.heartbeat(beat(&id, e, &o).leave(), &s.topics, s.now, &cfg(), &mut changed);
                            prop_assert_eq!(a.error, 0);
                        }
                    }
                    Op::Beat(i) => {
                        let id = format!("m{i}");
                        if let Some((e, o)) = s.clients.get(&id).cloned() {
                            let a = s.send(beat(&id, e, &o));
                            prop_assert_eq!(a.error, 0, "{:?}", a);
                        }
                    }
                    Op::AddPartitions(n) => {
                        s.topics.get_mut("t").unwrap().1 += n as i32;
                    }
                }
                check_no_double_ownership(&s)?;
            }
            if s.clients.is_empty() {
                return Ok(());
            }
            s.settle();
            let total = s.topics["t"].1 as usize;
            let sizes = s.sizes();
            prop_assert_eq!(sizes.iter().sum::<usize>(), total);
            prop_assert!(sizes.last().unwrap() - sizes.first().unwrap() <= 1, "{:?}", sizes);
        }
    }
}
