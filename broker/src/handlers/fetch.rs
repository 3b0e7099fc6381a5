//! Fetch: read whole batches from each partition within the partition and
//! response byte limits, and long-poll — woken by appends — until
//! `min_bytes` are there or `max_wait_ms` has passed. Fetch sessions
//! (KIP-227) are kept in [`crate::fetch_session`]: this handler asks it which
//! partitions a request covers and which of them the response carries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use skiff_storage::ReadError;
use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName,
    fetch_response::{AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use skiff_wire::spliced::SplicedFetch;
use tokio::sync::watch;
use tracing::debug;

use crate::broker::Broker;
use crate::errors::KafkaError;
use crate::fetch_session::{INVALID_SESSION_ID, Observed, PartitionKey, Wanted};
use crate::metrics::TopicLabels;
use crate::partitions::Partition;
use crate::router::{Admit, RequestContext, Response};

/// Kafka's isolation levels.
const READ_COMMITTED: i8 = 1;
/// Longest long poll we honour, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub(super) fn handle(broker: Arc<Broker>, ctx: RequestContext, req: FetchRequest) -> Admit {
    // Nothing in a fetch changes state, so the whole wait is in the respond step
    // and later requests on the connection are not held up by a long poll.
    futures::future::ready(
        async move { Some(Response::Fetch(fetch(&broker, &ctx, req).await)) }.boxed(),
    )
    .boxed()
}

/// One partition of a response being built: its fields, and the stored
/// batches that become its records (empty on errors).
struct Part {
    data: PartitionData,
    batches: Vec<Bytes>,
}

impl Part {
    fn error(data: PartitionData) -> Self {
        Self {
            data,
            batches: Vec::new(),
        }
    }
}

/// One topic of the response, with the session's partitions to fetch.
struct Target {
    topic: TopicName,
    topic_id: uuid::Uuid,
    partitions: Vec<(PartitionKey, Wanted)>,
}

/// The session key of each requested partition: by topic id from v13 on,
/// by name before.
fn request_keys(ctx: &RequestContext, req: &FetchRequest) -> Vec<(PartitionKey, Wanted)> {
    let by_id = ctx.api_version >= 13;
    let mut out = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            out.push((
                key(by_id, t.topic_id, &t.topic, p.partition),
                Wanted {
                    fetch_offset: p.fetch_offset,
                    partition_max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                },
            ));
        }
    }
    out
}

fn key(by_id: bool, topic_id: uuid::Uuid, topic: &TopicName, partition: i32) -> PartitionKey {
    PartitionKey {
        topic_id: if by_id { topic_id } else { uuid::Uuid::nil() },
        topic: if by_id {
            String::new()
        } else {
            topic.0.to_string()
        },
        partition,
    }
}

/// Group the plan's partitions into topics (consecutive runs), resolving
/// topic ids to names.
fn targets(broker: &Broker, plan: Vec<(PartitionKey, Wanted)>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for (k, w) in plan {
        let same = out.last().is_some_and(|t| {
            let first = &t.partitions[0].0;
            first.topic_id == k.topic_id && first.topic == k.topic
        });
        if !same {
            let name = if k.topic_id.is_nil() {
                k.topic.clone()
            } else {
                broker
                    .cluster
                    .read(|s| s.topic_by_id(k.topic_id).map(|x| x.name.clone()))
                    .unwrap_or_default()
            };
            out.push(Target {
                topic: TopicName(StrBytes::from_string(name)),
                topic_id: k.topic_id,
                partitions: Vec::new(),
            });
        }
        if let Some(t) = out.last_mut() {
            t.partitions.push((k, w));
        }
    }
    out
}

