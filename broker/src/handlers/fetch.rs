//! Fetch: read whole batches from each partition within the partition and
//! response byte limits, and long-poll — woken by appends — until
//! `min_bytes` are there or `max_wait_ms` has passed. Fetch sessions are
//! declined (session id 0 in every response), which KIP-227 allows: clients
//! then send full fetch requests, as the Java client does against brokers
//! without session slots.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use skiff_storage::ReadError;
use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ResponseKind, TopicName,
    fetch_response::{FetchableTopicResponse, LeaderIdAndEpoch, PartitionData},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::errors::KafkaError;
use crate::metrics::TopicLabels;
use crate::partitions::Partition;
use crate::router::{Admit, RequestContext};

/// Kafka's isolation levels.
const READ_COMMITTED: i8 = 1;
/// Longest long poll we honour, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub(super) fn handle(broker: Arc<Broker>, ctx: RequestContext, req: FetchRequest) -> Admit {
    // Nothing in a fetch changes state, so the whole wait is in the respond step
    // and later requests on the connection are not held up by a long poll.
    futures::future::ready(
        async move { Some(ResponseKind::Fetch(fetch(&broker, &ctx, req).await)) }.boxed(),
    )
    .boxed()
}

struct Target {
    topic: TopicName,
    topic_id: uuid::Uuid,
    partitions: Vec<skiff_wire::kafka_protocol::messages::fetch_request::FetchPartition>,
}

async fn fetch(broker: &Broker, ctx: &RequestContext, req: FetchRequest) -> FetchResponse {
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let read_committed = req.isolation_level == READ_COMMITTED;
    // Resolve names (v13+ addresses topics by id).
    let targets: Vec<Target> = req
        .topics
        .into_iter()
        .map(|t| {
            let name = if ctx.api_version >= 13 {
                broker
                    .cluster
                    .read(|s| s.topic_by_id(t.topic_id).map(|x| x.name.clone()))
                    .map(|n| TopicName(StrBytes::from_string(n)))
                    .unwrap_or_default()
            } else {
                t.topic
            };
            Target {
                topic: name,
                topic_id: t.topic_id,
                partitions: t.partitions,
            }
        })
        .collect();
    loop {
        let mut watchers: Vec<watch::Receiver<u64>> = Vec::new();
        let mut total = 0usize;
        let mut any_error = false;
        let mut responses = Vec::with_capacity(targets.len());
        for t in &targets {
            let name = t.topic.0.to_string();
            let mut parts = Vec::with_capacity(t.partitions.len());
            for fp in &t.partitions {
                let data = PartitionData::default()
                    .with_partition_index(fp.partition)
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
                    .with_preferred_read_replica(BrokerId(-1))
                    .with_aborted_transactions(read_committed.then(Vec::new));
                let unknown_id = ctx.api_version >= 13 && name.is_empty();
                let partition = if unknown_id {
                    Err(KafkaError::new(
                        ResponseError::UnknownTopicId,
                        "unknown topic id",
                    ))
                } else {
                    broker.partitions.get(&name, fp.partition).await
                };
                let partition =
                    match partition.and_then(|p| check_epoch(p, fp.current_leader_epoch)) {
                        Ok(p) => p,
                        Err(e) => {
                            any_error = true;
                            parts.push(data.with_error_code(e.code()));
                            continue;
                        }
                    };
                watchers.push(partition.stream.subscribe());
                let remaining = max_bytes.saturating_sub(total);
                let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
                let data = data.with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(broker.id()))
                        .with_leader_epoch(partition.leader_epoch()),
                );
                match read_partition(&partition, fp.fetch_offset, limit, total == 0).await {
                    Ok(records) => {
                        total += records.len();
                        if !records.is_empty() {
                            broker
                                .metrics
                                .bytes_out
                                .get_or_create(&TopicLabels {
                                    topic: name.clone(),
                                })
                                .inc_by(records.len() as u64);
                        }
                        let hw = partition.high_watermark();
                        parts.push(
                            data.with_high_watermark(hw)
                                .with_last_stable_offset(hw)
                                .with_log_start_offset(partition.log_start_offset())
                                .with_records(Some(records.freeze())),
                        );
                    }
                    Err(e) => {
                        any_error = true;
                        parts.push(
                            data.with_error_code(e.code())
                                .with_high_watermark(partition.high_watermark())
                                .with_last_stable_offset(partition.high_watermark())
                                .with_log_start_offset(partition.log_start_offset()),
                        );
                    }
                }
            }
            responses.push(
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(parts),
            );
        }
        let done = total >= min_bytes.max(1)
            || any_error
            || watchers.is_empty()
            || tokio::time::Instant::now() >= deadline
            || broker.shutdown.is_cancelled();
        if done {
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
        wait_for_any(watchers, deadline, &broker.shutdown).await;
    }
}

/// Compare the client's view of the leader epoch with ours (v9+).
fn check_epoch(p: Arc<Partition>, client_epoch: i32) -> Result<Arc<Partition>, KafkaError> {
    if client_epoch < 0 {
        return Ok(p);
    }
    let ours = p.leader_epoch();
    if client_epoch < ours {
        Err(KafkaError::new(
            ResponseError::FencedLeaderEpoch,
            "stale leader epoch",
        ))
    } else if client_epoch > ours {
        Err(KafkaError::new(
            ResponseError::UnknownLeaderEpoch,
            "leader epoch not yet known",
        ))
    } else {
        Ok(p)
    }
}

/// Read from `offset` up to `limit` bytes. The first partition with data in
/// a response returns at least one whole batch even if it is larger than the
/// limits (KIP-74), so a consumer always progresses; later ones stop at the limit.
async fn read_partition(
    p: &Partition,
    offset: i64,
    limit: usize,
    first: bool,
) -> Result<BytesMut, KafkaError> {
    let start = p.log_start_offset();
    let end = p.high_watermark();
    if offset < start || offset > end {
        return Err(KafkaError::new(
            ResponseError::OffsetOutOfRange,
            format!("offset {offset} is outside {start}..={end}"),
        ));
    }
    let mut out = BytesMut::new();
    if offset == end || (limit == 0 && !first) {
        return Ok(out);
    }
    let batches = p
        .stream
        .read(offset as u64, limit.max(1))
        .await
        .map_err(|e| read_error(&e))?;
    for b in batches {
        if (!out.is_empty() || !first) && out.len() + b.payload.len() > limit {
            break;
        }
        out.extend_from_slice(&b.payload);
    }
    Ok(out)
}

/// The one place storage read errors become Kafka codes.
pub(crate) fn read_error(e: &ReadError) -> KafkaError {
    let code = match e {
        ReadError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        ReadError::Closed(_) => ResponseError::NotLeaderOrFollower,
        _ => ResponseError::KafkaStorageError,
    };
    KafkaError::new(code, e.to_string())
}

async fn wait_for_any(
    watchers: Vec<watch::Receiver<u64>>,
    deadline: tokio::time::Instant,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    let changed = futures::future::select_all(watchers.into_iter().map(|mut rx| {
        async move {
            let _ = rx.changed().await;
        }
        .boxed()
    }));
    tokio::select! {
        _ = changed => {}
        _ = tokio::time::sleep_until(deadline) => {}
        _ = shutdown.cancelled() => {}
    }
}
