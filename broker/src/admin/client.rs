//! A minimal Kafka client for `skiff admin`: one connection, request /
//! response in order, versions negotiated with ApiVersions. It speaks the
//! Kafka protocol through `skiff-wire`, so it works against any broker.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use skiff_wire::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, RequestHeader, RequestKind, ResponseKind,
};
use skiff_wire::kafka_protocol::protocol::StrBytes;
use skiff_wire::{FrameDecoder, decode_response, encode_request, protocol_range};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why an admin request failed before a Kafka answer arrived.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to the broker failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out waiting for the broker")]
    Timeout,
    #[error("the broker does not support {0:?}")]
    Unsupported(ApiKey),
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// A connection to one broker.
pub struct AdminClient {
    stream: TcpStream,
    correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
    timeout: Duration,
    frames: FrameDecoder,
    buf: BytesMut,
}

impl AdminClient {
    /// Connect and learn which API versions the broker serves.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let mut c = Self {
            stream,
            correlation_id: 0,
            versions: HashMap::new(),
            timeout,
            frames: FrameDecoder::new(256 * 1024 * 1024),
            buf: BytesMut::new(),
        };
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("skiff-admin"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp = c
            .call_at(ApiKey::ApiVersions, 3, RequestKind::ApiVersions(req))
            .await?;
        let ResponseKind::ApiVersions(v) = resp else {
            return Err(ClientError::Protocol(
                "unexpected ApiVersions answer".into(),
            ));
        };
        if v.error_code != 0 {
            return Err(ClientError::Protocol(format!(
                "ApiVersions error {}",
                v.error_code
            )));
        }
        for k in v.api_keys {
            c.versions.insert(k.api_key, (k.min_version, k.max_version));
        }
        Ok(c)
    }

    /// Send a request at the highest version both sides speak.
    pub async fn call(
        &mut self,
        api: ApiKey,
        body: RequestKind,
    ) -> Result<ResponseKind, ClientError> {
        let ours = protocol_range(api);
        let (min, max) = *self
            .versions
            .get(&(api as i16))
            .ok_or(ClientError::Unsupported(api))?;
        let version = max.min(ours.max);
        if version < min.max(ours.min) {
            return Err(ClientError::Unsupported(api));
        }
        self.call_at(api, version, body).await
    }

    async fn call_at(
        &mut self,
        api: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind, ClientError> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("skiff-admin")));
        let mut out = BytesMut::new();
        encode_request(&header, &body, &mut out)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        tokio::time::timeout(self.timeout, self.stream.write_all(&out))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let frame = loop {
            if let Some(f) = self
                .frames
                .decode(&mut self.buf)
                .map_err(|e| ClientError::Protocol(e.to_string()))?
            {
                break f;
            }
            let n = tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the broker closed the connection",
                )));
            }
        };
        let (h, resp) = decode_response(frame, api, version)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if h.correlation_id != self.correlation_id {
            return Err(ClientError::Protocol(format!(
                "correlation id {} does not match {}",
                h.correlation_id, self.correlation_id
            )));
        }
        Ok(resp)
    }
}
