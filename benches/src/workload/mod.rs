//! The workloads. Each takes its arguments plus a [`Target`] and returns a
//! [`Report`](crate::report::Report); the pieces they share (rate pacing,
//! the end-to-end consumer, backlog writing) live here.

pub mod consume;
pub mod fleet;
pub mod latency;
pub mod produce;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use hdrhistogram::Histogram;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{base_config, now_micros, sent_micros};
use crate::report::micros_histogram;

/// The broker under test.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Bootstrap address (loopback only).
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap: String,
    /// Label of the broker in the report (e.g. `skiff`, `tansu-memory`).
    #[arg(long, default_value = "skiff", global = true)]
    pub label: String,
    /// Pid of the broker process, to report its RSS and CPU from /proc.
    #[arg(long, global = true)]
    pub broker_pid: Option<u32>,
    /// Prefix of the topics the run creates.
    #[arg(long, default_value = "bench", global = true)]
    pub topic_prefix: String,
    /// Extra client setting KEY=VALUE for every producer and consumer
    /// (repeatable), e.g. `--client-set fetch.wait.max.ms=100`.
    #[arg(long = "client-set", value_name = "KEY=VALUE", global = true)]
    pub client_sets: Vec<String>,
}

impl Target {
    /// Refuses anything but loopback: benchmarks never leave the machine.
    pub fn check_loopback(&self) -> anyhow::Result<()> {
        for addr in self.bootstrap.split(',') {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            if !matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]") {
                return Err(anyhow!("{addr} is not a loopback address"));
            }
        }
        Ok(())
    }

    /// Applies `--client-set` to a client configuration.
    pub fn apply(&self, c: &mut ClientConfig) -> anyhow::Result<()> {
        for kv in &self.client_sets {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--client-set {kv}: expected KEY=VALUE"))?;
            c.set(k, v);
        }
        Ok(())
    }

    /// A consumer configuration with the client's default fetch settings.
    pub fn consumer_config(&self) -> anyhow::Result<ClientConfig> {
        let mut c = base_config(&self.bootstrap);
        // librdkafka refuses assign() without a group id; nothing is committed.
        c.set("group.id", format!("skiff-bench-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true");
        self.apply(&mut c)?;
        Ok(c)
    }
}

/// Sends at `rate` records per second for `duration`, calling `send(seq)`
/// for each record; `send` returns `Ok(false)` when the client's queue is
/// full (the record is retried). Returns (records sent, queue-full events).
pub fn paced(
    rate: f64,
    duration: Duration,
    sent: &AtomicU64,
    mut send: impl FnMut(u64) -> anyhow::Result<bool>,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut queue_full = 0u64;
    let mut seq = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return Ok(queue_full);
        }
        let due = (rate * elapsed.as_secs_f64()) as u64;
        while seq < due {
            if send(seq)? {
                seq += 1;
                sent.store(seq, Ordering::Relaxed);
            } else {
                queue_full += 1;
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// What the end-to-end consumer saw.
#[derive(Debug)]
pub struct E2eResult {
    /// Send-to-receive latency in microseconds of records sent after the warm-up.
    pub latency: Histogram<u64>,
    /// Records consumed.
    pub consumed: u64,
    /// Payload bytes consumed.
    pub bytes: u64,
    /// Largest observed gap between records sent and records consumed.
    pub max_lag: u64,
}

/// A consumer thread reading `topics` from the beginning and timing each
/// record by its send-time header.
#[derive(Debug)]
pub struct E2eConsumer {
    handle: JoinHandle<anyhow::Result<E2eResult>>,
    expect: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl E2eConsumer {
    /// Starts reading. `sent` is the producer's running count (for lag);
    /// records sent before `since_micros` are read but not timed.
    pub fn start(
        config: ClientConfig,
        topics: &[(String, i32)],
        sent: Arc<AtomicU64>,
        since_micros: u64,
    ) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = config.create().context("creating the consumer")?;
        let mut tpl = TopicPartitionList::new();
        for (topic, parts) in topics {
            for p in 0..*parts {
                tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            }
        }
        consumer.assign(&tpl).context("assigning partitions")?;
        let expect = Arc::new(AtomicU64::new(u64::MAX));
        let done = Arc::new(AtomicBool::new(false));
        let (e, d) = (expect.clone(), done.clone());
        let handle =
            std::thread::spawn(move || consume_loop(&consumer, &sent, since_micros, &e, &d));
        Ok(E2eConsumer {
            handle,
            expect,
            done,
        })
    }

    /// Tells the consumer how many records to expect in all, waits up to
    /// `drain` for them, and returns what it saw.
    pub fn finish(self, expect: u64, drain: Duration) -> anyhow::Result<E2eResult> {
        self.expect.store(expect, Ordering::Relaxed);
        let deadline = Instant::now() + drain;
        while !self.handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.done.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow!("the consumer thread panicked"))?
    }
}

fn consume_loop(
    consumer: &BaseConsumer,
    sent: &AtomicU64,
    since_micros: u64,
    expect: &AtomicU64,
    done: &AtomicBool,
) -> anyhow::Result<E2eResult> {
    let mut r = E2eResult {
        latency: micros_histogram(),
        consumed: 0,
        bytes: 0,
        max_lag: 0,
    };
    while !done.load(Ordering::Relaxed) && r.consumed < expect.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let now = now_micros();
                r.consumed += 1;
                r.bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
                if let Some(t) = sent_micros(&m)
                    && t >= since_micros
                {
                    r.latency.saturating_record(now.saturating_sub(t).max(1));
                }
                let lag = sent.load(Ordering::Relaxed).saturating_sub(r.consumed);
                r.max_lag = r.max_lag.max(lag);
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => eprintln!("consumer: {e}"),
        }
    }
    Ok(r)
}

/// Reads `topics` from the beginning to their current end with a fresh
/// consumer; returns (records, bytes, seconds from the first poll to the end).
pub fn read_backlog(
    config: ClientConfig,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<(u64, u64, f64)> {
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    let mut tpl = TopicPartitionList::new();
    let mut expect = 0u64;
    for p in 0..partitions {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .with_context(|| format!("watermarks of {topic}/{p}"))?;
        expect += (hi - lo).max(0) as u64;
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    let start = Instant::now();
    consumer.assign(&tpl)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut idle_since = Instant::now();
    while records < expect {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
                idle_since = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {
                if idle_since.elapsed() > Duration::from_secs(30) {
                    return Err(anyhow!(
                        "no progress for 30 s at {records}/{expect} records"
                    ));
                }
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange))) => {
                return Err(anyhow!("offset out of range while reading {topic}"));
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
        }
    }
    Ok((records, bytes, start.elapsed().as_secs_f64()))
}
