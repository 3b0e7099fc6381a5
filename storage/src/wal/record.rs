//! The WAL record frame, shared by the file WAL and the object WAL.
//!
//! ```text
//! offset size  field
//! 0      4     magic  "SKWL"                       (stable on disk)
//! 4      4     body length (u32 LE)
//! 8      4     crc32c of the body (u32 LE)
//! body:
//! 12     1     version = 1                         (stable on disk)
//! 13     1     kind: 1 = batch                     (stable on disk)
//! 14     2     reserved, zero
//! 16     8     stream id (u64 LE)
//! 24     8     stream epoch (u64 LE)
//! 32     8     base offset (u64 LE)
//! 40     4     record count (u32 LE, >= 1)
//! 44     ..    payload
//! ```
//!
//! Decoding never panics and never allocates more than the frame it was
//! given: a length above [`MAX_PAYLOAD`] is an error before anything is read.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use skiff_common::{StreamEpoch, StreamId};

use crate::batch::Payload;

/// `"SKWL"`; lets recovery tell a torn tail from a corrupt record in the middle.
pub const MAGIC: [u8; 4] = *b"SKWL";
/// Frame version written by this code (stable on disk).
pub const VERSION: u8 = 1;
/// Record kind: one stored batch (stable on disk).
pub const KIND_BATCH: u8 = 1;
/// Bytes before the body: magic, length, crc.
pub const HEADER_LEN: usize = 12;
/// Fixed part of the body before the payload.
pub const BODY_FIXED_LEN: usize = 32;
/// Largest payload a frame may carry (64 MiB).
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// One appended batch as the WAL stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub stream: StreamId,
    pub epoch: StreamEpoch,
    pub base_offset: u64,
    pub records: u32,
    /// The batch, with the crc32c the frame's crc is combined from.
    pub payload: Payload,
}

impl WalRecord {
    /// Size of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + BODY_FIXED_LEN + self.payload.len()
    }

    /// Append the encoded frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_slice(&self.header());
        out.put_slice(self.payload.bytes());
    }

    /// The frame's bytes before the payload (header and fixed body, crc
    /// included): the frame is this followed by `payload`, so a writer can
    /// hand both to one vectored write without copying the payload.
    pub fn header(&self) -> [u8; HEADER_LEN + BODY_FIXED_LEN] {
        let body_len = BODY_FIXED_LEN + self.payload.len();
        let mut out = [0u8; HEADER_LEN + BODY_FIXED_LEN];
        {
            let mut b = &mut out[HEADER_LEN..];
            b.put_u8(VERSION);
            b.put_u8(KIND_BATCH);
            b.put_u16_le(0);
            b.put_u64_le(self.stream.0);
            b.put_u64_le(self.epoch.0);
            b.put_u64_le(self.base_offset);
            b.put_u32_le(self.records);
        }
        // The payload's crc is known: combining it costs no pass over the data.
        let crc = crc32c::crc32c_combine(
            crc32c::crc32c(&out[HEADER_LEN..]),
            self.payload.crc(),
            self.payload.len(),
        );
        let mut h = &mut out[..HEADER_LEN];
        h.put_slice(&MAGIC);
        h.put_u32_le(body_len as u32);
        h.put_u32_le(crc);
        out
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the frame needs: at the end of a file this is a torn write.
    #[error("truncated frame: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("bad magic")]
    BadMagic,
    #[error("frame length {0} out of range")]
    BadLength(u32),
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("unsupported frame version {0}")]
    Version(u8),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("record count is zero")]
    NoRecords,
}

/// Decode the frame at the start of `buf`; returns it and its encoded length.
/// The payload shares `buf`'s memory.
pub fn decode(buf: &Bytes) -> Result<(WalRecord, usize), DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Truncated {
            need: HEADER_LEN,
            have: buf.len(),
        });
    }
    if buf[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let mut h = &buf[4..HEADER_LEN];
    let body_len = h.get_u32_le();
    let stored = h.get_u32_le();
    if (body_len as usize) < BODY_FIXED_LEN || body_len as usize > BODY_FIXED_LEN + MAX_PAYLOAD {
        return Err(DecodeError::BadLength(body_len));
    }
    let total = HEADER_LEN + body_len as usize;
    if buf.len() < total {
        return Err(DecodeError::Truncated {
            need: total,
            have: buf.len(),
        });
    }
    let body = &buf[HEADER_LEN..total];
    // The payload's own crc is kept (object blocks reuse it); the frame's
    // crc is combined from it and the fixed part's.
    let payload_crc = crc32c::crc32c(&body[BODY_FIXED_LEN..]);
    let computed = crc32c::crc32c_combine(
        crc32c::crc32c(&body[..BODY_FIXED_LEN]),
        payload_crc,
        body.len() - BODY_FIXED_LEN,
    );
    if computed != stored {
        return Err(DecodeError::Crc { stored, computed });
    }
    let mut b = body;
    let version = b.get_u8();
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let kind = b.get_u8();
    if kind != KIND_BATCH {
        return Err(DecodeError::Kind(kind));
    }
    let _reserved = b.get_u16_le();
    let stream = StreamId(b.get_u64_le());
    let epoch = StreamEpoch(b.get_u64_le());
    let base_offset = b.get_u64_le();
    let records = b.get_u32_le();
    if records == 0 {
        return Err(DecodeError::NoRecords);
    }
    let payload = Payload::with_crc(buf.slice(HEADER_LEN + BODY_FIXED_LEN..total), payload_crc);
    Ok((
        WalRecord {
            stream,
            epoch,
            base_offset,
            records,
            payload,
        },
        total,
    ))
}

