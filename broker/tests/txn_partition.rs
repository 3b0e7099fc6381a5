//! The partition side of transactions, driven in-process through the router:
//! transactional batches, WriteTxnMarkers, the last stable offset, the
//! aborted-transaction index in read_committed Fetch, ListOffsets, and
//! DescribeProducers; and producer state across a restart (snapshot).

use std::sync::Arc;

use bytes::Bytes;
use skiff_broker::broker::Broker;
use skiff_broker::config::{BrokerConfig, ConfigSources};
use skiff_broker::node::{self, RunningBroker};
use skiff_broker::router::RequestContext;
use skiff_wire::kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DescribeProducersRequest, FetchRequest, ListOffsetsRequest,
    ProduceRequest, ProducerId, RequestHeader, RequestKind, ResponseKind, TopicName,
    WriteTxnMarkersRequest,
    create_topics_request::CreatableTopic,
    describe_producers_request::TopicRequest,
    fetch_request::{FetchPartition, FetchTopic},
    fetch_response::PartitionData,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    produce_request::{PartitionProduceData, TopicProduceData},
    write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use skiff_wire::records::{BatchBuilder, BatchView, Compression, NewRecord};

const T: &str = "txn-topic";

async fn start(dir: &std::path::Path) -> RunningBroker {
    start_with(dir, &[]).await
}

/// A broker whose partitions take hand-made transactional batches without a
/// coordinator (verification off, as Kafka's
/// `transaction.partition.verification.enable=false`): these tests play the
/// coordinator with WriteTxnMarkers.
async fn start_with(dir: &std::path::Path, extra: &[&str]) -> RunningBroker {
    let mut sets = vec![
        "listen=127.0.0.1:0".to_string(),
        "http_listen=".to_string(),
        format!("data_dir={}", dir.display()),
        "transaction_partition_verification_enable=false".to_string(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let config = BrokerConfig::load(&ConfigSources {
        file: None,
        sets,
        env: false,
    })
    .expect("config");
    node::start(config).await.expect("broker starts")
}

async fn call(b: &Arc<Broker>, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
    let ctx = RequestContext {
        header: RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version),
        api_version: version,
        peer: "127.0.0.1:1".parse().expect("addr"),
    };
    let respond = b.router.dispatch(b.clone(), ctx, key, body).await;
    respond.await.expect("a response").into_body()
}

fn name() -> TopicName {
    TopicName(StrBytes::from_static_str(T))
}

fn batch(pid: i64, seq: i32, transactional: bool, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None)
        .producer(pid, 0, seq)
        .flags(transactional, false);
    for v in values {
        b.push(NewRecord {
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(v.as_bytes()),
            headers: &[],
        });
    }
    b.build().expect("batch")
}

/// Produce; returns (error code, base offset).
async fn produce(b: &Arc<Broker>, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name())
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let ResponseKind::Produce(r) = call(b, ApiKey::Produce, 9, RequestKind::Produce(req)).await
    else {
        panic!("wrong response kind")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn marker(b: &Arc<Broker>, pid: i64, epoch: i16, commit: bool) -> i16 {
    let req = WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(1)
            .with_topics(vec![
                WritableTxnMarkerTopic::default()
                    .with_name(name())
                    .with_partition_indexes(vec![0]),
            ]),
    ]);
    let ResponseKind::WriteTxnMarkers(r) = call(
        b,
        ApiKey::WriteTxnMarkers,
        1,
        RequestKind::WriteTxnMarkers(req),
    )
    .await
    else {
        panic!("wrong response kind")
    };
    r.markers[0].topics[0].partitions[0].error_code
}

/// A read_committed (or uncommitted) fetch from offset 0, no waiting.
async fn fetch(b: &Arc<Broker>, committed: bool) -> PartitionData {
    fetch_waiting(b, committed, 0).await
}

async fn fetch_waiting(b: &Arc<Broker>, committed: bool, max_wait_ms: i32) -> PartitionData {
    let req = FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(i8::from(committed))
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name())
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let ResponseKind::Fetch(r) = call(b, ApiKey::Fetch, 12, RequestKind::Fetch(req)).await else {
        panic!("wrong response kind")
    };
    r.responses[0].partitions[0].clone()
}

/// (base offset, control?) of each batch in a fetch.
fn batches(p: &PartitionData) -> Vec<(i64, bool)> {
    let mut out = Vec::new();
    let mut rest = p.records.clone().unwrap_or_default();
    while rest.len() >= 12 {
        let len = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes")) as usize + 12;
        let v = BatchView::parse(rest.split_to(len)).expect("batch");
        out.push((v.base_offset(), v.attributes().is_control()));
    }
    out
}

async fn latest(b: &Arc<Broker>, committed: bool) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(skiff_wire::kafka_protocol::messages::BrokerId(-1))
        .with_isolation_level(i8::from(committed))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name())
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]);
    let ResponseKind::ListOffsets(r) =
        call(b, ApiKey::ListOffsets, 5, RequestKind::ListOffsets(req)).await
    else {
        panic!("wrong response kind")
    };
    r.topics[0].partitions[0].offset
}

