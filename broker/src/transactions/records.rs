//! The records of the `__transaction_state` stream, in Kafka's own
//! TransactionLog schema so the stream reads like Kafka's to any tool that
//! decodes it:
//!
//! - key version 0 (`TransactionLogKey`: transactional id);
//! - value version 0 (fixed) or 1 (flexible, what Skiff writes): producer
//!   id, producer epoch, timeout, state, the partitions of the transaction
//!   and the last-update / start timestamps; version 1 adds the tagged
//!   fields previous producer id (tag 0), next producer id (tag 1) and the
//!   client's transaction version (tag 2).
//!
//! A null value is a tombstone (the transactional id expired).

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::TxnState;
pub use crate::groups::records::RecordError;
use crate::groups::records::{get_i16, get_i32, get_i64, get_str, need, put_str};

/// A transactional id's durable metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    pub prev_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub update_ms: i64,
    pub start_ms: i64,
    pub client_txn_version: i16,
}

/// The key of a record: the transactional id.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub fn decode_key(mut b: Bytes) -> Result<String, RecordError> {
    let version = get_i16(&mut b)?;
    if version != 0 {
        return Err(RecordError::Version {
            what: "key",
            version,
        });
    }
    get_str(&mut b)
}

fn get_i8(b: &mut Bytes) -> Result<i8, RecordError> {
    need(b, 1)?;
    Ok(b.get_i8())
}
fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn get_uvarint(b: &mut Bytes) -> Result<u64, RecordError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = get_i8(b)? as u8;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(RecordError::Truncated)
}

fn take_str(b: &mut Bytes, len: usize) -> Result<String, RecordError> {
    need(b, len)?;
    String::from_utf8(b.split_to(len).to_vec()).map_err(|_| RecordError::Utf8)
}

/// Topic -> partitions, in the schema's order.
fn grouped(partitions: &BTreeSet<(String, i32)>) -> Vec<(&str, Vec<i32>)> {
    let mut out: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in partitions {
        match out.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => out.push((t.as_str(), vec![*p])),
        }
    }
    out
}

impl TxnValue {
    /// Encode as value version 1.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i64(self.producer_id);
        b.put_i16(self.producer_epoch);
        b.put_i32(self.timeout_ms);
        b.put_i8(self.state as i8);
        let topics = grouped(&self.partitions);
        put_uvarint(&mut b, topics.len() as u64 + 1);
        for (t, ps) in topics {
            put_uvarint(&mut b, t.len() as u64 + 1);
            b.put_slice(t.as_bytes());
            put_uvarint(&mut b, ps.len() as u64 + 1);
            for p in ps {
                b.put_i32(p);
            }
            put_uvarint(&mut b, 0); // tagged fields of the element
        }
        b.put_i64(self.update_ms);
        b.put_i64(self.start_ms);
        let tags = [
            (0u64, self.prev_producer_id != -1, self.prev_producer_id),
            (1, self.next_producer_id != -1, self.next_producer_id),
        ];
        let n = tags.iter().filter(|t| t.1).count() + usize::from(self.client_txn_version != 0);
        put_uvarint(&mut b, n as u64);
        for (tag, present, v) in tags {
            if present {
                put_uvarint(&mut b, tag);
                put_uvarint(&mut b, 8);
                b.put_i64(v);
            }
        }
        if self.client_txn_version != 0 {
            put_uvarint(&mut b, 2);
            put_uvarint(&mut b, 2);
            b.put_i16(self.client_txn_version);
        }
        b.freeze()
    }

    /// Decode value version 0 or 1.
    pub fn decode(mut b: Bytes) -> Result<Self, RecordError> {
        let version = get_i16(&mut b)?;
        if !(0..=1).contains(&version) {
            return Err(RecordError::Version {
                what: "transaction value",
                version,
            });
        }
        let flexible = version >= 1;
        let producer_id = get_i64(&mut b)?;
        let producer_epoch = get_i16(&mut b)?;
        let timeout_ms = get_i32(&mut b)?;
        let raw_state = get_i8(&mut b)?;
        let state = TxnState::from_i8(raw_state).ok_or(RecordError::Version {
            what: "transaction state",
            version: i16::from(raw_state),
        })?;
        let mut partitions = BTreeSet::new();
        let topics: Option<usize> = if flexible {
            (get_uvarint(&mut b)? as usize).checked_sub(1)
        } else {
            usize::try_from(get_i32(&mut b)?).ok()
        };
        for _ in 0..topics.unwrap_or(0) {
            let topic = if flexible {
                let len = (get_uvarint(&mut b)? as usize).saturating_sub(1);
                take_str(&mut b, len)?
            } else {
                get_str(&mut b)?
            };
            let n = if flexible {
                (get_uvarint(&mut b)? as usize).saturating_sub(1)
            } else {
                get_i32(&mut b)?.max(0) as usize
            };
            for _ in 0..n {
                partitions.insert((topic.clone(), get_i32(&mut b)?));
            }
            if flexible {
                skip_tags(&mut b)?;
            }
        }
        let update_ms = get_i64(&mut b)?;
        let start_ms = get_i64(&mut b)?;
        let mut v = Self {
            producer_id,
            prev_producer_id: -1,
            next_producer_id: -1,
            producer_epoch,
            timeout_ms,
            state,
            partitions,
            update_ms,
            start_ms,
            client_txn_version: 0,
        };
        if flexible {
            let n = get_uvarint(&mut b)?;
            for _ in 0..n {
                let tag = get_uvarint(&mut b)?;
                let size = get_uvarint(&mut b)? as usize;
                need(&b, size)?;
                let mut field = b.split_to(size);
                match tag {
                    0 => v.prev_producer_id = get_i64(&mut field)?,
                    1 => v.next_producer_id = get_i64(&mut field)?,
                    2 => v.client_txn_version = get_i16(&mut field)?,
                    _ => {}
                }
            }
        }
        Ok(v)
    }
}

