//! End to end: the real `skiff` broker under faults, a real Kafka client, the
//! checker's verdict. Runs only when `SKIFF_BIN` is a binary that has a
//! `serve` command (fails when it is missing and `SKIFF_REQUIRE_EXTERNAL=1`).
//!
//! Knobs: `SKIFF_JEPSEN_TIME` (default 90s), `SKIFF_JEPSEN_SEED` (default 1),
//! `SKIFF_JEPSEN_OUT` (keep the results there instead of a temp dir),
//! `SKIFF_JEPSEN_PLANTED=1` to also run the planted-loss check, which needs a
//! broker honouring `SKIFF_UNSAFE_ACK_BEFORE_FSYNC=true`.

use std::path::PathBuf;
use std::time::Duration;

use skiff_jepsen::checker::AnomalyKind;
use skiff_jepsen::control::{DEFAULT_S3_ARGS, DEFAULT_SERVE_ARGS};
use skiff_jepsen::nemesis::FaultKind;
use skiff_jepsen::run::{RunConfig, run, summary};
use skiff_jepsen::workload::WorkloadConfig;

/// The broker binary, if it exists and supports `serve`.
fn broker() -> Option<PathBuf> {
    let bin = skiff_jepsen::external_tool("SKIFF_BIN")?;
    let serves = std::process::Command::new(&bin)
        .args(["serve", "--help"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !serves {
        eprintln!("skipping: {} has no `serve` command yet", bin.display());
        return None;
    }
    Some(bin)
}

fn config(bin: PathBuf, name: &str, out: &tempfile::TempDir) -> RunConfig {
    let time = std::env::var("SKIFF_JEPSEN_TIME")
        .ok()
        .and_then(|t| humantime::parse_duration(&t).ok())
        .unwrap_or(Duration::from_secs(90));
    let seed = std::env::var("SKIFF_JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let out = std::env::var_os("SKIFF_JEPSEN_OUT")
        .map(|d| PathBuf::from(d).join(name))
        .unwrap_or_else(|| out.path().join(name));
    RunConfig {
        time,
        faults: vec![
            FaultKind::Kill,
            FaultKind::Pause,
            FaultKind::S3Errors,
            FaultKind::S3Latency,
        ],
        seed,
        brokers: 1,
        out,
        bin,
        serve_args: std::env::var("SKIFF_SERVE_ARGS").unwrap_or_else(|_| DEFAULT_SERVE_ARGS.into()),
        s3_args: std::env::var("SKIFF_S3_ARGS").unwrap_or_else(|_| DEFAULT_S3_ARGS.into()),
        moto: std::env::var_os("SKIFF_MOTO_SERVER")
            .map(PathBuf::from)
            .filter(|p| p.is_file()),
        wal_disk_bytes: 64 << 20,
        broker_env: Vec::new(),
        upload_interval: Duration::from_secs(1),
        gap: Duration::from_millis(1500),
        recovery: Duration::from_secs(5),
        workload: WorkloadConfig {
            rate: 150.0,
            ..WorkloadConfig::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_run_under_faults_has_no_anomalies() {
    let Some(bin) = broker() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(bin, "short", &tmp);
    let outcome = run(&cfg).await.expect("harness runs");
    let text = summary(&cfg, &outcome);
    println!("{text}");
    let c = &outcome.report.counts;
    assert!(
        c.sends_ok > 100,
        "too few acked sends to mean anything:\n{text}"
    );
    assert!(outcome.played.applied >= 10, "too few faults:\n{text}");
    assert!(outcome.final_read_complete, "{text}");
    assert!(outcome.report.valid, "{text}");
}

/// With a broker that acknowledges before its WAL fsync, kill -9 must lose
/// acknowledged writes, and the checker must say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn planted_ack_before_fsync_is_caught_as_lost_writes() {
    if std::env::var("SKIFF_JEPSEN_PLANTED").as_deref() != Ok("1") {
        eprintln!(
            "skipping: set SKIFF_JEPSEN_PLANTED=1 with a broker honouring SKIFF_UNSAFE_ACK_BEFORE_FSYNC"
        );
        return;
    }
    let Some(bin) = broker() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(bin, "planted", &tmp);
    cfg.faults = vec![FaultKind::Kill];
    // The broker reads SKIFF_<KEY> as config key `unsafe_ack_before_fsync`.
    cfg.broker_env = vec![("SKIFF_UNSAFE_ACK_BEFORE_FSYNC".into(), "true".into())];
    let outcome = run(&cfg).await.expect("harness runs");
    let text = summary(&cfg, &outcome);
    println!("{text}");
    assert!(
        outcome
            .report
            .anomaly_counts
            .get(&AnomalyKind::Lost)
            .copied()
            .unwrap_or(0)
            > 0,
        "{text}"
    );
}
