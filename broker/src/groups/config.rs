//! Group coordinator settings (`[groups]` in the broker config). Kafka's
//! broker config of the same meaning is named on each field.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// Partitions of `__consumer_offsets` when it is created (Kafka
    /// `offsets.topic.num.partitions`). Fixed afterwards: it decides which
    /// partition holds a group.
    pub offsets_topic_num_partitions: u32,
    /// How long the first rebalance of an empty group waits for more
    /// members (Kafka `group.initial.rebalance.delay.ms`).
    #[serde(with = "humantime_serde")]
    pub initial_rebalance_delay: Duration,
    /// Bounds of a member's session timeout (Kafka
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`).
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Most members in a group (Kafka `group.max.size`).
    pub max_size: usize,
    /// Longest committed metadata string (Kafka `offset.metadata.max.bytes`).
    pub offset_metadata_max_bytes: usize,
    /// Consumer protocol (KIP-848): session timeout of a member and its
    /// bounds (Kafka `group.consumer.session.timeout.ms`, `.min.`, `.max.`).
    pub consumer_session_timeout_ms: i32,
    pub consumer_min_session_timeout_ms: i32,
    pub consumer_max_session_timeout_ms: i32,
    /// Consumer protocol: heartbeat interval given to members and its bounds
    /// (Kafka `group.consumer.heartbeat.interval.ms`, `.min.`, `.max.`).
    pub consumer_heartbeat_interval_ms: i32,
    pub consumer_min_heartbeat_interval_ms: i32,
    pub consumer_max_heartbeat_interval_ms: i32,
    /// Consumer protocol: most members in a group (Kafka `group.consumer.max.size`).
    pub consumer_max_size: usize,
    /// Consumer protocol: server-side assignors, the first is the default
    /// (Kafka `group.consumer.assignors`; known: `uniform`, `range`).
    pub consumer_assignors: Vec<String>,
    /// How long offsets of a group without members are kept after their
    /// commit (Kafka `offsets.retention.minutes`, 7 days).
    pub offsets_retention_minutes: u64,
    /// How often expired offsets are looked for (Kafka
    /// `offsets.retention.check.interval.ms`).
    #[serde(with = "humantime_serde")]
    pub offsets_retention_check_interval: Duration,
    /// Compact an offsets partition once this many records were appended
    /// since its last compaction (and at least twice its live state); 0
    /// disables compaction.
    pub offsets_compaction_records: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            offsets_topic_num_partitions: 50,
            initial_rebalance_delay: Duration::from_secs(3),
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4096,
            consumer_session_timeout_ms: 45_000,
            consumer_min_session_timeout_ms: 45_000,
            consumer_max_session_timeout_ms: 60_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_min_heartbeat_interval_ms: 5_000,
            consumer_max_heartbeat_interval_ms: 15_000,
            consumer_max_size: i32::MAX as usize,
            consumer_assignors: vec!["uniform".into(), "range".into()],
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval: Duration::from_secs(600),
            offsets_compaction_records: 10_000,
        }
    }
}

impl GroupConfig {
    /// The defaults without the initial delay (unit tests, rebalances of
    /// non-empty groups).
    pub fn no_delay() -> Self {
        Self {
            initial_rebalance_delay: Duration::ZERO,
            ..Self::default()
        }
    }

    /// The consumer-protocol session timeout, within its bounds.
    pub fn consumer_session_timeout_ms(&self) -> i32 {
        self.consumer_session_timeout_ms.clamp(
            self.consumer_min_session_timeout_ms,
            self.consumer_max_session_timeout_ms
                .max(self.consumer_min_session_timeout_ms),
        )
    }

    /// The consumer-protocol heartbeat interval, within its bounds and
    /// below the session timeout.
    pub fn consumer_heartbeat_interval_ms(&self) -> i32 {
        self.consumer_heartbeat_interval_ms
            .clamp(
                self.consumer_min_heartbeat_interval_ms,
                self.consumer_max_heartbeat_interval_ms
                    .max(self.consumer_min_heartbeat_interval_ms),
            )
            .min(self.consumer_session_timeout_ms())
    }
}
