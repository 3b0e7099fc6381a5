//! Keeping `__consumer_offsets` short: compaction and cleanup.
//!
//! **Compaction.** Every commit is a record, so a partition's stream grows
//! without bound while its live state (the last offset per group, topic and
//! partition, plus group metadata) stays small. When a partition grew by
//! more than `offsets_compaction_records` (and twice its live state) since
//! its last compaction, the coordinator re-appends the live state, taken
//! under the partition's lock so nothing interleaves, waits until that
//! rewrite is durable, then trims the stream's start to where the rewrite
//! began. Replay then reads only the rewrite and what followed it, and
//! yields the same state (last record per key wins either way). A partition
//! holding records of an open transaction (TxnOffsetCommit) is not compacted
//! until the transaction's marker is written.
//!
//! **Cleanup** (every `offsets_retention_check_interval`, Kafka
//! `offsets.retention.check.interval.ms`): offsets of topics that no longer
//! exist are dropped; in a group with no members, offsets committed more
//! than `offsets_retention_minutes` ago expire (Kafka's rule for empty
//! groups); a group left with no members, no offsets and no consumer-group
//! state is removed. All of it as tombstones through the normal write path.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use tracing::{info, warn};

use super::records::RecordKey;
use super::{GroupCoordinator, OFFSETS_TOPIC};
use crate::broker::Broker;
use crate::partitions::Partition;

/// Most records per appended batch of a rewrite.
const REWRITE_BATCH: usize = 500;

/// Compaction bookkeeping of one partition.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Compacted {
    /// Stream offset where the last rewrite began (or the start at load).
    pub base: u64,
    /// Records in that rewrite.
    pub live: u64,
}

/// What cleanup removes from one group.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub offsets: Vec<(String, i32)>,
    pub remove_group: bool,
}

/// Decide what to drop from a group: offsets of missing topics always;
/// when `empty` (no members), offsets committed before `expire_before_ms`,
/// and the group itself once nothing is left.
pub fn expired<'a>(
    offsets: impl Iterator<Item = (&'a (String, i32), i64)>,
    topic_exists: impl Fn(&str) -> bool,
    empty: bool,
    expire_before_ms: i64,
) -> Expired {
    let mut out = Expired::default();
    let mut left = 0;
    for ((topic, partition), committed_at) in offsets {
        if !topic_exists(topic) || (empty && committed_at < expire_before_ms) {
            out.offsets.push((topic.clone(), *partition));
        } else {
            left += 1;
        }
    }
    out.remove_group = empty && left == 0;
    out
}

impl GroupCoordinator {
    /// The live records of one partition, as a rewrite appends them.
    fn live_records(&self, partition: u32) -> Vec<(Bytes, Option<Bytes>)> {
        let now = crate::cluster::now_ms() as i64;
        let mut out = Vec::new();
        let groups = self.groups.lock();
        for g in groups.values().filter(|g| g.partition == partition) {
            if g.generation > 0 || !g.members.is_empty() || g.protocol_type.is_some() {
                let key = RecordKey::Group {
                    group: g.id.clone(),
                };
                out.push((key.encode(), Some(g.snapshot(now).encode())));
            }
            for ((topic, p), v) in &g.offsets {
                let key = RecordKey::Offset {
                    group: g.id.clone(),
                    topic: topic.clone(),
                    partition: *p,
                };
                out.push((key.encode(), Some(v.encode())));
            }
        }
        let consumer = self.consumer.lock();
        for g in consumer.values().filter(|g| g.partition == partition) {
            let key = RecordKey::ConsumerGroup {
                group: g.id.clone(),
            };
            out.push((key.encode(), Some(super::consumer::record::encode(g))));
        }
        out
    }

    /// Compact `p` if it grew enough since its last compaction; returns the
    /// new start offset when it did.
    pub async fn maybe_compact(&self, p: &Partition) -> Result<Option<u64>, String> {
        let threshold = self.cfg.offsets_compaction_records;
        let stats = *self.compacted.lock().entry(p.index).or_insert(Compacted {
            base: p.stream.start_offset(),
            live: 0,
        });
        let grown = p.stream.end_offset().saturating_sub(stats.base);
        if threshold == 0 || grown <= threshold.max(2 * stats.live) {
            return Ok(None);
        }
        // Records of open transactions live only in the stream until their
        // marker: trimming them away would lose a commit. Wait for it.
        if self.txn_offsets.has_pending_on(p.index) {
            return Ok(None);
        }
        self.compact(p).await.map(Some)
    }

