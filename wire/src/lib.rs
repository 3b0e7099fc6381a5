//! `skiff-wire`: the Kafka wire protocol, as pure functions over `Bytes`/`BytesMut`.
//! No sockets, no tasks: everything that parses untrusted bytes lives here, and all
//! of it is fuzzed (`wire/fuzz/`, and the same bodies in the test suite).
//!
//! # What it owns
//!
//! - **Framing** ([`FrameDecoder`]): splits `i32`-size-prefixed frames off a read
//!   buffer once a whole frame is present, rejecting negative sizes and sizes above
//!   the configured maximum (Kafka's `socket.request.max.bytes`, 100 MiB default)
//!   before reserving memory for the body. With the `codec` feature,
//!   [`codec::KafkaCodec`] wraps it as a `tokio_util` codec.
//! - **Requests** ([`decode_request`]): reads the api key, version and correlation
//!   id, checks them against the broker's [`ApiVersionTable`], decodes the request
//!   header in the version the API/version needs (v1, or v2 with tagged fields for
//!   flexible versions) and the typed body into kafka-protocol's
//!   [`RequestKind`](kafka_protocol::messages::RequestKind). Errors
//!   ([`RequestError`]) keep the correlation id so the broker can answer or log.
//! - **Responses** ([`encode_response`]): header v0/v1 by API and version
//!   (ApiVersions always v0), size-prefixed. [`encode_request`] and
//!   [`decode_response`] serve clients such as `skiff admin`.
//! - **API versions** ([`ApiVersionTable`]): filled by the broker from its
//!   registered handlers; answers ApiVersions, including the v0
//!   `UNSUPPORTED_VERSION` fallback Kafka sends so clients can downgrade.
//! - **RecordBatch v2** ([`records`]): zero-copy [`BatchView`](records::BatchView)
//!   with every header field, crc32c check, validation of counts, offset deltas and
//!   record structure; [`BatchMut`](records::BatchMut) stamps the base offset, leader
//!   epoch and max timestamp in place; gzip, snappy (xerial and raw), lz4 and zstd
//!   with a decompressed-size cap; [`BatchError::error_code`](records::BatchError::error_code)
//!   gives the Kafka code for every refusal.
//!
//! kafka-protocol is re-exported ([`kafka_protocol`]) so the broker uses the same
//! version. It is a patched copy (`wire/vendor/kafka-protocol`): upstream 0.18.0
//! sizes `Vec`s from untrusted counts and can be made to abort the process.
//!
//! # Example: one request through a broker's connection loop
//!
//! ```
//! use bytes::BytesMut;
//! use skiff_wire::kafka_protocol::messages::{
//!     ApiKey, MetadataRequest, RequestHeader, RequestKind, ResponseKind, MetadataResponse,
//! };
//! use skiff_wire::{ApiVersionTable, FrameDecoder, decode_request, encode_request, encode_response};
//!
//! // The broker registers what its handlers serve.
//! let mut table = ApiVersionTable::new();
//! table.register(ApiKey::Metadata, 0, 12).unwrap();
//!
//! // A client's bytes arrive in the read buffer.
//! let header = RequestHeader::default()
//!     .with_request_api_key(ApiKey::Metadata as i16)
//!     .with_request_api_version(12)
//!     .with_correlation_id(7);
//! let mut read_buf = BytesMut::new();
//! encode_request(&header, &RequestKind::Metadata(MetadataRequest::default()), &mut read_buf).unwrap();
//!
//! // Connection loop: take whole frames, decode, handle, answer.
//! let frames = FrameDecoder::default();
//! let frame = frames.decode(&mut read_buf).unwrap().expect("a whole frame");
//! let request = decode_request(frame, &table).unwrap();
//! assert_eq!(request.api_key, ApiKey::Metadata);
//! let response = ResponseKind::Metadata(MetadataResponse::default());
//! let mut write_buf = BytesMut::new();
//! encode_response(request.correlation_id(), request.api_version(), &response, &mut write_buf).unwrap();
//! assert_eq!(&write_buf[4..8], &7i32.to_be_bytes());
//! ```
//!
//! # Example: accepting a produced batch
//!
//! ```
//! use skiff_wire::records::{BatchBuilder, BatchMut, BatchView, Compression, NewRecord, ValidateOptions, single_batch};
//!
//! let mut b = BatchBuilder::new(Compression::Lz4);
//! b.push(NewRecord { timestamp: 1_700_000_000_000, key: Some(b"vin-1"), value: Some(b"{}"), headers: &[] });
//! let records = b.build().unwrap(); // what a Produce partition's `records` holds
//!
//! let batch = single_batch(Some(&records)).unwrap();
//! let summary = batch.validate(&ValidateOptions::default()).unwrap();
//! assert_eq!(summary.record_count, 1);
//!
//! let mut owned = batch.bytes().to_vec(); // e.g. the WAL's append buffer
//! BatchMut::new(&mut owned).unwrap().set_base_offset(42);
//! assert_eq!(BatchView::parse(owned.into()).unwrap().base_offset(), 42);
//! ```

mod api_list;
#[cfg(feature = "codec")]
pub mod codec;
mod frame;
#[doc(hidden)]
pub mod fuzz_bodies;
pub mod records;
mod request;
mod response;
pub mod spliced;
mod versions;

pub use frame::{DEFAULT_MAX_FRAME_SIZE, FrameDecoder, FrameError, SIZE_PREFIX_LEN, encode_frame};
pub use kafka_protocol;
pub use request::{
    EncodeError, HEADER_PREFIX_LEN, HeaderPrefix, Request, RequestError, decode_request,
    encode_request,
};
pub use response::{
    ResponseDecodeError, decode_response, encode_response, request_api_key, response_api_key,
};
pub use versions::{
    ApiVersionTable, VersionTableError, is_valid_api_versions_request, protocol_range,
};
