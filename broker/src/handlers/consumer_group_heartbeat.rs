//! ConsumerGroupHeartbeat (v0-v1, KIP-848): join, heartbeat, reconcile and
//! leave of a consumer-protocol member, answered by
//! [`crate::groups::consumer`].

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ResponseKind,
    consumer_group_heartbeat_response::{Assignment, TopicPartitions},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::groups::consumer::Heartbeat;
use crate::groups::consumer::assignor::TopicPartitions as Owned;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> Admit {
    respond_after(async move {
        let owned = req.topic_partitions.map(|tps| {
            let mut o = Owned::new();
            for t in tps {
                o.entry(t.topic_id).or_default().extend(t.partitions);
            }
            o
        });
        let hb = Heartbeat {
            version: ctx.api_version,
            member_id: req.member_id.to_string(),
            member_epoch: req.member_epoch,
            instance_id: req.instance_id.map(|s| s.to_string()),
            rack_id: req.rack_id.map(|s| s.to_string()),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed_topic_names: req
                .subscribed_topic_names
                .map(|ns| ns.into_iter().map(|n| n.0.to_string()).collect()),
            subscribed_topic_regex: req.subscribed_topic_regex.map(|s| s.to_string()),
            server_assignor: req.server_assignor.map(|s| s.to_string()),
            owned,
            client_id: ctx
                .header
                .client_id
                .map(|s| s.to_string())
                .unwrap_or_default(),
            client_host: format!("/{}", ctx.peer.ip()),
        };
        let a = broker
            .groups
            .consumer_heartbeat(&broker, &req.group_id.0, hb)
            .await;
        let assignment = a.assignment.map(|tps| {
            Assignment::default().with_topic_partitions(
                tps.into_iter()
                    .map(|(id, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(ps.into_iter().collect())
                    })
                    .collect(),
            )
        });
        ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(a.error)
                .with_error_message(a.message.map(StrBytes::from_string))
                .with_member_id(
                    (!a.member_id.is_empty()).then(|| StrBytes::from_string(a.member_id)),
                )
                .with_member_epoch(a.member_epoch)
                .with_heartbeat_interval_ms(a.heartbeat_interval_ms)
                .with_assignment(assignment),
        )
    })
}
