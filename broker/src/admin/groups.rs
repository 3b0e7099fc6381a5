//! `skiff admin groups list | describe | reset-offsets | delete`.
//!
//! `list` and `describe` show the group type (`classic`, or `consumer` for
//! KIP-848 groups, whose members' epochs and current / target assignments
//! come from ConsumerGroupDescribe). `describe` shows members with their assigned partitions and, per
//! partition with a committed offset, the log end offset and the lag (end
//! minus committed). `reset-offsets` commits new positions from outside the
//! group, which the coordinator allows only while the group has no members
//! (as Kafka's tool). The bootstrap broker is asked as the coordinator
//! (single-node brokers; multi-node lookup via FindCoordinator is to come).

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Subcommand;
use serde_json::json;
use skiff_wire::kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest,
    GroupId, ListGroupsRequest, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest,
    RequestKind, ResponseKind, TopicName,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::OffsetFetchRequestGroup,
};

use super::{AdminClient, AdminError, Output, failed, s, table, unexpected};
use crate::groups::records::assignment_partitions;

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups with their state.
    List,
    /// Describe a group: members, assignments, committed offsets and lag.
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no members).
    ResetOffsets {
        group: String,
        /// Topics to reset (default: every topic with committed offsets).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// To the log start offset.
        #[arg(long, conflicts_with_all = ["to_latest", "to_offset"])]
        to_earliest: bool,
        /// To the log end offset.
        #[arg(long, conflicts_with = "to_offset")]
        to_latest: bool,
        /// To this offset.
        #[arg(long)]
        to_offset: Option<i64>,
    },
    /// Delete groups (only groups without members).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

/// One partition's committed offset and lag.
#[derive(Debug, Clone)]
struct Position {
    topic: String,
    partition: i32,
    committed: i64,
    end: i64,
    member: String,
}

