//! Broker configuration: one typed [`BrokerConfig`] loaded from, in rising
//! precedence, built-in defaults, a TOML file (`--config`), `SKIFF_*`
//! environment variables and command-line flags.
//!
//! Every key has the same name everywhere. A top-level key `listen` is
//! `listen = "..."` in TOML, `SKIFF_LISTEN` in the environment and `--listen`
//! (or `--set listen=...`) on the command line. A key in a section, such as
//! `storage.upload.interval`, is `[storage.upload] interval = ...` in TOML,
//! `SKIFF_STORAGE__UPLOAD__INTERVAL` in the environment (a double underscore
//! between levels) and `--set storage.upload.interval=...` as a flag.
//! Where Kafka has a broker config for the same thing, the key is Kafka's name
//! with dots written as underscores (`auto_create_topics_enable` is
//! `auto.create.topics.enable`), and DescribeConfigs reports it under Kafka's name.
//!
//! The full reference with defaults is `docs/config.md`; `skiff serve --help`
//! lists the flags.

use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use skiff_metadata::config::MetadataConfig;
use skiff_storage::compaction::CompactionConfig;
use skiff_storage::config::StorageConfig;
use skiff_storage::store::ObjectStoreConfig;

/// Errors found while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(Box<figment::Error>),
    #[error("invalid --set argument {0:?}: expected KEY=VALUE")]
    BadSet(String),
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Load(Box::new(e))
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The broker's configuration. See the module docs for how keys are named.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// This broker's id (Kafka `node.id`). Unique in a cluster.
    pub node_id: i32,
    /// Address the Kafka listener binds, `host:port`.
    pub listen: String,
    /// `host:port` that clients are told to connect to (Kafka
    /// `advertised.listeners`). Defaults to `listen`; set it when clients reach
    /// the broker through another name or address.
    pub advertised_listener: Option<String>,
    /// Address of the HTTP admin endpoint serving `/metrics`, `/healthz` and
    /// `/readyz`. Empty string disables it.
    pub http_listen: String,
    /// Directory for the WAL, the metadata log and (with the default object
    /// store) the objects themselves.
    pub data_dir: PathBuf,
    /// Create a topic when a client asks for metadata of, or produces to, a
    /// topic that does not exist (Kafka `auto.create.topics.enable`).
    pub auto_create_topics_enable: bool,
    /// Partition count of auto-created topics and of CreateTopics requests
    /// that ask for the default (Kafka `num.partitions`).
    pub num_partitions: i32,
    /// Largest request frame accepted, in bytes; a larger one closes the
    /// connection (Kafka `socket.request.max.bytes`).
    pub socket_request_max_bytes: u32,
    /// Largest record batch accepted by default (Kafka `message.max.bytes`;
    /// topics override it with `max.message.bytes`).
    pub message_max_bytes: u32,
    /// Default retention time of topics in milliseconds, -1 for unlimited
    /// (Kafka `log.retention.ms`; topics override it with `retention.ms`).
    pub log_retention_ms: i64,
    /// Default retention size per partition in bytes, -1 for unlimited (Kafka
    /// `log.retention.bytes`; topics override it with `retention.bytes`).
    pub log_retention_bytes: i64,
    /// How often retention is applied.
    #[serde(with = "humantime_serde")]
    pub log_retention_check_interval: Duration,
    /// Most client connections served at once; further connections wait.
    pub max_connections: usize,
    /// Most incremental fetch sessions (KIP-227) cached at once; 0 turns
    /// sessions off (Kafka `max.incremental.fetch.session.cache.slots`).
    pub max_incremental_fetch_session_cache_slots: usize,
    /// How long a producer id's state is kept on a partition after its last
    /// write, unless it has a transaction open there (Kafka
    /// `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// How often each partition's producer state is snapshotted to the object
    /// store (also on close), bounding the replay when it is opened.
    #[serde(with = "humantime_serde")]
    pub producer_state_snapshot_interval: Duration,
    /// Most producer ids remembered per partition; beyond it the least
    /// recently active ones without an open transaction are forgotten.
    pub producer_state_max_producers: usize,
    /// How long a graceful shutdown waits for in-flight requests and the WAL
    /// flush before aborting.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,skiff_storage=debug`).
    /// `RUST_LOG` overrides it.
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// TESTING ONLY, LOSES DATA: answer acks=1/all produce requests before
    /// the WAL has made the batch durable. Exists so the fault-injection
    /// harness can show that its checker catches lost writes. Never set it
    /// in production; the broker logs a warning at start when it is on.
    pub unsafe_ack_before_fsync: bool,
    /// Storage engine: WAL, uploads, caches (`[storage]` in TOML). Its
    /// `data_dir` defaults to this broker's `data_dir`.
    pub storage: StorageConfig,
    /// Object compaction and garbage collection (`[compaction]`).
    pub compaction: CompactionConfig,
    /// Where objects live (`[object_store]`): the local file system under
    /// `data_dir/objects` by default, or `url = "s3://bucket/prefix"`.
    pub object_store: ObjectStoreConfig,
    /// The metadata quorum (`[metadata]`). Its `node_id` defaults to this
    /// broker's `node_id` and its `data_dir` to `data_dir/metadata`.
    pub metadata: MetadataConfig,
    /// The group coordinator (`[groups]`): offsets topic partitions,
    /// initial rebalance delay, session timeout bounds.
    pub groups: crate::groups::GroupConfig,
    /// Largest `transaction.timeout.ms` a transactional producer may ask for
    /// (Kafka `transaction.max.timeout.ms`). Two hours: Flink's KafkaSink
    /// asks for one hour by default, above Kafka's 15-minute default.
    pub transaction_max_timeout_ms: i32,
    /// Partitions of `__transaction_state` when it is created (Kafka
    /// `transaction.state.log.num.partitions`). Fixed afterwards: it decides
    /// which partition holds a transactional id.
    pub transaction_state_log_num_partitions: u32,
    /// KIP-890 part 1 (Kafka `transaction.partition.verification.enable`):
    /// before a transactional batch starts a transaction on a partition, the
    /// leader asks the transaction coordinator whether the partition is in
    /// the producer's ongoing transaction, and refuses the batch with
    /// INVALID_TXN_STATE if not. Stops a produce request held up past the
    /// end of its transaction from opening a transaction nobody will end.
    pub transaction_partition_verification_enable: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            listen: "localhost:9092".into(),
            advertised_listener: None,
            http_listen: "localhost:9644".into(),
            data_dir: PathBuf::from("./skiff-data"),
            auto_create_topics_enable: true,
            num_partitions: 1,
            socket_request_max_bytes: 100 * 1024 * 1024,
            message_max_bytes: 1024 * 1024 + 12,
            log_retention_ms: 7 * 24 * 3600 * 1000,
            log_retention_bytes: -1,
            log_retention_check_interval: Duration::from_secs(60),
            max_connections: 10_000,
            max_incremental_fetch_session_cache_slots: 1000,
            producer_id_expiration_ms: 86_400_000,
            producer_state_snapshot_interval: Duration::from_secs(60),
            producer_state_max_producers: 100_000,
            shutdown_grace: Duration::from_secs(10),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            unsafe_ack_before_fsync: false,
            storage: StorageConfig::default(),
            compaction: CompactionConfig::default(),
            object_store: ObjectStoreConfig::default(),
            metadata: MetadataConfig::default(),
            groups: crate::groups::GroupConfig::default(),
            transaction_max_timeout_ms: 7_200_000,
            transaction_state_log_num_partitions: 50,
            transaction_partition_verification_enable: true,
        }
    }
}

