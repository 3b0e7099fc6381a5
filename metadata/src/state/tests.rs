use std::collections::BTreeMap;

use proptest::prelude::*;
use skiff_common::{BrokerId, ObjectId, StreamEpoch, StreamId};
use uuid::Uuid;

use super::*;
use crate::command::{CommitRange, NewObject, ObjectCommit, Output};

fn ok(state: &mut ClusterState, cmd: Command) -> Output {
    let (resp, _) = state.apply(&cmd);
    resp.unwrap_or_else(|e| panic!("{cmd:?} failed: {e}"))
}

fn err(state: &mut ClusterState, cmd: Command) -> CommandError {
    let before = state.clone();
    let (resp, changes) = state.apply(&cmd);
    let e = resp.expect_err("command should be rejected");
    assert_eq!(*state, before, "a rejected command must change nothing");
    assert!(changes.is_empty());
    e
}

fn listener() -> Vec<Listener> {
    vec![Listener {
        name: "PLAINTEXT".into(),
        host: "localhost".into(),
        port: 9092,
    }]
}

fn init() -> ClusterState {
    let mut s = ClusterState::default();
    ok(
        &mut s,
        Command::InitCluster {
            cluster_id: Uuid::from_u128(1),
        },
    );
    s
}

fn register(s: &mut ClusterState, id: i32, now_ms: u64) -> u64 {
    match ok(
        s,
        Command::RegisterBroker {
            broker: BrokerId(id),
            listeners: listener(),
            rack: None,
            now_ms,
        },
    ) {
        Output::BrokerRegistered { broker_epoch } => broker_epoch,
        o => panic!("unexpected {o:?}"),
    }
}

fn create_topic(s: &mut ClusterState, name: &str, partitions: u32) -> Vec<StreamId> {
    match ok(
        s,
        Command::CreateTopic {
            name: name.into(),
            topic_id: Uuid::new_v4(),
            partitions,
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        },
    ) {
        Output::TopicCreated { streams, .. } => streams,
        o => panic!("unexpected {o:?}"),
    }
}

fn assign(s: &mut ClusterState, topic: &str, p: u32, broker: i32, be: u64) -> StreamEpoch {
    match ok(
        s,
        Command::AssignPartition {
            topic: topic.into(),
            partition: p,
            broker: BrokerId(broker),
            broker_epoch: be,
            expected_epoch: None,
        },
    ) {
        Output::PartitionAssigned { epoch, .. } => epoch,
        o => panic!("unexpected {o:?}"),
    }
}

fn reserve(s: &mut ClusterState, n: u32) -> u64 {
    match ok(s, Command::ReserveObjectIds { count: n }) {
        Output::IdRange { start, .. } => start,
        o => panic!("unexpected {o:?}"),
    }
}

type Ranges = Vec<(StreamId, StreamEpoch, u64, u64)>;

fn commit(objects: Vec<(u64, Ranges)>, replaces: Vec<u64>) -> Command {
    Command::CommitObjects {
        commit: ObjectCommit {
            objects: objects
                .into_iter()
                .map(|(id, ranges)| NewObject {
                    id: ObjectId(id),
                    kind: ObjectKind::StreamSet,
                    size: 100,
                    ranges: ranges
                        .into_iter()
                        .map(|(stream, epoch, start, end)| CommitRange {
                            stream,
                            epoch,
                            start,
                            end,
                        })
                        .collect(),
                })
                .collect(),
            replaces: replaces.into_iter().map(ObjectId).collect(),
        },
        now_ms: 10,
    }
}

#[test]
fn nothing_applies_before_init_and_init_is_once() {
    let mut s = ClusterState::default();
    assert_eq!(
        err(&mut s, Command::ReserveObjectIds { count: 1 }),
        CommandError::NotInitialized
    );
    let mut s = init();
    assert_eq!(
        err(
            &mut s,
            Command::InitCluster {
                cluster_id: Uuid::from_u128(2)
            }
        ),
        CommandError::AlreadyInitialized
    );
}

