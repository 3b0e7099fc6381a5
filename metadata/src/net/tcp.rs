//! TCP transport between metadata nodes.
//!
//! One request and one reply per round trip on a connection, each a
//! [`crate::frame`] (length, crc32c, version, postcard payload). Frames
//! larger than `max_frame_bytes` are refused before anything is allocated,
//! and a connection that sends a bad frame is closed. The client keeps a
//! few idle connections per peer for reuse; concurrent RPCs to the same
//! peer use separate connections.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Rpc, RpcHandler, RpcReply, Transport, TransportError};
use crate::frame;
use crate::types::NodeId;

/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 8;
/// Most connections a node serves at once.
const MAX_CONNECTIONS: usize = 512;

/// Write one frame.
pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> io::Result<()> {
    let bytes = frame::encode(value).map_err(io::Error::other)?;
    stream.write_all(&bytes).await
}

/// Read one frame; `Ok(None)` on a clean end of stream before a frame.
pub async fn read_frame<T: DeserializeOwned>(
    stream: &mut TcpStream,
    max: usize,
) -> io::Result<Option<T>> {
    let mut h = [0u8; 8];
    match stream.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (len, crc) =
        frame::header(&h, max).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    frame::decode_body(&body, crc)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The client side: sends RPCs to peers by address.
pub struct TcpTransport {
    max_frame: usize,
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
}

impl TcpTransport {
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            idle: Mutex::new(HashMap::new()),
        }
    }

    async fn round_trip(
        &self,
        target: NodeId,
        addr: &str,
        rpc: &Rpc,
    ) -> Result<RpcReply, TransportError> {
        let mut pooled = None;
        while let Some(s) = self.idle.lock().get_mut(addr).and_then(|v| v.pop()) {
            // An idle connection the peer closed reads EOF at once: drop it
            // rather than send a request into it.
            let mut probe = [0u8; 1];
            match s.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    pooled = Some(s);
                    break;
                }
                _ => continue,
            }
        }
        let mut stream = match pooled {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(addr)
                    .await
                    .map_err(|e| TransportError::Unreachable(target, e.to_string()))?;
                let _ = s.set_nodelay(true);
                s
            }
        };
        let net = |e: io::Error| TransportError::Network(target, e.to_string());
        write_frame(&mut stream, rpc).await.map_err(net)?;
        let reply = read_frame::<RpcReply>(&mut stream, self.max_frame)
            .await
            .map_err(net)?
            .ok_or_else(|| TransportError::Network(target, "connection closed".into()))?;
        let mut idle = self.idle.lock();
        let v = idle.entry(addr.to_string()).or_default();
        if v.len() < IDLE_PER_PEER {
            v.push(stream);
        }
        Ok(reply)
    }
}

#[async_trait::async_trait]
impl Transport for TcpTransport {
    async fn call(
        &self,
        _from: NodeId,
        target: NodeId,
        addr: &str,
        rpc: Rpc,
        timeout: Duration,
    ) -> Result<RpcReply, TransportError> {
        match tokio::time::timeout(timeout, self.round_trip(target, addr, &rpc)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Network(target, "timed out".into())),
        }
    }
}

/// A transport for a node with no peers: every call fails as unreachable.
pub struct NoNetwork;

#[async_trait::async_trait]
impl Transport for NoNetwork {
    async fn call(
        &self,
        _from: NodeId,
        target: NodeId,
        _addr: &str,
        _rpc: Rpc,
        _timeout: Duration,
    ) -> Result<RpcReply, TransportError> {
        Err(TransportError::Unreachable(
            target,
            "single-node cluster has no network".into(),
        ))
    }
}

/// Serve RPCs from `listener` until `cancel` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    handler: Arc<dyn RpcHandler>,
    max_frame: usize,
    cancel: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let conns = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (mut stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metadata listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let cancel = cancel.clone();
        conns.spawn(async move {
            let _permit = permit;
            loop {
                let rpc = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = read_frame::<Rpc>(&mut stream, max_frame) => r,
                };
                let rpc = match rpc {
                    Ok(Some(rpc)) => rpc,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "closing metadata connection after a bad frame");
                        return;
                    }
                };
                let reply = handler.handle(rpc).await;
                if write_frame(&mut stream, &reply).await.is_err() {
                    return;
                }
            }
        });
    }
    conns.close();
    conns.wait().await;
}
