//! JoinGroup (v0-v9): the coordinator admits or rebalances; the answer
//! waits (in the respond step) until the join phase completes.

use std::sync::Arc;

use futures::FutureExt;
use skiff_wire::kafka_protocol::error::ResponseError as E;
use skiff_wire::kafka_protocol::messages::{
    JoinGroupRequest, JoinGroupResponse, ResponseKind, join_group_response::JoinGroupResponseMember,
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::groups::group::{JoinRequest, JoinResult, Reply};
use crate::router::{Admit, RequestContext};

#[allow(
    clippy::async_yields_async,
    reason = "admit resolves to the respond step by design"
)]
pub(super) fn handle(broker: Arc<Broker>, ctx: RequestContext, req: JoinGroupRequest) -> Admit {
    async move {
        let version = ctx.api_version;
        let member_id = req.member_id.to_string();
        let join = JoinRequest {
            member_id: member_id.clone(),
            instance_id: req.group_instance_id.map(|s| s.to_string()),
            client_id: ctx
                .header
                .client_id
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            client_host: format!("/{}", ctx.peer.ip()),
            session_timeout_ms: req.session_timeout_ms,
            // v0 has no rebalance timeout: the session timeout serves.
            rebalance_timeout_ms: if version >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_known_member_id: version >= 4,
        };
        let reply = broker.groups.join(&broker, &req.group_id.0, join).await;
        async move {
            let result = match reply {
                Reply::Now(r) => r,
                Reply::Wait(rx) => rx
                    .await
                    .unwrap_or_else(|_| JoinResult::error(E::RebalanceInProgress, &member_id)),
            };
            Some(ResponseKind::JoinGroup(response(result)).into())
        }
        .boxed()
    }
    .boxed()
}

fn response(r: JoinResult) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(r.protocol.map(StrBytes::from_string))
        .with_leader(StrBytes::from_string(r.leader))
        .with_skip_assignment(r.skip_assignment)
        .with_member_id(StrBytes::from_string(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_group_instance_id(instance.map(StrBytes::from_string))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}
