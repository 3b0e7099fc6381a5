//! The history checker: [`check`] turns a recorded history into a [`Report`].
//!
//! Model (after Jepsen's Kafka "queue" checker): every value is written once,
//! so a value names a write. From the history the checker builds
//!
//! * the writes: value -> partition, outcome (`ok` acked, `fail` definitely
//!   not written, `info` unknown; an invoke without completion counts as
//!   `info`), whether it was transactional, and the acknowledged offset;
//! * the sightings: every (partition, offset, value) that a read returned or an
//!   acknowledgement reported;
//! * the poll streams: per process and partition, the offsets read in order;
//!   an `assign` op of the process restarts its streams;
//! * the final reads: per partition, the values read from the beginning and
//!   whether the read reached the partition's end offset.
//!
//! and reports:
//!
//! | anomaly | meaning |
//! |---|---|
//! | lost | acked, but absent from a complete final read (or below the point an incomplete one reached) |
//! | unseen | acked, never read, and the final read of its partition did not finish |
//! | duplicate | one value at two (partition, offset) places; `info` sends too: they may appear, never twice. Sends of non-idempotent producers are exempt (at-least-once retries) and only counted; so are copies that the stored batch headers (`batch_headers`) show under distinct producer ids or epochs each: the client re-sent them under a new epoch, which Kafka's deduplication does not cover (reported as `resent`) |
//! | inconsistent_offset | two values at one (partition, offset) |
//! | non_monotonic | a poll stream's offset did not increase |
//! | skipped | a poll stream jumped over an offset where some read saw a record it should see |
//! | aborted_read | a definitely failed send was read, or a `read_committed` reader read an aborted transaction's record |
//!
//! Every anomaly names the history indices of the operations involved.

mod report;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use report::{
    Anomaly, AnomalyKind, Counts, Coverage, Report, Resent, Sighting, StoredProducer,
};

use crate::history::{F, Op, OpType, Partition, ReadRec, SendRec};

/// The fate of one written value.
#[derive(Debug, Clone)]
struct Write {
    partition: Partition,
    outcome: OpType,
    txn: bool,
    /// Sent by an idempotent producer (or in a transaction).
    idempotent: bool,
    /// History index of the completion (or of the invoke when none).
    op: u64,
    acked_offset: Option<i64>,
}

/// Checks a history; see the module docs for what is reported.
pub fn check(history: &[Op]) -> Report {
    let mut c = Checker::default();
    c.collect(history);
    let mut anomalies = Vec::new();
    let resent = c.duplicates(&mut anomalies);
    c.inconsistent(&mut anomalies);
    c.streams(history, &mut anomalies);
    c.aborted(&mut anomalies);
    let coverage = c.final_reads(&mut anomalies);
    Report::new(c.counts, anomalies, resent, coverage)
}

#[derive(Default)]
struct Checker {
    counts: Counts,
    writes: HashMap<u64, Write>,
    /// value -> every place it was seen (deduplicated by place, first op kept).
    seen_at: HashMap<u64, BTreeMap<(Partition, i64), u64>>,
    /// partition -> offset -> value -> first op that showed it.
    by_offset: BTreeMap<Partition, BTreeMap<i64, BTreeMap<u64, u64>>>,
    /// Values read by any read (poll, txn or final read).
    read_values: HashMap<u64, u64>,
    /// Every read: (record, op index, read_committed).
    reads: Vec<(ReadRec, u64, bool)>,
    /// Partitions any op mentioned.
    partitions: BTreeSet<Partition>,
    finals: BTreeMap<Partition, FinalState>,
    /// Producer fields stored at each offset (`batch_headers`).
    stored: HashMap<(Partition, i64), StoredProducer>,
}

#[derive(Default)]
struct FinalState {
    values: HashMap<u64, i64>,
    end_offset: Option<i64>,
    reached: Option<i64>,
    complete_op: Option<u64>,
    last_op: Option<u64>,
}

impl Checker {
    fn collect(&mut self, history: &[Op]) {
        self.counts.ops = history.len();
        let mut pending: HashMap<u64, &Op> = HashMap::new();
        for op in history {
            match (op.f, op.kind) {
                (F::Nemesis, _) => self.counts.nemesis += 1,
                (F::Send | F::Txn, OpType::Invoke) => {
                    // An earlier invoke of the same process that never
                    // completed stays unknown.
                    if let Some(prev) = pending.insert(op.process, op) {
                        self.write_completion(prev, prev, OpType::Info);
                    }
                }
                (F::Send | F::Txn, kind) => {
                    let invoke = pending.remove(&op.process).unwrap_or(op);
                    self.write_completion(invoke, op, kind);
                }
                _ => {}
            }
            if op.kind != OpType::Invoke {
                match op.f {
                    F::Poll if op.kind == OpType::Ok => {
                        self.counts.polls_ok += 1;
                        self.counts.records_polled += op.reads.len();
                    }
                    F::FinalRead => self.final_read(op),
                    F::BatchHeaders => {
                        for h in &op.headers {
                            self.counts.headers += 1;
                            self.stored.insert(
                                (h.partition(), h.offset),
                                StoredProducer {
                                    id: h.producer_id,
                                    epoch: h.producer_epoch,
                                    sequence: h.sequence,
                                },
                            );
                        }
                    }
                    _ => {}
                }
                for r in &op.reads {
                    self.sight(r.partition(), r.offset, r.value, op.index);
                    self.read_values.entry(r.value).or_insert(op.index);
                    self.reads.push((r.clone(), op.index, op.read_committed));
                }
                for p in &op.partitions {
                    self.partitions.insert(p.clone());
                }
            }
        }
        for (_, invoke) in pending {
            self.write_completion(invoke, invoke, OpType::Info);
        }
    }

