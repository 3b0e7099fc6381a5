//! The transaction state machine without a broker: what each request does to
//! a transactional id's metadata and which error code it answers, following
//! Kafka's `TransactionCoordinator` / `TransactionMetadata` so the Java
//! client's expectations hold (PRODUCER_FENCED, INVALID_PRODUCER_ID_MAPPING,
//! CONCURRENT_TRANSACTIONS, INVALID_TXN_STATE, ...).
//!
//! Every function returns the metadata to write (durably, before answering)
//! or the code to answer; the coordinator ([`super`]) does the I/O.

use std::collections::BTreeSet;

use skiff_wire::kafka_protocol::error::ResponseError as E;

use super::records::TxnValue;

/// Kafka's `TransactionState`, with its on-disk byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn from_i8(v: i8) -> Option<Self> {
        Self::ALL.get(usize::try_from(v).ok()?).copied()
    }

    /// The name DescribeTransactions / ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Kafka's "no producer epoch".
pub const NO_EPOCH: i16 = -1;

/// An epoch that cannot be bumped any more: the id is rotated instead.
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// A transactional id in memory: its durable value plus what Kafka keeps
/// only in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub value: TxnValue,
    /// The epoch before the last bump (KIP-360 retries), in memory only.
    pub last_epoch: i16,
    /// A write for this id is in flight: other requests answer
    /// CONCURRENT_TRANSACTIONS.
    pub pending: bool,
    /// The `__transaction_state` partition it lives in.
    pub partition: u32,
}

impl TxnMeta {
    pub fn new(value: TxnValue, partition: u32) -> Self {
        Self {
            value,
            last_epoch: NO_EPOCH,
            pending: false,
            partition,
        }
    }
}

/// The metadata a fresh transactional id starts from (epoch -1 so the first
/// InitProducerId makes it 0).
pub fn fresh(producer_id: i64, timeout_ms: i32, now: i64) -> TxnValue {
    TxnValue {
        producer_id,
        prev_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: NO_EPOCH,
        timeout_ms,
        state: TxnState::Empty,
        partitions: BTreeSet::new(),
        update_ms: now,
        start_ms: -1,
        client_txn_version: 0,
    }
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitPlan {
    /// Write this (state Empty) and answer its producer id and epoch.
    Ready(TxnValue, i16),
    /// An ongoing transaction must be aborted first: write this PrepareAbort
    /// with the bumped epoch, send markers, and answer
    /// CONCURRENT_TRANSACTIONS (the client retries, bumping again).
    FenceOngoing(TxnValue),
}

/// InitProducerId for an existing id. `expected` is the producer id and
/// epoch the request carries (KIP-360), `new_id` a fresh producer id for
/// rotation when the epoch is exhausted.
pub fn init(
    m: &TxnMeta,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    new_id: Option<i64>,
    now: i64,
) -> Result<InitPlan, E> {
    let v = &m.value;
    if m.pending {
        return Err(E::ConcurrentTransactions);
    }
    if let Some((pid, epoch)) = expected {
        let valid = v.producer_epoch == NO_EPOCH
            || pid == v.producer_id
            || (pid == v.prev_producer_id && epoch_exhausted(epoch));
        if !valid {
            return Err(E::ProducerFenced);
        }
    }
    match v.state {
        TxnState::PrepareAbort | TxnState::PrepareCommit => Err(E::ConcurrentTransactions),
        TxnState::Empty | TxnState::CompleteAbort | TxnState::CompleteCommit => {
            let mut next = v.clone();
            next.state = TxnState::Empty;
            next.timeout_ms = timeout_ms;
            next.partitions.clear();
            next.start_ms = -1;
            next.update_ms = now;
            if epoch_exhausted(v.producer_epoch)
                && expected.is_none_or(|(_, e)| e == v.producer_epoch)
            {
                let id = new_id.ok_or(E::CoordinatorNotAvailable)?;
                next.prev_producer_id = v.producer_id;
                next.producer_id = id;
                next.producer_epoch = 0;
                let last = if expected.is_some() {
                    v.producer_epoch
                } else {
                    NO_EPOCH
                };
                return Ok(InitPlan::Ready(next, last));
            }
            let bumped = v.producer_epoch + 1;
            let (epoch, last) = match expected {
                None => (bumped, NO_EPOCH),
                Some((_, e)) if v.producer_epoch == NO_EPOCH || e == v.producer_epoch => {
                    (bumped, v.producer_epoch)
                }
                // A retry of an InitProducerId that already bumped.
                Some((_, e)) if e == m.last_epoch => (v.producer_epoch, m.last_epoch),
                Some(_) => return Err(E::ProducerFenced),
            };
            next.producer_epoch = epoch;
            Ok(InitPlan::Ready(next, last))
        }
        TxnState::Ongoing => Ok(InitPlan::FenceOngoing(fence(v, now))),
        TxnState::Dead | TxnState::PrepareEpochFence => Err(E::ConcurrentTransactions),
    }
}

/// Abort an ongoing transaction on the coordinator's initiative (a new
/// producer instance or a timeout): PrepareAbort with the epoch bumped so the
/// old instance is fenced by the markers.
pub fn fence(v: &TxnValue, now: i64) -> TxnValue {
    let mut next = v.clone();
    if !epoch_exhausted(v.producer_epoch) {
        next.producer_epoch += 1;
    }
    next.state = TxnState::PrepareAbort;
    next.update_ms = now;
    next
}

/// The request's producer id and epoch against the metadata.
fn check_producer(m: Option<&TxnMeta>, pid: i64, epoch: i16) -> Result<&TxnMeta, E> {
    let m = m.ok_or(E::InvalidProducerIdMapping)?;
    if m.value.producer_id != pid {
        return Err(E::InvalidProducerIdMapping);
    }
    if m.value.producer_epoch != epoch {
        return Err(E::ProducerFenced);
    }
    Ok(m)
}

/// AddPartitionsToTxn / AddOffsetsToTxn: the metadata to write, or `None`
/// when every partition is already in the ongoing transaction.
pub fn add_partitions(
    m: Option<&TxnMeta>,
    pid: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now: i64,
) -> Result<Option<TxnValue>, E> {
    let m = check_producer(m, pid, epoch)?;
    if m.pending {
        return Err(E::ConcurrentTransactions);
    }
    let v = &m.value;
    match v.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => Err(E::ConcurrentTransactions),
        TxnState::Dead | TxnState::PrepareEpochFence => Err(E::InvalidTxnState),
        TxnState::Ongoing if partitions.iter().all(|p| v.partitions.contains(p)) => Ok(None),
        state => {
            let mut next = v.clone();
            if state != TxnState::Ongoing {
                next.start_ms = now;
            }
            next.state = TxnState::Ongoing;
            next.partitions.extend(partitions.iter().cloned());
            next.update_ms = now;
            Ok(Some(next))
        }
    }
}

