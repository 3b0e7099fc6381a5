//! `produce`: throughput of N producers sending fixed-size records as fast
//! as the client allows, for a duration or a record count.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use rand::RngCore;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};

use super::Target;
use crate::client::{DeliveryStats, ProducerSettings, create_topic, producer, run_topic};
use crate::report::{BrokerMonitor, Report};

/// Producer knobs shared by the workloads.
#[derive(Debug, Clone, clap::Args)]
pub struct ProducerArgs {
    /// `acks`: all, 1 or 0.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// `linger.ms`.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// `batch.size` in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub batch_size: u64,
    /// `compression.type`: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
}

impl ProducerArgs {
    /// The client settings.
    pub fn settings(&self) -> ProducerSettings {
        ProducerSettings {
            acks: self.acks.clone(),
            linger_ms: self.linger_ms,
            batch_size: self.batch_size,
            compression: self.compression.clone(),
        }
    }
}

/// `produce` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// Concurrent producers (one client and thread each).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Record value size in bytes (random, incompressible).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// How long to send (ignored when --messages is given).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Send exactly this many records in all instead of for a duration.
    #[arg(long)]
    pub messages: Option<u64>,
    #[command(flatten)]
    pub producer: ProducerArgs,
}

/// What a produce phase achieved.
#[derive(Debug)]
pub struct Produced {
    /// Topic written.
    pub topic: String,
    /// Records acknowledged.
    pub records: u64,
    /// Bytes acknowledged.
    pub bytes: u64,
    /// Seconds from the first send to the last acknowledgement.
    pub seconds: f64,
    /// The delivery counters (ack latency histogram included).
    pub stats: Arc<DeliveryStats>,
}

/// Creates a fresh topic and fills it as fast as possible.
pub fn produce(target: &Target, args: &ProduceArgs, workload: &str) -> anyhow::Result<Produced> {
    let topic = run_topic(&target.topic_prefix, workload);
    create_topic(&target.bootstrap, &topic, args.partitions)?;
    let stats = DeliveryStats::new();
    let settings = args.producer.settings();
    let per_producer = args
        .messages
        .map(|m| m.div_ceil(args.producers.max(1) as u64));
    let deadline = Instant::now() + args.duration;
    let start = Instant::now();
    let mut threads = Vec::new();
    for i in 0..args.producers.max(1) {
        let mut config = settings.config(&target.bootstrap);
        target.apply(&mut config)?;
        let p = producer(&config, &stats)?;
        let (topic, size) = (topic.clone(), args.record_size);
        let stats = stats.clone();
        threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let mut buf = vec![0u8; (1 << 20) + size];
            rand::rng().fill_bytes(&mut buf);
            let window = buf.len() - size;
            let mut sent = 0u64;
            let mut off = i * 4099;
            loop {
                if per_producer.map_or(Instant::now() >= deadline, |n| sent >= n) {
                    break;
                }
                off = (off + 997) % window;
                let rec = BaseRecord::<(), [u8], usize>::with_opaque_to(&topic, stats.stamp())
                    .payload(&buf[off..off + size]);
                match p.send(rec) {
                    Ok(()) => sent += 1,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                    Err((e, _)) => return Err(anyhow!("send: {e}")),
                }
            }
            p.flush(Duration::from_secs(120))
                .context("flushing the producer")?;
            Ok(())
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| anyhow!("a producer thread panicked"))??;
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Some(e) = stats.first_error() {
        eprintln!(
            "delivery errors: {} (first: {e})",
            stats.failed.load(Ordering::Relaxed)
        );
    }
    Ok(Produced {
        topic,
        records: stats.delivered.load(Ordering::Relaxed),
        bytes: stats.delivered_bytes.load(Ordering::Relaxed),
        seconds,
        stats,
    })
}

/// Runs the `produce` workload.
pub fn run(target: &Target, args: &ProduceArgs) -> anyhow::Result<Report> {
    let monitor = BrokerMonitor::start(target.broker_pid);
    let p = produce(target, args, "produce")?;
    let mut r = Report::new("produce", &target.label);
    r.param("producers", args.producers);
    r.param("record_size", args.record_size);
    r.param("partitions", args.partitions);
    r.param("duration_s", args.duration.as_secs_f64());
    r.param("messages", args.messages);
    r.param("producer", args.producer.settings());
    r.figure("records", p.records as f64);
    r.figure("failed", p.stats.failed.load(Ordering::Relaxed) as f64);
    r.figure("seconds", p.seconds);
    r.figure("throughput_mb_s", p.bytes as f64 / 1e6 / p.seconds);
    r.figure("throughput_msg_s", p.records as f64 / p.seconds);
    if let Ok(h) = p.stats.ack.lock() {
        r.latency("ack_under_load", &h);
    }
    monitor.finish(&mut r, p.bytes);
    Ok(r)
}
