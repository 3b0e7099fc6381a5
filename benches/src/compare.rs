//! The side-by-side runner: starts Skiff and a peer broker (tansu, with its
//! in-memory and SQLite engines) one at a time on free loopback ports, each
//! with its own fresh data directory, runs the same `skiff-bench` workload
//! against each in turn (alternating, for `--rounds` rounds), and prints
//! every figure per broker with Skiff's ratio to each peer.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use crate::client::wait_ready;
use crate::report::{Report, fmt_num};

/// `compare` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The `skiff` binary (a release build).
    #[arg(long, env = "SKIFF_BIN")]
    pub skiff_bin: PathBuf,
    /// A second `skiff` binary (say, a build of main before a change), run
    /// as a peer labelled `skiff-base` with the same `--skiff-set`s.
    #[arg(long, env = "SKIFF_BASE_BIN")]
    pub skiff_base_bin: Option<PathBuf>,
    /// The `tansu` binary; without it only Skiff runs.
    #[arg(long, env = "TANSU_BIN")]
    pub tansu_bin: Option<PathBuf>,
    /// Peer engines to run: `memory`, `sqlite` (comma-separated).
    #[arg(long, default_value = "memory,sqlite", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Rounds; each round runs every broker once, Skiff first.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Extra `--set KEY=VALUE` for `skiff serve` (repeatable).
    #[arg(long = "skiff-set", value_name = "KEY=VALUE")]
    pub skiff_sets: Vec<String>,
    /// For a `catchup` workload: write the backlog, restart the broker
    /// (engines that keep data), then read it back cold.
    #[arg(long)]
    pub restart_before_read: bool,
    /// Where the brokers' data directories and logs go.
    #[arg(long, default_value = "/tmp/skiff-bench-compare")]
    pub work_dir: PathBuf,
    /// The workload and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub workload: Vec<String>,
}

/// A broker the runner can start.
#[derive(Debug, Clone)]
enum Engine {
    Skiff,
    SkiffBase,
    Tansu(String),
}

impl Engine {
    fn label(&self) -> String {
        match self {
            Engine::Skiff => "skiff".into(),
            Engine::SkiffBase => "skiff-base".into(),
            Engine::Tansu(e) => format!("tansu-{e}"),
        }
    }
}

