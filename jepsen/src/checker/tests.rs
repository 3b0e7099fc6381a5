//! Hand-built histories: each plants one anomaly and the checker must report
//! exactly that anomaly and nothing else.

use super::*;
use crate::history::{EndOffset, ReadRec, SendRec};

/// Builds a history with indices in order.
#[derive(Default)]
pub(super) struct H {
    pub(super) ops: Vec<Op>,
}

pub(super) fn part(p: i32) -> Partition {
    Partition {
        topic: "t".into(),
        partition: p,
    }
}

impl H {
    pub(super) fn push(&mut self, mut op: Op) -> u64 {
        op.index = self.ops.len() as u64;
        op.time_ns = op.index * 1000;
        self.ops.push(op);
        self.ops.len() as u64 - 1
    }

    /// A send: invoke then its completion; returns the completion's index.
    pub(super) fn send(
        &mut self,
        process: u64,
        p: i32,
        value: u64,
        outcome: OpType,
        offset: Option<i64>,
    ) -> u64 {
        self.txn_or_send(F::Send, process, &[(p, value, offset)], outcome)
    }

    pub(super) fn txn(
        &mut self,
        process: u64,
        recs: &[(i32, u64, Option<i64>)],
        outcome: OpType,
    ) -> u64 {
        self.txn_or_send(F::Txn, process, recs, outcome)
    }

    fn txn_or_send(
        &mut self,
        f: F,
        process: u64,
        recs: &[(i32, u64, Option<i64>)],
        outcome: OpType,
    ) -> u64 {
        let sends = |with_offset: bool| {
            recs.iter()
                .map(|(p, v, o)| SendRec {
                    topic: "t".into(),
                    partition: *p,
                    value: *v,
                    offset: if with_offset { *o } else { None },
                })
                .collect::<Vec<_>>()
        };
        self.push(Op {
            sends: sends(false),
            idempotent: true,
            ..Op::new(process, OpType::Invoke, f)
        });
        self.push(Op {
            sends: sends(outcome == OpType::Ok),
            idempotent: true,
            ..Op::new(process, outcome, f)
        })
    }

    pub(super) fn poll(
        &mut self,
        process: u64,
        read_committed: bool,
        reads: &[(i32, i64, u64)],
    ) -> u64 {
        self.push(Op::new(process, OpType::Invoke, F::Poll));
        self.push(Op {
            reads: reads_of(reads),
            read_committed,
            ..Op::new(process, OpType::Ok, F::Poll)
        })
    }

    pub(super) fn assign(&mut self, process: u64, parts: &[i32]) -> u64 {
        self.push(Op {
            partitions: parts.iter().map(|p| part(*p)).collect(),
            ..Op::new(process, OpType::Ok, F::Assign)
        })
    }

    pub(super) fn final_read(
        &mut self,
        process: u64,
        ends: &[(i32, i64)],
        reads: &[(i32, i64, u64)],
        complete: bool,
    ) -> u64 {
        self.push(Op::new(process, OpType::Invoke, F::FinalRead));
        self.push(Op {
            reads: reads_of(reads),
            read_committed: true,
            end_offsets: ends
                .iter()
                .map(|(p, e)| EndOffset {
                    topic: "t".into(),
                    partition: *p,
                    end_offset: *e,
                })
                .collect(),
            ..Op::new(
                process,
                if complete { OpType::Ok } else { OpType::Info },
                F::FinalRead,
            )
        })
    }
}

fn reads_of(reads: &[(i32, i64, u64)]) -> Vec<ReadRec> {
    reads
        .iter()
        .map(|(p, o, v)| ReadRec {
            topic: "t".into(),
            partition: *p,
            offset: *o,
            value: *v,
        })
        .collect()
}

/// Asserts the report holds exactly one anomaly, of `kind`, and returns it.
fn only(report: &Report, kind: AnomalyKind) -> Anomaly {
    assert_eq!(
        report.anomalies.len(),
        1,
        "expected exactly one {kind:?}, got:\n{}",
        report.summary(20)
    );
    let a = report.anomalies[0].clone();
    assert_eq!(a.kind(), kind, "{}", report.summary(20));
    assert!(!report.valid);
    assert_eq!(report.anomaly_counts.get(&kind), Some(&1));
    a
}

/// Three acked sends to partition 0 at offsets 0..3.
fn three_acked(h: &mut H) {
    h.send(0, 0, 100, OpType::Ok, Some(0));
    h.send(0, 0, 101, OpType::Ok, Some(1));
    h.send(0, 0, 102, OpType::Ok, Some(2));
}

