//! Produce: validate each partition's batch (Kafka's rules and error codes),
//! hand it to the partition's stream — which assigns offsets, stamped into
//! the batch without re-encoding — and answer once the WAL has made it
//! durable (acks=1/all) or at once with nothing (acks=0).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::join_all;
use skiff_storage::batch::Payload;
use skiff_storage::{PendingAppend, TryAppendError};
use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    ProduceRequest, ProduceResponse, ResponseKind,
    produce_response::{BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use skiff_wire::records::{
    BatchMut, BatchView, ValidateOptions, single_batch, whole_crc_from_stored,
};
use tracing::debug;

use crate::broker::Broker;
use crate::cluster::now_ms;
use crate::errors::code_name;
use crate::errors::{KafkaError, append_error};
use crate::metrics::{ErrorLabels, TopicLabels};
use crate::partitions::Partition;
use crate::producer_state::{BatchInfo, BatchMeta, Check, VerificationGuard, batch_info};
use crate::router::{Admit, RequestContext};
use crate::topic_config::TimestampType;

#[allow(
    clippy::async_yields_async,
    reason = "admit resolves to the respond step by design"
)]
pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, req: ProduceRequest) -> Admit {
    async move {
        let acks = req.acks;
        if !matches!(acks, -1..=1) {
            let resp = error_response(
                req,
                ResponseError::InvalidRequiredAcks,
                "acks must be -1, 0 or 1",
            );
            return futures::future::ready(Some(ResponseKind::Produce(resp).into())).boxed();
        }
        // Admission, in request order: validate and append every partition.
        let mut topics_out = Vec::with_capacity(req.topic_data.len());
        let txn_id = req.transactional_id.as_ref().map(|id| &*id.0);
        for t in req.topic_data {
            let name = t.name.0.to_string();
            let mut parts = Vec::with_capacity(t.partition_data.len());
            for p in t.partition_data {
                parts.push((
                    p.index,
                    admit_partition(&broker, txn_id, &name, p.index, p.records).await,
                ));
            }
            topics_out.push((t.name, t.topic_id, parts));
        }
        if acks == 0 {
            return futures::future::ready(None).boxed();
        }
        // Response, once every append is durable.
        async move {
            let mut responses = Vec::with_capacity(topics_out.len());
            for (name, topic_id, parts) in topics_out {
                let parts = join_all(
                    parts
                        .into_iter()
                        .map(|(index, outcome)| outcome.finish(index)),
                )
                .await;
                responses.push(
                    TopicProduceResponse::default()
                        .with_name(name)
                        .with_topic_id(topic_id)
                        .with_partition_responses(parts),
                );
            }
            Some(ResponseKind::Produce(ProduceResponse::default().with_responses(responses)).into())
        }
        .boxed()
    }
    .boxed()
}

/// One partition's admission result.
enum Admitted {
    Appended {
        pending: PendingAppend,
        partition: Arc<Partition>,
        log_append_time: i64,
        /// The offset assigned at admission.
        base_offset: u64,
        /// `unsafe_ack_before_fsync`: answer without waiting for the WAL.
        unsafe_early_ack: bool,
    },
    /// A retried batch already written: answered with its original offsets
    /// once they are durable.
    Duplicate {
        partition: Arc<Partition>,
        meta: BatchMeta,
    },
    Failed {
        error: KafkaError,
        record_errors: Vec<(i32, String)>,
        /// The partition's log start offset, for refusals by producer state:
        /// the Java client needs it to act on UNKNOWN_PRODUCER_ID (Kafka
        /// sends it with those errors too); -1 otherwise.
        log_start_offset: i64,
    },
}

/// Why a producer's batch was not appended.
enum Refusal {
    Duplicate(BatchMeta),
    Error(KafkaError),
}

impl Admitted {
    fn failed(error: KafkaError) -> Self {
        Admitted::Failed {
            error,
            record_errors: vec![],
            log_start_offset: -1,
        }
    }

