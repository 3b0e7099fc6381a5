//! Requests: the header prefix, header versions v0-v2, and typed bodies.
//!
//! Every request header starts with `api_key: i16, api_version: i16,
//! correlation_id: i32` whatever its version, so those are read first
//! ([`HeaderPrefix`]): an error after that point still carries the correlation id
//! the broker needs to answer or log. The header version (v1, or v2 with tagged
//! fields for flexible API versions; v0 only for ControlledShutdown v0) follows from
//! the API key and version.

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::frame::{FrameError, write_framed};
use crate::versions::ApiVersionTable;

/// Bytes of the fixed request header prefix.
pub const HEADER_PREFIX_LEN: usize = 8;

/// The three fields every request header version starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    /// Raw API key (may be unknown to us).
    pub api_key: i16,
    /// Requested API version.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
}

impl HeaderPrefix {
    /// Reads the prefix from the start of a frame body.
    ///
    /// # Errors
    /// [`RequestError::TruncatedHeader`] if the frame is shorter than 8 bytes.
    pub fn read(frame: &[u8]) -> Result<Self, RequestError> {
        let truncated = || RequestError::TruncatedHeader { len: frame.len() };
        let p = frame
            .first_chunk::<HEADER_PREFIX_LEN>()
            .ok_or_else(truncated)?;
        Ok(Self {
            api_key: i16::from_be_bytes([p[0], p[1]]),
            api_version: i16::from_be_bytes([p[2], p[3]]),
            correlation_id: i32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        })
    }
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The API, known to kafka-protocol and served by the table.
    pub api_key: ApiKey,
    /// The full header (client id, tagged fields).
    pub header: RequestHeader,
    /// The typed body. Produce `records` fields are slices of the frame, not copies.
    pub body: RequestKind,
}

impl Request {
    /// The request's API version, which the response must use.
    pub fn api_version(&self) -> i16 {
        self.header.request_api_version
    }

    /// The id to echo in the response header.
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// Why a request frame could not be decoded.
///
/// What Kafka does, and what the broker should do: an unsupported ApiVersions version
/// is answered (see [`ApiVersionTable::unsupported_version_response`]); every other
/// case is logged and the connection closed, since the client and broker disagree
/// about the protocol and no typed response can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Fewer than 8 bytes: not even the header prefix is there.
    #[error("request of {len} bytes is shorter than a request header")]
    TruncatedHeader {
        /// Frame length.
        len: usize,
    },
    /// An API key kafka-protocol does not know.
    #[error("unknown API key {} (version {}, correlation id {})", .prefix.api_key, .prefix.api_version, .prefix.correlation_id)]
    UnknownApiKey {
        /// The header prefix.
        prefix: HeaderPrefix,
    },
    /// A known API at a version the table does not serve.
    #[error("unsupported version {} of {api_key:?} (correlation id {})", .prefix.api_version, .prefix.correlation_id)]
    UnsupportedVersion {
        /// The API.
        api_key: ApiKey,
        /// The header prefix.
        prefix: HeaderPrefix,
    },
    /// The header after the prefix (client id, tagged fields) does not parse.
    #[error("malformed v{header_version} header of {api_key:?} v{} request: {reason}", .prefix.api_version)]
    MalformedHeader {
        /// The API.
        api_key: ApiKey,
        /// The header version that was expected.
        header_version: i16,
        /// The header prefix.
        prefix: HeaderPrefix,
        /// What the decoder reported.
        reason: String,
    },
    /// The body does not parse for its API and version (truncated or malformed).
    #[error("malformed {api_key:?} v{} body: {reason}", .prefix.api_version)]
    MalformedBody {
        /// The API.
        api_key: ApiKey,
        /// The header prefix.
        prefix: HeaderPrefix,
        /// What the decoder reported.
        reason: String,
    },
}

impl RequestError {
    /// The header prefix, when the frame had one.
    pub fn prefix(&self) -> Option<HeaderPrefix> {
        match self {
            Self::TruncatedHeader { .. } => None,
            Self::UnknownApiKey { prefix }
            | Self::UnsupportedVersion { prefix, .. }
            | Self::MalformedHeader { prefix, .. }
            | Self::MalformedBody { prefix, .. } => Some(*prefix),
        }
    }

