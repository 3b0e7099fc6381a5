//! The durable form of a consumer-protocol group: one snapshot value under
//! key [`super::super::records::RecordKey::ConsumerGroup`], written after
//! each heartbeat that changed the group (the last one wins on replay).
//!
//! Value version 0, big-endian like Kafka's records: group epoch,
//! assignment epoch, then per member: id, instance id, rack id, client id,
//! client host, subscribed names, regex, server assignor, rebalance timeout,
//! reconciliation state, member epoch, previous epoch, assigned, revoking
//! and target partitions (topic id, partition list). Sessions are not
//! stored: members get a fresh session when the group is replayed.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;
use uuid::Uuid;

use super::super::records::{
    RecordError, get_i16, get_i32, get_nstr, get_str, need, put_nstr, put_str,
};
use super::assignor::TopicPartitions;
use super::reconcile::{MemberState, Reconciliation};
use super::{ConsumerGroup, ConsumerMember};

const VERSION: i16 = 0;
/// Upper bound on decoded collection sizes (a corrupt length must not
/// allocate gigabytes).
const MAX_ITEMS: i32 = 1 << 20;

fn put_tps(b: &mut BytesMut, tps: &TopicPartitions) {
    b.put_i32(tps.len() as i32);
    for (t, ps) in tps {
        b.put_slice(t.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
}

fn get_len(b: &mut Bytes) -> Result<usize, RecordError> {
    let n = get_i32(b)?;
    if !(0..=MAX_ITEMS).contains(&n) {
        return Err(RecordError::Truncated);
    }
    Ok(n as usize)
}

fn get_tps(b: &mut Bytes) -> Result<TopicPartitions, RecordError> {
    let mut out = TopicPartitions::new();
    for _ in 0..get_len(b)? {
        need(b, 16)?;
        let id = Uuid::from_slice(&b.split_to(16)).map_err(|_| RecordError::Truncated)?;
        let set = out.entry(id).or_default();
        for _ in 0..get_len(b)? {
            set.insert(get_i32(b)?);
        }
    }
    Ok(out)
}

/// Encode the group's durable state.
pub fn encode(g: &ConsumerGroup) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(VERSION);
    b.put_i32(g.epoch);
    b.put_i32(g.assignment_epoch);
    b.put_i32(g.members.len() as i32);
    for m in g.members.values() {
        put_str(&mut b, &m.id);
        put_nstr(&mut b, m.instance_id.as_deref());
        put_nstr(&mut b, m.rack_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.subscribed_topic_names.len() as i32);
        for n in &m.subscribed_topic_names {
            put_str(&mut b, n);
        }
        put_nstr(&mut b, m.subscribed_topic_regex.as_deref());
        put_nstr(&mut b, m.server_assignor.as_deref());
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i8(m.rec.state.code());
        b.put_i32(m.rec.epoch);
        b.put_i32(m.rec.previous_epoch);
        put_tps(&mut b, &m.rec.assigned);
        put_tps(&mut b, &m.rec.revoking);
        put_tps(
            &mut b,
            g.target.get(&m.id).unwrap_or(&TopicPartitions::new()),
        );
    }
    b.freeze()
}

/// Rebuild a group from its snapshot; members' sessions start at `now` and
/// last `session`.
pub fn decode(
    id: String,
    partition: u32,
    mut b: Bytes,
    now: Instant,
    session: std::time::Duration,
) -> Result<ConsumerGroup, RecordError> {
    let version = get_i16(&mut b)?;
    if version != VERSION {
        return Err(RecordError::Version {
            what: "consumer group value",
            version,
        });
    }
    let mut g = ConsumerGroup::new(id, partition);
    g.epoch = get_i32(&mut b)?;
    g.assignment_epoch = get_i32(&mut b)?;
    for _ in 0..get_len(&mut b)? {
        let id = get_str(&mut b)?;
        let instance_id = get_nstr(&mut b)?;
        let rack_id = get_nstr(&mut b)?;
        let client_id = get_str(&mut b)?;
        let client_host = get_str(&mut b)?;
        let mut names = Vec::new();
        for _ in 0..get_len(&mut b)? {
            names.push(get_str(&mut b)?);
        }
        let regex = get_nstr(&mut b)?;
        let server_assignor = get_nstr(&mut b)?;
        let rebalance_timeout_ms = get_i32(&mut b)?;
        need(&b, 1)?;
        let state = MemberState::from_code(bytes::Buf::get_i8(&mut b));
        let epoch = get_i32(&mut b)?;
        let previous_epoch = get_i32(&mut b)?;
        let assigned = get_tps(&mut b)?;
        let revoking = get_tps(&mut b)?;
        let target = get_tps(&mut b)?;
        g.target.insert(id.clone(), target);
        g.members.insert(
            id.clone(),
            ConsumerMember {
                id,
                instance_id,
                rack_id,
                client_id,
                client_host,
                subscribed_topic_names: names,
                subscribed_topic_regex: regex,
                server_assignor,
                rebalance_timeout_ms,
                rec: Reconciliation {
                    state,
                    epoch,
                    previous_epoch,
                    assigned,
                    revoking,
                },
                deadline: now + session,
                revoke_deadline: None,
            },
        );
    }
    Ok(g)
}