async fn create(b: &Arc<Broker>) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(name())
                .with_num_partitions(1)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(30_000);
    let ResponseKind::CreateTopics(r) =
        call(b, ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req)).await
    else {
        panic!("wrong response kind")
    };
    assert_eq!(r.topics[0].error_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_on_a_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    create(&b).await;

    // producer 100 opens a transaction at offset 0; a plain write follows
    assert_eq!(
        produce(&b, batch(100, 0, true, &["t1", "t2"])).await,
        (0, 0)
    );
    assert_eq!(produce(&b, batch(-1, -1, false, &["plain"])).await, (0, 2));
    let rc = fetch(&b, true).await;
    assert_eq!((rc.high_watermark, rc.last_stable_offset), (3, 0));
    assert!(batches(&rc).is_empty(), "read_committed stops at the LSO");
    assert_eq!(batches(&fetch(&b, false).await).len(), 2);
    assert_eq!((latest(&b, true).await, latest(&b, false).await), (0, 3));
    // a non-transactional write from a producer in a transaction
    assert_eq!(produce(&b, batch(100, 2, false, &["x"])).await.0, 48); // INVALID_TXN_STATE

    // COMMIT: everything is visible, no aborted transactions
    assert_eq!(marker(&b, 100, 0, true).await, 0);
    let rc = fetch(&b, true).await;
    assert_eq!(rc.last_stable_offset, 4);
    assert_eq!(batches(&rc), vec![(0, false), (2, false), (3, true)]);
    assert_eq!(rc.aborted_transactions.as_deref().map(<[_]>::len), Some(0));

    // an aborted transaction of producer 101 is listed for read_committed
    assert_eq!(produce(&b, batch(101, 0, true, &["a1"])).await, (0, 4));
    assert_eq!(marker(&b, 101, 0, false).await, 0);
    let rc = fetch(&b, true).await;
    assert_eq!(rc.last_stable_offset, 6);
    let aborted = rc
        .aborted_transactions
        .clone()
        .expect("read_committed lists them");
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id.0, aborted[0].first_offset),
        (101, 4)
    );

    // markers are idempotent, stale epochs are refused
    assert_eq!(marker(&b, 101, 0, false).await, 0);
    assert_eq!(produce(&b, batch(102, 0, false, &["e"])).await.0, 0);
    assert_eq!(marker(&b, 102, 3, true).await, 0);
    assert_eq!(marker(&b, 102, 1, true).await, 47); // INVALID_PRODUCER_EPOCH
    // unknown partition
    let end = latest(&b, false).await;

    // DescribeProducers sees them
    let req = DescribeProducersRequest::default().with_topics(vec![
        TopicRequest::default()
            .with_name(name())
            .with_partition_indexes(vec![0]),
    ]);
    let ResponseKind::DescribeProducers(r) = call(
        &b,
        ApiKey::DescribeProducers,
        0,
        RequestKind::DescribeProducers(req),
    )
    .await
    else {
        panic!("wrong response kind")
    };
    let mut ids: Vec<i64> = r.topics[0].partitions[0]
        .active_producers
        .iter()
        .map(|p| p.producer_id.0)
        .collect();
    ids.sort();
    assert_eq!(ids, vec![100, 101, 102]);

    // an open transaction and the aborted index survive a restart
    assert_eq!(produce(&b, batch(103, 0, true, &["open"])).await, (0, end));
    drop(b);
    running.stop().await;
    // closing the partition snapshotted its producer state
    let snaps = dir.path().join("objects-store/producer-state");
    let stream_dirs: Vec<_> = std::fs::read_dir(&snaps)
        .expect("snapshot directory")
        .flatten()
        .collect();
    assert_eq!(stream_dirs.len(), 1);
    let files: Vec<String> = std::fs::read_dir(stream_dirs[0].path())
        .expect("snapshots")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.contains(&format!("{:020}.snap", end + 1)),
        "{files:?}"
    );
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    let rc = loop {
        let rc = fetch(&b, true).await;
        if rc.error_code == 0 {
            break rc;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(rc.last_stable_offset, end);
    assert_eq!(rc.aborted_transactions.map(|a| a.len()), Some(1));
    assert_eq!(produce(&b, batch(102, 0, false, &["dup?"])).await.0, 47);
    drop(b);
    running.stop().await;
}

/// A read_committed long poll wakes when a marker moves the last stable
/// offset, and producer state is snapshotted periodically while open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lso_wakes_long_polls_and_snapshots_are_periodic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start_with(dir.path(), &["producer_state_snapshot_interval=100ms"]).await;
    let b = running.broker.clone();
    create(&b).await;
    assert_eq!(produce(&b, batch(7, 0, true, &["t"])).await, (0, 0));
    let poll = {
        let b = b.clone();
        tokio::spawn(async move { fetch_waiting(&b, true, 30_000).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "nothing is committed yet");
    assert_eq!(marker(&b, 7, 0, true).await, 0);
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), poll)
        .await
        .expect("woken by the marker, long before the 30 s poll ends")
        .expect("task");
    // the committed batch, once the marker is durable
    assert_eq!(batches(&got), vec![(0, false), (1, true)]);
    // a snapshot at the end offset appears without closing the partition
    let snaps = dir.path().join("objects-store/producer-state");
    let want = format!("{:020}.snap", 2);
    let mut found = false;
    for _ in 0..100 {
        found = std::fs::read_dir(&snaps)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .any(|f| f.file_name().to_string_lossy() == want);
        if found {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(found, "periodic snapshot at offset 2");
    drop(b);
    running.stop().await;
}
