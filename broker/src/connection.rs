//! One client connection: read whole frames (size-capped before allocating),
//! decode them, admit each request in order, and write responses in request
//! order as they complete. At most [`MAX_PIPELINED`] responses wait at once;
//! beyond that the connection stops reading (backpressure on the client).
//!
//! A frame that cannot be decoded is logged and the connection closed, as
//! Kafka does; the one exception is an ApiVersions request at a version we do
//! not serve, which is answered with UNSUPPORTED_VERSION in a v0 body so the
//! client can downgrade.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use skiff_wire::codec::KafkaCodec;
use skiff_wire::kafka_protocol::messages::{ApiKey, ResponseKind};
use skiff_wire::spliced::encode_spliced_fetch;
use skiff_wire::{EncodeError, decode_request, encode_response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::broker::Broker;
use crate::router::{RequestContext, Response, api_name};

/// Most responses a connection may owe at once before it stops reading.
pub const MAX_PIPELINED: usize = 64;

struct Done {
    correlation_id: i32,
    api_version: i16,
    api_key: ApiKey,
    started: Instant,
    response: Option<Response>,
}

/// Serve one connection until the client closes it, it sends something
/// undecodable, or `shutdown` is cancelled (then owed responses are still
/// written before closing).
pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let max_frame = broker.config.socket_request_max_bytes as usize;
    let mut frames = FramedRead::new(rd, KafkaCodec::new(max_frame));
    let mut pending: FuturesOrdered<BoxFuture<'static, Done>> = FuturesOrdered::new();
    let mut out = BytesMut::with_capacity(8 * 1024);
    let mut reading = true;

    loop {
        tokio::select! {
            biased;
            Some(done) = pending.next(), if !pending.is_empty() => {
                if let Err(e) = write_response(&broker, &mut wr, &mut out, done).await {
                    debug!(%peer, error = %e, "write failed; closing connection");
                    return;
                }
            }
            _ = shutdown.cancelled(), if reading => {
                reading = false;
            }
            frame = frames.next(), if reading && pending.len() < MAX_PIPELINED => {
                let frame = match frame {
                    None => { reading = false; continue; }
                    Some(Err(e)) => {
                        warn!(%peer, error = %e, "bad frame; closing connection");
                        return;
                    }
                    Some(Ok(frame)) => frame,
                };
                let started = Instant::now();
                match decode_request(frame, broker.router.versions()) {
                    Ok(req) => {
                        let ctx = RequestContext {
                            api_version: req.api_version(),
                            header: req.header.clone(),
                            peer,
                        };
                        let correlation_id = req.correlation_id();
                        let api_version = req.api_version();
                        let api_key = req.api_key;
                        let respond = broker
                            .router
                            .dispatch(broker.clone(), ctx, api_key, req.body)
                            .await;
                        pending.push_back(
                            respond
                                .map(move |response| Done {
                                    correlation_id,
                                    api_version,
                                    api_key,
                                    started,
                                    response,
                                })
                                .boxed(),
                        );
                    }
                    Err(e) if e.is_unsupported_api_versions() => {
                        debug!(%peer, error = %e, "answering ApiVersions with UNSUPPORTED_VERSION");
                        let response = ResponseKind::ApiVersions(
                            broker.router.versions().unsupported_version_response(),
                        );
                        let correlation_id = e.correlation_id().unwrap_or_default();
                        pending.push_back(
                            futures::future::ready(Done {
                                correlation_id,
                                api_version: 0,
                                api_key: ApiKey::ApiVersions,
                                started,
                                response: Some(response.into()),
                            })
                            .boxed(),
                        );
                    }
                    Err(e) => {
                        warn!(%peer, error = %e, code = e.error_code(), "undecodable request; closing connection");
                        broker.metrics.observe_error("Unknown", "InvalidRequest".into());
                        return;
                    }
                }
            }
            else => break,
        }
    }
}

async fn write_response(
    broker: &Broker,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    out: &mut BytesMut,
    done: Done,
) -> std::io::Result<()> {
    let name = api_name(done.api_key);
    broker.metrics.observe_request(name, done.started.elapsed());
    let Some(response) = done.response else {
        return Ok(());
    };
    let not_encoded = |e: EncodeError| {
        // A response we built that does not encode at the client's version is
        // a bug on our side; log it and close rather than send garbage.
        warn!(api = name, version = done.api_version, error = %e, "response does not encode");
        std::io::Error::other(e.to_string())
    };
    match response {
        Response::Body(body) => {
            out.clear();
            encode_response(done.correlation_id, done.api_version, &body, out)
                .map_err(not_encoded)?;
            wr.write_all(out).await
        }
        Response::Fetch(fetch) => {
            // Record sets go out from storage's buffers in vectored writes.
            let mut parts = encode_spliced_fetch(done.correlation_id, done.api_version, fetch)
                .map_err(not_encoded)?;
            wr.write_all_buf(&mut parts).await
        }
    }
}
