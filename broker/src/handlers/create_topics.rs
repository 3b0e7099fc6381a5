//! CreateTopics: validate each topic with Kafka's rules and codes, then
//! create it (unless validate_only) and place its partitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, ResponseKind,
    create_topics_response::{CreatableTopicConfigs, CreatableTopicResult},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};
use crate::topics::{self, TopicSpec};

pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, req: CreateTopicsRequest) -> Admit {
    respond_after(async move {
        let mut results = Vec::with_capacity(req.topics.len());
        let mut seen = std::collections::HashSet::new();
        for t in req.topics {
            let name = t.name.0.to_string();
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            if !seen.insert(name.clone()) {
                results.push(with_error(
                    result,
                    crate::errors::KafkaError::new(
                        skiff_wire::kafka_protocol::error::ResponseError::InvalidRequest,
                        format!(
                            "Create topics request from client contains a duplicate topic {name}"
                        ),
                    ),
                ));
                continue;
            }
            let mut configs = BTreeMap::new();
            let mut null_value = None;
            for c in &t.configs {
                match &c.value {
                    Some(v) => {
                        configs.insert(c.name.to_string(), v.to_string());
                    }
                    None => null_value = Some(c.name.to_string()),
                }
            }
            let spec = TopicSpec {
                name: name.clone(),
                partitions: t.num_partitions,
                replication_factor: t.replication_factor,
                assignments: t
                    .assignments
                    .iter()
                    .map(|a| {
                        (
                            a.partition_index,
                            a.broker_ids.iter().map(|b| b.0).collect(),
                        )
                    })
                    .collect(),
                configs: configs.clone(),
            };
            let outcome = match null_value {
                Some(k) => Err(crate::errors::KafkaError::new(
                    skiff_wire::kafka_protocol::error::ResponseError::InvalidConfig,
                    format!("Null value not supported for topic configs: {k}"),
                )),
                None if req.validate_only => {
                    topics::validate_spec(&broker, &spec).map(|(p, rf)| (None, p, rf))
                }
                None => topics::create_topic(&broker, spec)
                    .await
                    .map(|c| (Some(c.topic_id), c.partitions, c.replication_factor)),
            };
            results.push(match outcome {
                Ok((id, partitions, rf)) => result
                    .with_topic_id(id.unwrap_or_default())
                    .with_num_partitions(partitions)
                    .with_replication_factor(rf)
                    .with_configs(Some(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfigs::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                                    .with_config_source(crate::handlers::configs::SOURCE_TOPIC)
                            })
                            .collect(),
                    )),
                Err(e) => with_error(result, e),
            });
        }
        ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results))
    })
}

fn with_error(r: CreatableTopicResult, e: crate::errors::KafkaError) -> CreatableTopicResult {
    r.with_error_code(e.code())
        .with_error_message(Some(StrBytes::from_string(e.message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}
