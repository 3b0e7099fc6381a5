//! The transaction coordinator (KIP-98): transactional ids, their producer
//! ids and epochs, and the two-phase end of each transaction.
//!
//! **Where state lives.** Like groups over `__consumer_offsets`, the
//! coordinator of a transactional id is the owner of the id's partition of
//! the internal topic `__transaction_state` (created on first use). Each
//! change of an id's metadata is a record of that partition in Kafka's
//! TransactionLog schema ([`records`]), durable before the request that
//! caused it is answered. The first request for an id whose partition this
//! broker has not replayed at its current stream epoch replays it (last
//! record per id wins), so a new owner continues where the old one stopped.
//!
//! **Ending a transaction.** EndTxn writes PrepareCommit/PrepareAbort, then
//! a COMMIT/ABORT marker to every partition of the transaction through
//! [`markers::MarkerWriter`] (retried until written), then
//! CompleteCommit/CompleteAbort. A transaction found in a Prepare state after
//! replay (the old owner stopped mid-way) has its markers resent by the
//! background task ([`run`]), which also aborts transactions older than their
//! timeout, bumping the epoch so the abandoned producer is fenced.
//!
//! The request semantics (which state answers which code) are the pure
//! functions of [`state`].

pub mod markers;
pub mod records;
mod remote;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use skiff_wire::kafka_protocol::error::ResponseError as E;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::cluster::now_ms;
use crate::errors::KafkaError;
use crate::groups::OFFSETS_TOPIC;
use crate::internal_topic::{self, Code, Entry, LoadState};
use crate::partitions::Partition;
use crate::producer_state::VerificationGuard;
use markers::{MarkerWriter, SendError, TxnMarker};
use records::TxnValue;
use state::{EndPlan, InitPlan, TxnMeta, TxnState};

/// The internal topic holding transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";

/// How often timeouts and unfinished transactions are checked.
const TICK: Duration = Duration::from_secs(1);
/// How long EndTxn and InitProducerId wait for markers before answering.
const COMPLETE_WAIT: Duration = Duration::from_secs(10);

/// Coordinator settings (top-level broker config keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// Partitions of `__transaction_state` when it is created.
    pub num_partitions: u32,
    /// Largest `transaction.timeout.ms` a producer may ask for.
    pub max_timeout_ms: i32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            num_partitions: 50,
            max_timeout_ms: 7_200_000,
        }
    }
}

/// What DescribeTransactions and the admin CLI show of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub state: TxnState,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub partitions: Vec<(String, i32)>,
}

/// The coordinator for every transactional id whose partition this broker
/// owns.
#[derive(Debug, Default)]
pub struct TransactionCoordinator {
    cfg: TxnConfig,
    txns: Mutex<HashMap<String, TxnMeta>>,
    load: LoadState,
    /// Ids whose markers are being sent right now.
    completing: Mutex<HashSet<String>>,
    /// Connections to other brokers (remote markers and verifications).
    peers: remote::Peers,
}

/// Result of InitProducerId: producer id and epoch.
pub type ProducerIdAndEpoch = (i64, i16);

