//! `fleet`: V vehicles each reporting every T seconds (V/T records per
//! second), keyed by VIN, GB/T 32960-shaped packets spread over one topic per
//! message kind; reports whether the rate was sustained, the consumer's lag
//! and the ack and end-to-end latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rdkafka::producer::Producer;

use super::latency::send_stamped;
use super::produce::ProducerArgs;
use super::{E2eConsumer, Target, paced};
use crate::client::{DeliveryStats, create_topic, now_micros, producer, run_topic};
use crate::payload::{Kind, packet, vin};
use crate::report::{BrokerMonitor, Report};

/// `fleet` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Simulated vehicles.
    #[arg(long, default_value_t = 100_000)]
    pub vehicles: u64,
    /// Each vehicle reports once per interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// How long to run.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Records sent during the first part of the run are not timed.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Producer settings of the gateway (librdkafka's default linger, 5 ms).
    #[command(flatten)]
    pub producer: ProducerArgs,
}

/// Runs the `fleet` workload.
pub fn run(target: &Target, args: &FleetArgs) -> anyhow::Result<Report> {
    let base = run_topic(&target.topic_prefix, "fleet");
    let topics: Vec<(String, i32)> = Kind::ALL
        .iter()
        .map(|k| (format!("{base}.{}", k.topic_suffix()), args.partitions))
        .collect();
    for (t, n) in &topics {
        create_topic(&target.bootstrap, t, *n)?;
    }
    let settings = args.producer.settings();
    let mut config = settings.config(&target.bootstrap);
    target.apply(&mut config)?;
    let stats = DeliveryStats::new();
    let p = producer(&config, &stats)?;
    let sent = Arc::new(AtomicU64::new(0));
    let since = now_micros() + args.warmup.as_micros() as u64;
    let consumer = E2eConsumer::start(target.consumer_config()?, &topics, sent.clone(), since)?;
    let rate = args.vehicles as f64 / args.interval.as_secs_f64();
    let mut rng = StdRng::seed_from_u64(32960);
    let mut buf = Vec::with_capacity(1024);
    let mut kind_counts = [0u64; 4];
    let monitor = BrokerMonitor::start(target.broker_pid);
    let queue_full = paced(rate, args.duration, &sent, |seq| {
        let v = vin(seq % args.vehicles.max(1));
        let kind = Kind::pick(&mut rng);
        packet(kind, &v, &mut rng, &mut buf);
        let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let ok = send_stamped(&p, &stats, &topics[i].0, Some(&v), &buf)?;
        if ok {
            kind_counts[i] += 1;
        }
        Ok(ok)
    })?;
    p.flush(Duration::from_secs(60))?;
    let total = sent.load(Ordering::Relaxed);
    let e2e = consumer.finish(total, Duration::from_secs(20))?;
    let secs = args.duration.as_secs_f64();
    let delivered_bytes = stats.delivered_bytes.load(Ordering::Relaxed);
    let mut r = Report::new("fleet", &target.label);
    r.param("vehicles", args.vehicles);
    r.param("interval_s", args.interval.as_secs_f64());
    r.param("partitions_per_topic", args.partitions);
    r.param(
        "topics",
        topics.iter().map(|t| t.0.clone()).collect::<Vec<_>>(),
    );
    r.param("duration_s", secs);
    r.param("producer", &settings);
    r.figure("offered_msg_s", rate);
    r.figure("sent_msg_s", total as f64 / secs);
    r.figure("delivered", stats.delivered.load(Ordering::Relaxed) as f64);
    r.figure("failed", stats.failed.load(Ordering::Relaxed) as f64);
    r.figure("consumed", e2e.consumed as f64);
    r.figure("queue_full_events", queue_full as f64);
    r.figure("payload_mb_s", delivered_bytes as f64 / 1e6 / secs);
    r.figure(
        "mean_record_bytes",
        delivered_bytes as f64 / total.max(1) as f64,
    );
    for (k, n) in Kind::ALL.iter().zip(kind_counts) {
        r.figure(&format!("sent_{}", k.topic_suffix()), n as f64);
    }
    r.figure("max_lag_records", e2e.max_lag as f64);
    r.figure(
        "final_lag_records",
        total.saturating_sub(e2e.consumed) as f64,
    );
    let sustained = total as f64 >= 0.99 * rate * secs
        && e2e.consumed >= total
        && stats.failed.load(Ordering::Relaxed) == 0;
    r.figure("sustained", if sustained { 1.0 } else { 0.0 });
    if let Ok(h) = stats.ack.lock() {
        r.latency("ack", &h);
    }
    r.latency("e2e", &e2e.latency);
    monitor.finish(&mut r, delivered_bytes);
    Ok(r)
}
