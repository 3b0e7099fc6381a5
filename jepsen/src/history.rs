//! The recorded history: one [`Op`] per line of `history.jsonl`.
//!
//! Every client operation is recorded twice: an `invoke` when it starts and a
//! completion (`ok`, `fail` or `info`) when it ends, both with the same
//! `process`. A process runs one operation at a time; a process whose
//! operation ended in `info` (unknown outcome) is never reused, the workload
//! continues under a fresh process id (the Jepsen convention).
//!
//! ```json
//! {"index":0,"process":1,"type":"invoke","f":"send","time_ns":1200,"sends":[{"topic":"jepsen","partition":0,"value":7}]}
//! {"index":1,"process":1,"type":"ok","f":"send","time_ns":5400,"sends":[{"topic":"jepsen","partition":0,"value":7,"offset":3}]}
//! {"index":2,"process":9,"type":"ok","f":"poll","time_ns":6000,"read_committed":true,"reads":[{"topic":"jepsen","partition":0,"offset":3,"value":7}]}
//! ```
//!
//! * `send`: `sends` holds exactly one record; the completion carries its offset
//!   when the broker acknowledged it.
//!   `idempotent` marks producers with `enable.idempotence=true`.
//! * `txn`: a transactional batch; `sends` holds its records. `ok` = committed,
//!   `fail` = definitely aborted, `info` = unknown.
//! * `poll`: `reads` holds the records returned, in delivery order.
//! * `assign`: the process's consumer got a new assignment (assign, or a
//!   subscribe rebalance); its poll stream restarts, so offsets may go back.
//! * `final_read`: a reader that consumed `partitions` from the beginning up to
//!   their `end_offsets` (high watermarks fetched after the workload stopped).
//!   `ok` means every partition listed reached its end offset.
//! * `batch_headers`: after the final read, the producer id, epoch and
//!   sequence of the record at every stored offset (`headers`), read with raw
//!   Fetch requests; the checker tells broker duplicates from client re-sends
//!   under a new producer epoch with them.
//! * `nemesis`: a fault injected or healed; `error` holds its description. The
//!   checker ignores these; they make the history readable.
//!
//! Values are `u64`s unique per run, so a value names one send.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Outcome of an operation (or `invoke` for its start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum F {
    Send,
    Txn,
    Poll,
    Assign,
    FinalRead,
    /// The producer fields of every stored record, read raw after the final
    /// read (see `workload::headers`).
    BatchHeaders,
    Nemesis,
}

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Partition {
    pub topic: String,
    pub partition: i32,
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A record a client sent (its offset is known once acknowledged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRec {
    pub topic: String,
    pub partition: i32,
    pub value: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// A record a client read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRec {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub value: u64,
}

impl SendRec {
    pub fn partition(&self) -> Partition {
        Partition {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }
}

impl ReadRec {
    pub fn partition(&self) -> Partition {
        Partition {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }
}

/// The producer fields of the stored record at one offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRec {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// -1 for a producer without idempotence.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The record's sequence (the batch's base sequence plus its offset delta).
    pub sequence: i32,
}

impl HeaderRec {
    pub fn partition(&self) -> Partition {
        Partition {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }
}

/// The high watermark a final read had to reach for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndOffset {
    pub topic: String,
    pub partition: i32,
    pub end_offset: i64,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, assigned by the [`Recorder`].
    #[serde(default)]
    pub index: u64,
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub f: F,
    /// Nanoseconds since the start of the run.
    #[serde(default)]
    pub time_ns: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sends: Vec<SendRec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<ReadRec>,
    /// `assign`: the partitions now assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<Partition>,
    /// `final_read`: the high watermark per partition it had to reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end_offsets: Vec<EndOffset>,
    /// `batch_headers`: producer id, epoch and sequence per stored offset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderRec>,
    /// `send`: the producer had `enable.idempotence=true`. Without it, a
    /// retried send may legitimately be written twice (at-least-once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// The consumer used `isolation.level=read_committed`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_committed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    /// A bare operation; fill the other fields with struct update syntax.
    pub fn new(process: u64, kind: OpType, f: F) -> Self {
        Op {
            index: 0,
            process,
            kind,
            f,
            time_ns: 0,
            sends: Vec::new(),
            reads: Vec::new(),
            partitions: Vec::new(),
            end_offsets: Vec::new(),
            headers: Vec::new(),
            idempotent: false,
            read_committed: false,
            error: None,
        }
    }
}

/// Errors reading or writing a history file.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("history line {line}: {source}")]
    Parse {
        line: usize,
        source: serde_json::Error,
    },
}

/// Reads a `history.jsonl` file.
pub fn read_history(path: &Path) -> Result<Vec<Op>, HistoryError> {
    let io = |source| HistoryError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut ops = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
            line: i + 1,
            source,
        })?;
        ops.push(op);
    }
    Ok(ops)
}