impl TransactionCoordinator {
    pub fn new(cfg: TxnConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    pub fn config(&self) -> &TxnConfig {
        &self.cfg
    }

    /// The coordinator of `transactional_id` for FindCoordinator.
    pub async fn find(&self, broker: &Broker, id: &str) -> Result<(u32, i32), KafkaError> {
        internal_topic::find(broker, TXN_TOPIC, self.cfg.num_partitions, id).await
    }

    /// This broker's open, replayed partition for `id`.
    async fn partition(&self, broker: &Broker, id: &str) -> Result<Arc<Partition>, Code> {
        // Clients ask FindCoordinator first, which creates the topic; a
        // request straight to a broker (Flink's resume path) may come first.
        internal_topic::ensure(broker, TXN_TOPIC, self.cfg.num_partitions)
            .await
            .map_err(|e| e.code())?;
        let p = internal_topic::open(broker, TXN_TOPIC, id).await?;
        self.load(&p).await?;
        Ok(p)
    }

    async fn load(&self, p: &Partition) -> Result<(), Code> {
        let Some(_guard) = self.load.begin(p).await else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut loaded: HashMap<String, TxnValue> = HashMap::new();
        let result = internal_topic::replay(p, |e| {
            let Entry::Record { key, value, .. } = e else {
                return;
            };
            let Ok(id) = records::decode_key(key) else {
                return;
            };
            match value.map(TxnValue::decode) {
                Some(Ok(v)) => {
                    loaded.insert(id, v);
                }
                Some(Err(e)) => warn!(id, error = %e, "skipping an undecodable transaction record"),
                None => {
                    loaded.remove(&id);
                }
            }
        })
        .await;
        let count = result.map_err(|e| {
            warn!(partition = p.index, error = %e, "replaying transaction state failed");
            E::CoordinatorLoadInProgress.code()
        })?;
        {
            let mut txns = self.txns.lock();
            txns.retain(|_, m| m.partition != p.index);
            for (id, v) in loaded {
                txns.insert(id, TxnMeta::new(v, p.index));
            }
        }
        self.load.finish(p);
        info!(
            partition = p.index,
            records = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "replayed transaction state"
        );
        Ok(())
    }

    /// Write `value` as `id`'s metadata (the caller set `pending`), then
    /// make it current; `pending` is cleared either way.
    async fn write(
        &self,
        p: &Partition,
        id: &str,
        value: TxnValue,
        last_epoch: i16,
    ) -> Result<(), Code> {
        let record = [(records::encode_key(id), Some(value.encode()))];
        let pending = {
            let lock = self.load.lock_for(p.index);
            let _guard = lock.lock().await;
            internal_topic::append(p, &record, None).await
        };
        let result = match pending {
            Ok(pending) => pending
                .await
                .map(|_| ())
                .map_err(|_| E::NotCoordinator.code()),
            Err(c) => Err(c),
        };
        let mut txns = self.txns.lock();
        match result {
            Ok(()) => {
                let mut m = TxnMeta::new(value, p.index);
                m.last_epoch = last_epoch;
                txns.insert(id.to_string(), m);
                Ok(())
            }
            Err(code) => {
                if let Some(m) = txns.get_mut(id) {
                    m.pending = false;
                }
                Err(code)
            }
        }
    }

    /// Run `plan` on `id`'s metadata; when it returns a value to write, mark
    /// the id pending before the lock is released.
    fn plan<T>(
        &self,
        id: &str,
        plan: impl FnOnce(Option<&TxnMeta>) -> Result<T, E>,
        writes: impl Fn(&T) -> bool,
    ) -> Result<T, Code> {
        let mut txns = self.txns.lock();
        let r = plan(txns.get(id)).map_err(|e| e.code())?;
        if writes(&r)
            && let Some(m) = txns.get_mut(id)
        {
            m.pending = true;
        }
        Ok(r)
    }

    /// InitProducerId with a transactional id.
    pub async fn init_producer_id(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        timeout_ms: i32,
        expected: Option<ProducerIdAndEpoch>,
    ) -> Result<ProducerIdAndEpoch, Code> {
        if id.is_empty() {
            return Err(E::InvalidRequest.code());
        }
        if timeout_ms <= 0 || timeout_ms > self.cfg.max_timeout_ms {
            return Err(E::InvalidTransactionTimeout.code());
        }
        let p = self.partition(broker, id).await?;
        // One retry after fencing an ongoing transaction, as a client would.
        for _ in 0..2 {
            let known = self.txns.lock().get(id).map(|m| m.value.producer_epoch);
            let new_id = match known {
                Some(e) if !state::epoch_exhausted(e) => None,
                _ => Some(next_producer_id(broker).await.map_err(|e| e.code())?),
            };
            let now = now_ms() as i64;
            {
                let mut txns = self.txns.lock();
                if !txns.contains_key(id)
                    && let Some(pid) = new_id
                {
                    txns.insert(
                        id.to_string(),
                        TxnMeta::new(state::fresh(pid, timeout_ms, now), p.index),
                    );
                }
            }
            let plan = self.plan(
                id,
                |m| match m {
                    Some(m) => state::init(m, timeout_ms, expected, new_id, now),
                    None => Err(E::ConcurrentTransactions),
                },
                |_| true,
            )?;
            match plan {
                InitPlan::Ready(v, last) => {
                    let answer = (v.producer_id, v.producer_epoch);
                    self.write(&p, id, v, last).await?;
                    return Ok(answer);
                }
                InitPlan::FenceOngoing(v) => {
                    let epoch = self.txns.lock().get(id).map(|m| m.last_epoch);
                    self.write(&p, id, v.clone(), epoch.unwrap_or(state::NO_EPOCH))
                        .await?;
                    let done = self.spawn_completion(broker, &p, id, v);
                    if tokio::time::timeout(COMPLETE_WAIT, done).await.is_err() {
                        break;
                    }
                }
            }
        }
        Err(E::ConcurrentTransactions.code())
    }

    /// AddPartitionsToTxn for one transaction: a code per partition, or one
    /// for all. Partitions that do not exist get UNKNOWN_TOPIC_OR_PARTITION
    /// and the others OPERATION_NOT_ATTEMPTED, as Kafka answers.
    pub async fn add_partitions(
        &self,
        broker: &Broker,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        verify_only: bool,
    ) -> Result<Vec<Code>, Code> {
        if id.is_empty() {
            return Err(E::InvalidRequest.code());
        }
        let unknown: Vec<bool> = broker.cluster.read(|s| {
            partitions
                .iter()
                .map(|(t, i)| {
                    u32::try_from(*i)
                        .ok()
                        .and_then(|i| s.partition(t, i))
                        .is_none()
                })
                .collect()
        });
        if unknown.iter().any(|u| *u) {
            return Ok(unknown
                .into_iter()
                .map(|u| {
                    if u {
                        E::UnknownTopicOrPartition.code()
                    } else {
                        E::OperationNotAttempted.code()
                    }
                })
                .collect());
        }
        let p = self.partition(broker, id).await?;
        if verify_only {
            let txns = self.txns.lock();
            return state::verify_partitions(txns.get(id), pid, epoch, partitions)
                .map_err(|e| e.code());
        }
        let now = now_ms() as i64;
        let next = self.plan(
            id,
            |m| state::add_partitions(m, pid, epoch, partitions, now),
            |n| n.is_some(),
        )?;
        if let Some(v) = next {
            let last = self.last_epoch(id);
            self.write(&p, id, v, last).await?;
        }
        Ok(vec![0; partitions.len()])
    }

    /// KIP-890 part 1, for a partition leader about to append a
    /// transactional batch that would start a transaction on `topic`/
    /// `partition`: is the partition in the ongoing transaction of `id` at
    /// `pid`/`epoch`? Asked of the coordinator wherever it is. Errors come
    /// back as the codes Kafka's leaders answer producers with (its
    /// `AddPartitionsToTxnManager`): an unreachable or busy coordinator
    /// (and CONCURRENT_TRANSACTIONS) is NOT_ENOUGH_REPLICAS, which producers
    /// retry; PRODUCER_FENCED is INVALID_PRODUCER_EPOCH; a partition not in
    /// the transaction is INVALID_TXN_STATE.
    pub async fn verify_partition(
        &self,
        broker: &Broker,
        id: &str,
        pid: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), KafkaError> {
        let part = [(topic.to_string(), partition)];
        let local = self
            .add_partitions(broker, id, pid, epoch, &part, true)
            .await;
        let result = match local {
            Ok(codes) => code_result(codes.first().copied().unwrap_or(0)),
            Err(c) if c == E::NotCoordinator.code() => {
                match remote::coordinator_address(broker, id) {
                    Some(addr) => {
                        remote::verify(&self.peers, &addr, id, pid, epoch, topic, partition).await
                    }
                    None => code_result(c),
                }
            }
            Err(c) => code_result(c),
        };
        result.map_err(|e| {
            let code = match e.code {
                E::NotCoordinator
                | E::CoordinatorNotAvailable
                | E::CoordinatorLoadInProgress
                | E::ConcurrentTransactions
                | E::NotLeaderOrFollower => E::NotEnoughReplicas,
                E::ProducerFenced => E::InvalidProducerEpoch,
                c => c,
            };
            KafkaError::new(
                code,
                format!(
                    "transaction {id} (producer {pid}, epoch {epoch}) not verified for {topic}-{partition}: {}",
                    e.message
                ),
            )
        })
    }

    /// [`Self::verify_partition`] for an append to `p` by `pid`: takes the
    /// producer's verification guard on `p` first, so a marker landing while
    /// the coordinator answers voids it, and releases it if verification
    /// fails. The caller checks the guard when appending and ends it after.
    pub async fn verify_for_append(
        &self,
        broker: &Broker,
        p: &Partition,
        id: &str,
        pid: i64,
        epoch: i16,
    ) -> Result<VerificationGuard, KafkaError> {
        let guard = p.producers.update(|s| s.begin_verification(pid));
        let verified = self
            .verify_partition(broker, id, pid, epoch, &p.topic, p.index as i32)
            .await;
        verified
            .map(|()| guard)
            .inspect_err(|_| p.producers.update(|s| s.end_verification(pid, guard)))
    }

    fn last_epoch(&self, id: &str) -> i16 {
        self.txns
            .lock()
            .get(id)
            .map_or(state::NO_EPOCH, |m| m.last_epoch)
    }

    /// AddOffsetsToTxn: the group's offsets partition joins the transaction.
    pub async fn add_offsets(
        &self,
        broker: &Broker,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
    ) -> Code {
        let partition = match broker.groups.find(broker, group).await {
            Ok((partition, _)) => partition as i32,
            Err(e) => return e.code(),
        };
        match self
            .add_partitions(
                broker,
                id,
                pid,
                epoch,
                &[(OFFSETS_TOPIC.to_string(), partition)],
                false,
            )
            .await
        {
            Ok(codes) => codes.into_iter().find(|c| *c != 0).unwrap_or(0),
            Err(c) => c,
        }
    }

    /// EndTxn: the producer id and epoch to answer (v5 returns them).
    pub async fn end_txn(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        v2: bool,
    ) -> Result<ProducerIdAndEpoch, Code> {
        if id.is_empty() {
            return Err(E::InvalidRequest.code());
        }
        let p = self.partition(broker, id).await?;
        let now = now_ms() as i64;
        let plan = self.plan(
            id,
            |m| state::end(m, pid, epoch, commit, v2, now),
            |p| matches!(p, EndPlan::Prepare(_)),
        )?;
        match plan {
            EndPlan::Done(pid, epoch) => Ok((pid, epoch)),
            EndPlan::Prepare(v) => {
                let answer = (v.producer_id, v.producer_epoch);
                let last = self.last_epoch(id);
                self.write(&p, id, v.clone(), last).await?;
                // The outcome is decided once the Prepare record is durable;
                // waiting for the markers only makes the result visible to
                // consumers by the time the producer hears back.
                let done = self.spawn_completion(broker, &p, id, v);
                let _ = tokio::time::timeout(COMPLETE_WAIT, done).await;
                Ok(answer)
            }
        }
    }

    /// Send the markers of the Prepare state `prepared` of `id` and write
    /// its Complete state, in a task; the receiver resolves when done.
    fn spawn_completion(
        &self,
        broker: &Arc<Broker>,
        p: &Arc<Partition>,
        id: &str,
        prepared: TxnValue,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.completing.lock().insert(id.to_string()) {
            return rx; // someone else drives it; the waiter gives up on timeout
        }
        let broker = broker.clone();
        let p = p.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let txns = &broker.transactions;
            let r = txns.complete(&broker, &p, &id, prepared).await;
            txns.completing.lock().remove(&id);
            if let Err(e) = r {
                warn!(id, error = ?e, "transaction not completed here");
            }
            let _ = tx.send(());
        });
        rx
    }

    async fn complete(
        &self,
        broker: &Broker,
        p: &Arc<Partition>,
        id: &str,
        prepared: TxnValue,
    ) -> Result<(), SendError> {
        let marker = TxnMarker {
            producer_id: prepared.producer_id,
            producer_epoch: prepared.producer_epoch,
            coordinator_epoch: p.leader_epoch(),
            commit: prepared.state == TxnState::PrepareCommit,
        };
        let partitions: Vec<(String, i32)> = prepared.partitions.iter().cloned().collect();
        let still_ours = || self.load.is_current(p);
        markers::send_markers(broker, &partitions, marker, &still_ours).await?;
        // Complete only what was prepared (the id may have moved on).
        let now = now_ms() as i64;
        let go = {
            let mut txns = self.txns.lock();
            match txns.get_mut(id) {
                Some(m) if m.value == prepared && !m.pending => {
                    m.pending = true;
                    true
                }
                _ => false,
            }
        };
        if go {
            let last = self.last_epoch(id);
            self.write(p, id, state::completed(&prepared, now), last)
                .await
                .map_err(|_| SendError::NotCoordinator)?;
        }
        Ok(())
    }

    /// DescribeTransactions for one id (`Err`: the id's error code).
    pub async fn describe(&self, broker: &Broker, id: &str) -> Result<TxnDescription, Code> {
        self.partition(broker, id).await?;
        let txns = self.txns.lock();
        let m = txns.get(id).ok_or(E::TransactionalIdNotFound.code())?;
        Ok(describe(id, m))
    }

    /// Every transaction this broker coordinates, filtered by state names
    /// (empty: all), producer ids (empty: all) and a minimum running time in
    /// ms (negative: none). Also returns the state names that are unknown.
    pub async fn list(
        &self,
        broker: &Broker,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> (Vec<TxnDescription>, Vec<String>) {
        self.load_all(broker).await;
        let unknown: Vec<String> = states
            .iter()
            .filter(|s| TxnState::from_name(s).is_none())
            .cloned()
            .collect();
        let now = now_ms() as i64;
        let txns = self.txns.lock();
        let mut out: Vec<TxnDescription> = txns
            .iter()
            .filter(|(_, m)| states.is_empty() || states.iter().any(|s| s == m.value.state.name()))
            .filter(|(_, m)| producer_ids.is_empty() || producer_ids.contains(&m.value.producer_id))
            .filter(|(_, m)| {
                min_duration_ms < 0
                    || (m.value.state == TxnState::Ongoing
                        && now.saturating_sub(m.value.start_ms) >= min_duration_ms)
            })
            .map(|(id, m)| describe(id, m))
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        (out, unknown)
    }

    /// Replay every `__transaction_state` partition this broker owns.
    async fn load_all(&self, broker: &Broker) {
        for index in internal_topic::owned_partitions(broker, TXN_TOPIC) {
            if let Ok(p) = internal_topic::open_index(broker, TXN_TOPIC, index).await {
                let _ = self.load(&p).await;
            }
        }
    }

    /// One pass of the background task: finish transactions left in a
    /// Prepare state, abort the ones past their timeout.
    async fn tick(&self, broker: &Arc<Broker>) {
        self.load_all(broker).await;
        let now = now_ms() as i64;
        let mut work: Vec<(String, u32, TxnValue, bool)> = Vec::new();
        {
            let mut txns = self.txns.lock();
            let completing = self.completing.lock();
            for (id, m) in txns.iter_mut() {
                if m.pending || completing.contains(id) {
                    continue;
                }
                match m.value.state {
                    TxnState::PrepareCommit | TxnState::PrepareAbort => {
                        work.push((id.clone(), m.partition, m.value.clone(), false));
                    }
                    _ if state::timed_out(m, now) => {
                        m.pending = true;
                        work.push((id.clone(), m.partition, state::fence(&m.value, now), true));
                    }
                    _ => {}
                }
            }
        }
        for (id, index, v, fence) in work {
            let Ok(p) = internal_topic::open_index(broker, TXN_TOPIC, index).await else {
                if let Some(m) = self.txns.lock().get_mut(&id) {
                    m.pending = false;
                }
                continue;
            };
            if fence {
                info!(
                    id,
                    producer_id = v.producer_id,
                    "aborting a transaction past its timeout"
                );
                let last = v.producer_epoch.saturating_sub(1);
                if let Err(code) = self.write(&p, &id, v.clone(), last).await {
                    warn!(id, code, "could not abort a timed-out transaction");
                    continue;
                }
            }
            drop(self.spawn_completion(broker, &p, &id, v));
        }
    }
}

