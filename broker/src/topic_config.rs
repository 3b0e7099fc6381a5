//! Topic configs under Kafka's own names: which exist, their defaults, how
//! values are validated, and the typed view the produce and retention paths
//! read.
//!
//! Every config Skiff accepts is either enforced (retention, message size,
//! timestamp rules, cleanup policy) or has no meaning in a broker whose data
//! lives in objects (segment sizes, replica counts, flush intervals); the
//! latter are accepted so that tools which always send them keep working, and
//! are listed in [`NO_EFFECT`] and in `docs/config.md`. An unknown name or an
//! invalid value is rejected with a message (INVALID_CONFIG).

use std::collections::BTreeMap;

use crate::config::BrokerConfig;

/// Why a topic config was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    #[error("Unknown topic config name: {0}")]
    Unknown(String),
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

/// The value type of a config, as DescribeConfigs reports it (KIP-569).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    /// The `config_type` code of DescribeConfigs v3+.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }
}

/// One topic config definition.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub doc: &'static str,
    validate: fn(&str) -> Result<(), String>,
}

fn long_min(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v| match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(_) => Err(format!("must be at least {min}")),
        Err(_) => Err("not a number".into()),
    }
}

fn v_long_ge_minus1(v: &str) -> Result<(), String> {
    long_min(-1)(v)
}
fn v_long_ge0(v: &str) -> Result<(), String> {
    long_min(0)(v)
}
fn v_int_ge0(v: &str) -> Result<(), String> {
    long_min(0)(v)?;
    v.trim()
        .parse::<i32>()
        .map(|_| ())
        .map_err(|_| "out of range for an int".into())
}
fn v_int_ge1(v: &str) -> Result<(), String> {
    v_int_ge0(v)?;
    long_min(1)(v)
}
fn v_bool(v: &str) -> Result<(), String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => Err("expected true or false".into()),
    }
}
fn v_any(_: &str) -> Result<(), String> {
    Ok(())
}
fn v_timestamp_type(v: &str) -> Result<(), String> {
    match v {
        "CreateTime" | "LogAppendTime" => Ok(()),
        _ => Err("expected CreateTime or LogAppendTime".into()),
    }
}
fn v_cleanup_policy(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts.iter().all(|p| *p == "delete") {
        return Ok(());
    }
    if parts.iter().all(|p| matches!(*p, "delete" | "compact")) {
        return Err(
            "log compaction (cleanup.policy=compact) is not supported yet; only delete is".into(),
        );
    }
    Err("expected delete".into())
}
fn v_compression(v: &str) -> Result<(), String> {
    match v {
        "producer" => Ok(()),
        "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Err(
            "only compression.type=producer is supported (batches are stored as the producer compressed them)"
                .into(),
        ),
        _ => Err("expected producer".into()),
    }
}

const fn def(
    name: &'static str,
    kind: ConfigType,
    doc: &'static str,
    validate: fn(&str) -> Result<(), String>,
) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        doc,
        validate,
    }
}

/// Configs that change what the broker does.
pub const ENFORCED: &[ConfigDef] = &[
    def(
        "retention.ms",
        ConfigType::Long,
        "Delete data older than this (ms); -1 keeps it forever.",
        v_long_ge_minus1,
    ),
    def(
        "retention.bytes",
        ConfigType::Long,
        "Delete the oldest data once a partition holds more bytes than this; -1 for no limit.",
        v_long_ge_minus1,
    ),
    def(
        "max.message.bytes",
        ConfigType::Int,
        "Largest record batch accepted, in bytes.",
        v_int_ge0,
    ),
    def(
        "message.timestamp.type",
        ConfigType::String,
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's time.",
        v_timestamp_type,
    ),
    def(
        "message.timestamp.difference.max.ms",
        ConfigType::Long,
        "Largest allowed difference between a CreateTime timestamp and the broker's clock (deprecated in Kafka 3.6 for the two below).",
        v_long_ge0,
    ),
    def(
        "message.timestamp.before.max.ms",
        ConfigType::Long,
        "How far in the past a CreateTime timestamp may be.",
        v_long_ge0,
    ),
    def(
        "message.timestamp.after.max.ms",
        ConfigType::Long,
        "How far in the future a CreateTime timestamp may be.",
        v_long_ge0,
    ),
    def(
        "cleanup.policy",
        ConfigType::List,
        "Only delete (retention) is supported; compact is rejected.",
        v_cleanup_policy,
    ),
    def(
        "compression.type",
        ConfigType::String,
        "Only producer: batches are stored as the producer compressed them.",
        v_compression,
    ),
];

