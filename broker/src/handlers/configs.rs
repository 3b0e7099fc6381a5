//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics
//! (Kafka's names, defaults and sources) and brokers (read-only: broker
//! settings come from the config file, environment and flags).

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind,
    alter_configs_response::AlterConfigsResourceResponse,
    describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
    },
    incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult,
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::errors::KafkaError;
use crate::router::{Admit, RequestContext, respond_after};
use crate::topic_config::{self, ConfigType};
use crate::topics;

/// Kafka's ConfigResource types.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;
/// Kafka's ConfigSource values.
pub(crate) const SOURCE_TOPIC: i8 = 1;
pub(crate) const SOURCE_STATIC_BROKER: i8 = 4;
pub(crate) const SOURCE_DEFAULT: i8 = 5;

struct Entry {
    name: String,
    value: Option<String>,
    source: i8,
    kind: ConfigType,
    doc: &'static str,
    read_only: bool,
}

pub(super) fn describe(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeConfigsRequest,
) -> Admit {
    respond_after(async move {
        let results = req
            .resources
            .into_iter()
            .map(|r| {
                let name = r.resource_name.to_string();
                // Null or empty asks for every config, as in Kafka.
                let keys: Option<Vec<String>> = r
                    .configuration_keys
                    .filter(|k| !k.is_empty())
                    .map(|k| k.iter().map(|s| s.to_string()).collect());
                let entries = match r.resource_type {
                    RESOURCE_TOPIC => topic_entries(&broker, &name),
                    RESOURCE_BROKER if name.is_empty() || name == broker.id().to_string() => {
                        Ok(broker_entries(&broker.config, broker.id()))
                    }
                    RESOURCE_BROKER => Err(KafkaError::new(
                        ResponseError::InvalidRequest,
                        format!(
                            "Unexpected broker id, expected {} but received {name}",
                            broker.id()
                        ),
                    )),
                    t => Err(KafkaError::new(
                        ResponseError::InvalidRequest,
                        format!("Unsupported resource type {t}"),
                    )),
                };
                let result = DescribeConfigsResult::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name);
                match entries {
                    Ok(entries) => result.with_configs(
                        entries
                            .into_iter()
                            .filter(|e| keys.as_ref().is_none_or(|k| k.contains(&e.name)))
                            .map(|e| {
                                entry_result(
                                    e,
                                    req.include_synonyms,
                                    req.include_documentation,
                                    ctx.api_version,
                                )
                            })
                            .collect(),
                    ),
                    Err(e) => result
                        .with_error_code(e.code())
                        .with_error_message(Some(StrBytes::from_string(e.message))),
                }
            })
            .collect();
        ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results))
    })
}

fn entry_result(
    e: Entry,
    synonyms: bool,
    docs: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let value = e.value.map(StrBytes::from_string);
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(e.name.clone()))
        .with_value(value.clone())
        .with_read_only(e.read_only)
        .with_config_source(e.source)
        .with_is_sensitive(false)
        .with_config_type(e.kind.code());
    if synonyms && version >= 1 {
        r = r.with_synonyms(vec![
            DescribeConfigsSynonym::default()
                .with_name(StrBytes::from_string(e.name))
                .with_value(value)
                .with_source(e.source),
        ]);
    }
    if docs {
        r = r.with_documentation(Some(StrBytes::from_static_str(e.doc)));
    }
    r
}

fn topic_entries(broker: &Broker, topic: &str) -> Result<Vec<Entry>, KafkaError> {
    let overrides: BTreeMap<String, String> = broker
        .cluster
        .read(|s| s.topics.get(topic).map(|t| t.configs.clone()))
        .ok_or_else(|| {
            KafkaError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic {topic} does not exist"),
            )
        })?;
    Ok(topic_config::ENFORCED
        .iter()
        .chain(topic_config::NO_EFFECT)
        .map(|d| {
            let (value, source) = match overrides.get(d.name) {
                Some(v) => (Some(v.clone()), SOURCE_TOPIC),
                None => (
                    topic_config::default_value(d.name, &broker.config),
                    SOURCE_DEFAULT,
                ),
            };
            Entry {
                name: d.name.to_string(),
                value,
                source,
                kind: d.kind,
                doc: d.doc,
                read_only: false,
            }
        })
        .collect())
}

/// Broker settings under Kafka's names (read-only).
fn broker_entries(c: &BrokerConfig, id: i32) -> Vec<Entry> {
    let (host, port) = c.advertised().unwrap_or_default();
    let d = BrokerConfig::default();
    let mut out = Vec::new();
    let mut add =
        |name: &str, value: String, default: String, kind: ConfigType, doc: &'static str| {
            out.push(Entry {
                name: name.to_string(),
                source: if value == default {
                    SOURCE_DEFAULT
                } else {
                    SOURCE_STATIC_BROKER
                },
                value: Some(value),
                kind,
                doc,
                read_only: true,
            })
        };
    add(
        "node.id",
        id.to_string(),
        d.node_id.to_string(),
        ConfigType::Int,
        "This broker's id.",
    );
    add(
        "broker.id",
        id.to_string(),
        d.node_id.to_string(),
        ConfigType::Int,
        "This broker's id.",
    );
    add(
        "listeners",
        format!("PLAINTEXT://{}", c.listen),
        format!("PLAINTEXT://{}", d.listen),
        ConfigType::List,
        "Kafka listener.",
    );
    add(
        "advertised.listeners",
        format!("PLAINTEXT://{host}:{port}"),
        String::new(),
        ConfigType::List,
        "Listener advertised to clients.",
    );
    add(
        "auto.create.topics.enable",
        c.auto_create_topics_enable.to_string(),
        d.auto_create_topics_enable.to_string(),
        ConfigType::Boolean,
        "Create unknown topics on metadata requests and produce.",
    );
    add(
        "num.partitions",
        c.num_partitions.to_string(),
        d.num_partitions.to_string(),
        ConfigType::Int,
        "Default partition count.",
    );
    add(
        "default.replication.factor",
        "1".into(),
        "1".into(),
        ConfigType::Int,
        "Replication factor reported for new topics; durability comes from the object store.",
    );
    add(
        "socket.request.max.bytes",
        c.socket_request_max_bytes.to_string(),
        d.socket_request_max_bytes.to_string(),
        ConfigType::Int,
        "Largest request accepted.",
    );
    add(
        "message.max.bytes",
        c.message_max_bytes.to_string(),
        d.message_max_bytes.to_string(),
        ConfigType::Int,
        "Default largest record batch.",
    );
    add(
        "log.retention.ms",
        c.log_retention_ms.to_string(),
        d.log_retention_ms.to_string(),
        ConfigType::Long,
        "Default retention time.",
    );
    add(
        "log.retention.bytes",
        c.log_retention_bytes.to_string(),
        d.log_retention_bytes.to_string(),
        ConfigType::Long,
        "Default retention size per partition.",
    );
    add(
        "log.retention.check.interval.ms",
        c.log_retention_check_interval.as_millis().to_string(),
        d.log_retention_check_interval.as_millis().to_string(),
        ConfigType::Long,
        "How often retention runs.",
    );
    out
}

