//! The state machine against Kafka's answers for the Java client.

use super::*;

fn meta(v: TxnValue) -> TxnMeta {
    TxnMeta::new(v, 0)
}

fn ready(p: Result<InitPlan, E>) -> (TxnValue, i16) {
    match p {
        Ok(InitPlan::Ready(v, last)) => (v, last),
        other => panic!("expected Ready, got {other:?}"),
    }
}

fn tp(t: &str, p: i32) -> (String, i32) {
    (t.to_string(), p)
}

/// A transactional id after its first InitProducerId (epoch 0).
fn initialised() -> TxnMeta {
    let (v, last) = ready(init(&meta(fresh(7, 60_000, 0)), 60_000, None, None, 1));
    assert_eq!((v.producer_id, v.producer_epoch, last), (7, 0, NO_EPOCH));
    meta(v)
}

fn apply(m: &mut TxnMeta, v: TxnValue) {
    m.value = v;
}

#[test]
fn full_commit_cycle_and_idempotent_end() {
    let mut m = initialised();
    let v = add_partitions(Some(&m), 7, 0, &[tp("a", 0), tp("a", 1)], 10)
        .unwrap()
        .unwrap();
    assert_eq!((v.state, v.start_ms), (TxnState::Ongoing, 10));
    apply(&mut m, v);
    // Adding what is already there writes nothing.
    assert_eq!(add_partitions(Some(&m), 7, 0, &[tp("a", 1)], 11), Ok(None));
    let v = add_partitions(Some(&m), 7, 0, &[tp("b", 0)], 12)
        .unwrap()
        .unwrap();
    assert_eq!(v.start_ms, 10, "start time is the transaction's first add");
    assert_eq!(v.partitions.len(), 3);
    apply(&mut m, v);
    let EndPlan::Prepare(v) = end(Some(&m), 7, 0, true, false, 20).unwrap() else {
        panic!()
    };
    assert_eq!((v.state, v.producer_epoch), (TxnState::PrepareCommit, 0));
    apply(&mut m, v);
    // While markers are being written: retries wait, the opposite is wrong.
    assert_eq!(
        end(Some(&m), 7, 0, true, false, 21),
        Err(E::ConcurrentTransactions)
    );
    assert_eq!(
        end(Some(&m), 7, 0, false, false, 21),
        Err(E::InvalidTxnState)
    );
    assert_eq!(
        add_partitions(Some(&m), 7, 0, &[tp("c", 0)], 21),
        Err(E::ConcurrentTransactions)
    );
    let v = completed(&m.value, 22);
    assert_eq!(v.state, TxnState::CompleteCommit);
    assert!(v.partitions.is_empty());
    apply(&mut m, v);
    // Flink's resume-commit: the same id/epoch commits again idempotently.
    assert_eq!(
        end(Some(&m), 7, 0, true, false, 23),
        Ok(EndPlan::Done(7, 0))
    );
    assert_eq!(
        end(Some(&m), 7, 0, false, false, 23),
        Err(E::InvalidTxnState)
    );
    // The next transaction starts from a completed one.
    let v = add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 30)
        .unwrap()
        .unwrap();
    assert_eq!((v.state, v.start_ms), (TxnState::Ongoing, 30));
}

#[test]
fn bad_input_gets_the_java_clients_codes() {
    let m = initialised();
    assert_eq!(
        add_partitions(None, 7, 0, &[tp("a", 0)], 1),
        Err(E::InvalidProducerIdMapping)
    );
    assert_eq!(
        add_partitions(Some(&m), 8, 0, &[tp("a", 0)], 1),
        Err(E::InvalidProducerIdMapping)
    );
    assert_eq!(
        add_partitions(Some(&m), 7, 3, &[tp("a", 0)], 1),
        Err(E::ProducerFenced)
    );
    assert_eq!(
        end(None, 7, 0, true, false, 1),
        Err(E::InvalidProducerIdMapping)
    );
    assert_eq!(end(Some(&m), 7, 1, true, false, 1), Err(E::ProducerFenced));
    assert_eq!(
        end(Some(&m), 7, 0, true, false, 1),
        Err(E::InvalidTxnState),
        "nothing to commit in Empty"
    );
    let mut pending = m.clone();
    pending.pending = true;
    assert_eq!(
        add_partitions(Some(&pending), 7, 0, &[tp("a", 0)], 1),
        Err(E::ConcurrentTransactions)
    );
    assert_eq!(
        init(&pending, 1000, None, None, 1),
        Err(E::ConcurrentTransactions)
    );
}

