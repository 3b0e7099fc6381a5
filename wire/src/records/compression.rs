//! Record-batch compression codecs, with a cap on decompressed size.
//!
//! Formats are the ones Kafka clients write:
//! - gzip: RFC 1952 (Java's `GZIPOutputStream`); concatenated members accepted.
//! - snappy: the xerial `SnappyOutputStream` framing the Java client writes (16-byte
//!   header, then `[i32 length][raw snappy block]`...), or one raw snappy block as
//!   librdkafka writes. Both are read; xerial framing is written, as Java does.
//! - lz4: the LZ4 frame format (Kafka's `Lz4BlockOutputStream`: independent 64 KiB
//!   blocks, no content checksum).
//! - zstd: standard zstd frames; the decoder window is capped at 32 MiB.
//!
//! Decompression never produces more than the caller's `limit` bytes: a batch that
//! would is rejected as [`CompressionError::TooLarge`] (a decompression bomb from
//! the network must not be able to exhaust memory).

use std::io::{Read, Write};

/// Compression codec ids, attribute bits 0-2 of a batch (stable on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Uncompressed.
    None = 0,
    /// gzip.
    Gzip = 1,
    /// snappy.
    Snappy = 2,
    /// lz4 frame.
    Lz4 = 3,
    /// zstd.
    Zstd = 4,
}

impl Compression {
    /// All codecs, in id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec with this id, if it is one.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.get(usize::from(id)).copied()
    }

    /// The codec's id.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Compressing or decompressing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    /// The input is not valid for the codec.
    #[error("corrupt {codec:?} data: {reason}")]
    Corrupt {
        /// The codec.
        codec: Compression,
        /// What the decoder reported.
        reason: String,
    },
    /// The decompressed data would exceed the caller's limit.
    #[error("{codec:?} data decompresses to more than {limit} bytes")]
    TooLarge {
        /// The codec.
        codec: Compression,
        /// The limit.
        limit: usize,
    },
}

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
const XERIAL_BLOCK: usize = 32 * 1024;
/// zstd window cap: level 19 uses 8 MiB windows, client defaults 2 MiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// Decompresses `input`, producing at most `limit` bytes.
///
/// # Errors
/// [`CompressionError::Corrupt`] for invalid input, [`CompressionError::TooLarge`]
/// past `limit`.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let corrupt = |e: &dyn std::fmt::Display| CompressionError::Corrupt {
        codec,
        reason: e.to_string(),
    };
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(CompressionError::TooLarge { codec, limit });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => read_capped(codec, flate2::read::MultiGzDecoder::new(input), limit),
        Compression::Snappy => decompress_snappy(input, limit),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(input).map_err(|e| corrupt(&e))?;
            read_capped(codec, decoder, limit)
        }
        Compression::Zstd => {
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(&e))?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| corrupt(&e))?;
            read_capped(codec, decoder, limit)
        }
    }
}

fn read_capped(
    codec: Compression,
    reader: impl Read,
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| CompressionError::Corrupt {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge { codec, limit });
    }
    Ok(out)
}

fn decompress_snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Snappy;
    let corrupt = |reason: String| CompressionError::Corrupt { codec, reason };
    let Some(mut blocks) = input
        .strip_prefix(XERIAL_MAGIC)
        .and_then(|rest| rest.get(XERIAL_HEADER_LEN - XERIAL_MAGIC.len()..))
    else {
        return decompress_snappy_block(input, limit, Vec::new());
    };
    let mut out = Vec::new();
    while !blocks.is_empty() {
        let (len, rest) = blocks
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated xerial block length".into()))?;
        let len = usize::try_from(i32::from_be_bytes(*len))
            .map_err(|_| corrupt("negative xerial block length".into()))?;
        let block = rest
            .get(..len)
            .ok_or_else(|| corrupt(format!("xerial block of {len} bytes is truncated")))?;
        out = decompress_snappy_block(block, limit, out)?;
        blocks = &rest[len..];
    }
    Ok(out)
}

