//! Producer clients: `acks=all` sends of unique values, one at a time per
//! logical process, several processes per client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use super::{Values, WorkloadConfig, base_config};
use crate::history::{F, Op, OpType, Recorder, SendRec};

pub(super) struct Options {
    pub(super) idempotent: bool,
    pub(super) pace: Duration,
}

fn make(cfg: &WorkloadConfig, idempotent: bool) -> Result<FutureProducer, KafkaError> {
    base_config(cfg)
        .set("acks", "all")
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set(
            "message.timeout.ms",
            cfg.send_timeout.as_millis().to_string(),
        )
        .set("request.timeout.ms", "5000")
        .set("linger.ms", "1")
        .set("retry.backoff.ms", "50")
        .create()
}

/// Whether a failed send definitely did not write. Only errors raised before
/// the message left the client are definite; anything after may have been
/// persisted (a timeout, a lost connection, even most broker errors when the
/// client retried).
fn definite(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::QueueFull | RDKafkaErrorCode::MessageSizeTooLarge
        )
    )
}

pub(super) async fn run(
    cfg: Arc<WorkloadConfig>,
    rec: Recorder,
    values: Values,
    stop: CancellationToken,
    opts: Options,
) {
    while !stop.is_cancelled() {
        let producer = match make(&cfg, opts.idempotent) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::warn!(%e, "creating producer");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let fatal = Arc::new(AtomicBool::new(false));
        let mut procs = tokio::task::JoinSet::new();
        for _ in 0..cfg.producer_concurrency.max(1) {
            procs.spawn(process(
                cfg.clone(),
                rec.clone(),
                values.clone(),
                stop.clone(),
                producer.clone(),
                fatal.clone(),
                opts.pace,
            ));
        }
        while procs.join_next().await.is_some() {}
        // Fatal (e.g. idempotence state lost): start over with a new client.
    }
}

async fn process(
    cfg: Arc<WorkloadConfig>,
    rec: Recorder,
    values: Values,
    stop: CancellationToken,
    producer: Arc<FutureProducer>,
    fatal: Arc<AtomicBool>,
    pace: Duration,
) {
    let mut process = rec.new_process();
    // Spread the processes' first sends over one pace interval.
    let jitter = pace.mul_f64(rand::rng().random_range(0.0..1.0));
    tokio::time::sleep(jitter).await;
    while !stop.is_cancelled() && !fatal.load(Ordering::Relaxed) {
        let value = values.next();
        let partition = rand::rng().random_range(0..cfg.partitions.max(1));
        let send = |offset| SendRec {
            topic: cfg.topic.clone(),
            partition,
            value,
            offset,
        };
        rec.record(Op {
            sends: vec![send(None)],
            ..Op::new(process, OpType::Invoke, F::Send)
        });
        let payload = value.to_string();
        let record = FutureRecord::to(&cfg.topic)
            .partition(partition)
            .key(&payload)
            .payload(&payload);
        match producer.send(record, Timeout::After(Duration::ZERO)).await {
            Ok(d) => {
                rec.record(Op {
                    sends: vec![SendRec {
                        partition: d.partition,
                        offset: Some(d.offset),
                        ..send(None)
                    }],
                    ..Op::new(process, OpType::Ok, F::Send)
                });
            }
            Err((e, _)) => {
                let kind = if definite(&e) {
                    OpType::Fail
                } else {
                    OpType::Info
                };
                rec.record(Op {
                    sends: vec![send(None)],
                    error: Some(e.to_string()),
                    ..Op::new(process, kind, F::Send)
                });
                if kind == OpType::Info {
                    process = rec.new_process();
                }
                if producer.client().fatal_error().is_some() {
                    fatal.store(true, Ordering::Relaxed);
                }
                // Do not spin against a dead broker.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(pace).await;
    }
}