pub(super) async fn run(
    bootstrap: &str,
    timeout: Duration,
    output: Output,
    cmd: GroupsCommand,
) -> Result<String, AdminError> {
    let mut c = AdminClient::connect(bootstrap, timeout).await?;
    match cmd {
        GroupsCommand::List => {
            let ResponseKind::ListGroups(resp) = c
                .call(
                    ApiKey::ListGroups,
                    RequestKind::ListGroups(ListGroupsRequest::default()),
                )
                .await?
            else {
                return Err(unexpected());
            };
            if resp.error_code != 0 {
                return Err(failed("listing groups", resp.error_code));
            }
            let rows: Vec<Vec<String>> = resp
                .groups
                .iter()
                .map(|g| {
                    vec![
                        g.group_id.0.to_string(),
                        g.group_state.to_string(),
                        g.protocol_type.to_string(),
                        if g.group_type.is_empty() {
                            "classic".to_string()
                        } else {
                            g.group_type.to_string()
                        },
                    ]
                })
                .collect();
            Ok(match output {
                Output::Json => serde_json::Value::Array(
                    rows.iter()
                        .map(|r| {
                            json!({"group": r[0], "state": r[1], "protocol_type": r[2], "type": r[3]})
                        })
                        .collect(),
                )
                .to_string(),
                Output::Human => table(&["GROUP", "STATE", "PROTOCOL-TYPE", "TYPE"], &rows),
            })
        }
        GroupsCommand::Describe { group } => describe(&mut c, &group, output).await,
        GroupsCommand::ResetOffsets {
            group,
            topics,
            to_earliest,
            to_latest,
            to_offset,
        } => {
            let target = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => -2,
                (_, true, _) => -1,
                (_, _, Some(o)) if o >= 0 => o,
                _ => {
                    return Err(AdminError::Usage(
                        "give one of --to-earliest, --to-latest, --to-offset N (N >= 0)".into(),
                    ));
                }
            };
            let mut parts: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            if topics.is_empty() {
                for p in committed(&mut c, &group).await? {
                    parts.entry(p.0).or_default().push(p.1);
                }
            } else {
                for t in topics {
                    let n = partition_count(&mut c, &t).await?;
                    parts.insert(t, (0..n).collect());
                }
            }
            let mut new_offsets = Vec::new();
            for (t, ps) in &parts {
                for p in ps {
                    let o = if target >= 0 {
                        target
                    } else {
                        list_offset(&mut c, t, *p, target).await?
                    };
                    new_offsets.push((t.clone(), *p, o));
                }
            }
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id_or_member_epoch(-1)
                .with_retention_time_ms(-1)
                .with_topics(
                    parts
                        .keys()
                        .map(|t| {
                            OffsetCommitRequestTopic::default()
                                .with_name(TopicName(s(t)))
                                .with_partitions(
                                    new_offsets
                                        .iter()
                                        .filter(|(x, _, _)| x == t)
                                        .map(|(_, p, o)| {
                                            OffsetCommitRequestPartition::default()
                                                .with_partition_index(*p)
                                                .with_committed_offset(*o)
                                                .with_committed_leader_epoch(-1)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let ResponseKind::OffsetCommit(resp) = c
                .call(ApiKey::OffsetCommit, RequestKind::OffsetCommit(req))
                .await?
            else {
                return Err(unexpected());
            };
            for t in &resp.topics {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        return Err(failed(
                            &format!("resetting {group} {}-{}", &*t.name.0, p.partition_index),
                            p.error_code,
                        ));
                    }
                }
            }
            let rows: Vec<Vec<String>> = new_offsets
                .iter()
                .map(|(t, p, o)| vec![t.clone(), p.to_string(), o.to_string()])
                .collect();
            Ok(match output {
                Output::Json => serde_json::Value::Array(
                    new_offsets
                        .iter()
                        .map(|(t, p, o)| json!({"topic": t, "partition": p, "offset": o}))
                        .collect(),
                )
                .to_string(),
                Output::Human => table(&["TOPIC", "PARTITION", "NEW-OFFSET"], &rows),
            })
        }
        GroupsCommand::Delete { groups } => {
            let req = DeleteGroupsRequest::default()
                .with_groups_names(groups.iter().map(|g| GroupId(s(g))).collect());
            let ResponseKind::DeleteGroups(resp) = c
                .call(ApiKey::DeleteGroups, RequestKind::DeleteGroups(req))
                .await?
            else {
                return Err(unexpected());
            };
            for r in &resp.results {
                if r.error_code != 0 {
                    return Err(failed(
                        &format!("deleting {}", &*r.group_id.0),
                        r.error_code,
                    ));
                }
            }
            Ok(match output {
                Output::Json => json!({"deleted": groups}).to_string(),
                Output::Human => format!("deleted {}", groups.join(", ")),
            })
        }
    }
}

/// Committed offsets of a group: (topic, partition, offset).
async fn committed(
    c: &mut AdminClient,
    group: &str,
) -> Result<Vec<(String, i32, i64)>, AdminError> {
    // The admin client speaks v8+ (batched groups) to this broker.
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None),
    ]);
    let ResponseKind::OffsetFetch(resp) = c
        .call(ApiKey::OffsetFetch, RequestKind::OffsetFetch(req))
        .await?
    else {
        return Err(unexpected());
    };
    let mut out = Vec::new();
    if let Some(g) = resp.groups.first() {
        if g.error_code != 0 {
            return Err(failed(&format!("offsets of {group}"), g.error_code));
        }
        for t in &g.topics {
            for p in &t.partitions {
                out.push((t.name.0.to_string(), p.partition_index, p.committed_offset));
            }
        }
    } else {
        if resp.error_code != 0 {
            return Err(failed(&format!("offsets of {group}"), resp.error_code));
        }
        for t in &resp.topics {
            for p in &t.partitions {
                out.push((t.name.0.to_string(), p.partition_index, p.committed_offset));
            }
        }
    }
    Ok(out)
}

/// ListOffsets for one partition (-1 latest, -2 earliest).
async fn list_offset(
    c: &mut AdminClient,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<i64, AdminError> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(timestamp),
                ]),
        ]);
    let ResponseKind::ListOffsets(resp) = c
        .call(ApiKey::ListOffsets, RequestKind::ListOffsets(req))
        .await?
    else {
        return Err(unexpected());
    };
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(unexpected)?;
    if p.error_code != 0 {
        return Err(failed(
            &format!("offsets of {topic}-{partition}"),
            p.error_code,
        ));
    }
    Ok(p.offset)
}

async fn partition_count(c: &mut AdminClient, topic: &str) -> Result<i32, AdminError> {
    use skiff_wire::kafka_protocol::messages::{
        MetadataRequest, metadata_request::MetadataRequestTopic,
    };
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s(topic)))),
        ]))
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(resp) = c.call(ApiKey::Metadata, RequestKind::Metadata(req)).await?
    else {
        return Err(unexpected());
    };
    let t = resp.topics.first().ok_or_else(unexpected)?;
    if t.error_code != 0 {
        return Err(failed(&format!("topic {topic}"), t.error_code));
    }
    Ok(t.partitions.len() as i32)
}

