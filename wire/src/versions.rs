//! The table of API versions a broker serves, filled from its registered handlers.
//!
//! The broker registers each handler with the version range it implements; the table
//! then answers ApiVersions and decides which requests [`crate::decode_request`]
//! accepts. [`protocol_range`] gives what kafka-protocol itself can encode and decode,
//! the outer bound of any registration.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::VersionRange;

/// The versions of `api_key` that kafka-protocol can encode and decode: the
/// intersection of `ApiKey::valid_versions` and the request and response types'
/// own ranges (they differ for a few APIs in 0.18, e.g. OffsetCommit v10).
pub fn protocol_range(api_key: ApiKey) -> VersionRange {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;
    macro_rules! ranges {
        ($($name:ident $req:ident $resp:ident),* $(,)?) => {
            match api_key {
                $(ApiKey::$name => (<$req as Message>::VERSIONS, <$resp as Message>::VERSIONS),)*
            }
        };
    }
    let (req, resp) = crate::for_each_api!(ranges);
    let key = api_key.valid_versions();
    VersionRange {
        min: key.min.max(req.min).max(resp.min),
        max: key.max.min(req.max).min(resp.max),
    }
}

/// A registration the table refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionTableError {
    /// The range is empty or reaches outside what kafka-protocol supports.
    #[error(
        "{api_key:?} versions {min}..={max} are outside the protocol's {supported_min}..={supported_max}"
    )]
    OutOfRange {
        /// The API.
        api_key: ApiKey,
        /// Requested lowest version.
        min: i16,
        /// Requested highest version.
        max: i16,
        /// Lowest version kafka-protocol supports.
        supported_min: i16,
        /// Highest version kafka-protocol supports.
        supported_max: i16,
    },
    /// The API was registered twice.
    #[error("{0:?} is already registered")]
    Duplicate(ApiKey),
}

/// API key -> supported version range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiVersionTable {
    ranges: BTreeMap<i16, (ApiKey, VersionRange)>,
}

impl ApiVersionTable {
    /// An empty table: every request is refused until handlers register.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every API at every version kafka-protocol supports (for tests and tools).
    pub fn protocol_supported() -> Self {
        let ranges = ApiKey::iter()
            .map(|k| (k as i16, (k, protocol_range(k))))
            .collect();
        Self { ranges }
    }

    /// Declares that `api_key` is served for versions `min..=max`.
    ///
    /// # Errors
    /// If the range is empty, not within [`protocol_range`], or the key is already
    /// registered.
    pub fn register(
        &mut self,
        api_key: ApiKey,
        min: i16,
        max: i16,
    ) -> Result<(), VersionTableError> {
        let supported = protocol_range(api_key);
        if min > max || min < supported.min || max > supported.max {
            return Err(VersionTableError::OutOfRange {
                api_key,
                min,
                max,
                supported_min: supported.min,
                supported_max: supported.max,
            });
        }
        if self.ranges.contains_key(&(api_key as i16)) {
            return Err(VersionTableError::Duplicate(api_key));
        }
        self.ranges
            .insert(api_key as i16, (api_key, VersionRange { min, max }));
        Ok(())
    }

    /// The range registered for `api_key`.
    pub fn get(&self, api_key: ApiKey) -> Option<VersionRange> {
        self.ranges.get(&(api_key as i16)).map(|(_, r)| *r)
    }

    /// Whether `version` of `api_key` is served.
    pub fn supports(&self, api_key: ApiKey, version: i16) -> bool {
        self.get(api_key)
            .is_some_and(|r| r.min <= version && version <= r.max)
    }

    /// Registered APIs in API-key order.
    pub fn iter(&self) -> impl Iterator<Item = (ApiKey, VersionRange)> + '_ {
        self.ranges.values().copied()
    }

    /// The `api_keys` list of an ApiVersions response.
    pub fn api_keys(&self) -> Vec<ApiVersion> {
        self.iter()
            .map(|(k, r)| {
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(r.min)
                    .with_max_version(r.max)
            })
            .collect()
    }

    /// A successful ApiVersions response listing this table.
    pub fn api_versions_response(&self) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(self.api_keys())
    }

    /// The answer to an ApiVersions request of a version the table does not serve:
    /// `UNSUPPORTED_VERSION` plus the table, which the broker must encode as a **v0**
    /// body (see [`crate::encode_response`]) so any client can read it and retry with
    /// a version it shares with us. This is what Kafka does.
    pub fn unsupported_version_response(&self) -> ApiVersionsResponse {
        self.api_versions_response()
            .with_error_code(ResponseError::UnsupportedVersion.code())
    }
}

