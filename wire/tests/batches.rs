//! RecordBatch v2: round trips through our builder and kafka-protocol's codec,
//! stamping, and every refusal with its Kafka error code.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use skiff_wire::kafka_protocol::indexmap::IndexMap;
use skiff_wire::kafka_protocol::protocol::StrBytes;
use skiff_wire::kafka_protocol::records::{
    self as kp, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};
use skiff_wire::records::{
    BatchBuilder, BatchError, BatchMut, BatchView, Batches, Compression, CompressionError,
    NewRecord, TimestampType, ValidateOptions, compute_crc, single_batch, whole_crc_from_stored,
};

const CORRUPT_MESSAGE: i16 = 2;
const INVALID_RECORD: i16 = 87;

#[derive(Debug, Clone)]
struct Rec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn arb_rec() -> impl Strategy<Value = Rec> {
    (
        1_600_000_000_000i64..1_900_000_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..400)),
        proptest::collection::btree_map(
            "[a-z]{1,8}",
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            0..4,
        ),
    )
        .prop_map(|(timestamp, key, value, headers)| Rec {
            timestamp,
            key,
            value,
            headers: headers.into_iter().collect(),
        })
}

fn arb_codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(Compression::ALL.to_vec())
}

fn build(recs: &[Rec], codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new(codec).producer(77, 3, 1000);
    for r in recs {
        let headers: Vec<(&[u8], Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_deref()))
            .collect();
        b.push(NewRecord {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &headers,
        });
    }
    b.build().unwrap()
}

fn kp_codec(c: Compression) -> kp::Compression {
    match c {
        Compression::None => kp::Compression::None,
        Compression::Gzip => kp::Compression::Gzip,
        Compression::Snappy => kp::Compression::Snappy,
        Compression::Lz4 => kp::Compression::Lz4,
        Compression::Zstd => kp::Compression::Zstd,
    }
}

/// The same records encoded by kafka-protocol's independent encoder.
fn build_with_kafka_protocol(recs: &[Rec], codec: Compression, offsets: &[i64]) -> Bytes {
    let records: Vec<Record> = recs
        .iter()
        .zip(offsets)
        .map(|(r, &offset)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kp::TimestampType::Creation,
            offset,
            // kafka-protocol starts a new batch when offset - sequence changes.
            sequence: offset as i32,
            timestamp: r.timestamp,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: kp_codec(codec),
        },
    )
    .unwrap();
    out.freeze()
}