async fn describe(c: &mut AdminClient, group: &str, output: Output) -> Result<String, AdminError> {
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let ResponseKind::DescribeGroups(resp) = c
        .call(ApiKey::DescribeGroups, RequestKind::DescribeGroups(req))
        .await?
    else {
        return Err(unexpected());
    };
    let d = resp.groups.first().ok_or_else(unexpected)?;
    if d.error_code != 0 {
        return Err(failed(&format!("describing {group}"), d.error_code));
    }
    let consumer = consumer_describe(c, group).await;
    // Who owns which partition (consumer protocol assignments).
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut members = Vec::new();
    for m in &d.members {
        let parts = assignment_partitions(&m.member_assignment).unwrap_or_default();
        for (t, ps) in &parts {
            for p in ps {
                owner.insert((t.clone(), *p), m.member_id.to_string());
            }
        }
        let epoch = consumer
            .as_ref()
            .and_then(|g| g.members.iter().find(|cm| cm.member_id == m.member_id))
            .map(|cm| cm.member_epoch);
        members.push(json!({
            "member_id": m.member_id.to_string(),
            "member_epoch": epoch,
            "instance_id": m.group_instance_id.as_ref().map(|s| s.to_string()),
            "client_id": m.client_id.to_string(),
            "host": m.client_host.to_string(),
            "assignment": parts.iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>(),
        }));
    }
    let mut positions = Vec::new();
    for (topic, partition, committed) in committed(c, group).await? {
        let end = list_offset(c, &topic, partition, -1).await?;
        let member = owner
            .get(&(topic.clone(), partition))
            .cloned()
            .unwrap_or_default();
        positions.push(Position {
            topic,
            partition,
            committed,
            end,
            member,
        });
    }
    let lag = |p: &Position| {
        if p.committed >= 0 {
            (p.end - p.committed).max(0)
        } else {
            p.end
        }
    };
    Ok(match output {
        Output::Json => json!({
            "group": group,
            "state": d.group_state.to_string(),
            "type": if consumer.is_some() { "consumer" } else { "classic" },
            "group_epoch": consumer.as_ref().map(|g| g.group_epoch),
            "assignment_epoch": consumer.as_ref().map(|g| g.assignment_epoch),
            "protocol_type": d.protocol_type.to_string(),
            "protocol": d.protocol_data.to_string(),
            "members": members,
            "offsets": positions.iter().map(|p| json!({
                "topic": p.topic, "partition": p.partition, "committed": p.committed,
                "end": p.end, "lag": lag(p), "member": p.member,
            })).collect::<Vec<_>>(),
        })
        .to_string(),
        Output::Human => {
            let mut head = match &consumer {
                Some(g) => format!(
                    "group {group} (consumer): state {}, group epoch {}, assignment epoch {}, assignor {}, {} member(s)\n",
                    g.group_state,
                    g.group_epoch,
                    g.assignment_epoch,
                    g.assignor_name,
                    g.members.len()
                ),
                None => format!(
                    "group {group} (classic): state {}, protocol {}/{}, {} member(s)\n",
                    d.group_state,
                    d.protocol_type,
                    d.protocol_data,
                    d.members.len()
                ),
            };
            if let Some(g) = &consumer {
                for m in &g.members {
                    let parts = |a: &skiff_wire::kafka_protocol::messages::consumer_group_describe_response::Assignment| {
                        a.topic_partitions
                            .iter()
                            .map(|t| format!("{}{:?}", &*t.topic_name.0, t.partitions))
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    head += &format!(
                        "  member {} epoch {}: assigned {} target {}\n",
                        m.member_id,
                        m.member_epoch,
                        parts(&m.assignment),
                        parts(&m.target_assignment)
                    );
                }
            }
            let rows: Vec<Vec<String>> = positions
                .iter()
                .map(|p| {
                    vec![
                        p.topic.clone(),
                        p.partition.to_string(),
                        p.committed.to_string(),
                        p.end.to_string(),
                        lag(p).to_string(),
                        p.member.clone(),
                    ]
                })
                .collect();
            head + &table(
                &["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"],
                &rows,
            )
        }
    })
}

/// ConsumerGroupDescribe of `group`, if the broker knows it as a
/// consumer-protocol group.
async fn consumer_describe(
    c: &mut AdminClient,
    group: &str,
) -> Option<skiff_wire::kafka_protocol::messages::consumer_group_describe_response::DescribedGroup>
{
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
    match c
        .call(
            ApiKey::ConsumerGroupDescribe,
            RequestKind::ConsumerGroupDescribe(req),
        )
        .await
    {
        Ok(ResponseKind::ConsumerGroupDescribe(resp)) => {
            resp.groups.into_iter().next().filter(|g| g.error_code == 0)
        }
        _ => None,
    }
}
