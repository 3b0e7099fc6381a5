//! Heartbeat (v0-v4): keeps a member's session alive; REBALANCE_IN_PROGRESS
//! tells it to rejoin.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, ResponseKind};

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, req: HeartbeatRequest) -> Admit {
    respond_after(async move {
        let code = broker
            .groups
            .heartbeat(
                &broker,
                &req.group_id.0,
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
            )
            .await;
        ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
    })
}
