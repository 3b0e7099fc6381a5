//! Workloads modelled on Jepsen's Kafka "queue" workload, driven by a real
//! Kafka client (librdkafka through the `rdkafka` crate).
//!
//! * Producers send unique `u64` values (as decimal payloads) to random
//!   partitions with `acks=all`, some clients with `enable.idempotence=true`,
//!   some without. Each client runs several logical processes concurrently;
//!   a send whose outcome is unknown ends its process (the next op gets a new
//!   process id).
//! * Consumers poll with `assign` (random subsets, reassigned now and then)
//!   or `subscribe` (one consumer group); rebalances end the current poll op
//!   and are recorded as `assign` ops so the checker restarts the stream.
//! * [`final_read`] reads every partition from the beginning up to the high
//!   watermark fetched after the run; [`headers`] then reads the producer id,
//!   epoch and sequence stored at every offset, raw.
//!
//! * Transactional producers (`txn_producers`, see [`txn`]) send batches
//!   of values in transactions, committing most and aborting some; with
//!   `read_committed` consumers the checker looks for aborted reads.
//!
//! Every operation goes to the [`Recorder`] as an invoke and a completion.

mod consumer;
mod final_read;
pub mod headers;
mod producer;
pub mod txn;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use final_read::final_read;

use crate::history::Recorder;

/// Which producers use `enable.idempotence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Idempotence {
    On,
    Off,
    /// Alternate: even-numbered producer clients idempotent, odd not.
    Mixed,
}

/// How consumers get partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerMode {
    Assign,
    Subscribe,
    /// Alternate assign and subscribe consumers.
    Mixed,
}

/// What the workload does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadConfig {
    /// Comma-separated `host:port` of the brokers (or of proxies in front).
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    /// Producer clients.
    pub producers: usize,
    /// Logical processes per producer client, each one send at a time.
    pub producer_concurrency: usize,
    pub idempotence: Idempotence,
    /// Transactional producer clients (one process each), besides `producers`.
    #[serde(default)]
    pub txn_producers: usize,
    pub consumers: usize,
    pub consumer_mode: ConsumerMode,
    /// Consumers (and the final read) use `isolation.level=read_committed`.
    pub read_committed: bool,
    /// Target sends per second over all processes (0 = as fast as acked).
    pub rate: f64,
    /// `message.timeout.ms`: a send unacknowledged after this is unknown.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// How long the final read may take.
    #[serde(with = "humantime_serde")]
    pub final_read_timeout: Duration,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            bootstrap: "127.0.0.1:9092".into(),
            topic: "jepsen".into(),
            partitions: 4,
            producers: 2,
            producer_concurrency: 3,
            idempotence: Idempotence::Mixed,
            txn_producers: 0,
            consumers: 2,
            consumer_mode: ConsumerMode::Mixed,
            read_committed: true,
            rate: 200.0,
            send_timeout: Duration::from_secs(10),
            final_read_timeout: Duration::from_secs(120),
        }
    }
}

/// Errors setting the workload up (running it records errors as ops).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic {topic} not ready: {detail}")]
    Topic { topic: String, detail: String },
}

/// Unique values for sends.
#[derive(Debug, Clone, Default)]
pub struct Values(Arc<AtomicU64>);

impl Values {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// Common client settings: short timeouts so faults show up as errors
/// quickly, loopback only.
pub(crate) fn base_config(cfg: &WorkloadConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap)
        .set("socket.timeout.ms", "5000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("broker.address.family", "v4")
        // Re-resolve the bootstrap addresses soon when every known broker
        // is gone (e.g. all restarted), instead of after five minutes.
        .set("metadata.recovery.rebootstrap.trigger.ms", "5000")
        .set("log_level", "3");
    c
}

/// Creates the topic (an existing one is fine) and waits until its metadata
/// lists every partition.
pub async fn setup_topic(cfg: &WorkloadConfig, timeout: Duration) -> Result<(), WorkloadError> {
    let admin: AdminClient<DefaultClientContext> = base_config(cfg).create()?;
    let topic_err = |detail: String| WorkloadError::Topic {
        topic: cfg.topic.clone(),
        detail,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let partitions = || {
        admin
            .inner()
            // All topics: asking for one by name would auto-create it with
            // the broker's default partition count.
            .fetch_metadata(None, Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == cfg.topic && t.error().is_none())
                    .map(|t| t.partitions().len())
            })
            .unwrap_or(0)
    };
    // An existing topic (or a broker without CreateTopics) is fine.
    if partitions() as i32 >= cfg.partitions {
        return Ok(());
    }
    let new = NewTopic::new(&cfg.topic, cfg.partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    loop {
        let res = admin.create_topics([&new], &opts).await;
        let created = match &res {
            Ok(results) => results.iter().all(|r| match r {
                Ok(_) => true,
                Err((_, code)) => *code == RDKafkaErrorCode::TopicAlreadyExists,
            }),
            Err(_) => false,
        };
        if created || partitions() as i32 >= cfg.partitions {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(topic_err(format!("create_topics: {res:?}")));
        }
        tracing::warn!(?res, "create_topics failed; retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    loop {
        let n = partitions();
        if n as i32 >= cfg.partitions {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(topic_err(format!("metadata shows {n} partitions")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs producers and consumers until `stop` is cancelled; returns when every
/// client has finished its current operation.
pub async fn run(cfg: Arc<WorkloadConfig>, rec: Recorder, values: Values, stop: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    let processes = (cfg.producers * cfg.producer_concurrency + cfg.txn_producers).max(1);
    // Each process waits this long between its sends.
    let pace = if cfg.rate > 0.0 {
        Duration::from_secs_f64(processes as f64 / cfg.rate)
    } else {
        Duration::ZERO
    };
    for i in 0..cfg.producers {
        let idempotent = match cfg.idempotence {
            Idempotence::On => true,
            Idempotence::Off => false,
            Idempotence::Mixed => i % 2 == 0,
        };
        tasks.spawn(producer::run(
            cfg.clone(),
            rec.clone(),
            values.clone(),
            stop.clone(),
            producer::Options { idempotent, pace },
        ));
    }
    for i in 0..cfg.txn_producers {
        tasks.spawn(txn::run(
            cfg.clone(),
            rec.clone(),
            values.clone(),
            stop.clone(),
            i,
            pace,
        ));
    }
    for i in 0..cfg.consumers {
        let mode = match cfg.consumer_mode {
            ConsumerMode::Mixed if i % 2 == 0 => ConsumerMode::Assign,
            ConsumerMode::Mixed => ConsumerMode::Subscribe,
            m => m,
        };
        tasks.spawn(consumer::run(
            cfg.clone(),
            rec.clone(),
            stop.clone(),
            mode,
            i,
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// Drops a librdkafka client on a blocking thread: closing a consumer waits
/// for its group coordinator (which may be down or paused), and a producer
/// flushes; neither may stall the async workers. Waits at most 10 s.
pub(crate) async fn close<T: Send + 'static>(client: T) {
    let handle = tokio::task::spawn_blocking(move || drop(client));
    if tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .is_err()
    {
        tracing::warn!("a Kafka client is slow to close; continuing without it");
    }
}

/// Parses a payload written by the producers.
pub(crate) fn parse_value(payload: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(payload?).ok()?.parse().ok()
}
