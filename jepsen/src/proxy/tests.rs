//! The proxy against a tiny echo server on loopback.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Fault, Proxy};

/// An echo server; returns its address. Lives as long as the test runtime.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn proxy() -> Proxy {
    Proxy::start("127.0.0.1:0".parse().expect("addr"), echo().await)
        .await
        .expect("proxy")
}

async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).await?;
    Ok(got)
}

/// A connection that was reset reads an error or EOF, never data.
async fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 16];
    let _ = s.write_all(b"x").await;
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("reset is prompt");
    match r {
        Ok(0) => {}
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "{e}"
        ),
        Ok(n) => panic!("read {n} bytes through a reset connection"),
    }
}

#[tokio::test]
async fn passes_bytes_through() {
    let p = proxy().await;
    let mut s = TcpStream::connect(p.local_addr()).await.expect("connect");
    assert_eq!(round_trip(&mut s, b"hello").await.expect("echo"), b"hello");
    assert_eq!(p.fault(), Fault::Pass);
}

#[tokio::test]
async fn latency_delays_each_direction() {
    let p = proxy().await;
    let mut s = TcpStream::connect(p.local_addr()).await.expect("connect");
    round_trip(&mut s, b"warm").await.expect("echo");
    p.set(Fault::Latency(Duration::from_millis(150)));
    let t = Instant::now();
    assert_eq!(round_trip(&mut s, b"slow").await.expect("echo"), b"slow");
    // Both directions are delayed: at least two delays per round trip.
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    p.set(Fault::Pass);
    assert_eq!(round_trip(&mut s, b"fast").await.expect("echo"), b"fast");
}

#[tokio::test]
async fn reset_closes_existing_and_new_connections() {
    let p = proxy().await;
    let mut s = TcpStream::connect(p.local_addr()).await.expect("connect");
    round_trip(&mut s, b"before").await.expect("echo");
    p.set(Fault::Reset);
    assert_closed(&mut s).await;
    let mut s2 = TcpStream::connect(p.local_addr()).await.expect("accepts");
    assert_closed(&mut s2).await;
    p.set(Fault::Pass);
    let mut s3 = TcpStream::connect(p.local_addr()).await.expect("connect");
    assert_eq!(round_trip(&mut s3, b"after").await.expect("echo"), b"after");
}

#[tokio::test]
async fn flaky_with_certainty_resets_and_zero_passes() {
    let p = proxy().await;
    p.set(Fault::Flaky(1.0));
    let mut s = TcpStream::connect(p.local_addr()).await.expect("accepts");
    assert_closed(&mut s).await;
    p.set(Fault::Flaky(0.0));
    let mut s = TcpStream::connect(p.local_addr()).await.expect("connect");
    assert_eq!(round_trip(&mut s, b"ok").await.expect("echo"), b"ok");
}

#[tokio::test]
async fn black_hole_stalls_until_healed() {
    let p = proxy().await;
    let mut s = TcpStream::connect(p.local_addr()).await.expect("connect");
    round_trip(&mut s, b"1").await.expect("echo");
    p.set(Fault::BlackHole);
    // Existing connection: the request goes nowhere.
    s.write_all(b"2").await.expect("write is buffered");
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await;
    assert!(r.is_err(), "black-holed connection must not answer");
    // New connection: accepted, never answered.
    let mut s2 = TcpStream::connect(p.local_addr()).await.expect("accepted");
    s2.write_all(b"3").await.expect("write is buffered");
    let r = tokio::time::timeout(Duration::from_millis(300), s2.read_exact(&mut buf)).await;
    assert!(r.is_err(), "new connection must not answer");
    // Healing lets the stalled bytes through, in order.
    p.set(Fault::Pass);
    s.read_exact(&mut buf).await.expect("stalled reply");
    assert_eq!(&buf, b"2");
    s2.read_exact(&mut buf).await.expect("stalled reply");
    assert_eq!(&buf, b"3");
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let p = proxy().await;
    let mut s = TcpStream::connect(p.local_addr()).await.expect("connect");
    round_trip(&mut s, b"x").await.expect("echo");
    let addr = p.local_addr();
    drop(p);
    assert_closed(&mut s).await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener is gone");
}

#[tokio::test]
async fn half_close_is_forwarded() {
    let p = proxy().await;
    let mut s = TcpStream::connect(p.local_addr()).await.expect("connect");
    s.write_all(b"bye").await.expect("write");
    s.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.expect("read to end");
    assert_eq!(got, b"bye");
}
