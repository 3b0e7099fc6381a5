//! Commands replicated through Raft, their outputs and their typed errors.
//!
//! A [`Command`] is what a client proposes; the state machine validates it
//! against the current state and either applies it completely (returning an
//! [`Output`]) or rejects it with a [`CommandError`] and changes nothing.
//! Every command that depends on time carries the proposer's wall-clock time
//! (`now_ms`), so applying the log is deterministic on every replica.
//!
//! These types are persisted (Raft log, snapshots) and sent over the network
//! with postcard: variants are only ever appended, never reordered (stable on
//! disk).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skiff_common::{BrokerId, ObjectId, StreamEpoch, StreamId};
use uuid::Uuid;

/// A Kafka listener a broker advertises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// Lifecycle of a registered broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerState {
    /// Heartbeating and eligible for partitions.
    Active,
    /// Being emptied by the controller; keeps what it owns until moved.
    Draining,
    /// Missed its session or was replaced by a newer incarnation: every
    /// request carrying its old broker epoch fails.
    Fenced,
}

/// Ownership state of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionState {
    /// `owner` serves it at `epoch`.
    Online,
    /// The controller is moving it to `to`; `owner` still holds it until
    /// the new owner opens it (which bumps the epoch).
    Moving { to: BrokerId },
    /// No live owner (new partition, or its owner was fenced).
    Offline,
}

/// Whether an object holds many streams or one (mirrors storage's kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    StreamSet,
    Stream,
}

/// One stream's slice inside an object being committed, stamped with the
/// epoch the writer holds the stream at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRange {
    pub stream: StreamId,
    pub epoch: StreamEpoch,
    pub start: u64,
    pub end: u64,
}

/// A new object to commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewObject {
    pub id: ObjectId,
    pub kind: ObjectKind,
    pub size: u64,
    pub ranges: Vec<CommitRange>,
}

/// An atomic change of the object layout: uploader output (`replaces`
/// empty: every range extends its stream) or compaction output (the new
/// objects re-cover exactly what `replaces` covered).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCommit {
    pub objects: Vec<NewObject>,
    pub replaces: Vec<ObjectId>,
}

/// Everything that can change the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// First command of a new cluster (written at bootstrap).
    InitCluster {
        cluster_id: Uuid,
    },
    /// A broker (re)starts: it gets a fresh broker epoch; any older
    /// incarnation is fenced.
    RegisterBroker {
        broker: BrokerId,
        listeners: Vec<Listener>,
        rack: Option<String>,
        now_ms: u64,
    },
    /// Keep a broker session alive.
    Heartbeat {
        broker: BrokerId,
        broker_epoch: u64,
        now_ms: u64,
    },
    /// Operator or controller: mark a broker draining or active again.
    SetBrokerState {
        broker: BrokerId,
        broker_epoch: u64,
        state: BrokerState,
    },
    /// Proposed periodically by the leader: fence every broker whose last
    /// heartbeat is older than `session_timeout_ms`.
    ExpireSessions {
        now_ms: u64,
        session_timeout_ms: u64,
    },
    CreateTopic {
        name: String,
        topic_id: Uuid,
        partitions: u32,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
        now_ms: u64,
    },
    /// Grow a topic to `total` partitions.
    CreatePartitions {
        name: String,
        total: u32,
    },
    AlterTopicConfigs {
        name: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// Open the partition on `broker`: bumps the stream epoch (fencing the
    /// previous owner). With `expected_epoch`, fails unless the partition is
    /// still at that epoch (compare-and-set for the controller).
    AssignPartition {
        topic: String,
        partition: u32,
        broker: BrokerId,
        broker_epoch: u64,
        expected_epoch: Option<StreamEpoch>,
    },
    /// Start moving the partition to `to` (see [`PartitionState::Moving`]).
    BeginMove {
        topic: String,
        partition: u32,
        to: BrokerId,
    },
    /// Reserve `count` fresh object ids.
    ReserveObjectIds {
        count: u32,
    },
    /// Commit objects (see [`ObjectCommit`]).
    CommitObjects {
        commit: ObjectCommit,
        now_ms: u64,
    },
    /// Move a stream's start offset forward.
    TrimStream {
        stream: StreamId,
        epoch: StreamEpoch,
        new_start: u64,
        now_ms: u64,
    },
    /// Forget objects deleted from the store.
    ForgetObjects {
        ids: Vec<ObjectId>,
    },
    /// Allocate a block of `count` producer ids for a live broker.
    AllocateProducerIds {
        broker: BrokerId,
        broker_epoch: u64,
        count: u32,
    },
    /// Set a feature's finalized version level.
    SetFeature {
        name: String,
        level: u16,
    },
    /// Several commands in one log entry (group commit). Each is validated
    /// and applied on its own, in order, as if it had its own entry; the
    /// answer is [`Output::Batch`] with one response per command.
    Batch(Vec<Command>),
}

