//! The records of the `__consumer_offsets` stream, in Kafka's own key/value
//! schema so the stream reads like Kafka's to any tool that decodes it:
//!
//! - key version 1 (`OffsetCommitKey`: group, topic, partition) with value
//!   version 3 (`OffsetCommitValue`: offset, leader epoch, metadata, commit
//!   timestamp);
//! - key version 2 (`GroupMetadataKey`: group) with value version 3
//!   (`GroupMetadataValue`: protocol type, generation, protocol, leader,
//!   state timestamp, members).
//!
//! - key version [`CONSUMER_GROUP_KEY_VERSION`] (a Skiff record type: group)
//!   with a [`super::consumer::record::ConsumerGroupValue`]: the whole state
//!   of a KIP-848 consumer group (epochs, members, target and current
//!   assignments). Kafka splits this over seven record types; one snapshot
//!   per change is simpler and small for the group sizes we expect.
//!
//! A null value is a tombstone (offset deleted, group deleted). Integrity
//! comes from the crc of the Kafka record batch the records travel in.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record truncated")]
    Truncated,
    #[error("unknown {what} version {version}")]
    Version { what: &'static str, version: i16 },
    #[error("invalid utf-8 in a string")]
    Utf8,
}

/// The key of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    ConsumerGroup {
        group: String,
    },
}

/// Key version of Skiff's consumer-group snapshot record (far from Kafka's
/// 0-17 so no Kafka tool mistakes it for one of its own).
pub const CONSUMER_GROUP_KEY_VERSION: i16 = 1000;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A member as stored in group metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's durable state (written when a generation becomes stable or the
/// group becomes empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

pub(crate) fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len().min(i16::MAX as usize) as i16);
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

pub(crate) fn put_nstr(b: &mut BytesMut, s: Option<&str>) {
    match s {
        None => b.put_i16(-1),
        Some(s) => put_str(b, s),
    }
}

pub(super) fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

pub(crate) fn need(b: &Bytes, n: usize) -> Result<(), RecordError> {
    if b.remaining() < n {
        Err(RecordError::Truncated)
    } else {
        Ok(())
    }
}

pub(crate) fn get_i16(b: &mut Bytes) -> Result<i16, RecordError> {
    need(b, 2)?;
    Ok(b.get_i16())
}
pub(crate) fn get_i32(b: &mut Bytes) -> Result<i32, RecordError> {
    need(b, 4)?;
    Ok(b.get_i32())
}
pub(crate) fn get_i64(b: &mut Bytes) -> Result<i64, RecordError> {
    need(b, 8)?;
    Ok(b.get_i64())
}

pub(crate) fn get_nstr(b: &mut Bytes) -> Result<Option<String>, RecordError> {
    let len = get_i16(b)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(b, len)?;
    let s = b.split_to(len);
    String::from_utf8(s.to_vec())
        .map(Some)
        .map_err(|_| RecordError::Utf8)
}

pub(crate) fn get_str(b: &mut Bytes) -> Result<String, RecordError> {
    Ok(get_nstr(b)?.unwrap_or_default())
}

pub(super) fn get_bytes(b: &mut Bytes) -> Result<Bytes, RecordError> {
    let len = get_i32(b)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(b, len as usize)?;
    Ok(b.split_to(len as usize))
}

impl RecordKey {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                b.put_i16(1);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                b.put_i16(2);
                put_str(&mut b, group);
            }
            RecordKey::ConsumerGroup { group } => {
                b.put_i16(CONSUMER_GROUP_KEY_VERSION);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<Self, RecordError> {
        match get_i16(&mut b)? {
            0 | 1 => Ok(RecordKey::Offset {
                group: get_str(&mut b)?,
                topic: get_str(&mut b)?,
                partition: get_i32(&mut b)?,
            }),
            2 => Ok(RecordKey::Group {
                group: get_str(&mut b)?,
            }),
            CONSUMER_GROUP_KEY_VERSION => Ok(RecordKey::ConsumerGroup {
                group: get_str(&mut b)?,
            }),
            version => Err(RecordError::Version {
                what: "key",
                version,
            }),
        }
    }

    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. }
            | RecordKey::Group { group }
            | RecordKey::ConsumerGroup { group } => group,
        }
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        b.put_i64(self.offset);
        b.put_i32(self.leader_epoch);
        put_str(&mut b, &self.metadata);
        b.put_i64(self.commit_timestamp);
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<Self, RecordError> {
        let version = get_i16(&mut b)?;
        let offset = get_i64(&mut b)?;
        let leader_epoch = if version >= 3 { get_i32(&mut b)? } else { -1 };
        let metadata = get_str(&mut b)?;
        let commit_timestamp = get_i64(&mut b)?;
        if !(0..=4).contains(&version) {
            return Err(RecordError::Version {
                what: "offset value",
                version,
            });
        }
        Ok(Self {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_str(&mut b, &self.protocol_type);
        b.put_i32(self.generation);
        put_nstr(&mut b, self.protocol.as_deref());
        put_nstr(&mut b, self.leader.as_deref());
        b.put_i64(self.state_timestamp);
        b.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut b, &m.member_id);
            put_nstr(&mut b, m.instance_id.as_deref());
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_i32(m.rebalance_timeout_ms);
            b.put_i32(m.session_timeout_ms);
            put_bytes(&mut b, &m.subscription);
            put_bytes(&mut b, &m.assignment);
        }
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<Self, RecordError> {
        let version = get_i16(&mut b)?;
        if version != 3 {
            return Err(RecordError::Version {
                what: "group value",
                version,
            });
        }
        let protocol_type = get_str(&mut b)?;
        let generation = get_i32(&mut b)?;
        let protocol = get_nstr(&mut b)?;
        let leader = get_nstr(&mut b)?;
        let state_timestamp = get_i64(&mut b)?;
        let n = get_i32(&mut b)?.max(0) as usize;
        let mut members = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            members.push(StoredMember {
                member_id: get_str(&mut b)?,
                instance_id: get_nstr(&mut b)?,
                client_id: get_str(&mut b)?,
                client_host: get_str(&mut b)?,
                rebalance_timeout_ms: get_i32(&mut b)?,
                session_timeout_ms: get_i32(&mut b)?,
                subscription: get_bytes(&mut b)?,
                assignment: get_bytes(&mut b)?,
            });
        }
        Ok(Self {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp,
            members,
        })
    }
}

