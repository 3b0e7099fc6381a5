//! End to end: the real `skiff` broker under faults, a real Kafka client, the
//! checker's verdict. Runs only when `SKIFF_BIN` is a binary that has a
//! `serve` command (fails when it is missing and `SKIFF_REQUIRE_EXTERNAL=1`).
//! The two tests run side by side (about two minutes in all):
//!
//! * a short run (~110 s, about three dozen faults: kill -9, pause, s3
//!   errors, latency and black-holes; idempotent, plain and transactional
//!   producers, read_committed consumers) must give a valid history, with
//!   the batch headers of every stored record read, and
//!   the broker must have uploaded objects through the faulty store;
//! * the planted fault: a broker that acknowledges produce requests from
//!   memory (`unsafe_ack_before_fsync`) and holds its WAL writes back for up
//!   to a second (`storage.wal.group_commit_max_delay=1s`) is killed -9
//!   every few seconds for ~40 s; the checker must report lost writes.
//!
//! Knobs: `SKIFF_JEPSEN_TIME` (default 110s), `SKIFF_JEPSEN_PLANTED_TIME`
//! (default 40s), `SKIFF_JEPSEN_SEED` (default 1), `SKIFF_JEPSEN_OUT` (keep
//! the results there instead of a temp dir), `SKIFF_JEPSEN_PLANTED=0` to
//! skip the planted run.

use std::path::PathBuf;
use std::time::Duration;

use skiff_jepsen::checker::AnomalyKind;
use skiff_jepsen::control::{DEFAULT_S3_ARGS, DEFAULT_SERVE_ARGS};
use skiff_jepsen::nemesis::FaultKind;
use skiff_jepsen::run::{RunConfig, WalMode, run, summary};
use skiff_jepsen::workload::{Idempotence, WorkloadConfig};

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

fn env_duration(key: &str, default: Duration) -> Duration {
    std::env::var(key)
        .ok()
        .and_then(|t| humantime::parse_duration(&t).ok())
        .unwrap_or(default)
}

fn config(bin: PathBuf, name: &str, out: &tempfile::TempDir) -> RunConfig {
    let time = env_duration("SKIFF_JEPSEN_TIME", Duration::from_secs(110));
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
            FaultKind::S3Blackhole,
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
        upload_interval: Duration::from_millis(500),
        gap: Duration::from_millis(1000),
        recovery: Duration::from_secs(5),
        wal: WalMode::File,
        workload: WorkloadConfig {
            rate: 150.0,
            // Idempotent and plain producers, one transactional client,
            // read_committed consumers. A value an idempotent client
            // re-sent under a new producer epoch (librdkafka after a
            // message timeout) is reported as `resent`, not a duplicate:
            // the stored batch headers show two epochs.
            idempotence: Idempotence::Mixed,
            txn_producers: 1,
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
    if cfg.time >= Duration::from_secs(100) {
        assert!(outcome.faults_scheduled >= 24, "too few faults:\n{text}");
    }
    assert!(
        outcome.played.failed == 0,
        "a fault failed to apply:\n{text}"
    );
    assert!(outcome.final_read_complete, "{text}");
    assert!(
        c.headers >= c.sends_ok,
        "the batch headers of the stored records were not read:\n{text}"
    );
    assert!(outcome.report.valid, "{text}");
    if let Some(store) = &outcome.store {
        // The broker seals every 500 ms or 16 KiB: the faults met uploads.
        assert!(
            store.object_puts >= 20,
            "the upload path was hardly exercised:\n{text}"
        );
    }
}

/// With a broker that acknowledges from memory and holds its WAL writes
/// back, kill -9 must lose acknowledged writes, and the checker must say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn planted_ack_before_wal_write_is_caught_as_lost_writes() {
    if std::env::var("SKIFF_JEPSEN_PLANTED").as_deref() == Ok("0") {
        eprintln!("skipping: SKIFF_JEPSEN_PLANTED=0");
        return;
    }
    let Some(bin) = broker() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(bin, "planted", &tmp);
    cfg.time = env_duration("SKIFF_JEPSEN_PLANTED_TIME", Duration::from_secs(40));
    cfg.faults = vec![FaultKind::Kill];
    cfg.moto = None; // the local store is enough to lose WAL data
    cfg.serve_args.push_str(
        " --set unsafe_ack_before_fsync=true --set storage.wal.group_commit_max_delay=1s",
    );
    let outcome = run(&cfg).await.expect("harness runs");
    let text = summary(&cfg, &outcome);
    println!("{text}");
    assert!(outcome.played.applied >= 4, "too few kills:\n{text}");
    assert!(
        outcome
            .report
            .anomaly_counts
            .get(&AnomalyKind::Lost)
            .copied()
            .unwrap_or(0)
            > 0,
        "kill -9 of a broker acknowledging from memory lost nothing:\n{text}"
    );
}
