//! Metadata: brokers, the controller, and topics with their partitions'
//! leaders and epochs. Unknown topics are auto-created when both the broker
//! (`auto_create_topics_enable`) and the request allow it.

use std::sync::Arc;

use skiff_metadata::command::PartitionState;
use skiff_metadata::state::{ClusterState, TopicInfo};
use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, ResponseKind, TopicName,
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};
use crate::topic_config::validate_topic_name;
use crate::topics;

pub(super) fn handle(broker: Arc<Broker>, ctx: RequestContext, req: MetadataRequest) -> Admit {
    respond_after(async move { ResponseKind::Metadata(metadata(&broker, &ctx, req).await) })
}

/// Kafka's "authorized operations not requested" marker.
const OPS_NOT_REQUESTED: i32 = i32::MIN;

enum Wanted {
    Name(String),
    Id(Uuid),
}

async fn metadata(broker: &Broker, ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    // v0: an empty list means all topics; v1+: null means all.
    let wanted: Option<Vec<Wanted>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && ctx.api_version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .map(|t| match t.name {
                    Some(n) => Wanted::Name(n.0.to_string()),
                    None => Wanted::Id(t.topic_id),
                })
                .collect(),
        ),
    };
    let allow_auto = ctx.api_version < 4 || req.allow_auto_topic_creation;
    let mut topics = Vec::new();
    match wanted {
        None => {
            let all: Vec<MetadataResponseTopic> = broker
                .cluster
                .read(|s| s.topics.values().map(|t| describe_topic(s, t)).collect());
            topics = all;
        }
        Some(list) => {
            for w in list {
                topics.push(match w {
                    Wanted::Id(id) => broker.cluster.read(|s| match s.topic_by_id(id) {
                        Some(t) => describe_topic(s, t),
                        None => error_topic(None, id, ResponseError::UnknownTopicId),
                    }),
                    Wanted::Name(name) => named_topic(broker, &name, allow_auto).await,
                });
            }
        }
    }
    let (brokers, cluster_id) = broker.cluster.read(|s| {
        let brokers = s
            .brokers
            .values()
            .filter(|b| b.state != skiff_metadata::command::BrokerState::Fenced)
            .filter_map(|b| {
                let l = b.listeners.first()?;
                Some(
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id.0))
                        .with_host(StrBytes::from_string(l.host.clone()))
                        .with_port(i32::from(l.port))
                        .with_rack(b.rack.clone().map(StrBytes::from_string)),
                )
            })
            .collect::<Vec<_>>();
        (brokers, s.cluster_id.map(|c| c.to_string()))
    });
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(cluster_id.map(StrBytes::from_string))
        .with_controller_id(BrokerId(broker.cluster.controller_id()))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPS_NOT_REQUESTED)
}

async fn named_topic(broker: &Broker, name: &str, allow_auto: bool) -> MetadataResponseTopic {
    if let Some(t) = broker
        .cluster
        .read(|s| s.topics.get(name).map(|t| describe_topic(s, t)))
    {
        return t;
    }
    if validate_topic_name(name).is_err() {
        return error_topic(
            Some(name),
            Uuid::nil(),
            ResponseError::InvalidTopicException,
        );
    }
    if allow_auto {
        match topics::auto_create(broker, name).await {
            Ok(true) => {
                if let Some(t) = broker
                    .cluster
                    .read(|s| s.topics.get(name).map(|t| describe_topic(s, t)))
                {
                    return t;
                }
                return error_topic(Some(name), Uuid::nil(), ResponseError::LeaderNotAvailable);
            }
            Ok(false) => {}
            Err(e) => return error_topic(Some(name), Uuid::nil(), e.code),
        }
    }
    error_topic(
        Some(name),
        Uuid::nil(),
        ResponseError::UnknownTopicOrPartition,
    )
}

fn error_topic(name: Option<&str>, id: Uuid, code: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))))
        .with_topic_id(id)
        .with_topic_authorized_operations(OPS_NOT_REQUESTED)
}

/// A topic's metadata from the cluster state.
pub(crate) fn describe_topic(_s: &ClusterState, t: &TopicInfo) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let leader = match (p.state, p.owner) {
                (PartitionState::Offline, _) | (_, None) => None,
                (_, Some(owner)) => Some(owner.0),
            };
            let replicas: Vec<BrokerId> = p.owner.map(|o| BrokerId(o.0)).into_iter().collect();
            MetadataResponsePartition::default()
                .with_error_code(if leader.is_some() {
                    0
                } else {
                    ResponseError::LeaderNotAvailable.code()
                })
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                .with_leader_epoch(i32::try_from(p.epoch.0).unwrap_or(i32::MAX))
                .with_isr_nodes(if leader.is_some() {
                    replicas.clone()
                } else {
                    vec![]
                })
                .with_replica_nodes(replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(topics::is_internal(&t.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPS_NOT_REQUESTED)
}