fn describe(id: &str, m: &TxnMeta) -> TxnDescription {
    TxnDescription {
        transactional_id: id.to_string(),
        producer_id: m.value.producer_id,
        producer_epoch: m.value.producer_epoch,
        state: m.value.state,
        timeout_ms: m.value.timeout_ms,
        start_ms: m.value.start_ms,
        partitions: m.value.partitions.iter().cloned().collect(),
    }
}

/// A coordinator's code as a result.
fn code_result(code: Code) -> Result<(), KafkaError> {
    match E::try_from_code(code) {
        None => Ok(()),
        Some(e) => Err(KafkaError::new(e, format!("{e:?}"))),
    }
}

/// A fresh producer id from this broker's block.
async fn next_producer_id(broker: &Broker) -> Result<i64, KafkaError> {
    broker.producer_ids.next_producer_id().await
}

impl MarkerWriter for Broker {
    fn write_marker<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        marker: TxnMarker,
    ) -> BoxFuture<'a, Result<i64, KafkaError>> {
        Box::pin(async move {
            match write_local_marker(self, topic, partition, marker).await {
                Err(e) if e.code == E::NotLeaderOrFollower => {
                    match remote::owner_address(self, topic, partition) {
                        Some(addr) => {
                            remote::write_marker(
                                &self.transactions.peers,
                                &addr,
                                topic,
                                partition,
                                marker,
                            )
                            .await
                        }
                        None => Err(e),
                    }
                }
                r => r,
            }
        })
    }
}

/// Write a marker to a partition this broker owns (coordinators and
/// WriteTxnMarkers): on `__consumer_offsets` the group coordinator then
/// applies or drops the producer's pending offsets.
pub async fn write_local_marker(
    broker: &Broker,
    topic: &str,
    partition: i32,
    marker: TxnMarker,
) -> Result<i64, KafkaError> {
    let offset = broker
        .partitions
        .write_txn_marker(topic, partition, marker)
        .await?;
    if topic == OFFSETS_TOPIC
        && let Ok(index) = u32::try_from(partition)
    {
        broker
            .groups
            .complete_txn(
                index,
                marker.producer_id,
                marker.producer_epoch,
                marker.commit,
            )
            .await;
    }
    Ok(offset)
}

/// Finish and time out transactions until `shutdown`.
pub async fn run(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        broker.transactions.tick(&broker).await;
    }
}
