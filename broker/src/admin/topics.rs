//! `skiff admin topics ...`

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;
use skiff_wire::kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, MetadataRequest, RequestKind,
    ResponseKind, TopicName,
    create_partitions_request::CreatePartitionsTopic,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    describe_configs_request::DescribeConfigsResource,
    incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
    metadata_request::MetadataRequestTopic,
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use super::{AdminClient, AdminError, Output, error_name, table};

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        /// Topic name: letters, digits, '.', '_' and '-', at most 249 characters.
        name: String,
        /// Number of partitions (default: the broker's num_partitions).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replication factor to record (durability comes from the object store).
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// Topic config KEY=VALUE with Kafka's names (retention.ms, ...). Repeatable.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Describe topics (all when no name is given): partitions, leaders,
    /// epochs and config overrides.
    Describe { names: Vec<String> },
    /// Change topic configs.
    AlterConfig {
        name: String,
        /// Set KEY=VALUE. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove an override, back to the default. Repeatable.
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Grow a topic to a total number of partitions.
    AddPartitions {
        name: String,
        /// The new total partition count.
        #[arg(long)]
        total: i32,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn key_value(kv: &str) -> Result<(String, String), AdminError> {
    kv.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| AdminError::Usage(format!("expected KEY=VALUE, got {kv:?}")))
}

fn kafka_error(what: &str, code: i16, msg: Option<&StrBytes>) -> AdminError {
    let detail = msg.map(|m| format!(": {m}")).unwrap_or_default();
    AdminError::Kafka(format!("{what}: {}{detail}", error_name(code)))
}

pub(super) async fn run(
    bootstrap: &str,
    timeout: Duration,
    output: Output,
    cmd: TopicsCommand,
) -> Result<String, AdminError> {
    let mut c = AdminClient::connect(bootstrap, timeout).await?;
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    match cmd {
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs = configs
                .iter()
                .map(|kv| key_value(kv))
                .collect::<Result<Vec<_>, _>>()?;
            let topic = CreatableTopic::default()
                .with_name(TopicName(s(&name)))
                .with_num_partitions(partitions.unwrap_or(-1))
                .with_replication_factor(replication_factor.unwrap_or(-1))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(s(k))
                                .with_value(Some(s(v)))
                        })
                        .collect(),
                );
            let req = CreateTopicsRequest::default()
                .with_topics(vec![topic])
                .with_timeout_ms(timeout_ms);
            let ResponseKind::CreateTopics(resp) = c
                .call(ApiKey::CreateTopics, RequestKind::CreateTopics(req))
                .await?
            else {
                return Err(AdminError::Kafka("unexpected answer".into()));
            };
            let r = resp
                .topics
                .first()
                .ok_or_else(|| AdminError::Kafka("empty answer".into()))?;
            if r.error_code != 0 {
                return Err(kafka_error(
                    &format!("creating {name}"),
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
            Ok(match output {
                Output::Json => json!({"topic": name, "topic_id": r.topic_id.to_string(),
                    "partitions": r.num_partitions, "replication_factor": r.replication_factor})
                .to_string(),
                Output::Human => format!(
                    "Created topic {name} with {} partitions (id {}).",
                    r.num_partitions, r.topic_id
                ),
            })
        }
        TopicsCommand::List => {
            let topics = describe(&mut c, None).await?;
            Ok(match output {
                Output::Json => {
                    json!(topics.iter().map(|t| &t.name).collect::<Vec<_>>()).to_string()
                }
                Output::Human => topics
                    .iter()
                    .map(|t| t.name.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
            })
        }
        TopicsCommand::Describe { names } => {
            let wanted = (!names.is_empty()).then_some(names);
            let mut topics = describe(&mut c, wanted).await?;
            for t in topics.iter_mut().filter(|t| t.error.is_none()) {
                t.configs = topic_configs(&mut c, &t.name).await?;
            }
            Ok(match output {
                Output::Json => {
                    serde_json::to_string(&topics.iter().map(TopicView::json).collect::<Vec<_>>())
                        .unwrap_or_default()
                }
                Output::Human => topics
                    .iter()
                    .map(TopicView::human)
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            })
        }
        TopicsCommand::AlterConfig { name, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                return Err(AdminError::Usage(
                    "nothing to change: give --set KEY=VALUE or --delete KEY".into(),
                ));
            }
            let mut ops = Vec::new();
            for kv in &set {
                let (k, v) = key_value(kv)?;
                ops.push(
                    AlterableConfig::default()
                        .with_name(s(&k))
                        .with_config_operation(0)
                        .with_value(Some(s(&v))),
                );
            }
            for k in &delete {
                ops.push(
                    AlterableConfig::default()
                        .with_name(s(k))
                        .with_config_operation(1),
                );
            }
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(&name))
                    .with_configs(ops),
            ]);
            let ResponseKind::IncrementalAlterConfigs(resp) = c
                .call(
                    ApiKey::IncrementalAlterConfigs,
                    RequestKind::IncrementalAlterConfigs(req),
                )
                .await?
            else {
                return Err(AdminError::Kafka("unexpected answer".into()));
            };
            for r in &resp.responses {
                if r.error_code != 0 {
                    return Err(kafka_error(
                        &format!("altering {name}"),
                        r.error_code,
                        r.error_message.as_ref(),
                    ));
                }
            }
            Ok(match output {
                Output::Json => json!({"topic": name, "set": set, "deleted": delete}).to_string(),
                Output::Human => format!("Updated configs of {name}."),
            })
        }
        TopicsCommand::AddPartitions { name, total } => {
            let req = CreatePartitionsRequest::default()
                .with_topics(vec![
                    CreatePartitionsTopic::default()
                        .with_name(TopicName(s(&name)))
                        .with_count(total)
                        // null: the broker places the new partitions (an
                        // empty list would mean "no assignments given").
                        .with_assignments(None),
                ])
                .with_timeout_ms(timeout_ms);
            let ResponseKind::CreatePartitions(resp) = c
                .call(ApiKey::CreatePartitions, RequestKind::CreatePartitions(req))
                .await?
            else {
                return Err(AdminError::Kafka("unexpected answer".into()));
            };
            for r in &resp.results {
                if r.error_code != 0 {
                    return Err(kafka_error(
                        &format!("adding partitions to {name}"),
                        r.error_code,
                        r.error_message.as_ref(),
                    ));
                }
            }
            Ok(match output {
                Output::Json => json!({"topic": name, "partitions": total}).to_string(),
                Output::Human => format!("{name} now has {total} partitions."),
            })
        }
        TopicsCommand::Delete { names } => {
            let req = DeleteTopicsRequest::default()
                .with_topic_names(names.iter().map(|n| TopicName(s(n))).collect())
                .with_topics(
                    names
                        .iter()
                        .map(|n| {
                            skiff_wire::kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
                                .with_name(Some(TopicName(s(n))))
                        })
                        .collect(),
                )
                .with_timeout_ms(timeout_ms);
            let ResponseKind::DeleteTopics(resp) = c
                .call(ApiKey::DeleteTopics, RequestKind::DeleteTopics(req))
                .await?
            else {
                return Err(AdminError::Kafka("unexpected answer".into()));
            };
            let mut failed = Vec::new();
            for r in &resp.responses {
                let n = r.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                if r.error_code != 0 {
                    failed.push(format!("{n}: {}", error_name(r.error_code)));
                }
            }
            if !failed.is_empty() {
                return Err(AdminError::Kafka(format!(
                    "could not delete {}",
                    failed.join(", ")
                )));
            }
            Ok(match output {
                Output::Json => json!({"deleted": names}).to_string(),
                Output::Human => format!("Deleted {}.", names.join(", ")),
            })
        }
    }
}

