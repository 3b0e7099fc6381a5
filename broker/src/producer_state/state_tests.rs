use proptest::prelude::*;
use skiff_wire::kafka_protocol::error::ResponseError;

use super::*;

fn batch(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchInfo {
    BatchInfo {
        producer_id: pid,
        epoch,
        first_seq: seq,
        last_offset_delta: n - 1,
        max_timestamp: 1,
        transactional: false,
    }
}

fn code(r: Result<Check, KafkaError>) -> ResponseError {
    r.expect_err("refused").code
}

#[test]
fn sequences_duplicates_and_gaps() {
    let mut s = ProducerStates::default();
    let b0 = batch(7, 0, 0, 3);
    assert_eq!(s.check_data(&b0), Ok(Check::Append));
    s.apply_data(&b0, 100, 1);
    let b1 = batch(7, 0, 3, 2);
    assert_eq!(s.check_data(&b1), Ok(Check::Append));
    s.apply_data(&b1, 103, 1);
    // the first batch again: a duplicate with its original offsets
    match s.check_data(&b0) {
        Ok(Check::Duplicate(m)) => {
            assert_eq!((m.first_offset, m.last_offset), (100, 102));
        }
        other => panic!("{other:?}"),
    }
    // a gap
    assert_eq!(
        code(s.check_data(&batch(7, 0, 6, 1))),
        ResponseError::OutOfOrderSequenceNumber
    );
    // an overlapping, non-identical range is out of order too
    assert_eq!(
        code(s.check_data(&batch(7, 0, 1, 2))),
        ResponseError::OutOfOrderSequenceNumber
    );
    // a new epoch must start at 0
    assert_eq!(
        code(s.check_data(&batch(7, 1, 5, 1))),
        ResponseError::OutOfOrderSequenceNumber
    );
    s.apply_data(&batch(7, 1, 0, 1), 105, 2);
    // the old epoch is fenced, even its duplicates
    assert_eq!(code(s.check_data(&b1)), ResponseError::InvalidProducerEpoch);
    // an unknown producer starts at sequence 0, any epoch
    assert_eq!(s.check_data(&batch(8, 3, 0, 1)), Ok(Check::Append));
    // a later sequence would acknowledge a gap: UNKNOWN_PRODUCER_ID
    assert_eq!(
        code(s.check_data(&batch(8, 3, 42, 1))),
        ResponseError::UnknownProducerId
    );
}

#[test]
fn only_the_last_five_batches_are_remembered() {
    let mut s = ProducerStates::default();
    for i in 0..6 {
        s.apply_data(&batch(1, 0, i, 1), i64::from(i), 0);
    }
    assert_eq!(
        code(s.check_data(&batch(1, 0, 0, 1))),
        ResponseError::OutOfOrderSequenceNumber
    );
    assert!(matches!(
        s.check_data(&batch(1, 0, 1, 1)),
        Ok(Check::Duplicate(_))
    ));
}

#[test]
fn sequence_wraps_at_i32_max() {
    let mut s = ProducerStates::default();
    let b = batch(1, 0, i32::MAX - 1, 4);
    assert_eq!(b.last_seq(), 1);
    s.apply_data(&batch(1, 0, i32::MAX - 1, 2), 0, 0);
    assert_eq!(s.check_data(&batch(1, 0, 0, 1)), Ok(Check::Append));
    assert_eq!(
        code(s.check_data(&batch(1, 0, 1, 1))),
        ResponseError::OutOfOrderSequenceNumber
    );
}

#[test]
fn transactions_lso_and_aborted_index() {
    let mut s = ProducerStates::default();
    let mut t = batch(1, 0, 0, 2);
    t.transactional = true;
    s.apply_data(&t, 10, 0);
    let mut t2 = batch(2, 0, 0, 1);
    t2.transactional = true;
    s.apply_data(&t2, 12, 0);
    assert_eq!(s.last_stable_offset(20), 10);
    // a non-transactional write during the transaction
    assert_eq!(
        code(s.check_data(&batch(1, 0, 2, 1))),
        ResponseError::InvalidTxnState
    );
    let abort = MarkerInfo {
        producer_id: 1,
        epoch: 0,
        coordinator_epoch: 3,
        commit: false,
        timestamp: 5,
    };
    assert_eq!(s.check_marker(&abort), Ok(()));
    s.apply_marker(&abort, 13, 0);
    // the marker at 13 is not durable below a high watermark of 13
    assert_eq!(s.last_stable_offset(13), 10);
    assert_eq!(s.last_stable_offset(20), 12);
    s.apply_marker(
        &MarkerInfo {
            producer_id: 2,
            commit: true,
            ..abort
        },
        14,
        0,
    );
    assert_eq!(s.last_stable_offset(20), 20);
    assert_eq!(
        s.aborted_between(0, 20),
        vec![AbortedTxn {
            producer_id: 1,
            first_offset: 10,
            last_offset: 13
        }]
    );
    assert!(s.aborted_between(14, 20).is_empty());
    assert!(s.aborted_between(0, 10).is_empty());
    // fencing of markers
    let stale = MarkerInfo {
        coordinator_epoch: 2,
        ..abort
    };
    assert_eq!(
        s.check_marker(&stale).expect_err("fenced").code,
        ResponseError::TransactionCoordinatorFenced
    );
    let old = MarkerInfo { epoch: -5, ..abort };
    assert_eq!(
        s.check_marker(&old).expect_err("fenced").code,
        ResponseError::InvalidProducerEpoch
    );
    s.prune_aborted(14);
    assert!(s.aborted.is_empty());
}

#[test]
fn expiry_and_bound_keep_ongoing_transactions() {
    let mut s = ProducerStates::default();
    let mut t = batch(1, 0, 0, 1);
    t.transactional = true;
    s.apply_data(&t, 0, 10);
    for pid in 2..=20 {
        s.apply_data(&batch(pid, 0, 0, 1), pid, pid as u64 * 10);
    }
    assert_eq!(s.expire(100), 8); // pids 2..=9, not 1
    assert!(s.producer(1).is_some());
    assert_eq!(s.len(), 12);
    assert_eq!(s.bound(5), 7);
    assert!(s.len() <= 5);
    assert!(s.producer(1).is_some());
    assert!(s.producer(20).is_some());
}

proptest! {
    /// A client that retries any of its last five batches in any order
    /// never gets a second append, and every fresh batch in sequence is
    /// accepted.
    #[test]
    fn retries_never_append_twice(sizes in proptest::collection::vec(1i32..5, 1..40),
                                   retries in proptest::collection::vec(0usize..5, 0..40)) {
        let mut s = ProducerStates::default();
        let mut seq = 0;
        let mut offset = 0i64;
        let mut sent: Vec<(BatchInfo, i64)> = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let b = batch(1, 0, seq, *n);
            prop_assert_eq!(s.check_data(&b), Ok(Check::Append));
            s.apply_data(&b, offset, 0);
            sent.push((b, offset));
            offset += i64::from(*n);
            seq = increment_sequence(seq, *n);
            if let Some(back) = retries.get(i)
                && *back < sent.len()
                && *back < MAX_BATCHES
            {
                let (old, at) = sent[sent.len() - 1 - back];
                match s.check_data(&old) {
                    Ok(Check::Duplicate(m)) => prop_assert_eq!(m.first_offset, at),
                    other => prop_assert!(false, "not a duplicate: {:?}", other),
                }
            }
        }
    }
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchInfo {
    BatchInfo {
        transactional: true,
        ..batch(pid, epoch, seq, n)
    }
}

fn marker(pid: i64, epoch: i16, commit: bool) -> MarkerInfo {
    MarkerInfo {
        producer_id: pid,
        epoch,
        coordinator_epoch: 0,
        commit,
        timestamp: 1,
    }
}

/// KIP-890: only a batch that starts a transaction needs a guard, and a
/// marker for its producer voids it (the late batch of the ended
/// transaction cannot open another one).
#[test]
fn verification_guards() {
    let mut s = ProducerStates::default();
    let b0 = txn_batch(7, 0, 0, 2);
    assert!(s.needs_verification(&b0));
    assert!(!s.needs_verification(&batch(7, 0, 0, 2)));
    let retry = |r: Result<(), KafkaError>| r.expect_err("refused").code;
    assert_eq!(
        retry(s.check_verified(&b0, None)),
        ResponseError::NotEnoughReplicas
    );
    let g = s.begin_verification(7);
    assert_eq!(s.check_verified(&b0, Some(g)), Ok(()));
    s.apply_data(&b0, 10, 1);
    s.end_verification(7, g);
    // the transaction is open here: its next batch needs no guard
    let b1 = txn_batch(7, 0, 2, 1);
    assert!(!s.needs_verification(&b1));
    assert_eq!(s.check_verified(&b1, None), Ok(()));
    s.apply_data(&b1, 12, 1);
    s.apply_marker(&marker(7, 0, false), 13, 1);

    // a guard taken before the abort marker is void after it
    let late = txn_batch(7, 0, 3, 1);
    let g = s.begin_verification(7);
    s.apply_marker(&marker(7, 0, false), 14, 1);
    assert_eq!(s.check_data(&late), Ok(Check::Append));
    assert_eq!(
        retry(s.check_verified(&late, Some(g))),
        ResponseError::NotEnoughReplicas
    );
    // an older guard of the same producer is void once a newer one is taken
    let old = s.begin_verification(7);
    let new = s.begin_verification(7);
    assert!(s.check_verified(&late, Some(old)).is_err());
    assert_eq!(s.check_verified(&late, Some(new)), Ok(()));
    s.end_verification(7, old); // ending a stale guard keeps the current one
    assert_eq!(s.check_verified(&late, Some(new)), Ok(()));
    s.end_verification(7, new);
    assert!(s.verifying.is_empty());
    assert_eq!(s.ongoing.len(), 0);
}
