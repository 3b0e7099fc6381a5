//! ListGroups (v0-v5): the groups this broker coordinates, filtered by
//! state (v4+, case-insensitive) and type (v5+: "classic" or "consumer").

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    GroupId, ListGroupsRequest, ListGroupsResponse, ResponseKind, list_groups_response::ListedGroup,
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, req: ListGroupsRequest) -> Admit {
    respond_after(async move {
        let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
        let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
        let groups = broker
            .groups
            .list(&broker)
            .await
            .into_iter()
            .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
            .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(g.id)))
                    .with_protocol_type(StrBytes::from_string(g.protocol_type))
                    .with_group_state(StrBytes::from_static_str(g.state))
                    .with_group_type(StrBytes::from_static_str(g.group_type))
            })
            .collect();
        ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(groups))
    })
}
