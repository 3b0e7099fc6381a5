//! Reconciliation of one member's assignment towards its target (Kafka's
//! `CurrentAssignmentBuilder`): partitions move incrementally, and a
//! partition reaches its new owner only after its previous owner
//! acknowledged the revocation.
//!
//! - **Stable**: the member owns its target at the target epoch.
//! - **UnrevokedPartitions**: some owned partitions left the target; the
//!   member keeps its epoch and is told to give them up. It advances once a
//!   heartbeat reports owned partitions without them.
//! - **UnreleasedPartitions**: the member is at the target epoch but some of
//!   its target partitions are still owned (or being revoked) by other
//!   members; it gets them on a later heartbeat, once they are free.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::assignor::TopicPartitions;

/// A member's reconciliation state, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberState {
    #[default]
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

impl MemberState {
    pub fn code(self) -> i8 {
        match self {
            Self::Stable => 0,
            Self::UnrevokedPartitions => 1,
            Self::UnreleasedPartitions => 2,
        }
    }

    pub fn from_code(c: i8) -> Self {
        match c {
            1 => Self::UnrevokedPartitions,
            2 => Self::UnreleasedPartitions,
            _ => Self::Stable,
        }
    }
}

/// The part of a member that reconciliation changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reconciliation {
    pub state: MemberState,
    pub epoch: i32,
    pub previous_epoch: i32,
    /// What the member owns (or may own) now.
    pub assigned: TopicPartitions,
    /// What it was told to give up and has not yet.
    pub revoking: TopicPartitions,
}

fn contains(a: &TopicPartitions, t: &Uuid, p: i32) -> bool {
    a.get(t).is_some_and(|s| s.contains(&p))
}

fn insert(a: &mut TopicPartitions, t: Uuid, p: i32) {
    a.entry(t).or_default().insert(p);
}

/// Flatten for comparisons.
pub fn flat(a: &TopicPartitions) -> BTreeSet<(Uuid, i32)> {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
        .collect()
}

impl Reconciliation {
    /// One step towards `target` at `target_epoch`. `taken(t, p)`: is the
    /// partition owned or being revoked by another member. `owned`: the
    /// partitions the member reported in this heartbeat, if it did.
    pub fn next(
        &self,
        target_epoch: i32,
        target: &TopicPartitions,
        taken: impl Fn(&Uuid, i32) -> bool,
        owned: Option<&TopicPartitions>,
    ) -> Self {
        match self.state {
            MemberState::Stable if self.epoch == target_epoch => self.clone(),
            MemberState::UnrevokedPartitions => {
                let released = owned.is_some_and(|o| {
                    self.revoking
                        .iter()
                        .all(|(t, ps)| ps.iter().all(|p| !contains(o, t, *p)))
                });
                if released {
                    let cleared = Self {
                        revoking: TopicPartitions::new(),
                        ..self.clone()
                    };
                    cleared.compute(target_epoch, target, taken)
                } else {
                    self.clone()
                }
            }
            _ => self.compute(target_epoch, target, taken),
        }
    }

