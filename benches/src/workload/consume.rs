//! `consume` and `catchup`: a fresh consumer reading a backlog from the
//! beginning to its end.
//!
//! `consume` writes the backlog and reads it right away (tail reads, mostly
//! from the broker's log cache). `catchup` waits `--settle` after writing so
//! the data is uploaded and, run against a broker with a small log cache (or
//! restarted in between: `--produce-only`, restart, then `--topic`), reads
//! it back from objects.

use std::time::Duration;

use super::produce::{ProduceArgs, ProducerArgs, produce};
use super::{Target, read_backlog};
use crate::report::{BrokerMonitor, Report};

/// `consume` / `catchup` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    /// Backlog to write first, in MB (10^6 bytes).
    #[arg(long, default_value_t = 1000)]
    pub backlog_mb: u64,
    /// Record value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Read this existing topic instead of writing a backlog.
    #[arg(long)]
    pub topic: Option<String>,
    /// Write the backlog, print its topic and stop (read it later with --topic).
    #[arg(long)]
    pub produce_only: bool,
    /// Wait between writing and reading (catch-up: let the uploader move the
    /// data to objects). Defaults: 15s for catchup writing its own backlog, else 0.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub settle: Option<Duration>,
}

/// Runs `consume` (or `catchup`, by `workload`).
pub fn run(target: &Target, args: &ConsumeArgs, workload: &str) -> anyhow::Result<Report> {
    let mut r = Report::new(workload, &target.label);
    r.param("record_size", args.record_size);
    r.param("partitions", args.partitions);
    r.param("client_sets", &target.client_sets);
    let topic = match &args.topic {
        Some(t) => t.clone(),
        None => {
            let records = args.backlog_mb * 1_000_000 / args.record_size.max(1) as u64;
            let p = produce(
                target,
                &ProduceArgs {
                    producers: 1,
                    record_size: args.record_size,
                    partitions: args.partitions,
                    duration: Duration::from_secs(3600),
                    messages: Some(records),
                    producer: ProducerArgs {
                        acks: "all".into(),
                        linger_ms: 5,
                        batch_size: 1 << 20,
                        compression: "none".into(),
                    },
                },
                workload,
            )?;
            r.param("backlog_mb", args.backlog_mb);
            r.figure("backlog_write_mb_s", p.bytes as f64 / 1e6 / p.seconds);
            p.topic
        }
    };
    r.param("topic", &topic);
    if args.produce_only {
        r.param("produce_only", true);
        return Ok(r);
    }
    let settle = args.settle.unwrap_or(if workload == "catchup" {
        Duration::from_secs(15)
    } else {
        Duration::ZERO
    });
    r.param("settle_s", settle.as_secs_f64());
    std::thread::sleep(settle);
    let monitor = BrokerMonitor::start(target.broker_pid);
    let (records, bytes, seconds) =
        read_backlog(target.consumer_config()?, &topic, args.partitions)?;
    r.figure("records", records as f64);
    r.figure("seconds", seconds);
    r.figure("throughput_mb_s", bytes as f64 / 1e6 / seconds);
    r.figure("throughput_msg_s", records as f64 / seconds);
    monitor.finish(&mut r, bytes);
    Ok(r)
}
