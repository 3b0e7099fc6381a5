//! `skiff admin`: cluster administration over the Kafka protocol.
//!
//! Human-readable output by default, `--output json` for scripts. Exit codes:
//! 0 success, 1 the broker answered with an error, 2 bad arguments, 3 the
//! broker could not be reached.

mod client;
mod groups;
mod topics;
mod transactions;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

pub use client::{AdminClient, ClientError};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// A broker to talk to (any broker of the cluster).
    #[arg(
        long,
        short = 'b',
        default_value = "localhost:9092",
        env = "SKIFF_BOOTSTRAP_SERVER",
        global = true
    )]
    pub bootstrap_server: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "human", global = true)]
    pub output: Output,
    /// How long to wait for the broker.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create, list, describe, reconfigure, grow and delete topics.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// List, describe (with lag), reset offsets of and delete consumer groups.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// List and describe transactions; abort a hanging one on a partition.
    #[command(subcommand)]
    Transactions(transactions::TransactionsCommand),
}

/// What a command failed with, and the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Kafka(String),
    #[error("{0}")]
    Usage(String),
}

impl AdminError {
    fn exit_code(&self) -> ExitCode {
        match self {
            AdminError::Kafka(_) => ExitCode::from(1),
            AdminError::Usage(_) => ExitCode::from(2),
            AdminError::Client(_) => ExitCode::from(3),
        }
    }
}

/// Run an admin command to completion.
pub fn run(args: AdminArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skiff admin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match args.command {
            AdminCommand::Topics(cmd) => {
                topics::run(&args.bootstrap_server, args.timeout, args.output, cmd).await
            }
            AdminCommand::Groups(cmd) => {
                groups::run(&args.bootstrap_server, args.timeout, args.output, cmd).await
            }
            AdminCommand::Transactions(cmd) => {
                transactions::run(&args.bootstrap_server, args.timeout, args.output, cmd).await
            }
        }
    });
    match result {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("skiff admin: {e}");
            e.exit_code()
        }
    }
}

/// A protocol string.
fn s(v: &str) -> skiff_wire::kafka_protocol::protocol::StrBytes {
    skiff_wire::kafka_protocol::protocol::StrBytes::from_string(v.to_string())
}

/// The broker answered with something else than the request's response.
fn unexpected() -> AdminError {
    AdminError::Kafka("unexpected answer".into())
}

/// `what` failed with Kafka error `code`.
fn failed(what: &str, code: i16) -> AdminError {
    AdminError::Kafka(format!("{what}: {}", error_name(code)))
}

/// Kafka's name for an error code.
fn error_name(code: i16) -> String {
    crate::errors::code_name(code)
}

/// Render rows as an aligned text table.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_aligns_columns() {
        let t = super::table(
            &["TOPIC", "PARTITIONS"],
            &[
                vec!["a".into(), "1".into()],
                vec!["vehicle.reports".into(), "12".into()],
            ],
        );
        assert_eq!(
            t,
            "TOPIC            PARTITIONS\na                1\nvehicle.reports  12"
        );
    }
}
