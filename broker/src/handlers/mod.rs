//! One module per Kafka API. Each exposes a `handle` function from the typed
//! request to an [`Admit`](crate::router::Admit) and is registered in
//! [`ROUTES`] with the versions it serves; ApiVersions answers from that
//! registry.

use skiff_wire::kafka_protocol::messages::{ApiKey, RequestKind};

use crate::router::Route;

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod api_versions;
mod configs;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_topic_partitions;
mod describe_transactions;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

pub(crate) use fetch::read_error;

/// A route for `$variant` at versions `$min..=$max`, served by `$handler`.
macro_rules! route {
    ($variant:ident, $min:expr, $max:expr, $handler:path) => {
        Route {
            api_key: ApiKey::$variant,
            min_version: $min,
            max_version: $max,
            handler: |broker, ctx, body| match body {
                RequestKind::$variant(req) => $handler(broker, ctx, req),
                // decode_request produced the body for this key
                _ => crate::router::ready(None),
            },
        }
    };
}

/// Every API this broker serves, with the versions current clients use
/// (librdkafka 2.x, Java 3.x/4.x, franz-go, kafka-python).
pub const ROUTES: &[Route] = &[
    route!(Produce, 3, 11, produce::handle),
    route!(Fetch, 4, 16, fetch::handle),
    route!(ListOffsets, 1, 8, list_offsets::handle),
    route!(ApiVersions, 0, 4, api_versions::handle),
    route!(OffsetForLeaderEpoch, 2, 4, offset_for_leader_epoch::handle),
    route!(DeleteRecords, 0, 2, delete_records::handle),
    route!(Metadata, 0, 12, metadata::handle),
    route!(CreateTopics, 2, 7, create_topics::handle),
    route!(DeleteTopics, 1, 6, delete_topics::handle),
    route!(CreatePartitions, 0, 3, create_partitions::handle),
    route!(DescribeConfigs, 1, 4, configs::describe),
    route!(AlterConfigs, 0, 2, configs::alter),
    route!(IncrementalAlterConfigs, 0, 1, configs::incremental_alter),
    route!(DescribeCluster, 0, 1, describe_cluster::handle),
    // idempotent and transactional producers (crate::producer_state)
    route!(InitProducerId, 0, 5, init_producer_id::handle),
    route!(WriteTxnMarkers, 1, 1, write_txn_markers::handle),
    route!(DescribeProducers, 0, 0, describe_producers::handle),
    // consumer groups (crate::groups)
    route!(FindCoordinator, 0, 6, find_coordinator::handle),
    route!(JoinGroup, 0, 9, join_group::handle),
    route!(SyncGroup, 0, 5, sync_group::handle),
    route!(Heartbeat, 0, 4, heartbeat::handle),
    route!(LeaveGroup, 0, 5, leave_group::handle),
    route!(OffsetCommit, 2, 9, offset_commit::handle),
    route!(OffsetFetch, 1, 9, offset_fetch::handle),
    route!(DescribeGroups, 0, 6, describe_groups::handle),
    route!(ListGroups, 0, 5, list_groups::handle),
    route!(DeleteGroups, 0, 2, delete_groups::handle),
    route!(OffsetDelete, 0, 0, offset_delete::handle),
    // transactions (crate::transactions)
    route!(AddPartitionsToTxn, 0, 5, add_partitions_to_txn::handle),
    route!(AddOffsetsToTxn, 0, 4, add_offsets_to_txn::handle),
    route!(EndTxn, 0, 5, end_txn::handle),
    route!(TxnOffsetCommit, 0, 5, txn_offset_commit::handle),
    route!(DescribeTransactions, 0, 0, describe_transactions::handle),
    route!(ListTransactions, 0, 1, list_transactions::handle),
    route!(
        ConsumerGroupHeartbeat,
        0,
        1,
        consumer_group_heartbeat::handle
    ),
    route!(ConsumerGroupDescribe, 0, 1, consumer_group_describe::handle),
    route!(DescribeLogDirs, 1, 4, describe_log_dirs::handle),
    route!(
        DescribeTopicPartitions,
        0,
        0,
        describe_topic_partitions::handle
    ),
];
