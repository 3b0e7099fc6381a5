//! DeleteRecords: move partitions' log start offsets forward; the data below
//! becomes unreadable at once and its objects are deleted by storage GC.

use std::sync::Arc;

use skiff_storage::TrimError;
use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ResponseKind,
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
};

use crate::broker::Broker;
use crate::errors::KafkaError;
use crate::router::{Admit, RequestContext, respond_after};

/// Offset -1 in a request: up to the high watermark.
const HIGH_WATERMARK: i64 = -1;

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: DeleteRecordsRequest,
) -> Admit {
    respond_after(async move {
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.0.to_string();
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let r =
                    DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                parts.push(
                    match delete(&broker, &name, p.partition_index, p.offset).await {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => r.with_error_code(e.code()).with_low_watermark(-1),
                    },
                );
            }
            topics.push(
                DeleteRecordsTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(parts),
            );
        }
        ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
    })
}

async fn delete(
    broker: &Broker,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64, KafkaError> {
    let p = broker.partitions.get(topic, partition).await?;
    let hw = p.high_watermark();
    let target = if offset == HIGH_WATERMARK { hw } else { offset };
    if target < 0 || target > hw {
        return Err(KafkaError::new(
            ResponseError::OffsetOutOfRange,
            format!("offset {offset} is beyond the high watermark {hw}"),
        ));
    }
    match p.stream.trim(target as u64).await {
        Ok(start) => Ok(start as i64),
        Err(TrimError::Fenced(_)) => Err(KafkaError::new(
            ResponseError::NotLeaderOrFollower,
            "partition moved",
        )),
        Err(e) => Err(KafkaError::new(
            ResponseError::KafkaStorageError,
            e.to_string(),
        )),
    }
}
