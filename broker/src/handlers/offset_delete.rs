//! OffsetDelete (v0): drop committed offsets of partitions the group does
//! not consume (GROUP_SUBSCRIBED_TO_TOPIC otherwise).

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind,
    offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic},
};

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, req: OffsetDeleteRequest) -> Admit {
    respond_after(async move {
        let asked: Vec<(String, i32)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.0.to_string(), p.partition_index))
            })
            .collect();
        let resp = match broker
            .groups
            .delete_offsets(&broker, &req.group_id.0, &asked)
            .await
        {
            Err(code) => OffsetDeleteResponse::default().with_error_code(code),
            Ok(codes) => {
                let mut codes = codes.into_iter();
                OffsetDeleteResponse::default().with_topics(
                    req.topics
                        .into_iter()
                        .map(|t| {
                            let parts = t
                                .partitions
                                .iter()
                                .map(|p| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(codes.next().unwrap_or(0))
                                })
                                .collect();
                            OffsetDeleteResponseTopic::default()
                                .with_name(t.name)
                                .with_partitions(parts)
                        })
                        .collect(),
                )
            }
        };
        ResponseKind::OffsetDelete(resp)
    })
}
