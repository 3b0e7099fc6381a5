//! Test support shared by the storage integration tests: external servers.
//!
//! [`start_moto`] runs moto's S3 server (`$SKIFF_MOTO_SERVER`) on a free
//! loopback port with a fresh bucket and returns a store built through
//! `skiff_storage::store::build_store`, so the S3 path under test is the one
//! production uses. When the executable is missing the test is skipped with
//! a message, unless `SKIFF_REQUIRE_EXTERNAL=1`, where it fails.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use skiff_storage::store::{BuiltStore, ObjectStoreConfig, build_store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// True when tests must fail rather than skip without their external tools.
pub fn require_external() -> bool {
    std::env::var("SKIFF_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1")
}

/// Skip (return `None`) or fail, per `SKIFF_REQUIRE_EXTERNAL`.
pub fn missing_tool<T>(why: &str) -> Option<T> {
    if require_external() {
        panic!("SKIFF_REQUIRE_EXTERNAL=1 but {why}");
    }
    eprintln!("skipping: {why}");
    None
}

/// A moto S3 server process on loopback, killed on drop.
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub bucket: String,
    /// The config that reaches this server (reuse it to build more stores,
    /// e.g. with `fault_injection` on, or with a `url` prefix).
    pub config: ObjectStoreConfig,
    /// A store built from `config`.
    pub store: Arc<dyn ObjectStore>,
}

impl MotoServer {
    /// Build another store on this server, from `config` changed by `f`.
    pub fn build(&self, f: impl FnOnce(&mut ObjectStoreConfig)) -> BuiltStore {
        let mut c = self.config.clone();
        f(&mut c);
        build_store(&c, std::path::Path::new("/nonexistent")).expect("s3 store builds")
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_path() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("SKIFF_MOTO_SERVER")?);
    p.exists().then_some(p)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// One raw HTTP/1.1 request to the server; returns the status code.
async fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP answer: {head:.200}")))
}

/// Start moto on a free loopback port with a fresh bucket (see module docs).
pub async fn start_moto() -> Option<MotoServer> {
    let Some(exe) = moto_path() else {
        return missing_tool("SKIFF_MOTO_SERVER is not set to moto's server executable");
    };
    // A port picked by binding 0 may be taken again before moto binds it: retry.
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        let mut server = MotoServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: "skiff-test".into(),
            config: ObjectStoreConfig::default(),
            store: Arc::new(object_store::memory::InMemory::new()),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut up = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                break; // exited: port taken, most likely
            }
            if http(port, "GET", "/").await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !up {
            continue;
        }
        let status = http(port, "PUT", &format!("/{}", server.bucket))
            .await
            .expect("create bucket");
        assert!(status < 300, "create bucket: HTTP {status}");
        server.config = ObjectStoreConfig {
            url: Some(format!("s3://{}", server.bucket)),
            endpoint: Some(server.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("skiff".into()),
            secret_access_key: Some("skiff-secret".into()),
            path_style: Some(true),
            allow_http: true,
            ..ObjectStoreConfig::default()
        };
        server.store = server.build(|_| {}).store;
        return Some(server);
    }
    panic!("moto server did not start on a loopback port after 5 tries");
}