    /// The correlation id to answer or log with, when the frame had one.
    pub fn correlation_id(&self) -> Option<i32> {
        self.prefix().map(|p| p.correlation_id)
    }

    /// The Kafka error code for this failure (`UNSUPPORTED_VERSION` or
    /// `INVALID_REQUEST`).
    pub fn error_code(&self) -> i16 {
        match self {
            Self::UnsupportedVersion { .. } => ResponseError::UnsupportedVersion.code(),
            _ => ResponseError::InvalidRequest.code(),
        }
    }

    /// True for an ApiVersions request of an unsupported version: Kafka answers it
    /// with `UNSUPPORTED_VERSION` in a v0 body instead of closing the connection.
    pub fn is_unsupported_api_versions(&self) -> bool {
        matches!(
            self,
            Self::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                ..
            }
        )
    }
}

/// Decodes one request frame body (without the size prefix), accepting only the
/// APIs and versions in `table`.
///
/// Never panics; bytes after the body are ignored, as Kafka does.
///
/// # Errors
/// See [`RequestError`].
pub fn decode_request(frame: Bytes, table: &ApiVersionTable) -> Result<Request, RequestError> {
    let prefix = HeaderPrefix::read(&frame)?;
    let api_key =
        ApiKey::try_from(prefix.api_key).map_err(|()| RequestError::UnknownApiKey { prefix })?;
    if !table.supports(api_key, prefix.api_version) {
        return Err(RequestError::UnsupportedVersion { api_key, prefix });
    }
    let header_version = api_key.request_header_version(prefix.api_version);
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, header_version).map_err(|e| {
        RequestError::MalformedHeader {
            api_key,
            header_version,
            prefix,
            reason: format!("{e:#}"),
        }
    })?;
    let body = RequestKind::decode(api_key, &mut buf, prefix.api_version).map_err(|e| {
        RequestError::MalformedBody {
            api_key,
            prefix,
            reason: format!("{e:#}"),
        }
    })?;
    Ok(Request {
        api_key,
        header,
        body,
    })
}

/// Encoding failed: a field is set that the chosen version cannot carry, or the
/// message does not fit a frame. A bug in the caller, never in the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// kafka-protocol refused the message at this version.
    #[error("cannot encode {api_key:?} v{version}: {reason}")]
    Message {
        /// The API.
        api_key: ApiKey,
        /// The version asked for.
        version: i16,
        /// What the encoder reported.
        reason: String,
    },
    /// The API key in a header is unknown.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// A message variant from a newer kafka-protocol that this crate does not list.
    #[error("message variant not listed in skiff-wire's API list")]
    UnlistedMessage,
    /// The encoded message is larger than a frame can be.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl EncodeError {
    pub(crate) fn message(api_key: ApiKey, version: i16, e: impl std::fmt::Display) -> Self {
        Self::Message {
            api_key,
            version,
            reason: format!("{e:#}"),
        }
    }
}

/// Appends `header` + `body` to `out` as one size-prefixed frame, using the header
/// version of the header's API key and version. For clients (the admin CLI) and tests.
///
/// # Errors
/// See [`EncodeError`]; `out` is left as it was on error.
pub fn encode_request(
    header: &RequestHeader,
    body: &RequestKind,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|()| EncodeError::UnknownApiKey(header.request_api_key))?;
    let version = header.request_api_version;
    encode_message(
        out,
        api_key,
        version,
        |out| header.encode(out, api_key.request_header_version(version)),
        |out| body.encode(out, version),
    )
}

/// Appends one size-prefixed message: `header` then `body`, both writing into `out`.
pub(crate) fn encode_message<E: std::fmt::Display>(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    header: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    body: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<(), EncodeError> {
    let fail = |e| EncodeError::message(api_key, version, e);
    write_framed(out, |out| {
        header(out).map_err(fail)?;
        body(out).map_err(fail)
    })
}
