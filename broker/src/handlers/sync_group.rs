//! SyncGroup (v0-v5): the leader hands out assignments; every member's
//! answer waits (in the respond step) for them.

use std::sync::Arc;

use futures::FutureExt;
use skiff_wire::kafka_protocol::error::ResponseError as E;
use skiff_wire::kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::groups::group::{Reply, SyncResult};
use crate::router::{Admit, RequestContext};

#[allow(
    clippy::async_yields_async,
    reason = "admit resolves to the respond step by design"
)]
pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, req: SyncGroupRequest) -> Admit {
    async move {
        let assignments = req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect();
        let reply = broker
            .groups
            .sync(
                &broker,
                &req.group_id.0,
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
                req.protocol_type.as_deref(),
                req.protocol_name.as_deref(),
                assignments,
            )
            .await;
        async move {
            let r = match reply {
                Reply::Now(r) => r,
                Reply::Wait(rx) => rx
                    .await
                    .unwrap_or_else(|_| SyncResult::error(E::RebalanceInProgress)),
            };
            Some(
                ResponseKind::SyncGroup(
                    SyncGroupResponse::default()
                        .with_error_code(r.error)
                        .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
                        .with_protocol_name(r.protocol.map(StrBytes::from_string))
                        .with_assignment(r.assignment),
                )
                .into(),
            )
        }
        .boxed()
    }
    .boxed()
}
