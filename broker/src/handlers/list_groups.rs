//! ListGroups (v0-v5): the groups this broker coordinates, filtered by
//! state (v4+, case-insensitive) and type (v5+; every group is "classic").

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
            .filter(|(_, _, st)| states.is_empty() || states.contains(&st.name().to_lowercase()))
            .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
            .map(|(id, protocol_type, st)| {
                ListedGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(id)))
                    .with_protocol_type(StrBytes::from_string(protocol_type))
                    .with_group_state(StrBytes::from_static_str(st.name()))
                    .with_group_type(StrBytes::from_static_str("classic"))
            })
            .collect();
        ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(groups))
    })
}
