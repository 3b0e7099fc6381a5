//! A fault-injecting TCP proxy, switchable at runtime.
//!
//! Put one in front of the object store (the brokers' S3 endpoint is the
//! proxy) and one in front of each broker (clients bootstrap through it). The
//! current [`Fault`] applies to new and existing connections alike:
//!
//! * [`Fault::Pass`]: bytes flow unchanged.
//! * [`Fault::Latency`]: each chunk waits before it is forwarded.
//! * [`Fault::Reset`]: every connection is closed with a TCP RST; new ones are
//!   reset on accept.
//! * [`Fault::Flaky`]: each new connection and each chunk is reset with the
//!   given probability (intermittent errors).
//! * [`Fault::BlackHole`]: connections are accepted but nothing is forwarded
//!   in either direction until the fault changes; stalled data then flows on,
//!   as after a healed network partition.

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    Pass,
    Latency(#[serde(with = "humantime_serde")] Duration),
    Reset,
    Flaky(f64),
    BlackHole,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Pass => write!(f, "pass"),
            Fault::Latency(d) => write!(f, "latency {}", humantime::format_duration(*d)),
            Fault::Reset => write!(f, "reset"),
            Fault::Flaky(p) => write!(f, "flaky p={p}"),
            Fault::BlackHole => write!(f, "black-hole"),
        }
    }
}

/// A running proxy; stops (closing all its connections) when dropped.
#[derive(Debug)]
pub struct Proxy {
    local: SocketAddr,
    upstream: SocketAddr,
    tx: watch::Sender<Fault>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on `listen` (use port 0 for any) and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let (tx, rx) = watch::channel(Fault::Pass);
        let task = tokio::spawn(accept_loop(listener, upstream, rx));
        Ok(Proxy {
            local,
            upstream,
            tx,
            task,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches the fault for new and existing connections.
    pub fn set(&self, fault: Fault) {
        self.tx.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.tx.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, rx: watch::Receiver<Fault>) {
    // Owned here: aborting this task aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    let _ = client.set_nodelay(true);
                    conns.spawn(serve(client, upstream, rx.clone()));
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn reset(streams: &[&TcpStream]) {
    for s in streams {
        let _ = s.set_zero_linger();
    }
}

fn roll(p: f64) -> bool {
    p > 0.0 && rand::rng().random_bool(p.clamp(0.0, 1.0))
}

/// Waits while the fault is black-hole; returns the fault after it, or None
/// when the proxy is gone.
async fn through_black_hole(rx: &mut watch::Receiver<Fault>) -> Option<Fault> {
    loop {
        let f = *rx.borrow_and_update();
        if f != Fault::BlackHole {
            return Some(f);
        }
        rx.changed().await.ok()?;
    }
}

async fn serve(client: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<Fault>) {
    let mut client = client;
    match through_black_hole(&mut rx).await {
        None | Some(Fault::Reset) => return reset(&[&client]),
        Some(Fault::Flaky(p)) if roll(p) => return reset(&[&client]),
        Some(_) => {}
    }
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        return reset(&[&client]);
    };
    let _ = up.set_nodelay(true);
    let (mut buf_c, mut buf_u) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut client_done, mut up_done) = (false, false);
    while !(client_done && up_done) {
        let (to_up, n) = tokio::select! {
            r = client.read(&mut buf_c), if !client_done => (true, r),
            r = up.read(&mut buf_u), if !up_done => (false, r),
            changed = rx.changed() => {
                if changed.is_err() || *rx.borrow_and_update() == Fault::Reset {
                    return reset(&[&client, &up]);
                }
                continue;
            }
        };
        let n = match n {
            Ok(0) => {
                // Half-close: pass the EOF on, keep the other direction.
                if to_up {
                    client_done = true;
                    let _ = up.shutdown().await;
                } else {
                    up_done = true;
                    let _ = client.shutdown().await;
                }
                continue;
            }
            Ok(n) => n,
            Err(_) => return reset(&[&client, &up]),
        };
        match through_black_hole(&mut rx).await {
            None | Some(Fault::Reset) => return reset(&[&client, &up]),
            Some(Fault::Flaky(p)) if roll(p) => return reset(&[&client, &up]),
            Some(Fault::Latency(d)) => tokio::time::sleep(d).await,
            Some(_) => {}
        }
        let res = if to_up {
            up.write_all(&buf_c[..n]).await
        } else {
            client.write_all(&buf_u[..n]).await
        };
        if res.is_err() {
            return reset(&[&client, &up]);
        }
    }
}

#[cfg(test)]
mod tests;