    fn write_completion(&mut self, invoke: &Op, done: &Op, outcome: OpType) {
        let txn = invoke.f == F::Txn;
        let counter = match (txn, outcome) {
            (false, OpType::Ok) => &mut self.counts.sends_ok,
            (false, OpType::Fail) => &mut self.counts.sends_fail,
            (false, _) => &mut self.counts.sends_info,
            (true, OpType::Ok) => &mut self.counts.txns_ok,
            (true, OpType::Fail) => &mut self.counts.txns_fail,
            (true, _) => &mut self.counts.txns_info,
        };
        *counter += 1;
        let sends: &[SendRec] = if done.sends.is_empty() {
            &invoke.sends
        } else {
            &done.sends
        };
        for s in sends {
            let acked_offset = if outcome == OpType::Ok {
                s.offset
            } else {
                None
            };
            if let Some(off) = acked_offset {
                self.sight(s.partition(), off, s.value, done.index);
            }
            self.partitions.insert(s.partition());
            self.writes.insert(
                s.value,
                Write {
                    partition: s.partition(),
                    outcome,
                    txn,
                    idempotent: txn || invoke.idempotent,
                    op: done.index,
                    acked_offset,
                },
            );
        }
    }

    fn sight(&mut self, partition: Partition, offset: i64, value: u64, op: u64) {
        self.partitions.insert(partition.clone());
        self.seen_at
            .entry(value)
            .or_default()
            .entry((partition.clone(), offset))
            .or_insert(op);
        self.by_offset
            .entry(partition)
            .or_default()
            .entry(offset)
            .or_default()
            .entry(value)
            .or_insert(op);
    }

    fn final_read(&mut self, op: &Op) {
        for e in &op.end_offsets {
            let p = Partition {
                topic: e.topic.clone(),
                partition: e.partition,
            };
            let st = self.finals.entry(p).or_default();
            st.end_offset = Some(st.end_offset.map_or(e.end_offset, |o| o.max(e.end_offset)));
            st.last_op = Some(op.index);
            if op.kind == OpType::Ok {
                st.complete_op = Some(op.index);
            }
        }
        for r in &op.reads {
            self.counts.final_records += 1;
            let st = self.finals.entry(r.partition()).or_default();
            st.values.insert(r.value, r.offset);
            st.reached = Some(st.reached.map_or(r.offset + 1, |o| o.max(r.offset + 1)));
            st.last_op.get_or_insert(op.index);
        }
    }

    /// Reports duplicates; returns the values re-sent under a new epoch.
    fn duplicates(&mut self, out: &mut Vec<Anomaly>) -> Vec<Resent> {
        let mut resent = Vec::new();
        for (value, places) in &self.seen_at {
            if places.len() > 1 {
                // Kafka's at-least-once: a non-idempotent producer's retry
                // may be written twice. Counted, not an anomaly.
                if self.writes.get(value).is_some_and(|w| !w.idempotent) {
                    self.counts.duplicates_non_idempotent += 1;
                    continue;
                }
                let sightings: Vec<Sighting> = places
                    .iter()
                    .map(|((p, o), op)| Sighting {
                        partition: p.clone(),
                        offset: *o,
                        op: *op,
                        producer: self.stored.get(&(p.clone(), *o)).copied(),
                    })
                    .collect();
                let write_op = self.writes.get(value).map(|w| w.op);
                if distinct_producer_epochs(&sightings) {
                    resent.push(Resent {
                        value: *value,
                        sightings,
                        write_op,
                    });
                } else {
                    out.push(Anomaly::Duplicate {
                        value: *value,
                        sightings,
                        write_op,
                    });
                }
            }
        }
        resent
    }

    fn inconsistent(&self, out: &mut Vec<Anomaly>) {
        for (p, offsets) in &self.by_offset {
            for (offset, values) in offsets {
                if values.len() > 1 {
                    out.push(Anomaly::InconsistentOffset {
                        partition: p.clone(),
                        offset: *offset,
                        values: values.keys().copied().collect(),
                        ops: values.values().copied().collect(),
                    });
                }
            }
        }
    }

