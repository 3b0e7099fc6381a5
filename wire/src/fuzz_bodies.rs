//! The bodies of the cargo-fuzz targets in `wire/fuzz/`, shared with the normal
//! test suite (which feeds them random and mutated inputs) so CI exercises them on
//! stable Rust. Each must return normally for every input: any panic, abort or
//! unbounded allocation is a bug.

use bytes::{Bytes, BytesMut};

use crate::records::{BatchMut, BatchView, Batches, TimestampType, ValidateOptions, single_batch};
use crate::{ApiVersionTable, FrameDecoder, decode_request, encode_response};

/// Frames `data` with a small size cap, decodes every whole frame as a request for
/// every API and version kafka-protocol knows, and answers ApiVersions fallbacks.
pub fn frame_and_request(data: &[u8]) {
    let table = ApiVersionTable::protocol_supported();
    let frames = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = frames.decode(&mut buf) {
        request(frame, &table);
    }
    // The same bytes as one unframed request body.
    request(Bytes::copy_from_slice(data), &table);
}

fn request(frame: Bytes, table: &ApiVersionTable) {
    match decode_request(frame, table) {
        Ok(req) => {
            if let kafka_protocol::messages::RequestKind::Produce(p) = &req.body {
                for topic in &p.topic_data {
                    for partition in &topic.partition_data {
                        if let Ok(batch) = single_batch(partition.records.as_ref()) {
                            batch_checks(batch);
                        }
                    }
                }
            }
        }
        Err(e) => {
            let _ = (e.error_code(), e.correlation_id(), e.to_string());
            if e.is_unsupported_api_versions() {
                let body = kafka_protocol::messages::ResponseKind::ApiVersions(
                    table.unsupported_version_response(),
                );
                let mut out = BytesMut::new();
                let _ = encode_response(e.correlation_id().unwrap_or(0), 0, &body, &mut out);
            }
        }
    }
}

/// Treats `data` as produce records: iterates batches, validates each, stamps it,
/// and re-validates (stamping must keep a valid batch valid).
pub fn batch_validation(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let _ = single_batch(Some(&bytes));
    for batch in Batches::new(bytes).flatten() {
        batch_checks(batch);
    }
}

fn batch_checks(batch: BatchView) {
    let opts = ValidateOptions {
        max_decompressed_bytes: 1 << 20,
        ..ValidateOptions::default()
    };
    let valid = batch.validate(&opts);
    if let Ok(records) = batch.records(1 << 20) {
        for record in records.flatten() {
            let _ = record.headers().count();
        }
    }
    let mut copy = batch.bytes().to_vec();
    let Ok(mut m) = BatchMut::new(&mut copy) else {
        return;
    };
    m.set_base_offset(1234);
    m.set_partition_leader_epoch(7);
    m.set_max_timestamp(TimestampType::LogAppendTime, 99);
    if let Ok(summary) = valid {
        let stamped = BatchView::parse(copy.into()).expect("stamping keeps the framing");
        assert_eq!(stamped.base_offset(), 1234);
        let again = stamped
            .validate(&opts)
            .expect("stamping keeps a valid batch valid");
        assert_eq!(again.record_count, summary.record_count);
    }
}
