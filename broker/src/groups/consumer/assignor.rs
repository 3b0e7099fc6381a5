//! The server-side assignors of the consumer protocol (KIP-848), selected by
//! a member's `server_assignor`:
//!
//! - `uniform` (the default, Kafka's `UniformAssignor`): every subscribed
//!   partition goes to one subscriber; members keep what they had as long as
//!   that stays balanced (sticky), new or freed partitions go to the least
//!   loaded subscriber, then single moves balance the loads. With identical
//!   subscriptions the loads differ by at most one.
//! - `range` (Kafka's `RangeAssignor`): per topic, the sorted subscribers
//!   get consecutive ranges, the first `partitions % members` one more, so
//!   co-partitioned topics land together.
//!
//! Both are pure functions of an [`AssignmentSpec`], so they are unit- and
//! property-tested here.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id.
pub type TopicPartitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// One member as an assignor sees it.
#[derive(Debug, Clone, Default)]
pub struct MemberSpec {
    /// Ids of the topics it subscribes to (that exist).
    pub topics: BTreeSet<Uuid>,
    /// Its previous target assignment (for stickiness).
    pub current: TopicPartitions,
}

/// What an assignor computes from.
#[derive(Debug, Clone, Default)]
pub struct AssignmentSpec {
    /// member id -> member
    pub members: BTreeMap<String, MemberSpec>,
    /// topic id -> partition count
    pub topics: BTreeMap<Uuid, i32>,
}

/// A server-side assignor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    /// Names, as clients send them in `server_assignor`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "uniform" => Some(Self::Uniform),
            "range" => Some(Self::Range),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Range => "range",
        }
    }

    /// The target assignment of every member (members without partitions
    /// included, with an empty assignment).
    pub fn assign(self, spec: &AssignmentSpec) -> BTreeMap<String, TopicPartitions> {
        match self {
            Self::Uniform => uniform(spec),
            Self::Range => range(spec),
        }
    }
}

fn empty_result(spec: &AssignmentSpec) -> BTreeMap<String, TopicPartitions> {
    spec.members
        .keys()
        .map(|m| (m.clone(), TopicPartitions::new()))
        .collect()
}