#[test]
fn init_bumps_the_epoch_and_fences_an_ongoing_transaction() {
    let mut m = initialised();
    let v = add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 5)
        .unwrap()
        .unwrap();
    apply(&mut m, v);
    let Ok(InitPlan::FenceOngoing(v)) = init(&m, 60_000, None, None, 6) else {
        panic!()
    };
    assert_eq!((v.state, v.producer_epoch), (TxnState::PrepareAbort, 1));
    assert_eq!(
        v.partitions.len(),
        1,
        "markers go to the transaction's partitions"
    );
    apply(&mut m, v);
    // The old instance is fenced from now on.
    assert_eq!(end(Some(&m), 7, 0, true, false, 7), Err(E::ProducerFenced));
    assert_eq!(
        init(&m, 60_000, None, None, 7),
        Err(E::ConcurrentTransactions)
    );
    let v = completed(&m.value, 8);
    apply(&mut m, v);
    let (v, _) = ready(init(&m, 60_000, None, None, 9));
    assert_eq!((v.state, v.producer_epoch), (TxnState::Empty, 2));
}

#[test]
fn kip_360_recovery_and_retries() {
    let m = initialised();
    // The current id/epoch: bumped, the old epoch remembered.
    let (v, last) = ready(init(&m, 1000, Some((7, 0)), None, 2));
    assert_eq!((v.producer_epoch, last), (1, 0));
    let mut bumped = meta(v);
    bumped.last_epoch = last;
    // A retry of that same request gets the same epoch back.
    let (v, _) = ready(init(&bumped, 1000, Some((7, 0)), None, 3));
    assert_eq!(v.producer_epoch, 1);
    // A stale epoch or a foreign producer id is fenced.
    assert_eq!(
        init(&bumped, 1000, Some((7, 5)), None, 3),
        Err(E::ProducerFenced)
    );
    assert_eq!(
        init(&bumped, 1000, Some((99, 1)), None, 3),
        Err(E::ProducerFenced)
    );
}

#[test]
fn exhausted_epochs_rotate_the_producer_id() {
    let mut v = fresh(7, 1000, 0);
    v.producer_epoch = i16::MAX - 1;
    let (next, _) = ready(init(&meta(v.clone()), 1000, None, Some(70), 1));
    assert_eq!(
        (next.producer_id, next.producer_epoch, next.prev_producer_id),
        (70, 0, 7)
    );
    // The retry after the rotation, with the old id and exhausted epoch.
    let mut rotated = meta(next);
    rotated.last_epoch = i16::MAX - 1;
    assert!(init(&rotated, 1000, Some((7, i16::MAX - 1)), None, 2).is_ok());
}

#[test]
fn kip_890_end_bumps_and_defends_against_late_retries() {
    let mut m = initialised();
    let v = add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 5)
        .unwrap()
        .unwrap();
    apply(&mut m, v);
    let EndPlan::Prepare(v) = end(Some(&m), 7, 0, true, true, 6).unwrap() else {
        panic!()
    };
    assert_eq!(v.producer_epoch, 1, "v2 bumps at the end of a transaction");
    apply(&mut m, v);
    assert_eq!(
        end(Some(&m), 7, 0, true, true, 7),
        Err(E::ConcurrentTransactions)
    );
    let v = completed(&m.value, 8);
    apply(&mut m, v);
    // The late retry (old epoch) gets the same answer, not a new commit.
    assert_eq!(end(Some(&m), 7, 0, true, true, 9), Ok(EndPlan::Done(7, 1)));
    assert_eq!(end(Some(&m), 7, 0, false, true, 9), Err(E::ProducerFenced));
    // Without v2 the old epoch is simply fenced.
    assert_eq!(end(Some(&m), 7, 0, true, false, 9), Err(E::ProducerFenced));
}

#[test]
fn timeouts() {
    let mut m = initialised();
    let v = add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 1_000)
        .unwrap()
        .unwrap();
    apply(&mut m, v);
    assert!(!timed_out(&m, 1_000 + 60_000));
    assert!(timed_out(&m, 1_001 + 60_000));
    let f = fence(&m.value, 70_000);
    assert_eq!((f.state, f.producer_epoch), (TxnState::PrepareAbort, 1));
    m.pending = true;
    assert!(!timed_out(&m, 1_000_000));
}

#[test]
fn verify_only() {
    let mut m = initialised();
    assert_eq!(
        verify_partitions(Some(&m), 7, 0, &[tp("a", 0)]),
        Ok(vec![E::InvalidTxnState.code()])
    );
    let v = add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 1)
        .unwrap()
        .unwrap();
    apply(&mut m, v);
    assert_eq!(
        verify_partitions(Some(&m), 7, 0, &[tp("a", 0), tp("a", 1)]),
        Ok(vec![0, E::InvalidTxnState.code()])
    );
    assert_eq!(
        verify_partitions(Some(&m), 7, 9, &[tp("a", 0)]),
        Err(E::ProducerFenced)
    );
}

#[test]
fn state_names_round_trip() {
    for s in TxnState::ALL {
        assert_eq!(TxnState::from_name(s.name()), Some(s));
        assert_eq!(TxnState::from_i8(s as i8), Some(s));
    }
    assert_eq!(TxnState::from_i8(8), None);
}
