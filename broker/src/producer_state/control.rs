//! Kafka's control records: a transaction marker is a batch with the
//! transactional and control attribute bits set, holding one record whose
//! key is `version: i16 = 0, type: i16` (0 abort, 1 commit) and whose value
//! is `version: i16 = 0, coordinator_epoch: i32`.

use bytes::{Buf, Bytes};
use skiff_wire::records::{BatchBuilder, BatchView, Compression, NewRecord};

use super::state::MarkerInfo;

/// Control record type of an abort marker (stable on the wire).
pub const ABORT: i16 = 0;
/// Control record type of a commit marker (stable on the wire).
pub const COMMIT: i16 = 1;

/// The control batch for `m` (base offset 0: the append stamps it).
pub fn marker_batch(m: &MarkerInfo) -> Bytes {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&(if m.commit { COMMIT } else { ABORT }).to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&m.coordinator_epoch.to_be_bytes());
    let mut b = BatchBuilder::new(Compression::None)
        .producer(m.producer_id, m.epoch, -1)
        .flags(true, true);
    b.push(NewRecord {
        timestamp: m.timestamp,
        key: Some(&key),
        value: Some(&value),
        headers: &[],
    });
    b.build()
        .expect("an uncompressed batch cannot fail to encode")
}

/// The marker in a control batch, or `None` when it is not a readable
/// transaction marker.
pub fn read_marker(batch: &BatchView) -> Option<MarkerInfo> {
    let record = batch.records(1024).ok()?.next()?.ok()?;
    let mut key = record.key?;
    if key.len() < 4 || key.get_i16() != 0 {
        return None;
    }
    let commit = match key.get_i16() {
        ABORT => false,
        COMMIT => true,
        _ => return None,
    };
    let coordinator_epoch = match record.value {
        Some(mut v) if v.len() >= 6 => {
            v.get_i16();
            v.get_i32()
        }
        _ => -1,
    };
    Some(MarkerInfo {
        producer_id: batch.producer_id(),
        epoch: batch.producer_epoch(),
        coordinator_epoch,
        commit,
        timestamp: batch.base_timestamp() + record.timestamp_delta,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn markers_round_trip(pid in 0i64..i64::MAX, epoch in 0i16..i16::MAX,
                              coordinator_epoch in 0i32..i32::MAX, commit: bool,
                              timestamp in 0i64..1i64 << 45) {
            let m = MarkerInfo { producer_id: pid, epoch, coordinator_epoch, commit, timestamp };
            let view = BatchView::parse(marker_batch(&m)).expect("a batch");
            prop_assert!(view.attributes().is_control());
            prop_assert!(view.attributes().is_transactional());
            prop_assert_eq!(read_marker(&view), Some(m));
        }
    }
}
