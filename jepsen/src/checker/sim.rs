//! Property: histories produced by a simulated *correct* queue (sends that
//! may fail or time out, transactions that commit or abort, consumers at both
//! isolation levels that get reassigned, a final read) report no anomalies.

use proptest::prelude::*;

use super::tests::H;
use super::*;

#[derive(Debug, Clone)]
enum Outcome {
    Ok,
    Fail,
    /// Unknown to the client; `bool` = it was written.
    Info(bool),
}

#[derive(Debug, Clone)]
enum Action {
    Send(i32, Outcome),
    Txn(Vec<i32>, Outcome),
    Poll { consumer: usize, max: usize },
    Reassign { consumer: usize, back: i64 },
}

const PARTS: i32 = 3;
const CONSUMERS: usize = 3;

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Ok),
        1 => Just(Outcome::Fail),
        1 => any::<bool>().prop_map(Outcome::Info),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        5 => (0..PARTS, outcome()).prop_map(|(p, o)| Action::Send(p, o)),
        2 => (prop::collection::vec(0..PARTS, 1..4), outcome()).prop_map(|(ps, o)| Action::Txn(ps, o)),
        4 => (0..CONSUMERS, 1..6usize).prop_map(|(consumer, max)| Action::Poll { consumer, max }),
        1 => (0..CONSUMERS, 0..4i64).prop_map(|(consumer, back)| Action::Reassign { consumer, back }),
    ]
}

/// A slot in a partition log: a record, or a transaction marker.
#[derive(Clone, Copy)]
enum Slot {
    Rec { value: u64, aborted: bool },
    Marker,
}

struct Sim {
    h: H,
    logs: Vec<Vec<Slot>>,
    next_value: u64,
    next_process: u64,
    /// Per consumer: process id, read_committed, next offset per partition.
    consumers: Vec<(u64, bool, Vec<i64>)>,
}

impl Sim {
    fn new() -> Self {
        let mut sim = Sim {
            h: H::default(),
            logs: vec![Vec::new(); PARTS as usize],
            next_value: 0,
            next_process: 100,
            consumers: Vec::new(),
        };
        for c in 0..CONSUMERS {
            let p = sim.process();
            sim.consumers.push((p, c % 2 == 0, vec![0; PARTS as usize]));
        }
        sim
    }

    fn process(&mut self) -> u64 {
        self.next_process += 1;
        self.next_process
    }

    fn value(&mut self) -> u64 {
        self.next_value += 1;
        self.next_value
    }

    fn append(&mut self, p: i32, slot: Slot) -> i64 {
        let log = &mut self.logs[p as usize];
        log.push(slot);
        log.len() as i64 - 1
    }

    fn run(&mut self, a: &Action) {
        match a {
            Action::Send(p, o) => {
                let v = self.value();
                let proc_ = self.process();
                let (kind, offset) = match o {
                    Outcome::Ok => (OpType::Ok, Some(self.rec(*p, v, false))),
                    Outcome::Fail => (OpType::Fail, None),
                    Outcome::Info(written) => {
                        if *written {
                            self.rec(*p, v, false);
                        }
                        (OpType::Info, None)
                    }
                };
                self.h.send(proc_, *p, v, kind, offset);
            }
            Action::Txn(ps, o) => {
                let commit = match o {
                    Outcome::Ok => true,
                    Outcome::Fail => false,
                    Outcome::Info(c) => *c,
                };
                let mut recs = Vec::new();
                for p in ps {
                    let v = self.value();
                    let off = self.rec(*p, v, !commit);
                    recs.push((*p, v, Some(off)));
                }
                let mut touched = ps.clone();
                touched.sort_unstable();
                touched.dedup();
                for p in touched {
                    self.append(p, Slot::Marker);
                }
                let kind = match o {
                    Outcome::Ok => OpType::Ok,
                    Outcome::Fail => OpType::Fail,
                    Outcome::Info(_) => OpType::Info,
                };
                let proc_ = self.process();
                self.h.txn(proc_, &recs, kind);
            }
            Action::Poll { consumer, max } => {
                let (proc_, rc, mut pos) = self.consumers[*consumer].clone();
                let mut reads = Vec::new();
                for p in 0..PARTS {
                    let got = self.read(p, &mut pos[p as usize], rc, *max);
                    reads.extend(got);
                }
                self.consumers[*consumer].2 = pos;
                self.h.poll(proc_, rc, &reads);
            }
            Action::Reassign { consumer, back } => {
                let c = &mut self.consumers[*consumer];
                for pos in c.2.iter_mut() {
                    *pos = (*pos - back).max(0);
                }
                let proc_ = c.0;
                self.h.assign(proc_, &[0, 1, 2]);
            }
        }
    }

    fn rec(&mut self, p: i32, value: u64, aborted: bool) -> i64 {
        self.append(p, Slot::Rec { value, aborted })
    }

    /// Reads up to `max` visible records of partition `p` from `*pos`.
    fn read(&self, p: i32, pos: &mut i64, rc: bool, max: usize) -> Vec<(i32, i64, u64)> {
        let log = &self.logs[p as usize];
        let mut out = Vec::new();
        while (*pos as usize) < log.len() && out.len() < max {
            if let Slot::Rec { value, aborted } = log[*pos as usize]
                && !(aborted && rc)
            {
                out.push((p, *pos, value));
            }
            *pos += 1;
        }
        out
    }

    fn final_read(&mut self) {
        let mut reads = Vec::new();
        let mut ends = Vec::new();
        for p in 0..PARTS {
            let mut pos = 0;
            reads.extend(self.read(p, &mut pos, true, usize::MAX));
            ends.push((p, self.logs[p as usize].len() as i64));
        }
        let proc_ = self.process();
        self.h.final_read(proc_, &ends, &reads, true);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn correct_queue_histories_are_clean(actions in prop::collection::vec(action(), 0..120)) {
        let mut sim = Sim::new();
        for a in &actions {
            sim.run(a);
        }
        sim.final_read();
        let report = check(&sim.h.ops);
        prop_assert!(report.valid, "{}", report.summary(10));
        let written: usize = sim.logs.iter().map(Vec::len).sum();
        prop_assert!(report.coverage.iter().all(|c| c.complete));
        prop_assert!(written == 0 || !report.coverage.is_empty());
    }

    /// Dropping one acknowledged record from the simulated log (a broker that
    /// loses a write) is always caught as a lost write.
    #[test]
    fn a_dropped_acked_record_is_lost(actions in prop::collection::vec(action(), 1..80), pick in any::<prop::sample::Index>()) {
        let mut sim = Sim::new();
        for a in &actions {
            sim.run(a);
        }
        let acked: Vec<u64> = sim.h.ops.iter()
            .filter(|o| o.f == F::Send && o.kind == OpType::Ok)
            .map(|o| o.sends[0].value)
            .collect();
        prop_assume!(!acked.is_empty());
        let victim = acked[pick.index(acked.len())];
        for log in &mut sim.logs {
            for slot in log.iter_mut() {
                if matches!(slot, Slot::Rec { value, .. } if *value == victim) {
                    *slot = Slot::Marker;
                }
            }
        }
        sim.final_read();
        let report = check(&sim.h.ops);
        let lost: Vec<u64> = report.of_kind(AnomalyKind::Lost).filter_map(|a| match a {
            Anomaly::Lost { value, .. } => Some(*value),
            _ => None,
        }).collect();
        prop_assert_eq!(lost, vec![victim], "{}", report.summary(10));
    }
}
