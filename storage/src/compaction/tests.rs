use object_store::memory::InMemory;

use super::*;
use crate::catalog::InMemoryCatalog;

fn compactor(config: CompactionConfig) -> Compactor {
    Compactor::new(
        Arc::new(InMemoryCatalog::new()),
        Arc::new(InMemory::new()),
        config,
    )
}

fn info(
    id: u64,
    kind: ObjectKind,
    size: u64,
    age_s: u64,
    ranges: &[(u64, u64, u64)],
) -> ObjectInfo {
    ObjectInfo {
        id: ObjectId(id),
        kind,
        size,
        committed_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 - age_s),
        ranges: ranges
            .iter()
            .map(|&(s, a, b)| (StreamId(s), a, b))
            .collect(),
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1000)
}

fn config() -> CompactionConfig {
    CompactionConfig {
        small_object_bytes: 100,
        split_after: Duration::from_secs(500),
        max_input_bytes: 250,
        ..CompactionConfig::default()
    }
}

fn ids(p: &Plan) -> Vec<u64> {
    p.inputs.iter().map(|o| o.id.0).collect()
}

#[test]
fn small_stream_set_objects_are_merged_in_bounded_groups() {
    let c = compactor(config());
    let objs: Vec<_> = (1..=5)
        .map(|i| {
            info(
                i,
                ObjectKind::StreamSet,
                80,
                10,
                &[(1, i * 10, i * 10 + 10)],
            )
        })
        .chain([info(9, ObjectKind::StreamSet, 500, 10, &[(2, 0, 5)])])
        .collect();
    let plans = c.plan(&objs, now());
    // 80+80+80 > 250: groups of 3 would exceed the input bound.
    assert_eq!(
        plans.iter().map(ids).collect::<Vec<_>>(),
        vec![vec![1, 2, 3], vec![4, 5]]
    );
    assert!(plans.iter().all(|p| !p.split_all));
}

#[test]
fn lone_young_object_is_left_alone_and_old_ones_split() {
    let c = compactor(config());
    assert!(
        c.plan(
            &[info(1, ObjectKind::StreamSet, 80, 10, &[(1, 0, 10)])],
            now()
        )
        .is_empty()
    );
    let plans = c.plan(
        &[info(
            1,
            ObjectKind::StreamSet,
            800,
            600,
            &[(1, 0, 10), (2, 0, 3)],
        )],
        now(),
    );
    assert_eq!(plans.len(), 1);
    assert!(plans[0].split_all);
}

#[test]
fn adjacent_small_stream_objects_merge_per_stream() {
    let c = compactor(config());
    let objs = vec![
        info(1, ObjectKind::Stream, 50, 10, &[(1, 0, 10)]),
        info(2, ObjectKind::Stream, 50, 10, &[(1, 10, 20)]),
        // Not adjacent to 2: starts a new run that stays alone.
        info(3, ObjectKind::Stream, 50, 10, &[(1, 30, 40)]),
        // A big one breaks runs.
        info(4, ObjectKind::Stream, 500, 10, &[(1, 40, 50)]),
        info(5, ObjectKind::Stream, 50, 10, &[(1, 50, 60)]),
        info(6, ObjectKind::Stream, 50, 10, &[(1, 60, 70)]),
        info(7, ObjectKind::Stream, 50, 10, &[(2, 0, 10)]),
    ];
    let plans = c.plan(&objs, now());
    assert_eq!(
        plans.iter().map(ids).collect::<Vec<_>>(),
        vec![vec![1, 2], vec![5, 6]]
    );
}

#[test]
fn config_validates() {
    assert!(CompactionConfig::default().validate().is_ok());
    let bad = CompactionConfig {
        max_input_bytes: 1,
        ..CompactionConfig::default()
    };
    assert!(bad.validate().is_err());
}
