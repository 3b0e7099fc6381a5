//! A throwaway single-partition "broker" that answers real clients well enough for
//! them to produce, and saves the first request of each API/version per connection
//! order as `<out>/<prefix>-<api>-v<version>.bin` (size prefix included). Used to
//! build `wire/tests/corpus/` with `wire/scripts/capture_client_requests.py`; it
//! also shows this crate's responses are accepted by real clients.
//!
//! `cargo run -p skiff-wire --example capture_broker -- <out-dir>` prints its port.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use skiff_wire::kafka_protocol::messages::{
    BrokerId, InitProducerIdResponse, MetadataResponse, ProduceResponse, ProducerId, RequestKind,
    ResponseKind,
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use skiff_wire::{ApiVersionTable, FrameDecoder, Request, decode_request, encode_response};

static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

fn main() -> std::io::Result<()> {
    let out: PathBuf = std::env::args().nth(1).unwrap_or_else(|| ".".into()).into();
    std::fs::create_dir_all(&out)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    println!("{port}");
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let (stream, out) = (stream?, out.clone());
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &out, port) {
                eprintln!("connection ended: {e}");
            }
        });
    }
    Ok(())
}

fn serve(
    mut stream: TcpStream,
    out: &std::path::Path,
    port: u16,
) -> Result<(), Box<dyn std::error::Error>> {
    let conn = CONNECTIONS.fetch_add(1, Ordering::SeqCst);
    let table = ApiVersionTable::protocol_supported();
    let frames = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let raw = buf.clone();
            let Some(frame) = frames.decode(&mut buf)? else {
                break;
            };
            let req = decode_request(frame.clone(), &table)?;
            let name = format!("conn{conn}-{:?}-v{}.bin", req.api_key, req.api_version());
            let path = out.join(name);
            if !path.exists() {
                std::fs::write(&path, &raw[..4 + frame.len()])?;
            }
            let mut resp = BytesMut::new();
            encode_response(
                req.correlation_id(),
                req.api_version(),
                &answer(&req, &table, port),
                &mut resp,
            )?;
            stream.write_all(&resp)?;
        }
    }
}

fn answer(req: &Request, table: &ApiVersionTable, port: u16) -> ResponseKind {
    match &req.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(table.api_versions_response()),
        RequestKind::Metadata(m) => {
            let names: Vec<_> = m
                .topics
                .iter()
                .flatten()
                .filter_map(|t| t.name.clone())
                .collect();
            let topics = names
                .into_iter()
                .map(|name| {
                    MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_partitions(vec![
                            MetadataResponsePartition::default()
                                .with_leader_id(BrokerId(0))
                                .with_replica_nodes(vec![BrokerId(0)])
                                .with_isr_nodes(vec![BrokerId(0)]),
                        ])
                })
                .collect();
            ResponseKind::Metadata(
                MetadataResponse::default()
                    .with_brokers(vec![
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(0))
                            .with_host(StrBytes::from_static_str("127.0.0.1"))
                            .with_port(i32::from(port)),
                    ])
                    .with_cluster_id(Some(StrBytes::from_static_str("capture")))
                    .with_controller_id(BrokerId(0))
                    .with_topics(topics),
            )
        }
        RequestKind::Produce(p) => ResponseKind::Produce(
            ProduceResponse::default().with_responses(
                p.topic_data
                    .iter()
                    .map(|t| {
                        TopicProduceResponse::default()
                            .with_name(t.name.clone())
                            .with_partition_responses(
                                t.partition_data
                                    .iter()
                                    .map(|pd| {
                                        PartitionProduceResponse::default()
                                            .with_index(pd.index)
                                            .with_base_offset(0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::InitProducerId(_) => ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(1000))
                .with_producer_epoch(0),
        ),
        _ => {
            eprintln!("no canned answer for {:?}", req.api_key);
            ResponseKind::ApiVersions(table.api_versions_response())
        }
    }
}