/// One topic as `describe` shows it.
struct TopicView {
    name: String,
    id: String,
    error: Option<String>,
    partitions: Vec<(i32, i32, i32, Option<String>)>,
    configs: Vec<(String, String)>,
}

impl TopicView {
    fn json(&self) -> serde_json::Value {
        json!({
            "topic": self.name,
            "topic_id": self.id,
            "error": self.error,
            "partitions": self.partitions.iter().map(|(p, l, e, err)| json!({
                "partition": p, "leader": l, "leader_epoch": e, "error": err,
            })).collect::<Vec<_>>(),
            "configs": self.configs.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        })
    }

    fn human(&self) -> String {
        if let Some(e) = &self.error {
            return format!("Topic: {}  error: {e}", self.name);
        }
        let configs = if self.configs.is_empty() {
            "(defaults)".to_string()
        } else {
            self.configs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let rows: Vec<Vec<String>> = self
            .partitions
            .iter()
            .map(|(p, l, e, err)| {
                vec![
                    p.to_string(),
                    l.to_string(),
                    e.to_string(),
                    err.clone().unwrap_or_default(),
                ]
            })
            .collect();
        format!(
            "Topic: {}  id: {}  partitions: {}  configs: {configs}\n{}",
            self.name,
            self.id,
            self.partitions.len(),
            table(&["PARTITION", "LEADER", "EPOCH", "ERROR"], &rows)
        )
    }
}

async fn describe(
    c: &mut AdminClient,
    names: Option<Vec<String>>,
) -> Result<Vec<TopicView>, AdminError> {
    let req = MetadataRequest::default()
        .with_topics(names.map(|n| {
            n.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(s(t)))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(md) = c.call(ApiKey::Metadata, RequestKind::Metadata(req)).await?
    else {
        return Err(AdminError::Kafka("unexpected answer".into()));
    };
    let mut out: Vec<TopicView> = md
        .topics
        .into_iter()
        .map(|t| TopicView {
            name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
            id: t.topic_id.to_string(),
            error: (t.error_code != 0).then(|| error_name(t.error_code)),
            partitions: t
                .partitions
                .into_iter()
                .map(|p| {
                    (
                        p.partition_index,
                        p.leader_id.0,
                        p.leader_epoch,
                        (p.error_code != 0).then(|| error_name(p.error_code)),
                    )
                })
                .collect(),
            configs: vec![],
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    for t in &mut out {
        t.partitions.sort();
    }
    Ok(out)
}

/// A topic's overrides (configs not at their default).
async fn topic_configs(
    c: &mut AdminClient,
    name: &str,
) -> Result<Vec<(String, String)>, AdminError> {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(name)),
    ]);
    let ResponseKind::DescribeConfigs(resp) = c
        .call(ApiKey::DescribeConfigs, RequestKind::DescribeConfigs(req))
        .await?
    else {
        return Err(AdminError::Kafka("unexpected answer".into()));
    };
    let mut out = Vec::new();
    for r in resp.results {
        if r.error_code != 0 {
            return Err(kafka_error(
                &format!("describing configs of {name}"),
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
        for e in r.configs {
            // 1 = set on the topic (DYNAMIC_TOPIC_CONFIG)
            if e.config_source == 1 {
                out.push((
                    e.name.to_string(),
                    e.value.map(|v| v.to_string()).unwrap_or_default(),
                ));
            }
        }
    }
    Ok(out)
}
