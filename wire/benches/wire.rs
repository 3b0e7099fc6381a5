//! Hot-path micro-benchmarks: frame splitting, request decoding, batch validation
//! and in-place stamping, with 1 KiB records in 16 KiB and 1 MiB batches.
//!
//! `cargo bench -p skiff-wire --bench wire`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use skiff_wire::kafka_protocol::messages::{
    ApiKey, ProduceRequest, RequestHeader, RequestKind, TopicName,
    produce_request::{PartitionProduceData, TopicProduceData},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use skiff_wire::records::{
    BatchBuilder, BatchMut, BatchView, Compression, NewRecord, TimestampType, ValidateOptions,
};
use skiff_wire::{ApiVersionTable, FrameDecoder, decode_request, encode_request};

const RECORD: usize = 1024;
const SIZES: [(usize, &str); 2] = [(16 * 1024, "16KiB"), (1024 * 1024, "1MiB")];

/// A batch of ~`size` bytes of 1 KiB records with pseudo-random (poorly
/// compressible) values.
fn batch(size: usize, codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new(codec).producer(1, 0, 0);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..size / RECORD {
        let value: Vec<u8> = (0..RECORD - 40)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Text-like: compressible about 2x, as telemetry JSON is.
                b"0123456789abcdef,:{}\"vin"[(x % 24) as usize]
            })
            .collect();
        b.push(NewRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(b"LSVAX4182E2123456"),
            value: Some(&value),
            headers: &[],
        });
    }
    b.build().expect("in-memory compression")
}

fn produce_frame(records: Bytes) -> BytesMut {
    let part = PartitionProduceData::default().with_records(Some(records));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("telemetry")))
        .with_partition_data(vec![part]);
    let body = RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![topic]),
    );
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let mut out = BytesMut::new();
    encode_request(&header, &body, &mut out).expect("valid request");
    out
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    let table = ApiVersionTable::protocol_supported();
    for (size, name) in SIZES {
        let wire = produce_frame(batch(size, Compression::None));
        g.throughput(Throughput::Bytes(wire.len() as u64));
        // The read buffer is cloned in setup, outside the measurement.
        g.bench_with_input(BenchmarkId::new("split", name), &wire, |b, wire| {
            let d = FrameDecoder::default();
            b.iter_batched(
                || wire.clone(),
                |mut buf| d.decode(&mut buf).expect("valid").expect("whole"),
                BatchSize::SmallInput,
            )
        });
        g.bench_with_input(
            BenchmarkId::new("split+decode_produce", name),
            &wire,
            |b, wire| {
                let d = FrameDecoder::default();
                b.iter_batched(
                    || wire.clone(),
                    |mut buf| {
                        let frame = d.decode(&mut buf).expect("valid").expect("whole");
                        decode_request(frame, &table).expect("valid")
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

fn batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    let opts = ValidateOptions::default();
    for (size, name) in SIZES {
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let bytes = batch(size, codec);
            let view = BatchView::parse(bytes.clone()).expect("valid");
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("validate/{}", codec.name()), name),
                &view,
                |b, v| b.iter(|| black_box(v.validate(&opts).expect("valid"))),
            );
            if codec != Compression::None {
                let header_only = ValidateOptions {
                    inspect_compressed: false,
                    ..opts
                };
                g.bench_with_input(
                    BenchmarkId::new(format!("validate_header_crc/{}", codec.name()), name),
                    &view,
                    |b, v| b.iter(|| black_box(v.validate(&header_only).expect("valid"))),
                );
            }
        }
        let mut owned = batch(size, Compression::None).to_vec();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("stamp_base_offset", name), |b| {
            let mut offset = 0i64;
            b.iter(|| {
                let mut m = BatchMut::new(black_box(&mut owned)).expect("valid");
                offset += 1;
                m.set_base_offset(offset);
                m.set_partition_leader_epoch(3);
            })
        });
        g.bench_function(BenchmarkId::new("stamp_log_append_time", name), |b| {
            let mut now = 0i64;
            b.iter(|| {
                let mut m = BatchMut::new(black_box(&mut owned)).expect("valid");
                now += 1;
                m.set_max_timestamp(TimestampType::LogAppendTime, now)
            })
        });
        let bytes = batch(size, Compression::None);
        g.bench_function(BenchmarkId::new("validate+copy+stamp", name), |b| {
            b.iter(|| {
                let view = BatchView::parse(bytes.clone()).expect("valid");
                view.validate(&opts).expect("valid");
                let mut out = view.bytes().to_vec();
                BatchMut::new(&mut out).expect("valid").set_base_offset(42);
                black_box(out)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, frames, batches);
criterion_main!(benches);
