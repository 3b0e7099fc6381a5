//! Benchmarks for Skiff driven by a real Kafka client (librdkafka through the
//! `rdkafka` crate), so the client is one we did not write.
//!
//! - [`workload`]: the load generators (`produce`, `latency`, `consume`,
//!   `catchup`, `fleet`), each returning a [`report::Report`];
//! - [`report`]: the human summary and the one-JSON-line-per-run output, with
//!   broker RSS and CPU read from `/proc` ([`procstat`]);
//! - [`payload`]: 17-character VINs and GB/T 32960-shaped vehicle packets;
//! - [`compare`]: the side-by-side runner that starts Skiff and a peer broker
//!   (tansu) on loopback and runs the same workload against each in turn.
//!
//! Nothing here runs under `cargo test` except the unit tests of the pure
//! parts (payload shapes, report maths); the benchmarks are the
//! `skiff-bench` binary, documented in `BENCHMARKS.md` at the repo root.

pub mod client;
pub mod compare;
pub mod payload;
pub mod procstat;
pub mod report;
pub mod workload;
