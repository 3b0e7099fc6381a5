//! Consumer clients: poll ops with `assign` or `subscribe`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use rand::seq::IteratorRandom;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{ConsumerMode, WorkloadConfig, base_config, close, parse_value};
use crate::history::{F, Op, OpType, Partition, ReadRec, Recorder};

/// Records nothing itself (callbacks run inside `recv`); bumps a generation
/// the poll loop checks, so rebalances land between poll ops in the history.
#[derive(Default)]
pub(super) struct Ctx {
    generation: AtomicU64,
    assigned: Mutex<Vec<Partition>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let parts = match r {
            Rebalance::Assign(tpl) => tpl
                .elements()
                .iter()
                .map(|e| Partition {
                    topic: e.topic().to_string(),
                    partition: e.partition(),
                })
                .collect(),
            Rebalance::Revoke(_) | Rebalance::Error(_) => Vec::new(),
        };
        *self.assigned.lock() = parts;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

pub(super) fn make(
    cfg: &WorkloadConfig,
    group: &str,
    auto_commit: bool,
) -> Result<StreamConsumer<Ctx>, KafkaError> {
    base_config(cfg)
        .set("group.id", group)
        .set(
            "enable.auto.commit",
            if auto_commit { "true" } else { "false" },
        )
        .set("auto.commit.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set(
            "isolation.level",
            if cfg.read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create_with_context(Ctx::default())
}

/// Polls per assignment before an assign-mode consumer picks new partitions.
const POLLS_PER_ASSIGNMENT: usize = 40;
/// Records per poll op at most.
const MAX_BATCH: usize = 200;
const POLL_WINDOW: Duration = Duration::from_millis(200);
/// Empty polls in a row (about 10 s) before the client is replaced.
const MAX_IDLE_POLLS: usize = 50;

pub(super) async fn run(
    cfg: Arc<WorkloadConfig>,
    rec: Recorder,
    stop: CancellationToken,
    mode: ConsumerMode,
    n: usize,
) {
    let group = match mode {
        ConsumerMode::Subscribe => format!("jepsen-{}-group", cfg.topic),
        _ => format!("jepsen-{}-assign-{n}", cfg.topic),
    };
    // Next offset per partition, kept across clients of this consumer slot.
    let mut positions = HashMap::new();
    while !stop.is_cancelled() {
        // Assign-mode consumers track their own positions (no group
        // coordinator needed); subscribe-mode ones commit to their group.
        let consumer = match make(&cfg, &group, mode == ConsumerMode::Subscribe) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%e, "creating consumer");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let process = rec.new_process();
        let res = session(&cfg, &rec, &stop, mode, &consumer, process, &mut positions).await;
        close(consumer).await;
        match res {
            Err(e) => tracing::info!(%e, process, "consumer failing; new client"),
            Ok(()) if !stop.is_cancelled() => tracing::info!(process, "consumer idle; new client"),
            Ok(()) => break,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One consumer client's life: polls until stopped or too many errors.
async fn session(
    cfg: &WorkloadConfig,
    rec: &Recorder,
    stop: &CancellationToken,
    mode: ConsumerMode,
    consumer: &StreamConsumer<Ctx>,
    process: u64,
    positions: &mut HashMap<i32, i64>,
) -> Result<(), KafkaError> {
    let ctx = consumer.context();
    let mut seen_gen = ctx.generation.load(Ordering::SeqCst);
    if mode == ConsumerMode::Subscribe {
        consumer.subscribe(&[&cfg.topic])?;
    }
    let mut errors = 0;
    let mut idle = 0;
    let mut polls = 0usize;
    while !stop.is_cancelled() {
        if mode == ConsumerMode::Assign && polls.is_multiple_of(POLLS_PER_ASSIGNMENT) {
            reassign(cfg, rec, consumer, process, positions)?;
        }
        polls += 1;
        rec.record(Op::new(process, OpType::Invoke, F::Poll));
        let mut reads = Vec::new();
        let mut error = None;
        let deadline = tokio::time::Instant::now() + POLL_WINDOW;
        while reads.len() < MAX_BATCH {
            let msg = match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    error = Some(e);
                    break;
                }
                Ok(Ok(m)) => m,
            };
            let gen_now = ctx.generation.load(Ordering::SeqCst);
            if gen_now != seen_gen {
                // Rebalanced: close this poll op, record the new assignment,
                // and continue in a fresh op.
                seen_gen = gen_now;
                complete(
                    rec,
                    process,
                    cfg.read_committed,
                    std::mem::take(&mut reads),
                    None,
                );
                let parts = ctx.assigned.lock().clone();
                rec.record(Op {
                    partitions: parts,
                    ..Op::new(process, OpType::Ok, F::Assign)
                });
                rec.record(Op::new(process, OpType::Invoke, F::Poll));
            }
            positions.insert(msg.partition(), msg.offset() + 1);
            if let Some(value) = parse_value(msg.payload()) {
                reads.push(ReadRec {
                    topic: msg.topic().to_string(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    value,
                });
            }
        }
        let failed = error.is_some() && reads.is_empty();
        idle = if reads.is_empty() { idle + 1 } else { 0 };
        complete(
            rec,
            process,
            cfg.read_committed,
            reads,
            error.as_ref().map(|e| e.to_string()),
        );
        if failed {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            errors = 0;
        }
        if errors > 50 {
            return Err(error.unwrap_or(KafkaError::NoMessageReceived));
        }
        if idle > MAX_IDLE_POLLS {
            // Nothing for a while although producers keep sending: the
            // client may hold stale broker addresses. Start afresh.
            return Ok(());
        }
        // Pick up a rebalance that happened while idle.
        let gen_now = ctx.generation.load(Ordering::SeqCst);
        if gen_now != seen_gen {
            seen_gen = gen_now;
            rec.record(Op {
                partitions: ctx.assigned.lock().clone(),
                ..Op::new(process, OpType::Ok, F::Assign)
            });
        }
    }
    Ok(())
}

fn complete(
    rec: &Recorder,
    process: u64,
    read_committed: bool,
    reads: Vec<ReadRec>,
    error: Option<String>,
) {
    let kind = if reads.is_empty() && error.is_some() {
        OpType::Fail
    } else {
        OpType::Ok
    };
    rec.record(Op {
        reads,
        read_committed,
        error,
        ..Op::new(process, kind, F::Poll)
    });
}

/// Assigns a random non-empty subset of partitions, each from where this
/// consumer slot left it (or the beginning), and records it.
fn reassign(
    cfg: &WorkloadConfig,
    rec: &Recorder,
    consumer: &StreamConsumer<Ctx>,
    process: u64,
    positions: &HashMap<i32, i64>,
) -> Result<(), KafkaError> {
    let mut rng = rand::rng();
    let k = rng.random_range(1..=cfg.partitions.max(1)) as usize;
    let chosen = (0..cfg.partitions.max(1)).choose_multiple(&mut rng, k);
    let mut tpl = TopicPartitionList::new();
    for p in &chosen {
        let at = positions
            .get(p)
            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
        tpl.add_partition_offset(&cfg.topic, *p, at)?;
    }
    consumer.assign(&tpl)?;
    rec.record(Op {
        partitions: chosen
            .iter()
            .map(|p| Partition {
                topic: cfg.topic.clone(),
                partition: *p,
            })
            .collect(),
        ..Op::new(process, OpType::Ok, F::Assign)
    });
    Ok(())
}
