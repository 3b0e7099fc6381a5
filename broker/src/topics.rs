//! Topic administration shared by CreateTopics, auto-creation (Metadata and
//! Produce), DeleteTopics, CreatePartitions and the config APIs: validation
//! with Kafka's rules and error codes, then the metadata commands, then
//! placing new partitions on live brokers.

use std::collections::BTreeMap;

use skiff_common::{BrokerId, StreamEpoch};
use skiff_metadata::command::{BrokerState, Command, Output};
use skiff_metadata::state::ClusterState;
use skiff_wire::kafka_protocol::error::ResponseError;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::broker::Broker;
use crate::cluster::now_ms;
use crate::errors::KafkaError;
use crate::topic_config::{self, validate_topic_name};

/// Internal topics (group offsets, transaction state).
pub fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

/// What CreateTopics (or auto-creation) asks for.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    /// -1: the broker default (`num_partitions`).
    pub partitions: i32,
    /// -1: the default (1). Accepted and reported; durability comes from the
    /// object store, so every partition has exactly one live replica.
    pub replication_factor: i16,
    /// Manual placement: partition -> broker ids (the first one owns it).
    pub assignments: BTreeMap<i32, Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

/// The outcome of a successful creation.
#[derive(Debug, Clone)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
}

fn err(code: ResponseError, msg: impl Into<String>) -> KafkaError {
    KafkaError::new(code, msg)
}