/// AddPartitionsToTxn with verify_only (v4+): a code per partition.
pub fn verify_partitions(
    m: Option<&TxnMeta>,
    pid: i64,
    epoch: i16,
    partitions: &[(String, i32)],
) -> Result<Vec<i16>, E> {
    let m = check_producer(m, pid, epoch)?;
    if matches!(
        m.value.state,
        TxnState::PrepareCommit | TxnState::PrepareAbort
    ) {
        return Err(E::ConcurrentTransactions);
    }
    Ok(partitions
        .iter()
        .map(|p| {
            if m.value.state == TxnState::Ongoing && m.value.partitions.contains(p) {
                0
            } else {
                E::InvalidTxnState.code()
            }
        })
        .collect())
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndPlan {
    /// Already decided that way and complete: answer success with this
    /// producer id and epoch.
    Done(i64, i16),
    /// Write this Prepare state, then send markers and complete.
    Prepare(TxnValue),
}

/// EndTxn. `v2` is KIP-890 transaction version 2 (EndTxn v5+): the epoch is
/// bumped when the transaction ends, and a retry of an EndTxn that already
/// went through (it carries the epoch before the bump) gets the same answer
/// instead of ending the next transaction.
pub fn end(
    m: Option<&TxnMeta>,
    pid: i64,
    epoch: i16,
    commit: bool,
    v2: bool,
    now: i64,
) -> Result<EndPlan, E> {
    let m = m.ok_or(E::InvalidProducerIdMapping)?;
    let v = &m.value;
    if v.producer_id != pid {
        return Err(E::InvalidProducerIdMapping);
    }
    // KIP-890: a retry of the EndTxn that bumped the epoch.
    let retry = v2 && epoch != NO_EPOCH && epoch == v.producer_epoch.wrapping_sub(1);
    if epoch != v.producer_epoch && !retry {
        return Err(E::ProducerFenced);
    }
    if m.pending {
        return Err(E::ConcurrentTransactions);
    }
    let (prepare, complete) = if commit {
        (TxnState::PrepareCommit, TxnState::CompleteCommit)
    } else {
        (TxnState::PrepareAbort, TxnState::CompleteAbort)
    };
    if retry {
        return match v.state {
            s if s == complete => Ok(EndPlan::Done(v.producer_id, v.producer_epoch)),
            s if s == prepare => Err(E::ConcurrentTransactions),
            _ => Err(E::ProducerFenced),
        };
    }
    match v.state {
        TxnState::Ongoing => Ok(EndPlan::Prepare(prepared(v, prepare, v2, now))),
        // KIP-890: aborting with nothing to abort still bumps the epoch.
        TxnState::Empty | TxnState::CompleteAbort | TxnState::CompleteCommit if v2 && !commit => {
            Ok(EndPlan::Prepare(prepared(v, prepare, v2, now)))
        }
        s if s == complete => Ok(EndPlan::Done(v.producer_id, v.producer_epoch)),
        s if s == prepare => Err(E::ConcurrentTransactions),
        _ => Err(E::InvalidTxnState),
    }
}

fn prepared(v: &TxnValue, state: TxnState, v2: bool, now: i64) -> TxnValue {
    let mut next = v.clone();
    next.state = state;
    next.update_ms = now;
    if v2 {
        next.client_txn_version = 2;
        if !epoch_exhausted(v.producer_epoch) {
            next.producer_epoch += 1;
        }
    }
    next
}

/// The Complete state after every marker of a Prepare state was written.
pub fn completed(v: &TxnValue, now: i64) -> TxnValue {
    let mut next = v.clone();
    next.state = if v.state == TxnState::PrepareCommit {
        TxnState::CompleteCommit
    } else {
        TxnState::CompleteAbort
    };
    next.partitions.clear();
    next.update_ms = now;
    next
}

/// Whether an ongoing transaction outlived its timeout at `now`.
pub fn timed_out(m: &TxnMeta, now: i64) -> bool {
    !m.pending
        && m.value.state == TxnState::Ongoing
        && m.value.start_ms >= 0
        && now.saturating_sub(m.value.start_ms) > i64::from(m.value.timeout_ms)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
