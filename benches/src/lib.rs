//! Benchmarks for Skiff driven by a real Kafka client (librdkafka): throughput,
//! latency percentiles, the vehicle-fleet workload and side-by-side runs
//! against another Kafka-compatible broker.