#[test]
fn broker_sessions_and_fencing() {
    let mut s = init();
    let e1 = register(&mut s, 1, 0);
    ok(
        &mut s,
        Command::Heartbeat {
            broker: BrokerId(1),
            broker_epoch: e1,
            now_ms: 50,
        },
    );
    assert_eq!(
        err(
            &mut s,
            Command::Heartbeat {
                broker: BrokerId(9),
                broker_epoch: 1,
                now_ms: 50
            }
        ),
        CommandError::UnknownBroker(BrokerId(9))
    );
    let streams = create_topic(&mut s, "t", 2);
    let ep = assign(&mut s, "t", 0, 1, e1);
    assert_eq!(ep, StreamEpoch(1));
    // Session expiry fences broker 1: what it owned goes offline at the
    // same epoch, so its WAL recovery can still commit acknowledged data.
    match ok(
        &mut s,
        Command::ExpireSessions {
            now_ms: 200,
            session_timeout_ms: 100,
        },
    ) {
        Output::SessionsExpired { fenced } => assert_eq!(fenced, vec![BrokerId(1)]),
        o => panic!("{o:?}"),
    }
    assert_eq!(s.brokers[&BrokerId(1)].state, BrokerState::Fenced);
    let p = s.partition("t", 0).unwrap();
    assert_eq!(
        (p.epoch, p.state),
        (StreamEpoch(1), PartitionState::Offline)
    );
    assert_eq!(
        err(
            &mut s,
            Command::Heartbeat {
                broker: BrokerId(1),
                broker_epoch: e1,
                now_ms: 250
            }
        ),
        CommandError::BrokerFenced(BrokerId(1))
    );
    let id = reserve(&mut s, 1);
    ok(
        &mut s,
        commit(vec![(id, vec![(streams[0], ep, 0, 10)])], vec![]),
    );
    // Restart: a new incarnation with a higher epoch; the old one is stale.
    let e2 = register(&mut s, 1, 300);
    assert!(e2 > e1);
    assert_eq!(
        err(
            &mut s,
            Command::Heartbeat {
                broker: BrokerId(1),
                broker_epoch: e1,
                now_ms: 300
            }
        ),
        CommandError::StaleBrokerEpoch {
            broker: BrokerId(1),
            current: e2,
            held: e1
        }
    );
    assert_eq!(assign(&mut s, "t", 0, 1, e2), StreamEpoch(2));
    assert_eq!(s.partitions_owned_by(BrokerId(1)).len(), 1);
    // Once reopened, the old incarnation's commits are refused.
    let id = reserve(&mut s, 1);
    assert!(matches!(
        err(
            &mut s,
            commit(vec![(id, vec![(streams[0], ep, 10, 20)])], vec![])
        ),
        CommandError::Fenced {
            current: StreamEpoch(2),
            held: StreamEpoch(1),
            ..
        }
    ));
}

#[test]
fn reregistering_a_live_broker_fences_its_old_partitions() {
    let mut s = init();
    let e1 = register(&mut s, 1, 0);
    create_topic(&mut s, "t", 1);
    assign(&mut s, "t", 0, 1, e1);
    let (_, changes) = s.apply(&Command::RegisterBroker {
        broker: BrokerId(1),
        listeners: listener(),
        rack: Some("r1".into()),
        now_ms: 5,
    });
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::Partition { .. }))
    );
    assert_eq!(s.partition("t", 0).unwrap().state, PartitionState::Offline);
    assert_eq!(s.brokers[&BrokerId(1)].state, BrokerState::Active);
}

