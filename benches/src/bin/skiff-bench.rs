//! `skiff-bench`: load generator on librdkafka for Skiff (and any
//! Kafka-compatible broker on loopback). See BENCHMARKS.md at the repo root.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use skiff_benches::compare::{self, CompareArgs};
use skiff_benches::workload::Target;
use skiff_benches::workload::consume::{self, ConsumeArgs};
use skiff_benches::workload::fleet::{self, FleetArgs};
use skiff_benches::workload::latency::{self, LatencyArgs};
use skiff_benches::workload::produce::{self, ProduceArgs};

/// Kafka benchmarks with a real client (librdkafka). Prints a summary on
/// stderr and one JSON line per run on stdout.
#[derive(Debug, Parser)]
#[command(name = "skiff-bench", version, about)]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Producer throughput.
    Produce(ProduceArgs),
    /// Produce-ack and end-to-end latency at a fixed rate.
    Latency(LatencyArgs),
    /// Consumer throughput reading a fresh backlog.
    Consume(ConsumeArgs),
    /// Consumer throughput reading a backlog that has left the WAL and cache.
    Catchup(ConsumeArgs),
    /// Vehicle fleet: V vehicles reporting every T seconds.
    Fleet(FleetArgs),
    /// Run a workload against Skiff and a peer broker, side by side.
    Compare(CompareArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.target.check_loopback() {
        eprintln!("skiff-bench: {e}");
        return ExitCode::from(2);
    }
    let t = &cli.target;
    let result = match &cli.cmd {
        Cmd::Produce(a) => produce::run(t, a),
        Cmd::Latency(a) => latency::run(t, a),
        Cmd::Consume(a) => consume::run(t, a, "consume"),
        Cmd::Catchup(a) => consume::run(t, a, "catchup"),
        Cmd::Fleet(a) => fleet::run(t, a),
        Cmd::Compare(a) => compare::run(a).map(|_| return_none()),
    };
    match result {
        Ok(mut r) => {
            if !r.workload.is_empty() {
                r.emit();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("skiff-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `compare` prints its own output; an empty report prints nothing.
fn return_none() -> skiff_benches::report::Report {
    skiff_benches::report::Report::default()
}
