//! `latency`: records at a fixed rate; produce-ack latency (send to broker
//! acknowledgement) and end-to-end latency (send to a consumer with the
//! client's default fetch settings receiving it), as HDR percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::anyhow;
use rand::RngCore;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

use super::produce::ProducerArgs;
use super::{E2eConsumer, Target, paced};
use crate::client::{DeliveryStats, TS_HEADER, create_topic, now_micros, producer, run_topic};
use crate::report::{BrokerMonitor, Report};

/// `latency` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LatencyArgs {
    /// Records per second.
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    /// Record value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// How long to send.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Records sent during the first part of the run are not timed.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Producer `linger.ms` (0 here: a latency test should not wait on purpose).
    #[arg(long, default_value_t = 0)]
    pub linger_ms: u64,
    /// Producer `acks`.
    #[arg(long, default_value = "all")]
    pub acks: String,
}

/// Sends a timestamped record; `Ok(false)` when the client queue is full.
pub fn send_stamped<C>(
    p: &rdkafka::producer::ThreadedProducer<C>,
    stats: &DeliveryStats,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
) -> anyhow::Result<bool>
where
    C: rdkafka::producer::ProducerContext<DeliveryOpaque = usize> + 'static,
{
    let ts = now_micros().to_be_bytes();
    let headers = OwnedHeaders::new().insert(Header {
        key: TS_HEADER,
        value: Some(&ts[..]),
    });
    let mut rec = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, stats.stamp())
        .payload(value)
        .headers(headers);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    match p.send(rec) {
        Ok(()) => Ok(true),
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Ok(false),
        Err((e, _)) => Err(anyhow!("send: {e}")),
    }
}

/// Runs the `latency` workload.
pub fn run(target: &Target, args: &LatencyArgs) -> anyhow::Result<Report> {
    let topic = run_topic(&target.topic_prefix, "latency");
    create_topic(&target.bootstrap, &topic, args.partitions)?;
    let settings = ProducerArgs {
        acks: args.acks.clone(),
        linger_ms: args.linger_ms,
        batch_size: 1 << 20,
        compression: "none".into(),
    }
    .settings();
    let mut config = settings.config(&target.bootstrap);
    target.apply(&mut config)?;
    let stats = DeliveryStats::new();
    let p = producer(&config, &stats)?;
    let sent = Arc::new(AtomicU64::new(0));
    let since = now_micros() + args.warmup.as_micros() as u64;
    let consumer = E2eConsumer::start(
        target.consumer_config()?,
        &[(topic.clone(), args.partitions)],
        sent.clone(),
        since,
    )?;
    let mut value = vec![0u8; args.record_size];
    rand::rng().fill_bytes(&mut value);
    let monitor = BrokerMonitor::start(target.broker_pid);
    let mut warm = false;
    let queue_full = paced(args.rate, args.duration, &sent, |_| {
        if !warm && now_micros() >= since {
            // Forget the warm-up acks: only the steady state is reported.
            if let Ok(mut h) = stats.ack.lock() {
                h.reset();
            }
            warm = true;
        }
        send_stamped(&p, &stats, &topic, None, &value)
    })?;
    p.flush(Duration::from_secs(60))?;
    let total = sent.load(Ordering::Relaxed);
    let e2e = consumer.finish(total, Duration::from_secs(20))?;
    let mut r = Report::new("latency", &target.label);
    r.param("rate", args.rate);
    r.param("record_size", args.record_size);
    r.param("partitions", args.partitions);
    r.param("duration_s", args.duration.as_secs_f64());
    r.param("warmup_s", args.warmup.as_secs_f64());
    r.param("producer", &settings);
    r.param("client_sets", &target.client_sets);
    r.figure("sent", total as f64);
    r.figure("delivered", stats.delivered.load(Ordering::Relaxed) as f64);
    r.figure("failed", stats.failed.load(Ordering::Relaxed) as f64);
    r.figure("consumed", e2e.consumed as f64);
    r.figure("queue_full_events", queue_full as f64);
    r.figure("achieved_msg_s", total as f64 / args.duration.as_secs_f64());
    if let Ok(h) = stats.ack.lock() {
        r.latency("ack", &h);
    }
    r.latency("e2e", &e2e.latency);
    monitor.finish(&mut r, stats.delivered_bytes.load(Ordering::Relaxed));
    Ok(r)
}
