//! Skiff's cluster metadata: the state machine replicated with openraft
//! (brokers and sessions, topics, partition ownership and epochs, the stream
//! -> object index, producer-id blocks, configs), its on-disk Raft log and
//! snapshots, and the typed client API the broker uses.
//!
//! # Pieces
//!
//! - [`command`]: the [`Command`]s a client proposes, their [`Output`]s and
//!   typed [`CommandError`]s. Commands carry the proposer's clock
//!   (`now_ms`), so applying the log is deterministic.
//! - [`state`]: [`ClusterState`], a plain value with a deterministic
//!   `apply` that validates first and changes nothing on error, plus the
//!   read queries (stream meta, lookup, objects, coordinator placement).
//!   The object-index rules are exactly those of storage's `Catalog`
//!   (fencing by stream epoch, contiguous ranges, atomic compaction).
//! - [`store`]: the Raft log (segment files of crc32c frames, one writer
//!   thread with group-committed fsyncs) and the state machine store
//!   (state in memory, whole-state snapshots on disk).
//! - [`net`]: the node-to-node [`net::Rpc`] set (Raft RPCs plus forwarded
//!   writes, read-index requests, joins), an in-process transport with fault
//!   injection ([`net::mem::MemRouter`]) and a TCP transport.
//! - [`node`]: [`MetadataNode`], which starts (bootstrap, restart or join),
//!   forwards writes to the leader, serves linearizable reads, publishes a
//!   [`Watch`] stream of [`Change`]s and changes membership.
//! - [`client`]: typed helpers, one per broker operation; the object-index
//!   ones line up with storage's `Catalog` trait.
//! - [`config`]: the [`MetadataConfig`].
//! - [`runtime`]: openraft's async runtime (tokio with a seedable RNG, for
//!   the deterministic simulation).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::BTreeMap;
//! use skiff_metadata::{Command, MetadataConfig, MetadataNode, Output};
//!
//! // `skiff serve` default: one voter, no network, state under data_dir.
//! let node = MetadataNode::start(MetadataConfig::default()).await?;
//! node.wait_ready(std::time::Duration::from_secs(10)).await?;
//! let mut changes = node.watch();
//! let out = node
//!     .write(Command::CreateTopic {
//!         name: "telemetry".into(),
//!         topic_id: uuid::Uuid::new_v4(),
//!         partitions: 3,
//!         configs: BTreeMap::from([("retention.ms".into(), "86400000".into())]),
//!     })
//!     .await?;
//! assert!(matches!(out, Output::TopicCreated { .. }));
//! let partitions = node.read(|s| s.topics["telemetry"].partitions.len()).await?;
//! assert_eq!(partitions, 3);
//! let _created = changes.next().await;
//! node.shutdown().await;
//! # Ok(()) }
//! ```

pub mod client;
pub mod command;
pub mod config;
pub mod error;
pub mod frame;
pub mod net;
pub mod node;
pub mod runtime;
pub mod state;
pub mod store;
pub mod types;

pub use client::Assignment;
pub use command::{Command, CommandError, Output, Response};
pub use config::{MetadataConfig, Peer};
pub use error::{MetadataError, StartError};
pub use node::{MetadataNode, Watch};
pub use state::{Change, ClusterState};