    async fn finish(self, index: i32) -> PartitionProduceResponse {
        let r = PartitionProduceResponse::default().with_index(index);
        match self {
            Admitted::Appended {
                pending,
                partition,
                log_append_time,
                base_offset,
                unsafe_early_ack,
            } => match if unsafe_early_ack {
                // The planted fault: the WAL finishes in the background.
                drop(pending);
                Ok(base_offset)
            } else {
                pending.await.map(|res| res.base_offset)
            } {
                Ok(base) => r
                    .with_base_offset(base as i64)
                    .with_log_append_time_ms(log_append_time)
                    .with_log_start_offset(partition.log_start_offset()),
                Err(e) => fail(r, append_error(&e), vec![], -1),
            },
            Admitted::Duplicate { partition, meta } => {
                // The original may still be on its way to the WAL.
                let end = partition
                    .stream
                    .wait_for_data(meta.last_offset as u64)
                    .await;
                if end as i64 > meta.last_offset {
                    r.with_base_offset(meta.first_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(partition.log_start_offset())
                } else {
                    fail(
                        r,
                        KafkaError::new(
                            ResponseError::NotLeaderOrFollower,
                            "the partition closed before the original batch was durable",
                        ),
                        vec![],
                        -1,
                    )
                }
            }
            Admitted::Failed {
                error,
                record_errors,
                log_start_offset,
            } => fail(r, error, record_errors, log_start_offset),
        }
    }
}

fn fail(
    r: PartitionProduceResponse,
    e: KafkaError,
    record_errors: Vec<(i32, String)>,
    log_start_offset: i64,
) -> PartitionProduceResponse {
    r.with_error_code(e.code())
        .with_error_message(Some(StrBytes::from_string(e.message)))
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(log_start_offset)
        .with_record_errors(
            record_errors
                .into_iter()
                .map(|(i, m)| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(i)
                        .with_batch_index_error_message(Some(StrBytes::from_string(m)))
                })
                .collect(),
        )
}

async fn admit_partition(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &str,
    index: i32,
    records: Option<Bytes>,
) -> Admitted {
    let partition = match lookup(broker, topic, index).await {
        Ok(p) => p,
        Err(e) => return Admitted::failed(e),
    };
    let policy = partition.policy();
    let batch = match single_batch(records.as_ref()) {
        Ok(b) => b,
        Err(e) => return batch_failure(e),
    };
    if batch.bytes().len() > policy.max_message_bytes {
        return Admitted::failed(KafkaError::new(
            ResponseError::MessageTooLarge,
            format!(
                "The batch of {} bytes is larger than max.message.bytes ({})",
                batch.bytes().len(),
                policy.max_message_bytes
            ),
        ));
    }
    let opts = ValidateOptions {
        max_decompressed_bytes: broker.config.socket_request_max_bytes as usize * 4,
        ..ValidateOptions::default()
    };
    let summary = match batch.validate(&opts) {
        Ok(s) => s,
        Err(e) => return batch_failure(e),
    };
    let now = now_ms() as i64;
    let log_append_time = match policy.timestamp_type {
        TimestampType::LogAppendTime => now,
        TimestampType::CreateTime => {
            let ts_min = summary.min_timestamp.unwrap_or(batch.base_timestamp());
            let ts_max = summary.max_timestamp.unwrap_or(batch.max_timestamp());
            if !policy.timestamp_in_bounds(ts_min, now) || !policy.timestamp_in_bounds(ts_max, now)
            {
                return Admitted::Failed {
                    error: KafkaError::new(
                        ResponseError::InvalidTimestamp,
                        "Timestamp is out of the range allowed by message.timestamp.before/after.max.ms",
                    ),
                    record_errors: vec![(0, "timestamp out of range".into())],
                    log_start_offset: -1,
                };
            }
            -1
        }
    };
    let records_in_batch = summary.record_count as u32;
    let bytes_len = batch.bytes().len() as u64;
    let leader_epoch = partition.leader_epoch();
    let append_time = policy.timestamp_type == TimestampType::LogAppendTime;
    let producer = (batch.producer_id() >= 0).then(|| batch_info(&batch));
    let verify = broker.config.transaction_partition_verification_enable;
    let guard = match &producer {
        Some(info)
            if verify
                && info.transactional
                && partition.producers.with(|s| s.needs_verification(info)) =>
        {
            match verify_txn(broker, &partition, transactional_id, info).await {
                Ok(g) => Some(g),
                Err(e) => return refused(broker, &partition, topic, index, e),
            }
        }
        _ => None,
    };
    let mut base_offset = 0;
    let pending = partition
        .stream
        .try_append_with(
            records_in_batch,
            |base| {
                if let Some(info) = &producer {
                    match partition.producers.with(|s| {
                        let check = s.check_data(info)?;
                        if verify && check == Check::Append {
                            s.check_verified(info, guard)?;
                        }
                        Ok(check)
                    }) {
                        Ok(Check::Append) => {}
                        Ok(Check::Duplicate(meta)) => return Err(Refusal::Duplicate(meta)),
                        Err(e) => return Err(Refusal::Error(e)),
                    }
                }
                base_offset = base;
                Ok((
                    stamp(&batch, base, leader_epoch, append_time.then_some(now)),
                    base,
                ))
            },
            |base| {
                if let Some(info) = &producer {
                    partition
                        .producers
                        .update(|s| s.apply_data(info, base as i64, now as u64));
                }
            },
        )
        .await;
    if let (Some(info), Some(g)) = (&producer, guard) {
        partition
            .producers
            .update(|s| s.end_verification(info.producer_id, g));
    }
    let pending = match pending {
        Ok(p) => Ok(p),
        Err(TryAppendError::Append(e)) => Err(e),
        Err(TryAppendError::Rejected(Refusal::Duplicate(meta))) => {
            broker.metrics.producer_duplicates.inc();
            return Admitted::Duplicate { partition, meta };
        }
        Err(TryAppendError::Rejected(Refusal::Error(e))) => {
            return refused(broker, &partition, topic, index, e);
        }
    };
    match pending {
        Ok(pending) => {
            let labels = TopicLabels {
                topic: topic.to_string(),
            };
            broker
                .metrics
                .bytes_in
                .get_or_create(&labels)
                .inc_by(bytes_len);
            broker
                .metrics
                .messages_in
                .get_or_create(&labels)
                .inc_by(u64::from(records_in_batch));
            Admitted::Appended {
                pending,
                partition,
                log_append_time,
                base_offset,
                unsafe_early_ack: broker.config.unsafe_ack_before_fsync,
            }
        }
        Err(e) => Admitted::failed(append_error(&e)),
    }
}

