//! The `jepsen` command: run a fault-injection test against Skiff, re-check a
//! saved history, or print a fault schedule.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use skiff_jepsen::checker::check;
use skiff_jepsen::control::{DEFAULT_S3_ARGS, DEFAULT_SERVE_ARGS};
use skiff_jepsen::history::read_history;
use skiff_jepsen::nemesis::FaultKind;
use skiff_jepsen::run::{RunConfig, WalMode, run, schedule_for, summary};
use skiff_jepsen::workload::{ConsumerMode, Idempotence, WorkloadConfig};

/// Fault-injection tests for Skiff with a history checker.
///
/// `jepsen run` starts N `skiff serve` brokers (each with its own data dir,
/// port and log), moto's S3 server behind a fault-injecting proxy, a proxy in
/// front of each broker, and a real Kafka client workload (librdkafka). While
/// the workload runs, a seeded nemesis kills, pauses and starves the brokers.
/// Afterwards every partition is read from the beginning and the history is
/// checked for lost, duplicated, reordered and aborted reads.
///
/// Exit codes: 0 no anomaly, 1 anomalies found, 2 the harness failed.
#[derive(Debug, Parser)]
#[command(name = "jepsen", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a test: cluster, workload, faults, final read, check.
    ///
    /// Example: jepsen run --time 60 --faults kill,pause,s3-errors --seed 42 --out /tmp/j1
    Run(Box<RunArgs>),
    /// Check a saved history.jsonl again (e.g. after changing the checker).
    Check {
        /// The history file written by `jepsen run`.
        history: PathBuf,
        /// Where to write the report (default: next to the history).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print the report as JSON instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Print the fault schedule a seed produces, without running anything.
    Schedule(ScheduleArgs),
}

#[derive(Debug, Args)]
struct ScheduleArgs {
    /// How long the workload runs, e.g. 60s, 30m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    time: Duration,
    /// Faults to inject, comma-separated; `all` for every kind, `none` for
    /// a fault-free run.
    #[arg(long, default_value = "kill,pause,s3-errors", value_parser = parse_faults)]
    faults: FaultList,
    /// Seed of the fault schedule (and nothing else); printed, so a run
    /// can be repeated. Default: random.
    #[arg(long)]
    seed: Option<u64>,
    /// Number of brokers.
    #[arg(long, default_value_t = 1)]
    brokers: u32,
    /// The broker's object-store upload interval (passed to it as
    /// storage.upload.interval by the default --s3-args); s3 black-holes
    /// last at least three times this.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    upload_interval: Duration,
    /// Mean quiet time between faults.
    #[arg(long, default_value = "1500ms", value_parser = humantime::parse_duration)]
    gap: Duration,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Output directory for history, report, schedule and logs.
    /// Default: jepsen-out/<seed>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The skiff binary.
    #[arg(long, env = "SKIFF_BIN", default_value = "target/release/skiff")]
    bin: PathBuf,
    /// Broker arguments; placeholders {id} {node_id} {port} {http_port}
    /// {advertised_host} {advertised_port} {raft_port} {data_dir} {wal_dir}
    /// {peers} {s3_endpoint} {bucket} are filled per broker. Inherited
    /// SKIFF_* variables are not passed to brokers (they read SKIFF_<KEY>
    /// as configuration); use --broker-env.
    #[arg(long, env = "SKIFF_SERVE_ARGS", default_value = DEFAULT_SERVE_ARGS)]
    serve_args: String,
    /// Appended to the broker arguments when moto runs: points the broker's
    /// object store at moto through the fault proxy.
    #[arg(long, env = "SKIFF_S3_ARGS", default_value = DEFAULT_S3_ARGS)]
    s3_args: String,
    /// moto's S3 server; brokers get its address (through the fault proxy)
    /// as {s3_endpoint}.
    #[arg(long, env = "SKIFF_MOTO_SERVER")]
    moto: Option<PathBuf>,
    /// Do not start moto even if SKIFF_MOTO_SERVER is set (the broker uses
    /// its default store; s3-* faults then fail to apply).
    #[arg(long)]
    no_moto: bool,
    /// Extra environment for brokers, KEY=VALUE, repeatable.
    #[arg(long = "broker-env", value_parser = parse_kv)]
    broker_env: Vec<(String, String)>,
    /// Broker configuration, KEY=VALUE, repeatable: appended to the serve
    /// arguments as `--set KEY=VALUE`. The planted fault:
    /// `--broker-set unsafe_ack_before_fsync=true --broker-set
    /// storage.wal.group_commit_max_delay=1s`.
    #[arg(long = "broker-set", value_parser = parse_kv)]
    broker_set: Vec<(String, String)>,
    /// The brokers' WAL: `file` (local segments) or `object` (appends PUT
    /// to the object store through the fault proxy; needs moto).
    #[arg(long, value_enum, default_value = "file")]
    wal: WalMode,
    /// Size of the tmpfs under each WAL dir when disk-full is on.
    #[arg(long, default_value_t = 64)]
    wal_disk_mib: u64,
    /// Pause between healing and the final read.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    recovery: Duration,
    /// Topic partitions.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Producer clients.
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Concurrent sends per producer client.
    #[arg(long, default_value_t = 3)]
    concurrency: usize,
    #[arg(long, value_enum, default_value = "mixed")]
    idempotence: Idempotence,
    /// Transactional producer clients (begin/send/commit or abort batches),
    /// besides --producers; needs a broker with transactions.
    #[arg(long, default_value_t = 0)]
    txn_producers: usize,
    /// Consumer clients.
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    #[arg(long, value_enum, default_value = "mixed")]
    consumer_mode: ConsumerMode,
    /// Consumers read with isolation.level=read_uncommitted.
    #[arg(long)]
    read_uncommitted: bool,
    /// Target sends per second, all producers together (0: unthrottled).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Print the outcome as JSON instead of the summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone)]
struct FaultList(Vec<FaultKind>);

fn parse_faults(s: &str) -> Result<FaultList, String> {
    use clap::ValueEnum;
    match s {
        "all" => return Ok(FaultList(FaultKind::ALL.to_vec())),
        "none" | "" => return Ok(FaultList(Vec::new())),
        _ => {}
    }
    s.split(',')
        .map(|f| FaultKind::from_str(f.trim(), true))
        .collect::<Result<Vec<_>, _>>()
        .map(FaultList)
        .map_err(|e| format!("{e}; kinds: kill, pause, s3-errors, s3-latency, s3-blackhole, disk-full, net, all, none"))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn seed(s: Option<u64>) -> u64 {
    s.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            % 1_000_000
    })
}