/// Top-level keys of [`BrokerConfig`] (sections included), for telling
/// configuration environment variables from other `SKIFF_*` variables.
const KEYS: &[&str] = &[
    "node_id",
    "listen",
    "advertised_listener",
    "http_listen",
    "data_dir",
    "auto_create_topics_enable",
    "num_partitions",
    "socket_request_max_bytes",
    "message_max_bytes",
    "log_retention_ms",
    "log_retention_bytes",
    "log_retention_check_interval",
    "max_connections",
    "max_incremental_fetch_session_cache_slots",
    "groups",
    "transaction_max_timeout_ms",
    "transaction_state_log_num_partitions",
    "transaction_partition_verification_enable",
    "producer_id_expiration_ms",
    "producer_state_snapshot_interval",
    "producer_state_max_producers",
    "shutdown_grace",
    "log_level",
    "log_format",
    "unsafe_ack_before_fsync",
    "storage",
    "compaction",
    "object_store",
    "metadata",
];

/// Whether a dotted environment key names broker configuration. figment's
/// `Env::filter` sees the key before lower-casing (`STORAGE.UPLOAD.INTERVAL`),
/// so the comparison ignores case.
fn is_config_key(key: &str) -> bool {
    let top = key.split('.').next().unwrap_or("");
    KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
}