#[test]
fn topic_validation() {
    let mut s = init();
    create_topic(&mut s, "orders", 3);
    let cmd = |name: &str, p: u32, cfg: (&str, &str)| Command::CreateTopic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
        partitions: p,
        configs: BTreeMap::from([(cfg.0.into(), cfg.1.into())]),
    };
    assert!(matches!(
        err(&mut s, cmd("orders", 1, ("a", "b"))),
        CommandError::TopicExists(_)
    ));
    assert!(matches!(
        err(&mut s, cmd("bad name", 1, ("a", "b"))),
        CommandError::InvalidTopicName(_)
    ));
    assert!(matches!(
        err(&mut s, cmd("..", 1, ("a", "b"))),
        CommandError::InvalidTopicName(_)
    ));
    assert!(matches!(
        err(&mut s, cmd("x", 0, ("a", "b"))),
        CommandError::InvalidPartitionCount { .. }
    ));
    assert!(matches!(
        err(&mut s, cmd("x", 1, ("retention.ms", "soon"))),
        CommandError::InvalidConfig { .. }
    ));
    assert!(matches!(
        err(&mut s, cmd("x", 1, ("cleanup.policy", "shred"))),
        CommandError::InvalidConfig { .. }
    ));
    assert!(matches!(
        err(
            &mut s,
            Command::CreatePartitions {
                name: "orders".into(),
                total: 2
            }
        ),
        CommandError::InvalidPartitionCount { current: 3, .. }
    ));
    ok(
        &mut s,
        Command::CreatePartitions {
            name: "orders".into(),
            total: 5,
        },
    );
    assert_eq!(s.topics["orders"].partitions.len(), 5);
    let streams: std::collections::BTreeSet<_> = s.topics["orders"]
        .partitions
        .iter()
        .map(|p| p.stream)
        .collect();
    assert_eq!(streams.len(), 5, "every partition has its own stream");
    ok(
        &mut s,
        Command::AlterTopicConfigs {
            name: "orders".into(),
            set: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
            delete: vec!["retention.ms".into()],
        },
    );
    assert_eq!(
        s.topics["orders"].configs,
        BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())])
    );
    let id = s.topics["orders"].id;
    assert_eq!(s.topic_by_id(id).unwrap().name, "orders");
    ok(
        &mut s,
        Command::DeleteTopic {
            name: "orders".into(),
            now_ms: 1,
        },
    );
    assert!(s.topic_by_id(id).is_none());
    assert!(matches!(
        err(
            &mut s,
            Command::DeleteTopic {
                name: "orders".into(),
                now_ms: 1
            }
        ),
        CommandError::UnknownTopic(_)
    ));
}

#[test]
fn assignment_cas_and_moves() {
    let mut s = init();
    let e1 = register(&mut s, 1, 0);
    let e2 = register(&mut s, 2, 0);
    create_topic(&mut s, "t", 1);
    assign(&mut s, "t", 0, 1, e1);
    ok(
        &mut s,
        Command::BeginMove {
            topic: "t".into(),
            partition: 0,
            to: BrokerId(2),
        },
    );
    assert_eq!(
        s.partition("t", 0).unwrap().state,
        PartitionState::Moving { to: BrokerId(2) }
    );
    let stale = Command::AssignPartition {
        topic: "t".into(),
        partition: 0,
        broker: BrokerId(2),
        broker_epoch: e2,
        expected_epoch: Some(StreamEpoch(7)),
    };
    assert!(matches!(
        err(&mut s, stale),
        CommandError::EpochMismatch { .. }
    ));
    let out = ok(
        &mut s,
        Command::AssignPartition {
            topic: "t".into(),
            partition: 0,
            broker: BrokerId(2),
            broker_epoch: e2,
            expected_epoch: Some(StreamEpoch(1)),
        },
    );
    assert!(matches!(
        out,
        Output::PartitionAssigned {
            epoch: StreamEpoch(2),
            ..
        }
    ));
    let p = s.partition("t", 0).unwrap();
    assert_eq!(
        (p.owner, p.state),
        (Some(BrokerId(2)), PartitionState::Online)
    );
    assert!(matches!(
        err(
            &mut s,
            Command::AssignPartition {
                topic: "t".into(),
                partition: 5,
                broker: BrokerId(2),
                broker_epoch: e2,
                expected_epoch: None,
            }
        ),
        CommandError::UnknownPartition { .. }
    ));
}