/// Appends operations to memory and (optionally) a JSONL file as they happen,
/// stamping `index` and `time_ns`. Cheap to clone; shared by all workers.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

struct RecorderInner {
    start: Instant,
    next_process: AtomicU64,
    state: Mutex<RecorderState>,
}

struct RecorderState {
    ops: Vec<Op>,
    file: Option<BufWriter<File>>,
    write_error: Option<std::io::Error>,
}

impl Recorder {
    /// A recorder that only keeps the history in memory.
    pub fn in_memory() -> Self {
        Self::with_file(None)
    }

    /// A recorder that also writes each op to `path` (truncated first).
    pub fn to_file(path: &Path) -> Result<Self, HistoryError> {
        let file = File::create(path).map_err(|source| HistoryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self::with_file(Some(BufWriter::new(file))))
    }

    fn with_file(file: Option<BufWriter<File>>) -> Self {
        Recorder {
            inner: Arc::new(RecorderInner {
                start: Instant::now(),
                next_process: AtomicU64::new(0),
                state: Mutex::new(RecorderState {
                    ops: Vec::new(),
                    file,
                    write_error: None,
                }),
            }),
        }
    }

    /// A process id never handed out before.
    pub fn new_process(&self) -> u64 {
        self.inner.next_process.fetch_add(1, Ordering::Relaxed)
    }

    /// Time since the recorder was created.
    pub fn elapsed(&self) -> std::time::Duration {
        self.inner.start.elapsed()
    }

    /// Records `op`, returning it with its index and time filled in.
    pub fn record(&self, mut op: Op) -> Op {
        let mut st = self.inner.state.lock();
        op.index = st.ops.len() as u64;
        op.time_ns = u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if let Some(file) = st.file.as_mut() {
            let res = serde_json::to_writer(&mut *file, &op)
                .map_err(std::io::Error::other)
                .and_then(|()| file.write_all(b"\n"));
            if let Err(e) = res {
                st.write_error.get_or_insert(e);
            }
        }
        st.ops.push(op.clone());
        op
    }

    /// Flushes the file and returns the history so far. Reports the first
    /// write error, if any happened.
    pub fn finish(&self) -> Result<Vec<Op>, std::io::Error> {
        let mut st = self.inner.state.lock();
        if let Some(e) = st.write_error.take() {
            return Err(e);
        }
        if let Some(file) = st.file.as_mut() {
            file.flush()?;
        }
        Ok(st.ops.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_round_trips_through_jsonl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        let rec = Recorder::to_file(&path).expect("create");
        let p = rec.new_process();
        rec.record(Op {
            sends: vec![SendRec {
                topic: "t".into(),
                partition: 0,
                value: 1,
                offset: None,
            }],
            ..Op::new(p, OpType::Invoke, F::Send)
        });
        rec.record(Op {
            reads: vec![ReadRec {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                value: 1,
            }],
            read_committed: true,
            ..Op::new(p, OpType::Ok, F::Poll)
        });
        let mem = rec.finish().expect("flush");
        let disk = read_history(&path).expect("read");
        assert_eq!(mem, disk);
        assert_eq!(disk[1].index, 1);
        assert!(disk[1].read_committed);
    }
}
