//! [`ProducerIdManager`]: hands out producer ids (InitProducerId) from blocks
//! that metadata allocates to this broker (`Command::AllocateProducerIds`),
//! so ids are unique cluster-wide without a metadata round trip per id.
//!
//! When the current block runs low, the caller that crosses the threshold
//! fetches the next block while others keep using the rest of the current
//! one; only when both are empty does a caller wait for metadata.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use skiff_common::BrokerId;
use skiff_metadata::command::{Command, Output};
use skiff_wire::kafka_protocol::error::ResponseError;

use crate::cluster::Cluster;
use crate::errors::KafkaError;

/// Ids per block (Kafka's `ProducerIdsBlock` size).
pub const BLOCK_SIZE: u32 = 1000;
/// Fetch the next block when fewer than this many ids are left.
const PREFETCH_BELOW: u64 = (BLOCK_SIZE / 10) as u64;

#[derive(Debug, Default)]
struct Blocks {
    current: Range<u64>,
    next: Option<Range<u64>>,
    fetching: bool,
}

/// Producer ids of this broker.
#[derive(Debug)]
pub struct ProducerIdManager {
    cluster: Cluster,
    broker: BrokerId,
    /// The broker's registration epoch (shared with `NodeIdentity`).
    broker_epoch: Arc<AtomicU64>,
    blocks: Mutex<Blocks>,
    /// Serializes the fetches of a caller that must wait.
    fetch: tokio::sync::Mutex<()>,
}

impl ProducerIdManager {
    pub fn new(cluster: Cluster, broker: BrokerId, broker_epoch: Arc<AtomicU64>) -> Self {
        Self {
            cluster,
            broker,
            broker_epoch,
            blocks: Mutex::default(),
            fetch: tokio::sync::Mutex::new(()),
        }
    }

    /// A producer id no one else has been given.
    pub async fn next_producer_id(&self) -> Result<i64, KafkaError> {
        loop {
            let prefetch = {
                let mut b = self.blocks.lock();
                if b.current.is_empty()
                    && let Some(next) = b.next.take()
                {
                    b.current = next;
                }
                if let Some(id) = b.current.next() {
                    let low = b.current.end - b.current.start < PREFETCH_BELOW;
                    let prefetch = low && b.next.is_none() && !b.fetching;
                    if prefetch {
                        b.fetching = true;
                    }
                    if prefetch {
                        Some(id)
                    } else {
                        return to_id(id);
                    }
                } else {
                    None
                }
            };
            match prefetch {
                Some(id) => {
                    let block = self.allocate().await;
                    let mut b = self.blocks.lock();
                    b.fetching = false;
                    if let Ok(block) = block {
                        b.next = Some(block);
                    }
                    // The id is ours either way; a failed prefetch is retried
                    // by a later caller.
                    return to_id(id);
                }
                None => {
                    let _one = self.fetch.lock().await;
                    if !self.blocks.lock().current.is_empty() {
                        continue;
                    }
                    let block = self.allocate().await?;
                    self.blocks.lock().current = block;
                }
            }
        }
    }

    async fn allocate(&self) -> Result<Range<u64>, KafkaError> {
        let out = self
            .cluster
            .propose(Command::AllocateProducerIds {
                broker: self.broker,
                broker_epoch: self.broker_epoch.load(Ordering::Acquire),
                count: BLOCK_SIZE,
            })
            .await
            .map_err(|e| {
                let mut k = KafkaError::from(&e);
                // The client retries InitProducerId on this code.
                if k.code != ResponseError::CoordinatorNotAvailable {
                    k.code = ResponseError::CoordinatorLoadInProgress;
                }
                k
            })?;
        match out {
            Output::IdRange { start, end } => Ok(start..end),
            other => Err(KafkaError::new(
                ResponseError::UnknownServerError,
                format!("metadata answered AllocateProducerIds with {other:?}"),
            )),
        }
    }
}

fn to_id(id: u64) -> Result<i64, KafkaError> {
    i64::try_from(id).map_err(|_| {
        KafkaError::new(
            ResponseError::UnknownServerError,
            "producer ids are exhausted",
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::cluster::LocalBackend;

    #[tokio::test]
    async fn ids_are_unique_across_blocks_and_managers() {
        let cluster = Cluster::new(LocalBackend::new());
        let reg = cluster
            .propose(Command::RegisterBroker {
                broker: BrokerId(1),
                listeners: vec![skiff_metadata::command::Listener {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9092,
                }],
                rack: None,
                now_ms: crate::cluster::now_ms(),
            })
            .await;
        let epoch = match reg {
            Ok(Output::BrokerRegistered { broker_epoch }) => broker_epoch,
            other => panic!("{other:?}"),
        };
        let e = Arc::new(AtomicU64::new(epoch));
        let a = ProducerIdManager::new(cluster.clone(), BrokerId(1), e.clone());
        let b = ProducerIdManager::new(cluster, BrokerId(1), e);
        let mut seen = HashSet::new();
        for _ in 0..(BLOCK_SIZE * 2 + 10) {
            assert!(seen.insert(a.next_producer_id().await.expect("id")));
            assert!(seen.insert(b.next_producer_id().await.expect("id")));
        }
    }
}
