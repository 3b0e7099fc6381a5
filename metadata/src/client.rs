//! Typed helpers over [`MetadataNode::write`] and [`MetadataNode::read`]:
//! one method per thing the broker does, stamping the time and unpacking
//! the [`Output`]. The object-index methods line up one-to-one with
//! storage's `Catalog` trait, so the broker's adapter is a thin mapping.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use skiff_common::{BrokerId, ObjectId, StreamEpoch, StreamId};
use uuid::Uuid;

use crate::command::{BrokerState, Command, CommandError, Listener, ObjectCommit, Output};
use crate::error::MetadataError;
use crate::node::{MetadataNode, now_ms};
use crate::state::{ObjectInfo, ObjectSlice, StreamMeta};

/// Where an assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub stream: StreamId,
    pub epoch: StreamEpoch,
    /// The committed end offset: the new owner continues from here.
    pub end_offset: u64,
}

fn unexpected(o: Output) -> MetadataError {
    MetadataError::Fatal(format!("unexpected output {o:?}"))
}

fn id_range(o: Output) -> Result<Range<u64>, MetadataError> {
    match o {
        Output::IdRange { start, end } => Ok(start..end),
        o => Err(unexpected(o)),
    }
}

impl MetadataNode {
    /// Register a (re)starting broker; returns its new broker epoch.
    pub async fn register_broker(
        &self,
        broker: BrokerId,
        listeners: Vec<Listener>,
        rack: Option<String>,
    ) -> Result<u64, MetadataError> {
        let cmd = Command::RegisterBroker {
            broker,
            listeners,
            rack,
            now_ms: now_ms(),
        };
        match self.write(cmd).await? {
            Output::BrokerRegistered { broker_epoch } => Ok(broker_epoch),
            o => Err(unexpected(o)),
        }
    }

    /// Keep a broker session alive.
    pub async fn heartbeat(
        &self,
        broker: BrokerId,
        broker_epoch: u64,
    ) -> Result<(), MetadataError> {
        let cmd = Command::Heartbeat {
            broker,
            broker_epoch,
            now_ms: now_ms(),
        };
        self.write(cmd).await.map(|_| ())
    }

    /// Mark a broker draining (or active again).
    pub async fn set_broker_state(
        &self,
        broker: BrokerId,
        broker_epoch: u64,
        state: BrokerState,
    ) -> Result<(), MetadataError> {
        let cmd = Command::SetBrokerState {
            broker,
            broker_epoch,
            state,
        };
        self.write(cmd).await.map(|_| ())
    }

    /// Create a topic; returns the stream of each partition.
    pub async fn create_topic(
        &self,
        name: &str,
        topic_id: Uuid,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<Vec<StreamId>, MetadataError> {
        let cmd = Command::CreateTopic {
            name: name.to_string(),
            topic_id,
            partitions,
            configs,
        };
        match self.write(cmd).await? {
            Output::TopicCreated { streams, .. } => Ok(streams),
            o => Err(unexpected(o)),
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), MetadataError> {
        let cmd = Command::DeleteTopic {
            name: name.to_string(),
            now_ms: now_ms(),
        };
        self.write(cmd).await.map(|_| ())
    }

    /// Grow a topic to `total` partitions.
    pub async fn create_partitions(&self, name: &str, total: u32) -> Result<(), MetadataError> {
        let cmd = Command::CreatePartitions {
            name: name.to_string(),
            total,
        };
        self.write(cmd).await.map(|_| ())
    }

    pub async fn alter_topic_configs(
        &self,
        name: &str,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), MetadataError> {
        let cmd = Command::AlterTopicConfigs {
            name: name.to_string(),
            set,
            delete,
        };
        self.write(cmd).await.map(|_| ())
    }

    /// Open `topic`-`partition` on `broker` (bumps the epoch, fencing the
    /// previous owner). `expected_epoch` makes it a compare-and-set.
    pub async fn assign_partition(
        &self,
        topic: &str,
        partition: u32,
        broker: BrokerId,
        broker_epoch: u64,
        expected_epoch: Option<StreamEpoch>,
    ) -> Result<Assignment, MetadataError> {
        let cmd = Command::AssignPartition {
            topic: topic.to_string(),
            partition,
            broker,
            broker_epoch,
            expected_epoch,
        };
        match self.write(cmd).await? {
            Output::PartitionAssigned {
                stream,
                epoch,
                end_offset,
            } => Ok(Assignment {
                stream,
                epoch,
                end_offset,
            }),
            o => Err(unexpected(o)),
        }
    }

    /// Mark a partition as moving to `to`.
    pub async fn begin_move(
        &self,
        topic: &str,
        partition: u32,
        to: BrokerId,
    ) -> Result<(), MetadataError> {
        let cmd = Command::BeginMove {
            topic: topic.to_string(),
            partition,
            to,
        };
        self.write(cmd).await.map(|_| ())
    }

    /// A block of `count` producer ids for a live broker.
    pub async fn allocate_producer_ids(
        &self,
        broker: BrokerId,
        broker_epoch: u64,
        count: u32,
    ) -> Result<Range<u64>, MetadataError> {
        let cmd = Command::AllocateProducerIds {
            broker,
            broker_epoch,
            count,
        };
        id_range(self.write(cmd).await?)
    }

    /// `Catalog::reserve_object_ids`.
    pub async fn reserve_object_ids(&self, count: u32) -> Result<Range<u64>, MetadataError> {
        id_range(self.write(Command::ReserveObjectIds { count }).await?)
    }

    /// `Catalog::stream` (linearizable).
    pub async fn stream(&self, stream: StreamId) -> Result<StreamMeta, MetadataError> {
        self.read(|s| s.stream_meta(stream))
            .await?
            .ok_or(MetadataError::Command(CommandError::UnknownStream(stream)))
    }

    /// `Catalog::commit`.
    pub async fn commit_objects(&self, commit: ObjectCommit) -> Result<(), MetadataError> {
        let cmd = Command::CommitObjects {
            commit,
            now_ms: now_ms(),
        };
        self.write(cmd).await.map(|_| ())
    }

    /// `Catalog::lookup` (linearizable).
    pub async fn lookup(
        &self,
        stream: StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ObjectSlice>, MetadataError> {
        self.read(|s| s.lookup(stream, from, limit))
            .await?
            .ok_or(MetadataError::Command(CommandError::UnknownStream(stream)))
    }

    /// `Catalog::trim`.
    pub async fn trim_stream(
        &self,
        stream: StreamId,
        epoch: StreamEpoch,
        new_start: u64,
    ) -> Result<(), MetadataError> {
        let cmd = Command::TrimStream {
            stream,
            epoch,
            new_start,
            now_ms: now_ms(),
        };
        self.write(cmd).await.map(|_| ())
    }

    /// `Catalog::list_objects` (linearizable).
    pub async fn list_objects(&self) -> Result<Vec<ObjectInfo>, MetadataError> {
        self.read(|s| s.list_objects()).await
    }

    /// `Catalog::deletable_objects` (linearizable).
    pub async fn deletable_objects(&self, grace: Duration) -> Result<Vec<ObjectId>, MetadataError> {
        let now = now_ms();
        self.read(|s| s.deletable_objects(now, grace.as_millis() as u64))
            .await
    }

    /// `Catalog::forget_objects`.
    pub async fn forget_objects(&self, ids: Vec<ObjectId>) -> Result<(), MetadataError> {
        self.write(Command::ForgetObjects { ids }).await.map(|_| ())
    }
}
