//! Requests built with kafka-protocol and run through the router of a broker
//! started in-process (`node::start`): fetch sessions (KIP-227),
//! DescribeTopicPartitions pagination and DescribeLogDirs sizes.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use skiff_broker::broker::Broker;
use skiff_broker::config::{BrokerConfig, ConfigSources};
use skiff_broker::node::{self, RunningBroker};
use skiff_broker::router::RequestContext;
use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DescribeLogDirsRequest, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, FetchRequest, FetchResponse, ProduceRequest, RequestHeader,
    RequestKind, ResponseKind, TopicName,
    create_topics_request::CreatableTopic,
    describe_log_dirs_request::DescribableLogDirTopic,
    describe_topic_partitions_request,
    fetch_request::{FetchPartition, FetchTopic, ForgottenTopic},
    produce_request::{PartitionProduceData, TopicProduceData},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use skiff_wire::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use uuid::Uuid;

struct TestBroker {
    running: Option<RunningBroker>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sets = vec![
            "listen=127.0.0.1:0".to_string(),
            "http_listen=".to_string(),
            format!("data_dir={}", dir.path().display()),
        ];
        sets.extend(extra.iter().map(|s| s.to_string()));
        let config = BrokerConfig::load(&ConfigSources {
            file: None,
            sets,
            env: false,
        })
        .expect("config");
        let running = node::start(config).await.expect("broker starts");
        Self {
            running: Some(running),
            _dir: dir,
        }
    }

    fn broker(&self) -> Arc<Broker> {
        self.running.as_ref().expect("running").broker.clone()
    }

    async fn call(&self, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let ctx = RequestContext {
            header: RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version),
            api_version: version,
            peer: "127.0.0.1:1".parse().expect("addr"),
        };
        let b = self.broker();
        let respond = b.router.dispatch(b.clone(), ctx, key, body).await;
        respond.await.expect("a response").into_body()
    }

    async fn create_topic(&self, name: &str, partitions: i32) -> Uuid {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic(name))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(30_000);
        let ResponseKind::CreateTopics(r) = self
            .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req))
            .await
        else {
            panic!("wrong response kind")
        };
        assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
        r.topics[0].topic_id
    }

    async fn produce(&self, name: &str, partition: i32, values: &[&str]) {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic(name))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch(values))),
                    ]),
            ]);
        let ResponseKind::Produce(r) = self
            .call(ApiKey::Produce, 9, RequestKind::Produce(req))
            .await
        else {
            panic!("wrong response kind")
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "produce: {:?}", p.error_message);
    }

    async fn fetch(&self, version: i16, req: FetchRequest) -> FetchResponse {
        match self
            .call(ApiKey::Fetch, version, RequestKind::Fetch(req))
            .await
        {
            ResponseKind::Fetch(r) => r,
            _ => panic!("wrong response kind"),
        }
    }

    async fn describe_topic_partitions(
        &self,
        req: DescribeTopicPartitionsRequest,
    ) -> DescribeTopicPartitionsResponse {
        match self
            .call(
                ApiKey::DescribeTopicPartitions,
                0,
                RequestKind::DescribeTopicPartitions(req),
            )
            .await
        {
            ResponseKind::DescribeTopicPartitions(r) => r,
            _ => panic!("wrong response kind"),
        }
    }

    async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn batch(values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps offset - sequence constant within a batch.
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

fn part(index: i32, offset: i64) -> FetchPartition {
    FetchPartition::default()
        .with_partition(index)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)
}

/// A Fetch v12 request (topics by name) in session `id` at `epoch`.
fn fetch_req(id: i32, epoch: i32, name: &str, parts: Vec<FetchPartition>) -> FetchRequest {
    let topics = if parts.is_empty() {
        vec![]
    } else {
        vec![
            FetchTopic::default()
                .with_topic(topic(name))
                .with_partitions(parts),
        ]
    };
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_id(id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

/// `(partition, record bytes)` of every partition in a response.
fn answered(r: &FetchResponse) -> Vec<(i32, usize)> {
    let mut out: Vec<(i32, usize)> = r
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, p.records.as_ref().map_or(0, |b| b.len())))
        .collect();
    out.sort();
    out
}

