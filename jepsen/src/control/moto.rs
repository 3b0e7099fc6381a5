//! An S3-compatible server for the brokers: moto's `moto_server`
//! (`$SKIFF_MOTO_SERVER`), on a free loopback port, plus bucket creation.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::{Managed, ProcessSpec};
use super::{ControlError, free_port, wait_for_port};

/// A running moto S3 server.
#[derive(Debug)]
pub struct Moto {
    pub process: Managed,
    pub addr: SocketAddr,
}

impl Moto {
    /// Starts `moto_server` and waits until it listens. Its log is `log`.
    pub async fn start(program: &Path, log: &Path) -> Result<Self, ControlError> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut process = Managed::new(ProcessSpec {
            name: "moto".into(),
            program: program.to_path_buf(),
            args: vec![
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
            env: vec![],
            strip_env_prefix: None,
            cwd: None,
            log: log.to_path_buf(),
        });
        process.start()?;
        wait_for_port(
            "moto_server",
            addr,
            Duration::from_secs(60),
            Some(&mut process),
        )
        .await?;
        Ok(Moto { process, addr })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Creates `bucket` with a plain `PUT /bucket` (moto does not check
/// signatures). Works through a proxy too: `addr` is whatever the caller
/// connects to.
pub async fn create_bucket(addr: SocketAddr, bucket: &str) -> Result<(), ControlError> {
    let err = |detail: String| ControlError::Bucket {
        bucket: bucket.to_string(),
        detail,
    };
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| err(format!("connect {addr}: {e}")))?;
        let req = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut resp = Vec::new();
        s.take(64 * 1024)
            .read_to_end(&mut resp)
            .await
            .map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8_lossy(&resp);
        let status = text.split_whitespace().nth(1).unwrap_or("");
        if status == "200" || text.contains("BucketAlreadyOwnedByYou") {
            Ok(())
        } else {
            Err(err(text
                .lines()
                .next()
                .unwrap_or("empty response")
                .to_string()))
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| err("timed out".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs only where moto is installed (`SKIFF_MOTO_SERVER`); with
    /// `SKIFF_REQUIRE_EXTERNAL=1` its absence fails the test.
    #[tokio::test]
    async fn moto_starts_and_creates_a_bucket() {
        let Some(program) = crate::external_tool("SKIFF_MOTO_SERVER") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let moto = Moto::start(&program, &dir.path().join("moto.log"))
            .await
            .expect("moto starts");
        create_bucket(moto.addr, "jepsen").await.expect("bucket");
        // Listing it back proves it exists.
        let mut s = tokio::net::TcpStream::connect(moto.addr)
            .await
            .expect("connect");
        s.write_all(
            format!(
                "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                moto.addr
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.expect("read");
        assert!(resp.contains("<Name>jepsen</Name>"), "{resp}");
    }
}
