//! Fetch sessions (KIP-227): the broker remembers which partitions a
//! consumer fetches, so later requests name only what changed and responses
//! carry only partitions with something new.
//!
//! A request's `(session_id, session_epoch)` picks one of:
//!
//! - `(0, -1)`: a sessionless full fetch (librdkafka always sends this).
//! - `(0 or s, 0)`: a full fetch that (re)creates a session: `s` is closed
//!   first, and a new id is returned if the cache has room.
//! - `(s, -1)`: close session `s`, then a sessionless full fetch.
//! - `(s, e > 0)`: an incremental fetch. `s` must exist
//!   (FETCH_SESSION_ID_NOT_FOUND) and `e` be its next epoch
//!   (INVALID_FETCH_SESSION_EPOCH). The request's partitions are added or
//!   updated, its forgotten topics removed, and every partition of the
//!   session is fetched; the response carries only the partitions with
//!   records, an error or a changed high watermark, last stable or log start
//!   offset.
//!
//! The cache is bounded (Kafka's `max.incremental.fetch.session.cache.slots`).
//! When full, a new session takes the slot of the least recently used one if
//! that has been idle longer than the eviction time, else that of the
//! smallest session if the new one has more partitions; otherwise it is not
//! cached and the client keeps sending full fetches (session id 0).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use skiff_wire::kafka_protocol::error::ResponseError;
use uuid::Uuid;

/// Session id meaning "no session".
pub const INVALID_SESSION_ID: i32 = 0;
/// Epoch of a full fetch that creates a session.
pub const INITIAL_EPOCH: i32 = 0;
/// Epoch of a sessionless fetch, or one that closes its session.
pub const FINAL_EPOCH: i32 = -1;

/// Kafka's `min.incremental.fetch.session.eviction.ms`.
pub const DEFAULT_EVICTION_AFTER: Duration = Duration::from_secs(120);

/// A partition in a session: by topic id (Fetch v13+, name empty) or by
/// topic name (older versions, id nil).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic_id: Uuid,
    pub topic: String,
    pub partition: i32,
}

/// What the client asks of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
}

/// What a fetch found for one partition, compared with the previous
/// response to decide whether an incremental response includes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub has_records: bool,
    pub error: bool,
}

#[derive(Debug, Clone)]
struct Cached {
    key: PartitionKey,
    wanted: Wanted,
    /// What the last response told the client; `None` before the first.
    last: Option<Observed>,
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: Vec<Cached>,
    last_used: Instant,
}

/// How a fetch request relates to the session cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// No session: answer every partition, session id 0.
    Sessionless,
    /// A full fetch that created session `id`: answer every partition.
    Full { id: i32 },
    /// An incremental fetch in session `id`: answer changed partitions only.
    Incremental { id: i32 },
}

impl SessionKind {
    /// The session id for the response.
    pub fn response_id(self) -> i32 {
        match self {
            SessionKind::Sessionless => INVALID_SESSION_ID,
            SessionKind::Full { id } | SessionKind::Incremental { id } => id,
        }
    }
}

/// The partitions to fetch for one request, in response order.
#[derive(Debug)]
pub struct Plan {
    pub kind: SessionKind,
    pub partitions: Vec<(PartitionKey, Wanted)>,
}

/// The bounded session cache, shared by all connections.
#[derive(Debug)]
pub struct FetchSessionCache {
    slots: usize,
    evict_after: Duration,
    sessions: Mutex<HashMap<i32, Session>>,
}

impl FetchSessionCache {
    /// A cache of at most `slots` sessions (0 turns sessions off).
    pub fn new(slots: usize, evict_after: Duration) -> Self {
        Self {
            slots,
            evict_after,
            sessions: Mutex::default(),
        }
    }

