//! CreatePartitions: grow topics; new partitions are placed on live brokers.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, ResponseKind,
    create_partitions_response::CreatePartitionsTopicResult,
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};
use crate::topics;

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: CreatePartitionsRequest,
) -> Admit {
    respond_after(async move {
        let mut results = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.0.to_string();
            let assignments = t.assignments.map(|a| {
                a.into_iter()
                    .map(|x| x.broker_ids.into_iter().map(|b| b.0).collect())
                    .collect()
            });
            let r = CreatePartitionsTopicResult::default().with_name(t.name);
            results.push(
                match topics::add_partitions(
                    &broker,
                    &name,
                    t.count,
                    assignments,
                    req.validate_only,
                )
                .await
                {
                    Ok(()) => r,
                    Err(e) => r
                        .with_error_code(e.code())
                        .with_error_message(Some(StrBytes::from_string(e.message))),
                },
            );
        }
        ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(results))
    })
}
