//! One complete test run: set the cluster up, run the workload while the
//! nemesis plays its schedule, heal, do the final read, check the history.
//!
//! Writes to the output directory:
//!
//! | file | content |
//! |---|---|
//! | `schedule.json` | the seeded fault schedule (and the options that made it) |
//! | `history.jsonl` | every operation, one JSON object per line |
//! | `report.json` | the checker's [`Report`] |
//! | `summary.txt` | the human summary printed at the end |
//! | `run.json` | the run's configuration, fault counts and setup notes |
//! | `broker-N.log`, `moto.log`, `broker-N/` | process logs and data dirs |
//!
//! The summary ends with what reached the object store (PUTs of objects and
//! of object-WAL segments, from moto's log), so a run shows whether its
//! object-store faults met the upload path.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::checker::{Report, check};
use crate::control::{CommandTemplate, StoreCounts};
use crate::history::Recorder;
use crate::nemesis::{self, FaultKind, Harness, HarnessConfig, Played, Schedule, ScheduleOptions};
use crate::workload::{self, Values, WorkloadConfig};

/// Everything a run needs.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    #[serde(with = "humantime_serde")]
    pub time: Duration,
    pub faults: Vec<FaultKind>,
    pub seed: u64,
    pub brokers: u32,
    pub out: PathBuf,
    pub bin: PathBuf,
    pub serve_args: String,
    /// Appended to `serve_args` when moto runs.
    pub s3_args: String,
    pub moto: Option<PathBuf>,
    /// Size of each broker's WAL tmpfs (only mounted when disk-full is on).
    pub wal_disk_bytes: u64,
    pub broker_env: Vec<(String, String)>,
    #[serde(with = "humantime_serde")]
    pub upload_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub gap: Duration,
    #[serde(with = "humantime_serde")]
    pub recovery: Duration,
    /// The broker's write-ahead log (`storage.wal.kind`; `object` needs moto).
    #[serde(default)]
    pub wal: WalMode,
    pub workload: WorkloadConfig,
}

/// Which WAL the brokers use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WalMode {
    /// The broker's default: segment files on local disk.
    #[default]
    File,
    /// Appends are PUT to the object store (through the fault proxy), so
    /// s3 faults hit produce latency and durability directly.
    Object,
}

impl RunConfig {
    /// The object-store arguments with the run's settings filled in:
    /// `{upload_interval}`, and the WAL kind.
    pub fn s3_args(&self) -> String {
        let mut args = self.s3_args.replace(
            "{upload_interval}",
            &format!("{}ms", self.upload_interval.as_millis().max(1)),
        );
        if self.wal == WalMode::Object {
            args.push_str(" --set storage.wal.kind=object");
        }
        args
    }
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub report: Report,
    pub played: Played,
    pub faults_scheduled: usize,
    pub notes: Vec<String>,
    pub final_read_complete: bool,
    /// What reached the object store (when moto ran).
    pub store: Option<StoreCounts>,
}

#[derive(Serialize)]
struct RunFile<'a> {
    config: &'a RunConfig,
    outcome: &'a RunOutcome,
}

/// The schedule a config produces (also used by `jepsen schedule`).
pub fn schedule_for(cfg: &RunConfig) -> Schedule {
    Schedule::generate(ScheduleOptions {
        seed: cfg.seed,
        time: cfg.time,
        faults: cfg.faults.clone(),
        brokers: cfg.brokers as usize,
        upload_interval: cfg.upload_interval,
        gap: cfg.gap,
        ..ScheduleOptions::default()
    })
}