/// Where configuration comes from, besides the defaults.
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    /// A TOML file.
    pub file: Option<PathBuf>,
    /// `KEY=VALUE` overrides from the command line, highest precedence.
    pub sets: Vec<String>,
    /// Read `SKIFF_*` environment variables (off in tests for isolation).
    pub env: bool,
}

impl BrokerConfig {
    /// Load from defaults, file, environment and overrides, then validate.
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        // Defaults come from `#[serde(default)]`: keys nobody set keep them.
        let mut fig = Figment::new();
        if let Some(file) = &sources.file {
            if !file.exists() {
                return Err(ConfigError::Invalid {
                    key: "config",
                    reason: format!("file {} does not exist", file.display()),
                });
            }
            fig = fig.merge(Toml::file(file));
        }
        if sources.env {
            // Only variables naming a broker key are configuration; others
            // with the prefix (SKIFF_BIN, SKIFF_BOOTSTRAP_SERVER of the admin
            // CLI, test-harness settings) are left alone.
            fig = fig.merge(
                Env::prefixed("SKIFF_")
                    .split("__")
                    .filter(|k| is_config_key(k.as_str())),
            );
        }
        for set in &sources.sets {
            let (key, value) = set
                .split_once('=')
                .ok_or_else(|| ConfigError::BadSet(set.clone()))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigError::BadSet(set.clone()));
            }
            fig = fig.merge((key, parse_set_value(value)));
        }
        let mut config: BrokerConfig = fig.extract()?;
        config.derive_sections();
        config.validate()?;
        Ok(config)
    }

    /// Fill the sections' settings that follow the broker's own (data
    /// directories, node ids) unless they were set explicitly.
    fn derive_sections(&mut self) {
        if self.storage.data_dir == StorageConfig::default().data_dir {
            self.storage.data_dir = self.data_dir.clone();
        }
        if self.storage.wal.node == skiff_storage::config::WalConfig::default().node {
            self.storage.wal.node = self.node_id.to_string();
        }
        let md = MetadataConfig::default();
        if self.metadata.data_dir == md.data_dir {
            self.metadata.data_dir = self.data_dir.join("metadata");
        }
        if self.metadata.node_id == md.node_id {
            self.metadata.node_id = self.node_id as u64;
        }
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                reason: reason.into(),
            }
        }
        if self.node_id < 0 {
            return Err(invalid("node_id", "must be >= 0"));
        }
        if self.listen.rsplit_once(':').is_none() {
            return Err(invalid("listen", "expected host:port"));
        }
        if let Some(adv) = &self.advertised_listener {
            parse_host_port(adv).map_err(|r| invalid("advertised_listener", r))?;
        }
        if self.num_partitions < 1 {
            return Err(invalid("num_partitions", "must be >= 1"));
        }
        if self.socket_request_max_bytes < 1024 {
            return Err(invalid("socket_request_max_bytes", "must be >= 1024"));
        }
        if self.message_max_bytes == 0 || self.message_max_bytes > self.socket_request_max_bytes {
            return Err(invalid(
                "message_max_bytes",
                "must be > 0 and <= socket_request_max_bytes",
            ));
        }
        if self.log_retention_ms < -1 || self.log_retention_bytes < -1 {
            return Err(invalid(
                "log_retention_ms",
                "retention values must be -1 (unlimited) or >= 0",
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be >= 1"));
        }
        self.storage
            .validate()
            .map_err(|e| invalid("storage", e.to_string()))?;
        self.compaction
            .validate()
            .map_err(|e| invalid("compaction", e))?;
        self.object_store
            .validate()
            .map_err(|e| invalid("object_store", e.to_string()))?;
        self.metadata
            .validate()
            .map_err(|e| invalid("metadata", e))?;
        Ok(())
    }

    /// The `host:port` advertised to clients.
    pub fn advertised(&self) -> Result<(String, i32), ConfigError> {
        let s = self.advertised_listener.as_deref().unwrap_or(&self.listen);
        parse_host_port(s).map_err(|reason| ConfigError::Invalid {
            key: "advertised_listener",
            reason,
        })
    }
}

