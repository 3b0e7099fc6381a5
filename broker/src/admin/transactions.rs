//! `skiff admin transactions list | describe | abort`.
//!
//! `abort` ends a hanging transaction on one partition the way Kafka's
//! `kafka-transactions.sh abort` does: DescribeProducers finds the producer
//! whose open transaction starts at `--start-offset` (or the producer is
//! given with `--producer-id`/`--producer-epoch`/`--coordinator-epoch`), then
//! WriteTxnMarkers writes an ABORT marker for it. The bootstrap broker is
//! asked (single-node brokers; multi-node lookup is to come).

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;
use skiff_wire::kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest,
    ProducerId, RequestKind, ResponseKind, TopicName, TransactionalId, WriteTxnMarkersRequest,
    describe_producers_request::TopicRequest,
    write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic},
};

use super::{AdminClient, AdminError, Output, failed, s, table, unexpected};

#[derive(Debug, Subcommand)]
pub enum TransactionsCommand {
    /// List transactions with their producer id and state.
    List {
        /// Only these states (e.g. Ongoing, PrepareCommit).
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only these producer ids.
        #[arg(long = "producer-id")]
        producer_ids: Vec<i64>,
        /// Only transactions running at least this long (ms).
        #[arg(long)]
        duration_ms: Option<i64>,
    },
    /// Describe a transactional id: producer, state, timeout, partitions.
    Describe { transactional_id: String },
    /// Abort a hanging transaction on one partition.
    Abort {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The offset where the hanging transaction starts (from
        /// DescribeProducers).
        #[arg(long, conflicts_with = "producer_id")]
        start_offset: Option<i64>,
        #[arg(long, requires_all = ["producer_epoch", "coordinator_epoch"])]
        producer_id: Option<i64>,
        #[arg(long)]
        producer_epoch: Option<i16>,
        #[arg(long)]
        coordinator_epoch: Option<i32>,
    },
}

pub(super) async fn run(
    bootstrap: &str,
    timeout: Duration,
    output: Output,
    cmd: TransactionsCommand,
) -> Result<String, AdminError> {
    let mut c = AdminClient::connect(bootstrap, timeout).await?;
    match cmd {
        TransactionsCommand::List {
            states,
            producer_ids,
            duration_ms,
        } => {
            let req = ListTransactionsRequest::default()
                .with_state_filters(states.iter().map(|x| s(x)).collect())
                .with_producer_id_filters(producer_ids.into_iter().map(ProducerId).collect())
                .with_duration_filter(duration_ms.unwrap_or(-1));
            let ResponseKind::ListTransactions(resp) = c
                .call(ApiKey::ListTransactions, RequestKind::ListTransactions(req))
                .await?
            else {
                return Err(unexpected());
            };
            if resp.error_code != 0 {
                return Err(failed("listing transactions", resp.error_code));
            }
            if !resp.unknown_state_filters.is_empty() {
                let names: Vec<String> = resp
                    .unknown_state_filters
                    .iter()
                    .map(|x| x.to_string())
                    .collect();
                return Err(AdminError::Usage(format!(
                    "unknown states: {}",
                    names.join(", ")
                )));
            }
            let rows: Vec<Vec<String>> = resp
                .transaction_states
                .iter()
                .map(|t| {
                    vec![
                        t.transactional_id.0.to_string(),
                        t.producer_id.0.to_string(),
                        t.transaction_state.to_string(),
                    ]
                })
                .collect();
            Ok(match output {
                Output::Json => serde_json::Value::Array(
                    rows.iter()
                        .map(|r| {
                            json!({"transactional_id": r[0], "producer_id": r[1].parse::<i64>().unwrap_or(-1), "state": r[2]})
                        })
                        .collect(),
                )
                .to_string(),
                Output::Human => table(&["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"], &rows),
            })
        }
        TransactionsCommand::Describe { transactional_id } => {
            let req = DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s(&transactional_id))]);
            let ResponseKind::DescribeTransactions(resp) = c
                .call(
                    ApiKey::DescribeTransactions,
                    RequestKind::DescribeTransactions(req),
                )
                .await?
            else {
                return Err(unexpected());
            };
            let t = resp.transaction_states.first().ok_or_else(unexpected)?;
            if t.error_code != 0 {
                return Err(failed(
                    &format!("describing {transactional_id}"),
                    t.error_code,
                ));
            }
            let partitions: Vec<String> = t
                .topics
                .iter()
                .flat_map(|x| {
                    x.partitions
                        .iter()
                        .map(move |p| format!("{}-{p}", &*x.topic.0))
                })
                .collect();
            Ok(match output {
                Output::Json => json!({
                    "transactional_id": transactional_id,
                    "producer_id": t.producer_id.0,
                    "producer_epoch": t.producer_epoch,
                    "state": t.transaction_state.to_string(),
                    "timeout_ms": t.transaction_timeout_ms,
                    "start_time_ms": t.transaction_start_time_ms,
                    "partitions": partitions,
                })
                .to_string(),
                Output::Human => table(
                    &[
                        "TRANSACTIONAL-ID",
                        "PRODUCER-ID",
                        "EPOCH",
                        "STATE",
                        "TIMEOUT-MS",
                        "START-TIME-MS",
                        "PARTITIONS",
                    ],
                    &[vec![
                        transactional_id,
                        t.producer_id.0.to_string(),
                        t.producer_epoch.to_string(),
                        t.transaction_state.to_string(),
                        t.transaction_timeout_ms.to_string(),
                        t.transaction_start_time_ms.to_string(),
                        partitions.join(","),
                    ]],
                ),
            })
        }
        TransactionsCommand::Abort {
            topic,
            partition,
            start_offset,
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => {
            let (pid, epoch, coord) = match (producer_id, producer_epoch, coordinator_epoch) {
                (Some(p), Some(e), Some(c)) => (p, e, c),
                _ => {
                    let Some(start) = start_offset else {
                        return Err(AdminError::Usage(
                            "give --start-offset, or --producer-id with --producer-epoch and --coordinator-epoch".into(),
                        ));
                    };
                    find_producer(&mut c, &topic, partition, start).await?
                }
            };
            let marker = WritableTxnMarker::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_transaction_result(false)
                .with_coordinator_epoch(coord)
                .with_topics(vec![
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(s(&topic)))
                        .with_partition_indexes(vec![partition]),
                ]);
            let req = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
            let ResponseKind::WriteTxnMarkers(resp) = c
                .call(ApiKey::WriteTxnMarkers, RequestKind::WriteTxnMarkers(req))
                .await?
            else {
                return Err(unexpected());
            };
            for m in &resp.markers {
                for t in &m.topics {
                    for p in &t.partitions {
                        if p.error_code != 0 {
                            return Err(failed(
                                &format!("aborting on {topic}-{partition}"),
                                p.error_code,
                            ));
                        }
                    }
                }
            }
            Ok(match output {
                Output::Json => json!({"topic": topic, "partition": partition, "producer_id": pid, "producer_epoch": epoch, "aborted": true}).to_string(),
                Output::Human => format!(
                    "aborted the transaction of producer {pid} (epoch {epoch}) on {topic}-{partition}"
                ),
            })
        }
    }
}

/// The producer whose open transaction on the partition starts at `start`:
/// producer id, epoch and coordinator epoch.
async fn find_producer(
    c: &mut AdminClient,
    topic: &str,
    partition: i32,
    start: i64,
) -> Result<(i64, i16, i32), AdminError> {
    let req = DescribeProducersRequest::default().with_topics(vec![
        TopicRequest::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![partition]),
    ]);
    let ResponseKind::DescribeProducers(resp) = c
        .call(
            ApiKey::DescribeProducers,
            RequestKind::DescribeProducers(req),
        )
        .await?
    else {
        return Err(unexpected());
    };
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(failed(
                    &format!("describing producers of {topic}-{partition}"),
                    p.error_code,
                ));
            }
            if let Some(x) = p
                .active_producers
                .iter()
                .find(|x| x.current_txn_start_offset == start)
            {
                return Ok((
                    x.producer_id.0,
                    i16::try_from(x.producer_epoch).unwrap_or(i16::MAX),
                    x.coordinator_epoch,
                ));
            }
        }
    }
    Err(AdminError::Kafka(format!(
        "no open transaction starts at offset {start} of {topic}-{partition}"
    )))
}