fn skip_tags(b: &mut Bytes) -> Result<(), RecordError> {
    let n = get_uvarint(b)?;
    for _ in 0..n {
        let _tag = get_uvarint(b)?;
        let size = get_uvarint(b)? as usize;
        need(b, size)?;
        b.advance(size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state() -> impl Strategy<Value = TxnState> {
        (0i8..=7).prop_map(|s| TxnState::from_i8(s).unwrap())
    }

    proptest! {
        #[test]
        fn keys_round_trip(id in "\\PC{0,40}") {
            prop_assert_eq!(decode_key(encode_key(&id)).unwrap(), id);
        }

        #[test]
        fn values_round_trip(
            producer_id in any::<i64>(),
            prev in prop_oneof![Just(-1i64), any::<i64>()],
            next in prop_oneof![Just(-1i64), any::<i64>()],
            epoch in any::<i16>(),
            timeout in any::<i32>(),
            state in state(),
            partitions in proptest::collection::btree_set(("[a-z_.-]{1,20}", 0i32..64), 0..10),
            update in any::<i64>(),
            start in any::<i64>(),
            tv in 0i16..3,
        ) {
            let v = TxnValue {
                producer_id, prev_producer_id: prev, next_producer_id: next,
                producer_epoch: epoch, timeout_ms: timeout, state, partitions,
                update_ms: update, start_ms: start, client_txn_version: tv,
            };
            prop_assert_eq!(TxnValue::decode(v.encode()).unwrap(), v);
        }

        #[test]
        fn garbage_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let b = Bytes::from(bytes);
            let _ = decode_key(b.clone());
            let _ = TxnValue::decode(b);
        }
    }

    #[test]
    fn decodes_value_version_0() {
        // Kafka's v0 layout: fixed-width strings and arrays, no tags.
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i64(42);
        b.put_i16(3);
        b.put_i32(60_000);
        b.put_i8(1);
        b.put_i32(1);
        b.put_i16(1);
        b.put_slice(b"t");
        b.put_i32(2);
        b.put_i32(0);
        b.put_i32(5);
        b.put_i64(100);
        b.put_i64(90);
        let v = TxnValue::decode(b.freeze()).unwrap();
        assert_eq!(v.producer_id, 42);
        assert_eq!(v.producer_epoch, 3);
        assert_eq!(v.state, TxnState::Ongoing);
        assert_eq!(
            v.partitions,
            [("t".to_string(), 0), ("t".to_string(), 5)].into()
        );
        assert_eq!((v.update_ms, v.start_ms, v.prev_producer_id), (100, 90, -1));
    }
}
