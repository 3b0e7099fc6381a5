//! In-process multi-node clusters: failover without losing acknowledged
//! commands, full restart from disk, membership changes under load,
//! learner catch-up by snapshot, leadership transfer.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use parking_lot::Mutex;
use skiff_common::{ObjectId, StreamEpoch, StreamId};
use skiff_metadata::CommandError;
use skiff_metadata::net::mem::MemRouter;
use skiff_metadata::{ClusterState, Command, MetadataConfig, MetadataError, MetadataNode, Output};

const READY: Duration = Duration::from_secs(20);

async fn start_cluster(router: &MemRouter, ids: &[u64], dir: &Path) -> BTreeMap<u64, MetadataNode> {
    let mut nodes = BTreeMap::new();
    for id in ids {
        let n = router
            .start_node(voter_config(*id, ids, dir))
            .await
            .unwrap();
        nodes.insert(*id, n);
    }
    for n in nodes.values() {
        n.wait_ready(READY).await.unwrap();
    }
    nodes
}

async fn leader_of(nodes: &BTreeMap<u64, MetadataNode>) -> u64 {
    let mut leader = None;
    eventually("a leader", READY, || {
        leader = nodes.values().find(|n| n.is_leader()).map(|n| n.id());
        leader.is_some()
    })
    .await;
    leader.unwrap()
}

/// Acknowledged commits of one stream: (object, start, end).
type Acked = Arc<Mutex<Vec<(u64, u64, u64)>>>;

/// Check every acknowledged commit is in the index and the index is contiguous.
fn check_acked(state: &ClusterState, stream: StreamId, acked: &[(u64, u64, u64)]) {
    let s = &state.streams[&stream];
    let mut next = 0;
    for (start, (end, _)) in &s.slices {
        assert_eq!(*start, next, "gap or overlap in stream {stream}");
        next = *end;
    }
    for (obj, start, end) in acked {
        assert_eq!(
            s.slices.get(start),
            Some(&(*end, ObjectId(*obj))),
            "acknowledged commit {obj} lost"
        );
    }
}

