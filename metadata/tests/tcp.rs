//! Nodes talking over the TCP transport: join, forwarding, failover, and
//! malformed frames from the network.

mod common;

use std::time::Duration;

use common::*;
use skiff_metadata::{MetadataConfig, MetadataNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READY: Duration = Duration::from_secs(20);

fn tcp_config(id: u64, dir: &std::path::Path, join: Vec<String>) -> MetadataConfig {
    MetadataConfig {
        listen_addr: Some("127.0.0.1:0".into()),
        join,
        ..config(id, dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_tcp_forward_and_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = MetadataNode::start(tcp_config(1, dir.path(), vec![]))
        .await
        .unwrap();
    n1.wait_ready(READY).await.unwrap();
    let seed = n1.advertised_addr();
    let n2 = MetadataNode::start(tcp_config(2, dir.path(), vec![seed.clone()]))
        .await
        .unwrap();
    let n3 = MetadataNode::start(tcp_config(3, dir.path(), vec![seed]))
        .await
        .unwrap();
    eventually("3 voters", READY, || n1.membership().0.len() == 3).await;
    n3.wait_ready(READY).await.unwrap();

    // Writes and linearizable reads from a follower go to the leader over TCP.
    let be = register(&n3, 1).await;
    let streams = create_topic(&n3, "t", 2).await;
    let epoch = assign(&n2, "t", 1, 1, be).await;
    let id = reserve(&n3, 1).await;
    n3.write(commit_cmd(id, streams[1], epoch, 0, 100))
        .await
        .unwrap();
    let end = n2
        .read(|s| s.stream_meta(streams[1]).unwrap().end_offset)
        .await
        .unwrap();
    assert_eq!(end, 100);

    // Garbage and oversized frames close that connection only.
    let mut bad = TcpStream::connect(n2.advertised_addr()).await.unwrap();
    bad.write_all(&[5, 0, 0, 0, 1, 2, 3, 4, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        bad.read(&mut buf).await.unwrap(),
        0,
        "bad crc closes the connection"
    );
    let mut big = TcpStream::connect(n2.advertised_addr()).await.unwrap();
    big.write_all(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(
        big.read(&mut buf).await.unwrap(),
        0,
        "oversized frame closes the connection"
    );

    // Kill the leader (n1 bootstrapped, so it led).
    let nodes = [n1, n2, n3];
    let leader = nodes.iter().find(|n| n.is_leader()).unwrap().clone();
    leader.shutdown().await;
    let rest: Vec<_> = nodes
        .iter()
        .filter(|n| n.id() != leader.id())
        .cloned()
        .collect();
    let id = reserve(&rest[0], 1).await;
    rest[1]
        .write(commit_cmd(id, streams[1], epoch, 100, 200))
        .await
        .unwrap();
    let end = rest[0]
        .read(|s| s.stream_meta(streams[1]).unwrap().end_offset)
        .await
        .unwrap();
    assert_eq!(end, 200);
    for n in rest {
        n.shutdown().await;
    }
}
