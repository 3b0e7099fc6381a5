//! The whole `jepsen run` pipeline (harness, proxies, nemesis, workload,
//! final read, checker) against the `jepsen-mock-broker` binary, an in-memory
//! stand-in broker. Pause faults leave it correct; kill -9 makes it forget
//! everything, and the checker must report lost writes.

use std::path::PathBuf;
use std::time::Duration;

use skiff_jepsen::checker::AnomalyKind;
use skiff_jepsen::control::{DEFAULT_S3_ARGS, DEFAULT_SERVE_ARGS};
use skiff_jepsen::nemesis::FaultKind;
use skiff_jepsen::run::{RunConfig, WalMode, run, summary};
use skiff_jepsen::workload::WorkloadConfig;

fn mock_broker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jepsen-mock-broker"))
}

fn config(out: PathBuf, faults: Vec<FaultKind>) -> RunConfig {
    RunConfig {
        time: Duration::from_secs(15),
        faults,
        seed: 3,
        brokers: 1,
        out,
        bin: mock_broker(),
        serve_args: DEFAULT_SERVE_ARGS.into(),
        s3_args: std::env::var("SKIFF_S3_ARGS").unwrap_or_else(|_| DEFAULT_S3_ARGS.into()),
        moto: None,
        wal_disk_bytes: 8 << 20,
        broker_env: Vec::new(),
        upload_interval: Duration::from_secs(1),
        gap: Duration::from_secs(1),
        recovery: Duration::from_secs(2),
        wal: WalMode::File,
        workload: WorkloadConfig {
            partitions: 4,
            rate: 200.0,
            send_timeout: Duration::from_secs(3),
            final_read_timeout: Duration::from_secs(30),
            ..WorkloadConfig::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pauses_of_a_correct_broker_give_a_valid_history() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path().join("pause"), vec![FaultKind::Pause]);
    let outcome = run(&cfg).await.expect("harness runs");
    let text = summary(&cfg, &outcome);
    println!("{text}");
    assert!(outcome.played.applied >= 4, "{text}");
    assert!(outcome.report.counts.sends_ok > 100, "{text}");
    assert!(outcome.report.valid, "{text}");
    for f in [
        "history.jsonl",
        "report.json",
        "schedule.json",
        "run.json",
        "broker-0.log",
    ] {
        assert!(cfg.out.join(f).is_file(), "{f} written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_of_a_forgetful_broker_is_reported_as_lost_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path().join("kill"), vec![FaultKind::Kill]);
    let outcome = run(&cfg).await.expect("harness runs");
    let text = summary(&cfg, &outcome);
    println!("{text}");
    assert!(outcome.played.applied >= 2, "{text}");
    let lost = outcome
        .report
        .anomaly_counts
        .get(&AnomalyKind::Lost)
        .copied()
        .unwrap_or(0);
    assert!(lost > 0, "{text}");
}
