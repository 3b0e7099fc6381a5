//! Fetch responses whose record sets stay in the stored batches' own buffers.
//!
//! A Fetch response is mostly record bytes: a partition's `records` field is
//! the concatenation of the stored batches it returns. Encoding it with
//! kafka-protocol means first concatenating the batches into one `Bytes`, then
//! copying that into the response buffer — two copies of every byte served.
//! [`SplicedFetch`] keeps each partition's batches as a list of `Bytes` and
//! [`encode_spliced_fetch`] emits the frame as a list of buffers for one
//! vectored write: the header, partition fields and small batches are copied
//! into a few contiguous buffers, large batches are sent from where storage
//! holds them.
//!
//! The encoding itself stays kafka-protocol's. The response is encoded twice
//! without record bytes: once with each spliced partition's `records` null,
//! once empty. The two encodings differ exactly at the records length
//! prefixes (a null and an empty field have prefixes of equal size but
//! different bytes: `ff ff ff ff` / `00 00 00 00` before v12, varint `0` /
//! `1` from v12), so comparing them finds every prefix, in encoding order,
//! without this crate knowing the field layout of any Fetch version. The
//! real prefix and the batches are then put in its place.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;

use crate::EncodeError;
use crate::frame::{FrameError, SIZE_PREFIX_LEN};

/// Batches smaller than this are copied into the surrounding buffer: one
/// iovec per tiny batch would cost more than the copy.
pub const SPLICE_MIN_BYTES: usize = 16 * 1024;

/// A Fetch response plus the batches of each partition that returns records.
///
/// Every partition whose `records` is `Some` has one entry in `sets`, in
/// response order (topics, then their partitions); its `records` value is not
/// sent, the entry's batches are.
#[derive(Debug, Clone, Default)]
pub struct SplicedFetch {
    /// The response; a spliced partition's `records` is `Some(Bytes::new())`.
    pub response: FetchResponse,
    /// The batches of each spliced partition, in response order.
    pub sets: Vec<Vec<Bytes>>,
}

impl SplicedFetch {
    /// The response with every record set concatenated into its partition's
    /// `records` field, for callers that want a plain response (tests, tools).
    pub fn into_inline(self) -> FetchResponse {
        let mut response = self.response;
        let mut sets = self.sets.into_iter();
        for t in &mut response.responses {
            for p in &mut t.partitions {
                if p.records.is_some() {
                    p.records = Some(concat(sets.next().unwrap_or_default()));
                }
            }
        }
        response
    }
}

fn concat(batches: Vec<Bytes>) -> Bytes {
    match batches.len() {
        0 => Bytes::new(),
        1 => batches.into_iter().next().unwrap_or_default(),
        _ => {
            let mut out = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
            for b in &batches {
                out.extend_from_slice(b);
            }
            out.freeze()
        }
    }
}

/// A frame as buffers to write in order; a [`Buf`], so
/// `AsyncWriteExt::write_all_buf` writes it with vectored writes.
#[derive(Debug, Default)]
pub struct FrameParts {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

impl FrameParts {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.remaining += b.len();
            self.parts.push_back(b);
        }
    }

    /// How many buffers the frame is made of.
    pub fn buffers(&self) -> usize {
        self.parts.len()
    }

    /// The frame as one contiguous buffer (tests).
    pub fn to_bytes(&self) -> Bytes {
        concat(self.parts.iter().cloned().collect())
    }
}

impl Buf for FrameParts {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| &b[..])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of the frame");
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, b) in dst.iter_mut().zip(&self.parts) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        n
    }
}

/// Encodes `fetch` as a size-prefixed response frame answering
/// `correlation_id` at `api_version`.
///
/// # Errors
/// [`EncodeError`] when kafka-protocol refuses the response at this version,
/// when `fetch.sets` does not match its spliced partitions, or when the frame
/// would be larger than an `i32` size.
pub fn encode_spliced_fetch(
    correlation_id: i32,
    api_version: i16,
    fetch: SplicedFetch,
) -> Result<FrameParts, EncodeError> {
    let SplicedFetch { mut response, sets } = fetch;
    let fail = |e: &dyn std::fmt::Display| EncodeError::message(ApiKey::Fetch, api_version, e);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = ApiKey::Fetch.response_header_version(api_version);
    let encode = |r: &FetchResponse| -> Result<BytesMut, EncodeError> {
        let mut out = BytesMut::with_capacity(256);
        header
            .encode(&mut out, header_version)
            .map_err(|e| fail(&e))?;
        r.encode(&mut out, api_version).map_err(|e| fail(&e))?;
        Ok(out)
    };
    for t in &mut response.responses {
        for p in &mut t.partitions {
            if p.records.is_some() {
                p.records = Some(Bytes::new());
            }
        }
    }
    let empty = encode(&response)?;
    for t in &mut response.responses {
        for p in &mut t.partitions {
            if p.records.is_some() {
                p.records = None;
            }
        }
    }
    let null = encode(&response)?;
    let prefixes = records_prefixes(&empty, &null);
    if prefixes.len() != sets.len() || empty.len() != null.len() {
        return Err(fail(&format_args!(
            "{} record sets for {} records fields",
            sets.len(),
            prefixes.len()
        )));
    }
    let flexible = header_version >= 1;
    let records_len: usize = sets.iter().flatten().map(Bytes::len).sum();
    let body_len = empty.len() + records_len + extra_prefix_len(&sets, flexible);
    let size = i32::try_from(body_len).map_err(|_| FrameError::TooLarge {
        size: body_len,
        max: i32::MAX as usize,
    })?;

    let mut out = FrameParts::default();
    let mut cur = BytesMut::with_capacity(SIZE_PREFIX_LEN + empty.len());
    cur.put_i32(size);
    let mut pos = 0;
    for ((start, end), set) in prefixes.into_iter().zip(sets) {
        cur.extend_from_slice(&empty[pos..start]);
        pos = end;
        let len = set.iter().map(Bytes::len).sum::<usize>();
        put_records_prefix(&mut cur, len, flexible);
        for b in set {
            if b.len() < SPLICE_MIN_BYTES {
                cur.extend_from_slice(&b);
            } else {
                out.push(cur.split().freeze());
                out.push(b);
            }
        }
    }
    cur.extend_from_slice(&empty[pos..]);
    out.push(cur.freeze());
    debug_assert_eq!(out.remaining(), SIZE_PREFIX_LEN + body_len);
    Ok(out)
}

/// The byte ranges where the two encodings differ, merging adjacent bytes:
/// each is one records length prefix.
fn records_prefixes(a: &[u8], b: &[u8]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x == y {
            continue;
        }
        match out.last_mut() {
            // Before v12 a prefix is 4 bytes that all differ; never two
            // prefixes back to back (each partition has fields between).
            Some(last) if last.1 == i => last.1 = i + 1,
            _ => out.push((i, i + 1)),
        }
    }
    out
}

/// How much longer the real length prefixes are than the empty ones.
fn extra_prefix_len(sets: &[Vec<Bytes>], flexible: bool) -> usize {
    if !flexible {
        return 0;
    }
    sets.iter()
        .map(|s| varint_len(s.iter().map(Bytes::len).sum::<usize>() as u64 + 1) - 1)
        .sum()
}

fn put_records_prefix(out: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_uvarint(out, len as u64 + 1);
    } else {
        // The frame size check bounds the total, so every set fits an i32.
        out.put_i32(len as i32);
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

#[cfg(test)]
mod tests;