/// Check a spec against Kafka's rules without changing anything.
pub fn validate_spec(broker: &Broker, spec: &TopicSpec) -> Result<(i32, i16), KafkaError> {
    validate_topic_name(&spec.name).map_err(|m| err(ResponseError::InvalidTopicException, m))?;
    let partitions = if !spec.assignments.is_empty() {
        if spec.partitions != -1 || spec.replication_factor != -1 {
            return Err(err(
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let n = spec.assignments.len() as i32;
        let live = live_brokers(broker);
        for (i, (p, replicas)) in spec.assignments.iter().enumerate() {
            if *p != i as i32 {
                return Err(err(
                    ResponseError::InvalidReplicaAssignment,
                    "Partitions must be numbered 0..n-1 without gaps",
                ));
            }
            if replicas.is_empty() || replicas.iter().any(|b| !live.contains(&BrokerId(*b))) {
                return Err(err(
                    ResponseError::InvalidReplicaAssignment,
                    format!("Partition {p}: replicas {replicas:?} name a broker that is not live"),
                ));
            }
        }
        n
    } else if spec.partitions == -1 {
        broker.config.num_partitions
    } else if spec.partitions < 1 {
        return Err(err(
            ResponseError::InvalidPartitions,
            format!(
                "Number of partitions was set to an invalid non-positive value ({}).",
                spec.partitions
            ),
        ));
    } else {
        spec.partitions
    };
    if partitions as u32 > skiff_metadata::command::limits::MAX_PARTITIONS {
        return Err(err(
            ResponseError::InvalidPartitions,
            format!(
                "Number of partitions {partitions} is above the limit of {}",
                skiff_metadata::command::limits::MAX_PARTITIONS
            ),
        ));
    }
    let rf = match spec.replication_factor {
        -1 => 1,
        rf if rf < 1 => {
            return Err(err(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Replication factor must be larger than 0, or -1 to use the default value (was {rf})."
                ),
            ));
        }
        rf => rf,
    };
    topic_config::validate_all(spec.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    if broker.cluster.read(|s| s.topics.contains_key(&spec.name)) {
        return Err(err(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", spec.name),
        ));
    }
    Ok((partitions, rf))
}

/// Active brokers, in id order.
pub fn live_brokers(broker: &Broker) -> Vec<BrokerId> {
    broker.cluster.read(|s| {
        s.brokers
            .values()
            .filter(|b| b.state == BrokerState::Active)
            .map(|b| b.id)
            .collect()
    })
}

/// Validate and create a topic, then place its partitions.
pub async fn create_topic(broker: &Broker, spec: TopicSpec) -> Result<CreatedTopic, KafkaError> {
    let (partitions, rf) = validate_spec(broker, &spec)?;
    let topic_id = Uuid::new_v4();
    let out = broker
        .cluster
        .propose(Command::CreateTopic {
            name: spec.name.clone(),
            topic_id,
            partitions: partitions as u32,
            configs: spec.configs.clone(),
        })
        .await?;
    let topic_id = match out {
        Output::TopicCreated { topic_id, .. } => topic_id,
        _ => topic_id,
    };
    info!(topic = %spec.name, partitions, "created topic");
    let owners: Vec<Option<BrokerId>> = (0..partitions)
        .map(|p| {
            spec.assignments
                .get(&p)
                .and_then(|r| r.first())
                .map(|b| BrokerId(*b))
        })
        .collect();
    place_partitions(broker, &spec.name, 0, &owners).await;
    Ok(CreatedTopic {
        topic_id,
        partitions,
        replication_factor: rf,
    })
}

/// Assign partitions `first..` of `topic` to brokers: the given owner when
/// set, else round-robin over live brokers. Failures are logged; the
/// controller's periodic sweep assigns anything left offline.
pub async fn place_partitions(
    broker: &Broker,
    topic: &str,
    first: u32,
    owners: &[Option<BrokerId>],
) {
    let live = live_brokers(broker);
    if live.is_empty() {
        warn!(topic, "no live broker to place partitions on");
        return;
    }
    let start = (crate::cluster::now_ms() as usize) % live.len();
    // The epochs now, before any placement: if the controller's sweep places
    // one first, the compare-and-set refuses ours instead of placing it twice.
    let seen: Vec<Option<StreamEpoch>> = broker.cluster.read(|s: &ClusterState| {
        (0..owners.len())
            .map(|i| s.partition(topic, first + i as u32).map(|p| p.epoch))
            .collect()
    });
    for (i, owner) in owners.iter().enumerate() {
        let partition = first + i as u32;
        let target = owner.unwrap_or(live[(start + partition as usize) % live.len()]);
        if let Err(e) = assign(broker, topic, partition, target, seen[i]).await {
            let now = broker
                .cluster
                .read(|s: &ClusterState| s.partition(topic, partition).map(|p| p.epoch));
            if seen[i].is_some() && now != seen[i] {
                // The controller's sweep placed it first: the intended outcome.
                debug!(topic, partition, "already placed by the controller");
            } else {
                warn!(topic, partition, broker = target.0, error = %e.message, "could not place partition");
            }
        }
    }
}

/// Open `topic-partition` on `target` (bumping its epoch), provided its
/// epoch is still `seen` (the epoch at which the caller decided to place it;
/// `None`: the current one).
pub async fn assign(
    broker: &Broker,
    topic: &str,
    partition: u32,
    target: BrokerId,
    seen: Option<StreamEpoch>,
) -> Result<(), KafkaError> {
    let (epoch, current) = broker.cluster.read(|s: &ClusterState| {
        (
            s.brokers.get(&target).map(|b| b.epoch),
            s.partition(topic, partition).map(|p| p.epoch),
        )
    });
    let current = seen.or(current);
    let epoch = epoch.ok_or_else(|| {
        err(
            ResponseError::BrokerNotAvailable,
            format!("broker {target} is not registered"),
        )
    })?;
    // Compare-and-set on the partition epoch: of two concurrent placements
    // (the creating request and the controller sweep) only one applies.
    broker
        .cluster
        .propose(Command::AssignPartition {
            topic: topic.to_string(),
            partition,
            broker: target,
            broker_epoch: epoch,
            expected_epoch: current,
        })
        .await?;
    Ok(())
}

/// Create a topic with default settings if auto-creation is on. Returns
/// whether the topic exists afterwards.
pub async fn auto_create(broker: &Broker, name: &str) -> Result<bool, KafkaError> {
    if !broker.config.auto_create_topics_enable || is_internal(name) {
        return Ok(false);
    }
    let spec = TopicSpec {
        name: name.to_string(),
        partitions: -1,
        replication_factor: -1,
        assignments: BTreeMap::new(),
        configs: BTreeMap::new(),
    };
    match create_topic(broker, spec).await {
        Ok(_) => Ok(true),
        // raced with another creator: fine
        Err(e) if e.code == ResponseError::TopicAlreadyExists => Ok(true),
        Err(e) => Err(e),
    }
}

/// Delete a topic by name.
pub async fn delete_topic(broker: &Broker, name: &str) -> Result<Uuid, KafkaError> {
    let id = broker
        .cluster
        .read(|s| s.topics.get(name).map(|t| t.id))
        .ok_or_else(|| {
            err(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic {name} does not exist"),
            )
        })?;
    broker
        .cluster
        .propose(Command::DeleteTopic {
            name: name.to_string(),
            now_ms: now_ms(),
        })
        .await?;
    info!(topic = name, "deleted topic");
    Ok(id)
}

/// Grow a topic to `total` partitions and place the new ones.
pub async fn add_partitions(
    broker: &Broker,
    name: &str,
    total: i32,
    assignments: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> Result<(), KafkaError> {
    let current = broker
        .cluster
        .read(|s| s.topics.get(name).map(|t| t.partitions.len() as i32))
        .ok_or_else(|| {
            err(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic {name} does not exist"),
            )
        })?;
    if total <= current {
        return Err(err(
            ResponseError::InvalidPartitions,
            format!(
                "Topic currently has {current} partitions, which is higher than or equal to the requested {total}."
            ),
        ));
    }
    let added = (total - current) as usize;
    let owners: Vec<Option<BrokerId>> = match &assignments {
        Some(a) => {
            if a.len() != added {
                return Err(err(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Increasing the number of partitions by {added} but {} assignments provided.",
                        a.len()
                    ),
                ));
            }
            let live = live_brokers(broker);
            a.iter()
                .map(|r| match r.first() {
                    Some(b) if live.contains(&BrokerId(*b)) => Ok(Some(BrokerId(*b))),
                    _ => Err(err(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Assignment {r:?} does not name a live broker"),
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        None => vec![None; added],
    };
    if validate_only {
        return Ok(());
    }
    broker
        .cluster
        .propose(Command::CreatePartitions {
            name: name.to_string(),
            total: total as u32,
        })
        .await?;
    place_partitions(broker, name, current as u32, &owners).await;
    Ok(())
}

/// Replace or adjust a topic's config overrides after validating them.
pub async fn alter_configs(
    broker: &Broker,
    name: &str,
    set: BTreeMap<String, String>,
    delete: Vec<String>,
    validate_only: bool,
) -> Result<(), KafkaError> {
    if !broker.cluster.read(|s| s.topics.contains_key(name)) {
        return Err(err(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic {name} does not exist"),
        ));
    }
    topic_config::validate_all(set.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    for k in &delete {
        if topic_config::definition(k).is_none() {
            return Err(topic_config::TopicConfigError::Unknown(k.clone()).into());
        }
    }
    if validate_only {
        return Ok(());
    }
    broker
        .cluster
        .propose(Command::AlterTopicConfigs {
            name: name.to_string(),
            set,
            delete,
        })
        .await?;
    Ok(())
}
