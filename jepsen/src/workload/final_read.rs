//! The final read: after faults are healed, read every partition from the
//! beginning up to its high watermark, as one `final_read` op. Retried with a
//! new client (and process) when an attempt fails.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use rdkafka::consumer::StreamConsumer;

use super::consumer::{Ctx, make};
use super::{WorkloadConfig, close, parse_value};
use crate::history::{EndOffset, F, Op, OpType, ReadRec, Recorder};

/// Attempts before giving up (the last attempt's partial result stays in the
/// history as `info`, which the checker reports as unseen writes).
const ATTEMPTS: usize = 3;

/// Runs the final read; returns true when it completed.
pub async fn final_read(cfg: &WorkloadConfig, rec: &Recorder) -> bool {
    let per_attempt = cfg.final_read_timeout / ATTEMPTS as u32;
    for attempt in 0..ATTEMPTS {
        let process = rec.new_process();
        rec.record(Op {
            read_committed: cfg.read_committed,
            ..Op::new(process, OpType::Invoke, F::FinalRead)
        });
        let (kind, reads, ends, error) = attempt_once(cfg, per_attempt).await;
        rec.record(Op {
            reads,
            end_offsets: ends,
            read_committed: cfg.read_committed,
            error,
            ..Op::new(process, kind, F::FinalRead)
        });
        if kind == OpType::Ok {
            return true;
        }
        tracing::warn!(attempt, "final read incomplete; retrying");
    }
    false
}

type Attempt = (OpType, Vec<ReadRec>, Vec<EndOffset>, Option<String>);

async fn attempt_once(cfg: &WorkloadConfig, budget: Duration) -> Attempt {
    let group = format!("jepsen-{}-final-{}", cfg.topic, std::process::id());
    let consumer = match make(cfg, &group, false) {
        Ok(c) => c,
        Err(e) => return (OpType::Fail, Vec::new(), Vec::new(), Some(e.to_string())),
    };
    let res = read_all(cfg, &consumer, Instant::now() + budget).await;
    close(consumer).await;
    res
}

async fn read_all(
    cfg: &WorkloadConfig,
    consumer: &StreamConsumer<Ctx>,
    deadline: Instant,
) -> Attempt {
    // High watermarks first: everything acked before now is below them.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for p in 0..cfg.partitions {
        loop {
            match consumer.fetch_watermarks(&cfg.topic, p, Duration::from_secs(5)) {
                Ok((_low, high)) => {
                    ends.insert(p, high);
                    break;
                }
                Err(e) if Instant::now() >= deadline => {
                    return (
                        OpType::Fail,
                        Vec::new(),
                        Vec::new(),
                        Some(format!("watermarks of {p}: {e}")),
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    let end_offsets = ends
        .iter()
        .map(|(p, e)| EndOffset {
            topic: cfg.topic.clone(),
            partition: *p,
            end_offset: *e,
        })
        .collect();
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        if let Err(e) = tpl.add_partition_offset(&cfg.topic, *p, Offset::Beginning) {
            return (OpType::Fail, Vec::new(), end_offsets, Some(e.to_string()));
        }
    }
    if let Err(e) = consumer.assign(&tpl) {
        return (OpType::Fail, Vec::new(), end_offsets, Some(e.to_string()));
    }
    // Partitions still short of their end offset.
    let mut pending: BTreeMap<i32, i64> = ends.into_iter().filter(|(_, e)| *e > 0).collect();
    let mut reads = Vec::new();
    let mut last_error = None;
    while !pending.is_empty() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            Ok(Ok(m)) => {
                if let Some(value) = parse_value(m.payload()) {
                    reads.push(ReadRec {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        value,
                    });
                }
                if pending
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    pending.remove(&m.partition());
                }
            }
            Ok(Err(e)) => last_error = Some(e.to_string()),
            Err(_) => {
                // Idle: trailing transaction markers leave the position at
                // the end without a message to show for it.
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements() {
                        if let Offset::Offset(o) = e.offset()
                            && pending.get(&e.partition()).is_some_and(|end| o >= *end)
                        {
                            pending.remove(&e.partition());
                        }
                    }
                }
            }
        }
    }
    if pending.is_empty() {
        (OpType::Ok, reads, end_offsets, None)
    } else {
        let detail = format!(
            "partitions short of their end offset: {pending:?}; last error: {last_error:?}"
        );
        (OpType::Info, reads, end_offsets, Some(detail))
    }
}
