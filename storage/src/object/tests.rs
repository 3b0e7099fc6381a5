use std::collections::BTreeMap;

use proptest::prelude::*;

use super::format::{FOOTER_LEN, decode_block, decode_footer};
use super::*;
use crate::batch::StoredBatch;

type Streams = BTreeMap<u64, Vec<(u64, u32, Vec<u8>)>>;

/// Streams with batches: stream -> [(gap before, records, payload)].
fn arb_streams() -> impl Strategy<Value = Streams> {
    prop::collection::btree_map(
        0u64..50,
        prop::collection::vec(
            (
                0u64..3,
                1u32..20,
                prop::collection::vec(any::<u8>(), 0..300),
            ),
            1..12,
        ),
        1..6,
    )
}

fn build(
    streams: &Streams,
    block: usize,
) -> (Bytes, Vec<IndexEntry>, BTreeMap<u64, Vec<StoredBatch>>) {
    let mut b = ObjectBuilder::new(block);
    let mut expect = BTreeMap::new();
    for (s, batches) in streams {
        let mut next = s * 1000;
        let v: &mut Vec<StoredBatch> = expect.entry(*s).or_default();
        for (gap, records, payload) in batches {
            let base = next + gap;
            b.push(StreamId(*s), base, *records, payload).unwrap();
            v.push(StoredBatch {
                base_offset: base,
                records: *records,
                payload: Bytes::copy_from_slice(payload),
            });
            next = base + u64::from(*records);
        }
    }
    let (bytes, index) = b.finish();
    (bytes, index, expect)
}

fn decode_all(bytes: &Bytes) -> Result<BTreeMap<u64, Vec<StoredBatch>>, FormatError> {
    let mut out: BTreeMap<u64, Vec<StoredBatch>> = BTreeMap::new();
    for (s, batches) in decode_object(bytes)? {
        out.entry(s.0).or_default().extend(batches);
    }
    Ok(out)
}

