//! The Skiff broker: configuration, Kafka listeners, connection tasks, the
//! request router and one handler per Kafka API, the partition manager, the
//! controller duties, the admin CLI and the metrics/health endpoints.
//!
//! A request's path: [`server`] accepts a connection, [`connection`] reads
//! whole frames and decodes them with `skiff-wire`, [`router`] hands the
//! typed request to its module in [`handlers`], which calls the domain code:
//! [`topics`] (administration through [`cluster`] metadata) and
//! [`partitions`] (storage streams), [`groups`] (the consumer-group
//! coordinator over `__consumer_offsets`) and [`fetch_session`] (KIP-227
//! incremental fetch sessions). [`errors`] is the one place domain errors
//! become Kafka codes. [`node`] wires it all up for `skiff serve`.

pub mod admin;
pub mod broker;
pub mod catalog_adapter;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod controller;
pub mod errors;
pub mod fetch_session;
pub mod groups;
pub mod handlers;
pub mod http;
pub mod internal_topic;
pub mod log_search;
pub mod log_size;
pub mod metrics;
pub mod node;
pub mod partitions;
pub mod producer_ids;
pub mod producer_state;
pub mod raft_backend;
pub mod retention;
pub mod router;
pub mod server;
pub mod telemetry;
pub mod topic_config;
pub mod topics;
pub mod transactions;
