//! DeleteTopics, by name (v0-v5) or by topic id (v6).

use std::sync::Arc;

use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, ResponseKind, TopicName,
    delete_topics_response::DeletableTopicResult,
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};
use crate::topics;

pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, req: DeleteTopicsRequest) -> Admit {
    respond_after(async move {
        let mut wanted: Vec<(Option<String>, uuid::Uuid)> = req
            .topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect();
        wanted.extend(
            req.topics
                .iter()
                .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
        );
        let mut results = Vec::with_capacity(wanted.len());
        for (name, id) in wanted {
            let name = match name {
                Some(n) => Some(n),
                None => broker
                    .cluster
                    .read(|s| s.topic_by_id(id).map(|t| t.name.clone())),
            };
            let result = DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
                .with_topic_id(id);
            let Some(name) = name else {
                results.push(
                    result
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "Topic id does not exist",
                        ))),
                );
                continue;
            };
            results.push(match topics::delete_topic(&broker, &name).await {
                Ok(id) => result.with_topic_id(id),
                Err(e) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            });
        }
        ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(results))
    })
}
