//! openraft type configuration.

use std::io::Cursor;

use crate::command::{Command, Response};

/// A metadata node id (distinct from broker ids, though a broker process
/// usually runs the metadata node with the same number).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Skiff's Raft types: log entries carry [`Command`]s, the state machine
    /// answers with a [`Response`]; nodes are addressed by `host:port`.
    pub TypeConfig:
        D = Command,
        R = Response,
        AsyncRuntime = crate::runtime::Runtime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Node = openraft::BasicNode;
pub type StorageError = openraft::StorageError<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
