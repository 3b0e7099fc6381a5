//! Markers for partitions another broker owns: a WriteTxnMarkers request to
//! that broker over the Kafka protocol (the admin client's connection), as
//! Kafka's coordinator does. One connection per marker batch: markers are
//! written once per partition and transaction, and retried by the caller.

use std::time::Duration;

use skiff_wire::kafka_protocol::error::ResponseError as E;
use skiff_wire::kafka_protocol::messages::{
    ApiKey, ProducerId, RequestKind, ResponseKind, TopicName, WriteTxnMarkersRequest,
    write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use super::markers::TxnMarker;
use crate::admin::AdminClient;
use crate::broker::Broker;
use crate::errors::KafkaError;

/// How long a marker request to another broker may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The Kafka listener of the partition's owner when it is another broker.
pub(super) fn owner_address(broker: &Broker, topic: &str, partition: i32) -> Option<String> {
    let index = u32::try_from(partition).ok()?;
    broker.cluster.read(|s| {
        let owner = s.partition(topic, index)?.owner?;
        if owner.0 == broker.id() {
            return None;
        }
        let l = s.brokers.get(&owner)?.listeners.first()?;
        Some(format!("{}:{}", l.host, l.port))
    })
}

/// WriteTxnMarkers for one partition at `addr`.
pub(super) async fn write_marker(
    addr: &str,
    topic: &str,
    partition: i32,
    marker: TxnMarker,
) -> Result<i64, KafkaError> {
    let unavailable = |e: String| KafkaError::new(E::NotLeaderOrFollower, e);
    let mut c = AdminClient::connect(addr, TIMEOUT)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
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
    let resp = c
        .call(ApiKey::WriteTxnMarkers, RequestKind::WriteTxnMarkers(req))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let ResponseKind::WriteTxnMarkers(resp) = resp else {
        return Err(unavailable("unexpected answer to WriteTxnMarkers".into()));
    };
    let code = resp
        .markers
        .iter()
        .flat_map(|m| m.topics.iter())
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.error_code)
        .find(|c| *c != 0)
        .unwrap_or(0);
    match E::try_from_code(code) {
        None => Ok(-1),
        Some(e) => Err(KafkaError::new(e, format!("{addr} answered {e:?}"))),
    }
}