/// The topics of a consumer-protocol subscription (`ConsumerProtocolSubscription`:
/// version, then an array of topic names), or `None` when it does not parse.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut b = Bytes::copy_from_slice(metadata);
    let _version = get_i16(&mut b).ok()?;
    let n = get_i32(&mut b).ok()?;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        out.push(get_str(&mut b).ok()?);
    }
    Some(out)
}

/// The partitions of a consumer-protocol assignment
/// (`ConsumerProtocolAssignment`: version, then topic -> partitions).
pub fn assignment_partitions(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let mut b = Bytes::copy_from_slice(assignment);
    if b.is_empty() {
        return Some(vec![]);
    }
    let _version = get_i16(&mut b).ok()?;
    let n = get_i32(&mut b).ok()?;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let topic = get_str(&mut b).ok()?;
        let k = get_i32(&mut b).ok()?;
        let mut parts = Vec::new();
        for _ in 0..k.max(0) {
            parts.push(get_i32(&mut b).ok()?);
        }
        out.push((topic, parts));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member() -> impl Strategy<Value = StoredMember> {
        (
            "[a-z0-9-]{0,20}",
            proptest::option::of("[a-z]{1,8}"),
            "[a-z]{0,8}",
            proptest::collection::vec(any::<u8>(), 0..40),
            any::<i32>(),
        )
            .prop_map(|(id, inst, client, bytes, t)| StoredMember {
                member_id: id,
                instance_id: inst,
                client_id: client.clone(),
                client_host: format!("/{client}"),
                rebalance_timeout_ms: t,
                session_timeout_ms: t.wrapping_add(1),
                subscription: Bytes::from(bytes.clone()),
                assignment: Bytes::from(bytes),
            })
    }

    proptest! {
        #[test]
        fn keys_round_trip(group in "\\PC{0,30}", topic in "[a-z_.-]{1,40}", partition in any::<i32>()) {
            for k in [
                RecordKey::Offset { group: group.clone(), topic: topic.clone(), partition },
                RecordKey::Group { group: group.clone() },
                RecordKey::ConsumerGroup { group: group.clone() },
            ] {
                prop_assert_eq!(RecordKey::decode(k.encode()).unwrap(), k);
            }
        }

        #[test]
        fn offsets_round_trip(offset in any::<i64>(), leader_epoch in any::<i32>(), metadata in "\\PC{0,50}", ts in any::<i64>()) {
            let v = OffsetValue { offset, leader_epoch, metadata, commit_timestamp: ts };
            prop_assert_eq!(OffsetValue::decode(v.encode()).unwrap(), v);
        }

        #[test]
        fn groups_round_trip(members in proptest::collection::vec(member(), 0..5), generation in any::<i32>(), protocol in proptest::option::of("[a-z]{1,10}")) {
            let v = GroupValue {
                protocol_type: "consumer".into(),
                generation,
                leader: members.first().map(|m| m.member_id.clone()),
                protocol,
                state_timestamp: 7,
                members,
            };
            prop_assert_eq!(GroupValue::decode(v.encode()).unwrap(), v);
        }

        #[test]
        fn truncated_records_error_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = Bytes::from(bytes);
            let _ = RecordKey::decode(b.clone());
            let _ = OffsetValue::decode(b.clone());
            let _ = GroupValue::decode(b.clone());
            let _ = subscription_topics(&b);
            let _ = assignment_partitions(&b);
        }
    }
}
