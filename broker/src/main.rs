//! The `skiff` command.

use clap::Parser;

/// Skiff: a Kafka-compatible log broker whose data lives in object storage.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
