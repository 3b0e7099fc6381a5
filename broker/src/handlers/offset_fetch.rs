//! OffsetFetch (v1-v9): committed offsets, metadata strings and leader
//! epochs; v8+ asks for several groups at once. A partition without a
//! committed offset answers offset -1.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    GroupId, OffsetFetchRequest, OffsetFetchResponse, ResponseKind, TopicName,
    offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    },
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::groups::records::OffsetValue;
use crate::router::{Admit, RequestContext, respond_after};

type Fetched = Result<Vec<(String, Vec<(i32, Option<OffsetValue>)>)>, i16>;

async fn fetch(
    broker: &Broker,
    group: &str,
    member: Option<(&str, i32)>,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Fetched {
    // v9+: a consumer-protocol member names itself and its epoch.
    if let Some((member, epoch)) = member {
        broker
            .groups
            .check_fetch_member(broker, group, Some(member), epoch)
            .await?;
    }
    broker.groups.fetch_offsets(broker, group, topics).await
}

fn fields(v: &Option<OffsetValue>) -> (i64, i32, StrBytes) {
    match v {
        Some(v) => (
            v.offset,
            v.leader_epoch,
            StrBytes::from_string(v.metadata.clone()),
        ),
        None => (-1, -1, StrBytes::from_static_str("")),
    }
}

pub(super) fn handle(broker: Arc<Broker>, ctx: RequestContext, req: OffsetFetchRequest) -> Admit {
    respond_after(async move {
        if ctx.api_version >= 8 {
            let mut groups = Vec::with_capacity(req.groups.len());
            for g in req.groups {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let out = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                let member = g
                    .member_id
                    .as_deref()
                    .filter(|m| !m.is_empty())
                    .map(|m| (m, g.member_epoch));
                groups.push(match fetch(&broker, &g.group_id.0, member, topics).await {
                    Err(code) => out.with_error_code(code),
                    Ok(ts) => out.with_topics(
                        ts.into_iter()
                            .map(|(t, ps)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(t)))
                                    .with_partitions(
                                        ps.into_iter()
                                            .map(|(p, v)| {
                                                let (o, e, m) = fields(&v);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(Some(m))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                });
            }
            return ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_groups(groups));
        }
        let GroupId(group) = req.group_id;
        let asked: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let resp = match fetch(&broker, &group, None, asked.clone()).await {
            Ok(ts) => OffsetFetchResponse::default().with_topics(
                ts.into_iter()
                    .map(|(t, ps)| topic_v0(t, ps.into_iter().map(|(p, v)| (p, v, 0))))
                    .collect(),
            ),
            // Before v2 the error is per partition only.
            Err(code) => OffsetFetchResponse::default()
                .with_error_code(code)
                .with_topics(
                    asked
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(t, ps)| topic_v0(t, ps.into_iter().map(|p| (p, None, code))))
                        .collect(),
                ),
        };
        ResponseKind::OffsetFetch(resp)
    })
}

fn topic_v0(
    topic: String,
    parts: impl Iterator<Item = (i32, Option<OffsetValue>, i16)>,
) -> OffsetFetchResponseTopic {
    OffsetFetchResponseTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic)))
        .with_partitions(
            parts
                .map(|(p, v, code)| {
                    let (o, e, m) = fields(&v);
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(o)
                        .with_committed_leader_epoch(e)
                        .with_metadata(Some(m))
                        .with_error_code(code)
                })
                .collect(),
        )
}
