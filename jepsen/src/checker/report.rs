//! What the checker reports: [`Anomaly`]s naming the operations involved, the
//! final-read [`Coverage`] of every partition, counts, and a human summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::history::Partition;

/// The kinds of anomaly, in the order the summary lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    Lost,
    Duplicate,
    InconsistentOffset,
    NonMonotonic,
    Skipped,
    AbortedRead,
    Unseen,
}

/// Where a value was observed: a partition offset and the op (history
/// index) that showed it there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sighting {
    pub partition: Partition,
    pub offset: i64,
    pub op: u64,
    /// The producer fields stored at that offset, when the run read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<StoredProducer>,
}

/// The producer fields of a stored record (its batch header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StoredProducer {
    pub id: i64,
    pub epoch: i16,
    pub sequence: i32,
}

impl std::fmt::Display for StoredProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} epoch {} seq {}",
            self.id, self.epoch, self.sequence
        )
    }
}

/// A value an idempotent client sent again under another producer id or
/// epoch: every copy has its own `(producer id, epoch)`. Kafka deduplicates
/// within one producer id and epoch only, so no broker can recognise these;
/// librdkafka does it after a message timeout (drain and bump). Reported,
/// not an anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resent {
    pub value: u64,
    pub sightings: Vec<Sighting>,
    pub write_op: Option<u64>,
}

fn places(sightings: &[Sighting]) -> String {
    sightings
        .iter()
        .map(|s| match &s.producer {
            Some(p) => format!("{}@{} (op {}, {p})", s.partition, s.offset, s.op),
            None => format!("{}@{} (op {})", s.partition, s.offset, s.op),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One anomaly; `op`/`ops` fields are history indices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anomaly {
    /// An acknowledged write missing from a complete final read of its
    /// partition (or below the point an incomplete one reached).
    Lost {
        partition: Partition,
        value: u64,
        /// Offset the broker acknowledged, when known.
        offset: Option<i64>,
        /// The completion of the send (or txn).
        write_op: u64,
        /// The final read that should have contained it.
        final_read_op: Option<u64>,
    },
    /// An acknowledged write that no read observed, in a partition whose final
    /// read did not reach its end: maybe lost, maybe just not consumed.
    Unseen {
        partition: Partition,
        value: u64,
        offset: Option<i64>,
        write_op: u64,
    },
    /// One value at more than one place.
    Duplicate {
        value: u64,
        sightings: Vec<Sighting>,
        write_op: Option<u64>,
    },
    /// More than one value at one offset.
    InconsistentOffset {
        partition: Partition,
        offset: i64,
        values: Vec<u64>,
        ops: Vec<u64>,
    },
    /// A consumer's poll stream went back (or repeated) within one
    /// assignment.
    NonMonotonic {
        process: u64,
        partition: Partition,
        prev_offset: i64,
        offset: i64,
        prev_op: u64,
        op: u64,
    },
    /// A consumer's poll stream jumped over records that exist.
    Skipped {
        process: u64,
        partition: Partition,
        prev_offset: i64,
        offset: i64,
        /// Up to ten of the (offset, value) pairs jumped over.
        skipped: Vec<(i64, u64)>,
        prev_op: u64,
        op: u64,
    },
    /// A record whose write definitely failed (a failed send, or an aborted
    /// transaction seen by a `read_committed` consumer) was read.
    AbortedRead {
        partition: Partition,
        offset: i64,
        value: u64,
        write_op: u64,
        read_op: u64,
    },
}

impl Anomaly {
    pub fn kind(&self) -> AnomalyKind {
        match self {
            Anomaly::Lost { .. } => AnomalyKind::Lost,
            Anomaly::Unseen { .. } => AnomalyKind::Unseen,
            Anomaly::Duplicate { .. } => AnomalyKind::Duplicate,
            Anomaly::InconsistentOffset { .. } => AnomalyKind::InconsistentOffset,
            Anomaly::NonMonotonic { .. } => AnomalyKind::NonMonotonic,
            Anomaly::Skipped { .. } => AnomalyKind::Skipped,
            Anomaly::AbortedRead { .. } => AnomalyKind::AbortedRead,
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Anomaly::Lost {
                partition,
                value,
                offset,
                write_op,
                final_read_op,
            } => format!(
                "lost: value {value} acked at {partition} offset {} by op {write_op}, absent from final read {}",
                opt(offset),
                opt(final_read_op)
            ),
            Anomaly::Unseen {
                partition,
                value,
                offset,
                write_op,
            } => format!(
                "unseen: value {value} acked at {partition} offset {} by op {write_op}, never read (final read incomplete)",
                opt(offset)
            ),
            Anomaly::Duplicate {
                value, sightings, ..
            } => format!("duplicate: value {value} at {}", places(sightings)),
            Anomaly::InconsistentOffset {
                partition,
                offset,
                values,
                ops,
            } => format!(
                "inconsistent offset: {partition}@{offset} holds values {values:?} (ops {ops:?})"
            ),
            Anomaly::NonMonotonic {
                process,
                partition,
                prev_offset,
                offset,
                prev_op,
                op,
            } => format!(
                "non-monotonic: process {process} read {partition}@{prev_offset} (op {prev_op}) then @{offset} (op {op})"
            ),
            Anomaly::Skipped {
                process,
                partition,
                prev_offset,
                offset,
                skipped,
                prev_op,
                op,
            } => format!(
                "skipped: process {process} read {partition}@{prev_offset} (op {prev_op}) then @{offset} (op {op}), missing {skipped:?}"
            ),
            Anomaly::AbortedRead {
                partition,
                offset,
                value,
                write_op,
                read_op,
            } => format!(
                "aborted read: op {read_op} read value {value} at {partition}@{offset}, whose write op {write_op} failed/aborted"
            ),
        }
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "?".to_string(), |v| v.to_string())
}

/// How far the final read got in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub partition: Partition,
    /// The high watermark the final read had to reach (None: no final read).
    pub end_offset: Option<i64>,
    /// One past the highest offset the final read returned.
    pub reached: Option<i64>,
    pub records: usize,
    /// A final read completed (`ok`) for this partition.
    pub complete: bool,
}

/// Operation counts, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub ops: usize,
    pub sends_ok: usize,
    pub sends_fail: usize,
    pub sends_info: usize,
    pub txns_ok: usize,
    pub txns_fail: usize,
    pub txns_info: usize,
    pub polls_ok: usize,
    pub records_polled: usize,
    pub final_records: usize,
    pub nemesis: usize,
    /// Values of non-idempotent sends written more than once: allowed by
    /// Kafka's at-least-once semantics, so not an anomaly.
    #[serde(default)]
    pub duplicates_non_idempotent: usize,
    /// Records whose producer fields the run read (`batch_headers`).
    #[serde(default)]
    pub headers: usize,
}

/// The checker's verdict over one history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// No anomalies.
    pub valid: bool,
    pub counts: Counts,
    pub anomaly_counts: BTreeMap<AnomalyKind, usize>,
    pub anomalies: Vec<Anomaly>,
    /// Values an idempotent client re-sent under a new producer epoch.
    #[serde(default)]
    pub resent: Vec<Resent>,
    pub coverage: Vec<Coverage>,
}

