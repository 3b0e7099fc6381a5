//! Calls to other brokers over the Kafka protocol (the admin client's
//! connection), as Kafka's coordinator and partition leaders make them:
//! WriteTxnMarkers to the owner of a partition in a transaction, and
//! AddPartitionsToTxn `verify_only` (KIP-890) from a partition leader to a
//! transactional id's coordinator. Connections are kept in [`Peers`] and
//! reused, one per concurrent caller.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use skiff_common::BrokerId;
use skiff_wire::kafka_protocol::error::ResponseError as E;
use skiff_wire::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, ProducerId, RequestKind, ResponseKind, TopicName,
    TransactionalId, WriteTxnMarkersRequest,
    add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction},
    write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use super::TXN_TOPIC;
use super::markers::TxnMarker;
use crate::admin::AdminClient;
use crate::broker::Broker;
use crate::errors::KafkaError;

/// How long a request to another broker may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per broker.
const IDLE_PER_PEER: usize = 4;

/// Idle connections to other brokers, by address.
#[derive(Default)]
pub(super) struct Peers {
    idle: Mutex<HashMap<String, Vec<AdminClient>>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("brokers", &self.idle.lock().len())
            .finish()
    }
}

impl Peers {
    /// `api` at `addr`, on an idle connection if there is one. A failure on a
    /// reused connection (the peer restarted) is retried once on a new one.
    /// Transport failures are NOT_LEADER_OR_FOLLOWER: callers retry them.
    async fn call(
        &self,
        addr: &str,
        api: ApiKey,
        body: RequestKind,
    ) -> Result<ResponseKind, KafkaError> {
        let unavailable = |e: String| KafkaError::new(E::NotLeaderOrFollower, e);
        let reused = self.idle.lock().get_mut(addr).and_then(Vec::pop);
        if let Some(mut c) = reused
            && let Ok(resp) = c.call(api, body.clone()).await
        {
            self.put_back(addr, c);
            return Ok(resp);
        }
        let mut c = AdminClient::connect(addr, TIMEOUT)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let resp = c
            .call(api, body)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        self.put_back(addr, c);
        Ok(resp)
    }

    fn put_back(&self, addr: &str, c: AdminClient) {
        let mut idle = self.idle.lock();
        let conns = idle.entry(addr.to_string()).or_default();
        if conns.len() < IDLE_PER_PEER {
            conns.push(c);
        }
    }
}

/// The Kafka listener of `id` when it is another broker.
fn address(broker: &Broker, id: BrokerId) -> Option<String> {
    if id.0 == broker.id() {
        return None;
    }
    broker.cluster.read(|s| {
        let l = s.brokers.get(&id)?.listeners.first()?;
        Some(format!("{}:{}", l.host, l.port))
    })
}

/// The Kafka listener of the partition's owner when it is another broker.
pub(super) fn owner_address(broker: &Broker, topic: &str, partition: i32) -> Option<String> {
    let index = u32::try_from(partition).ok()?;
    let owner = broker.cluster.read(|s| s.partition(topic, index)?.owner)?;
    address(broker, owner)
}

/// The Kafka listener of `transactional_id`'s coordinator when it is
/// another broker.
pub(super) fn coordinator_address(broker: &Broker, transactional_id: &str) -> Option<String> {
    let (_, owner) = broker
        .cluster
        .read(|s| s.coordinator_for(TXN_TOPIC, transactional_id))?;
    address(broker, owner)
}

/// The first non-zero code of a response's partitions, as a result.
fn first_error(
    addr: &str,
    codes: impl IntoIterator<Item = i16>,
    top: i16,
) -> Result<(), KafkaError> {
    let code = std::iter::once(top)
        .chain(codes)
        .find(|c| *c != 0)
        .unwrap_or(0);
    match E::try_from_code(code) {
        None => Ok(()),
        Some(e) => Err(KafkaError::new(e, format!("{addr} answered {e:?}"))),
    }
}

/// WriteTxnMarkers for one partition at `addr`.
pub(super) async fn write_marker(
    peers: &Peers,
    addr: &str,
    topic: &str,
    partition: i32,
    marker: TxnMarker,
) -> Result<i64, KafkaError> {
    let req = WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(marker.producer_id))
            .with_producer_epoch(marker.producer_epoch)
            .with_transaction_result(marker.commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(vec![
                WritableTxnMarkerTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_indexes(vec![partition]),
            ]),
    ]);
    let resp = peers
        .call(
            addr,
            ApiKey::WriteTxnMarkers,
            RequestKind::WriteTxnMarkers(req),
        )
        .await?;
    let ResponseKind::WriteTxnMarkers(resp) = resp else {
        return Err(KafkaError::new(
            E::NotLeaderOrFollower,
            "unexpected answer to WriteTxnMarkers",
        ));
    };
    let codes = resp
        .markers
        .iter()
        .flat_map(|m| m.topics.iter())
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.error_code);
    first_error(addr, codes, 0).map(|()| -1)
}

/// AddPartitionsToTxn `verify_only` for one partition at the coordinator
/// `addr`: `Ok` if the partition is in the producer's ongoing transaction.
pub(super) async fn verify(
    peers: &Peers,
    addr: &str,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    topic: &str,
    partition: i32,
) -> Result<(), KafkaError> {
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(true)
            .with_topics(vec![
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![partition]),
            ]),
    ]);
    let resp = peers
        .call(
            addr,
            ApiKey::AddPartitionsToTxn,
            RequestKind::AddPartitionsToTxn(req),
        )
        .await?;
    let ResponseKind::AddPartitionsToTxn(resp) = resp else {
        return Err(KafkaError::new(
            E::CoordinatorNotAvailable,
            "unexpected answer to AddPartitionsToTxn",
        ));
    };
    if resp.results_by_transaction.is_empty() && resp.error_code == 0 {
        // A broker speaking only v0-v3 cannot verify.
        return Err(KafkaError::new(
            E::CoordinatorNotAvailable,
            format!("{addr} did not verify the transaction"),
        ));
    }
    let codes = resp
        .results_by_transaction
        .iter()
        .flat_map(|t| t.topic_results.iter())
        .flat_map(|t| t.results_by_partition.iter())
        .map(|p| p.partition_error_code);
    first_error(addr, codes, resp.error_code)
}
