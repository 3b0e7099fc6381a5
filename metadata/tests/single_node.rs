//! A single-voter cluster on disk: bootstrap, commands, typed errors,
//! restart with state intact, snapshots and log purge.

mod common;

use std::time::Duration;

use common::*;
use skiff_common::{BrokerId, StreamEpoch};
use skiff_metadata::net::mem::MemRouter;
use skiff_metadata::{Change, Command, CommandError, MetadataError};

#[tokio::test]
async fn bootstrap_write_restart_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let router = MemRouter::new(1);
    let node = router.start_node(config(1, dir.path())).await.unwrap();
    node.wait_ready(Duration::from_secs(10)).await.unwrap();
    let cluster_id = node.read(|s| s.cluster_id).await.unwrap();
    assert!(cluster_id.is_some());

    let mut watch = node.watch();
    let be = register(&node, 1).await;
    let streams = create_topic(&node, "orders", 4).await;
    let epoch = assign(&node, "orders", 0, 1, be).await;
    assert_eq!(epoch, StreamEpoch(1));
    // The watch stream reports the partition it gained.
    let mut saw_partition = false;
    while let Ok(Some(c)) = tokio::time::timeout(Duration::from_secs(1), watch.next()).await {
        if let Change::Partition {
            topic,
            partition: 0,
            info,
        } = c
        {
            assert_eq!((topic.as_str(), info.owner), ("orders", Some(BrokerId(1))));
            saw_partition = true;
            break;
        }
    }
    assert!(saw_partition);

    // Enough commits to pass the snapshot threshold (200) so the restart
    // goes through snapshot + log replay.
    let first = reserve(&node, 300).await;
    for i in 0..300u64 {
        node.write(commit_cmd(
            first + i,
            streams[0],
            epoch,
            i * 10,
            i * 10 + 10,
        ))
        .await
        .unwrap();
    }
    // Typed errors for bad input.
    let e = node
        .write(commit_cmd(first, streams[0], epoch, 3000, 3010))
        .await
        .unwrap_err();
    assert!(
        matches!(e, MetadataError::Command(CommandError::UnknownObject(_))),
        "{e}"
    );
    let id = reserve(&node, 1).await;
    let e = node
        .write(commit_cmd(id, streams[0], epoch, 2990, 3010))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MetadataError::Command(CommandError::RangeConflict {
                end_offset: 3000,
                ..
            })
        ),
        "{e}"
    );
    let e = node
        .write(commit_cmd(id, streams[0], StreamEpoch(0), 3000, 3010))
        .await
        .unwrap_err();
    assert!(
        matches!(e, MetadataError::Command(CommandError::Fenced { .. })),
        "{e}"
    );
    let e = node
        .write(Command::Heartbeat {
            broker: BrokerId(77),
            broker_epoch: 1,
            now_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        e,
        MetadataError::Command(CommandError::UnknownBroker(BrokerId(77)))
    );

    let before = node.read(|s| s.clone()).await.unwrap();
    assert_eq!(before.stream_meta(streams[0]).unwrap().end_offset, 3000);
    // A snapshot was taken and the log purged.
    eventually("a snapshot", Duration::from_secs(10), || {
        node.raft().metrics().borrow().snapshot.is_some()
    })
    .await;
    node.shutdown().await;
    router.unregister(1);

    let node = router.start_node(config(1, dir.path())).await.unwrap();
    node.wait_ready(Duration::from_secs(10)).await.unwrap();
    let after = node.read(|s| s.clone()).await.unwrap();
    assert_eq!(after, before, "state after restart");
    // And it keeps working: the stream continues where it ended.
    node.write(commit_cmd(id, streams[0], epoch, 3000, 3010))
        .await
        .unwrap();
    node.shutdown().await;
}

#[tokio::test]
async fn torn_log_tail_is_cut_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let router = MemRouter::new(2);
    let node = router.start_node(config(1, dir.path())).await.unwrap();
    node.wait_ready(Duration::from_secs(10)).await.unwrap();
    register(&node, 1).await;
    create_topic(&node, "t", 1).await;
    let before = node.read(|s| s.clone()).await.unwrap();
    node.shutdown().await;
    router.unregister(1);
    // Append garbage (a torn frame) to the last segment.
    let raft_dir = dir.path().join("n1/raft");
    let mut segs: Vec<_> = std::fs::read_dir(&raft_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9]);
    std::fs::write(last, bytes).unwrap();

    let node = router.start_node(config(1, dir.path())).await.unwrap();
    node.wait_ready(Duration::from_secs(10)).await.unwrap();
    let after = node.read(|s| s.clone()).await.unwrap();
    assert_eq!(after.topics, before.topics);
    assert_eq!(after.brokers, before.brokers);
    node.shutdown().await;
}

#[tokio::test]
async fn default_single_node_needs_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = skiff_metadata::MetadataConfig {
        data_dir: dir.path().join("metadata"),
        ..Default::default()
    };
    let node = skiff_metadata::MetadataNode::start(cfg.clone())
        .await
        .unwrap();
    node.wait_ready(Duration::from_secs(10)).await.unwrap();
    let be = register(&node, 1).await;
    let e = node
        .write(Command::AllocateProducerIds {
            broker: BrokerId(1),
            broker_epoch: be + 5,
            count: 10,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MetadataError::Command(CommandError::StaleBrokerEpoch { .. })
        ),
        "{e}"
    );
    node.shutdown().await;
    let node = skiff_metadata::MetadataNode::start(cfg).await.unwrap();
    node.wait_ready(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        node.read(|s| s.brokers[&BrokerId(1)].epoch).await.unwrap(),
        be
    );
    node.shutdown().await;
}

