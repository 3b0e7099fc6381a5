//! Fault-injection harness for Skiff: runs real brokers and a real Kafka client
//! workload, injects faults, records the history and checks it for lost,
//! duplicated, reordered and aborted reads.
