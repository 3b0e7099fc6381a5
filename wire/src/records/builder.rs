//! Building v2 batches: for the broker's own records (internal topics, control
//! batches), tests and benchmarks.

use bytes::Bytes;

use super::batch::{Attributes, BATCH_HEADER_LEN, BatchMut, LOG_OVERHEAD, MAGIC_V2, TimestampType};
use super::compression::{self, Compression, CompressionError};
use super::varint::{put_varint, put_varlong};

/// A record to add to a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewRecord<'a> {
    /// Absolute timestamp (ms).
    pub timestamp: i64,
    /// Key, `None` for null.
    pub key: Option<&'a [u8]>,
    /// Value, `None` for null.
    pub value: Option<&'a [u8]>,
    /// Headers: key and nullable value.
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
}

/// Accumulates records and encodes them as one v2 batch.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    attributes: Attributes,
    base_offset: i64,
    partition_leader_epoch: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    count: i32,
    records: Vec<u8>,
    scratch: Vec<u8>,
}

impl BatchBuilder {
    /// An empty, non-idempotent CreateTime batch with base offset 0.
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            attributes: Attributes(0).with_compression(compression),
            base_offset: 0,
            partition_leader_epoch: -1,
            base_timestamp: None,
            max_timestamp: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            count: 0,
            records: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Sets the base offset.
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    /// Marks the batch idempotent with this producer id, epoch and first sequence.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the transactional and control bits.
    pub fn flags(mut self, transactional: bool, control: bool) -> Self {
        let bits = (i16::from(transactional) << 4) | (i16::from(control) << 5);
        self.attributes = Attributes((self.attributes.0 & !(0b11 << 4)) | bits);
        self
    }

    /// Sets the timestamp type bit.
    pub fn timestamp_type(mut self, t: TimestampType) -> Self {
        self.attributes = self.attributes.with_timestamp_type(t);
        self
    }

    /// Number of records added.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a record; its offset delta is its position.
    pub fn push(&mut self, record: NewRecord<'_>) {
        let base_timestamp = *self.base_timestamp.get_or_insert(record.timestamp);
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        let body = &mut self.scratch;
        body.clear();
        body.push(0); // attributes
        put_varlong(body, record.timestamp.wrapping_sub(base_timestamp));
        put_varint(body, self.count);
        put_nullable(body, record.key);
        put_nullable(body, record.value);
        put_varint(body, record.headers.len() as i32);
        for (key, value) in record.headers {
            put_nullable(body, Some(key));
            put_nullable(body, *value);
        }
        put_varint(&mut self.records, body.len() as i32);
        self.records.extend_from_slice(body);
        self.count += 1;
    }

    /// Encodes the batch, compressing the records with the builder's codec.
    ///
    /// # Errors
    /// Only if the codec fails.
    pub fn build(self) -> Result<Bytes, CompressionError> {
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + self.records.len());
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&[0; 4]); // batch length, below
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&[0; 4]); // crc, below
        out.extend_from_slice(&self.attributes.0.to_be_bytes());
        out.extend_from_slice(&(self.count - 1).max(0).to_be_bytes());
        let base_timestamp = self.base_timestamp.unwrap_or(-1);
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        compression::compress(self.compression, &self.records, &mut out)?;
        let batch_length =
            i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| CompressionError::TooLarge {
                codec: self.compression,
                limit: i32::MAX as usize,
            })?;
        out[8..12].copy_from_slice(&batch_length.to_be_bytes());
        BatchMut::new(&mut out)
            .expect("the builder writes a well-framed v2 header")
            .update_crc();
        Ok(out.into())
    }
}

fn put_nullable(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}