/// Appends the raw snappy `block` to `out`, checking its declared length first.
fn decompress_snappy_block(
    block: &[u8],
    limit: usize,
    mut out: Vec<u8>,
) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Snappy;
    let corrupt = |e: snap::Error| CompressionError::Corrupt {
        codec,
        reason: e.to_string(),
    };
    let len = snap::raw::decompress_len(block).map_err(corrupt)?;
    if len > limit.saturating_sub(out.len()) {
        return Err(CompressionError::TooLarge { codec, limit });
    }
    let start = out.len();
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(corrupt)?;
    out.truncate(start + written);
    Ok(out)
}

/// Appends `input` compressed with `codec` to `out`.
///
/// # Errors
/// Only if the codec library fails (it does not for in-memory buffers in practice).
pub fn compress(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let fail = |e: &dyn std::fmt::Display| CompressionError::Corrupt {
        codec,
        reason: e.to_string(),
    };
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            enc.write_all(input).map_err(|e| fail(&e))?;
            enc.finish().map_err(|e| fail(&e))?;
        }
        Compression::Snappy => {
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // min compatible version
            let mut enc = snap::raw::Encoder::new();
            for chunk in input.chunks(XERIAL_BLOCK) {
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                out.resize(at + 4 + snap::raw::max_compress_len(chunk.len()), 0);
                let n = enc
                    .compress(chunk, &mut out[at + 4..])
                    .map_err(|e| fail(&e))?;
                out.truncate(at + 4 + n);
                let n = i32::try_from(n).map_err(|e| fail(&e))?;
                out[at..at + 4].copy_from_slice(&n.to_be_bytes());
            }
        }
        Compression::Lz4 => {
            let mut enc = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(out)
                .map_err(|e| fail(&e))?;
            enc.write_all(input).map_err(|e| fail(&e))?;
            let (_, result) = enc.finish();
            result.map_err(|e| fail(&e))?;
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, 3).map_err(|e| fail(&e))?;
            enc.write_all(input).map_err(|e| fail(&e))?;
            enc.finish().map_err(|e| fail(&e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_codec_round_trips(data in proptest::collection::vec(any::<u8>(), 0..100_000), codec in 0u8..5) {
            let codec = Compression::from_id(codec).unwrap();
            let mut out = Vec::new();
            compress(codec, &data, &mut out).unwrap();
            prop_assert_eq!(decompress(codec, &out, data.len()).unwrap(), data);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), codec in 0u8..5) {
            let _ = decompress(Compression::from_id(codec).unwrap(), &data, 1 << 16);
        }
    }

    #[test]
    fn limit_stops_bombs() {
        let zeros = vec![0u8; 1 << 20];
        for codec in Compression::ALL {
            let mut out = Vec::new();
            compress(codec, &zeros, &mut out).unwrap();
            assert_eq!(
                decompress(codec, &out, (1 << 20) - 1),
                Err(CompressionError::TooLarge {
                    codec,
                    limit: (1 << 20) - 1
                }),
                "{codec:?}"
            );
            assert_eq!(decompress(codec, &out, 1 << 20).unwrap().len(), 1 << 20);
        }
    }

    #[test]
    fn raw_snappy_as_librdkafka_writes_it() {
        let data = b"hello hello hello hello snappy".repeat(100);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, data.len()).unwrap(),
            data
        );
    }

    #[test]
    fn interoperates_with_kafka_protocol_codecs() {
        use bytes::{BufMut, BytesMut};
        use kafka_protocol::compression::{Compressor, Decompressor, Lz4, Snappy};
        let data = b"interop".repeat(10_000);
        // Theirs -> ours.
        let mut theirs = BytesMut::new();
        Snappy::compress(&mut theirs, |b: &mut BytesMut| {
            b.put_slice(&data);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &theirs, data.len()).unwrap(),
            data
        );
        // Ours -> theirs.
        for codec in [Compression::Snappy, Compression::Lz4] {
            let mut ours = Vec::new();
            compress(codec, &data, &mut ours).unwrap();
            let mut buf = bytes::Bytes::from(ours);
            let back = match codec {
                Compression::Snappy => Snappy::decompress(&mut buf, |b| Ok(b.to_vec())),
                _ => Lz4::decompress(&mut buf, |b| Ok(b.to_vec())),
            }
            .unwrap();
            assert_eq!(back, data);
        }
    }
}