/// Configs accepted for compatibility that have no effect in Skiff, because
/// data lives in objects (no segments, no local replicas, no local flushes).
pub const NO_EFFECT: &[ConfigDef] = &[
    def(
        "min.insync.replicas",
        ConfigType::Int,
        "No effect: durability comes from the WAL and the object store.",
        v_int_ge1,
    ),
    def(
        "unclean.leader.election.enable",
        ConfigType::Boolean,
        "No effect: there are no follower replicas.",
        v_bool,
    ),
    def(
        "segment.bytes",
        ConfigType::Int,
        "No effect: data is stored in objects, not segments.",
        v_int_ge1,
    ),
    def(
        "segment.ms",
        ConfigType::Long,
        "No effect: data is stored in objects, not segments.",
        v_long_ge0,
    ),
    def(
        "segment.index.bytes",
        ConfigType::Int,
        "No effect.",
        v_int_ge0,
    ),
    def(
        "segment.jitter.ms",
        ConfigType::Long,
        "No effect.",
        v_long_ge0,
    ),
    def(
        "index.interval.bytes",
        ConfigType::Int,
        "No effect.",
        v_int_ge0,
    ),
    def(
        "flush.messages",
        ConfigType::Long,
        "No effect: every acknowledged write is already durable.",
        v_long_ge0,
    ),
    def(
        "flush.ms",
        ConfigType::Long,
        "No effect: every acknowledged write is already durable.",
        v_long_ge0,
    ),
    def(
        "file.delete.delay.ms",
        ConfigType::Long,
        "No effect.",
        v_long_ge0,
    ),
    def("preallocate", ConfigType::Boolean, "No effect.", v_bool),
    def(
        "message.downconversion.enable",
        ConfigType::Boolean,
        "No effect.",
        v_bool,
    ),
    def(
        "leader.replication.throttled.replicas",
        ConfigType::List,
        "No effect.",
        v_any,
    ),
    def(
        "follower.replication.throttled.replicas",
        ConfigType::List,
        "No effect.",
        v_any,
    ),
    def(
        "min.compaction.lag.ms",
        ConfigType::Long,
        "No effect without compaction.",
        v_long_ge0,
    ),
    def(
        "max.compaction.lag.ms",
        ConfigType::Long,
        "No effect without compaction.",
        v_long_ge0,
    ),
    def(
        "min.cleanable.dirty.ratio",
        ConfigType::Double,
        "No effect without compaction.",
        v_any,
    ),
    def(
        "delete.retention.ms",
        ConfigType::Long,
        "No effect without compaction.",
        v_long_ge0,
    ),
];

/// Look up a config definition by name.
pub fn definition(name: &str) -> Option<&'static ConfigDef> {
    ENFORCED.iter().chain(NO_EFFECT).find(|d| d.name == name)
}

/// Validate one name/value pair.
pub fn validate(name: &str, value: &str) -> Result<(), TopicConfigError> {
    let def = definition(name).ok_or_else(|| TopicConfigError::Unknown(name.to_string()))?;
    (def.validate)(value).map_err(|reason| TopicConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason,
    })
}

/// Validate a whole set of overrides.
pub fn validate_all<'a>(
    configs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), TopicConfigError> {
    configs.into_iter().try_for_each(|(k, v)| validate(k, v))
}

/// The default of each topic config, derived from the broker's config.
pub fn default_value(name: &str, broker: &BrokerConfig) -> Option<String> {
    Some(match name {
        "retention.ms" => broker.log_retention_ms.to_string(),
        "retention.bytes" => broker.log_retention_bytes.to_string(),
        "max.message.bytes" => broker.message_max_bytes.to_string(),
        "message.timestamp.type" => "CreateTime".into(),
        "message.timestamp.difference.max.ms" => i64::MAX.to_string(),
        "message.timestamp.before.max.ms" => i64::MAX.to_string(),
        "message.timestamp.after.max.ms" => i64::MAX.to_string(),
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "min.insync.replicas" => "1".into(),
        "unclean.leader.election.enable" => "false".into(),
        "segment.bytes" => (1i64 << 30).to_string(),
        "segment.ms" => (7i64 * 24 * 3600 * 1000).to_string(),
        "segment.index.bytes" => (10i64 << 20).to_string(),
        "segment.jitter.ms" => "0".into(),
        "index.interval.bytes" => "4096".into(),
        "flush.messages" => i64::MAX.to_string(),
        "flush.ms" => i64::MAX.to_string(),
        "file.delete.delay.ms" => "60000".into(),
        "preallocate" => "false".into(),
        "message.downconversion.enable" => "true".into(),
        "leader.replication.throttled.replicas" => "".into(),
        "follower.replication.throttled.replicas" => "".into(),
        "min.compaction.lag.ms" => "0".into(),
        "max.compaction.lag.ms" => i64::MAX.to_string(),
        "min.cleanable.dirty.ratio" => "0.5".into(),
        "delete.retention.ms" => "86400000".into(),
        _ => return None,
    })
}