/// What a successfully applied command returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    Done,
    BrokerRegistered {
        broker_epoch: u64,
    },
    SessionsExpired {
        fenced: Vec<BrokerId>,
    },
    TopicCreated {
        topic_id: Uuid,
        streams: Vec<StreamId>,
    },
    PartitionAssigned {
        stream: StreamId,
        epoch: StreamEpoch,
        /// The stream's committed end offset: where the new owner continues.
        end_offset: u64,
    },
    /// `[start, end)` of fresh ids (object ids or producer ids).
    IdRange {
        start: u64,
        end: u64,
    },
    /// One response per command of a [`Command::Batch`].
    Batch(Vec<Response>),
}

/// Why a command was rejected. Nothing of a rejected command is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    #[error("the cluster is not initialized")]
    NotInitialized,
    #[error("the cluster is already initialized")]
    AlreadyInitialized,
    #[error("unknown broker {0}")]
    UnknownBroker(BrokerId),
    #[error("broker {broker} is at epoch {current}, request carries {held}")]
    StaleBrokerEpoch {
        broker: BrokerId,
        current: u64,
        held: u64,
    },
    #[error("broker {0} is fenced")]
    BrokerFenced(BrokerId),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic id {0} is already used")]
    TopicIdExists(Uuid),
    #[error("invalid topic name {0:?}")]
    InvalidTopicName(String),
    #[error("invalid partition count {requested} (current {current}, max {max})")]
    InvalidPartitionCount {
        requested: u32,
        current: u32,
        max: u32,
    },
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("partition {topic}-{partition} is at epoch {current}, expected {expected}")]
    EpochMismatch {
        topic: String,
        partition: u32,
        expected: StreamEpoch,
        current: StreamEpoch,
    },
    #[error("invalid config {key}: {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error("stream {stream} is at epoch {current}, writer holds {held}")]
    Fenced {
        stream: StreamId,
        current: StreamEpoch,
        held: StreamEpoch,
    },
    #[error(
        "stream {stream}: range {start}..{end} does not continue the committed end {end_offset}"
    )]
    RangeConflict {
        stream: StreamId,
        start: u64,
        end: u64,
        end_offset: u64,
    },
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
    #[error("object {0} is unknown or not reserved")]
    UnknownObject(ObjectId),
    #[error("invalid command: {0}")]
    Invalid(String),
}

/// The state machine's answer to one log entry.
pub type Response = Result<Output, CommandError>;

/// Upper bounds that keep one command's effect bounded.
pub mod limits {
    /// Most partitions a topic can have.
    pub const MAX_PARTITIONS: u32 = 100_000;
    /// Most ids reserved or allocated by one command.
    pub const MAX_ID_BLOCK: u32 = 1_000_000;
    /// Most objects or ranges in one commit.
    pub const MAX_COMMIT_ITEMS: usize = 100_000;
    /// Longest Kafka topic name.
    pub const MAX_TOPIC_NAME: usize = 249;
    /// Longest config key or value, listener host, rack.
    pub const MAX_STRING: usize = 4096;
    /// Most commands in one batch entry.
    pub const MAX_BATCH: usize = 4096;
}
