//! The cargo-fuzz target bodies (`skiff_wire::fuzz_bodies`) run on random and
//! mutated inputs, so CI exercises them on stable Rust without libFuzzer.
//! `SKIFF_FUZZ_CASES` sets the cases per property (default 5000).

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use skiff_wire::encode_request;
use skiff_wire::fuzz_bodies::{batch_validation, frame_and_request};
use skiff_wire::kafka_protocol::messages::{
    ApiKey, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader, RequestKind, TopicName,
    produce_request::{PartitionProduceData, TopicProduceData},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use skiff_wire::records::{BatchBuilder, Compression, NewRecord};

fn cases() -> u32 {
    std::env::var("SKIFF_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

fn batch(codec: Compression, n: usize) -> Bytes {
    let mut b = BatchBuilder::new(codec).producer(1, 0, 0);
    for i in 0..n {
        let value = vec![b'v'; i * 7];
        b.push(NewRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(b"vin"),
            value: Some(&value),
            headers: &[(b"h", Some(b"x"))],
        });
    }
    b.build().unwrap()
}

fn request(key: ApiKey, version: i16, body: RequestKind) -> Vec<u8> {
    let h = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut out = BytesMut::new();
    encode_request(&h, &body, &mut out).unwrap();
    out.to_vec()
}

/// Valid inputs the mutations start from (also the seed corpus of the fuzz targets:
/// `cargo test -p skiff-wire --test fuzz_bodies -- --ignored write_seed_corpus`).
fn request_seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut seeds: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    seeds.extend([
        request(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default()),
        ),
        request(
            ApiKey::Fetch,
            12,
            RequestKind::Fetch(FetchRequest::default()),
        ),
    ]);
    for (version, codec) in [
        (3, Compression::None),
        (9, Compression::Lz4),
        (11, Compression::Zstd),
    ] {
        let part = PartitionProduceData::default().with_records(Some(batch(codec, 4)));
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![part]);
        let body = RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_topic_data(vec![topic]),
        );
        seeds.push(request(ApiKey::Produce, version, body));
    }
    seeds
}

fn batch_seeds() -> Vec<Vec<u8>> {
    Compression::ALL
        .iter()
        .map(|&c| batch(c, 5).to_vec())
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    SetI32(usize, i32),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(p, x)| Mutation::Flip(p, x)),
        2 => (any::<usize>(), prop_oneof![Just(i32::MAX), Just(i32::MIN), Just(-1), Just(0), any::<i32>()])
            .prop_map(|(p, v)| Mutation::SetI32(p, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(p, b)| Mutation::Insert(p, b)),
    ]
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if data.is_empty() {
            break;
        }
        let len = data.len();
        match m {
            Mutation::Flip(p, x) => data[p % len] ^= x,
            Mutation::SetI32(p, v) => {
                let p = p % len;
                let end = (p + 4).min(len);
                data[p..end].copy_from_slice(&v.to_be_bytes()[..end - p]);
            }
            Mutation::Truncate(p) => data.truncate(p % len),
            Mutation::Insert(p, b) => {
                let p = p % len;
                data.splice(p..p, b.iter().copied());
            }
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_as_requests(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        frame_and_request(&data);
    }

    #[test]
    fn random_requests_after_a_valid_prefix(key in 0i16..100, version in 0i16..20, body in proptest::collection::vec(any::<u8>(), 0..128)) {
        let mut data = Vec::new();
        data.extend_from_slice(&key.to_be_bytes());
        data.extend_from_slice(&version.to_be_bytes());
        data.extend_from_slice(&7i32.to_be_bytes());
        data.extend_from_slice(&body);
        frame_and_request(&data);
    }

    #[test]
    fn mutated_requests(seed in 0usize..64, mutations in proptest::collection::vec(arb_mutation(), 1..6)) {
        let seeds = request_seeds();
        frame_and_request(&mutate(seeds[seed % seeds.len()].clone(), &mutations));
    }

    #[test]
    fn random_bytes_as_batches(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        batch_validation(&data);
    }

    #[test]
    fn mutated_batches(seed in 0usize..5, mutations in proptest::collection::vec(arb_mutation(), 1..6)) {
        let seeds = batch_seeds();
        batch_validation(&mutate(seeds[seed % seeds.len()].clone(), &mutations));
    }
}

#[test]
fn seeds_pass_through_the_bodies() {
    for s in request_seeds() {
        frame_and_request(&s);
    }
    for s in batch_seeds() {
        batch_validation(&s);
    }
}

/// Writes the seeds to `wire/fuzz/corpus/<target>/` for `cargo fuzz run`.
#[test]
#[ignore = "writes files; run by hand before fuzzing"]
fn write_seed_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, seeds) in [
        ("frame_request", request_seeds()),
        ("batch_validation", batch_seeds()),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
        }
    }
}