/// Whether a timestamp is taken from the producer or stamped by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The enforced configs of one topic, resolved against broker defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPolicy {
    /// None: keep forever.
    pub retention_ms: Option<i64>,
    /// None: no size limit.
    pub retention_bytes: Option<i64>,
    pub max_message_bytes: usize,
    pub timestamp_type: TimestampType,
    /// Largest allowed age of a CreateTime timestamp, ms.
    pub timestamp_before_max_ms: i64,
    /// Largest allowed lead of a CreateTime timestamp over the broker clock, ms.
    pub timestamp_after_max_ms: i64,
}

impl TopicPolicy {
    /// Resolve a topic's overrides against the broker's defaults. Values were
    /// validated when set; anything unparsable falls back to the default.
    pub fn resolve(overrides: &BTreeMap<String, String>, broker: &BrokerConfig) -> Self {
        let get = |name: &str| -> String {
            overrides
                .get(name)
                .cloned()
                .or_else(|| default_value(name, broker))
                .unwrap_or_default()
        };
        let long = |name: &str, fallback: i64| get(name).trim().parse::<i64>().unwrap_or(fallback);
        let opt = |v: i64| (v >= 0).then_some(v);
        let diff = long("message.timestamp.difference.max.ms", i64::MAX);
        TopicPolicy {
            retention_ms: opt(long("retention.ms", broker.log_retention_ms)),
            retention_bytes: opt(long("retention.bytes", broker.log_retention_bytes)),
            max_message_bytes: usize::try_from(long(
                "max.message.bytes",
                i64::from(broker.message_max_bytes),
            ))
            .unwrap_or(broker.message_max_bytes as usize),
            timestamp_type: if get("message.timestamp.type") == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            timestamp_before_max_ms: long("message.timestamp.before.max.ms", i64::MAX).min(diff),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms", i64::MAX).min(diff),
        }
    }

    /// Check a CreateTime timestamp against the allowed window around `now_ms`.
    pub fn timestamp_in_bounds(&self, timestamp_ms: i64, now_ms: i64) -> bool {
        if self.timestamp_type == TimestampType::LogAppendTime {
            return true;
        }
        let behind = now_ms.saturating_sub(timestamp_ms);
        let ahead = timestamp_ms.saturating_sub(now_ms);
        behind <= self.timestamp_before_max_ms && ahead <= self.timestamp_after_max_ms
    }
}

/// Kafka's legal topic names: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "Topic name {name:?} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-' ({c:?})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_configs_validate_and_unknown_are_rejected() {
        assert!(validate("retention.ms", "3600000").is_ok());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("max.message.bytes", "99999999999").is_err());
        assert!(validate("cleanup.policy", "delete").is_ok());
        let e = validate("cleanup.policy", "compact")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not supported"), "{e}");
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("message.timestamp.type", "Now").is_err());
        assert!(validate("segment.bytes", "1048576").is_ok());
        assert_eq!(
            validate("no.such.config", "1"),
            Err(TopicConfigError::Unknown("no.such.config".into()))
        );
    }

    #[test]
    fn every_definition_has_a_default() {
        let b = BrokerConfig::default();
        for d in ENFORCED.iter().chain(NO_EFFECT) {
            let v =
                default_value(d.name, &b).unwrap_or_else(|| panic!("{} has no default", d.name));
            assert!(
                validate(d.name, &v).is_ok(),
                "{}={v} fails its own validation",
                d.name
            );
        }
    }

    #[test]
    fn policy_resolves_overrides_over_broker_defaults() {
        let b = BrokerConfig::default();
        let p = TopicPolicy::resolve(&BTreeMap::new(), &b);
        assert_eq!(p.retention_ms, Some(b.log_retention_ms));
        assert_eq!(p.retention_bytes, None);
        assert_eq!(p.timestamp_type, TimestampType::CreateTime);
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "-1".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        o.insert(
            "message.timestamp.difference.max.ms".to_string(),
            "1000".to_string(),
        );
        o.insert("max.message.bytes".to_string(), "2048".to_string());
        let p = TopicPolicy::resolve(&o, &b);
        assert_eq!(p.retention_ms, None);
        assert_eq!(p.max_message_bytes, 2048);
        assert_eq!(p.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(p.timestamp_before_max_ms, 1000);
        o.insert(
            "message.timestamp.type".to_string(),
            "CreateTime".to_string(),
        );
        let p = TopicPolicy::resolve(&o, &b);
        assert!(p.timestamp_in_bounds(10_000, 10_500));
        assert!(!p.timestamp_in_bounds(10_000, 12_000));
        assert!(!p.timestamp_in_bounds(14_000, 12_000));
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("vehicle.reports_v2-EU").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("bad name").is_err());
        assert!(validate_topic_name("bad/name").is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