fn assert_records_match(batch: &BatchView, recs: &[Rec]) {
    let got: Vec<_> = batch
        .records(usize::MAX)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got.len(), recs.len());
    for (i, (g, r)) in got.iter().zip(recs).enumerate() {
        assert_eq!(g.offset_delta, i as i32);
        assert_eq!(batch.base_timestamp() + g.timestamp_delta, r.timestamp);
        assert_eq!(g.key.as_deref(), r.key.as_deref());
        assert_eq!(g.value.as_deref(), r.value.as_deref());
        let headers: Vec<_> = g
            .headers()
            .map(|(k, v)| (k.to_vec(), v.map(|v| v.to_vec())))
            .collect();
        let want: Vec<_> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect();
        assert_eq!(headers, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The whole-batch crc derived from the stored crc equals a crc32c
    /// over every byte, before and after stamping.
    #[test]
    fn whole_crc_matches_a_full_pass(recs in proptest::collection::vec(arb_rec(), 1..8),
                                     codec in arb_codec(),
                                     base in 0i64..i64::MAX / 2,
                                     epoch in 0i32..1000,
                                     append_time in proptest::option::of(1_600_000_000_000i64..1_900_000_000_000)) {
        let mut v = build(&recs, codec).to_vec();
        prop_assert_eq!(whole_crc_from_stored(&v), Some(crc32c::crc32c(&v)));
        {
            let mut m = BatchMut::new(&mut v).unwrap();
            m.set_base_offset(base);
            m.set_partition_leader_epoch(epoch);
            if let Some(t) = append_time {
                m.set_max_timestamp(TimestampType::LogAppendTime, t);
            }
        }
        prop_assert_eq!(whole_crc_from_stored(&v), Some(crc32c::crc32c(&v)));
        prop_assert_eq!(whole_crc_from_stored(&v[..60]), None);
    }

    #[test]
    fn built_batches_validate_and_read_back(recs in proptest::collection::vec(arb_rec(), 1..40), codec in arb_codec()) {
        let bytes = build(&recs, codec);
        let batch = single_batch(Some(&bytes)).unwrap();
        prop_assert_eq!(batch.attributes().compression().unwrap(), codec);
        prop_assert_eq!(batch.record_count() as usize, recs.len());
        prop_assert_eq!(batch.producer_id(), 77);
        prop_assert_eq!(batch.producer_epoch(), 3);
        prop_assert_eq!(batch.base_sequence(), 1000);
        let summary = batch.validate(&ValidateOptions::default()).unwrap();
        prop_assert_eq!(summary.max_timestamp, recs.iter().map(|r| r.timestamp).max());
        prop_assert_eq!(summary.min_timestamp, recs.iter().map(|r| r.timestamp).min());
        prop_assert_eq!(batch.max_timestamp(), summary.max_timestamp.unwrap());
        assert_records_match(&batch, &recs);

        // kafka-protocol's decoder reads our batch the same way.
        let decoded = RecordBatchDecoder::decode(&mut bytes.clone()).unwrap();
        prop_assert_eq!(decoded.records.len(), recs.len());
        for (d, r) in decoded.records.iter().zip(&recs) {
            prop_assert_eq!(d.value.as_deref(), r.value.as_deref());
            prop_assert_eq!(d.timestamp, r.timestamp);
        }
    }

    #[test]
    fn kafka_protocol_batches_validate(recs in proptest::collection::vec(arb_rec(), 1..30), codec in arb_codec()) {
        let offsets: Vec<i64> = (0..recs.len() as i64).collect();
        let bytes = build_with_kafka_protocol(&recs, codec, &offsets);
        let batch = single_batch(Some(&bytes)).unwrap();
        batch.validate(&ValidateOptions::default()).unwrap();
        assert_records_match(&batch, &recs);
    }

    #[test]
    fn stamping_keeps_batches_valid(
        recs in proptest::collection::vec(arb_rec(), 1..10),
        codec in arb_codec(),
        base_offset in 0i64..i64::MAX / 2,
        epoch in any::<i32>(),
        append_time in any::<i64>(),
    ) {
        let bytes = build(&recs, codec);
        let crc = BatchView::parse(bytes.clone()).unwrap().crc();
        let mut owned = bytes.to_vec();
        let mut m = BatchMut::new(&mut owned).unwrap();
        m.set_base_offset(base_offset);
        m.set_partition_leader_epoch(epoch);
        let view = BatchView::parse(Bytes::from(owned.clone())).unwrap();
        prop_assert_eq!(view.crc(), crc, "base offset and epoch are outside the crc");
        prop_assert_eq!(view.base_offset(), base_offset);
        prop_assert_eq!(view.partition_leader_epoch(), epoch);
        prop_assert_eq!(view.last_offset(), base_offset + recs.len() as i64 - 1);
        view.validate(&ValidateOptions::default()).unwrap();
        let decoded = RecordBatchDecoder::decode(&mut view.bytes().clone()).unwrap();
        for (i, r) in decoded.records.iter().enumerate() {
            prop_assert_eq!(r.offset, base_offset + i as i64);
        }

        let mut m = BatchMut::new(&mut owned).unwrap();
        prop_assert!(m.set_max_timestamp(TimestampType::LogAppendTime, append_time));
        prop_assert!(!m.set_max_timestamp(TimestampType::LogAppendTime, append_time), "no change, no crc work");
        let view = BatchView::parse(Bytes::from(owned)).unwrap();
        prop_assert_eq!(view.attributes().timestamp_type(), TimestampType::LogAppendTime);
        prop_assert_eq!(view.max_timestamp(), append_time);
        prop_assert_eq!(view.attributes().compression().unwrap(), codec);
        view.validate(&ValidateOptions::default()).unwrap();
    }
}

fn sample() -> Vec<Rec> {
    (0..5)
        .map(|i| Rec {
            timestamp: 1_700_000_000_000 + i,
            key: Some(format!("vin-{i}").into_bytes()),
            value: Some(vec![i as u8; 100]),
            headers: vec![("h".into(), None)],
        })
        .collect()
}

fn refuse(bytes: &[u8]) -> BatchError {
    let bytes = Bytes::copy_from_slice(bytes);
    single_batch(Some(&bytes))
        .and_then(|b| b.validate(&ValidateOptions::default()))
        .unwrap_err()
}

/// Overwrites the header's record count and last offset delta, fixing the crc.
fn with_count(bytes: &Bytes, count: i32, last_offset_delta: i32) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[57..61].copy_from_slice(&count.to_be_bytes());
    v[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    BatchMut::new(&mut v).unwrap().update_crc();
    v
}

#[test]
fn bad_crc_is_corrupt_message() {
    for codec in Compression::ALL {
        let mut v = build(&sample(), codec).to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        let err = refuse(&v);
        assert!(
            matches!(err, BatchError::CrcMismatch { .. }),
            "{codec:?}: {err}"
        );
        assert_eq!(err.error_code(), CORRUPT_MESSAGE);
    }
    // The crc covers the attributes: flipping the codec bits is caught too.
    let mut v = build(&sample(), Compression::None).to_vec();
    v[22] |= 1;
    assert!(matches!(refuse(&v), BatchError::CrcMismatch { .. }));
}

#[test]
fn wrong_magic_is_invalid_record() {
    for magic in [0u8, 1, 3] {
        let mut v = build(&sample(), Compression::None).to_vec();
        v[16] = magic;
        let err = refuse(&v);
        assert_eq!(err, BatchError::UnsupportedMagic(magic as i8));
        assert_eq!(err.error_code(), INVALID_RECORD);
    }
    // A minimal v1 message set (26-byte header) is reported by its magic, not as short.
    let mut v1 = vec![0u8; 34];
    v1[8..12].copy_from_slice(&22i32.to_be_bytes());
    v1[16] = 1;
    assert_eq!(refuse(&v1), BatchError::UnsupportedMagic(1));
}

#[test]
fn truncation_is_corrupt_message() {
    let bytes = build(&sample(), Compression::None);
    for len in [0, 5, 16, 17, 60, 61, bytes.len() - 1] {
        let err = refuse(&bytes[..len]);
        match len {
            0 => assert_eq!(err, BatchError::NoBatch),
            _ => {
                assert!(matches!(err, BatchError::Truncated { .. }), "{len}: {err}");
                assert_eq!(err.error_code(), CORRUPT_MESSAGE);
            }
        }
    }
    let mut v = bytes.to_vec();
    v[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(refuse(&v), BatchError::LengthTooSmall(-1));
    v[8..12].copy_from_slice(&40i32.to_be_bytes());
    assert_eq!(refuse(&v), BatchError::LengthTooSmall(40));
}

#[test]
fn out_of_order_offset_deltas_are_invalid_record() {
    let recs = sample();
    let bytes = build_with_kafka_protocol(&recs, Compression::None, &[1, 0, 2, 3, 4]);
    let err = refuse(&bytes);
    assert_eq!(
        err,
        BatchError::OffsetDeltaMismatch {
            index: 0,
            offset_delta: 1
        }
    );
    assert_eq!(err.error_code(), INVALID_RECORD);
    assert_eq!(err.record_index(), Some(0));
    // Also inside a compressed batch.
    let bytes = build_with_kafka_protocol(&recs, Compression::Zstd, &[0, 1, 2, 4, 3]);
    assert_eq!(
        refuse(&bytes),
        BatchError::OffsetDeltaMismatch {
            index: 3,
            offset_delta: 4
        }
    );
    // A gap makes last_offset_delta disagree with the count.
    let bytes = build_with_kafka_protocol(&recs, Compression::None, &[0, 1, 2, 3, 9]);
    assert!(matches!(
        refuse(&bytes),
        BatchError::InconsistentOffsetRange { .. }
    ));
}

#[test]
fn count_mismatches_are_invalid_record() {
    let bytes = build(&sample(), Compression::None);
    let err = refuse(&with_count(&bytes, 6, 5));
    assert_eq!(
        err,
        BatchError::MissingRecords {
            declared: 6,
            found: 5
        }
    );
    assert_eq!(err.error_code(), INVALID_RECORD);
    let err = refuse(&with_count(&bytes, 4, 3));
    assert!(matches!(err, BatchError::TrailingBytes(_)), "{err}");
    assert_eq!(err.error_code(), INVALID_RECORD);
    assert_eq!(
        refuse(&with_count(&bytes, 0, -1)),
        BatchError::InvalidRecordCount(0)
    );
    assert!(matches!(
        refuse(&with_count(&bytes, 5, 7)),
        BatchError::InconsistentOffsetRange { .. }
    ));
}

#[test]
fn malformed_records_name_the_record() {
    let bytes = build(&sample(), Compression::None);
    let mut v = bytes.to_vec();
    // Record 0 starts at 61: grow its length varint so it overruns the next record.
    v[61] = v[61].wrapping_add(8);
    BatchMut::new(&mut v).unwrap().update_crc();
    let err = refuse(&v);
    assert!(
        matches!(err, BatchError::MalformedRecord { index: 0, .. }),
        "{err}"
    );
    assert_eq!(err.error_code(), INVALID_RECORD);
    assert_eq!(err.record_index(), Some(0));
}

#[test]
fn client_rules() {
    let mut b = BatchBuilder::new(Compression::None).flags(true, true);
    b.push(NewRecord {
        timestamp: 1,
        ..Default::default()
    });
    let control = b.build().unwrap();
    assert_eq!(refuse(&control), BatchError::ControlBatch);
    let view = BatchView::parse(control).unwrap();
    assert!(view.attributes().is_control() && view.attributes().is_transactional());
    view.validate(&ValidateOptions {
        from_client: false,
        ..Default::default()
    })
    .unwrap();

    let mut b = BatchBuilder::new(Compression::None).producer(5, 0, -1);
    b.push(NewRecord {
        timestamp: 1,
        ..Default::default()
    });
    let err = refuse(&b.build().unwrap());
    assert_eq!(
        err,
        BatchError::InvalidSequence {
            producer_id: 5,
            base_sequence: -1
        }
    );
    assert_eq!(err.error_code(), INVALID_RECORD);
}

#[test]
fn produce_data_holds_exactly_one_batch() {
    assert_eq!(single_batch(None).unwrap_err(), BatchError::NoBatch);
    let one = build(&sample(), Compression::Gzip);
    let mut two = one.to_vec();
    two.extend_from_slice(&one);
    let two = Bytes::from(two);
    let err = single_batch(Some(&two)).unwrap_err();
    assert_eq!(err, BatchError::MultipleBatches);
    assert_eq!(err.error_code(), INVALID_RECORD);
    // Batches iterates them, as a fetch response or segment reader would.
    let all: Vec<_> = Batches::new(two).collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].bytes(), &one);
    let mut junk = one.to_vec();
    junk.extend_from_slice(b"xy");
    assert_eq!(
        single_batch(Some(&Bytes::from(junk))).unwrap_err(),
        BatchError::TrailingBytes(2)
    );
}

