//! Identifier types that both `skiff-storage` and `skiff-metadata` speak,
//! and the durable file-system steps both take ([`fs`]).
//!
//! DESIGN.md keeps `storage` and `metadata` independent of each other; the few
//! value types that cross between them (through the broker) live here so that
//! neither domain crate imports the other.
//!
//! ```
//! use skiff_common::{StreamId, StreamEpoch, ObjectId, StreamRange};
//! let r = StreamRange { stream: StreamId(7), start: 0, end: 100 };
//! assert_eq!(r.len(), 100);
//! assert!(StreamEpoch(2) > StreamEpoch(1));
//! let _ = ObjectId(1);
//! ```

use std::fmt;

pub mod fs;

use serde::{Deserialize, Serialize};

/// A stream: the storage-level sequence of record batches behind one partition
/// (or one internal log). Allocated by metadata, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId(pub u64);

/// An object in the object store. Allocated (reserved) by metadata, never reused;
/// the object key is derived from it, so an id names at most one object ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectId(pub u64);

/// The ownership epoch of a stream. Bumped by metadata every time the stream
/// is (re)opened by an owner; commits carrying an older epoch are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamEpoch(pub u64);

/// A broker's id, as in Kafka's `node.id` / `broker.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BrokerId(pub i32);

/// A half-open range of offsets `[start, end)` of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamRange {
    pub stream: StreamId,
    pub start: u64,
    pub end: u64,
}

impl StreamRange {
    /// Number of offsets covered.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when the range covers no offsets.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_inner!(StreamId, ObjectId, StreamEpoch, BrokerId);
