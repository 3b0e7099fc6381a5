//! WriteTxnMarkers (v1): write COMMIT/ABORT markers on partitions this
//! broker leads (`PartitionManager::write_txn_marker`). Sent by transaction
//! coordinators, and by admin tooling to abort a hanging transaction
//! (`kafka-transactions.sh abort`).

use std::sync::Arc;

use futures::future::join_all;
use skiff_wire::kafka_protocol::messages::{
    ResponseKind, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
    write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    },
};

use crate::broker::Broker;
use crate::producer_state::TxnMarker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: WriteTxnMarkersRequest,
) -> Admit {
    respond_after(async move {
        let mut results = Vec::with_capacity(req.markers.len());
        for m in req.markers {
            let marker = TxnMarker {
                producer_id: m.producer_id.0,
                producer_epoch: m.producer_epoch,
                coordinator_epoch: m.coordinator_epoch,
                commit: m.transaction_result,
            };
            let mut topics = Vec::with_capacity(m.topics.len());
            for t in m.topics {
                let name = t.name.0.to_string();
                let parts = join_all(t.partition_indexes.iter().map(|&i| {
                    let broker = &broker;
                    let name = &name;
                    async move {
                        let code =
                            match crate::transactions::write_local_marker(broker, name, i, marker)
                                .await
                            {
                                Ok(_) => 0,
                                Err(e) => e.code(),
                            };
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(i)
                            .with_error_code(code)
                    }
                }))
                .await;
                topics.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(t.name)
                        .with_partitions(parts),
                );
            }
            results.push(
                WritableTxnMarkerResult::default()
                    .with_producer_id(m.producer_id)
                    .with_topics(topics),
            );
        }
        ResponseKind::WriteTxnMarkers(WriteTxnMarkersResponse::default().with_markers(results))
    })
}
