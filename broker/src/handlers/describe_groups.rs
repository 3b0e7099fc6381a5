//! DescribeGroups (v0-v6): state, protocol and members (with metadata and
//! assignment) of each group. An unknown group is `Dead` (v6+:
//! GROUP_ID_NOT_FOUND).

use std::sync::Arc;

use skiff_wire::kafka_protocol::error::ResponseError as E;
use skiff_wire::kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, ResponseKind,
    describe_groups_response::{DescribedGroup, DescribedGroupMember},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeGroupsRequest,
) -> Admit {
    respond_after(async move {
        let mut out = Vec::with_capacity(req.groups.len());
        for id in req.groups {
            let g = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            out.push(match broker.groups.describe(&broker, &id.0).await {
                Err(code) => g.with_error_code(code),
                Ok(None) => {
                    let g = g.with_group_state(StrBytes::from_static_str("Dead"));
                    if ctx.api_version >= 6 {
                        g.with_error_code(E::GroupIdNotFound.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "Group {} not found.",
                                &*id.0
                            ))))
                    } else {
                        g
                    }
                }
                Ok(Some(d)) => g
                    .with_group_state(StrBytes::from_static_str(d.state))
                    .with_protocol_type(StrBytes::from_string(d.protocol_type))
                    .with_protocol_data(StrBytes::from_string(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|(id, instance, client, host, metadata, assignment)| {
                                DescribedGroupMember::default()
                                    .with_member_id(StrBytes::from_string(id))
                                    .with_group_instance_id(instance.map(StrBytes::from_string))
                                    .with_client_id(StrBytes::from_string(client))
                                    .with_client_host(StrBytes::from_string(host))
                                    .with_member_metadata(metadata)
                                    .with_member_assignment(assignment)
                            })
                            .collect(),
                    ),
            });
        }
        ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(out))
    })
}