fn run_config(a: RunArgs) -> RunConfig {
    let seed = seed(a.schedule.seed);
    RunConfig {
        time: a.schedule.time,
        faults: a.schedule.faults.0,
        seed,
        brokers: a.schedule.brokers.max(1),
        out: a
            .out
            .unwrap_or_else(|| PathBuf::from(format!("jepsen-out/{seed}"))),
        bin: a.bin,
        serve_args: a
            .broker_set
            .iter()
            .fold(a.serve_args, |args, (k, v)| format!("{args} --set {k}={v}")),
        s3_args: a.s3_args,
        moto: if a.no_moto { None } else { a.moto },
        wal_disk_bytes: a.wal_disk_mib * 1024 * 1024,
        broker_env: a.broker_env,
        upload_interval: a.schedule.upload_interval,
        gap: a.schedule.gap,
        recovery: a.recovery,
        wal: a.wal,
        workload: WorkloadConfig {
            partitions: a.partitions,
            producers: a.producers,
            producer_concurrency: a.concurrency,
            idempotence: a.idempotence,
            txn_producers: a.txn_producers,
            consumers: a.consumers,
            consumer_mode: a.consumer_mode,
            read_committed: !a.read_uncommitted,
            rate: a.rate,
            ..WorkloadConfig::default()
        },
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // librdkafka logs every refused connection while a broker is
            // down; set RUST_LOG=info to see them and the nemesis actions.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,librdkafka=off,rdkafka=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Run(args) => {
            let json = args.json;
            let cfg = run_config(*args);
            // librdkafka calls block now and then; keep enough workers.
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(8)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: tokio runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            let res = rt.block_on(run(&cfg));
            rt.shutdown_timeout(Duration::from_secs(5));
            match res {
                Ok(outcome) => {
                    let text = summary(&cfg, &outcome);
                    let _ = std::fs::write(cfg.out.join("summary.txt"), &text);
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&outcome).unwrap_or_default()
                        );
                    } else {
                        print!("{text}");
                    }
                    ExitCode::from(if outcome.report.valid { 0 } else { 1 })
                }
                Err(e) => {
                    eprintln!(
                        "error: {e:#}\n(logs and partial results in {})",
                        cfg.out.display()
                    );
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Check {
            history,
            report,
            json,
        } => {
            let ops = match read_history(&history) {
                Ok(ops) => ops,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let r = check(&ops);
            let path = report.unwrap_or_else(|| history.with_file_name("report.json"));
            if let Err(e) = std::fs::write(&path, serde_json::to_vec_pretty(&r).unwrap_or_default())
            {
                eprintln!("error: writing {}: {e}", path.display());
                return ExitCode::from(2);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{}", r.summary(10));
            }
            ExitCode::from(if r.valid { 0 } else { 1 })
        }
        Cmd::Schedule(a) => {
            let cfg = run_config(RunArgs {
                schedule: a,
                ..RunArgs::parse_from_defaults()
            });
            print!("{}", schedule_for(&cfg).render());
            ExitCode::SUCCESS
        }
    }
}

impl RunArgs {
    /// Defaults for the fields `jepsen schedule` does not take.
    fn parse_from_defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            run: RunArgs,
        }
        Only::parse_from(["jepsen"]).run
    }
}
