//! Request and response codec: every API at every version, header versions,
//! version negotiation, error cases, and real client bytes.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use skiff_wire::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, ProduceRequest, RequestHeader, RequestKind,
    ResponseKind, TopicName,
    metadata_request::MetadataRequestTopic,
    produce_request::{PartitionProduceData, TopicProduceData},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use skiff_wire::records::{ValidateOptions, single_batch};
use skiff_wire::{
    ApiVersionTable, FrameDecoder, RequestError, decode_request, decode_response, encode_request,
    encode_response, request_api_key, response_api_key,
};

/// `RequestKind` and `ResponseKind` default bodies for an API.
fn default_bodies(key: ApiKey) -> (RequestKind, ResponseKind) {
    macro_rules! bodies {
        ($($name:ident $req:ident $resp:ident),* $(,)?) => {
            match key {
                $(ApiKey::$name => (
                    RequestKind::$name(Default::default()),
                    ResponseKind::$name(Default::default()),
                ),)*
            }
        };
    }
    skiff_wire::for_each_api!(bodies)
}

fn header(key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("skiff-test")))
}

/// Encodes a request frame and strips its size prefix.
fn frame_of(header: &RequestHeader, body: &RequestKind) -> Bytes {
    let mut out = BytesMut::new();
    encode_request(header, body, &mut out).unwrap();
    FrameDecoder::default().decode(&mut out).unwrap().unwrap()
}

#[test]
fn every_api_and_version_round_trips() {
    let table = ApiVersionTable::protocol_supported();
    let mut checked = 0;
    for key in ApiKey::iter() {
        let (req, resp) = default_bodies(key);
        assert_eq!(request_api_key(&req), Some(key));
        assert_eq!(response_api_key(&resp), Some(key));
        let range = skiff_wire::protocol_range(key);
        for version in range.min..=range.max {
            let h = header(key, version, 1000 + i32::from(version));
            let decoded = decode_request(frame_of(&h, &req), &table)
                .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            assert_eq!(decoded.api_key, key);
            assert_eq!(decoded.correlation_id(), h.correlation_id);
            assert_eq!(decoded.body, req, "{key:?} v{version}");
            // Header v0 (ControlledShutdown v0 only) has no client id.
            if key.request_header_version(version) >= 1 {
                assert_eq!(decoded.header, h);
            }

            let mut out = BytesMut::new();
            encode_response(h.correlation_id, version, &resp, &mut out).unwrap();
            let frame = FrameDecoder::default().decode(&mut out).unwrap().unwrap();
            let (rh, body) = decode_response(frame, key, version).unwrap();
            assert_eq!(rh.correlation_id, h.correlation_id);
            assert_eq!(body, resp, "{key:?} v{version} response");
            checked += 1;
        }
    }
    assert!(checked >= 280, "only {checked} API versions checked");
}

#[test]
fn every_api_is_listed() {
    // A kafka-protocol upgrade that adds an API must extend src/api_list.rs.
    for key in ApiKey::iter() {
        let (req, _) = default_bodies(key);
        assert_eq!(request_api_key(&req), Some(key));
    }
}

#[test]
fn header_versions_follow_flexible_versions() {
    // Metadata v8 is not flexible (header v1), v9 is (header v2 with tagged fields).
    assert_eq!(ApiKey::Metadata.request_header_version(8), 1);
    assert_eq!(ApiKey::Metadata.request_header_version(9), 2);
    assert_eq!(ApiKey::Metadata.response_header_version(9), 1);
    // ApiVersions responses always use header v0, even for flexible v3+.
    assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
    let mut out = BytesMut::new();
    let table = ApiVersionTable::protocol_supported();
    encode_response(
        5,
        3,
        &ResponseKind::ApiVersions(table.api_versions_response()),
        &mut out,
    )
    .unwrap();
    // Size, correlation id, then straight into the body: error_code 0 (no tag byte).
    assert_eq!(&out[4..8], &5i32.to_be_bytes());
    assert_eq!(&out[8..10], &0i16.to_be_bytes());
}

