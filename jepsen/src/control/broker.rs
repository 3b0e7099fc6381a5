//! Brokers: N `skiff serve` processes, each with its own data directory, WAL
//! directory, port and log, started from a [`CommandTemplate`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::{Managed, ProcessSpec, State};
use super::{ControlError, free_port, wait_for_port};

/// Default `skiff` arguments (the flags of `skiff serve`); `{name}`
/// placeholders are filled per broker from [`NodeVars`]. Override with
/// `--serve-args` / `SKIFF_SERVE_ARGS` when the broker's flags change.
pub const DEFAULT_SERVE_ARGS: &str = "serve --node-id {node_id} --listen 127.0.0.1:{port} \
     --advertised-listener {advertised_host}:{advertised_port} \
     --http-listen 127.0.0.1:{http_port} --data-dir {data_dir}";

/// Appended to the serve arguments when the harness runs an S3 server
/// (`--s3-args` / `SKIFF_S3_ARGS`). Besides pointing the broker at the
/// store, it makes the broker seal and upload often (every
/// `{upload_interval}`, the run's `--upload-interval`, or every 16 KiB) so
/// object-store faults hit the upload path.
pub const DEFAULT_S3_ARGS: &str = "--set object_store.url=s3://{bucket} \
     --set object_store.endpoint={s3_endpoint} --set object_store.allow_http=true \
     --set object_store.region=us-east-1 --set object_store.access_key_id=jepsen \
     --set object_store.secret_access_key=jepsen \
     --set storage.upload.interval={upload_interval} --set storage.upload.seal_bytes=16384";

/// Environment given to every broker, also templated. The broker reads
/// `SKIFF_<KEY>` variables as its configuration (and rejects unknown keys),
/// so the harness passes none of its own and strips inherited `SKIFF_*`
/// variables; only `--broker-env` adds some.
pub const DEFAULT_SERVE_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "jepsen"),
    ("AWS_SECRET_ACCESS_KEY", "jepsen"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_ALLOW_HTTP", "true"),
];

/// The values a template can use, one set per broker.
#[derive(Debug, Clone)]
pub struct NodeVars {
    /// Index of the broker in the cluster, from 0 (`broker-{id}`).
    pub id: u32,
    /// `id + 1`: the broker's node id (Kafka and Raft ids start at 1).
    pub node_id: u32,
    /// Port for the broker's HTTP endpoint (metrics, health).
    pub http_port: u16,
    /// Port the broker listens on for Kafka clients.
    pub port: u16,
    /// Address the broker tells clients to use (a proxy in front of it, when
    /// there is one).
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Port for broker-to-broker (Raft) traffic.
    pub raft_port: u16,
    pub data_dir: PathBuf,
    /// Where the broker keeps its file WAL (`{data_dir}/wal`, the broker's
    /// default); the disk-full fault mounts a small tmpfs here.
    pub wal_dir: PathBuf,
    /// Comma-separated `id@127.0.0.1:raft_port` of every broker.
    pub peers: String,
    /// S3 endpoint URL (through the object-store proxy), empty when none.
    pub s3_endpoint: String,
    pub bucket: String,
}

impl NodeVars {
    fn lookup(&self, name: &str) -> Option<String> {
        Some(match name {
            "id" => self.id.to_string(),
            "node_id" => self.node_id.to_string(),
            "http_port" => self.http_port.to_string(),
            "port" => self.port.to_string(),
            "advertised_host" => self.advertised_host.clone(),
            "advertised_port" => self.advertised_port.to_string(),
            "raft_port" => self.raft_port.to_string(),
            "data_dir" => self.data_dir.display().to_string(),
            "wal_dir" => self.wal_dir.display().to_string(),
            "peers" => self.peers.clone(),
            "s3_endpoint" => self.s3_endpoint.clone(),
            "bucket" => self.bucket.clone(),
            _ => return None,
        })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// Expanded arguments and environment.
pub type Expanded = (Vec<String>, Vec<(String, String)>);

/// A command line with `{placeholder}`s, split on whitespace (no quoting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Default for CommandTemplate {
    fn default() -> Self {
        CommandTemplate::parse(DEFAULT_SERVE_ARGS)
    }
}

impl CommandTemplate {
    /// Parses an argument template; the environment template is the default.
    pub fn parse(args: &str) -> Self {
        CommandTemplate {
            args: args.split_whitespace().map(str::to_string).collect(),
            env: DEFAULT_SERVE_ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Fills the placeholders; fails on unknown ones.
    pub fn expand(&self, vars: &NodeVars) -> Result<Expanded, ControlError> {
        let args = self
            .args
            .iter()
            .map(|a| expand_one(a, vars))
            .collect::<Result<_, _>>()?;
        let env = self
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), expand_one(v, vars)?)))
            .collect::<Result<_, ControlError>>()?;
        Ok((args, env))
    }
}