fn indexes(r: &FetchResponse) -> Vec<i32> {
    answered(r).into_iter().map(|(p, _)| p).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_fetch_sessions_by_name() {
    let b = TestBroker::start(&[]).await;
    b.create_topic("s", 2).await;
    b.produce("s", 0, &["a", "b"]).await;

    // A full fetch with epoch 0 creates a session and answers everything.
    let r = b
        .fetch(12, fetch_req(0, 0, "s", vec![part(0, 0), part(1, 0)]))
        .await;
    assert_eq!(r.error_code, 0);
    let id = r.session_id;
    assert_ne!(id, 0, "a session was created");
    let a = answered(&r);
    assert_eq!(a.len(), 2);
    assert!(a[0].1 > 0, "partition 0 has records: {a:?}");
    assert_eq!(a[1], (1, 0));

    // Epoch 1: partition 0 moves to its end; nothing changed, nothing answered.
    let r = b.fetch(12, fetch_req(id, 1, "s", vec![part(0, 2)])).await;
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert!(
        r.responses.is_empty(),
        "unchanged partitions are omitted: {r:?}"
    );

    // New data in partition 1 (offset 0 still cached): only it is answered.
    b.produce("s", 1, &["c"]).await;
    let r = b.fetch(12, fetch_req(id, 2, "s", vec![])).await;
    assert_eq!(r.error_code, 0);
    let a = answered(&r);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].0, 1);
    assert!(a[0].1 > 0);

    // Wrong epoch, unknown session.
    let r = b.fetch(12, fetch_req(id, 2, "s", vec![])).await;
    assert_eq!(r.error_code, ResponseError::InvalidFetchSessionEpoch.code());
    assert_eq!(r.session_id, 0);
    let r = b
        .fetch(12, fetch_req(id.wrapping_add(1).max(1), 1, "s", vec![]))
        .await;
    assert_eq!(r.error_code, ResponseError::FetchSessionIdNotFound.code());

    // Forget partition 1 (moving 1 to its end first is not needed): new data
    // in both partitions is answered for partition 0 only.
    let mut req = fetch_req(id, 3, "s", vec![]);
    req.forgotten_topics_data = vec![
        ForgottenTopic::default()
            .with_topic(topic("s"))
            .with_partitions(vec![1]),
    ];
    let r = b.fetch(12, req).await;
    assert_eq!(r.error_code, 0);
    b.produce("s", 0, &["d"]).await;
    b.produce("s", 1, &["e"]).await;
    let r = b.fetch(12, fetch_req(id, 4, "s", vec![])).await;
    assert_eq!(indexes(&r), vec![0], "forgotten partitions are not fetched");

    // A long poll in a session wakes on an append to a session partition.
    let waiter = {
        let b2 = b.broker();
        let mut req = fetch_req(id, 5, "s", vec![part(0, 3)]);
        req.max_wait_ms = 10_000;
        req.min_bytes = 1;
        tokio::spawn(async move {
            let ctx = RequestContext {
                header: RequestHeader::default(),
                api_version: 12,
                peer: "127.0.0.1:1".parse().expect("addr"),
            };
            let respond = b2
                .router
                .dispatch(b2.clone(), ctx, ApiKey::Fetch, RequestKind::Fetch(req))
                .await;
            respond.await.map(|r| r.into_body())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    b.produce("s", 0, &["f"]).await;
    let Some(ResponseKind::Fetch(r)) = waiter.await.expect("join") else {
        panic!("no fetch response")
    };
    assert_eq!(answered(&r).len(), 1);
    assert!(answered(&r)[0].1 > 0);

    // Closing: epoch -1 answers sessionless; the id is gone afterwards.
    let r = b.fetch(12, fetch_req(id, -1, "s", vec![part(0, 0)])).await;
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(indexes(&r), vec![0]);
    let r = b.fetch(12, fetch_req(id, 6, "s", vec![])).await;
    assert_eq!(r.error_code, ResponseError::FetchSessionIdNotFound.code());
    assert!(b.broker().fetch_sessions.is_empty());

    // Sessionless fetches (librdkafka's) never create sessions.
    let r = b.fetch(12, fetch_req(0, -1, "s", vec![part(0, 0)])).await;
    assert_eq!(r.session_id, 0);
    assert!(b.broker().fetch_sessions.is_empty());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_by_topic_id_and_bounded_cache() {
    let b = TestBroker::start(&["max_incremental_fetch_session_cache_slots=1"]).await;
    let tid = b.create_topic("ids", 2).await;
    b.produce("ids", 1, &["x"]).await;
    let by_id = |id: i32, epoch: i32, parts: Vec<FetchPartition>| {
        let mut r = fetch_req(id, epoch, "", vec![]);
        if !parts.is_empty() {
            r.topics = vec![
                FetchTopic::default()
                    .with_topic_id(tid)
                    .with_partitions(parts),
            ];
        }
        r
    };
    let r = b.fetch(13, by_id(0, 0, vec![part(0, 0), part(1, 0)])).await;
    let id = r.session_id;
    assert_ne!(id, 0);
    assert_eq!(r.responses[0].topic_id, tid);
    assert_eq!(indexes(&r), vec![0, 1]);

    // The one slot is taken by a session of the same size: no new session.
    let r = b.fetch(13, by_id(0, 0, vec![part(0, 0), part(1, 0)])).await;
    assert_eq!(r.session_id, 0, "cache full");
    assert_eq!(indexes(&r), vec![0, 1], "still a full answer");

    // Forget partition 1 by topic id; append to both; only 0 is answered.
    let mut req = by_id(id, 1, vec![part(1, 1)]);
    req.forgotten_topics_data = vec![
        ForgottenTopic::default()
            .with_topic_id(tid)
            .with_partitions(vec![1]),
    ];
    let r = b.fetch(13, req).await;
    assert_eq!(r.error_code, 0);
    b.produce("ids", 0, &["y"]).await;
    b.produce("ids", 1, &["z"]).await;
    let r = b.fetch(13, by_id(id, 2, vec![])).await;
    assert_eq!(indexes(&r), vec![0]);
    assert_eq!(r.responses[0].topic_id, tid);

    // A bigger session takes the slot of the smaller one.
    let r = b.fetch(13, by_id(0, 0, vec![part(0, 0), part(1, 0)])).await;
    assert_ne!(r.session_id, 0, "larger session evicts the smaller");
    let r2 = b.fetch(13, by_id(id, 3, vec![])).await;
    assert_eq!(r2.error_code, ResponseError::FetchSessionIdNotFound.code());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_topic_partitions_paginates_and_log_dirs_sizes() {
    let b = TestBroker::start(&[]).await;
    b.create_topic("pa", 3).await;
    b.create_topic("pb", 2).await;
    let page = |cursor: Option<(&str, i32)>| {
        DescribeTopicPartitionsRequest::default()
            .with_topics(vec![])
            .with_response_partition_limit(2)
            .with_cursor(cursor.map(|(t, p)| {
                describe_topic_partitions_request::Cursor::default()
                    .with_topic_name(topic(t))
                    .with_partition_index(p)
            }))
    };
    let mut seen = Vec::new();
    let mut cursor: Option<(String, i32)> = None;
    for _ in 0..10 {
        let req = page(cursor.as_ref().map(|(t, p)| (t.as_str(), *p)));
        let r = b.describe_topic_partitions(req).await;
        let n: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
        assert!(n <= 2, "page limit respected: {n}");
        for t in &r.topics {
            for p in &t.partitions {
                assert_eq!(p.leader_id.0, 1);
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                seen.push((name, p.partition_index));
            }
        }
        match r.next_cursor {
            Some(c) => cursor = Some((c.topic_name.0.to_string(), c.partition_index)),
            None => break,
        }
    }
    let want: Vec<(String, i32)> = [("pa", 0), ("pa", 1), ("pa", 2), ("pb", 0), ("pb", 1)]
        .iter()
        .map(|(t, p)| (t.to_string(), *p))
        .collect();
    assert_eq!(seen, want, "every partition exactly once, in order");

    // Unknown topic.
    let req = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![
            describe_topic_partitions_request::TopicRequest::default().with_name(topic("nope")),
        ])
        .with_response_partition_limit(10);
    let r = b.describe_topic_partitions(req).await;
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );

    // DescribeLogDirs: sizes grow with the data produced (WAL tail here).
    let value = "v".repeat(1000);
    let values: Vec<&str> = (0..50).map(|_| value.as_str()).collect();
    b.produce("pa", 1, &values).await;
    let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
        DescribableLogDirTopic::default()
            .with_topic(topic("pa"))
            .with_partitions(vec![0, 1]),
    ]));
    let ResponseKind::DescribeLogDirs(r) = b
        .call(
            ApiKey::DescribeLogDirs,
            4,
            RequestKind::DescribeLogDirs(req),
        )
        .await
    else {
        panic!("wrong kind")
    };
    assert_eq!(r.results.len(), 1);
    let dir = &r.results[0];
    assert!(!dir.log_dir.is_empty());
    assert_eq!(dir.topics.len(), 1);
    let sizes: Vec<(i32, i64)> = dir.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.partition_size))
        .collect();
    assert_eq!(sizes.len(), 2);
    assert_eq!(sizes[0], (0, 0), "empty partition");
    assert!(
        sizes[1].1 >= 50_000 && sizes[1].1 < 60_000,
        "50 x 1000-byte values: {sizes:?}"
    );
    b.stop().await;
}
