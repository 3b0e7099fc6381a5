//! ConsumerGroupDescribe (v0-v1, KIP-848): epochs, assignor and members
//! (with current and target assignments) of consumer-protocol groups.

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ResponseKind, TopicName,
    consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::broker::Broker;
use crate::groups::consumer::assignor::TopicPartitions as Parts;
use crate::router::{Admit, RequestContext, respond_after};

fn assignment(parts: &Parts, names: &BTreeMap<Uuid, String>) -> Assignment {
    Assignment::default().with_topic_partitions(
        parts
            .iter()
            .map(|(id, ps)| {
                TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(StrBytes::from_string(
                        names.get(id).cloned().unwrap_or_default(),
                    )))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> Admit {
    respond_after(async move {
        let mut out = Vec::with_capacity(req.group_ids.len());
        for id in req.group_ids {
            let g = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            out.push(
                match broker.groups.consumer_describe(&broker, &id.0).await {
                    Err((code, msg)) => g
                        .with_error_code(code)
                        .with_error_message((!msg.is_empty()).then(|| StrBytes::from_string(msg))),
                    Ok(d) => g
                        .with_group_state(StrBytes::from_static_str(d.state))
                        .with_group_epoch(d.epoch)
                        .with_assignment_epoch(d.assignment_epoch)
                        .with_assignor_name(StrBytes::from_static_str(d.assignor))
                        .with_members(
                            d.members
                                .iter()
                                .map(|m| {
                                    Member::default()
                                        .with_member_id(StrBytes::from_string(m.id.clone()))
                                        .with_instance_id(
                                            m.instance_id.clone().map(StrBytes::from_string),
                                        )
                                        .with_rack_id(m.rack_id.clone().map(StrBytes::from_string))
                                        .with_member_epoch(m.rec.epoch)
                                        .with_client_id(StrBytes::from_string(m.client_id.clone()))
                                        .with_client_host(StrBytes::from_string(
                                            m.client_host.clone(),
                                        ))
                                        .with_subscribed_topic_names(
                                            m.subscribed_topic_names
                                                .iter()
                                                .map(|n| {
                                                    TopicName(StrBytes::from_string(n.clone()))
                                                })
                                                .collect(),
                                        )
                                        .with_subscribed_topic_regex(
                                            m.subscribed_topic_regex
                                                .clone()
                                                .map(StrBytes::from_string),
                                        )
                                        .with_assignment(assignment(&m.rec.assigned, &d.names))
                                        .with_target_assignment(assignment(
                                            d.target.get(&m.id).unwrap_or(&Parts::new()),
                                            &d.names,
                                        ))
                                        .with_member_type(1)
                                })
                                .collect(),
                        ),
                },
            );
        }
        ResponseKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeResponse::default().with_groups(out),
        )
    })
}