/// Runs the whole test; `Err` means the harness itself failed (no verdict).
pub async fn run(cfg: &RunConfig) -> anyhow::Result<RunOutcome> {
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let schedule = schedule_for(cfg);
    println!("{}", schedule.render());
    write_json(&cfg.out.join("schedule.json"), &schedule)?;

    let hcfg = HarnessConfig {
        bin: cfg.bin.clone(),
        brokers: cfg.brokers,
        dir: cfg.out.clone(),
        template: CommandTemplate::parse(&cfg.serve_args),
        s3_args: cfg.s3_args(),
        moto: cfg.moto.clone(),
        bucket: "jepsen".into(),
        wal_disk: cfg
            .faults
            .contains(&FaultKind::DiskFull)
            .then_some(cfg.wal_disk_bytes),
        extra_env: cfg.broker_env.clone(),
        startup_timeout: Duration::from_secs(60),
    };
    let mut harness = Harness::start(&hcfg)
        .await
        .context("starting the cluster")?;
    for n in &harness.notes {
        println!("note: {n}");
    }
    let wcfg = Arc::new(WorkloadConfig {
        bootstrap: harness.bootstrap(),
        ..cfg.workload.clone()
    });
    workload::setup_topic(&wcfg, Duration::from_secs(60))
        .await
        .context("creating the topic")?;

    let rec = Recorder::to_file(&cfg.out.join("history.jsonl"))?;
    let stop = CancellationToken::new();
    let start = tokio::time::Instant::now();
    println!(
        "running {} with {} broker(s), bootstrap {}",
        humantime::format_duration(cfg.time),
        cfg.brokers,
        wcfg.bootstrap
    );
    // Cancelled when the time is up: clients finish their current op and stop.
    let workload_stop = stop.clone();
    let workload_task = {
        let (wcfg, rec) = (wcfg.clone(), rec.clone());
        tokio::spawn(
            async move { workload::run(wcfg, rec, Values::default(), workload_stop).await },
        )
    };
    let played = {
        let timer = async {
            tokio::select! {
                _ = tokio::time::sleep(cfg.time) => {}
                _ = tokio::signal::ctrl_c() => println!("interrupted: stopping early"),
            }
            stop.cancel();
        };
        let (played, ()) = tokio::join!(
            nemesis::play(&schedule, &mut harness, &rec, start, &stop),
            timer
        );
        played
    };
    workload_task.await.context("workload task")?;
    println!(
        "workload done; healed; waiting {} before the final read",
        humantime::format_duration(cfg.recovery)
    );
    tokio::time::sleep(cfg.recovery).await;
    let final_read_complete = workload::final_read(&wcfg, &rec).await;
    workload::headers::record_batch_headers(&wcfg, &rec).await;
    let history = rec.finish().context("writing history.jsonl")?;
    harness.cluster.stop_all(Duration::from_secs(10)).await?;

    let report = check(&history);
    write_json(&cfg.out.join("report.json"), &report)?;
    let outcome = RunOutcome {
        report,
        played,
        faults_scheduled: schedule.faults(),
        notes: harness.notes.clone(),
        final_read_complete,
        store: cfg
            .moto
            .is_some()
            .then(|| StoreCounts::from_log(&cfg.out.join("moto.log"), &hcfg.bucket)),
    };
    write_json(
        &cfg.out.join("run.json"),
        &RunFile {
            config: cfg,
            outcome: &outcome,
        },
    )?;
    Ok(outcome)
}

/// The summary printed at the end of a run.
pub fn summary(cfg: &RunConfig, outcome: &RunOutcome) -> String {
    let mut s = format!(
        "seed {} | {} | brokers {} | faults {:?}: {} injected; nemesis actions {} applied, {} failed\n",
        cfg.seed,
        humantime::format_duration(cfg.time),
        cfg.brokers,
        cfg.faults,
        outcome.faults_scheduled,
        outcome.played.applied,
        outcome.played.failed
    );
    for n in &outcome.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s.push_str(&outcome.report.summary(10));
    if let Some(store) = &outcome.store {
        s.push_str(&store.render());
        s.push('\n');
    }
    s.push_str(&format!(
        "verdict: {}\nresults in {}\n",
        if outcome.report.valid {
            "VALID"
        } else {
            "INVALID"
        },
        cfg.out.display()
    ));
    s
}

fn write_json(path: &std::path::Path, value: &impl Serialize) -> anyhow::Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    serde_json::to_writer_pretty(std::io::BufWriter::new(f), value)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{DEFAULT_S3_ARGS, DEFAULT_SERVE_ARGS};

    fn cfg(wal: WalMode) -> RunConfig {
        RunConfig {
            time: Duration::from_secs(1),
            faults: vec![],
            seed: 1,
            brokers: 1,
            out: PathBuf::from("/tmp/x"),
            bin: PathBuf::from("skiff"),
            serve_args: DEFAULT_SERVE_ARGS.into(),
            s3_args: DEFAULT_S3_ARGS.into(),
            moto: None,
            wal_disk_bytes: 1 << 20,
            broker_env: vec![],
            upload_interval: Duration::from_millis(500),
            gap: Duration::from_secs(1),
            recovery: Duration::from_secs(1),
            wal,
            workload: WorkloadConfig::default(),
        }
    }

    #[test]
    fn s3_args_carry_the_upload_interval_and_the_wal_kind() {
        let file = cfg(WalMode::File).s3_args();
        assert!(file.contains("storage.upload.interval=500ms"), "{file}");
        assert!(!file.contains("{upload_interval}"), "{file}");
        assert!(!file.contains("storage.wal.kind"), "{file}");
        let object = cfg(WalMode::Object).s3_args();
        assert!(
            object.ends_with("--set storage.wal.kind=object"),
            "{object}"
        );
    }
}
