//! Self-describing payloads for the crash tests: each names its stream,
//! base offset and length, and its filler is derived from them, so a batch
//! read back at the wrong offset, twice, or damaged is detected.

use bytes::{BufMut, Bytes, BytesMut};

pub(crate) const HEADER: usize = 20;

fn filler(stream: u64, base: u64, i: usize) -> u8 {
    (stream.wrapping_mul(31) ^ base.wrapping_mul(17) ^ i as u64) as u8
}

pub(crate) fn make(stream: u64, base: u64, len: usize) -> Bytes {
    let len = len.max(HEADER);
    let mut b = BytesMut::with_capacity(len);
    b.put_u64_le(stream);
    b.put_u64_le(base);
    b.put_u32_le(len as u32);
    for i in HEADER..len {
        b.put_u8(filler(stream, base, i));
    }
    b.freeze()
}

/// Check a payload read back as `stream` at `base`.
pub(crate) fn check(stream: u64, base: u64, p: &[u8]) -> Result<(), String> {
    if p.len() < HEADER {
        return Err(format!("payload of {} bytes", p.len()));
    }
    let s = u64::from_le_bytes(p[0..8].try_into().unwrap());
    let b = u64::from_le_bytes(p[8..16].try_into().unwrap());
    let l = u32::from_le_bytes(p[16..20].try_into().unwrap()) as usize;
    if s != stream || b != base || l != p.len() {
        return Err(format!(
            "header says stream {s} base {b} len {l}, read as {stream}@{base} len {}",
            p.len()
        ));
    }
    for (i, &x) in p.iter().enumerate().skip(HEADER) {
        if x != filler(stream, base, i) {
            return Err(format!("byte {i} damaged"));
        }
    }
    Ok(())
}
