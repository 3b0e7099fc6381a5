//! The one frame format used on disk (Raft log segments, vote, snapshots)
//! and on the wire (TCP transport):
//!
//! ```text
//! [len: u32 LE][crc32c: u32 LE][version: u8][payload: len - 1 bytes]
//! ```
//!
//! `len` counts the version byte and the payload; the crc covers both. The
//! payload is postcard-encoded. A reader checks the length against a bound
//! before allocating, so a corrupt or hostile length never causes a large
//! allocation.

use serde::{Serialize, de::DeserializeOwned};

/// Current frame version (stable on disk).
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER: usize = 9;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    #[error("frame checksum mismatch")]
    Checksum,
    #[error("unsupported frame version {0}")]
    Version(u8),
    #[error("empty frame")]
    Empty,
    #[error("cannot decode frame payload: {0}")]
    Decode(String),
    #[error("cannot encode frame payload: {0}")]
    Encode(String),
}

/// Encode `value` as one frame.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; HEADER];
    buf[8] = VERSION;
    let buf = postcard::to_extend(value, buf).map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = u32::try_from(buf.len() - 8)
        .map_err(|_| FrameError::TooLarge(buf.len(), u32::MAX as usize))?;
    let crc = crc32c::crc32c(&buf[8..]);
    let mut buf = buf;
    buf[0..4].copy_from_slice(&len.to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

/// Parse the header of a frame: `(body length, crc)`, checking the bound.
pub fn header(h: &[u8; 8], max: usize) -> Result<(usize, u32), FrameError> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge(len, max));
    }
    Ok((len, crc))
}

/// Check a frame body (version byte + payload) against its crc and decode it.
pub fn decode_body<T: DeserializeOwned>(body: &[u8], crc: u32) -> Result<T, FrameError> {
    if crc32c::crc32c(body) != crc {
        return Err(FrameError::Checksum);
    }
    let (&version, payload) = body.split_first().ok_or(FrameError::Empty)?;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    postcard::from_bytes(payload).map_err(|e| FrameError::Decode(e.to_string()))
}

/// Decode the first frame of `buf`: `Ok(None)` when `buf` holds only part
/// of it, else the value and the bytes consumed.
pub fn decode<T: DeserializeOwned>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let h: [u8; 8] = buf[..8].try_into().expect("8 bytes checked above");
    let (len, crc) = header(&h, max)?;
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let v = decode_body(&buf[8..8 + len], crc)?;
    Ok(Some((v, 8 + len)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn round_trip(v in proptest::collection::vec(any::<u64>(), 0..50), s in ".*") {
            let bytes = encode(&(v.clone(), s.clone())).unwrap();
            let (back, used): ((Vec<u64>, String), usize) = decode(&bytes, 1 << 20).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, (v, s));
            // Any prefix is "incomplete", never an error or a panic.
            for cut in 0..bytes.len() {
                prop_assert!(decode::<(Vec<u64>, String)>(&bytes[..cut], 1 << 20).unwrap().is_none());
            }
        }

        #[test]
        fn corruption_is_detected(flip in 8usize..40, bit in 0u8..8) {
            let bytes = encode(&"some payload that is long enough".to_string()).unwrap();
            let mut bad = bytes.clone();
            let i = flip.min(bad.len() - 1);
            bad[i] ^= 1 << bit;
            prop_assert!(decode::<String>(&bad, 1 << 20).is_err());
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_allocating() {
        let mut bytes = encode(&1u32).unwrap();
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode::<u32>(&bytes, 1024),
            Err(FrameError::TooLarge(..))
        ));
    }
}
