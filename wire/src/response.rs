//! Responses: header v0 or v1 (tagged fields) per API and version, then the body.
//!
//! The response header version follows the request's API and version, with one
//! exception kafka-protocol already encodes: ApiVersions responses always use header
//! v0, so a client that does not yet know which versions the broker speaks can read
//! the answer.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::request::{EncodeError, encode_message};

/// Appends a size-prefixed response frame to `out`: a header echoing
/// `correlation_id`, then `body` at `api_version` (the request's version; use 0 for the
/// [`crate::ApiVersionTable::unsupported_version_response`] fallback).
///
/// # Errors
/// See [`EncodeError`]; `out` is left as it was on error.
pub fn encode_response(
    correlation_id: i32,
    api_version: i16,
    body: &ResponseKind,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let api_key = response_api_key(body).ok_or(EncodeError::UnlistedMessage)?;
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    encode_message(
        out,
        api_key,
        api_version,
        |out| header.encode(out, body.header_version(api_version)),
        |out| body.encode(out, api_version),
    )
}

/// A response frame that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {api_key:?} v{api_version} response: {reason}")]
pub struct ResponseDecodeError {
    /// The API of the request it answers.
    pub api_key: ApiKey,
    /// The version of the request it answers.
    pub api_version: i16,
    /// What the decoder reported.
    pub reason: String,
}

/// Decodes a response frame body (without the size prefix) to the request of
/// `api_key` at `api_version`. For clients (the admin CLI) and tests.
///
/// # Errors
/// [`ResponseDecodeError`] when the header or body does not parse.
pub fn decode_response(
    frame: Bytes,
    api_key: ApiKey,
    api_version: i16,
) -> Result<(ResponseHeader, ResponseKind), ResponseDecodeError> {
    let fail = |e: &dyn std::fmt::Display| ResponseDecodeError {
        api_key,
        api_version,
        reason: format!("{e:#}"),
    };
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(api_version))
        .map_err(|e| fail(&e))?;
    let body = ResponseKind::decode(api_key, &mut buf, api_version).map_err(|e| fail(&e))?;
    Ok((header, body))
}

/// The API key of a response body; `None` only for a variant a newer
/// kafka-protocol added that this crate's API list (`for_each_api!`) lacks.
pub fn response_api_key(body: &ResponseKind) -> Option<ApiKey> {
    macro_rules! keys {
        ($($name:ident $req:ident $resp:ident),* $(,)?) => {
            match body {
                $(ResponseKind::$name(_) => Some(ApiKey::$name),)*
                #[allow(unreachable_patterns)]
                _ => None,
            }
        };
    }
    crate::for_each_api!(keys)
}

/// The API key of a request body; `None` as for [`response_api_key`].
pub fn request_api_key(body: &RequestKind) -> Option<ApiKey> {
    macro_rules! keys {
        ($($name:ident $req:ident $resp:ident),* $(,)?) => {
            match body {
                $(RequestKind::$name(_) => Some(ApiKey::$name),)*
                #[allow(unreachable_patterns)]
                _ => None,
            }
        };
    }
    crate::for_each_api!(keys)
}
