//! Control of the processes under test: brokers ([`Cluster`]), the S3 server
//! ([`Moto`]), a small disk for the WAL ([`SmallDisk`]), and helpers to find
//! free ports and wait for listeners; [`StoreCounts`] tells from moto's log
//! what reached the object store.
//!
//! Every child is a [`Managed`] process: start, stop, kill -9, pause
//! (SIGSTOP), resume (SIGCONT), killed on drop. Brokers are started from a
//! [`CommandTemplate`] so the harness adapts to the broker's real flags without
//! code changes (`--serve-args` / `SKIFF_SERVE_ARGS`).

mod broker;
mod disk;
mod moto;
mod process;
mod store_log;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use broker::{
    BrokerNode, Cluster, ClusterConfig, CommandTemplate, DEFAULT_S3_ARGS, DEFAULT_SERVE_ARGS,
    DEFAULT_SERVE_ENV, Expanded, NodeVars,
};
pub use disk::{DiskError, SmallDisk};
pub use moto::{Moto, create_bucket};
pub use process::{Managed, ProcessSpec, State};
pub use store_log::StoreCounts;

/// Errors controlling processes.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0} is not running")]
    NotRunning(String),
    #[error("sending {signal} to {name}: {source}")]
    Signal {
        name: String,
        signal: &'static str,
        source: nix::Error,
    },
    #[error("{what} did not listen on {addr} within {timeout:?}")]
    PortTimeout {
        what: String,
        addr: SocketAddr,
        timeout: Duration,
    },
    #[error("{what} exited before listening on {addr}; see {log}")]
    ExitedEarly {
        what: String,
        addr: SocketAddr,
        log: String,
    },
    #[error("unknown placeholder {{{0}}} in command template")]
    Template(String),
    #[error("creating bucket {bucket}: {detail}")]
    Bucket { bucket: String, detail: String },
}

impl ControlError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ControlError::Io {
            what: what.into(),
            source,
        }
    }
}

/// A loopback port nobody listens on right now (bind port 0, then release).
pub fn free_port() -> Result<u16, ControlError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| ControlError::io("bind 127.0.0.1:0", e))?;
    let port = l
        .local_addr()
        .map_err(|e| ControlError::io("local_addr", e))?
        .port();
    Ok(port)
}

/// Waits until something accepts TCP connections on `addr`. When `proc_` is
/// given and exits meanwhile, fails at once instead of waiting out `timeout`.
pub async fn wait_for_port(
    what: &str,
    addr: SocketAddr,
    timeout: Duration,
    mut proc_: Option<&mut Managed>,
) -> Result<(), ControlError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            return Ok(());
        }
        if let Some(p) = proc_.as_deref_mut()
            && p.state() == State::Stopped
        {
            return Err(ControlError::ExitedEarly {
                what: what.to_string(),
                addr,
                log: p.log_path().display().to_string(),
            });
        }
        if Instant::now() >= deadline {
            return Err(ControlError::PortTimeout {
                what: what.to_string(),
                addr,
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_for_port_sees_a_listener_and_times_out_without_one() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        wait_for_port("listener", addr, Duration::from_secs(5), None)
            .await
            .expect("listening");
        drop(l);
        let port = free_port().expect("port");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let err = wait_for_port("nothing", addr, Duration::from_millis(200), None)
            .await
            .expect_err("nobody listens");
        assert!(matches!(err, ControlError::PortTimeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn wait_for_port_fails_fast_when_the_process_exits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Managed::new(ProcessSpec {
            name: "quitter".into(),
            program: "true".into(),
            args: vec![],
            env: vec![],
            strip_env_prefix: None,
            cwd: None,
            log: dir.path().join("q.log"),
        });
        p.start().expect("start");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port().expect("port")).into();
        let err = wait_for_port("quitter", addr, Duration::from_secs(60), Some(&mut p))
            .await
            .expect_err("exited");
        assert!(matches!(err, ControlError::ExitedEarly { .. }), "{err}");
    }
}
