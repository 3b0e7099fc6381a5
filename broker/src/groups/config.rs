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
}