    /// Sessions currently cached.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Whether no session is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decide what a request fetches: the session errors of the module docs
    /// are returned as `Err`, for the response's top-level error code.
    pub fn begin(
        &self,
        session_id: i32,
        epoch: i32,
        requested: Vec<(PartitionKey, Wanted)>,
        forgotten: &[PartitionKey],
        now: Instant,
    ) -> Result<Plan, ResponseError> {
        let mut sessions = self.sessions.lock();
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            if session_id != INVALID_SESSION_ID {
                sessions.remove(&session_id);
            }
            let kind = if epoch == INITIAL_EPOCH {
                self.create(&mut sessions, &requested, now)
                    .map_or(SessionKind::Sessionless, |id| SessionKind::Full { id })
            } else {
                SessionKind::Sessionless
            };
            return Ok(Plan {
                kind,
                partitions: requested,
            });
        }
        let session = sessions
            .get_mut(&session_id)
            .ok_or(ResponseError::FetchSessionIdNotFound)?;
        if session.next_epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        session.next_epoch = next_epoch(epoch);
        session.last_used = now;
        // As Kafka does: add and update first, then forget.
        for (key, wanted) in requested {
            match session.partitions.iter_mut().find(|c| c.key == key) {
                Some(c) => c.wanted = wanted,
                None => session.partitions.push(Cached {
                    key,
                    wanted,
                    last: None,
                }),
            }
        }
        session.partitions.retain(|c| !forgotten.contains(&c.key));
        Ok(Plan {
            kind: SessionKind::Incremental { id: session_id },
            partitions: session
                .partitions
                .iter()
                .map(|c| (c.key.clone(), c.wanted))
                .collect(),
        })
    }

    /// Record what a response tells the client and say, per partition of
    /// the plan (same order), whether the response includes it. Partitions
    /// that are included move to the end of the session's order, so a
    /// response byte limit does not starve the later ones.
    pub fn finish(&self, kind: SessionKind, observed: &[(PartitionKey, Observed)]) -> Vec<bool> {
        let id = match kind {
            SessionKind::Sessionless => return vec![true; observed.len()],
            SessionKind::Full { id } | SessionKind::Incremental { id } => id,
        };
        let incremental = matches!(kind, SessionKind::Incremental { .. });
        let mut sessions = self.sessions.lock();
        let Some(session) = sessions.get_mut(&id) else {
            // Evicted meanwhile: the next request gets FETCH_SESSION_ID_NOT_FOUND.
            return vec![true; observed.len()];
        };
        let mut include = Vec::with_capacity(observed.len());
        let mut moved = Vec::new();
        for (key, now) in observed {
            let Some(pos) = session.partitions.iter().position(|c| &c.key == key) else {
                include.push(true);
                continue;
            };
            let cached = &mut session.partitions[pos];
            let changed = now.has_records
                || now.error
                || cached.last.is_none_or(|last| {
                    last.high_watermark != now.high_watermark
                        || last.last_stable_offset != now.last_stable_offset
                        || last.log_start_offset != now.log_start_offset
                });
            cached.last = Some(*now);
            include.push(!incremental || changed);
            if incremental && changed {
                moved.push(pos);
            }
        }
        // Move the answered partitions to the back, keeping their order.
        moved.sort_unstable();
        for (n, pos) in moved.into_iter().enumerate() {
            let c = session.partitions.remove(pos - n);
            session.partitions.push(c);
        }
        include
    }

    fn create(
        &self,
        sessions: &mut HashMap<i32, Session>,
        partitions: &[(PartitionKey, Wanted)],
        now: Instant,
    ) -> Option<i32> {
        if self.slots == 0 {
            return None;
        }
        if sessions.len() >= self.slots {
            let victim = self.victim(sessions, partitions.len(), now)?;
            sessions.remove(&victim);
        }
        let id = loop {
            let id = (Uuid::new_v4().as_u128() as i32) & i32::MAX;
            if id != INVALID_SESSION_ID && !sessions.contains_key(&id) {
                break id;
            }
        };
        sessions.insert(
            id,
            Session {
                next_epoch: next_epoch(INITIAL_EPOCH),
                partitions: partitions
                    .iter()
                    .map(|(key, wanted)| Cached {
                        key: key.clone(),
                        wanted: *wanted,
                        last: None,
                    })
                    .collect(),
                last_used: now,
            },
        );
        Some(id)
    }

    /// The session a new one of `size` partitions may replace, if any.
    fn victim(&self, sessions: &HashMap<i32, Session>, size: usize, now: Instant) -> Option<i32> {
        let (lru, s) = sessions.iter().min_by_key(|(_, s)| s.last_used)?;
        if now.saturating_duration_since(s.last_used) >= self.evict_after {
            return Some(*lru);
        }
        let (smallest, s) = sessions
            .iter()
            .min_by_key(|(_, s)| (s.partitions.len(), s.last_used))?;
        (s.partitions.len() < size).then_some(*smallest)
    }
}