#[test]
fn unsupported_api_versions_gets_a_v0_answer() {
    let mut table = ApiVersionTable::new();
    table.register(ApiKey::ApiVersions, 0, 3).unwrap();
    table.register(ApiKey::Metadata, 0, 12).unwrap();
    // A v4 ApiVersions (header v2) from a newer client.
    let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
    let err =
        decode_request(frame_of(&header(ApiKey::ApiVersions, 4, 77), &body), &table).unwrap_err();
    assert!(err.is_unsupported_api_versions(), "{err}");
    assert_eq!(err.correlation_id(), Some(77));
    assert_eq!(err.error_code(), 35);

    // What the broker sends back, decoded as a v0 response by the client.
    let mut out = BytesMut::new();
    let answer = ResponseKind::ApiVersions(table.unsupported_version_response());
    encode_response(77, 0, &answer, &mut out).unwrap();
    let frame = FrameDecoder::default().decode(&mut out).unwrap().unwrap();
    let (h, ResponseKind::ApiVersions(r)) = decode_response(frame, ApiKey::ApiVersions, 0).unwrap()
    else {
        panic!("not an ApiVersions response")
    };
    assert_eq!(h.correlation_id, 77);
    assert_eq!(r.error_code, 35);
    assert_eq!(r.api_keys.len(), 2);
    let api_versions = r
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .unwrap();
    assert_eq!(api_versions.max_version, 3);
}

#[test]
fn unsupported_versions_and_unknown_keys_carry_the_correlation_id() {
    let mut table = ApiVersionTable::new();
    table.register(ApiKey::Produce, 3, 9).unwrap();
    let produce = RequestKind::Produce(ProduceRequest::default());
    let err =
        decode_request(frame_of(&header(ApiKey::Produce, 10, 9), &produce), &table).unwrap_err();
    assert!(matches!(
        err,
        RequestError::UnsupportedVersion {
            api_key: ApiKey::Produce,
            ..
        }
    ));
    assert!(!err.is_unsupported_api_versions());
    assert_eq!(err.correlation_id(), Some(9));

    // Not registered at all.
    let meta = RequestKind::Metadata(MetadataRequest::default());
    let err = decode_request(frame_of(&header(ApiKey::Metadata, 1, 3), &meta), &table).unwrap_err();
    assert!(matches!(err, RequestError::UnsupportedVersion { .. }));

    // Unknown key 999.
    let mut frame = vec![0x03, 0xe7, 0, 0, 0, 0, 0, 42];
    frame.extend_from_slice(&[0xff, 0xff]);
    let err = decode_request(Bytes::from(frame), &table).unwrap_err();
    assert!(matches!(err, RequestError::UnknownApiKey { .. }));
    assert_eq!(err.correlation_id(), Some(42));
    assert_eq!(err.error_code(), 42 /* INVALID_REQUEST */);
}

#[test]
fn truncated_requests_are_errors() {
    let table = ApiVersionTable::protocol_supported();
    let topics = vec![
        MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("vehicles")))),
    ];
    let body = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(topics)));
    let full = frame_of(&header(ApiKey::Metadata, 12, 1), &body);
    for len in 0..full.len() {
        let err = decode_request(full.slice(..len), &table).unwrap_err();
        match len {
            0..8 => assert!(
                matches!(err, RequestError::TruncatedHeader { .. }),
                "{len}: {err}"
            ),
            _ => {
                assert!(
                    matches!(
                        err,
                        RequestError::MalformedHeader { .. } | RequestError::MalformedBody { .. }
                    ),
                    "{len}: {err}"
                );
                assert_eq!(err.correlation_id(), Some(1));
            }
        }
    }
}

#[test]
fn huge_array_counts_do_not_allocate() {
    // Metadata v0 with a topic count of 54 million and five bytes of body: upstream
    // kafka-protocol 0.18.0 reserved ~4 GB here (see SKIFF-PATCHES.md).
    let frame = Bytes::from_static(&[
        0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x03, 0x3c, 0x0c, 0x00, 0xb6,
    ]);
    let err = decode_request(frame, &ApiVersionTable::protocol_supported()).unwrap_err();
    assert!(matches!(err, RequestError::MalformedBody { .. }), "{err}");
    // Same with i32::MAX elements in a compact (flexible) array: Metadata v12.
    let mut f = vec![0, 3, 0, 12, 0, 0, 0, 2, 0xff, 0xff, 0];
    f.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let err = decode_request(Bytes::from(f), &ApiVersionTable::protocol_supported()).unwrap_err();
    assert!(matches!(err, RequestError::MalformedBody { .. }), "{err}");
}

#[test]
fn produce_records_are_not_copied() {
    let records = Bytes::from_static(b"opaque record batch bytes");
    let partition = PartitionProduceData::default()
        .with_index(3)
        .with_records(Some(records.clone()));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_data(vec![partition]);
    let body = RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![topic]),
    );
    let frame = frame_of(&header(ApiKey::Produce, 9, 1), &body);
    let range = frame.as_ptr_range();
    let req = decode_request(frame.clone(), &ApiVersionTable::protocol_supported()).unwrap();
    let RequestKind::Produce(p) = req.body else {
        panic!()
    };
    let got = p.topic_data[0].partition_data[0].records.clone().unwrap();
    assert_eq!(got, records);
    assert!(
        range.contains(&got.as_ptr()),
        "records must be a slice of the frame"
    );
}

