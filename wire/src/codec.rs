//! [`KafkaCodec`]: the framing as a `tokio_util::codec` Decoder/Encoder, for
//! `FramedRead`/`FramedWrite` over a socket (feature `codec`).

use bytes::{Bytes, BytesMut};

use crate::frame::{FrameDecoder, FrameError};

/// Errors of [`KafkaCodec`]: the socket's, or a frame prefix that ends the
/// connection.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Reading or writing the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An invalid frame size.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Decodes frame bodies ([`Bytes`], without the size prefix) and encodes
/// already-framed messages (the output of [`crate::encode_response`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaCodec {
    frames: FrameDecoder,
}

impl KafkaCodec {
    /// A codec accepting frames of at most `max_frame_size` bytes.
    pub fn new(max_frame_size: usize) -> Self {
        Self {
            frames: FrameDecoder::new(max_frame_size),
        }
    }
}

impl tokio_util::codec::Decoder for KafkaCodec {
    type Item = Bytes;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        Ok(self.frames.decode(src)?)
    }
}

impl tokio_util::codec::Encoder<Bytes> for KafkaCodec {
    type Error = CodecError;

    fn encode(&mut self, framed: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&framed);
        Ok(())
    }
}
