//! [`MetadataConfig`]: everything a metadata node needs to start.
//!
//! The defaults run a single-voter cluster under `./skiff-data/metadata`
//! with no network listener, which is what `skiff serve` does with no
//! arguments. Durations accept human-readable values (`"150ms"`, `"10s"`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// One voter of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The peer's metadata node id.
    pub id: NodeId,
    /// The peer's advertised Raft address (`host:port`).
    pub addr: String,
}

/// Configuration of one metadata node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// This node's id in the metadata quorum; unique in the cluster.
    pub node_id: NodeId,
    /// Address the Raft TCP listener binds (`host:port`). `None` runs no
    /// listener: only a single-node cluster can run without one.
    pub listen_addr: Option<String>,
    /// Address other nodes use to reach this one; defaults to `listen_addr`.
    pub advertised_addr: Option<String>,
    /// Voters of a new multi-node cluster, this node included. The node with
    /// the lowest id initializes the cluster on first start. Empty: a new
    /// cluster has this node as its only voter (unless `join` is set).
    pub initial_voters: Vec<Peer>,
    /// Addresses of existing members to ask, on first start, to add this
    /// node as a voter (instead of bootstrapping a cluster).
    pub join: Vec<String>,
    /// Directory of the Raft log, vote and snapshots.
    pub data_dir: PathBuf,
    /// Leader heartbeat interval.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout.
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    /// Upper bound of the randomized election timeout (also the leader lease).
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// A broker that has not heartbeated for this long is fenced.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How long a client request may wait for a leader (forwarding and
    /// retries included) before it fails as unavailable.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Take a snapshot once this many entries were applied since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log after a snapshot (lets slightly lagging
    /// followers catch up without a snapshot install).
    pub logs_kept_after_snapshot: u64,
    /// fsync the log and snapshots. Only tests and simulations turn it off.
    pub fsync: bool,
    /// Size at which a new log segment file is started.
    pub segment_bytes: u64,
    /// Largest frame accepted from the network.
    pub max_frame_bytes: usize,
    /// Changes buffered per watcher before it must resync.
    pub watch_capacity: usize,
    /// Group-commit batches proposed to Raft at once; commands arriving
    /// meanwhile accumulate into the next batch.
    pub batches_in_flight: usize,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            listen_addr: None,
            advertised_addr: None,
            initial_voters: Vec::new(),
            join: Vec::new(),
            data_dir: PathBuf::from("skiff-data/metadata"),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            session_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            snapshot_every: 10_000,
            logs_kept_after_snapshot: 1_000,
            fsync: true,
            segment_bytes: 16 << 20,
            max_frame_bytes: 64 << 20,
            watch_capacity: 4096,
            batches_in_flight: 2,
        }
    }
}

impl MetadataConfig {
    /// Check the values are usable together.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.election_timeout_min
        {
            return Err("heartbeat_interval must be > 0 and < election_timeout_min".into());
        }
        if self.election_timeout_min >= self.election_timeout_max {
            return Err("election_timeout_min must be < election_timeout_max".into());
        }
        if self.session_timeout < self.heartbeat_interval * 2 {
            return Err("session_timeout must be at least twice heartbeat_interval".into());
        }
        if self.request_timeout.is_zero() {
            return Err("request_timeout must be > 0".into());
        }
        if self.batches_in_flight == 0 {
            return Err("batches_in_flight must be > 0".into());
        }
        if self.snapshot_every == 0 {
            return Err("snapshot_every must be > 0".into());
        }
        if self.segment_bytes < 4096 {
            return Err("segment_bytes must be at least 4096".into());
        }
        if self.max_frame_bytes < (1 << 20) {
            return Err("max_frame_bytes must be at least 1 MiB".into());
        }
        if self.watch_capacity == 0 {
            return Err("watch_capacity must be > 0".into());
        }
        if !self.initial_voters.is_empty() && !self.join.is_empty() {
            return Err(
                "set initial_voters (new cluster) or join (existing cluster), not both".into(),
            );
        }
        if !self.initial_voters.is_empty()
            && !self.initial_voters.iter().any(|p| p.id == self.node_id)
        {
            return Err("initial_voters must include this node".into());
        }
        Ok(())
    }

    /// The address other nodes reach this node at.
    pub fn advertised(&self) -> String {
        self.advertised_addr
            .clone()
            .or_else(|| self.listen_addr.clone())
            .unwrap_or_else(|| format!("local-{}", self.node_id))
    }

    pub(crate) fn raft_config(&self) -> Result<openraft::Config, String> {
        let c = openraft::Config {
            cluster_name: "skiff".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: self.election_timeout_min.as_millis() as u64,
            election_timeout_max: self.election_timeout_max.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            install_snapshot_timeout: self.request_timeout.as_millis() as u64,
            ..Default::default()
        };
        c.validate().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips_through_toml() {
        let c = MetadataConfig::default();
        c.validate().unwrap();
        c.raft_config().unwrap();
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("heartbeat_interval = \"50ms\""), "{text}");
        let back: MetadataConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let partial: MetadataConfig =
            toml::from_str("node_id = 3\nsession_timeout = \"30s\"").unwrap();
        assert_eq!(partial.node_id, 3);
        assert_eq!(partial.session_timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_combinations_are_rejected() {
        let bad = [
            MetadataConfig {
                heartbeat_interval: Duration::from_secs(1),
                ..Default::default()
            },
            MetadataConfig {
                election_timeout_max: Duration::from_millis(10),
                ..Default::default()
            },
            MetadataConfig {
                snapshot_every: 0,
                ..Default::default()
            },
            MetadataConfig {
                join: vec!["a:1".into()],
                initial_voters: vec![Peer {
                    id: 1,
                    addr: "x:1".into(),
                }],
                ..Default::default()
            },
            MetadataConfig {
                initial_voters: vec![
                    Peer {
                        id: 2,
                        addr: "x:1".into(),
                    },
                    Peer {
                        id: 3,
                        addr: "y:1".into(),
                    },
                ],
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