/// A running broker, killed on drop.
#[derive(Debug)]
struct Broker {
    child: Child,
    bootstrap: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start(args: &CompareArgs, engine: &Engine, dir: &Path, port: u16) -> anyhow::Result<Broker> {
    let addr = format!("127.0.0.1:{port}");
    let log = File::options()
        .create(true)
        .append(true)
        .open(dir.join("broker.log"))
        .context("opening the broker log")?;
    let mut cmd = match engine {
        Engine::Skiff | Engine::SkiffBase => {
            let bin = match engine {
                Engine::SkiffBase => args
                    .skiff_base_bin
                    .as_ref()
                    .ok_or_else(|| anyhow!("no --skiff-base-bin"))?,
                _ => &args.skiff_bin,
            };
            let mut c = Command::new(bin);
            // `skiff serve` reads every SKIFF_* variable as configuration and
            // refuses unknown keys, so SKIFF_BIN and SKIFF_BASE_BIN must go.
            c.env_remove("SKIFF_BIN").env_remove("SKIFF_BASE_BIN");
            c.arg("serve")
                .args(["--listen", &addr, "--http-listen", ""])
                .arg("--data-dir")
                .arg(dir.join("data"));
            for s in &args.skiff_sets {
                c.args(["--set", s]);
            }
            c
        }
        Engine::Tansu(e) => {
            let bin = args
                .tansu_bin
                .as_ref()
                .ok_or_else(|| anyhow!("no --tansu-bin"))?;
            let storage = match e.as_str() {
                "memory" => "memory://tansu/".to_string(),
                // tansu resolves sqlite:// paths against its working
                // directory (sqlite:///tmp/x opens ./tmp/x), so it runs in `dir`.
                "sqlite" => "sqlite://tansu.db".to_string(),
                other => bail!("unknown tansu engine {other}"),
            };
            let mut c = Command::new(bin);
            let url = format!("tcp://{addr}");
            c.current_dir(dir)
                .arg("broker")
                .args(["--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", &storage]);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", engine.label()))?;
    let broker = Broker {
        child,
        bootstrap: addr,
    };
    wait_ready(&broker.bootstrap, Duration::from_secs(60))?;
    Ok(broker)
}

/// Runs one `skiff-bench` workload against `broker` in a child process.
fn run_workload(broker: &Broker, label: &str, workload: &[String]) -> anyhow::Result<Report> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(workload)
        .args(["--bootstrap", &broker.bootstrap, "--label", label])
        .args(["--broker-pid", &broker.child.id().to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("running the workload")?;
    if !out.status.success() {
        bail!("workload against {label} failed: {}", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow!("no report from the workload against {label}"))?;
    Ok(serde_json::from_str(line)?)
}

fn run_engine(args: &CompareArgs, engine: &Engine, round: usize) -> anyhow::Result<Report> {
    let label = engine.label();
    let dir = args
        .work_dir
        .join(format!("{label}-{round}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let broker = start(args, engine, &dir, port)?;
    let keeps_data = !matches!(engine, Engine::Tansu(e) if e == "memory");
    let is_catchup = args.workload.first().is_some_and(|w| w == "catchup");
    let result = if args.restart_before_read && is_catchup && keeps_data {
        let mut first = args.workload.clone();
        first.push("--produce-only".into());
        let written = run_workload(&broker, &label, &first)?;
        let topic = written
            .params
            .get("topic")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string();
        drop(broker);
        let broker = start(args, engine, &dir, port)?;
        let mut second = args.workload.clone();
        second.extend(["--topic".into(), topic]);
        let mut r = run_workload(&broker, &label, &second)?;
        r.figures.extend(written.figures);
        r.param("restarted_before_read", true);
        r
    } else {
        run_workload(&broker, &label, &args.workload)?
    };
    let _ = std::fs::remove_dir_all(dir.join("data"));
    let _ = std::fs::remove_file(dir.join("tansu.db"));
    Ok(result)
}

/// Runs the comparison and prints the table; returns every run's report.
pub fn run(args: &CompareArgs) -> anyhow::Result<Vec<Report>> {
    let mut engines = vec![Engine::Skiff];
    if args.skiff_base_bin.is_some() {
        engines.push(Engine::SkiffBase);
    }
    if args.tansu_bin.is_some() {
        engines.extend(args.peers.iter().map(|p| Engine::Tansu(p.clone())));
    } else {
        eprintln!("no --tansu-bin / TANSU_BIN: running Skiff alone");
    }
    let mut reports = Vec::new();
    for round in 0..args.rounds.max(1) {
        for engine in &engines {
            eprintln!(
                "-- round {} of {}: {}",
                round + 1,
                args.rounds,
                engine.label()
            );
            match run_engine(args, engine, round) {
                Ok(r) => {
                    println!("{}", serde_json::to_string(&r)?);
                    reports.push(r);
                }
                Err(e) => eprintln!("{}: {e:#}", engine.label()),
            }
        }
    }
    print_table(&reports);
    Ok(reports)
}

/// Mean of each figure per label.
fn means(reports: &[Report]) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut sums: BTreeMap<String, BTreeMap<String, (f64, usize)>> = BTreeMap::new();
    for r in reports {
        let per = sums.entry(r.label.clone()).or_default();
        for (k, v) in &r.figures {
            let e = per.entry(k.clone()).or_insert((0.0, 0));
            e.0 += v;
            e.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(l, f)| {
            (
                l,
                f.into_iter().map(|(k, (s, n))| (k, s / n as f64)).collect(),
            )
        })
        .collect()
}

fn print_table(reports: &[Report]) {
    let m = means(reports);
    let Some(skiff) = m.get("skiff") else {
        eprintln!("no Skiff result to compare");
        return;
    };
    let peers: Vec<&String> = m.keys().filter(|l| *l != "skiff").collect();
    let mut header = format!("{:<28} {:>12}", "figure (mean)", "skiff");
    for p in &peers {
        header.push_str(&format!(" {:>14} {:>10}", p, "skiff/peer"));
    }
    eprintln!("{header}");
    for (k, v) in skiff {
        let mut line = format!("{k:<28} {:>12}", fmt_num(*v));
        for p in &peers {
            match m[*p].get(k) {
                Some(pv) => {
                    let ratio = if *pv != 0.0 {
                        fmt_num(v / pv)
                    } else {
                        "-".into()
                    };
                    line.push_str(&format!(" {:>14} {:>10}", fmt_num(*pv), ratio));
                }
                None => line.push_str(&format!(" {:>14} {:>10}", "-", "-")),
            }
        }
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_average_rounds_per_label() {
        let mut a = Report::new("produce", "skiff");
        a.figure("x", 2.0);
        let mut b = Report::new("produce", "skiff");
        b.figure("x", 4.0);
        let mut c = Report::new("produce", "tansu-memory");
        c.figure("x", 1.0);
        let m = means(&[a, b, c]);
        assert_eq!(m["skiff"]["x"], 3.0);
        assert_eq!(m["tansu-memory"]["x"], 1.0);
    }
}