/// A batch refused by producer state or transaction verification.
fn refused(
    broker: &Broker,
    partition: &Partition,
    topic: &str,
    index: i32,
    e: KafkaError,
) -> Admitted {
    broker
        .metrics
        .producer_rejections
        .get_or_create(&ErrorLabels {
            error: code_name(e.code()),
        })
        .inc();
    debug!(topic, partition = index, error = %e.message, "refused producer batch");
    Admitted::Failed {
        error: e,
        record_errors: vec![],
        log_start_offset: partition.log_start_offset(),
    }
}

/// KIP-890 part 1: before `info`'s batch starts a transaction on the
/// partition, ask the coordinator whether the partition is in the producer's
/// ongoing transaction (under a guard a marker voids meanwhile).
async fn verify_txn(
    broker: &Broker,
    partition: &Partition,
    transactional_id: Option<&str>,
    info: &BatchInfo,
) -> Result<VerificationGuard, KafkaError> {
    let Some(id) = transactional_id.filter(|id| !id.is_empty()) else {
        // Kafka authorizes the (missing) transactional id and fails the same.
        return Err(KafkaError::new(
            ResponseError::TransactionalIdAuthorizationFailed,
            "a transactional batch needs the produce request's transactional id",
        ));
    };
    broker
        .transactions
        .verify_for_append(broker, partition, id, info.producer_id, info.epoch)
        .await
}

/// The batch as stored: base offset and leader epoch stamped in place (they
/// are outside the crc); for LogAppendTime topics the max timestamp and
/// attribute are set and the crc recomputed.
/// The validated batch as stored: base offset and leader epoch set (and the
/// max timestamp for LogAppendTime topics), with the crc32c of all its bytes
/// derived from its verified crc, so storage's frames need not read it again.
fn stamp(batch: &BatchView, base: u64, leader_epoch: i32, append_time: Option<i64>) -> Payload {
    let mut buf = BytesMut::from(batch.bytes().as_ref());
    if let Ok(mut m) = BatchMut::new(&mut buf) {
        m.set_base_offset(base as i64);
        m.set_partition_leader_epoch(leader_epoch);
        if let Some(t) = append_time {
            // Recomputes the stored crc when it changes anything.
            m.set_max_timestamp(skiff_wire::records::TimestampType::LogAppendTime, t);
        }
    }
    match whole_crc_from_stored(&buf) {
        Some(crc) => Payload::with_crc(buf.freeze(), crc),
        None => Payload::new(buf.freeze()),
    }
}

fn batch_failure(e: skiff_wire::records::BatchError) -> Admitted {
    let code =
        ResponseError::try_from_code(e.error_code()).unwrap_or(ResponseError::CorruptMessage);
    debug!(error = %e, "rejected produce batch");
    Admitted::Failed {
        record_errors: e
            .record_index()
            .map(|i| vec![(i as i32, e.to_string())])
            .unwrap_or_default(),
        error: KafkaError::new(code, e.to_string()),
        log_start_offset: -1,
    }
}

/// The partition. As in Kafka, Produce does not create topics: clients
/// learn of a missing topic here and ask Metadata, which auto-creates.
async fn lookup(broker: &Broker, topic: &str, index: i32) -> Result<Arc<Partition>, KafkaError> {
    broker.partitions.get(topic, index).await
}

/// The same error for every partition of a request.
fn error_response(req: ProduceRequest, code: ResponseError, msg: &str) -> ProduceResponse {
    let responses = req
        .topic_data
        .into_iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(
                    t.partition_data
                        .into_iter()
                        .map(|p| {
                            fail(
                                PartitionProduceResponse::default().with_index(p.index),
                                KafkaError::new(code, msg),
                                vec![],
                                -1,
                            )
                        })
                        .collect(),
                )
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
