//! A round trip through the rdkafka crate (librdkafka) against the real
//! `skiff` binary ($SKIFF_BIN): keyed messages with headers are produced with
//! acks=all and consumed back, every key's messages in order.
//!
//! Without $SKIFF_BIN the test explains why and passes, unless
//! SKIFF_REQUIRE_EXTERNAL=1, when it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// The `skiff` binary, or `None` (after saying why) when the test should skip.
fn skiff_bin() -> Option<String> {
    match std::env::var("SKIFF_BIN") {
        Ok(p) if std::path::Path::new(&p).exists() => Some(p),
        other => {
            let why = format!("SKIFF_BIN is not a skiff binary ({other:?})");
            if std::env::var("SKIFF_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
                panic!("{why}, and SKIFF_REQUIRE_EXTERNAL=1");
            }
            eprintln!("skipping the rdkafka round trip: {why}");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `skiff serve` process, killed on drop.
struct Skiff {
    child: Child,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

impl Drop for Skiff {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &str) -> Skiff {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, http) = (free_port(), free_port());
    let bootstrap = format!("127.0.0.1:{port}");
    let log_path = dir.path().join("broker.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", &bootstrap])
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(log);
    // SKIFF_* variables are broker configuration: keep the harness's out.
    for (k, _) in std::env::vars() {
        if k.starts_with("SKIFF_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd.spawn().expect("skiff starts");
    let mut s = Skiff {
        child,
        bootstrap,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(http) {
        if let Ok(Some(status)) = s.child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("skiff exited early: {status}\n{log}");
        }
        assert!(Instant::now() < deadline, "skiff not ready in 30s");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// `/readyz` answers 200.
fn ready(http: u16) -> bool {
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", http)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
    if c.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = c.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

const KEYS: usize = 5;
const PER_KEY: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_messages_with_headers_round_trip_in_order() {
    let Some(bin) = skiff_bin() else { return };
    let skiff = start(&bin);
    let topic = "rdkafka-roundtrip";

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &skiff.bootstrap)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &skiff.bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for i in 0..PER_KEY {
        for k in 0..KEYS {
            let key = format!("key-{k}");
            let value = format!("{k}:{i}");
            let seq = i.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "seq",
                    value: Some(seq.as_bytes()),
                })
                .insert(Header {
                    key: "empty",
                    value: None::<&[u8]>,
                });
            let mut record = BaseRecord::to(topic)
                .key(key.as_bytes())
                .payload(value.as_bytes())
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(20));
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every message acknowledged");
    assert_eq!(producer.in_flight_count(), 0);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &skiff.bootstrap)
        .set("group.id", "rdkafka-roundtrip")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    // Manual assignment: group coordination is not what this test is about.
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&tpl).expect("assign");

    let mut next = vec![0usize; KEYS];
    let mut partition_of = [None; KEYS];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < KEYS * PER_KEY {
        assert!(Instant::now() < deadline, "only {got} messages consumed");
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.expect("consume");
        let key = std::str::from_utf8(m.key().expect("a key")).expect("utf-8");
        let k: usize = key
            .strip_prefix("key-")
            .and_then(|k| k.parse().ok())
            .expect("our key");
        let value = std::str::from_utf8(m.payload().expect("a value")).expect("utf-8");
        assert_eq!(value, format!("{k}:{}", next[k]), "key {k} out of order");
        let headers = m.headers().expect("headers");
        assert_eq!(headers.count(), 2);
        let seq = headers.get(0);
        assert_eq!(seq.key, "seq");
        assert_eq!(seq.value, Some(next[k].to_string().as_bytes()));
        assert_eq!(headers.get(1).key, "empty");
        assert_eq!(headers.get(1).value, None);
        // One key, one partition.
        let p = *partition_of[k].get_or_insert(m.partition());
        assert_eq!(p, m.partition());
        next[k] += 1;
        got += 1;
    }
    assert!(next.iter().all(|&n| n == PER_KEY), "{next:?}");
}
