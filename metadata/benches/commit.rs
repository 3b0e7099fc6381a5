//! Committed object-range commands per second and commit latency.
//!
//! `cargo bench -p skiff-metadata --bench commit`
//!
//! Each client owns one partition and commits one object with one range at
//! a time (the uploader's commit), waiting for the result; object ids are
//! reserved up front so only commits are measured. Runs a single node with
//! fsync and 3 in-process nodes (fsync on every node), each at 1 client
//! (latency) and `SKIFF_BENCH_CLIENTS` clients (default 64, throughput).
//! `SKIFF_BENCH_SECS` (default 5) per run. `SKIFF_BENCH_IN_FLIGHT` (default
//! `2,1`) lists the `batches_in_flight` settings compared. The disk's own
//! append+fdatasync latency is measured before and after. Results go to
//! stdout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use skiff_common::{BrokerId, ObjectId, StreamEpoch, StreamId};
use skiff_metadata::command::{CommitRange, Listener, NewObject, ObjectCommit, ObjectKind};
use skiff_metadata::net::mem::MemRouter;
use skiff_metadata::node::now_ms;
use skiff_metadata::{Command, MetadataConfig, MetadataNode, Output, Peer};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(id: u64, voters: &[u64], dir: &std::path::Path, in_flight: usize) -> MetadataConfig {
    MetadataConfig {
        node_id: id,
        advertised_addr: Some(format!("mem-{id}")),
        initial_voters: voters
            .iter()
            .map(|v| Peer {
                id: *v,
                addr: format!("mem-{v}"),
            })
            .collect(),
        data_dir: dir.join(format!("n{id}")),
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(500),
        election_timeout_max: Duration::from_millis(1000),
        fsync: true,
        batches_in_flight: in_flight,
        ..MetadataConfig::default()
    }
}

async fn write(node: &MetadataNode, cmd: Command) -> Output {
    node.write(cmd).await.expect("write")
}

/// Prepare `clients` partitions owned by broker 1; returns (streams, epochs, first object id).
async fn setup(node: &MetadataNode, clients: u32) -> (Vec<StreamId>, Vec<StreamEpoch>, u64) {
    let topic = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let be = match write(
        node,
        Command::RegisterBroker {
            broker: BrokerId(1),
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "h".into(),
                port: 1,
            }],
            rack: None,
            now_ms: now_ms(),
        },
    )
    .await
    {
        Output::BrokerRegistered { broker_epoch } => broker_epoch,
        o => panic!("{o:?}"),
    };
    let streams = match write(
        node,
        Command::CreateTopic {
            name: topic.clone(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: clients,
            configs: Default::default(),
        },
    )
    .await
    {
        Output::TopicCreated { streams, .. } => streams,
        o => panic!("{o:?}"),
    };
    let mut epochs = Vec::new();
    for p in 0..clients {
        match write(
            node,
            Command::AssignPartition {
                topic: topic.clone(),
                partition: p,
                broker: BrokerId(1),
                broker_epoch: be,
                expected_epoch: None,
            },
        )
        .await
        {
            Output::PartitionAssigned { epoch, .. } => epochs.push(epoch),
            o => panic!("{o:?}"),
        }
    }
    let first = match write(node, Command::ReserveObjectIds { count: 1_000_000 }).await {
        Output::IdRange { start, .. } => start,
        o => panic!("{o:?}"),
    };
    (streams, epochs, first)
}

async fn run(label: &str, node: &MetadataNode, clients: u32, secs: u64) {
    let (streams, epochs, first) = setup(node, clients).await;
    let lat = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients as usize {
        let (node, lat) = (node.clone(), lat.clone());
        let (stream, epoch) = (streams[c], epochs[c]);
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let id = first + i * clients as u64 + c as u64;
                let cmd = Command::CommitObjects {
                    commit: ObjectCommit {
                        objects: vec![NewObject {
                            id: ObjectId(id),
                            kind: ObjectKind::StreamSet,
                            size: 4 << 20,
                            ranges: vec![CommitRange {
                                stream,
                                epoch,
                                start: i * 100,
                                end: i * 100 + 100,
                            }],
                        }],
                        replaces: vec![],
                    },
                    now_ms: now_ms(),
                };
                let t = Instant::now();
                node.write(cmd).await.expect("commit");
                local.push(t.elapsed());
                i += 1;
            }
            lat.lock().extend(local);
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let elapsed = start.elapsed();
    let mut l = lat.lock().clone();
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    println!(
        "{label:<36} clients={clients:<3} commits={:<7} {:>8.0} commits/s  p50={:>6.2}ms  p99={:>6.2}ms  max={:>6.2}ms",
        l.len(),
        l.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

/// The disk's own floor: 512-byte appends, each followed by `fdatasync`
/// (what one group commit costs at least), in the directory the nodes use.
fn fsync_baseline(dir: &std::path::Path, n: usize) {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let mut l = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&[7u8; 512]).expect("probe write");
        f.sync_data().expect("probe fsync");
        l.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    l.sort();
    let ms = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{:<36} n={n:<5} p50={:>6.2}ms  p99={:>6.2}ms  max={:>6.2}ms",
        "disk: append + fdatasync",
        ms(0.50),
        ms(0.99),
        ms(1.0),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let secs = env_u64("SKIFF_BENCH_SECS", 5);
    let clients = env_u64("SKIFF_BENCH_CLIENTS", 64) as u32;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir =
            tempfile::tempdir_in(std::env::var("SKIFF_BENCH_DIR").unwrap_or_else(|_| ".".into()))
                .expect("tempdir");
        fsync_baseline(dir.path(), 500);
        // Both group-commit settings side by side, one run.
        let in_flight: Vec<usize> = std::env::var("SKIFF_BENCH_IN_FLIGHT")
            .unwrap_or_else(|_| "2,1".into())
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        for in_flight in in_flight {
            let router = MemRouter::new(0);
            let single = router
                .start_node(config(
                    1,
                    &[1],
                    &dir.path().join(format!("s{in_flight}")),
                    in_flight,
                ))
                .await
                .expect("start");
            single
                .wait_ready(Duration::from_secs(10))
                .await
                .expect("ready");
            run(
                &format!("single node, fsync, {in_flight} in flight"),
                &single,
                1,
                secs,
            )
            .await;
            run(
                &format!("single node, fsync, {in_flight} in flight"),
                &single,
                clients,
                secs,
            )
            .await;
            single.shutdown().await;

            let router = MemRouter::new(0);
            let mut nodes = Vec::new();
            for id in [11, 12, 13] {
                nodes.push(
                    router
                        .start_node(config(
                            id,
                            &[11, 12, 13],
                            &dir.path().join(format!("c{in_flight}")),
                            in_flight,
                        ))
                        .await
                        .expect("start"),
                );
            }
            for n in &nodes {
                n.wait_ready(Duration::from_secs(10)).await.expect("ready");
            }
            let leader = nodes
                .iter()
                .find(|n| n.is_leader())
                .cloned()
                .unwrap_or_else(|| nodes[0].clone());
            run(
                &format!("3 nodes, fsync, {in_flight} in flight"),
                &leader,
                1,
                secs,
            )
            .await;
            run(
                &format!("3 nodes, fsync, {in_flight} in flight"),
                &leader,
                clients,
                secs,
            )
            .await;
            for n in nodes {
                n.shutdown().await;
            }
        }
        fsync_baseline(dir.path(), 500);
    });
}