/// Commit ranges of 10 offsets to `stream` through `client` until `stop`.
fn spawn_writer(
    client: MetadataNode,
    stream: StreamId,
    epoch: StreamEpoch,
    stop: Arc<AtomicBool>,
    acked: Acked,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut end = client
            .read(|s| s.stream_meta(stream))
            .await
            .unwrap()
            .unwrap()
            .end_offset;
        while !stop.load(Ordering::Relaxed) {
            let id = match client.write(Command::ReserveObjectIds { count: 1 }).await {
                Ok(Output::IdRange { start, .. }) => start,
                Ok(o) => panic!("unexpected {o:?}"),
                Err(MetadataError::Unavailable(_)) => continue,
                Err(e) => panic!("unexpected error {e}"),
            };
            match client
                .write(commit_cmd(id, stream, epoch, end, end + 10))
                .await
            {
                Ok(_) => {
                    acked.lock().push((id, end, end + 10));
                    end += 10;
                }
                Err(MetadataError::Unavailable(_)) | Err(MetadataError::NotLeader { .. }) => {
                    // Unknown outcome: learn the truth from a linearizable read.
                    if let Ok(Some(m)) = client.read(|s| s.stream_meta(stream)).await {
                        end = m.end_offset;
                    }
                }
                // An earlier write with an unknown outcome was applied.
                Err(MetadataError::Command(CommandError::RangeConflict { end_offset, .. })) => {
                    end = end_offset;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_loses_no_acknowledged_command_and_restart_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let router = MemRouter::new(3);
    let mut nodes = start_cluster(&router, &[1, 2, 3], dir.path()).await;
    let first = leader_of(&nodes).await;
    // Write through a follower: forwarding to the leader.
    let follower = nodes.keys().copied().find(|id| *id != first).unwrap();
    let client = nodes[&follower].clone();
    let be = register(&client, 1).await;
    let streams = create_topic(&client, "t", 1).await;
    let epoch = assign(&client, "t", 0, 1, be).await;
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_writer(
        client.clone(),
        streams[0],
        epoch,
        stop.clone(),
        acked.clone(),
    );
    eventually("some commits", READY, || acked.lock().len() >= 30).await;

    // Kill the leader.
    let leader = leader_of(&nodes).await;
    nodes[&leader].shutdown().await;
    router.unregister(leader);
    nodes.remove(&leader);
    let n0 = acked.lock().len();
    eventually("commits under the new leader", READY, || {
        acked.lock().len() >= n0 + 30
    })
    .await;
    let new_leader = leader_of(&nodes).await;
    assert_ne!(new_leader, leader);
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();

    let any = nodes.values().next().unwrap().clone();
    let state = any.read(|s| s.clone()).await.unwrap();
    check_acked(&state, streams[0], &acked.lock());
    // Every surviving replica converges on the same state.
    let applied = any.raft().metrics().borrow().last_applied.map(|l| l.index);
    for n in nodes.values() {
        n.raft()
            .wait(Some(READY))
            .applied_index_at_least(applied, "converge")
            .await
            .unwrap();
        assert_eq!(n.read_local(|s| s.clone()), state);
    }

    // Restart every node from disk (the killed one too).
    for n in nodes.values() {
        n.shutdown().await;
        router.unregister(n.id());
    }
    let nodes = start_cluster(&router, &[1, 2, 3], dir.path()).await;
    let any = nodes.values().next().unwrap();
    let after = any.read(|s| s.clone()).await.unwrap();
    assert_eq!(after, state, "state after a full restart");
    for n in nodes.values() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_under_load_and_learner_catch_up_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let router = MemRouter::new(4);
    // Start with a single voter; node 2 joins as a voter through the join
    // protocol; node 4 waits to be added as a learner.
    let n1 = router
        .start_node(voter_config(1, &[1], dir.path()))
        .await
        .unwrap();
    n1.wait_ready(READY).await.unwrap();
    let be = register(&n1, 1).await;
    let streams = create_topic(&n1, "t", 1).await;
    let epoch = assign(&n1, "t", 0, 1, be).await;
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_writer(n1.clone(), streams[0], epoch, stop.clone(), acked.clone());
    // Past the snapshot threshold so newcomers need a snapshot install.
    eventually("commits before joining", READY, || {
        acked.lock().len() >= 250
    })
    .await;
    assert!(n1.raft().metrics().borrow().snapshot.is_some());

    let join2 = MetadataConfig {
        advertised_addr: Some("mem-2".into()),
        join: vec!["mem-1".into()],
        ..config(2, dir.path())
    };
    let n2 = router.start_node(join2).await.unwrap();
    eventually("node 2 is a voter", READY, || {
        n1.membership().0.contains(&2)
    })
    .await;

    let n4 = router
        .start_node(voter_config(4, &[1, 4], dir.path()))
        .await
        .unwrap();
    n1.add_learner(4, "mem-4".into()).await.unwrap();
    assert_eq!(n1.membership().1, BTreeSet::from([4]));
    // The learner caught up (through a snapshot: the early log is purged).
    let target = n1.raft().metrics().borrow().last_applied.map(|l| l.index);
    n4.raft()
        .wait(Some(READY))
        .applied_index_at_least(target, "learner catch-up")
        .await
        .unwrap();
    assert!(
        n4.raft().metrics().borrow().snapshot.is_some(),
        "learner installed a snapshot"
    );
    n1.promote(BTreeSet::from([4])).await.unwrap();
    assert_eq!(n1.membership().0, BTreeSet::from([1, 2, 4]));

    // Remove the original voter while writes continue through node 2.
    let n0 = acked.lock().len();
    eventually("more commits", READY, || acked.lock().len() >= n0 + 20).await;
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_writer(n2.clone(), streams[0], epoch, stop.clone(), acked.clone());
    let leader = if n1.is_leader() {
        n1.clone()
    } else {
        n2.clone()
    };
    leader.remove(BTreeSet::from([1])).await.unwrap();
    eventually("node 1 removed", READY, || !n2.membership().0.contains(&1)).await;
    let n0 = acked.lock().len();
    eventually("commits after removal", READY, || {
        acked.lock().len() >= n0 + 30
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();

    let state = n2.read(|s| s.clone()).await.unwrap();
    check_acked(&state, streams[0], &acked.lock());
    assert_eq!(n2.membership().0, BTreeSet::from([2, 4]));
    for n in [n1, n2, n4] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let router = MemRouter::new(5);
    let nodes = start_cluster(&router, &[1, 2, 3], dir.path()).await;
    let leader = leader_of(&nodes).await;
    let target = nodes.keys().copied().find(|id| *id != leader).unwrap();
    register(&nodes[&leader], 1).await;
    nodes[&leader].transfer_leadership(target).await.unwrap();
    assert_eq!(nodes[&leader].current_leader(), Some(target));
    assert!(nodes[&target].is_leader());
    // Writes keep working, including through the old leader.
    register(&nodes[&leader], 2).await;
    let brokers = nodes[&target].read(|s| s.brokers.len()).await.unwrap();
    assert_eq!(brokers, 2);
    for n in nodes.values() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_voters_survive_two_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let router = MemRouter::new(6);
    let mut nodes = start_cluster(&router, &[1, 2, 3, 4, 5], dir.path()).await;
    let leader = leader_of(&nodes).await;
    register(&nodes[&leader], 1).await;
    // Crash the leader and one more node: 3 of 5 remain, a quorum.
    let other = nodes.keys().copied().find(|id| *id != leader).unwrap();
    for id in [leader, other] {
        nodes[&id].shutdown().await;
        router.unregister(id);
        nodes.remove(&id);
    }
    let client = nodes.values().next().unwrap().clone();
    register(&client, 2).await;
    let brokers = client.read(|s| s.brokers.len()).await.unwrap();
    assert_eq!(brokers, 2);
    for n in nodes.values() {
        n.shutdown().await;
    }
}
