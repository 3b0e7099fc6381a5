//! Producer clients: `acks=all` sends of unique values, one at a time per
//! logical process, several processes per client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use super::{Values, WorkloadConfig, base_config, close};
use crate::history::{F, Op, OpType, Recorder, SendRec};

#[derive(Clone, Copy)]
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

/// Shared by the processes of one client.
#[derive(Default)]
struct Health {
    /// Set when the client must be replaced.
    replace: AtomicBool,
    /// Consecutive failed sends over all processes.
    failures: AtomicUsize,
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
        let health = Arc::new(Health::default());
        let mut procs = tokio::task::JoinSet::new();
        for _ in 0..cfg.producer_concurrency.max(1) {
            procs.spawn(process(
                cfg.clone(),
                rec.clone(),
                values.clone(),
                stop.clone(),
                producer.clone(),
                health.clone(),
                opts,
            ));
        }
        while procs.join_next().await.is_some() {}
        close(producer).await;
        // Fatal (e.g. idempotence state lost): start over with a new client.
    }
}

async fn process(
    cfg: Arc<WorkloadConfig>,
    rec: Recorder,
    values: Values,
    stop: CancellationToken,
    producer: Arc<FutureProducer>,
    health: Arc<Health>,
    opts: Options,
) {
    let Options { idempotent, pace } = opts;
    let replace = &health.replace;
    let mut process = rec.new_process();
    // Spread the processes' first sends over one pace interval.
    let jitter = pace.mul_f64(rand::rng().random_range(0.0..1.0));
    tokio::time::sleep(jitter).await;
    while !stop.is_cancelled() && !replace.load(Ordering::Relaxed) {
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
            idempotent,
            ..Op::new(process, OpType::Invoke, F::Send)
        });
        let payload = value.to_string();
        let record = FutureRecord::to(&cfg.topic)
            .partition(partition)
            .key(&payload)
            .payload(&payload);
        match producer.send(record, Timeout::After(Duration::ZERO)).await {
            Ok(d) => {
                health.failures.store(0, Ordering::Relaxed);
                rec.record(Op {
                    sends: vec![SendRec {
                        partition: d.partition,
                        offset: Some(d.offset),
                        ..send(None)
                    }],
                    idempotent,
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
                    idempotent,
                    ..Op::new(process, kind, F::Send)
                });
                if kind == OpType::Info {
                    process = rec.new_process();
                }
                // A fatal error, or every process failing in turn (e.g. the
                // client holds stale broker addresses): start a new client.
                let failures = health.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if producer.client().fatal_error().is_some()
                    || failures >= 2 * cfg.producer_concurrency.max(1)
                {
                    replace.store(true, Ordering::Relaxed);
                }
                // Do not spin against a dead broker.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(pace).await;
    }
}