#[test]
fn commits_are_fenced_contiguous_and_compaction_is_atomic() {
    let mut s = init();
    let e1 = register(&mut s, 1, 0);
    let st = create_topic(&mut s, "t", 2);
    let (a, b) = (st[0], st[1]);
    let ea = assign(&mut s, "t", 0, 1, e1);
    let eb = assign(&mut s, "t", 1, 1, e1);
    let ids = reserve(&mut s, 10);
    // Unreserved object, gaps, overlaps and empty ranges are rejected.
    assert_eq!(
        err(&mut s, commit(vec![(99, vec![(a, ea, 0, 5)])], vec![])),
        CommandError::UnknownObject(ObjectId(99))
    );
    assert!(matches!(
        err(&mut s, commit(vec![(ids, vec![(a, ea, 1, 5)])], vec![])),
        CommandError::RangeConflict { end_offset: 0, .. }
    ));
    assert!(matches!(
        err(&mut s, commit(vec![(ids, vec![(a, ea, 0, 0)])], vec![])),
        CommandError::Invalid(_)
    ));
    ok(
        &mut s,
        commit(vec![(ids, vec![(a, ea, 0, 5), (b, eb, 0, 3)])], vec![]),
    );
    ok(&mut s, commit(vec![(ids + 1, vec![(a, ea, 5, 9)])], vec![]));
    assert!(matches!(
        err(
            &mut s,
            commit(vec![(ids + 2, vec![(a, ea, 8, 12)])], vec![])
        ),
        CommandError::RangeConflict { end_offset: 9, .. }
    ));
    // A committed id cannot be committed again.
    assert!(matches!(
        err(&mut s, commit(vec![(ids, vec![(a, ea, 9, 12)])], vec![])),
        CommandError::UnknownObject(_)
    ));
    assert_eq!(s.stream_meta(a).unwrap().end_offset, 9);
    let slices = s.lookup(a, 6, 10).unwrap();
    assert_eq!(slices.len(), 1);
    assert_eq!(
        (slices[0].object, slices[0].start, slices[0].end),
        (ObjectId(ids + 1), 5, 9)
    );
    // Compaction: one stream object replaces a's two slices... but object
    // `ids` also holds b, so it must re-cover b too.
    assert!(matches!(
        err(
            &mut s,
            commit(vec![(ids + 2, vec![(a, ea, 0, 9)])], vec![ids, ids + 1])
        ),
        CommandError::Invalid(_)
    ));
    ok(
        &mut s,
        commit(
            vec![
                (ids + 2, vec![(a, ea, 0, 9)]),
                (ids + 3, vec![(b, eb, 0, 3)]),
            ],
            vec![ids, ids + 1],
        ),
    );
    let slices = s.lookup(a, 0, 10).unwrap();
    assert_eq!(slices.len(), 1);
    assert_eq!((slices[0].object, slices[0].end), (ObjectId(ids + 2), 9));
    assert_eq!(s.list_objects().len(), 2);
    assert_eq!(
        s.deletable_objects(10, 0),
        vec![ObjectId(ids), ObjectId(ids + 1)]
    );
    assert!(
        s.deletable_objects(10, 5).is_empty(),
        "grace period not over"
    );
    ok(
        &mut s,
        Command::ForgetObjects {
            ids: vec![ObjectId(ids), ObjectId(ids + 2)],
        },
    );
    assert!(!s.objects.contains_key(&ObjectId(ids)));
    assert!(
        s.objects.contains_key(&ObjectId(ids + 2)),
        "live objects are never forgotten"
    );
    // Trim: fenced epochs fail; a fully trimmed object becomes deletable.
    assert!(matches!(
        err(
            &mut s,
            Command::TrimStream {
                stream: b,
                epoch: StreamEpoch(9),
                new_start: 3,
                now_ms: 20
            }
        ),
        CommandError::Fenced { .. }
    ));
    ok(
        &mut s,
        Command::TrimStream {
            stream: b,
            epoch: eb,
            new_start: 3,
            now_ms: 20,
        },
    );
    assert_eq!(s.stream_meta(b).unwrap().start_offset, 3);
    assert!(s.deletable_objects(20, 0).contains(&ObjectId(ids + 3)));
}