/// The catalog-shaped helpers storage's adapter uses, end to end.
#[tokio::test]
async fn catalog_helpers_follow_the_catalog_rules() {
    use skiff_common::ObjectId;
    use skiff_metadata::command::{CommitRange, NewObject, ObjectCommit, ObjectKind};

    let dir = tempfile::tempdir().unwrap();
    let router = MemRouter::new(9);
    let node = router.start_node(config(1, dir.path())).await.unwrap();
    node.wait_ready(Duration::from_secs(10)).await.unwrap();
    let be = node
        .register_broker(BrokerId(1), listeners(9092), None)
        .await
        .unwrap();
    let streams = node
        .create_topic("c", uuid::Uuid::new_v4(), 1, Default::default())
        .await
        .unwrap();
    let a = node
        .assign_partition("c", 0, BrokerId(1), be, None)
        .await
        .unwrap();
    assert_eq!((a.stream, a.end_offset), (streams[0], 0));
    let ids = node.reserve_object_ids(3).await.unwrap();
    let obj = |id: u64, start: u64, end: u64| NewObject {
        id: ObjectId(id),
        kind: ObjectKind::StreamSet,
        size: 10,
        ranges: vec![CommitRange {
            stream: a.stream,
            epoch: a.epoch,
            start,
            end,
        }],
    };
    node.commit_objects(ObjectCommit {
        objects: vec![obj(ids.start, 0, 5)],
        replaces: vec![],
    })
    .await
    .unwrap();
    node.commit_objects(ObjectCommit {
        objects: vec![obj(ids.start + 1, 5, 9)],
        replaces: vec![],
    })
    .await
    .unwrap();
    // Compaction replaces both with one object, atomically.
    node.commit_objects(ObjectCommit {
        objects: vec![obj(ids.start + 2, 0, 9)],
        replaces: vec![ObjectId(ids.start), ObjectId(ids.start + 1)],
    })
    .await
    .unwrap();
    let slices = node.lookup(a.stream, 0, 10).await.unwrap();
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].object, ObjectId(ids.start + 2));
    assert_eq!(node.list_objects().await.unwrap().len(), 1);
    let dead = node.deletable_objects(Duration::ZERO).await.unwrap();
    assert_eq!(dead, vec![ObjectId(ids.start), ObjectId(ids.start + 1)]);
    node.forget_objects(dead).await.unwrap();
    assert!(
        node.deletable_objects(Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    // A new owner fences the old one's trims and commits.
    let b = node
        .assign_partition("c", 0, BrokerId(1), be, Some(a.epoch))
        .await
        .unwrap();
    assert_eq!(b.end_offset, 9);
    let e = node.trim_stream(a.stream, a.epoch, 5).await.unwrap_err();
    assert!(
        matches!(e, MetadataError::Command(CommandError::Fenced { .. })),
        "{e}"
    );
    node.trim_stream(a.stream, b.epoch, 9).await.unwrap();
    let meta = node.stream(a.stream).await.unwrap();
    assert_eq!(
        (meta.start_offset, meta.end_offset, meta.epoch),
        (9, 9, b.epoch)
    );
    assert_eq!(
        node.deletable_objects(Duration::ZERO).await.unwrap(),
        vec![ObjectId(ids.start + 2)]
    );
    let pids = node
        .allocate_producer_ids(BrokerId(1), be, 1000)
        .await
        .unwrap();
    assert_eq!(pids, 0..1000);
    node.shutdown().await;
}

/// A broker that stops heartbeating is fenced by the leader: its partitions
/// go offline (epoch kept for WAL recovery) and its later requests fail.
#[tokio::test]
async fn missed_session_fences_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let router = MemRouter::new(10);
    let cfg = skiff_metadata::MetadataConfig {
        session_timeout: Duration::from_millis(300),
        ..config(1, dir.path())
    };
    let node = router.start_node(cfg).await.unwrap();
    node.wait_ready(Duration::from_secs(10)).await.unwrap();
    let live = register(&node, 1).await;
    let silent = register(&node, 2).await;
    create_topic(&node, "s", 2).await;
    let e1 = assign(&node, "s", 0, 1, live).await;
    let e2 = assign(&node, "s", 1, 2, silent).await;
    let mut watch = node.watch();
    // Broker 1 keeps heartbeating; broker 2 does not.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        node.heartbeat(BrokerId(1), live).await.unwrap();
        let fenced = node
            .read(|s| s.brokers[&BrokerId(2)].state == skiff_metadata::command::BrokerState::Fenced)
            .await
            .unwrap();
        if fenced {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "broker 2 was never fenced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (p0, p1) = node
        .read(|s| {
            (
                s.partition("s", 0).unwrap().clone(),
                s.partition("s", 1).unwrap().clone(),
            )
        })
        .await
        .unwrap();
    assert_eq!(
        (p0.epoch, p0.owner),
        (e1, Some(BrokerId(1))),
        "the live broker keeps its partition"
    );
    assert_eq!(p1.state, skiff_metadata::command::PartitionState::Offline);
    assert_eq!(p1.epoch, e2, "fencing keeps the epoch for WAL recovery");
    let mut saw = false;
    while let Ok(Some(c)) = tokio::time::timeout(Duration::from_millis(200), watch.next()).await {
        saw |= matches!(c, Change::Partition { partition: 1, .. });
    }
    assert!(saw, "the watch stream reports the lost partition");
    let e = node.heartbeat(BrokerId(2), silent).await.unwrap_err();
    assert_eq!(
        e,
        MetadataError::Command(CommandError::BrokerFenced(BrokerId(2)))
    );
    // Restarting, it registers again with a newer epoch; reopening the
    // partition bumps the stream epoch, refusing the old incarnation.
    let again = register(&node, 2).await;
    assert!(again > silent);
    assert!(assign(&node, "s", 1, 2, again).await > e2);
    node.shutdown().await;
}
