//! Transactional producer clients: each runs one logical process that sends
//! batches of 1-4 unique values to random partitions inside a transaction
//! (`begin` / send / `commit`, or `abort` for about a quarter of them).
//!
//! Outcomes recorded as `f = txn` ops with the batch in `sends`:
//! * `ok`: `commit_transaction` returned success (offsets from the delivery
//!   reports);
//! * `fail`: the transaction was definitely aborted (`abort_transaction`
//!   returned success, whether planned or after an abortable error);
//! * `info`: anything else (a commit or abort that timed out, a fatal
//!   error): the batch may or may not be visible to `read_committed`
//!   readers. The client is then replaced (a new one fences the old
//!   producer through `InitProducerId` with the same `transactional.id`).
//!
//! librdkafka's transactional calls block; they run on blocking threads.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use super::{Values, WorkloadConfig, base_config, close};
use crate::history::{F, Op, OpType, Recorder, SendRec};

/// Share of transactions the workload aborts on purpose.
const ABORT_RATIO: f64 = 0.25;
/// Bound on each blocking transactional call.
const TXN_TIMEOUT: Duration = Duration::from_secs(10);

fn make(cfg: &WorkloadConfig, client: usize) -> Result<FutureProducer, KafkaError> {
    base_config(cfg)
        .set("transactional.id", format!("{}-txn-{client}", cfg.topic))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            cfg.send_timeout.as_millis().to_string(),
        )
        .set(
            "transaction.timeout.ms",
            (cfg.send_timeout * 3).as_millis().to_string(),
        )
        .set("request.timeout.ms", "5000")
        .set("linger.ms", "1")
        .set("retry.backoff.ms", "50")
        .create()
}

/// Runs one blocking transactional call on a blocking thread.
async fn blocking<R: Send + 'static>(
    producer: &Arc<FutureProducer>,
    call: impl FnOnce(&FutureProducer) -> Result<R, KafkaError> + Send + 'static,
) -> Result<R, KafkaError> {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || call(&p))
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}

/// How a transaction ended, as the history records it.
struct Ended {
    kind: OpType,
    sends: Vec<SendRec>,
    error: Option<String>,
}

/// Whether an error leaves the transaction abortable (the producer stays
/// usable once it has aborted).
fn abortable(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.txn_requires_abort(),
        // A delivery failure inside a transaction puts it in the abortable
        // state (a fatal one makes the abort fail, which is then `info`).
        KafkaError::MessageProduction(_) => true,
        _ => false,
    }
}

/// Aborts after `cause`; `fail` when the abort went through, else `info`.
async fn abort_after(
    producer: &Arc<FutureProducer>,
    sends: Vec<SendRec>,
    cause: Option<String>,
) -> Ended {
    match blocking(producer, |p| p.abort_transaction(TXN_TIMEOUT)).await {
        Ok(()) => Ended {
            kind: OpType::Fail,
            sends,
            error: cause,
        },
        Err(e) => Ended {
            kind: OpType::Info,
            sends,
            error: Some(match cause {
                Some(c) => format!("{c}; abort: {e}"),
                None => format!("abort: {e}"),
            }),
        },
    }
}

/// One transaction: begin, send `sends`, commit or abort.
async fn transaction(
    cfg: &WorkloadConfig,
    producer: &Arc<FutureProducer>,
    mut sends: Vec<SendRec>,
    abort: bool,
) -> Ended {
    let info = |sends, e: KafkaError| Ended {
        kind: OpType::Info,
        sends,
        error: Some(e.to_string()),
    };
    if let Err(e) = blocking(producer, |p| p.begin_transaction()).await {
        // Nothing was sent: the batch definitely is not written.
        return Ended {
            kind: OpType::Fail,
            sends,
            error: Some(format!("begin: {e}")),
        };
    }
    let payloads: Vec<String> = sends.iter().map(|s| s.value.to_string()).collect();
    let deliveries = sends.iter().zip(&payloads).map(|(s, payload)| {
        let record = FutureRecord::to(&cfg.topic)
            .partition(s.partition)
            .key(payload)
            .payload(payload);
        producer.send(record, Timeout::After(Duration::ZERO))
    });
    let delivered = futures::future::join_all(deliveries).await;
    for (s, d) in sends.iter_mut().zip(delivered) {
        match d {
            Ok(d) => s.offset = Some(d.offset),
            Err((e, _)) => {
                let cause = Some(format!("send: {e}"));
                if abortable(&e) {
                    return abort_after(producer, strip(sends), cause).await;
                }
                return info(strip(sends), e);
            }
        }
    }
    if abort {
        return abort_after(producer, strip(sends), None).await;
    }
    match blocking(producer, |p| p.commit_transaction(TXN_TIMEOUT)).await {
        Ok(()) => Ended {
            kind: OpType::Ok,
            sends,
            error: None,
        },
        Err(e) if abortable(&e) => {
            abort_after(producer, strip(sends), Some(format!("commit: {e}"))).await
        }
        Err(e) => info(strip(sends), e),
    }
}

/// Offsets are only claimed for committed batches.
fn strip(mut sends: Vec<SendRec>) -> Vec<SendRec> {
    for s in &mut sends {
        s.offset = None;
    }
    sends
}

/// One transactional client; `client` makes its `transactional.id`.
pub(super) async fn run(
    cfg: Arc<WorkloadConfig>,
    rec: Recorder,
    values: Values,
    stop: CancellationToken,
    client: usize,
    pace: Duration,
) {
    while !stop.is_cancelled() {
        let producer = match make(&cfg, client) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::warn!(%e, "creating transactional producer");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = blocking(&producer, |p| p.init_transactions(TXN_TIMEOUT)).await {
            tracing::warn!(%e, "init_transactions");
            close(producer).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let process = rec.new_process();
        while !stop.is_cancelled() {
            let (n, abort) = {
                let mut rng = rand::rng();
                (rng.random_range(1..=4usize), rng.random_bool(ABORT_RATIO))
            };
            let sends: Vec<SendRec> = (0..n)
                .map(|_| SendRec {
                    topic: cfg.topic.clone(),
                    partition: rand::rng().random_range(0..cfg.partitions.max(1)),
                    value: values.next(),
                    offset: None,
                })
                .collect();
            rec.record(Op {
                sends: sends.clone(),
                idempotent: true,
                ..Op::new(process, OpType::Invoke, F::Txn)
            });
            let ended = transaction(&cfg, &producer, sends, abort).await;
            let kind = ended.kind;
            rec.record(Op {
                sends: ended.sends,
                idempotent: true,
                error: ended.error,
                ..Op::new(process, kind, F::Txn)
            });
            if kind == OpType::Info {
                // Unknown outcome: a new process (at the top), and a new
                // client (the old one may be in a state only a fresh
                // InitProducerId clears).
                break;
            }
            if kind == OpType::Fail && !abort {
                if producer.client().fatal_error().is_some() {
                    break;
                }
                // Do not spin against a broken broker.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(pace).await;
        }
        close(producer).await;
    }
}
