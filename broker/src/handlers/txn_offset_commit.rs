//! TxnOffsetCommit (v0-v5): offsets committed inside a transaction, sent to
//! the group coordinator; they become visible with the transaction's COMMIT
//! marker ([`crate::groups::txn_offsets`]).

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic},
};

use crate::broker::Broker;
use crate::groups::CommitEntry;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: TxnOffsetCommitRequest,
) -> Admit {
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
            .txn_commit(
                &broker,
                &req.transactional_id.0,
                &req.group_id.0,
                req.producer_id.0,
                req.producer_epoch,
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
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
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(codes.next().unwrap_or(0))
                    })
                    .collect();
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(parts)
            })
            .collect();
        ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics))
    })
}