fn range(spec: &AssignmentSpec) -> BTreeMap<String, TopicPartitions> {
    let mut out = empty_result(spec);
    for (&topic, &count) in &spec.topics {
        let subscribers: Vec<&String> = spec
            .members
            .iter()
            .filter(|(_, m)| m.topics.contains(&topic))
            .map(|(id, _)| id)
            .collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribers.len() as i32;
        let (quota, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subscribers.into_iter().enumerate() {
            let take = quota + i32::from((i as i32) < extra);
            if take > 0 {
                out.entry(m.clone())
                    .or_default()
                    .entry(topic)
                    .or_default()
                    .extend(next..next + take);
            }
            next += take;
        }
    }
    out
}

fn uniform(spec: &AssignmentSpec) -> BTreeMap<String, TopicPartitions> {
    let eligible = |topic: &Uuid| -> Vec<&str> {
        spec.members
            .iter()
            .filter(|(_, m)| m.topics.contains(topic))
            .map(|(id, _)| id.as_str())
            .collect()
    };
    let subscribers: BTreeMap<Uuid, Vec<&str>> = spec
        .topics
        .keys()
        .map(|t| (*t, eligible(t)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let total: usize = subscribers
        .keys()
        .map(|t| spec.topics[t].max(0) as usize)
        .sum();
    let active = spec
        .members
        .values()
        .filter(|m| !m.topics.is_empty())
        .count();
    let cap = total.div_ceil(active.max(1));

    let mut owner: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
    let mut load: BTreeMap<&str, usize> = spec.members.keys().map(|m| (m.as_str(), 0)).collect();
    // Sticky: keep what is still valid, up to the cap.
    for (id, m) in &spec.members {
        for (topic, parts) in &m.current {
            let Some(&count) = spec.topics.get(topic) else {
                continue;
            };
            if !m.topics.contains(topic) {
                continue;
            }
            for &p in parts {
                if p < count && load[id.as_str()] < cap && !owner.contains_key(&(*topic, p)) {
                    owner.insert((*topic, p), id.as_str());
                    *load.get_mut(id.as_str()).expect("member") += 1;
                }
            }
        }
    }
    // Unowned partitions to the least loaded subscriber.
    for (topic, subs) in &subscribers {
        for p in 0..spec.topics[topic] {
            if owner.contains_key(&(*topic, p)) {
                continue;
            }
            let m = *subs
                .iter()
                .min_by_key(|m| (load[**m], **m))
                .expect("subscriber");
            owner.insert((*topic, p), m);
            *load.get_mut(m).expect("member") += 1;
        }
    }
    // Balance: move single partitions from a member to a subscriber with at
    // least two fewer, until none can move. Each move lowers the sum of
    // squared loads, so this ends; the bound is a safety net.
    let mut budget = total * spec.members.len() + 1;
    loop {
        let mut moved = false;
        for (&(topic, p), from) in owner.clone().iter() {
            let best = subscribers[&topic]
                .iter()
                .copied()
                .min_by_key(|m| (load[*m], *m))
                .expect("subscriber");
            if load[best] + 1 < load[*from] {
                owner.insert((topic, p), best);
                *load.get_mut(*from).expect("member") -= 1;
                *load.get_mut(best).expect("member") += 1;
                moved = true;
                budget = budget.saturating_sub(1);
            }
        }
        if !moved || budget == 0 {
            break;
        }
    }
    let mut out = empty_result(spec);
    for ((topic, p), m) in owner {
        out.entry(m.to_string())
            .or_default()
            .entry(topic)
            .or_default()
            .insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(i: u8) -> Uuid {
        Uuid::from_bytes([i + 1; 16])
    }

    fn spec(members: usize, topics: &[i32], subs: impl Fn(usize, usize) -> bool) -> AssignmentSpec {
        AssignmentSpec {
            members: (0..members)
                .map(|m| {
                    let topics = (0..topics.len())
                        .filter(|t| subs(m, *t))
                        .map(|t| topic(t as u8))
                        .collect();
                    (
                        format!("m{m}"),
                        MemberSpec {
                            topics,
                            current: TopicPartitions::new(),
                        },
                    )
                })
                .collect(),
            topics: topics
                .iter()
                .enumerate()
                .map(|(i, n)| (topic(i as u8), *n))
                .collect(),
        }
    }

    fn sizes(out: &BTreeMap<String, TopicPartitions>) -> Vec<usize> {
        out.values()
            .map(|a| a.values().map(|p| p.len()).sum())
            .collect()
    }

    /// Every subscribed partition is assigned exactly once, to a subscriber.
    fn check_complete(spec: &AssignmentSpec, out: &BTreeMap<String, TopicPartitions>) {
        let mut seen = BTreeSet::new();
        for (m, a) in out {
            for (t, ps) in a {
                assert!(spec.members[m].topics.contains(t), "{m} not subscribed");
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}-{p} assigned twice");
                }
            }
        }
        for (t, n) in &spec.topics {
            if spec.members.values().any(|m| m.topics.contains(t)) {
                for p in 0..*n {
                    assert!(seen.contains(&(*t, p)), "{t}-{p} unassigned");
                }
            }
        }
    }

    #[test]
    fn three_members_six_partitions_get_two_each() {
        for a in [Assignor::Uniform, Assignor::Range] {
            let s = spec(3, &[6], |_, _| true);
            let out = a.assign(&s);
            check_complete(&s, &out);
            assert_eq!(sizes(&out), vec![2, 2, 2], "{a:?}");
        }
    }

    #[test]
    fn range_is_co_partitioned() {
        let s = spec(2, &[3, 3], |_, _| true);
        let out = Assignor::Range.assign(&s);
        assert_eq!(out["m0"][&topic(0)], out["m0"][&topic(1)]);
        assert_eq!(out["m0"][&topic(0)], [0, 1].into());
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let mut s = spec(2, &[6], |_, _| true);
        let before = Assignor::Uniform.assign(&s);
        for (m, a) in &before {
            s.members.get_mut(m).unwrap().current = a.clone();
        }
        s.members.insert(
            "m2".into(),
            MemberSpec {
                topics: [topic(0)].into(),
                current: TopicPartitions::new(),
            },
        );
        let after = Assignor::Uniform.assign(&s);
        check_complete(&s, &after);
        assert_eq!(sizes(&after), vec![2, 2, 2]);
        for m in ["m0", "m1"] {
            assert!(after[m][&topic(0)].is_subset(&before[m][&topic(0)]));
        }
    }

    proptest! {
        #[test]
        fn uniform_homogeneous_is_complete_balanced_and_stable(
            members in 1usize..8,
            topics in proptest::collection::vec(0i32..20, 1..4),
        ) {
            let s = spec(members, &topics, |_, _| true);
            let out = Assignor::Uniform.assign(&s);
            check_complete(&s, &out);
            let sz = sizes(&out);
            prop_assert!(sz.iter().max().unwrap() - sz.iter().min().unwrap() <= 1);
            // Re-running with its own output as the current assignment
            // changes nothing.
            let mut again = s.clone();
            for (m, a) in &out {
                again.members.get_mut(m).unwrap().current = a.clone();
            }
            prop_assert_eq!(Assignor::Uniform.assign(&again), out);
        }

        #[test]
        fn every_assignor_is_complete_for_any_subscription(
            members in 1usize..6,
            topics in proptest::collection::vec(0i32..12, 1..4),
            mask in any::<u64>(),
        ) {
            let s = spec(members, &topics, |m, t| mask >> ((m * 4 + t) % 64) & 1 == 1);
            for a in [Assignor::Uniform, Assignor::Range] {
                let out = a.assign(&s);
                check_complete(&s, &out);
                prop_assert_eq!(out.len(), members);
            }
        }
    }
}