    fn compute(
        &self,
        target_epoch: i32,
        target: &TopicPartitions,
        taken: impl Fn(&Uuid, i32) -> bool,
    ) -> Self {
        let mut kept = TopicPartitions::new();
        let mut revoke = TopicPartitions::new();
        for (t, ps) in &self.assigned {
            for &p in ps {
                if contains(target, t, p) {
                    insert(&mut kept, *t, p);
                } else {
                    insert(&mut revoke, *t, p);
                }
            }
        }
        if !revoke.is_empty() {
            return Self {
                state: MemberState::UnrevokedPartitions,
                epoch: self.epoch,
                previous_epoch: self.previous_epoch,
                assigned: kept,
                revoking: revoke,
            };
        }
        let mut unreleased = false;
        let mut assigned = kept;
        for (t, ps) in target {
            for &p in ps {
                if contains(&assigned, t, p) {
                    continue;
                }
                if taken(t, p) {
                    unreleased = true;
                } else {
                    insert(&mut assigned, *t, p);
                }
            }
        }
        Self {
            state: if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            },
            epoch: target_epoch,
            previous_epoch: if target_epoch != self.epoch {
                self.epoch
            } else {
                self.previous_epoch
            },
            assigned,
            revoking: TopicPartitions::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t() -> Uuid {
        Uuid::from_bytes([7; 16])
    }

    fn tp(ps: &[i32]) -> TopicPartitions {
        let mut a = TopicPartitions::new();
        for p in ps {
            insert(&mut a, t(), *p);
        }
        a
    }

    #[test]
    fn revocation_comes_before_the_new_epoch() {
        let m = Reconciliation {
            epoch: 1,
            assigned: tp(&[0, 1, 2]),
            ..Default::default()
        };
        let r = m.next(2, &tp(&[0, 1]), |_, _| false, None);
        assert_eq!(r.state, MemberState::UnrevokedPartitions);
        assert_eq!(r.epoch, 1);
        assert_eq!(r.assigned, tp(&[0, 1]));
        assert_eq!(r.revoking, tp(&[2]));
        // Still owned: nothing moves.
        assert_eq!(
            r.next(2, &tp(&[0, 1]), |_, _| false, Some(&tp(&[0, 1, 2]))),
            r
        );
        // Acknowledged: stable at the new epoch.
        let s = r.next(2, &tp(&[0, 1]), |_, _| false, Some(&tp(&[0, 1])));
        assert_eq!(s.state, MemberState::Stable);
        assert_eq!((s.epoch, s.previous_epoch), (2, 1));
        assert_eq!(s.assigned, tp(&[0, 1]));
    }

    #[test]
    fn partitions_of_others_wait_until_released() {
        let m = Reconciliation::default();
        let r = m.next(3, &tp(&[4, 5]), |_, p| p == 5, None);
        assert_eq!(r.state, MemberState::UnreleasedPartitions);
        assert_eq!((r.epoch, r.assigned.clone()), (3, tp(&[4])));
        let s = r.next(3, &tp(&[4, 5]), |_, _| false, None);
        assert_eq!(s.state, MemberState::Stable);
        assert_eq!(s.assigned, tp(&[4, 5]));
    }

    proptest! {
        /// Whatever the steps, a member never holds a partition another
        /// member holds, never gains partitions while it has some to revoke,
        /// and ends stable on its target once everything is released.
        #[test]
        fn converges_without_double_ownership(
            start in proptest::collection::btree_set(0i32..8, 0..8),
            target in proptest::collection::btree_set(0i32..8, 0..8),
            others in proptest::collection::btree_set(0i32..8, 0..8),
        ) {
            let start: Vec<i32> = start.difference(&others).copied().collect();
            let target_tp = tp(&target.iter().copied().collect::<Vec<_>>());
            let mut m = Reconciliation { epoch: 1, assigned: tp(&start), ..Default::default() };
            let mut steps = 0;
            loop {
                let before = flat(&m.assigned);
                let next = m.next(2, &target_tp, |_, p| others.contains(&p), Some(&m.assigned.clone()));
                for (_, p) in flat(&next.assigned) {
                    prop_assert!(!others.contains(&p));
                }
                if m.state == MemberState::UnrevokedPartitions || !m.revoking.is_empty() {
                    prop_assert!(flat(&next.assigned).is_subset(&before) || next.revoking.is_empty());
                }
                if next == m { break; }
                m = next;
                steps += 1;
                prop_assert!(steps < 5);
            }
            let want: BTreeSet<(Uuid, i32)> = target.difference(&others).map(|p| (t(), *p)).collect();
            prop_assert_eq!(flat(&m.assigned), want);
            prop_assert_eq!(m.epoch, 2);
        }
    }
}