/// The epoch after `epoch`: wraps from `i32::MAX` to 1.
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX { 1 } else { epoch + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        PartitionKey {
            topic_id: Uuid::nil(),
            topic: "t".into(),
            partition: p,
        }
    }
    fn want(offset: i64) -> Wanted {
        Wanted {
            fetch_offset: offset,
            partition_max_bytes: 1024,
            current_leader_epoch: -1,
        }
    }
    fn obs(hw: i64, has_records: bool) -> Observed {
        Observed {
            high_watermark: hw,
            last_stable_offset: hw,
            log_start_offset: 0,
            has_records,
            error: false,
        }
    }
    fn cache(slots: usize) -> FetchSessionCache {
        FetchSessionCache::new(slots, DEFAULT_EVICTION_AFTER)
    }

    #[test]
    fn sessionless_and_session_creation() {
        let c = cache(2);
        let now = Instant::now();
        let p = c
            .begin(0, FINAL_EPOCH, vec![(key(0), want(0))], &[], now)
            .unwrap();
        assert_eq!(p.kind, SessionKind::Sessionless);
        assert!(c.is_empty());
        let p = c
            .begin(0, INITIAL_EPOCH, vec![(key(0), want(0))], &[], now)
            .unwrap();
        let SessionKind::Full { id } = p.kind else {
            panic!("no session: {p:?}")
        };
        assert_ne!(id, INVALID_SESSION_ID);
        assert_eq!(c.len(), 1);
        // Closing it with the final epoch.
        let p = c.begin(id, FINAL_EPOCH, vec![], &[], now).unwrap();
        assert_eq!(p.kind, SessionKind::Sessionless);
        assert!(c.is_empty());
    }

    #[test]
    fn incremental_checks_id_and_epoch_and_tracks_partitions() {
        let c = cache(4);
        let now = Instant::now();
        let id = c
            .begin(0, 0, vec![(key(0), want(0)), (key(1), want(0))], &[], now)
            .unwrap()
            .kind
            .response_id();
        assert_eq!(
            c.begin(id + 1, 1, vec![], &[], now).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
        assert_eq!(
            c.begin(id, 2, vec![], &[], now).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch
        );
        // Epoch 1: update partition 1's offset, add 2, forget 0.
        let p = c
            .begin(
                id,
                1,
                vec![(key(1), want(5)), (key(2), want(0))],
                &[key(0)],
                now,
            )
            .unwrap();
        assert_eq!(p.kind, SessionKind::Incremental { id });
        assert_eq!(p.partitions, vec![(key(1), want(5)), (key(2), want(0))]);
        // The same epoch again is stale now.
        assert_eq!(
            c.begin(id, 1, vec![], &[], now).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch
        );
        let p = c.begin(id, 2, vec![], &[], now).unwrap();
        assert_eq!(p.partitions.len(), 2);
    }

    #[test]
    fn incremental_responses_omit_unchanged_partitions() {
        let c = cache(4);
        let now = Instant::now();
        let plan = c
            .begin(0, 0, vec![(key(0), want(0)), (key(1), want(0))], &[], now)
            .unwrap();
        let full = c.finish(
            plan.kind,
            &[(key(0), obs(3, true)), (key(1), obs(0, false))],
        );
        assert_eq!(full, vec![true, true], "a full response has everything");
        let id = plan.kind.response_id();
        let plan = c.begin(id, 1, vec![(key(0), want(3))], &[], now).unwrap();
        let inc = c.finish(
            plan.kind,
            &[(key(0), obs(3, false)), (key(1), obs(0, false))],
        );
        assert_eq!(inc, vec![false, false], "nothing changed");
        let plan = c.begin(id, 2, vec![], &[], now).unwrap();
        let inc = c.finish(
            plan.kind,
            &[(key(0), obs(4, false)), (key(1), obs(0, false))],
        );
        assert_eq!(inc, vec![true, false], "partition 0's high watermark moved");
        // Answered partitions move to the back of the order.
        let plan = c.begin(id, 3, vec![], &[], now).unwrap();
        assert_eq!(plan.partitions[0].0, key(1));
        assert_eq!(plan.partitions[1].0, key(0));
    }

    #[test]
    fn full_cache_evicts_idle_then_smaller_sessions() {
        let c = cache(2);
        let t0 = Instant::now();
        let small = c
            .begin(0, 0, vec![(key(0), want(0))], &[], t0)
            .unwrap()
            .kind;
        let two = vec![(key(0), want(0)), (key(1), want(0))];
        let big = c.begin(0, 0, two.clone(), &[], t0).unwrap().kind;
        assert_eq!(c.len(), 2);
        // Same size as the smallest, nobody idle: not cached.
        let p = c.begin(0, 0, vec![(key(5), want(0))], &[], t0).unwrap();
        assert_eq!(p.kind, SessionKind::Sessionless);
        // Larger than the smallest: it takes the small session's slot.
        let three = vec![(key(0), want(0)), (key(1), want(0)), (key(2), want(0))];
        let p = c.begin(0, 0, three, &[], t0).unwrap();
        assert!(matches!(p.kind, SessionKind::Full { .. }));
        assert_eq!(
            c.begin(small.response_id(), 1, vec![], &[], t0)
                .unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
        assert_eq!(c.len(), 2);
        // After the eviction time the least recently used goes, whatever its size.
        let later = t0 + DEFAULT_EVICTION_AFTER + Duration::from_secs(1);
        c.begin(big.response_id(), 1, vec![], &[], later).unwrap();
        let p = c.begin(0, 0, vec![(key(9), want(0))], &[], later).unwrap();
        assert!(matches!(p.kind, SessionKind::Full { .. }));
        assert_eq!(c.len(), 2);
        assert!(c.begin(big.response_id(), 2, vec![], &[], later).is_ok());
    }

    #[test]
    fn zero_slots_turn_sessions_off() {
        let c = cache(0);
        let p = c
            .begin(0, 0, vec![(key(0), want(0))], &[], Instant::now())
            .unwrap();
        assert_eq!(p.kind, SessionKind::Sessionless);
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(i32::MAX), 1);
    }
}
