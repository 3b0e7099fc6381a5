//! A stand-in for `skiff serve` built on librdkafka's in-process mock
//! cluster, for exercising the whole `jepsen run` pipeline before the real
//! broker exists. It keeps everything in memory, so kill -9 loses every
//! acknowledged write: exactly what the checker must report.
//!
//! Usage (the default serve template): `jepsen-mock-broker serve --listen 127.0.0.1:PORT ...`.
//! Creates topic `jepsen` with 4 partitions.

use std::net::SocketAddr;

use rdkafka::mocking::MockCluster;
use skiff_jepsen::proxy::Proxy;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("serve") {
        anyhow::bail!("usage: jepsen-mock-broker serve --listen HOST:PORT");
    }
    if args.iter().any(|a| a == "--help") {
        println!("jepsen-mock-broker serve --listen HOST:PORT");
        return Ok(());
    }
    let listen: SocketAddr = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .ok_or_else(|| anyhow::anyhow!("--listen HOST:PORT is required"))?
        .parse()?;
    let mock = MockCluster::new(1)?;
    mock.create_topic("jepsen", 4, 1)?;
    let bootstrap: SocketAddr = mock.bootstrap_servers().parse()?;
    let _proxy = Proxy::start(listen, bootstrap).await?;
    println!("jepsen-mock-broker: {listen} -> mock cluster at {bootstrap}");
    std::future::pending::<()>().await;
    Ok(())
}
