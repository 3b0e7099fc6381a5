//! The real fault target: brokers, the S3 server behind its proxy, a proxy in
//! front of each broker, and a small disk under each broker's WAL.
//!
//! ```text
//!  clients ──> broker proxy i ──> broker i ──> S3 proxy ──> moto_server
//!                                    │
//!                                    └── WAL dir on a small tmpfs
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Action, Target};
use crate::control::{
    Cluster, ClusterConfig, CommandTemplate, Moto, SmallDisk, create_bucket, free_port,
};
use crate::proxy::{Fault, Proxy};

/// How to set the harness up.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    pub bin: PathBuf,
    pub brokers: u32,
    pub dir: PathBuf,
    pub template: CommandTemplate,
    /// Appended to the template's arguments when moto runs
    /// ([`crate::control::DEFAULT_S3_ARGS`]).
    pub s3_args: String,
    /// `moto_server` to run; None: the broker uses its own default store.
    pub moto: Option<PathBuf>,
    pub bucket: String,
    /// Size of each broker's WAL tmpfs; None: no disk-full fault.
    pub wal_disk: Option<u64>,
    pub extra_env: Vec<(String, String)>,
    pub startup_timeout: Duration,
}

/// Everything under test, owned; dropping it kills every process.
pub struct Harness {
    // Field order is drop order: brokers die before the disks under them are
    // unmounted and before the store they talk to.
    pub cluster: Cluster,
    pub disks: Vec<Option<SmallDisk>>,
    pub broker_proxies: Vec<Proxy>,
    pub s3_proxy: Option<Proxy>,
    pub moto: Option<Moto>,
    /// Why disk-full is unavailable, when it is.
    pub notes: Vec<String>,
}

impl Harness {
    /// Starts moto (if configured), proxies, disks and brokers.
    pub async fn start(cfg: &HarnessConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.dir)?;
        let mut notes = Vec::new();
        let (moto, s3_proxy, s3_endpoint) = match &cfg.moto {
            Some(program) => {
                let moto = Moto::start(program, &cfg.dir.join("moto.log")).await?;
                let proxy = Proxy::start(loopback(0), moto.addr).await?;
                create_bucket(proxy.local_addr(), &cfg.bucket).await?;
                let endpoint = format!("http://{}", proxy.local_addr());
                (Some(moto), Some(proxy), endpoint)
            }
            None => (None, None, String::new()),
        };
        // Proxy ports first: brokers advertise them.
        let mut proxy_ports = Vec::new();
        for _ in 0..cfg.brokers {
            proxy_ports.push(free_port()?);
        }
        let mut template = cfg.template.clone();
        if moto.is_some() {
            template
                .args
                .extend(cfg.s3_args.split_whitespace().map(str::to_string));
        }
        let ccfg = ClusterConfig {
            bin: cfg.bin.clone(),
            brokers: cfg.brokers,
            base_dir: cfg.dir.clone(),
            template,
            s3_endpoint,
            bucket: cfg.bucket.clone(),
            extra_env: cfg.extra_env.clone(),
            startup_timeout: cfg.startup_timeout,
        };
        let mut cluster =
            Cluster::prepare(&ccfg, |i, _| ("127.0.0.1".into(), proxy_ports[i as usize]))?;
        let mut broker_proxies = Vec::new();
        for (node, port) in cluster.nodes.iter().zip(&proxy_ports) {
            broker_proxies.push(Proxy::start(loopback(*port), node.vars.listen_addr()).await?);
        }
        let mut disks = Vec::new();
        for node in &cluster.nodes {
            let disk = match cfg.wal_disk {
                Some(size) => match SmallDisk::mount(&node.vars.wal_dir, size) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        notes.push(e.to_string());
                        None
                    }
                },
                None => None,
            };
            disks.push(disk);
        }
        cluster.start_all().await?;
        Ok(Harness {
            cluster,
            disks,
            broker_proxies,
            s3_proxy,
            moto,
            notes,
        })
    }

    /// Comma-separated client bootstrap addresses (through the proxies).
    pub fn bootstrap(&self) -> String {
        self.broker_proxies
            .iter()
            .map(|p| p.local_addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn proxy(&self, broker: usize) -> Result<&Proxy, String> {
        self.broker_proxies
            .get(broker)
            .ok_or_else(|| format!("no broker {broker}"))
    }

    fn disk(&self, broker: usize) -> Result<&SmallDisk, String> {
        self.disks
            .get(broker)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("broker-{broker} has no small WAL disk (see the setup notes)"))
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Target for Harness {
    async fn apply(&mut self, action: &Action) -> Result<(), String> {
        let s = |e: &dyn std::fmt::Display| e.to_string();
        match action {
            Action::Kill { broker } => self.cluster.kill(*broker).map_err(|e| s(&e)),
            Action::Restart { broker } => self.cluster.start(*broker).await.map_err(|e| s(&e)),
            Action::Pause { broker } => self.cluster.pause(*broker).map_err(|e| s(&e)),
            Action::Resume { broker } => self.cluster.resume(*broker).map_err(|e| s(&e)),
            Action::S3 { fault } => match &self.s3_proxy {
                Some(p) => {
                    p.set(*fault);
                    Ok(())
                }
                None => Err("no object-store proxy (run with moto)".into()),
            },
            Action::DiskFill { broker } => {
                self.disk(*broker)?.fill().map(|_| ()).map_err(|e| s(&e))
            }
            Action::DiskFree { broker } => self.disk(*broker)?.free().map_err(|e| s(&e)),
            Action::Net { broker, fault } => {
                self.proxy(*broker)?.set(*fault);
                Ok(())
            }
        }
    }

    async fn heal(&mut self) -> Result<(), String> {
        if let Some(p) = &self.s3_proxy {
            p.set(Fault::Pass);
        }
        for p in &self.broker_proxies {
            p.set(Fault::Pass);
        }
        for d in self.disks.iter().flatten() {
            d.free().map_err(|e| e.to_string())?;
        }
        self.cluster.heal().await.map_err(|e| e.to_string())
    }
}
