//! Kafka wire protocol for Skiff: frame reading with a size cap, request and
//! response headers, versioned message codecs (through the `kafka-protocol`
//! crate), RecordBatch v2 views and validation, and compression.
//!
//! Pure: functions over `Bytes`/`BytesMut`, no sockets and no tasks. Every
//! parse of untrusted bytes in Skiff lives in this crate.
