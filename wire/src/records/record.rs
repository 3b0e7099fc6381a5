//! Records inside a v2 batch, read in place.
//!
//! ```text
//! length: varint            (bytes that follow, for this record)
//! attributes: i8
//! timestamp_delta: varlong
//! offset_delta: varint
//! key_length: varint, key   (-1 = null)
//! value_length: varint, value
//! header_count: varint
//! [header_key_length: varint, key, header_value_length: varint, value]...
//! ```

use std::ops::Range;

use bytes::Bytes;

use super::error::BatchError;
use super::varint::{VarintError, read_varint, read_varlong};

/// One record, as ranges into the records buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawRecord {
    pub(crate) attributes: i8,
    pub(crate) timestamp_delta: i64,
    pub(crate) offset_delta: i32,
    pub(crate) key: Option<Range<usize>>,
    pub(crate) value: Option<Range<usize>>,
    pub(crate) header_count: usize,
    pub(crate) headers: Range<usize>,
}

/// Parses the record at `*pos` (record number `index`, for errors) and advances
/// `*pos` past it.
pub(crate) fn read_record(
    buf: &[u8],
    pos: &mut usize,
    index: usize,
) -> Result<RawRecord, BatchError> {
    let bad = |reason| BatchError::MalformedRecord { index, reason };
    let varint =
        |pos: &mut usize, what| read_varint(buf, pos).map_err(|e| bad(varint_reason(e, what)));
    let len = varint(pos, "length")?;
    let len = usize::try_from(len).map_err(|_| bad("negative record length"))?;
    let end = pos
        .checked_add(len)
        .filter(|&end| end <= buf.len())
        .ok_or(bad("record length exceeds the batch"))?;
    // Parse within the record's own bytes so nothing can read past its length.
    let body = &buf[..end];
    let attributes = *body.get(*pos).ok_or(bad("record too short"))? as i8;
    *pos += 1;
    let timestamp_delta =
        read_varlong(body, pos).map_err(|e| bad(varint_reason(e, "timestamp delta")))?;
    let varint =
        |pos: &mut usize, what| read_varint(body, pos).map_err(|e| bad(varint_reason(e, what)));
    let offset_delta = varint(pos, "offset delta")?;
    let key = read_nullable(body, pos, index, "key")?;
    let value = read_nullable(body, pos, index, "value")?;
    let header_count = varint(pos, "header count")?;
    let header_count = usize::try_from(header_count).map_err(|_| bad("negative header count"))?;
    let headers_start = *pos;
    for _ in 0..header_count {
        let key_len = varint(pos, "header key length")?;
        let key_len = usize::try_from(key_len).map_err(|_| bad("null header key"))?;
        skip(body, pos, key_len).ok_or(bad("header key exceeds the record"))?;
        read_nullable(body, pos, index, "header value")?;
    }
    if *pos != end {
        return Err(bad("record length disagrees with its fields"));
    }
    Ok(RawRecord {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        header_count,
        headers: headers_start..end,
    })
}

fn read_nullable(
    buf: &[u8],
    pos: &mut usize,
    index: usize,
    what: &'static str,
) -> Result<Option<Range<usize>>, BatchError> {
    let bad = |reason| BatchError::MalformedRecord { index, reason };
    let len = read_varint(buf, pos).map_err(|e| bad(varint_reason(e, what)))?;
    if len < 0 {
        return if len == -1 {
            Ok(None)
        } else {
            Err(bad("negative length other than -1"))
        };
    }
    let start = *pos;
    skip(buf, pos, len as usize).ok_or(bad("field exceeds the record"))?;
    Ok(Some(start..*pos))
}

fn skip(buf: &[u8], pos: &mut usize, n: usize) -> Option<()> {
    let end = pos.checked_add(n).filter(|&e| e <= buf.len())?;
    *pos = end;
    Some(())
}

fn varint_reason(e: VarintError, what: &'static str) -> &'static str {
    match (e, what) {
        (VarintError::TooLong, _) => "varint longer than its type allows",
        (VarintError::Truncated, "length") => "truncated record length",
        (VarintError::Truncated, _) => "record ends inside a field",
    }
}

/// A record of a batch, its key, value and headers sharing the batch's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// Record attributes (unused by Kafka today).
    pub attributes: i8,
    /// Timestamp minus the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset minus the batch's base offset.
    pub offset_delta: i32,
    /// The key; `None` for a null key.
    pub key: Option<Bytes>,
    /// The value; `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    header_count: usize,
    headers: Bytes,
}

impl RecordView {
    pub(crate) fn new(buf: &Bytes, raw: RawRecord) -> Self {
        Self {
            attributes: raw.attributes,
            timestamp_delta: raw.timestamp_delta,
            offset_delta: raw.offset_delta,
            key: raw.key.map(|r| buf.slice(r)),
            value: raw.value.map(|r| buf.slice(r)),
            header_count: raw.header_count,
            headers: buf.slice(raw.headers),
        }
    }

    /// The record's headers: `(key, value)` with `None` for a null value.
    pub fn headers(&self) -> impl Iterator<Item = (Bytes, Option<Bytes>)> + '_ {
        let mut pos = 0;
        (0..self.header_count).map_while(move |_| {
            // The headers were validated when the record was read.
            let key = read_nullable(&self.headers, &mut pos, 0, "").ok()??;
            let value = read_nullable(&self.headers, &mut pos, 0, "").ok()?;
            Some((
                self.headers.slice(key),
                value.map(|v| self.headers.slice(v)),
            ))
        })
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count
    }
}

/// Iterates the records of a (decompressed) records buffer, stopping at the first
/// malformed one. Obtained from [`super::BatchView::records`].
#[derive(Debug, Clone)]
pub struct RecordIter {
    buf: Bytes,
    pos: usize,
    index: usize,
    remaining: usize,
}

impl RecordIter {
    pub(crate) fn new(buf: Bytes, count: usize) -> Self {
        Self {
            buf,
            pos: 0,
            index: 0,
            remaining: count,
        }
    }
}

impl Iterator for RecordIter {
    type Item = Result<RecordView, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        if self.pos >= self.buf.len() {
            self.remaining = 0;
            return Some(Err(BatchError::MalformedRecord {
                index: self.index,
                reason: "records end before the declared count",
            }));
        }
        let result = read_record(&self.buf, &mut self.pos, self.index);
        self.index += 1;
        self.remaining -= 1;
        match result {
            Ok(raw) => Some(Ok(RecordView::new(&self.buf, raw))),
            Err(e) => {
                self.remaining = 0;
                Some(Err(e))
            }
        }
    }
}
