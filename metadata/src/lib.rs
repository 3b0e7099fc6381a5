//! Skiff's cluster metadata: the state machine replicated with openraft
//! (brokers and sessions, topics, partition ownership and epochs, the stream
//! -> object index, producer-id blocks, configs), its on-disk Raft log and
//! snapshots, and the typed client API the broker uses.

pub mod command;
pub mod config;
pub mod error;
pub mod frame;
pub mod net;
pub mod node;
pub mod state;
pub mod store;
pub mod types;

pub use command::{Command, CommandError, Output, Response};
pub use config::{MetadataConfig, Peer};
pub use error::{MetadataError, StartError};
pub use node::{MetadataNode, Watch};
pub use state::{Change, ClusterState};