    /// Rewrite the live state of `p` and trim everything before it.
    pub async fn compact(&self, p: &Partition) -> Result<u64, String> {
        let lock = self.lock_for(p.index);
        let (base, live, pending) = {
            let _guard = lock.lock().await;
            // Checked again under the lock: a transactional record may have
            // been appended since maybe_compact looked.
            if self.txn_offsets.has_pending_on(p.index) {
                return Ok(p.stream.start_offset());
            }
            let records = self.live_records(p.index);
            let base = p.stream.end_offset();
            let mut pending = Vec::new();
            for chunk in records.chunks(REWRITE_BATCH) {
                pending.push(
                    self.append(p, chunk)
                        .await
                        .map_err(|c| format!("append failed: {c}"))?,
                );
            }
            (base, records.len() as u64, pending)
        };
        for w in pending {
            w.await.map_err(|e| format!("rewrite not durable: {e}"))?;
        }
        let from = p.stream.start_offset();
        let start = p.stream.trim(base).await.map_err(|e| e.to_string())?;
        self.compacted
            .lock()
            .insert(p.index, Compacted { base, live });
        info!(
            partition = p.index,
            from,
            to = start,
            live,
            "compacted group state"
        );
        Ok(start)
    }

    /// One cleanup pass over the groups of the partitions this broker owns.
    pub async fn cleanup(&self, broker: &Broker) {
        let topics: BTreeSet<String> = broker.cluster.read(|s| s.topics.keys().cloned().collect());
        let expire_before = crate::cluster::now_ms() as i64
            - self.cfg.offsets_retention_minutes.saturating_mul(60_000) as i64;
        let plans: HashMap<String, (u32, Expired)> = {
            let groups = self.groups.lock();
            let consumer = self.consumer.lock();
            groups
                .values()
                .map(|g| {
                    let c = consumer.get(&g.id);
                    let empty = g.is_empty() && c.is_none_or(|c| c.members.is_empty());
                    let e = expired(
                        g.offsets.iter().map(|(k, v)| (k, v.commit_timestamp)),
                        |t| topics.contains(t),
                        empty,
                        expire_before,
                    );
                    (g.id.clone(), (g.partition, e))
                })
                .filter(|(_, (_, e))| !e.offsets.is_empty() || e.remove_group)
                // Consumer-protocol groups without members and offsets.
                .chain(
                    consumer
                        .values()
                        .filter(|c| c.members.is_empty() && !groups.contains_key(&c.id))
                        .map(|c| {
                            let e = Expired {
                                offsets: Vec::new(),
                                remove_group: true,
                            };
                            (c.id.clone(), (c.partition, e))
                        }),
                )
                .collect()
        };
        for (group, (index, e)) in plans {
            let Ok(p) = broker.partitions.get(OFFSETS_TOPIC, index as i32).await else {
                continue;
            };
            let mut records: Vec<(RecordKey, Option<Bytes>)> = e
                .offsets
                .iter()
                .map(|(topic, partition)| {
                    (
                        RecordKey::Offset {
                            group: group.clone(),
                            topic: topic.clone(),
                            partition: *partition,
                        },
                        None,
                    )
                })
                .collect();
            if e.remove_group {
                records.push((
                    RecordKey::Group {
                        group: group.clone(),
                    },
                    None,
                ));
                if self.consumer.lock().contains_key(&group) {
                    records.push((
                        RecordKey::ConsumerGroup {
                            group: group.clone(),
                        },
                        None,
                    ));
                }
            }
            let dropped = e.offsets.len();
            match self.write(&p, records).await {
                Ok(()) => {
                    if e.remove_group {
                        self.groups.lock().remove(&group);
                        self.consumer.lock().remove(&group);
                    }
                    info!(
                        group,
                        dropped,
                        removed = e.remove_group,
                        "cleaned up group offsets"
                    );
                }
                Err(code) => warn!(group, code, "group cleanup failed"),
            }
        }
    }

    /// Compact every loaded partition that grew enough.
    pub async fn compact_owned(&self, broker: &Broker) {
        let loaded = self.load.partitions();
        for index in loaded {
            if let Ok(p) = broker.partitions.get(OFFSETS_TOPIC, index as i32).await
                && let Err(e) = self.maybe_compact(&p).await
            {
                warn!(partition = index, error = %e, "compacting group state failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_of_missing_topics_go_and_empty_groups_expire() {
        let offsets = [
            (("gone".to_string(), 0), 100),
            (("old".to_string(), 0), 100),
            (("new".to_string(), 1), 5_000),
        ];
        let it = || offsets.iter().map(|(k, t)| (k, *t));
        let exists = |t: &str| t != "gone";
        // Active group: only the missing topic's offset goes.
        let e = expired(it(), exists, false, 1_000);
        assert_eq!(e.offsets, vec![("gone".to_string(), 0)]);
        assert!(!e.remove_group);
        // Empty group: old offsets expire too, the group stays (one left).
        let e = expired(it(), exists, true, 1_000);
        assert_eq!(e.offsets.len(), 2);
        assert!(!e.remove_group);
        // Everything expired: the group goes.
        let e = expired(it(), exists, true, 10_000);
        assert_eq!(e.offsets.len(), 3);
        assert!(e.remove_group);
    }
}