fn expand_one(s: &str, vars: &NodeVars) -> Result<String, ControlError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(ControlError::Template(after.to_string()));
        };
        let name = &after[..close];
        out.push_str(
            &vars
                .lookup(name)
                .ok_or_else(|| ControlError::Template(name.to_string()))?,
        );
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// How to run the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The `skiff` binary (`$SKIFF_BIN`, default `target/release/skiff`).
    pub bin: PathBuf,
    pub brokers: u32,
    /// Each broker gets `base_dir/broker-N/{data,wal}` and `broker-N.log`.
    pub base_dir: PathBuf,
    pub template: CommandTemplate,
    pub s3_endpoint: String,
    pub bucket: String,
    /// Extra environment for every broker, e.g.
    /// `SKIFF_UNSAFE_ACK_BEFORE_FSYNC=1`.
    pub extra_env: Vec<(String, String)>,
    pub startup_timeout: Duration,
}

/// One broker: its template values and its process.
#[derive(Debug)]
pub struct BrokerNode {
    pub vars: NodeVars,
    pub process: Managed,
}

/// N brokers.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<BrokerNode>,
    startup_timeout: Duration,
}

impl Cluster {
    /// Lays out directories and ports; starts nothing. `advertised(i, port)`
    /// gives the address broker `i` advertises (identity without proxies).
    pub fn prepare(
        cfg: &ClusterConfig,
        advertised: impl Fn(u32, u16) -> (String, u16),
    ) -> Result<Self, ControlError> {
        let mut ports = Vec::new();
        for _ in 0..cfg.brokers {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, (_, raft, _))| format!("{}@127.0.0.1:{raft}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        // skiff's metadata quorum: every broker a voter (TOML inline form,
        // as its `SKIFF_METADATA__INITIAL_VOTERS` variable takes it).
        let voters = format!(
            "[{}]",
            ports
                .iter()
                .enumerate()
                .map(|(i, (_, raft, _))| format!("{{id={},addr=\"127.0.0.1:{raft}\"}}", i + 1))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut nodes = Vec::new();
        for (i, (port, raft_port, http_port)) in ports.into_iter().enumerate() {
            let id = i as u32;
            let dir = cfg.base_dir.join(format!("broker-{id}"));
            let data_dir = dir.join("data");
            let wal_dir = data_dir.join("wal");
            for d in [&data_dir, &wal_dir] {
                std::fs::create_dir_all(d)
                    .map_err(|e| ControlError::io(format!("mkdir {}", d.display()), e))?;
            }
            let (advertised_host, advertised_port) = advertised(id, port);
            let vars = NodeVars {
                id,
                node_id: id + 1,
                http_port,
                port,
                advertised_host,
                advertised_port,
                raft_port,
                data_dir,
                wal_dir,
                peers: peers.clone(),
                s3_endpoint: cfg.s3_endpoint.clone(),
                bucket: cfg.bucket.clone(),
            };
            let (args, mut env) = cfg.template.expand(&vars)?;
            if cfg.brokers > 1 {
                // One cluster, not N single-node ones sharing a bucket (they
                // would hand out the same object ids and collide on PUT).
                env.push((
                    "SKIFF_METADATA__LISTEN_ADDR".into(),
                    format!("127.0.0.1:{raft_port}"),
                ));
                env.push(("SKIFF_METADATA__INITIAL_VOTERS".into(), voters.clone()));
            }
            env.extend(cfg.extra_env.iter().cloned());
            let process = Managed::new(ProcessSpec {
                name: format!("broker-{id}"),
                program: cfg.bin.clone(),
                args,
                env,
                strip_env_prefix: Some("SKIFF_".into()),
                cwd: Some(dir.clone()),
                log: cfg.base_dir.join(format!("broker-{id}.log")),
            });
            nodes.push(BrokerNode { vars, process });
        }
        Ok(Cluster {
            nodes,
            startup_timeout: cfg.startup_timeout,
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Starts broker `i` (if stopped) and waits for its Kafka port.
    pub async fn start(&mut self, i: usize) -> Result<(), ControlError> {
        let timeout = self.startup_timeout;
        let node = self.node(i)?;
        node.process.start()?;
        let addr = node.vars.listen_addr();
        let name = node.process.name().to_string();
        wait_for_port(&name, addr, timeout, Some(&mut node.process)).await
    }

    pub async fn start_all(&mut self) -> Result<(), ControlError> {
        for i in 0..self.nodes.len() {
            self.node(i)?.process.start()?;
        }
        for i in 0..self.nodes.len() {
            self.start(i).await?;
        }
        Ok(())
    }

    pub fn kill(&mut self, i: usize) -> Result<(), ControlError> {
        self.node(i)?.process.kill()
    }

    pub fn pause(&mut self, i: usize) -> Result<(), ControlError> {
        self.node(i)?.process.pause()
    }

    pub fn resume(&mut self, i: usize) -> Result<(), ControlError> {
        self.node(i)?.process.resume()
    }

    pub fn state(&mut self, i: usize) -> Result<State, ControlError> {
        Ok(self.node(i)?.process.state())
    }

    /// Resumes paused brokers and starts stopped ones: the cluster whole again.
    pub async fn heal(&mut self) -> Result<(), ControlError> {
        for i in 0..self.nodes.len() {
            self.resume(i)?;
            if self.state(i)? == State::Stopped {
                self.start(i).await?;
            }
        }
        Ok(())
    }

    pub async fn stop_all(&mut self, grace: Duration) -> Result<(), ControlError> {
        for n in &mut self.nodes {
            n.process.stop(grace).await?;
        }
        Ok(())
    }

    fn node(&mut self, i: usize) -> Result<&mut BrokerNode, ControlError> {
        self.nodes
            .get_mut(i)
            .ok_or_else(|| ControlError::NotRunning(format!("broker-{i} (no such broker)")))
    }

    /// Log file of broker `i`.
    pub fn log(&self, i: usize) -> Option<&Path> {
        self.nodes.get(i).map(|n| n.process.log_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> NodeVars {
        NodeVars {
            id: 2,
            node_id: 3,
            http_port: 9300,
            port: 9000,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9100,
            raft_port: 9200,
            data_dir: "/d".into(),
            wal_dir: "/w".into(),
            peers: "0@a,1@b".into(),
            s3_endpoint: "http://127.0.0.1:1".into(),
            bucket: "b".into(),
        }
    }

    #[test]
    fn template_expands_placeholders() {
        let t = CommandTemplate::parse(
            "serve --id {id} --listen 127.0.0.1:{port} --adv {advertised_host}:{advertised_port} --x={data_dir}/{wal_dir}",
        );
        let (args, env) = t.expand(&vars()).expect("expand");
        assert_eq!(
            args,
            [
                "serve",
                "--id",
                "2",
                "--listen",
                "127.0.0.1:9000",
                "--adv",
                "127.0.0.1:9100",
                "--x=/d//w"
            ]
        );
        assert!(env.iter().all(|(k, _)| !k.starts_with("SKIFF_")), "{env:?}");
        let (args, _) = CommandTemplate::parse(DEFAULT_SERVE_ARGS)
            .expand(&vars())
            .expect("expand");
        assert_eq!(args[..3], ["serve", "--node-id", "3"]);
        assert!(args.contains(&"127.0.0.1:9100".to_string()), "{args:?}");
        let s3_args = DEFAULT_S3_ARGS.replace("{upload_interval}", "500ms");
        let (s3, _) = CommandTemplate::parse(&s3_args)
            .expand(&vars())
            .expect("expand");
        assert!(
            s3.contains(&"object_store.endpoint=http://127.0.0.1:1".to_string()),
            "{s3:?}"
        );
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        let t = CommandTemplate::parse("serve --x {nope}");
        assert!(matches!(t.expand(&vars()), Err(ControlError::Template(n)) if n == "nope"));
    }

    /// A "broker" that is a shell listening with python: proves the cluster
    /// lays out dirs, expands the template and restarts after kill -9.
    #[tokio::test]
    async fn cluster_of_dummy_brokers_starts_kills_and_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("fake-skiff");
        std::fs::write(
            &script,
            "#!/bin/sh\n# fake-skiff serve --port P: listens on P until killed\nexec python3 -c 'import socket,sys,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((\"127.0.0.1\",int(sys.argv[1])));s.listen()\nwhile True: time.sleep(1)' \"$3\"\n",
        )
        .expect("write script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        if std::process::Command::new("python3")
            .arg("-c")
            .arg("1")
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            eprintln!("python3 not available; skipping");
            return;
        }
        let cfg = ClusterConfig {
            bin: script,
            brokers: 3,
            base_dir: dir.path().to_path_buf(),
            template: CommandTemplate::parse("serve --port {port} {data_dir}"),
            s3_endpoint: String::new(),
            bucket: "b".into(),
            extra_env: vec![("EXTRA".into(), "1".into())],
            startup_timeout: Duration::from_secs(20),
        };
        let mut c = Cluster::prepare(&cfg, |_, p| ("127.0.0.1".into(), p)).expect("prepare");
        assert_eq!(c.len(), 3);
        assert!(dir.path().join("broker-2/data/wal").is_dir());
        c.start_all().await.expect("start all");
        c.kill(1).expect("kill");
        assert_eq!(c.state(1).expect("state"), State::Stopped);
        c.pause(0).expect("pause");
        c.heal().await.expect("heal");
        for i in 0..3 {
            assert_eq!(c.state(i).expect("state"), State::Running);
        }
        c.stop_all(Duration::from_secs(5)).await.expect("stop");
        assert_eq!(c.state(2).expect("state"), State::Stopped);
    }
}