proptest! {
    #[test]
    fn round_trip(streams in arb_streams(), block in 1usize..2000) {
        let (bytes, index, expect) = build(&streams, block);
        let idx = ObjectIndex::decode(&bytes, bytes.len() as u64).unwrap();
        prop_assert_eq!(&idx.entries, &index);
        prop_assert_eq!(decode_all(&bytes).unwrap(), expect.clone());
        // Each index entry's range matches its batches.
        for e in &index {
            let r = e.byte_range();
            let (_, batches) = decode_block(&bytes.slice(r.start as usize..r.end as usize)).unwrap();
            prop_assert_eq!(batches.first().unwrap().base_offset, e.start);
            prop_assert_eq!(batches.last().unwrap().end_offset(), e.end);
        }
        // Ranges cover exactly the batches, merging adjacent blocks.
        let ranges = stream_ranges(&index);
        let covered: u64 = ranges.iter().map(|(_, a, b)| b - a).sum();
        let records: u64 = expect.values().flatten().map(|b| u64::from(b.records)).sum();
        prop_assert_eq!(covered, records);
    }

    #[test]
    fn corruption_is_an_error_never_a_panic(
        streams in arb_streams(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let (bytes, _, expect) = build(&streams, 256);
        let mut bad = bytes.to_vec();
        for (i, x) in &flips {
            let i = i.index(bad.len());
            bad[i] ^= x;
        }
        let bad = Bytes::from(bad);
        // Any flipped bit is caught by a checksum: decoding either fails or,
        // if flips cancelled out, returns the original data.
        if let Ok(got) = decode_all(&bad) {
            prop_assert_eq!(got, expect);
        }
    }

    #[test]
    fn truncation_is_an_error(streams in arb_streams(), cut in any::<prop::sample::Index>()) {
        let (bytes, _, _) = build(&streams, 256);
        let n = cut.index(bytes.len());
        let short = bytes.slice(..n);
        prop_assert!(ObjectIndex::decode(&short, short.len() as u64).is_err());
        prop_assert!(ObjectIndex::decode(&short, bytes.len() as u64).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(junk in prop::collection::vec(any::<u8>(), 0..600)) {
        let junk = Bytes::from(junk);
        let _ = ObjectIndex::decode(&junk, junk.len() as u64);
        let _ = decode_block(&junk);
        let _ = format::decode_verified_block(&junk);
    }
}

#[test]
fn builder_rejects_out_of_order_and_revisits() {
    let mut b = ObjectBuilder::new(1024);
    b.push(StreamId(1), 10, 5, b"a").unwrap();
    assert!(matches!(
        b.push(StreamId(1), 12, 1, b"b"),
        Err(BuildError::OutOfOrder { expected: 15, .. })
    ));
    assert!(matches!(
        b.push(StreamId(1), 16, 0, b"b"),
        Err(BuildError::EmptyBatch { .. })
    ));
    b.push(StreamId(2), 0, 1, b"c").unwrap();
    assert_eq!(
        b.push(StreamId(1), 20, 1, b"d"),
        Err(BuildError::StreamRevisited(StreamId(1)))
    );
}

#[test]
fn gaps_split_blocks_and_ranges() {
    let mut b = ObjectBuilder::new(1 << 20);
    b.push(StreamId(1), 0, 5, b"a").unwrap();
    b.push(StreamId(1), 10, 5, b"b").unwrap();
    let (_, index) = b.finish();
    assert_eq!(index.len(), 2);
    assert_eq!(
        stream_ranges(&index),
        vec![(StreamId(1), 0, 5), (StreamId(1), 10, 15)]
    );
}

#[test]
fn streams_pushed_out_of_id_order_are_indexed_sorted() {
    let mut b = ObjectBuilder::new(16);
    b.push(StreamId(9), 0, 1, b"nine").unwrap();
    b.push(StreamId(3), 0, 1, b"three").unwrap();
    let (bytes, index) = b.finish();
    assert_eq!(index[0].stream, StreamId(3));
    let idx = ObjectIndex::decode(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(idx.blocks_from(StreamId(9), 0).len(), 1);
    assert_eq!(idx.blocks_from(StreamId(3), 0).len(), 1);
    assert!(idx.blocks_from(StreamId(3), 1).is_empty());
    assert!(idx.blocks_from(StreamId(4), 0).is_empty());
}

#[test]
fn footer_checks() {
    let mut b = ObjectBuilder::new(16);
    b.push(StreamId(1), 0, 1, b"x").unwrap();
    let (bytes, _) = b.finish();
    let size = bytes.len() as u64;
    assert!(decode_footer(&bytes, size).is_ok());
    // A smaller claimed size puts the index out of bounds.
    assert!(matches!(
        decode_footer(&bytes, FOOTER_LEN as u64),
        Err(FormatError::IndexOutOfBounds { .. })
    ));
    let mut v = bytes.to_vec();
    let n = v.len();
    v[n - 1] ^= 1;
    assert!(matches!(
        decode_footer(&v, size),
        Err(FormatError::BadMagic(_))
    ));
    let mut v = bytes.to_vec();
    v[n - FOOTER_LEN] ^= 1;
    assert!(matches!(
        decode_footer(&v, size),
        Err(FormatError::Checksum { what: "footer", .. })
    ));
}

#[test]
fn object_keys_are_spread_and_parse_back() {
    let keys: Vec<_> = (0..64).map(|i| object_key(ObjectId(i))).collect();
    let prefixes: std::collections::HashSet<_> = keys
        .iter()
        .map(|k| k.parts().nth(1).unwrap().as_ref().to_string())
        .collect();
    assert!(prefixes.len() > 32, "consecutive ids share few prefixes");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(parse_object_key(k), Some(ObjectId(i as u64)));
    }
    assert_eq!(parse_object_key(&Path::from("objects/0000/1.sko")), None);
    assert_eq!(parse_object_key(&Path::from("wal/x")), None);
}

#[tokio::test]
async fn put_object_is_create_only_and_idempotent() {
    let store = object_store::memory::InMemory::new();
    put_object(&store, ObjectId(7), Bytes::from_static(b"abc"))
        .await
        .unwrap();
    // A retry of the same PUT (same size) is fine.
    put_object(&store, ObjectId(7), Bytes::from_static(b"abc"))
        .await
        .unwrap();
    // Different content under the same id is refused, never overwritten.
    let err = put_object(&store, ObjectId(7), Bytes::from_static(b"abcdef"))
        .await
        .unwrap_err();
    assert!(matches!(err, object_store::Error::AlreadyExists { .. }));
    let got = store.get(&object_key(ObjectId(7))).await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), Bytes::from_static(b"abc"));
}

proptest! {
    /// Sharing large payloads (`push_bytes`, `finish_parts`) writes exactly
    /// the bytes copying them does, blocks and checksums included.
    #[test]
    fn shared_parts_equal_copied_bytes(
        streams in arb_streams(),
        big in prop::collection::vec(0usize..3, 1..6),
        block in 1usize..200_000,
    ) {
        let mut copied = ObjectBuilder::new(block);
        let mut shared = ObjectBuilder::new(block);
        for (s, batches) in &streams {
            let mut next = s * 1000;
            for (i, (gap, records, payload)) in batches.iter().enumerate() {
                // Some batches above the sharing threshold.
                let mut payload = payload.clone();
                if big[i % big.len()] == 0 {
                    payload.resize(70_000 + i, *s as u8);
                }
                let base = next + gap;
                copied.push(StreamId(*s), base, *records, &payload).unwrap();
                let crc = crc32c::crc32c(&payload);
                shared
                    .push_bytes(StreamId(*s), base, *records, &Bytes::from(payload), crc)
                    .unwrap();
                next = base + u64::from(*records);
            }
        }
        let (want, want_index) = copied.finish();
        let (parts, index) = shared.finish_parts();
        let mut got = Vec::new();
        for p in &parts {
            got.extend_from_slice(p);
        }
        prop_assert_eq!(&index, &want_index);
        prop_assert!(got == want.as_ref(), "parts differ from the copied object");
        prop_assert!(decode_object(&want).is_ok());
    }
}
