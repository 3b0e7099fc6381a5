//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, v7+),
//! earliest-local (-4, v8+; the same as earliest here: every byte is in the
//! object store) and by timestamp.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, ResponseKind,
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
};

use crate::broker::Broker;
use crate::errors::KafkaError;
use crate::log_search;
use crate::router::{Admit, RequestContext, respond_after};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, req: ListOffsetsRequest) -> Admit {
    respond_after(async move {
        // READ_COMMITTED consumers see the last stable offset as LATEST.
        let committed = req.isolation_level == 1;
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.0.to_string();
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let r =
                    ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                parts.push(
                    match lookup(&broker, &name, p.partition_index, p.timestamp, committed).await {
                        Ok((offset, timestamp, epoch)) => r
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(epoch),
                        Err(e) => r
                            .with_error_code(e.code())
                            .with_offset(-1)
                            .with_timestamp(-1)
                            .with_leader_epoch(-1),
                    },
                );
            }
            topics.push(
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(parts),
            );
        }
        ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
    })
}

async fn lookup(
    broker: &Broker,
    topic: &str,
    partition: i32,
    ts: i64,
    committed: bool,
) -> Result<(i64, i64, i32), KafkaError> {
    let p = broker.partitions.get(topic, partition).await?;
    let epoch = p.leader_epoch();
    Ok(match ts {
        LATEST if committed => (
            p.producers.last_stable_offset(p.high_watermark()),
            -1,
            epoch,
        ),
        LATEST => (p.high_watermark(), -1, epoch),
        EARLIEST | EARLIEST_LOCAL => (p.log_start_offset(), -1, epoch),
        MAX_TIMESTAMP => match log_search::max_timestamp(&p).await? {
            Some(f) => (f.offset, f.timestamp, epoch),
            None => (-1, -1, epoch),
        },
        ts if ts >= 0 => match log_search::offset_for_timestamp(&p, ts).await? {
            Some(f) => (f.offset, f.timestamp, epoch),
            // Kafka: no record at or after the time -> offset -1, timestamp -1.
            None => (-1, -1, epoch),
        },
        other => {
            return Err(KafkaError::new(
                skiff_wire::kafka_protocol::error::ResponseError::InvalidRequest,
                format!("unsupported ListOffsets timestamp {other}"),
            ));
        }
    })
}
