//! AddPartitionsToTxn (v0-v5): partitions join a producer's transaction.
//! v0-v3 carry one transaction (librdkafka uses v0); v4+ batch several and
//! may only verify (`verify_only`) that partitions are already in it.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ResponseKind, TopicName,
    add_partitions_to_txn_request::AddPartitionsToTxnTopic,
    add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
    },
};

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: AddPartitionsToTxnRequest,
) -> Admit {
    respond_after(async move {
        let mut resp = AddPartitionsToTxnResponse::default();
        if ctx.api_version <= 3 {
            let topics = add(
                &broker,
                &req.v3_and_below_transactional_id,
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                &req.v3_and_below_topics,
                false,
            )
            .await;
            resp = resp.with_results_by_topic_v3_and_below(topics);
        } else {
            let mut results = Vec::with_capacity(req.transactions.len());
            for t in &req.transactions {
                let topics = add(
                    &broker,
                    &t.transactional_id,
                    t.producer_id.0,
                    t.producer_epoch,
                    &t.topics,
                    t.verify_only,
                )
                .await;
                results.push(
                    AddPartitionsToTxnResult::default()
                        .with_transactional_id(t.transactional_id.clone())
                        .with_topic_results(topics),
                );
            }
            resp = resp.with_results_by_transaction(results);
        }
        ResponseKind::AddPartitionsToTxn(resp)
    })
}

/// One transaction's partitions: a result per partition.
async fn add(
    broker: &Broker,
    id: &str,
    pid: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let partitions: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect();
    let codes = match broker
        .transactions
        .add_partitions(broker, id, pid, epoch, &partitions, verify_only)
        .await
    {
        Ok(codes) => codes,
        Err(code) => vec![code; partitions.len()],
    };
    let mut codes = codes.into_iter();
    topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(t.name.0.clone()))
                .with_results_by_partition(parts)
        })
        .collect()
}
