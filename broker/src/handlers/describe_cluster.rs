//! DescribeCluster: the cluster id, the controller and the live brokers.

use std::sync::Arc;

use skiff_metadata::command::BrokerState;
use skiff_wire::kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, ResponseKind,
    describe_cluster_response::DescribeClusterBroker,
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, ready};

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    _req: DescribeClusterRequest,
) -> Admit {
    let resp = broker.cluster.read(|s| {
        let brokers = s
            .brokers
            .values()
            .filter_map(|b| {
                let l = b.listeners.first()?;
                Some(
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id.0))
                        .with_host(StrBytes::from_string(l.host.clone()))
                        .with_port(i32::from(l.port))
                        .with_rack(b.rack.clone().map(StrBytes::from_string))
                        .with_is_fenced(b.state == BrokerState::Fenced),
                )
            })
            .collect();
        DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_string(
                s.cluster_id.map(|c| c.to_string()).unwrap_or_default(),
            ))
            .with_controller_id(BrokerId(broker.cluster.controller_id()))
            .with_brokers(brokers)
            .with_cluster_authorized_operations(i32::MIN)
    });
    ready(Some(ResponseKind::DescribeCluster(resp)))
}