#[test]
fn producer_ids_need_a_live_broker() {
    let mut s = init();
    let e = register(&mut s, 1, 0);
    let first = ok(
        &mut s,
        Command::AllocateProducerIds {
            broker: BrokerId(1),
            broker_epoch: e,
            count: 1000,
        },
    );
    let second = ok(
        &mut s,
        Command::AllocateProducerIds {
            broker: BrokerId(1),
            broker_epoch: e,
            count: 1000,
        },
    );
    assert_eq!(
        first,
        Output::IdRange {
            start: 0,
            end: 1000
        }
    );
    assert_eq!(
        second,
        Output::IdRange {
            start: 1000,
            end: 2000
        }
    );
    assert!(matches!(
        err(
            &mut s,
            Command::AllocateProducerIds {
                broker: BrokerId(1),
                broker_epoch: e + 1,
                count: 1
            }
        ),
        CommandError::StaleBrokerEpoch { .. }
    ));
    assert!(matches!(
        err(
            &mut s,
            Command::AllocateProducerIds {
                broker: BrokerId(1),
                broker_epoch: e,
                count: 0
            }
        ),
        CommandError::Invalid(_)
    ));
}

#[test]
fn coordinator_placement_matches_kafka() {
    // Java: "hello".hashCode() == 99162322; 99162322 % 50 == 22.
    assert_eq!(ClusterState::coordinator_partition("hello", 50), 22);
    assert_eq!(ClusterState::coordinator_partition("", 50), 0);
    let mut s = init();
    let e = register(&mut s, 3, 0);
    create_topic(&mut s, "__consumer_offsets", 50);
    assert_eq!(s.coordinator_for("__consumer_offsets", "hello"), None);
    assign(&mut s, "__consumer_offsets", 22, 3, e);
    assert_eq!(
        s.coordinator_for("__consumer_offsets", "hello"),
        Some((22, BrokerId(3)))
    );
}

proptest! {
    /// Whatever sequence of commits is proposed, the committed ranges of
    /// each stream stay contiguous from its start and never overlap, and
    /// the state survives a postcard round-trip (snapshots).
    #[test]
    fn random_commits_keep_ranges_contiguous(ops in proptest::collection::vec((0u8..3, 0u64..20, 1u64..20, any::<bool>()), 1..60)) {
        let mut s = init();
        let e = register(&mut s, 1, 0);
        let st = create_topic(&mut s, "t", 3);
        let epochs: Vec<StreamEpoch> = (0..3).map(|p| assign(&mut s, "t", p, 1, e)).collect();
        for (p, start, len, stale) in ops {
            let id = reserve(&mut s, 1);
            let p = p as usize;
            let ep = if stale { StreamEpoch(epochs[p].0 - 1) } else { epochs[p] };
            let _ = s.apply(&commit(vec![(id, vec![(st[p], ep, start, start + len)])], vec![]));
        }
        for stream in &st {
            let ss = &s.streams[stream];
            let mut next = 0;
            for (start, (end, _)) in &ss.slices {
                prop_assert_eq!(*start, next);
                prop_assert!(end > start);
                next = *end;
            }
            prop_assert_eq!(next, ss.end);
        }
        let bytes = postcard::to_stdvec(&s).unwrap();
        let back: ClusterState = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back, s);
    }
}

#[test]
fn a_batch_applies_each_command_on_its_own() {
    let mut s = init();
    let (resp, changes) = s.apply(&Command::Batch(vec![
        Command::ReserveObjectIds { count: 2 },
        Command::ReserveObjectIds { count: 0 },
        Command::RegisterBroker {
            broker: BrokerId(4),
            listeners: listener(),
            rack: None,
            now_ms: 1,
        },
    ]));
    let Ok(Output::Batch(rs)) = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(rs[0], Ok(Output::IdRange { start: 0, end: 2 }));
    assert!(matches!(rs[1], Err(CommandError::Invalid(_))));
    assert!(matches!(rs[2], Ok(Output::BrokerRegistered { .. })));
    assert_eq!(changes.len(), 1);
    assert_eq!(
        err(&mut s, Command::Batch(vec![Command::Batch(vec![])])),
        CommandError::Invalid("batch too large or nested".into())
    );
}

proptest! {
    #[test]
    fn id_ranges_behave_like_a_set(len in 1u64..200, removes in proptest::collection::vec(0u64..220, 0..100)) {
        let mut r = IdRanges::default();
        let mut set: std::collections::BTreeSet<u64> = (10..10 + len).collect();
        r.insert_range(10, 10 + len);
        for id in removes {
            prop_assert_eq!(r.remove(id), set.remove(&id));
        }
        for id in 0..230 {
            prop_assert_eq!(r.contains(id), set.contains(&id));
        }
    }
}
