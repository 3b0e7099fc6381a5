//! DescribeProducers (v0): the active producers of partitions this broker
//! leads, from their producer state (`kafka-transactions.sh
//! describe-producers`, Flink's transactional-id pooling).

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, ResponseKind,
    describe_producers_response::{PartitionResponse, ProducerState, TopicResponse},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: DescribeProducersRequest,
) -> Admit {
    respond_after(async move {
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.0.to_string();
            let mut parts = Vec::with_capacity(t.partition_indexes.len());
            for i in t.partition_indexes {
                let r = PartitionResponse::default().with_partition_index(i);
                parts.push(match broker.partitions.get(&name, i).await {
                    Ok(p) => r.with_active_producers(p.producers.with(|s| {
                        s.producers()
                            .map(|(id, e)| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(id))
                                    .with_producer_epoch(i32::from(e.epoch))
                                    .with_last_sequence(e.last_seq().unwrap_or(-1))
                                    .with_last_timestamp(e.last_timestamp)
                                    .with_coordinator_epoch(e.coordinator_epoch)
                                    .with_current_txn_start_offset(e.txn_first_offset.unwrap_or(-1))
                            })
                            .collect()
                    })),
                    Err(e) => r
                        .with_error_code(e.code())
                        .with_error_message(Some(StrBytes::from_string(e.message))),
                });
            }
            topics.push(
                TopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(parts),
            );
        }
        ResponseKind::DescribeProducers(DescribeProducersResponse::default().with_topics(topics))
    })
}