/// Values given with `--set` are typed like TOML values when they parse as
/// such (numbers, booleans), and are strings otherwise.
fn parse_set_value(value: &str) -> figment::value::Value {
    use figment::value::Value;
    let v = value.trim();
    if let Ok(b) = v.parse::<bool>() {
        return Value::from(b);
    }
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = v.parse::<f64>()
        && v.contains('.')
        && f.is_finite()
    {
        return Value::from(f);
    }
    Value::from(v.to_string())
}

/// Split `host:port` (IPv6 hosts in brackets) into its parts.
pub fn parse_host_port(s: &str) -> Result<(String, i32), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?} has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s:?} has an empty host"));
    }
    Ok((host.to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(s: &[&str]) -> ConfigSources {
        ConfigSources {
            file: None,
            sets: s.iter().map(|s| s.to_string()).collect(),
            env: false,
        }
    }

    #[test]
    fn defaults_are_the_single_node_quickstart() {
        let c = BrokerConfig::load(&ConfigSources::default()).unwrap();
        assert_eq!(c.listen, "localhost:9092");
        assert_eq!(c.data_dir, PathBuf::from("./skiff-data"));
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.advertised().unwrap(), ("localhost".to_string(), 9092));
    }

    #[test]
    fn sets_override_and_are_typed() {
        let c = BrokerConfig::load(&sets(&[
            "auto_create_topics_enable=false",
            "num_partitions=6",
            "shutdown_grace=3s",
            "advertised_listener=broker-1.example:19092",
        ]))
        .unwrap();
        assert!(!c.auto_create_topics_enable);
        assert_eq!(c.num_partitions, 6);
        assert_eq!(c.shutdown_grace, Duration::from_secs(3));
        assert_eq!(
            c.advertised().unwrap(),
            ("broker-1.example".to_string(), 19092)
        );
    }

    #[test]
    fn toml_file_then_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skiff.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:19092\"\nnum_partitions = 3\n").unwrap();
        let c = BrokerConfig::load(&ConfigSources {
            file: Some(path),
            sets: vec!["num_partitions=4".into()],
            env: false,
        })
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:19092");
        assert_eq!(c.num_partitions, 4);
    }

    #[test]
    fn bad_values_are_rejected_with_the_key() {
        for (set, key) in [
            ("num_partitions=0", "num_partitions"),
            ("node_id=-3", "node_id"),
            ("advertised_listener=nohost", "advertised_listener"),
        ] {
            let err = BrokerConfig::load(&sets(&[set])).unwrap_err().to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
        let err = BrokerConfig::load(&sets(&["no_such_key=1"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_key"), "{err}");
        let err = BrokerConfig::load(&sets(&["num_partitions=many"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_partitions"), "{err}");
        assert!(matches!(
            BrokerConfig::load(&sets(&["novalue"])),
            Err(ConfigError::BadSet(_))
        ));
    }

    #[test]
    fn only_broker_keys_are_read_from_the_environment() {
        assert!(is_config_key("num_partitions"));
        assert!(is_config_key("storage.upload.interval"));
        // As the filter gets them from SKIFF_UNSAFE_ACK_BEFORE_FSYNC and
        // SKIFF_STORAGE__WAL__GROUP_COMMIT_MAX_DELAY (not lower-cased yet).
        assert!(is_config_key("UNSAFE_ACK_BEFORE_FSYNC"));
        assert!(is_config_key("STORAGE.WAL.GROUP_COMMIT_MAX_DELAY"));
        assert!(!is_config_key("MOTO_SERVER"));
        assert!(!is_config_key("moto_server"));
        assert!(!is_config_key("bootstrap_server"));
        assert!(!is_config_key("bin"));
    }

    #[test]
    fn env_key_list_names_every_field() {
        // serde's unknown-field error lists the fields BrokerConfig has.
        let err = BrokerConfig::load(&sets(&["zz_not_a_key=1"]))
            .unwrap_err()
            .to_string();
        let fields: Vec<&str> = err
            .split_once("expected")
            .map(|(_, list)| list)
            .unwrap_or_default()
            .split('`')
            .filter(|f| {
                !f.is_empty()
                    && f.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
            .collect();
        assert!(fields.len() > 10, "{err}");
        for f in fields {
            assert!(KEYS.contains(&f), "{f} is not read from SKIFF_* variables");
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = BrokerConfig::load(&ConfigSources {
            file: Some("/nonexistent/skiff.toml".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}
