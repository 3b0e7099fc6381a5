//! Batch headers of every stored record, read after the final read with raw
//! Fetch requests (kafka-protocol's codecs; a client's consumer API hides
//! them): `(partition, offset) -> (producer id, producer epoch, sequence)`.
//!
//! They decide what a duplicated value means. The broker deduplicates by
//! `(producer id, epoch, sequence)`, as Kafka does; a value stored twice
//! under one producer id and epoch is the broker's fault. librdkafka, though,
//! re-sends messages under a new producer id or epoch on its own: when a
//! queued message passes `message.timeout.ms` it bumps the epoch ("drain and
//! bump") and renumbers what is still queued, including messages whose earlier
//! request timed out but reached the broker (its INTRODUCTION.md, "Message
//! timeout considerations"). No broker can recognise those copies, so the
//! checker reports them apart (`resent`).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WorkloadConfig;
use crate::history::{F, HeaderRec, Op, OpType, Recorder};

const FETCH_VERSION: i16 = 4;
const METADATA_VERSION: i16 = 1;
const FETCH_BYTES: i32 = 4 << 20;
/// Largest response accepted (a fetch answers at most `FETCH_BYTES`).
const MAX_FRAME: usize = 64 << 20;

/// Errors of the raw reader.
#[derive(Debug, thiserror::Error)]
pub enum HeadersError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
}

fn protocol(e: impl std::fmt::Display) -> HeadersError {
    HeadersError::Protocol(e.to_string())
}

/// One connection speaking non-flexible request versions.
struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    async fn connect(addr: &str) -> Result<Self, HeadersError> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| protocol(format!("connecting to {addr} timed out")))??;
        Ok(Conn {
            stream,
            correlation: 0,
        })
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, HeadersError> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("jepsen-headers")));
        let mut body = BytesMut::new();
        header.encode(&mut body, 1).map_err(protocol)?;
        req.encode(&mut body, version).map_err(protocol)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;
        let len = self.stream.read_i32().await?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .ok_or_else(|| protocol(format!("response size {len}")))?;
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).await?;
        let mut buf = Bytes::from(buf);
        let h = ResponseHeader::decode(&mut buf, 0).map_err(protocol)?;
        if h.correlation_id != self.correlation {
            return Err(protocol(format!(
                "correlation id {} for request {}",
                h.correlation_id, self.correlation
            )));
        }
        Resp::decode(&mut buf, version).map_err(protocol)
    }
}

/// Records a `batch_headers` op: `ok` with every stored record's producer
/// fields, or `fail` with the error (the checker then cannot tell re-sends
/// from duplicates and reports every repeated value as a duplicate).
pub async fn record_batch_headers(cfg: &WorkloadConfig, rec: &Recorder) {
    let process = rec.new_process();
    rec.record(Op::new(process, OpType::Invoke, F::BatchHeaders));
    let done = match read(&cfg.bootstrap, &cfg.topic, cfg.partitions).await {
        Ok(headers) => Op {
            headers,
            ..Op::new(process, OpType::Ok, F::BatchHeaders)
        },
        Err(e) => Op {
            error: Some(e.to_string()),
            ..Op::new(process, OpType::Fail, F::BatchHeaders)
        },
    };
    rec.record(done);
}

/// Every record's producer fields in `topic`, read from each partition's
/// leader from offset 0 to its high watermark (read_uncommitted, so aborted
/// records are included). Control batches are left out.
pub async fn read(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<HeaderRec>, HeadersError> {
    let first = bootstrap
        .split(',')
        .next()
        .ok_or_else(|| protocol("empty bootstrap"))?;
    let mut meta_conn = Conn::connect(first).await?;
    let name = TopicName(StrBytes::from_string(topic.to_string()));
    let meta: MetadataResponse = meta_conn
        .call(
            ApiKey::Metadata,
            METADATA_VERSION,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name.clone())),
            ])),
        )
        .await?;
    let brokers: BTreeMap<BrokerId, String> = meta
        .brokers
        .iter()
        .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
        .collect();
    let leaders: BTreeMap<i32, BrokerId> = meta
        .topics
        .iter()
        .filter(|t| t.name.as_ref() == Some(&name))
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.leader_id))
        .collect();
    let mut out = Vec::new();
    for p in 0..partitions {
        let addr = leaders
            .get(&p)
            .and_then(|l| brokers.get(l))
            .ok_or_else(|| protocol(format!("no leader for {topic}-{p}")))?;
        let mut conn = Conn::connect(addr).await?;
        read_partition(&mut conn, &name, p, &mut out).await?;
    }
    Ok(out)
}

async fn read_partition(
    conn: &mut Conn,
    name: &TopicName,
    partition: i32,
    out: &mut Vec<HeaderRec>,
) -> Result<(), HeadersError> {
    let mut at = 0i64;
    loop {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(FETCH_BYTES)
            .with_isolation_level(0)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name.clone())
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(at)
                            .with_partition_max_bytes(FETCH_BYTES),
                    ]),
            ]);
        let resp: FetchResponse = conn.call(ApiKey::Fetch, FETCH_VERSION, &req).await?;
        let data = resp
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| protocol("empty fetch response"))?;
        if data.error_code != 0 {
            return Err(protocol(format!(
                "fetch {}-{partition} at {at}: error {}",
                name.0, data.error_code
            )));
        }
        let mut records = data.records.clone().unwrap_or_default();
        let mut next = at;
        while records.has_remaining() {
            // A batch cut at the fetch limit ends the response.
            let Ok(set) = RecordBatchDecoder::decode(&mut records) else {
                break;
            };
            for r in set.records {
                next = next.max(r.offset + 1);
                if !r.control && r.offset >= at {
                    out.push(HeaderRec {
                        topic: name.0.to_string(),
                        partition,
                        offset: r.offset,
                        producer_id: r.producer_id,
                        producer_epoch: r.producer_epoch,
                        sequence: r.sequence,
                    });
                }
            }
        }
        if next >= data.high_watermark || next == at {
            return Ok(());
        }
        at = next;
    }
}