fn resource_error(resource_type: i8, name: &str) -> Option<KafkaError> {
    match resource_type {
        RESOURCE_TOPIC => None,
        RESOURCE_BROKER => Some(KafkaError::new(
            ResponseError::InvalidRequest,
            format!(
                "Broker {name}: broker settings are static (config file, SKIFF_* environment, flags) and cannot be altered at runtime"
            ),
        )),
        t => Some(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("Unsupported resource type {t}"),
        )),
    }
}

pub(super) fn alter(broker: Arc<Broker>, _ctx: RequestContext, req: AlterConfigsRequest) -> Admit {
    respond_after(async move {
        let mut responses = Vec::new();
        for r in req.resources {
            let name = r.resource_name.to_string();
            let outcome = match resource_error(r.resource_type, &name) {
                Some(e) => Err(e),
                None => {
                    // AlterConfigs replaces the whole set of overrides.
                    let mut set = BTreeMap::new();
                    for c in &r.configs {
                        if let Some(v) = &c.value {
                            set.insert(c.name.to_string(), v.to_string());
                        }
                    }
                    let current: Vec<String> = broker
                        .cluster
                        .read(|s| {
                            s.topics
                                .get(&name)
                                .map(|t| t.configs.keys().cloned().collect())
                        })
                        .unwrap_or_default();
                    let delete = current
                        .into_iter()
                        .filter(|k| !set.contains_key(k))
                        .collect();
                    topics::alter_configs(&broker, &name, set, delete, req.validate_only).await
                }
            };
            let mut resp = AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            if let Err(e) = outcome {
                resp = resp
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(e.message)));
            }
            responses.push(resp);
        }
        ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
    })
}

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub(super) fn incremental_alter(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> Admit {
    respond_after(async move {
        let mut responses = Vec::new();
        for r in req.resources {
            let name = r.resource_name.to_string();
            let outcome = match resource_error(r.resource_type, &name) {
                Some(e) => Err(e),
                None => {
                    let current: BTreeMap<String, String> = broker
                        .cluster
                        .read(|s| s.topics.get(&name).map(|t| t.configs.clone()))
                        .unwrap_or_default();
                    plan_incremental(&broker, &current, &r.configs)
                }
            };
            let outcome = match outcome {
                Ok((set, delete)) => {
                    topics::alter_configs(&broker, &name, set, delete, req.validate_only).await
                }
                Err(e) => Err(e),
            };
            let mut resp = IncrementalResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            if let Err(e) = outcome {
                resp = resp
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(e.message)));
            }
            responses.push(resp);
        }
        ResponseKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsResponse::default().with_responses(responses),
        )
    })
}

type Plan = (BTreeMap<String, String>, Vec<String>);

fn plan_incremental(
    broker: &Broker,
    current: &BTreeMap<String, String>,
    ops: &[skiff_wire::kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<Plan, KafkaError> {
    let mut set = BTreeMap::new();
    let mut delete = Vec::new();
    for op in ops {
        let key = op.name.to_string();
        let value = op.value.as_ref().map(|v| v.to_string());
        match op.config_operation {
            OP_SET => {
                let v = value.ok_or_else(|| {
                    KafkaError::new(
                        ResponseError::InvalidRequest,
                        format!("Null value for SET of {key}"),
                    )
                })?;
                set.insert(key, v);
            }
            OP_DELETE => delete.push(key),
            OP_APPEND | OP_SUBTRACT => {
                let def = topic_config::definition(&key).ok_or_else(|| {
                    KafkaError::from(topic_config::TopicConfigError::Unknown(key.clone()))
                })?;
                if def.kind != ConfigType::List {
                    return Err(KafkaError::new(
                        ResponseError::InvalidConfig,
                        format!(
                            "Config value append/subtract is not allowed for config {key}, it is not a list"
                        ),
                    ));
                }
                let base = current
                    .get(&key)
                    .cloned()
                    .or_else(|| topic_config::default_value(&key, &broker.config))
                    .unwrap_or_default();
                let mut items: Vec<String> = base
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                let given: Vec<String> = value
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if op.config_operation == OP_APPEND {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                set.insert(key, items.join(","));
            }
            other => {
                return Err(KafkaError::new(
                    ResponseError::InvalidRequest,
                    format!("Unknown config operation {other}"),
                ));
            }
        }
    }
    Ok((set, delete))
}