#[test]
fn clean_history_reports_nothing() {
    let mut h = H::default();
    three_acked(&mut h);
    // Unknown sends: one written (offset 3), one not.
    h.send(1, 0, 103, OpType::Info, None);
    h.send(2, 0, 104, OpType::Info, None);
    // A failed send never appears.
    h.send(3, 0, 105, OpType::Fail, None);
    // An aborted txn at offset 4 and its marker at 5; a committed one at 6 (+marker 7).
    h.txn(4, &[(0, 106, None), (1, 107, None)], OpType::Fail);
    h.txn(4, &[(0, 108, Some(6)), (1, 109, Some(2))], OpType::Ok);
    h.send(5, 1, 110, OpType::Ok, Some(4));
    h.send(5, 1, 111, OpType::Ok, Some(5));
    // Read-uncommitted consumer sees the aborted record; read-committed one skips it.
    h.poll(
        10,
        false,
        &[
            (0, 0, 100),
            (0, 1, 101),
            (0, 2, 102),
            (0, 3, 103),
            (0, 4, 106),
        ],
    );
    h.poll(10, false, &[(0, 6, 108)]);
    h.poll(11, true, &[(0, 0, 100), (0, 1, 101)]);
    h.poll(
        11,
        true,
        &[(0, 2, 102), (0, 3, 103), (0, 6, 108), (1, 2, 109)],
    );
    // After a new assignment the stream may restart from an earlier offset.
    h.assign(11, &[0]);
    h.poll(11, true, &[(0, 1, 101), (0, 2, 102)]);
    h.final_read(
        20,
        &[(0, 8), (1, 6)],
        &[
            (0, 0, 100),
            (0, 1, 101),
            (0, 2, 102),
            (0, 3, 103),
            (0, 6, 108),
            (1, 2, 109),
            (1, 4, 110),
            (1, 5, 111),
        ],
        true,
    );
    let r = check(&h.ops);
    assert!(r.valid, "{}", r.summary(20));
    assert!(r.anomalies.is_empty());
    assert_eq!(r.coverage.len(), 2);
    assert!(r.coverage.iter().all(|c| c.complete));
    assert_eq!(r.counts.sends_ok, 5);
    assert_eq!(r.counts.sends_info, 2);
    assert_eq!(r.counts.txns_fail, 1);
}

#[test]
fn lost_write_is_reported() {
    let mut h = H::default();
    three_acked(&mut h);
    let write = h.send(0, 0, 103, OpType::Ok, Some(3));
    let fin = h.final_read(9, &[(0, 4)], &[(0, 0, 100), (0, 1, 101), (0, 2, 102)], true);
    let a = only(&check(&h.ops), AnomalyKind::Lost);
    assert_eq!(
        a,
        Anomaly::Lost {
            partition: part(0),
            value: 103,
            offset: Some(3),
            write_op: write,
            final_read_op: Some(fin),
        }
    );
}