    /// A value a reader at this isolation level is expected to see.
    fn visible(&self, value: u64, read_committed: bool) -> bool {
        match self.writes.get(&value) {
            Some(w) if w.outcome == OpType::Fail => false,
            // An unknown transaction may have aborted.
            Some(w) if w.txn && read_committed => w.outcome == OpType::Ok,
            _ => true,
        }
    }

    fn streams(&self, history: &[Op], out: &mut Vec<Anomaly>) {
        // (process, partition) -> (last offset, op)
        let mut last: HashMap<(u64, Partition), (i64, u64)> = HashMap::new();
        for op in history {
            if op.kind == OpType::Invoke {
                continue;
            }
            if op.f == F::Assign {
                last.retain(|(proc_, _), _| *proc_ != op.process);
                continue;
            }
            for r in &op.reads {
                let key = (op.process, r.partition());
                if let Some((prev, prev_op)) = last.get(&key).copied() {
                    if r.offset <= prev {
                        out.push(Anomaly::NonMonotonic {
                            process: op.process,
                            partition: r.partition(),
                            prev_offset: prev,
                            offset: r.offset,
                            prev_op,
                            op: op.index,
                        });
                    } else if r.offset > prev + 1 {
                        let skipped = self.skipped(&key.1, prev, r.offset, op.read_committed);
                        if !skipped.is_empty() {
                            out.push(Anomaly::Skipped {
                                process: op.process,
                                partition: r.partition(),
                                prev_offset: prev,
                                offset: r.offset,
                                skipped,
                                prev_op,
                                op: op.index,
                            });
                        }
                    }
                }
                last.insert(key, (r.offset, op.index));
            }
        }
    }

    fn skipped(
        &self,
        p: &Partition,
        prev: i64,
        next: i64,
        read_committed: bool,
    ) -> Vec<(i64, u64)> {
        let Some(offsets) = self.by_offset.get(p) else {
            return Vec::new();
        };
        offsets
            .range(prev + 1..next)
            .flat_map(|(o, vals)| vals.keys().map(move |v| (*o, *v)))
            .filter(|(_, v)| self.visible(*v, read_committed))
            .take(10)
            .collect()
    }

    fn aborted(&self, out: &mut Vec<Anomaly>) {
        for (r, op, read_committed) in &self.reads {
            let Some(w) = self.writes.get(&r.value) else {
                continue;
            };
            let bad = match (w.txn, w.outcome) {
                (false, OpType::Fail) => true,
                (true, OpType::Fail) => *read_committed,
                _ => false,
            };
            if bad {
                out.push(Anomaly::AbortedRead {
                    partition: r.partition(),
                    offset: r.offset,
                    value: r.value,
                    write_op: w.op,
                    read_op: *op,
                });
            }
        }
    }

    fn final_reads(&self, out: &mut Vec<Anomaly>) -> Vec<Coverage> {
        let empty = FinalState::default();
        let mut acked: Vec<(&u64, &Write)> = self
            .writes
            .iter()
            .filter(|(_, w)| w.outcome == OpType::Ok)
            .collect();
        acked.sort_by_key(|(v, w)| (w.op, **v));
        for (value, w) in acked {
            let st = self.finals.get(&w.partition).unwrap_or(&empty);
            if st.values.contains_key(value) {
                continue;
            }
            let below_reached = match (w.acked_offset, st.reached) {
                (Some(o), Some(r)) => o < r,
                _ => false,
            };
            if st.complete_op.is_some() || below_reached {
                out.push(Anomaly::Lost {
                    partition: w.partition.clone(),
                    value: *value,
                    offset: w.acked_offset,
                    write_op: w.op,
                    final_read_op: st.complete_op.or(st.last_op),
                });
            } else if !self.read_values.contains_key(value) {
                out.push(Anomaly::Unseen {
                    partition: w.partition.clone(),
                    value: *value,
                    offset: w.acked_offset,
                    write_op: w.op,
                });
            }
        }
        self.partitions
            .iter()
            .map(|p| {
                let st = self.finals.get(p).unwrap_or(&empty);
                Coverage {
                    partition: p.clone(),
                    end_offset: st.end_offset,
                    reached: st.reached,
                    records: st.values.len(),
                    complete: st.complete_op.is_some(),
                }
            })
            .collect()
    }
}

/// Every copy's stored batch header is known and no two copies share a
/// producer id and epoch: a client re-send, not a broker duplicate.
fn distinct_producer_epochs(sightings: &[Sighting]) -> bool {
    let mut seen = BTreeSet::new();
    sightings.iter().all(|s| {
        s.producer
            .is_some_and(|p| p.id >= 0 && seen.insert((p.id, p.epoch)))
    })
}
