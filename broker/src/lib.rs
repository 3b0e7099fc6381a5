//! The Skiff broker: configuration, Kafka listeners, connection tasks, the
//! request router and one handler per Kafka API, the partition manager, group
//! and transaction coordinators, the controller role, the admin CLI and the
//! metrics/health endpoints.

pub mod config;
pub mod http;
pub mod metrics;
pub mod telemetry;
pub mod topic_config;
