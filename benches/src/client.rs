//! librdkafka plumbing shared by the workloads: client configuration, topic
//! creation, the producer context that counts deliveries and times acks, and
//! the timestamp header used for end-to-end latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use std::sync::Mutex;

use crate::report::micros_histogram;

/// Header carrying the producer's send time (microseconds since the Unix
/// epoch, big-endian), for end-to-end latency.
pub const TS_HEADER: &str = "t";

/// Microseconds since the Unix epoch (producer and consumer share a clock:
/// the benchmarks run on one machine).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The send time in a consumed message's [`TS_HEADER`], if present.
pub fn sent_micros<M: Message>(m: &M) -> Option<u64> {
    let headers = m.headers()?;
    let h = headers.iter().find(|h| h.key == TS_HEADER)?;
    let v: [u8; 8] = h.value?.try_into().ok()?;
    Some(u64::from_be_bytes(v))
}

/// Settings common to every client.
pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("log_level", "3");
    c
}

/// Producer settings of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProducerSettings {
    /// `acks`: `all`, `1` or `0`.
    pub acks: String,
    /// `linger.ms`.
    pub linger_ms: u64,
    /// `batch.size` in bytes.
    pub batch_size: u64,
    /// `compression.type`.
    pub compression: String,
}

impl ProducerSettings {
    /// A producer configuration for `bootstrap`.
    pub fn config(&self, bootstrap: &str) -> ClientConfig {
        let mut c = base_config(bootstrap);
        c.set("acks", &self.acks)
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", self.batch_size.to_string())
            .set("compression.type", &self.compression)
            .set("queue.buffering.max.kbytes", "262144")
            .set("queue.buffering.max.messages", "1000000")
            // Idempotence is off so the client needs no producer id from the
            // broker: the peer and Skiff are compared on the plain path.
            .set("enable.idempotence", "false")
            .set("message.timeout.ms", "60000");
        c
    }
}

/// Delivery counters and the produce-ack latency histogram.
#[derive(Debug)]
pub struct DeliveryStats {
    /// Records acknowledged by the broker.
    pub delivered: AtomicU64,
    /// Payload bytes acknowledged (value + key).
    pub delivered_bytes: AtomicU64,
    /// Records that failed.
    pub failed: AtomicU64,
    /// Produce-ack latency in microseconds, when timed.
    pub ack: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
    epoch: Instant,
}

impl DeliveryStats {
    /// Fresh counters.
    pub fn new() -> Arc<Self> {
        Arc::new(DeliveryStats {
            delivered: AtomicU64::new(0),
            delivered_bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ack: Mutex::new(micros_histogram()),
            first_error: Mutex::new(None),
            epoch: Instant::now(),
        })
    }

    /// The opaque to send with a record whose ack is timed: microseconds
    /// since these counters were created, plus one (0 means untimed).
    pub fn stamp(&self) -> usize {
        self.epoch.elapsed().as_micros() as usize + 1
    }

    /// The first delivery error seen, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }
}

/// Producer context feeding [`DeliveryStats`].
#[derive(Debug, Clone)]
pub struct Ctx(pub Arc<DeliveryStats>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, stamp: usize) {
        let s = &self.0;
        match result {
            Ok(m) => {
                s.delivered.fetch_add(1, Ordering::Relaxed);
                let n = m.payload_len() + m.key().map_or(0, <[u8]>::len);
                s.delivered_bytes.fetch_add(n as u64, Ordering::Relaxed);
                if stamp > 0 {
                    let now = s.epoch.elapsed().as_micros() as u64 + 1;
                    let us = now.saturating_sub(stamp as u64).max(1);
                    if let Ok(mut h) = s.ack.lock() {
                        h.saturating_record(us);
                    }
                }
            }
            Err((e, _)) => {
                s.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = s.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// A producer made from `config` whose deliveries feed `stats`.
pub fn producer(
    config: &ClientConfig,
    stats: &Arc<DeliveryStats>,
) -> anyhow::Result<ThreadedProducer<Ctx>> {
    config
        .create_with_context(Ctx(stats.clone()))
        .context("creating the producer")
}

/// Creates `topic` with `partitions` partitions (replication 1); an existing
/// topic is an error so runs never mix data.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap)
        .create()
        .context("creating the admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results =
        futures::executor::block_on(admin.create_topics([&new], &opts)).context("CreateTopics")?;
    for r in results {
        if let Err((name, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                bail!("creating topic {name}: {code}");
            }
            bail!("topic {name} already exists; use a fresh --topic");
        }
    }
    // Wait until the metadata shows every partition with a leader.
    let consumer: BaseConsumer = base_config(bootstrap).create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            let ready = md.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            });
            if ready {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(anyhow!("topic {topic} has no leaders after 30 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the broker at `bootstrap` answers a metadata request with at
/// least one broker.
pub fn wait_ready(bootstrap: &str, timeout: Duration) -> anyhow::Result<()> {
    let consumer: BaseConsumer = base_config(bootstrap).create()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(md) = consumer.fetch_metadata(None, Duration::from_secs(2))
            && !md.brokers().is_empty()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no broker answered at {bootstrap} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A unique topic name for this run.
pub fn run_topic(prefix: &str, workload: &str) -> String {
    format!(
        "{prefix}-{workload}-{}-{}",
        std::process::id(),
        now_micros() % 1_000_000_000
    )
}
