//! The one place where domain errors become Kafka error codes.

use skiff_metadata::command::CommandError;
use skiff_storage::AppendError;
use skiff_wire::kafka_protocol::error::ResponseError;

use crate::cluster::ClusterError;
use crate::topic_config::TopicConfigError;

/// A Kafka error code with the message to send where the API has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: ResponseError,
    pub message: String,
}

impl KafkaError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn code(&self) -> i16 {
        self.code.code()
    }
}

impl From<&CommandError> for KafkaError {
    fn from(e: &CommandError) -> Self {
        use CommandError as C;
        let code = match e {
            C::NotInitialized => ResponseError::CoordinatorNotAvailable,
            C::UnknownTopic(_) | C::UnknownPartition { .. } | C::UnknownStream(_) => {
                ResponseError::UnknownTopicOrPartition
            }
            C::TopicExists(_) | C::TopicIdExists(_) => ResponseError::TopicAlreadyExists,
            C::InvalidTopicName(_) => ResponseError::InvalidTopicException,
            C::InvalidPartitionCount { .. } => ResponseError::InvalidPartitions,
            C::InvalidConfig { .. } => ResponseError::InvalidConfig,
            C::EpochMismatch { .. } | C::Fenced { .. } => ResponseError::NotLeaderOrFollower,
            C::UnknownBroker(_) | C::StaleBrokerEpoch { .. } | C::BrokerFenced(_) => {
                ResponseError::NotLeaderOrFollower
            }
            C::AlreadyInitialized
            | C::RangeConflict { .. }
            | C::UnknownObject(_)
            | C::Invalid(_) => ResponseError::UnknownServerError,
        };
        KafkaError::new(code, e.to_string())
    }
}

impl From<&ClusterError> for KafkaError {
    fn from(e: &ClusterError) -> Self {
        match e {
            ClusterError::Rejected(c) => c.into(),
            ClusterError::Unavailable(m) => {
                KafkaError::new(ResponseError::RequestTimedOut, m.clone())
            }
        }
    }
}

impl From<ClusterError> for KafkaError {
    fn from(e: ClusterError) -> Self {
        (&e).into()
    }
}

impl From<TopicConfigError> for KafkaError {
    fn from(e: TopicConfigError) -> Self {
        KafkaError::new(ResponseError::InvalidConfig, e.to_string())
    }
}

/// The one place storage append errors become Kafka codes.
pub fn append_error(e: &AppendError) -> KafkaError {
    let code = match e {
        AppendError::Fenced(_) | AppendError::Closed(_) => ResponseError::NotLeaderOrFollower,
        AppendError::TooLarge { .. } => ResponseError::MessageTooLarge,
        AppendError::Empty => ResponseError::InvalidRecord,
        AppendError::Wal(_) => ResponseError::KafkaStorageError,
    };
    KafkaError::new(code, e.to_string())
}

/// The name of an error code, for metrics labels and logs.
pub fn code_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "None".into(),
        Some(e) => format!("{e:?}"),
    }
}
