//! OffsetCommit (v2-v9): committed offsets become records of the group's
//! `__consumer_offsets` partition; the answer waits until they are durable.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, ResponseKind,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
};

use crate::broker::Broker;
use crate::groups::CommitEntry;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, req: OffsetCommitRequest) -> Admit {
    respond_after(async move {
        let entries: Vec<CommitEntry> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| CommitEntry {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|s| s.to_string()),
                })
            })
            .collect();
        let codes = match broker
            .groups
            .commit(
                &broker,
                &req.group_id.0,
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id_or_member_epoch,
                &entries,
            )
            .await
        {
            Ok(codes) => codes,
            Err(code) => vec![code; entries.len()],
        };
        let mut codes = codes.into_iter();
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(codes.next().unwrap_or(0))
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(t.name)
                    .with_topic_id(t.topic_id)
                    .with_partitions(parts)
            })
            .collect();
        ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
    })
}
