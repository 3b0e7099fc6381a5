//! Storage's [`Catalog`] on top of the metadata quorum: each storage call
//! becomes a metadata command or a read of the applied state. The rules
//! (fencing, contiguity, atomic compaction) are enforced by the state
//! machine; the storage crate's conformance suite checks this adapter in the
//! tests below.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use skiff_common::{ObjectId, StreamEpoch, StreamId};
use skiff_metadata::command::{self as mc, Command, CommandError, Output};
use skiff_storage::catalog::{
    Catalog, CatalogError, Commit, ObjectInfo, ObjectKind, ObjectSlice, StreamMeta,
};

use crate::cluster::{Cluster, ClusterError, now_ms};

/// The metadata-backed catalog.
#[derive(Debug, Clone)]
pub struct MetadataCatalog {
    cluster: Cluster,
}

impl MetadataCatalog {
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    async fn propose(&self, cmd: Command) -> Result<Output, CatalogError> {
        self.cluster.propose(cmd).await.map_err(catalog_error)
    }
}

fn kind_to_meta(k: ObjectKind) -> mc::ObjectKind {
    match k {
        ObjectKind::StreamSet => mc::ObjectKind::StreamSet,
        ObjectKind::Stream => mc::ObjectKind::Stream,
    }
}

fn kind_from_meta(k: mc::ObjectKind) -> ObjectKind {
    match k {
        mc::ObjectKind::StreamSet => ObjectKind::StreamSet,
        mc::ObjectKind::Stream => ObjectKind::Stream,
    }
}

/// The one place metadata errors become catalog errors.
fn catalog_error(e: ClusterError) -> CatalogError {
    match e {
        ClusterError::Unavailable(m) => CatalogError::Unavailable(m),
        ClusterError::Rejected(c) => match c {
            CommandError::Fenced {
                stream,
                current,
                held,
            } => CatalogError::Fenced {
                stream,
                current,
                held,
            },
            CommandError::RangeConflict {
                stream,
                start,
                end,
                end_offset,
            } => CatalogError::RangeConflict {
                stream,
                start,
                end,
                end_offset,
            },
            CommandError::UnknownStream(s) => CatalogError::UnknownStream(s),
            CommandError::UnknownObject(o) => CatalogError::UnknownObject(o),
            other => CatalogError::Invalid(other.to_string()),
        },
    }
}

fn unexpected(o: Output) -> CatalogError {
    CatalogError::Invalid(format!("unexpected metadata output {o:?}"))
}

#[async_trait]
impl Catalog for MetadataCatalog {
    async fn reserve_object_ids(&self, count: u32) -> Result<Range<u64>, CatalogError> {
        match self.propose(Command::ReserveObjectIds { count }).await? {
            Output::IdRange { start, end } => Ok(start..end),
            o => Err(unexpected(o)),
        }
    }

    async fn stream(&self, stream: StreamId) -> Result<StreamMeta, CatalogError> {
        self.cluster
            .read(|s| s.stream_meta(stream))
            .map(|m| StreamMeta {
                stream: m.stream,
                epoch: m.epoch,
                start_offset: m.start_offset,
                end_offset: m.end_offset,
            })
            .ok_or(CatalogError::UnknownStream(stream))
    }

    async fn commit(&self, commit: Commit) -> Result<(), CatalogError> {
        let commit = mc::ObjectCommit {
            objects: commit
                .objects
                .into_iter()
                .map(|o| mc::NewObject {
                    id: o.id,
                    kind: kind_to_meta(o.kind),
                    size: o.size,
                    ranges: o
                        .ranges
                        .into_iter()
                        .map(|r| mc::CommitRange {
                            stream: r.stream,
                            epoch: r.epoch,
                            start: r.start,
                            end: r.end,
                        })
                        .collect(),
                })
                .collect(),
            replaces: commit.replaces,
        };
        self.propose(Command::CommitObjects {
            commit,
            now_ms: now_ms(),
        })
        .await
        .map(|_| ())
    }