/// True if a valid frame starts anywhere in `buf` (used to tell a torn tail,
/// after which nothing valid follows, from corruption in the middle).
pub fn any_valid_frame(buf: &Bytes) -> Option<usize> {
    let mut pos = 0;
    while pos + HEADER_LEN <= buf.len() {
        let rest = &buf[pos..];
        match rest.windows(4).position(|w| w == MAGIC) {
            None => return None,
            Some(i) => {
                let at = pos + i;
                if decode(&buf.slice(at..)).is_ok() {
                    return Some(at);
                }
                pos = at + 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = WalRecord> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            1u32..,
            proptest::collection::vec(any::<u8>(), 0..2048),
        )
            .prop_map(|(s, e, b, r, p)| WalRecord {
                stream: StreamId(s),
                epoch: StreamEpoch(e),
                base_offset: b,
                records: r,
                payload: Payload::new(Bytes::from(p)),
            })
    }

    proptest! {
        #[test]
        fn round_trip(recs in proptest::collection::vec(arb_record(), 1..8)) {
            let mut buf = BytesMut::new();
            for r in &recs {
                r.encode(&mut buf);
            }
            let mut bytes = buf.freeze();
            for r in &recs {
                // On disk the crc is one crc32c over the whole body, however
                // it was computed.
                let body_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
                let stored = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
                prop_assert_eq!(stored, crc32c::crc32c(&bytes[HEADER_LEN..HEADER_LEN + body_len]));
                let (got, len) = decode(&bytes).unwrap();
                prop_assert_eq!(got.payload.crc(), crc32c::crc32c(got.payload.bytes()));
                prop_assert_eq!(&got, r);
                prop_assert_eq!(len, r.encoded_len());
                bytes = bytes.slice(len..);
            }
            prop_assert!(bytes.is_empty());
        }

        #[test]
        fn flipped_byte_is_an_error(rec in arb_record(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut buf = BytesMut::new();
            rec.encode(&mut buf);
            let i = at.index(buf.len());
            buf[i] ^= 1 << bit;
            let bytes = buf.freeze();
            // The reserved field is covered by the crc, so every flip is caught.
            prop_assert!(decode(&bytes).is_err());
        }

        #[test]
        fn truncation_is_an_error(rec in arb_record(), cut in any::<prop::sample::Index>()) {
            let mut buf = BytesMut::new();
            rec.encode(&mut buf);
            let n = cut.index(buf.len());
            let short = buf.freeze().slice(..n);
            prop_assert!(
                matches!(decode(&short), Err(DecodeError::Truncated { .. })),
                "truncated frame must be reported as Truncated"
            );
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = bytes.clone();
            if b.len() >= 4 {
                b[..4].copy_from_slice(&MAGIC);
            }
            let _ = decode(&Bytes::from(b));
            let _ = decode(&Bytes::from(bytes));
        }
    }

    #[test]
    fn huge_length_is_rejected_before_reading() {
        let mut b = BytesMut::new();
        b.put_slice(&MAGIC);
        b.put_u32_le(u32::MAX);
        b.put_u32_le(0);
        assert_eq!(decode(&b.freeze()), Err(DecodeError::BadLength(u32::MAX)));
    }

    #[test]
    fn finds_valid_frame_after_garbage() {
        let rec = WalRecord {
            stream: StreamId(1),
            epoch: StreamEpoch(1),
            base_offset: 0,
            records: 1,
            payload: Payload::new(Bytes::from_static(b"x")),
        };
        let mut b = BytesMut::from(&b"SKWLgarbage"[..]);
        rec.encode(&mut b);
        assert_eq!(any_valid_frame(&b.freeze()), Some(11));
        assert_eq!(any_valid_frame(&Bytes::from_static(b"SKWL\0\0\0\0")), None);
    }
}