async fn fetch(broker: &Broker, ctx: &RequestContext, req: FetchRequest) -> SplicedFetch {
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let read_committed = req.isolation_level == READ_COMMITTED;
    let by_id = ctx.api_version >= 13;
    let forgotten: Vec<PartitionKey> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| key(by_id, t.topic_id, &t.topic, *p))
        })
        .collect();
    let requested = request_keys(ctx, &req);
    let plan = match broker.fetch_sessions.begin(
        req.session_id,
        req.session_epoch,
        requested,
        &forgotten,
        std::time::Instant::now(),
    ) {
        Ok(plan) => plan,
        Err(code) => {
            debug!(peer = %ctx.peer, session = req.session_id, epoch = req.session_epoch, ?code, "fetch session error");
            return SplicedFetch {
                response: FetchResponse::default()
                    .with_error_code(code.code())
                    .with_session_id(INVALID_SESSION_ID),
                sets: Vec::new(),
            };
        }
    };
    let kind = plan.kind;
    let targets = targets(broker, plan.partitions);
    loop {
        let mut watchers: Vec<watch::Receiver<u64>> = Vec::new();
        let mut total = 0usize;
        let mut any_error = false;
        let mut responses = Vec::with_capacity(targets.len());
        let mut observed = Vec::new();
        for t in &targets {
            let name = t.topic.0.to_string();
            let mut parts = Vec::with_capacity(t.partitions.len());
            for (k, fp) in &t.partitions {
                let data = PartitionData::default()
                    .with_partition_index(k.partition)
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
                    .with_preferred_read_replica(BrokerId(-1))
                    .with_aborted_transactions(read_committed.then(Vec::new));
                let unknown_id = by_id && name.is_empty();
                let partition = if unknown_id {
                    Err(KafkaError::new(
                        ResponseError::UnknownTopicId,
                        "unknown topic id",
                    ))
                } else {
                    broker.partitions.get(&name, k.partition).await
                };
                let partition =
                    match partition.and_then(|p| check_epoch(p, fp.current_leader_epoch)) {
                        Ok(p) => p,
                        Err(e) => {
                            any_error = true;
                            parts.push(Part::error(data.with_error_code(e.code())));
                            continue;
                        }
                    };
                watchers.push(partition.stream.subscribe());
                if read_committed {
                    watchers.push(partition.producers.subscribe());
                }
                let remaining = max_bytes.saturating_sub(total);
                let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
                let data = data.with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(broker.id()))
                        .with_leader_epoch(partition.leader_epoch()),
                );
                let hw = partition.high_watermark();
                let lso = partition.producers.last_stable_offset(hw);
                let upper = if read_committed { lso } else { hw };
                match read_partition(&partition, fp.fetch_offset, upper, limit, total == 0).await {
                    Ok(Read {
                        batches,
                        bytes,
                        fetched_end,
                    }) => {
                        total += bytes;
                        if bytes > 0 {
                            broker
                                .metrics
                                .bytes_out
                                .get_or_create(&TopicLabels {
                                    topic: name.clone(),
                                })
                                .inc_by(bytes as u64);
                        }
                        let data = if read_committed && fetched_end > fp.fetch_offset {
                            data.with_aborted_transactions(Some(aborted(
                                &partition,
                                fp.fetch_offset,
                                fetched_end,
                            )))
                        } else {
                            data
                        };
                        parts.push(Part {
                            data: data
                                .with_high_watermark(hw)
                                .with_last_stable_offset(lso)
                                .with_log_start_offset(partition.log_start_offset()),
                            batches,
                        });
                    }
                    Err(e) => {
                        any_error = true;
                        parts.push(Part::error(
                            data.with_error_code(e.code())
                                .with_high_watermark(hw)
                                .with_last_stable_offset(lso)
                                .with_log_start_offset(partition.log_start_offset()),
                        ));
                    }
                }
            }
            for (part, (k, _)) in parts.iter().zip(&t.partitions) {
                observed.push((k.clone(), observe(part)));
            }
            responses.push((t, parts));
        }
        let done = total >= min_bytes.max(1)
            || any_error
            || watchers.is_empty()
            || tokio::time::Instant::now() >= deadline
            || broker.shutdown.is_cancelled();
        if done {
            let include = broker.fetch_sessions.finish(kind, &observed);
            return response(kind.response_id(), responses, &include);
        }
        wait_for_any(watchers, deadline, &broker.shutdown).await;
    }
}

/// What a response tells the client about a partition.
fn observe(p: &Part) -> Observed {
    Observed {
        high_watermark: p.data.high_watermark,
        last_stable_offset: p.data.last_stable_offset,
        log_start_offset: p.data.log_start_offset,
        has_records: !p.batches.is_empty(),
        error: p.data.error_code != 0,
    }
}

/// The response: the partitions an incremental fetch includes (`include` is
/// in response order), topics left with none dropped, each partition's
/// batches spliced in as its records.
fn response(session_id: i32, topics: Vec<(&Target, Vec<Part>)>, include: &[bool]) -> SplicedFetch {
    let mut flags = include.iter().copied();
    let mut sets = Vec::new();
    let mut responses = Vec::with_capacity(topics.len());
    for (t, parts) in topics {
        let mut partitions = Vec::with_capacity(parts.len());
        for p in parts {
            if flags.next().unwrap_or(true) {
                partitions.push(p.data.with_records(Some(Bytes::new())));
                sets.push(p.batches);
            }
        }
        if !partitions.is_empty() {
            responses.push(
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(partitions),
            );
        }
    }
    SplicedFetch {
        response: FetchResponse::default()
            .with_session_id(session_id)
            .with_responses(responses),
        sets,
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

/// The aborted transactions a read_committed consumer must know about to
/// filter `[from, to)`.
fn aborted(p: &Partition, from: i64, to: i64) -> Vec<AbortedTransaction> {
    p.producers
        .with(|s| s.aborted_between(from, to))
        .into_iter()
        .map(|a| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(a.producer_id))
                .with_first_offset(a.first_offset)
        })
        .collect()
}

/// What [`read_partition`] returns: the stored batches, their total size
/// and the offset after the last one.
struct Read {
    batches: Vec<Bytes>,
    bytes: usize,
    fetched_end: i64,
}

/// Read from `offset` up to `limit` bytes, only batches below `upper` (the
/// high watermark, or the last stable offset for read_committed). The first
/// partition with data in a response returns at least one whole batch even
/// if it is larger than the limits (KIP-74), so a consumer always
/// progresses; later ones stop at the limit. The batches are storage's own
/// buffers, not copied (the response is written from them).
async fn read_partition(
    p: &Partition,
    offset: i64,
    upper: i64,
    limit: usize,
    first: bool,
) -> Result<Read, KafkaError> {
    let start = p.log_start_offset();
    let end = p.high_watermark();
    if offset < start || offset > end {
        return Err(KafkaError::new(
            ResponseError::OffsetOutOfRange,
            format!("offset {offset} is outside {start}..={end}"),
        ));
    }
    let mut out = Read {
        batches: Vec::new(),
        bytes: 0,
        fetched_end: offset,
    };
    if offset >= upper || (limit == 0 && !first) {
        return Ok(out);
    }
    let batches = p
        .stream
        .read(offset as u64, limit.max(1))
        .await
        .map_err(|e| read_error(&e))?;
    for b in batches {
        if b.base_offset as i64 >= upper {
            break;
        }
        if (out.bytes > 0 || !first) && out.bytes + b.payload.len() > limit {
            break;
        }
        out.bytes += b.payload.len();
        out.fetched_end = b.end_offset() as i64;
        out.batches.push(b.payload);
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