/// Kafka's check on ApiVersions v3+ (`ApiVersionsRequest.isValid`): the client
/// software name and version must match `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
/// A request that fails it is answered with `INVALID_REQUEST`.
pub fn is_valid_api_versions_request(request: &ApiVersionsRequest, version: i16) -> bool {
    fn valid(s: &str) -> bool {
        let b = s.as_bytes();
        let edge = |c: &u8| c.is_ascii_alphanumeric();
        match (b.first(), b.last()) {
            (Some(first), Some(last)) => {
                edge(first) && edge(last) && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'.')
            }
            _ => false,
        }
    }
    version < 3
        || (valid(request.client_software_name.as_str())
            && valid(request.client_software_version.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_checks_ranges_and_duplicates() {
        let mut t = ApiVersionTable::new();
        assert!(!t.supports(ApiKey::Produce, 9));
        t.register(ApiKey::Produce, 3, 9).unwrap();
        assert!(t.supports(ApiKey::Produce, 9));
        assert!(!t.supports(ApiKey::Produce, 10));
        assert!(!t.supports(ApiKey::Produce, 2));
        assert_eq!(
            t.register(ApiKey::Produce, 3, 4),
            Err(VersionTableError::Duplicate(ApiKey::Produce))
        );
        assert!(matches!(
            t.register(ApiKey::Fetch, 0, 4),
            Err(VersionTableError::OutOfRange { .. })
        ));
        assert!(matches!(
            t.register(ApiKey::Metadata, 5, 4),
            Err(VersionTableError::OutOfRange { .. })
        ));
    }

    #[test]
    fn responses_list_the_table() {
        let mut t = ApiVersionTable::new();
        t.register(ApiKey::Metadata, 0, 12).unwrap();
        t.register(ApiKey::ApiVersions, 0, 4).unwrap();
        let ok = t.api_versions_response();
        assert_eq!(ok.error_code, 0);
        assert_eq!(ok.api_keys.len(), 2);
        assert_eq!(ok.api_keys[0].api_key, ApiKey::Metadata as i16);
        assert_eq!(ok.api_keys[1].max_version, 4);
        let bad = t.unsupported_version_response();
        assert_eq!(bad.error_code, 35);
        assert_eq!(bad.api_keys, ok.api_keys);
    }

    #[test]
    fn protocol_supported_covers_every_key() {
        let t = ApiVersionTable::protocol_supported();
        assert_eq!(t.iter().count(), ApiKey::iter().count());
        assert!(t.supports(ApiKey::ApiVersions, 0));
    }

    #[test]
    fn client_software_names() {
        use kafka_protocol::protocol::StrBytes;
        let req = |name: &'static str, version: &'static str| {
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(name))
                .with_client_software_version(StrBytes::from_static_str(version))
        };
        assert!(is_valid_api_versions_request(
            &req("confluent-kafka-python", "2.16.1-rdkafka-2.16.0"),
            3
        ));
        assert!(is_valid_api_versions_request(&req("a", "1"), 4));
        assert!(!is_valid_api_versions_request(&req("", "1"), 3));
        assert!(!is_valid_api_versions_request(&req("bad name", "1"), 3));
        assert!(!is_valid_api_versions_request(&req("x", "1.0-"), 3));
        assert!(is_valid_api_versions_request(&req("", ""), 2));
    }

    #[test]
    fn protocol_range_is_what_the_message_types_support() {
        // ApiKey::valid_versions says OffsetCommit goes to v10; the message types
        // stop at v9, so v10 could not be decoded.
        assert_eq!(ApiKey::OffsetCommit.valid_versions().max, 10);
        assert_eq!(protocol_range(ApiKey::OffsetCommit).max, 9);
        assert_eq!(protocol_range(ApiKey::Produce).min, 3);
        assert_eq!(protocol_range(ApiKey::Fetch).min, 4);
        for key in ApiKey::iter() {
            assert!(!protocol_range(key).is_empty(), "{key:?}");
        }
    }
}