    async fn lookup(
        &self,
        stream: StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ObjectSlice>, CatalogError> {
        self.cluster
            .read(|s| s.lookup(stream, from, limit))
            .map(|v| {
                v.into_iter()
                    .map(|x| ObjectSlice {
                        object: x.object,
                        kind: kind_from_meta(x.kind),
                        object_size: x.object_size,
                        start: x.start,
                        end: x.end,
                    })
                    .collect()
            })
            .ok_or(CatalogError::UnknownStream(stream))
    }

    async fn trim(
        &self,
        stream: StreamId,
        epoch: StreamEpoch,
        new_start: u64,
    ) -> Result<(), CatalogError> {
        self.propose(Command::TrimStream {
            stream,
            epoch,
            new_start,
            now_ms: now_ms(),
        })
        .await
        .map(|_| ())
    }

    async fn list_objects(&self) -> Result<Vec<ObjectInfo>, CatalogError> {
        Ok(self.cluster.read(|s| {
            s.list_objects()
                .into_iter()
                .map(|o| ObjectInfo {
                    id: o.id,
                    kind: kind_from_meta(o.kind),
                    size: o.size,
                    committed_at: SystemTime::UNIX_EPOCH + Duration::from_millis(o.committed_at_ms),
                    ranges: o.ranges,
                })
                .collect()
        }))
    }

    async fn deletable_objects(&self, grace: Duration) -> Result<Vec<ObjectId>, CatalogError> {
        Ok(self
            .cluster
            .read(|s| s.deletable_objects(now_ms(), grace.as_millis() as u64)))
    }

    async fn forget_objects(&self, ids: Vec<ObjectId>) -> Result<(), CatalogError> {
        self.propose(Command::ForgetObjects { ids })
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use skiff_common::{BrokerId, StreamEpoch, StreamId};
    use skiff_metadata::command::{Command, Listener, Output};
    use skiff_storage::catalog_conformance::{CatalogHarness, run_all};

    use super::*;
    use crate::cluster::LocalBackend;

    /// In metadata a stream is a partition's: each new stream is a new
    /// one-partition topic, opened (epoch bumped) on a registered broker.
    struct Harness {
        cluster: Cluster,
        catalog: MetadataCatalog,
        broker_epoch: u64,
        topics: AtomicU64,
        names: parking_lot::Mutex<std::collections::HashMap<StreamId, String>>,
    }

    #[async_trait::async_trait]
    impl CatalogHarness for Harness {
        fn catalog(&self) -> &dyn Catalog {
            &self.catalog
        }

        async fn new_stream(&self) -> StreamId {
            let topic = format!("t{}", self.topics.fetch_add(1, Ordering::Relaxed));
            let out = self
                .cluster
                .propose(Command::CreateTopic {
                    name: topic.clone(),
                    topic_id: uuid::Uuid::new_v4(),
                    partitions: 1,
                    configs: Default::default(),
                })
                .await
                .expect("create topic");
            let Output::TopicCreated { streams, .. } = out else {
                panic!("{out:?}")
            };
            self.names.lock().insert(streams[0], topic);
            streams[0]
        }

        async fn open_stream(&self, stream: StreamId) -> StreamEpoch {
            let topic = self.names.lock()[&stream].clone();
            let out = self
                .cluster
                .propose(Command::AssignPartition {
                    topic,
                    partition: 0,
                    broker: BrokerId(1),
                    broker_epoch: self.broker_epoch,
                    expected_epoch: None,
                })
                .await
                .expect("assign");
            let Output::PartitionAssigned { epoch, .. } = out else {
                panic!("{out:?}")
            };
            epoch
        }
    }

    #[tokio::test]
    async fn metadata_catalog_conforms() {
        let cluster = Cluster::new(LocalBackend::new());
        let out = cluster
            .propose(Command::RegisterBroker {
                broker: BrokerId(1),
                listeners: vec![Listener {
                    name: "PLAINTEXT".into(),
                    host: "localhost".into(),
                    port: 9092,
                }],
                rack: None,
                now_ms: now_ms(),
            })
            .await
            .expect("register");
        let Output::BrokerRegistered { broker_epoch } = out else {
            panic!("{out:?}")
        };
        run_all(&Harness {
            catalog: MetadataCatalog::new(cluster.clone()),
            cluster,
            broker_epoch,
            topics: AtomicU64::new(0),
            names: Default::default(),
        })
        .await;
    }
}
