use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchResponse, ProducerId, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;

use super::*;
use crate::encode_response;

/// A batch-like buffer of `len` bytes whose content depends on `seed`.
fn batch(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn partition(index: i32, records: Option<Bytes>) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_high_watermark(1_000 + i64::from(index))
        .with_last_stable_offset(990)
        .with_log_start_offset(3)
        .with_preferred_read_replica(BrokerId(-1))
        .with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(1))
                .with_leader_epoch(7),
        )
        .with_aborted_transactions(Some(vec![
            AbortedTransaction::default()
                .with_producer_id(ProducerId(9))
                .with_first_offset(5),
        ]))
        .with_records(records)
}

/// `shape[t][p]` = the batch sizes of partition p of topic t, or `None` for
/// a partition without records (an error partition).
fn spliced(shape: &[Vec<Option<Vec<usize>>>]) -> SplicedFetch {
    let mut sets = Vec::new();
    let mut topics = Vec::new();
    for (ti, parts) in shape.iter().enumerate() {
        let mut partitions = Vec::new();
        for (pi, p) in parts.iter().enumerate() {
            let records = p.as_ref().map(|sizes| {
                sets.push(
                    sizes
                        .iter()
                        .enumerate()
                        .map(|(i, &n)| batch(n, (ti * 16 + pi + i) as u8))
                        .collect(),
                );
                Bytes::new()
            });
            partitions.push(partition(pi as i32, records));
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(format!("topic-{ti}"))))
                .with_topic_id(uuid::Uuid::from_u128(ti as u128 + 1))
                .with_partitions(partitions),
        );
    }
    SplicedFetch {
        response: FetchResponse::default()
            .with_session_id(42)
            .with_responses(topics),
        sets,
    }
}

/// The frame kafka-protocol encodes for the same response with its records
/// concatenated: what the spliced frame must equal byte for byte.
fn plain_frame(correlation_id: i32, version: i16, fetch: SplicedFetch) -> Bytes {
    let mut out = BytesMut::new();
    encode_response(
        correlation_id,
        version,
        &ResponseKind::Fetch(fetch.into_inline()),
        &mut out,
    )
    .expect("plain encode");
    out.freeze()
}

#[test]
fn every_fetch_version_matches_the_plain_encoding() {
    let shape = vec![
        vec![
            Some(vec![100, 70_000, 20]),
            None,
            Some(vec![]),
            Some(vec![300_000]),
        ],
        vec![Some(vec![5; 40]), Some(vec![16 * 1024, 16 * 1024 - 1])],
    ];
    for version in 4..=18 {
        let fetch = spliced(&shape);
        let parts = encode_spliced_fetch(11, version, fetch.clone()).expect("spliced encode");
        assert_eq!(
            parts.to_bytes(),
            plain_frame(11, version, fetch),
            "Fetch v{version}"
        );
    }
}

#[test]
fn large_batches_are_not_copied() {
    let fetch = spliced(&[vec![Some(vec![64 * 1024, 100, 64 * 1024])]]);
    let big: Vec<*const u8> = vec![fetch.sets[0][0].as_ptr(), fetch.sets[0][2].as_ptr()];
    let parts = encode_spliced_fetch(1, 12, fetch).expect("encode");
    let ptrs: Vec<*const u8> = parts.parts.iter().map(|b| b.as_ptr()).collect();
    for p in big {
        assert!(
            ptrs.contains(&p),
            "a large batch is sent from its own buffer"
        );
    }
    // prefix+fields, big, small batch+fields between, big, trailing fields
    assert_eq!(parts.buffers(), 5);
}

#[test]
fn a_set_count_that_does_not_match_is_an_error() {
    let mut fetch = spliced(&[vec![Some(vec![10]), Some(vec![10])]]);
    fetch.sets.pop();
    assert!(encode_spliced_fetch(1, 12, fetch).is_err());
}

#[test]
fn frame_parts_advance_across_buffers() {
    let mut parts = FrameParts::default();
    parts.push(Bytes::from_static(b"abc"));
    parts.push(Bytes::new());
    parts.push(Bytes::from_static(b"defgh"));
    assert_eq!(parts.buffers(), 2, "empty buffers are dropped");
    assert_eq!(parts.remaining(), 8);
    parts.advance(4);
    assert_eq!(parts.chunk(), b"efgh");
    let mut slices = [IoSlice::new(&[]); 4];
    assert_eq!(parts.chunks_vectored(&mut slices), 1);
    parts.advance(4);
    assert_eq!(parts.remaining(), 0);
    assert!(parts.chunk().is_empty());
}

proptest! {
    #[test]
    fn random_shapes_match_the_plain_encoding(
        version in 4i16..=18,
        shape in proptest::collection::vec(
            proptest::collection::vec(
                proptest::option::of(proptest::collection::vec(
                    prop_oneof![0usize..200, 16_000usize..40_000],
                    0..5,
                )),
                1..4,
            ),
            0..4,
        ),
    ) {
        let fetch = spliced(&shape);
        let parts = encode_spliced_fetch(-3, version, fetch.clone()).expect("spliced encode");
        prop_assert_eq!(parts.to_bytes(), plain_frame(-3, version, fetch));
    }
}
