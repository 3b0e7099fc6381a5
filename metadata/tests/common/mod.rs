//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use skiff_common::{BrokerId, ObjectId, StreamEpoch, StreamId};
use skiff_metadata::command::{CommitRange, Listener, NewObject, ObjectCommit, ObjectKind};
use skiff_metadata::node::now_ms;
use skiff_metadata::{Command, MetadataConfig, MetadataNode, Output};
use uuid::Uuid;

/// Fast timeouts for in-process clusters.
pub fn config(id: u64, dir: &Path) -> MetadataConfig {
    MetadataConfig {
        node_id: id,
        data_dir: dir.join(format!("n{id}")),
        heartbeat_interval: Duration::from_millis(30),
        election_timeout_min: Duration::from_millis(150),
        election_timeout_max: Duration::from_millis(300),
        request_timeout: Duration::from_secs(10),
        snapshot_every: 200,
        logs_kept_after_snapshot: 20,
        ..MetadataConfig::default()
    }
}

/// A node of a new cluster of `voters`, addressed `mem-<id>` in a MemRouter.
pub fn voter_config(id: u64, voters: &[u64], dir: &Path) -> MetadataConfig {
    MetadataConfig {
        advertised_addr: Some(format!("mem-{id}")),
        initial_voters: voters
            .iter()
            .map(|v| skiff_metadata::Peer {
                id: *v,
                addr: format!("mem-{v}"),
            })
            .collect(),
        ..config(id, dir)
    }
}

pub fn listeners(port: u16) -> Vec<Listener> {
    vec![Listener {
        name: "PLAINTEXT".into(),
        host: "127.0.0.1".into(),
        port,
    }]
}

pub async fn register(node: &MetadataNode, id: i32) -> u64 {
    let out = node
        .write(Command::RegisterBroker {
            broker: BrokerId(id),
            listeners: listeners(9092),
            rack: None,
            now_ms: now_ms(),
        })
        .await
        .expect("register");
    match out {
        Output::BrokerRegistered { broker_epoch } => broker_epoch,
        o => panic!("unexpected {o:?}"),
    }
}

pub async fn create_topic(node: &MetadataNode, name: &str, partitions: u32) -> Vec<StreamId> {
    let out = node
        .write(Command::CreateTopic {
            name: name.into(),
            topic_id: Uuid::new_v4(),
            partitions,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create topic");
    match out {
        Output::TopicCreated { streams, .. } => streams,
        o => panic!("unexpected {o:?}"),
    }
}

pub async fn assign(node: &MetadataNode, topic: &str, p: u32, broker: i32, be: u64) -> StreamEpoch {
    let out = node
        .write(Command::AssignPartition {
            topic: topic.into(),
            partition: p,
            broker: BrokerId(broker),
            broker_epoch: be,
            expected_epoch: None,
        })
        .await
        .expect("assign");
    match out {
        Output::PartitionAssigned { epoch, .. } => epoch,
        o => panic!("unexpected {o:?}"),
    }
}

/// Reserve one object id and commit `[start, end)` of `stream` in it.
pub fn commit_cmd(id: u64, stream: StreamId, epoch: StreamEpoch, start: u64, end: u64) -> Command {
    Command::CommitObjects {
        commit: ObjectCommit {
            objects: vec![NewObject {
                id: ObjectId(id),
                kind: ObjectKind::StreamSet,
                size: 1000,
                ranges: vec![CommitRange {
                    stream,
                    epoch,
                    start,
                    end,
                }],
            }],
            replaces: vec![],
        },
        now_ms: now_ms(),
    }
}

pub async fn reserve(node: &MetadataNode, count: u32) -> u64 {
    match node
        .write(Command::ReserveObjectIds { count })
        .await
        .expect("reserve")
    {
        Output::IdRange { start, .. } => start,
        o => panic!("unexpected {o:?}"),
    }
}

/// Wait until `f` holds, polling.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