impl Report {
    pub(crate) fn new(
        counts: Counts,
        mut anomalies: Vec<Anomaly>,
        mut resent: Vec<Resent>,
        coverage: Vec<Coverage>,
    ) -> Self {
        resent.sort_by_key(|r| r.value);
        anomalies.sort_by_key(|a| a.kind());
        let mut anomaly_counts = BTreeMap::new();
        for a in &anomalies {
            *anomaly_counts.entry(a.kind()).or_insert(0) += 1;
        }
        Report {
            valid: anomalies.is_empty(),
            counts,
            anomaly_counts,
            anomalies,
            resent,
            coverage,
        }
    }

    /// Anomalies of one kind.
    pub fn of_kind(&self, kind: AnomalyKind) -> impl Iterator<Item = &Anomaly> {
        self.anomalies.iter().filter(move |a| a.kind() == kind)
    }

    /// A few lines for humans; lists at most `per_kind` anomalies of each kind.
    pub fn summary(&self, per_kind: usize) -> String {
        let c = &self.counts;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "history: {} ops; sends ok/fail/info {}/{}/{}; txns ok/fail/info {}/{}/{}; {} polls read {} records; {} nemesis events",
            c.ops,
            c.sends_ok,
            c.sends_fail,
            c.sends_info,
            c.txns_ok,
            c.txns_fail,
            c.txns_info,
            c.polls_ok,
            c.records_polled,
            c.nemesis
        );
        if c.duplicates_non_idempotent > 0 {
            let _ = writeln!(
                s,
                "non-idempotent sends written twice (at-least-once, allowed): {}",
                c.duplicates_non_idempotent
            );
        }
        if !self.resent.is_empty() {
            let _ = writeln!(
                s,
                "idempotent sends the client re-sent under a new producer epoch (not deduplicable; allowed): {}",
                self.resent.len()
            );
            for r in self.resent.iter().take(per_kind) {
                let _ = writeln!(s, "  value {} at {}", r.value, places(&r.sightings));
            }
        }
        let complete = self.coverage.iter().filter(|c| c.complete).count();
        let _ = writeln!(
            s,
            "final read: {complete}/{} partitions complete, {} records",
            self.coverage.len(),
            c.final_records
        );
        for cov in self.coverage.iter().filter(|c| !c.complete) {
            let _ = writeln!(
                s,
                "  incomplete: {} reached {} of end offset {}",
                cov.partition,
                opt(&cov.reached),
                opt(&cov.end_offset)
            );
        }
        if self.valid {
            let _ = writeln!(s, "anomalies: none");
            return s;
        }
        let counts: Vec<String> = self
            .anomaly_counts
            .iter()
            .map(|(k, n)| format!("{} {n}", serde_json::to_string(k).unwrap_or_default()))
            .collect();
        let _ = writeln!(s, "anomalies: {}", counts.join(", ").replace('"', ""));
        for kind in self.anomaly_counts.keys() {
            let all: Vec<&Anomaly> = self.of_kind(*kind).collect();
            for a in all.iter().take(per_kind) {
                let _ = writeln!(s, "  {}", a.describe());
            }
            if all.len() > per_kind {
                let _ = writeln!(s, "  ... and {} more", all.len() - per_kind);
            }
        }
        s
    }
}
