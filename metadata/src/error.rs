//! Errors of the metadata client API.

use serde::{Deserialize, Serialize};

use crate::command::CommandError;

/// Why a metadata request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetadataError {
    /// The state machine rejected the command; nothing was applied.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// No leader could be reached in time, or the quorum is lost. The
    /// command may or may not have been applied; retry (commands are
    /// validated, so a retry of an applied one gets a typed error or an
    /// idempotent result).
    #[error("metadata unavailable: {0}")]
    Unavailable(String),
    /// This node does not lead; the command was not proposed (safe to
    /// retry, at the leader if known).
    #[error("not the leader (leader: {leader_id:?})")]
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    /// A membership change was refused.
    #[error("membership change failed: {0}")]
    Membership(String),
    /// Local storage failed or the Raft node stopped.
    #[error("metadata node failed: {0}")]
    Fatal(String),
}

/// Why a metadata node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid metadata config: {0}")]
    Config(String),
    #[error("cannot open metadata storage in {path}: {source}")]
    Storage {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
}