/// Frames captured from real clients by `wire/scripts/capture_client_requests.py`
/// (librdkafka 2.16 via confluent-kafka, kafka-python 3.0; Produce with each codec).
#[test]
fn real_client_requests_decode() {
    let table = ApiVersionTable::protocol_supported();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut produce_batches = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut buf = BytesMut::from(&std::fs::read(&path).unwrap()[..]);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty(), "{name}");
        let req = decode_request(frame, &table).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            name.contains(&format!("{:?}", req.api_key)),
            "{name} is {:?}",
            req.api_key
        );
        files += 1;
        match req.body {
            RequestKind::ApiVersions(body) => {
                let software = body.client_software_name.as_str();
                assert!(
                    software == "kafka-python" || software.starts_with("confluent-kafka"),
                    "{software}"
                );
            }
            RequestKind::Produce(p) => {
                let codec = name.split('-').rev().nth(2).unwrap();
                let records = p.topic_data[0].partition_data[0].records.as_ref();
                let batch = single_batch(records).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    batch.attributes().compression().unwrap().name(),
                    codec,
                    "{name}"
                );
                let summary = batch.validate(&ValidateOptions::default()).unwrap();
                assert!(summary.record_count >= 1);
                for (i, record) in batch.records(1 << 20).unwrap().enumerate() {
                    let record = record.unwrap();
                    assert_eq!(record.key.as_deref(), Some(&b"LSVAX4182E2123456"[..]));
                    assert_eq!(
                        record.value.as_deref(),
                        Some(format!("{{\"speed\": {i}}}").as_bytes())
                    );
                    let headers: Vec<_> = record.headers().collect();
                    assert_eq!(
                        headers,
                        vec![(Bytes::from_static(b"src"), Some(Bytes::from_static(b"can")))]
                    );
                }
                produce_batches += 1;
            }
            _ => {}
        }
    }
    assert!(files >= 10, "corpus has {files} files");
    assert!(
        produce_batches >= 7,
        "only {produce_batches} produce requests in the corpus"
    );
}

fn arb_name() -> impl Strategy<Value = StrBytes> {
    "[a-zA-Z0-9._-]{1,40}".prop_map(StrBytes::from_string)
}

proptest! {
    #[test]
    fn headers_round_trip(
        key_index in 0usize..87,
        correlation_id in any::<i32>(),
        client_id in proptest::option::of("[ -~]{0,60}"),
        version_pick in any::<u16>(),
    ) {
        let key = ApiKey::iter().nth(key_index % ApiKey::iter().count()).unwrap();
        let range = skiff_wire::protocol_range(key);
        let version = range.min + (version_pick % (range.max - range.min + 1) as u16) as i16;
        let (req, _) = default_bodies(key);
        let h = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(client_id.map(StrBytes::from_string));
        let decoded = decode_request(frame_of(&h, &req), &ApiVersionTable::protocol_supported()).unwrap();
        prop_assert_eq!(decoded.correlation_id(), correlation_id);
        if key.request_header_version(version) >= 1 {
            prop_assert_eq!(decoded.header, h);
        }
    }

    #[test]
    fn metadata_requests_round_trip(
        names in proptest::collection::vec(arb_name(), 0..20),
        version in 4i16..=12,
        auto_create in any::<bool>(),
    ) {
        let topics = names.into_iter().map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(n)))).collect();
        let body = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(topics)).with_allow_auto_topic_creation(auto_create));
        let decoded = decode_request(frame_of(&header(ApiKey::Metadata, version, 1), &body), &ApiVersionTable::protocol_supported()).unwrap();
        prop_assert_eq!(decoded.body, body);
    }

    #[test]
    fn produce_requests_round_trip(
        topics in proptest::collection::vec(
            (arb_name(), proptest::collection::vec((any::<i32>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))), 0..5)),
            0..5),
        version in 3i16..=11,
        acks in prop_oneof![Just(0i16), Just(1), Just(-1)],
        timeout in any::<i32>(),
    ) {
        let topic_data = topics.into_iter().map(|(name, parts)| {
            TopicProduceData::default().with_name(TopicName(name)).with_partition_data(
                parts.into_iter().map(|(i, r)| PartitionProduceData::default().with_index(i).with_records(r.map(Bytes::from))).collect())
        }).collect();
        let body = RequestKind::Produce(ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout).with_topic_data(topic_data));
        let decoded = decode_request(frame_of(&header(ApiKey::Produce, version, 1), &body), &ApiVersionTable::protocol_supported()).unwrap();
        prop_assert_eq!(decoded.body, body);
    }
}
