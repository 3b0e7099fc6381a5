//! LeaveGroup (v0-v5): v0-v2 name one member; v3+ a batch of members (by
//! member id or, for static members, group instance id).

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    LeaveGroupRequest, LeaveGroupResponse, ResponseKind, leave_group_response::MemberResponse,
};

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(broker: Arc<Broker>, ctx: RequestContext, req: LeaveGroupRequest) -> Admit {
    respond_after(async move {
        let batched = ctx.api_version >= 3;
        let members: Vec<(String, Option<String>)> = if batched {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|s| s.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let resp = match broker
            .groups
            .leave(&broker, &req.group_id.0, &members)
            .await
        {
            Err(code) => LeaveGroupResponse::default().with_error_code(code),
            Ok(codes) if !batched => {
                LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
            }
            Ok(codes) => LeaveGroupResponse::default().with_members(
                req.members
                    .into_iter()
                    .zip(codes)
                    .map(|(m, code)| {
                        MemberResponse::default()
                            .with_member_id(m.member_id)
                            .with_group_instance_id(m.group_instance_id)
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        };
        ResponseKind::LeaveGroup(resp)
    })
}