#[test]
fn decompression_is_capped() {
    let recs: Vec<Rec> = (0..100)
        .map(|i| Rec {
            timestamp: i,
            key: None,
            value: Some(vec![0; 10_000]),
            headers: vec![],
        })
        .collect();
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let bytes = build(&recs, codec);
        assert!(bytes.len() < 100_000, "{codec:?} compresses zeros");
        let batch = BatchView::parse(bytes).unwrap();
        let opts = ValidateOptions {
            max_decompressed_bytes: 500_000,
            ..Default::default()
        };
        let err = batch.validate(&opts).unwrap_err();
        assert_eq!(
            err,
            BatchError::Compression(CompressionError::TooLarge {
                codec,
                limit: 500_000
            })
        );
        assert_eq!(err.error_code(), CORRUPT_MESSAGE);
        // Without inspecting, only the header and crc are checked.
        let summary = batch
            .validate(&ValidateOptions {
                inspect_compressed: false,
                ..opts
            })
            .unwrap();
        assert_eq!(summary.record_count, 100);
        assert_eq!(summary.max_timestamp, None);
    }
}

#[test]
fn corrupt_compressed_data_is_corrupt_message() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut v = build(&sample(), codec).to_vec();
        let n = v.len();
        for b in &mut v[n - 12..n - 2] {
            *b ^= 0x5a;
        }
        BatchMut::new(&mut v).unwrap().update_crc();
        match refuse(&v) {
            BatchError::Compression(_) => {}
            // Some codecs carry no checksum, so the damage can instead surface as bad
            // records; either way the batch is refused.
            e @ (BatchError::MalformedRecord { .. }
            | BatchError::MissingRecords { .. }
            | BatchError::TrailingBytes(_)
            | BatchError::OffsetDeltaMismatch { .. }) => assert_eq!(e.error_code(), INVALID_RECORD),
            e => panic!("{codec:?}: unexpected {e}"),
        }
    }
}

#[test]
fn unknown_codec_is_refused() {
    let mut v = build(&sample(), Compression::None).to_vec();
    v[22] |= 0b110; // codec 6
    BatchMut::new(&mut v).unwrap().update_crc();
    let err = refuse(&v);
    assert_eq!(err, BatchError::UnknownCompression(6));
    assert_eq!(err.error_code(), CORRUPT_MESSAGE);
    assert_eq!(
        compute_crc(&v),
        BatchView::parse(Bytes::from(v)).unwrap().crc()
    );
}
