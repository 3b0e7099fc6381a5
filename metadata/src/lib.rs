//! Skiff's cluster metadata: the state machine replicated with openraft
//! (brokers and sessions, topics, partition ownership and epochs, the stream
//! -> object index, producer-id blocks, configs), its on-disk Raft log and
//! snapshots, and the typed client API the broker uses.

pub mod command;
pub mod state;

pub use command::{Command, CommandError, Output, Response};
pub use state::{Change, ClusterState};