#[test]
fn lost_write_read_earlier_but_gone_from_final_read() {
    let mut h = H::default();
    three_acked(&mut h);
    let write = h.send(0, 0, 103, OpType::Ok, None);
    h.poll(5, false, &[(0, 3, 103)]);
    h.final_read(9, &[(0, 4)], &[(0, 0, 100), (0, 1, 101), (0, 2, 102)], true);
    match only(&check(&h.ops), AnomalyKind::Lost) {
        Anomaly::Lost {
            value, write_op, ..
        } => {
            assert_eq!((value, write_op), (103, write));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unseen_when_final_read_did_not_finish() {
    let mut h = H::default();
    three_acked(&mut h);
    let write = h.send(0, 0, 103, OpType::Ok, Some(3));
    h.final_read(
        9,
        &[(0, 4)],
        &[(0, 0, 100), (0, 1, 101), (0, 2, 102)],
        false,
    );
    let r = check(&h.ops);
    let a = only(&r, AnomalyKind::Unseen);
    assert_eq!(
        a,
        Anomaly::Unseen {
            partition: part(0),
            value: 103,
            offset: Some(3),
            write_op: write,
        }
    );
    assert!(!r.coverage[0].complete);
    assert_eq!(r.coverage[0].reached, Some(3));
}

#[test]
fn unseen_when_there_is_no_final_read() {
    let mut h = H::default();
    h.send(0, 0, 100, OpType::Ok, Some(0));
    let r = check(&h.ops);
    only(&r, AnomalyKind::Unseen);
    assert_eq!(r.coverage[0].end_offset, None);
}

#[test]
fn duplicate_is_reported() {
    let mut h = H::default();
    three_acked(&mut h);
    let reread = h.poll(
        5,
        false,
        &[(0, 0, 100), (0, 1, 101), (0, 2, 102), (0, 3, 101)],
    );
    h.final_read(
        9,
        &[(0, 4)],
        &[(0, 0, 100), (0, 1, 101), (0, 2, 102), (0, 3, 101)],
        true,
    );
    match only(&check(&h.ops), AnomalyKind::Duplicate) {
        Anomaly::Duplicate {
            value, sightings, ..
        } => {
            assert_eq!(value, 101);
            let at: Vec<(i64, u64)> = sightings.iter().map(|s| (s.offset, s.op)).collect();
            assert_eq!(at, vec![(1, 3), (3, reread)]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_send_seen_twice_is_a_duplicate() {
    let mut h = H::default();
    h.send(0, 0, 100, OpType::Info, None);
    h.final_read(9, &[(0, 2)], &[(0, 0, 100), (0, 1, 100)], true);
    only(&check(&h.ops), AnomalyKind::Duplicate);
}

impl H {
    /// A `batch_headers` op: (partition, offset, producer id, epoch, sequence).
    fn headers(&mut self, process: u64, recs: &[(i32, i64, i64, i16, i32)]) -> u64 {
        self.push(Op::new(process, OpType::Invoke, F::BatchHeaders));
        self.push(Op {
            headers: recs
                .iter()
                .map(|(p, o, id, epoch, seq)| crate::history::HeaderRec {
                    topic: "t".into(),
                    partition: *p,
                    offset: *o,
                    producer_id: *id,
                    producer_epoch: *epoch,
                    sequence: *seq,
                })
                .collect(),
            ..Op::new(process, OpType::Ok, F::BatchHeaders)
        })
    }
}

#[test]
fn copies_under_two_producer_epochs_are_a_client_resend() {
    let mut h = H::default();
    h.send(0, 0, 100, OpType::Info, None);
    h.final_read(9, &[(0, 2)], &[(0, 0, 100), (0, 1, 100)], true);
    // epoch 0 seq 4, then the bumped epoch 1 renumbered it to seq 0
    h.headers(10, &[(0, 0, 7, 0, 4), (0, 1, 7, 1, 0)]);
    let r = check(&h.ops);
    assert!(r.valid, "{}", r.summary(5));
    assert_eq!(r.resent.len(), 1);
    assert_eq!(r.resent[0].value, 100);
    assert_eq!(r.counts.headers, 2);
    assert!(r.summary(5).contains("re-sent under a new producer epoch"));
    // a new producer id counts the same
    let mut h2 = H::default();
    h2.send(0, 0, 100, OpType::Info, None);
    h2.final_read(9, &[(0, 2)], &[(0, 0, 100), (0, 1, 100)], true);
    h2.headers(10, &[(0, 0, 7, 0, 4), (0, 1, 8, 0, 0)]);
    assert!(check(&h2.ops).valid);
}

#[test]
fn copies_under_one_producer_epoch_are_a_duplicate() {
    let mut h = H::default();
    h.send(0, 0, 100, OpType::Info, None);
    h.final_read(9, &[(0, 2)], &[(0, 0, 100), (0, 1, 100)], true);
    // the same producer, epoch and sequence twice: the broker failed to dedupe
    h.headers(10, &[(0, 0, 7, 0, 4), (0, 1, 7, 0, 4)]);
    match only(&check(&h.ops), AnomalyKind::Duplicate) {
        Anomaly::Duplicate { sightings, .. } => {
            let p: Vec<_> = sightings.iter().map(|s| s.producer).collect();
            let want = Some(StoredProducer {
                id: 7,
                epoch: 0,
                sequence: 4,
            });
            assert_eq!(p, vec![want, want]);
            let line = only(&check(&h.ops), AnomalyKind::Duplicate).describe();
            assert!(line.contains("pid 7 epoch 0 seq 4"), "{line}");
        }
        other => panic!("{other:?}"),
    }
    // a copy with no header (not read) cannot be cleared either
    let mut h2 = H::default();
    h2.send(0, 0, 100, OpType::Info, None);
    h2.final_read(9, &[(0, 2)], &[(0, 0, 100), (0, 1, 100)], true);
    h2.headers(10, &[(0, 0, 7, 0, 4)]);
    only(&check(&h2.ops), AnomalyKind::Duplicate);
}

#[test]
fn non_idempotent_retry_written_twice_is_counted_not_reported() {
    let mut h = H::default();
    h.send(0, 0, 100, OpType::Ok, Some(1));
    for op in &mut h.ops {
        op.idempotent = false;
    }
    h.final_read(9, &[(0, 2)], &[(0, 0, 100), (0, 1, 100)], true);
    let r = check(&h.ops);
    assert!(r.valid, "{}", r.summary(5));
    assert_eq!(r.counts.duplicates_non_idempotent, 1);
    assert!(r.summary(5).contains("written twice"));
}

#[test]
fn inconsistent_offset_is_reported() {
    let mut h = H::default();
    h.send(0, 0, 100, OpType::Ok, Some(0));
    h.send(0, 0, 101, OpType::Ok, Some(1));
    h.send(1, 0, 200, OpType::Info, None);
    let poll = h.poll(5, false, &[(0, 0, 100), (0, 1, 200)]);
    h.final_read(9, &[(0, 2)], &[(0, 0, 100), (0, 1, 101)], true);
    match only(&check(&h.ops), AnomalyKind::InconsistentOffset) {
        Anomaly::InconsistentOffset {
            partition,
            offset,
            values,
            ops,
        } => {
            assert_eq!((partition, offset, values), (part(0), 1, vec![101, 200]));
            assert_eq!(ops, vec![3, poll]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_monotonic_poll_is_reported() {
    let mut h = H::default();
    three_acked(&mut h);
    let first = h.poll(5, false, &[(0, 0, 100), (0, 1, 101), (0, 2, 102)]);
    let again = h.poll(5, false, &[(0, 1, 101)]);
    h.final_read(9, &[(0, 3)], &[(0, 0, 100), (0, 1, 101), (0, 2, 102)], true);
    assert_eq!(
        only(&check(&h.ops), AnomalyKind::NonMonotonic),
        Anomaly::NonMonotonic {
            process: 5,
            partition: part(0),
            prev_offset: 2,
            offset: 1,
            prev_op: first,
            op: again,
        }
    );
}

#[test]
fn skipped_offset_is_reported() {
    let mut h = H::default();
    three_acked(&mut h);
    let first = h.poll(5, true, &[(0, 0, 100)]);
    let jump = h.poll(5, true, &[(0, 2, 102)]);
    h.final_read(9, &[(0, 3)], &[(0, 0, 100), (0, 1, 101), (0, 2, 102)], true);
    assert_eq!(
        only(&check(&h.ops), AnomalyKind::Skipped),
        Anomaly::Skipped {
            process: 5,
            partition: part(0),
            prev_offset: 0,
            offset: 2,
            skipped: vec![(1, 101)],
            prev_op: first,
            op: jump,
        }
    );
}

#[test]
fn aborted_read_is_reported() {
    let mut h = H::default();
    three_acked(&mut h);
    let txn = h.txn(1, &[(0, 103, None)], OpType::Fail);
    let read = h.poll(
        5,
        true,
        &[(0, 0, 100), (0, 1, 101), (0, 2, 102), (0, 3, 103)],
    );
    h.final_read(9, &[(0, 5)], &[(0, 0, 100), (0, 1, 101), (0, 2, 102)], true);
    assert_eq!(
        only(&check(&h.ops), AnomalyKind::AbortedRead),
        Anomaly::AbortedRead {
            partition: part(0),
            offset: 3,
            value: 103,
            write_op: txn,
            read_op: read,
        }
    );
}

#[test]
fn failed_send_that_appears_is_an_aborted_read() {
    let mut h = H::default();
    let send = h.send(0, 0, 100, OpType::Fail, None);
    let fin = h.final_read(9, &[(0, 1)], &[(0, 0, 100)], true);
    assert_eq!(
        only(&check(&h.ops), AnomalyKind::AbortedRead),
        Anomaly::AbortedRead {
            partition: part(0),
            offset: 0,
            value: 100,
            write_op: send,
            read_op: fin,
        }
    );
}

#[test]
fn invoke_without_completion_is_unknown() {
    let mut h = H::default();
    h.push(Op {
        sends: vec![SendRec {
            topic: "t".into(),
            partition: 0,
            value: 100,
            offset: None,
        }],
        ..Op::new(0, OpType::Invoke, F::Send)
    });
    h.final_read(9, &[(0, 0)], &[], true);
    let r = check(&h.ops);
    assert!(r.valid, "{}", r.summary(5));
    assert_eq!(r.counts.sends_info, 1);
}

#[test]
fn report_serialises_and_summarises() {
    let mut h = H::default();
    h.send(0, 0, 100, OpType::Ok, Some(0));
    h.final_read(9, &[(0, 1)], &[], true);
    let r = check(&h.ops);
    let json = serde_json::to_string(&r).expect("serialise");
    assert!(json.contains(r#""kind":"lost""#), "{json}");
    let back: Report = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, r);
    let s = r.summary(5);
    assert!(s.contains("anomalies: lost 1"), "{s}");
    assert!(s.contains("value 100"), "{s}");
}
