//! DescribeTopicPartitions (KIP-966): topics with their partitions, like
//! Metadata but paginated. Topics are answered in name order; at most
//! `response_partition_limit` partitions per response, and when more remain
//! the response carries `next_cursor` (topic and first partition not yet
//! returned) for the client to send back. An empty topic list means every
//! topic; unknown names get UNKNOWN_TOPIC_OR_PARTITION.

use std::sync::Arc;

use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, ResponseKind, TopicName,
    describe_topic_partitions_response::{
        Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
    },
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::handlers::metadata::describe_topic;
use crate::router::{Admit, RequestContext, ready};

/// Kafka's "authorized operations not requested" marker.
const OPS_NOT_REQUESTED: i32 = i32::MIN;
/// Kafka's `max.request.partition.size.limit` default: the most partitions
/// one response carries whatever the client asks.
const MAX_PARTITIONS: usize = 2000;

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: DescribeTopicPartitionsRequest,
) -> Admit {
    let resp = broker.cluster.read(|s| {
        let mut names: Vec<String> = if req.topics.is_empty() {
            s.topics.keys().cloned().collect()
        } else {
            req.topics.iter().map(|t| t.name.0.to_string()).collect()
        };
        names.sort();
        names.dedup();
        let (cursor_topic, mut first_partition) = match &req.cursor {
            Some(c) => (Some(c.topic_name.0.to_string()), c.partition_index.max(0)),
            None => (None, 0),
        };
        let limit = usize::try_from(req.response_partition_limit)
            .unwrap_or(0)
            .clamp(1, MAX_PARTITIONS);
        let mut left = limit;
        let mut topics = Vec::new();
        let mut next_cursor = None;
        for name in names
            .into_iter()
            .filter(|n| cursor_topic.as_ref().is_none_or(|c| n >= c))
        {
            let Some(t) = s.topics.get(&name) else {
                topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_name(Some(topic_name(&name)))
                        .with_topic_authorized_operations(OPS_NOT_REQUESTED),
                );
                first_partition = 0;
                continue;
            };
            if left == 0 {
                next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)));
                break;
            }
            let md = describe_topic(s, t);
            let mut partitions = Vec::new();
            for p in md.partitions.into_iter().skip(first_partition as usize) {
                if left == 0 {
                    next_cursor = Some(
                        Cursor::default()
                            .with_topic_name(topic_name(&name))
                            .with_partition_index(p.partition_index),
                    );
                    break;
                }
                left -= 1;
                partitions.push(
                    DescribeTopicPartitionsResponsePartition::default()
                        .with_error_code(p.error_code)
                        .with_partition_index(p.partition_index)
                        .with_leader_id(p.leader_id)
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(p.replica_nodes)
                        .with_isr_nodes(p.isr_nodes)
                        .with_eligible_leader_replicas(Some(vec![]))
                        .with_last_known_elr(Some(vec![]))
                        .with_offline_replicas(p.offline_replicas),
                );
            }
            first_partition = 0;
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(md.name)
                    .with_topic_id(md.topic_id)
                    .with_is_internal(md.is_internal)
                    .with_partitions(partitions)
                    .with_topic_authorized_operations(OPS_NOT_REQUESTED),
            );
            if next_cursor.is_some() {
                break;
            }
        }
        DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next_cursor)
    });
    ready(Some(ResponseKind::DescribeTopicPartitions(resp)))
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}
