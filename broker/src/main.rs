//! The `skiff` command: `skiff serve` runs a broker; `skiff admin` manages a
//! cluster over the Kafka protocol.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use skiff_broker::admin::AdminArgs;
use skiff_broker::config::{BrokerConfig, ConfigSources};

/// Skiff: a Kafka-compatible log broker whose data lives in object storage.
///
/// Start a single-node broker with `skiff serve` (data under ./skiff-data,
/// Kafka listener on localhost:9092), then point any Kafka client at it.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a broker. With no flags: a complete single-node cluster with a
    /// file WAL and objects on the local disk under ./skiff-data.
    ///
    /// Every setting can come from a TOML file (--config), an environment
    /// variable (SKIFF_<KEY>, sections joined with a double underscore, e.g.
    /// SKIFF_STORAGE__UPLOAD__INTERVAL=100ms) or --set KEY=VALUE (e.g.
    /// --set storage.upload.interval=100ms), in rising precedence. The keys
    /// are listed in docs/config.md.
    Serve(ServeArgs),
    /// Administer a cluster through the Kafka protocol (works against any
    /// broker, local or remote).
    Admin(AdminArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Kafka listener address (key `listen`; default localhost:9092).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address advertised to clients (key `advertised_listener`; default: --listen).
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// HTTP address for /metrics, /healthz, /readyz (key `http_listen`;
    /// default localhost:9644; empty to disable).
    #[arg(long, value_name = "HOST:PORT")]
    http_listen: Option<String>,
    /// Data directory for the WAL, metadata and local objects (key `data_dir`;
    /// default ./skiff-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This broker's id (key `node_id`; default 1).
    #[arg(long, value_name = "ID")]
    node_id: Option<i32>,
    /// Set any configuration key, e.g. --set auto_create_topics_enable=false.
    /// May be repeated.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

impl ServeArgs {
    fn sources(self) -> ConfigSources {
        let mut sets = Vec::new();
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                sets.push(format!("{k}={v}"));
            }
        };
        push("listen", self.listen);
        push("advertised_listener", self.advertised_listener);
        push("http_listen", self.http_listen);
        push("data_dir", self.data_dir.map(|d| d.display().to_string()));
        push("node_id", self.node_id.map(|n| n.to_string()));
        sets.extend(self.sets);
        ConfigSources {
            file: self.config,
            sets,
            env: true,
        }
    }
}

/// glibc's mmap threshold, fixed (bytes): allocations at least this large get
/// their own mapping, returned to the kernel when freed.
const MALLOC_MMAP_THRESHOLD: &str = "4194304";

/// Re-executes the broker with `MALLOC_MMAP_THRESHOLD_` set unless the
/// environment already sets it. glibc raises its mmap threshold to the largest
/// block freed (the 8 MiB object buffers), after which ~1 MiB request frames and
/// ~100 KiB cached batches fragment its heaps and RSS grows with the bytes
/// written (611 MiB after 10 GB with caches capped at ~384 MiB); a fixed 4 MiB
/// threshold keeps the object buffers in their own mappings and RSS at ~425 MiB
/// at the same CPU per GB (BENCHMARKS.md, "Broker RSS after 10 GB"). glibc
/// reads the variable once at start, and `mallopt` would need unsafe code,
/// hence the `exec` (same pid). If it fails the broker runs untuned.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env("MALLOC_MMAP_THRESHOLD_", MALLOC_MMAP_THRESHOLD)
        .exec();
    eprintln!(
        "skiff: cannot re-execute with MALLOC_MMAP_THRESHOLD_ set ({err}); running with glibc's defaults"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve(args) => {
            tune_malloc();
            let config = match BrokerConfig::load(&args.sources()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("skiff: configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            skiff_broker::telemetry::init(&config.log_level, config.log_format);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("skiff: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(skiff_broker::node::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("skiff: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Admin(args) => skiff_broker::admin::run(args),
    }
}
