//! Length-prefixed framing: every Kafka request and response is a big-endian `i32`
//! size followed by that many bytes.
//!
//! [`FrameDecoder::decode`] checks that a whole frame is in the buffer before it
//! hands anything out (the mini-redis `Connection::parse_frame` pattern), and it
//! rejects negative and oversized lengths from the 4-byte prefix alone, before any
//! buffer is grown for the body.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the size prefix in front of every frame.
pub const SIZE_PREFIX_LEN: usize = 4;

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// A frame prefix that must not be read any further; the connection should be closed
/// (Kafka closes it too: the stream cannot be resynchronised).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Size announced by the prefix.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The size prefix is negative.
    #[error("negative frame size {0}")]
    NegativeSize(i32),
}

/// Splits length-prefixed frames off a read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    max_frame_size: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameDecoder {
    /// A decoder accepting frames of at most `max_frame_size` bytes (prefix excluded).
    pub fn new(max_frame_size: usize) -> Self {
        Self { max_frame_size }
    }

    /// The largest frame body accepted.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Size of the frame body at the front of `buf`, validated against the limits, or
    /// `None` while fewer than 4 bytes are buffered. Lets a caller account for the
    /// bytes (e.g. take permits from a byte semaphore) before the body is read.
    pub fn peek_size(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.first_chunk::<SIZE_PREFIX_LEN>() else {
            return Ok(None);
        };
        let size = i32::from_be_bytes(*prefix);
        let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize(size))?;
        if size > self.max_frame_size {
            return Err(FrameError::TooLarge {
                size,
                max: self.max_frame_size,
            });
        }
        Ok(Some(size))
    }

    /// Takes the next whole frame body off the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed; in that case, once the size is
    /// known and valid, `buf` is reserved up to the end of the frame so the next reads
    /// fill it without reallocating. The returned `Bytes` shares `buf`'s allocation
    /// (no copy).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(size) = self.peek_size(buf)? else {
            return Ok(None);
        };
        let total = SIZE_PREFIX_LEN + size;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(SIZE_PREFIX_LEN);
        Ok(Some(buf.split_to(size).freeze()))
    }
}

/// Appends `body` to `out` as one frame.
///
/// # Errors
/// [`FrameError::TooLarge`] if `body` does not fit an `i32` size prefix.
pub fn encode_frame(body: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
    let size = frame_size_prefix(body.len())?;
    out.reserve(SIZE_PREFIX_LEN + body.len());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Reserves a size prefix at the end of `out`, runs `write` to append the body, then
/// fills the prefix in. Used to encode messages straight into the output buffer.
pub(crate) fn write_framed<E>(
    out: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<FrameError>,
{
    let start = out.len();
    out.extend_from_slice(&[0; SIZE_PREFIX_LEN]);
    if let Err(e) = write(out) {
        out.truncate(start);
        return Err(e);
    }
    let body_len = out.len() - start - SIZE_PREFIX_LEN;
    let size = match frame_size_prefix(body_len) {
        Ok(size) => size,
        Err(e) => {
            out.truncate(start);
            return Err(e.into());
        }
    };
    out[start..start + SIZE_PREFIX_LEN].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

fn frame_size_prefix(len: usize) -> Result<i32, FrameError> {
    i32::try_from(len).map_err(|_| FrameError::TooLarge {
        size: len,
        max: i32::MAX as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn waits_for_prefix_and_body() {
        let d = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&[0u8, 0, 0][..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&[3, b'a', b'b']);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.capacity() >= 7, "reserved up to the end of the frame");
        buf.extend_from_slice(b"cd");
        assert_eq!(d.decode(&mut buf), Ok(Some(Bytes::from_static(b"abc"))));
        assert_eq!(&buf[..], b"d");
    }

    #[test]
    fn rejects_oversize_before_reserving() {
        let d = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&(1025i32).to_be_bytes()[..]);
        let cap = buf.capacity();
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::TooLarge {
                size: 1025,
                max: 1024
            })
        );
        assert_eq!(buf.capacity(), cap);
        let mut huge = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
        assert!(matches!(
            FrameDecoder::default().decode(&mut huge),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_negative_size() {
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::NegativeSize(-1))
        );
    }

    #[test]
    fn empty_frame_is_a_frame() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Ok(Some(Bytes::new()))
        );
        assert!(buf.is_empty());
    }

    proptest! {
        #[test]
        fn frames_round_trip_in_any_chunking(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for b in &bodies {
                encode_frame(b, &mut wire).unwrap();
            }
            let d = FrameDecoder::new(300);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(frame) = d.decode(&mut buf).unwrap() {
                    out.push(frame.to_vec());
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, bodies);
        }

        #[test]
        fn never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let d = FrameDecoder::new(32);
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = d.decode(&mut buf) {}
        }
    }
}
