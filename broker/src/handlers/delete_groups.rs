//! DeleteGroups (v0-v2): empty groups only (NON_EMPTY_GROUP otherwise);
//! their offsets and metadata get tombstones.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind,
    delete_groups_response::DeletableGroupResult,
};

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, req: DeleteGroupsRequest) -> Admit {
    respond_after(async move {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for id in req.groups_names {
            let code = broker.groups.delete_group(&broker, &id.0).await;
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(code),
            );
        }
        ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
    })
}
