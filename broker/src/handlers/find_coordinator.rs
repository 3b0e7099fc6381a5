//! FindCoordinator (v0-v6): the coordinator of a group (key type 0) is the
//! owner of the group's `__consumer_offsets` partition, the coordinator of a
//! transactional id (key type 1) the owner of its `__transaction_state`
//! partition (both topics created on first use). v4+ batches keys.

use std::sync::Arc;

use skiff_wire::kafka_protocol::error::ResponseError as E;
use skiff_wire::kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ResponseKind,
    find_coordinator_response::Coordinator,
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::errors::KafkaError;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: FindCoordinatorRequest,
) -> Admit {
    respond_after(async move {
        let keys: Vec<StrBytes> = if ctx.api_version >= 4 {
            req.coordinator_keys
        } else {
            vec![req.key]
        };
        let mut coordinators = Vec::with_capacity(keys.len());
        for key in keys {
            let found = lookup(&broker, req.key_type, &key).await;
            let c = Coordinator::default().with_key(key);
            coordinators.push(match found {
                Ok((node, host, port)) => c
                    .with_node_id(BrokerId(node))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port),
                Err(e) => c
                    .with_node_id(BrokerId(-1))
                    .with_host(StrBytes::from_static_str(""))
                    .with_port(-1)
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            });
        }
        let mut resp = FindCoordinatorResponse::default();
        if ctx.api_version < 4
            && let Some(c) = coordinators.pop()
        {
            resp = resp
                .with_error_code(c.error_code)
                .with_error_message(c.error_message)
                .with_node_id(c.node_id)
                .with_host(c.host)
                .with_port(c.port);
        } else {
            resp = resp.with_coordinators(coordinators);
        }
        ResponseKind::FindCoordinator(resp)
    })
}

async fn lookup(
    broker: &Broker,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, i32), KafkaError> {
    let (_, owner) = match key_type {
        0 => broker.groups.find(broker, key).await?,
        1 => broker.transactions.find(broker, key).await?,
        _ => {
            return Err(KafkaError::new(
                E::InvalidRequest,
                format!("unknown coordinator key type {key_type}"),
            ));
        }
    };
    if owner == broker.id() {
        return Ok((owner, broker.node.host.clone(), broker.node.port));
    }
    broker
        .cluster
        .read(|s| {
            s.brokers
                .get(&skiff_common::BrokerId(owner))
                .and_then(|b| b.listeners.first())
                .map(|l| (l.host.clone(), i32::from(l.port)))
        })
        .map(|(h, p)| (owner, h, p))
        .ok_or_else(|| KafkaError::new(E::CoordinatorNotAvailable, "coordinator has no endpoint"))
}
