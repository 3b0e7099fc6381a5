//! Skiff's cluster metadata: the state machine replicated with openraft
//! (brokers and sessions, topics, partition ownership and epochs, the stream
//! -> object index, producer-id blocks, configs), its on-disk Raft log and
//! snapshots, and the typed client API the broker uses.
