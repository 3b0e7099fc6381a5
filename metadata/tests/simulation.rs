//! Deterministic fault simulation of a 3-node metadata cluster.
//!
//! Each seed drives a reproducible schedule of faults (request and reply
//! loss, delay, node isolation, pair cuts, crashes and restarts from the
//! node's files) and of client operations (partition assignment, object
//! commits at the epoch a broker believes it holds, heartbeats) through
//! random nodes. After every step the invariants are checked:
//!
//! 1. at most one owner per partition per epoch (across all nodes, ever);
//! 2. on every node, a stream's epoch never decreases (per incarnation:
//!    a restarted node starts again from its snapshot);
//! 3. the committed ranges of every stream are contiguous and never overlap;
//! 4. every acknowledged command is in the state a linearizable read sees
//!    (a read that finds no quorum in time is recorded as unknown);
//!
//! and at the end, once healed, every replica holds the same state.
//!
//! Determinism: a seed runs all nodes on its own current-thread tokio
//! runtime with a paused clock (time jumps to the next timer whenever every
//! task waits), openraft's election timeouts come from an RNG seeded with
//! the seed ([`skiff_metadata::runtime::seed_thread_rng`]), the network's
//! loss and delay from the [`MemRouter`]'s seeded RNG, and storage without
//! fsync runs inline (no threads). So one seed is one run: the same faults,
//! elections, message order and outcomes. Each run records a trace (every
//! fault, every operation's outcome, each node's term, log and leader and
//! the virtual time after every step, the final index); a test replays one
//! seed and compares the traces.
//!
//! Knobs: `SKIFF_SIM_SEEDS` (default 32) seeds run, starting at
//! `SKIFF_SIM_SEED` (default 1); a failure prints the seed to replay with
//! `SKIFF_SIM_SEED=<seed> SKIFF_SIM_SEEDS=1`. `SKIFF_SIM_STEPS` (default 40)
//! steps per seed. Thousands of seeds: `SKIFF_SIM_SEEDS=5000 cargo test
//! --release -p skiff-metadata --test simulation` (see BENCHMARKS.md).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skiff_common::{BrokerId, ObjectId, StreamEpoch, StreamId};
use skiff_metadata::net::mem::{Faults, MemRouter};
use skiff_metadata::node::now_ms;
use skiff_metadata::{ClusterState, Command, MetadataConfig, MetadataError, MetadataNode, Output};
use tokio::time::Instant;

const NODES: [u64; 3] = [1, 2, 3];
const PARTITIONS: u32 = 4;
const BROKERS: i32 = 3;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Prints the seed if the test panics while it is alive.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "simulation failed: replay with SKIFF_SIM_SEED={} SKIFF_SIM_SEEDS=1",
                self.0
            );
        }
    }
}

#[derive(Default)]
struct History {
    /// (stream, epoch) -> owner, as ever observed.
    owners: BTreeMap<(StreamId, StreamEpoch), BrokerId>,
    /// Acknowledged commits: object -> (stream, start, end).
    commits: BTreeMap<u64, (StreamId, u64, u64)>,
    /// Acknowledged assignments: (stream, epoch, broker).
    assigns: Vec<(StreamId, StreamEpoch, BrokerId)>,
    /// What each broker believes it holds: (broker, partition) -> epoch.
    held: BTreeMap<(i32, u32), StreamEpoch>,
    reads_unknown: u64,
    reads_checked: u64,
}

struct Sim {
    seed: u64,
    rng: StdRng,
    router: MemRouter,
    dir: tempfile::TempDir,
    nodes: BTreeMap<u64, Option<MetadataNode>>,
    /// Per node incarnation: last seen epoch per stream.
    seen_epochs: BTreeMap<u64, BTreeMap<StreamId, u64>>,
    history: Arc<Mutex<History>>,
    broker_epochs: BTreeMap<i32, u64>,
    streams: Vec<StreamId>,
    /// What happened, in order (compared across replays of a seed).
    trace: Vec<String>,
    start: Instant,
}

fn node_config(id: u64, dir: &std::path::Path) -> MetadataConfig {
    MetadataConfig {
        fsync: false,
        snapshot_every: 100,
        logs_kept_after_snapshot: 10,
        request_timeout: Duration::from_secs(1),
        session_timeout: Duration::from_secs(3600),
        ..voter_config(id, &NODES, dir)
    }
}

impl Sim {
    async fn new(seed: u64) -> Self {
        let router = MemRouter::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = BTreeMap::new();
        for id in NODES {
            nodes.insert(
                id,
                Some(
                    router
                        .start_node(node_config(id, dir.path()))
                        .await
                        .unwrap(),
                ),
            );
        }
        let mut sim = Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
            router,
            dir,
            nodes,
            seen_epochs: BTreeMap::new(),
            history: Arc::default(),
            broker_epochs: BTreeMap::new(),
            streams: Vec::new(),
            trace: Vec::new(),
            start: Instant::now(),
        };
        let n = sim.live().remove(0);
        n.wait_ready(Duration::from_secs(20)).await.unwrap();
        for b in 0..BROKERS {
            let e = register(&n, b).await;
            sim.broker_epochs.insert(b, e);
        }
        sim.streams = create_topic(&n, "t", PARTITIONS).await;
        for p in 0..PARTITIONS {
            let b = p as i32 % BROKERS;
            let e = assign(&n, "t", p, b, sim.broker_epochs[&b]).await;
            let mut h = sim.history.lock();
            h.held.insert((b, p), e);
            h.assigns.push((sim.streams[p as usize], e, BrokerId(b)));
        }
        sim
    }

    fn live(&self) -> Vec<MetadataNode> {
        self.nodes.values().flatten().cloned().collect()
    }

    fn random_live(&mut self) -> Option<MetadataNode> {
        let live = self.live();
        if live.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..live.len());
        Some(live[i].clone())
    }

    /// One random fault action.
    async fn fault(&mut self) {
        let kind = self.rng.random_range(0..10);
        self.trace.push(format!("fault {kind}"));
        match kind {
            0..=2 => {
                let f = Faults {
                    request_loss: self.rng.random_range(0.0..0.15),
                    reply_loss: self.rng.random_range(0.0..0.15),
                    max_delay: Duration::from_millis(self.rng.random_range(0..20)),
                    ..Faults::default()
                };
                self.router.set_faults(f);
            }
            3 => {
                let id = NODES[self.rng.random_range(0..NODES.len())];
                self.router.update_faults(|f| {
                    f.isolated.clear();
                    f.isolated.insert(id);
                });
            }
            4 => {
                let a = NODES[self.rng.random_range(0..NODES.len())];
                let b = NODES[self.rng.random_range(0..NODES.len())];
                if a != b {
                    self.router.update_faults(|f| {
                        f.cut.insert((a.min(b), a.max(b)));
                    });
                }
            }
            5 => self.router.set_faults(Faults::default()),
            // Crash a node if all are up (keep a quorum possible).
            6 if self.live().len() == NODES.len() => {
                let id = NODES[self.rng.random_range(0..NODES.len())];
                if let Some(n) = self.nodes.get_mut(&id).and_then(Option::take) {
                    self.router.unregister(id);
                    n.shutdown().await;
                    self.seen_epochs.remove(&id);
                }
            }
            7 => self.restart_all_down().await,
            _ => {}
        }
    }

    async fn restart_all_down(&mut self) {
        let down: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in down {
            let n = self
                .router
                .start_node(node_config(id, self.dir.path()))
                .await
                .unwrap();
            self.nodes.insert(id, Some(n));
        }
    }

    /// Spawn a few random client operations and wait for them (bounded).
    async fn workload(&mut self) {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let Some(client) = self.random_live() else {
                return;
            };
            let broker = self.rng.random_range(0..BROKERS);
            let p = self.rng.random_range(0..PARTITIONS);
            let stream = self.streams[p as usize];
            let be = self.broker_epochs[&broker];
            let hist = self.history.clone();
            let kind = self.rng.random_range(0..10);
            let len = self.rng.random_range(1..50u64);
            tasks.push(tokio::spawn(async move {
                let who = format!("b{broker} p{p} via n{}", client.id());
                if kind < 1 {
                    let cmd = Command::AssignPartition {
                        topic: "t".into(),
                        partition: p,
                        broker: BrokerId(broker),
                        broker_epoch: be,
                        expected_epoch: None,
                    };
                    let r = client.write(cmd).await;
                    if let Ok(Output::PartitionAssigned { epoch, .. }) = &r {
                        let mut h = hist.lock();
                        h.assigns.push((stream, *epoch, BrokerId(broker)));
                        h.held.insert((broker, p), *epoch);
                    }
                    format!("assign {who}: {}", outcome(&r))
                } else if kind < 9 {
                    let Some(epoch) = hist.lock().held.get(&(broker, p)).copied() else {
                        return format!("commit {who}: holds nothing");
                    };
                    let r = client.write(Command::ReserveObjectIds { count: 1 }).await;
                    let Ok(Output::IdRange { start: id, .. }) = r else {
                        return format!("reserve {who}: {}", outcome(&r));
                    };
                    let end = client
                        .read_local(|s| s.stream_meta(stream).map(|m| m.end_offset).unwrap_or(0));
                    let r = client
                        .write(commit_cmd(id, stream, epoch, end, end + len))
                        .await;
                    match &r {
                        Ok(_) => {
                            hist.lock().commits.insert(id, (stream, end, end + len));
                        }
                        Err(MetadataError::Command(_)) | Err(MetadataError::Unavailable(_)) => {}
                        Err(MetadataError::NotLeader { .. }) | Err(MetadataError::Fatal(_)) => {}
                        Err(e) => panic!("unexpected error {e}"),
                    }
                    format!(
                        "commit {who} obj {id} [{end}, {}) at {epoch}: {}",
                        end + len,
                        outcome(&r)
                    )
                } else {
                    let r = client
                        .write(Command::Heartbeat {
                            broker: BrokerId(broker),
                            broker_epoch: be,
                            now_ms: now_ms(),
                        })
                        .await;
                    format!("heartbeat {who}: {}", outcome(&r))
                }
            }));
        }
        for t in tasks {
            let e = match tokio::time::timeout(Duration::from_millis(1500), t).await {
                Ok(Ok(e)) => e,
                Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
                Err(_) => "still running".to_string(),
            };
            self.trace.push(e);
        }
    }

    /// Each live node's view of Raft, and the virtual time.
    fn trace_nodes(&mut self, step: usize) {
        let mut line = format!("step {step} t={:?}", self.start.elapsed());
        for (id, n) in &self.nodes {
            let Some(n) = n else {
                line.push_str(&format!(" n{id}:down"));
                continue;
            };
            let m = n.raft().metrics().borrow().clone();
            line.push_str(&format!(
                " n{id}:term={},last={:?},applied={},leader={:?}",
                m.current_term,
                m.last_log_index,
                n.applied_index(),
                m.current_leader
            ));
        }
        self.trace.push(line);
    }

    /// Check the invariants on every live node, and acknowledged commands
    /// against a linearizable read.
    async fn check(&mut self, step: usize) {
        let seed = self.seed;
        let live: Vec<(u64, MetadataNode)> = self
            .nodes
            .iter()
            .filter_map(|(id, n)| n.clone().map(|n| (*id, n)))
            .collect();
        for (id, n) in &live {
            let state = n.read_local(|s| s.clone());
            check_contiguous(&state, seed, step, *id);
            let seen = self.seen_epochs.entry(*id).or_default();
            let mut h = self.history.lock();
            for t in state.topics.values() {
                for p in &t.partitions {
                    let epoch = state.streams[&p.stream].epoch;
                    let prev = seen.insert(p.stream, epoch).unwrap_or(0);
                    assert!(
                        epoch >= prev,
                        "seed {seed} step {step}: node {id} stream {} epoch went {prev} -> {epoch}",
                        p.stream
                    );
                    if let Some(owner) = p.owner
                        && p.state != skiff_metadata::command::PartitionState::Offline
                    {
                        let prev = h.owners.insert((p.stream, p.epoch), owner);
                        assert!(
                            prev.is_none() || prev == Some(owner),
                            "seed {seed} step {step}: two owners {prev:?} and {owner} of stream {} at epoch {}",
                            p.stream,
                            p.epoch
                        );
                    }
                }
            }
        }
        // Acknowledged commands against a linearizable read.
        let Some(client) = self.random_live() else {
            return;
        };
        let (commits, assigns) = {
            let h = self.history.lock();
            (h.commits.clone(), h.assigns.clone())
        };
        match tokio::time::timeout(Duration::from_millis(1500), client.read(|s| s.clone())).await {
            Ok(Ok(state)) => {
                check_acked(&state, &commits, &assigns, seed, step);
                self.history.lock().reads_checked += 1;
                self.trace.push(format!("read via n{}: ok", client.id()));
            }
            _ => {
                self.history.lock().reads_unknown += 1;
                self.trace
                    .push(format!("read via n{}: unknown", client.id()));
            }
        }
        self.trace_nodes(step);
    }
}

fn check_contiguous(state: &ClusterState, seed: u64, step: usize, node: u64) {
    for (stream, s) in &state.streams {
        let mut next = None;
        for (start, (end, _)) in &s.slices {
            if let Some(n) = next {
                assert_eq!(
                    *start, n,
                    "seed {seed} step {step}: node {node} stream {stream} has a gap or overlap"
                );
            }
            assert!(end > start);
            next = Some(*end);
        }
        if let Some(n) = next {
            assert_eq!(
                n, s.end,
                "seed {seed} step {step}: node {node} stream {stream} end mismatch"
            );
        }
    }
}

fn check_acked(
    state: &ClusterState,
    commits: &BTreeMap<u64, (StreamId, u64, u64)>,
    assigns: &[(StreamId, StreamEpoch, BrokerId)],
    seed: u64,
    step: usize,
) {
    for (obj, (stream, start, end)) in commits {
        let got = state.streams[stream].slices.get(start);
        assert_eq!(
            got,
            Some(&(*end, ObjectId(*obj))),
            "seed {seed} step {step}: acknowledged commit of object {obj} lost"
        );
    }
    let mut seen = BTreeMap::new();
    for (stream, epoch, broker) in assigns {
        assert!(
            state.streams[stream].epoch >= epoch.0,
            "seed {seed} step {step}: acknowledged epoch {epoch} of {stream} lost"
        );
        let prev = seen.insert((*stream, *epoch), *broker);
        assert!(
            prev.is_none(),
            "seed {seed} step {step}: epoch {epoch} of {stream} acknowledged twice"
        );
    }
}

async fn run_seed(seed: u64, steps: usize) -> Vec<String> {
    let _guard = SeedGuard(seed);
    let mut sim = Sim::new(seed).await;
    for step in 0..steps {
        sim.fault().await;
        sim.workload().await;
        sim.check(step).await;
    }
    // Heal, bring everyone back, and check convergence.
    sim.router.set_faults(Faults::default());
    sim.restart_all_down().await;
    let live = sim.live();
    let client = live[0].clone();
    let state = client
        .read(|s| s.clone())
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: no quorum after healing: {e}"));
    let (commits, assigns) = {
        let h = sim.history.lock();
        (h.commits.clone(), h.assigns.clone())
    };
    check_acked(&state, &commits, &assigns, seed, steps);
    let index = client.applied_index();
    for n in &live {
        n.raft()
            .wait(Some(Duration::from_secs(20)))
            .applied_index_at_least(Some(index), "converge")
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: node {} did not converge: {e}", n.id()));
        let mine = n.read_local(|s| s.clone());
        let theirs = client.read_local(|s| s.clone());
        if n.applied_index() == client.applied_index() {
            assert_eq!(
                mine, theirs,
                "seed {seed}: replicas diverge at the same applied index"
            );
        }
    }
    {
        let h = sim.history.lock();
        eprintln!(
            "seed {seed}: {} commits and {} assignments acknowledged, {} checks by linearizable read, {} unknown, {:?} simulated",
            h.commits.len(),
            h.assigns.len(),
            h.reads_checked,
            h.reads_unknown,
            sim.start.elapsed()
        );
    }
    let summary = state_summary(&client.read_local(|s| s.clone()));
    sim.trace.push(format!(
        "final applied={} {summary}",
        client.applied_index()
    ));
    for n in live {
        n.shutdown().await;
    }
    sim.trace
}

/// The parts of the state that do not carry wall-clock times or random ids.
fn state_summary(state: &ClusterState) -> String {
    let mut out = String::new();
    for (id, s) in &state.streams {
        out.push_str(&format!("{id}@{}:{:?} ", s.epoch, s.slices));
    }
    for t in state.topics.values() {
        for p in &t.partitions {
            out.push_str(&format!("{}={:?}@{} ", p.stream, p.owner, p.epoch));
        }
    }
    out
}

fn outcome<T>(r: &Result<T, MetadataError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(MetadataError::Command(e)) => format!("rejected ({e})"),
        Err(e) => format!("failed ({e})"),
    }
}

/// Run one seed on a fresh current-thread runtime with a paused clock and
/// openraft's RNG seeded: the whole run is a function of the seed.
fn simulate(seed: u64, steps: usize) -> Vec<String> {
    // `RUST_LOG=openraft=debug` etc. to see what a seed does.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    skiff_metadata::runtime::seed_thread_rng(seed);
    let trace = rt.block_on(run_seed(seed, steps));
    skiff_metadata::runtime::unseed_thread_rng();
    trace
}

#[test]
fn simulation_keeps_invariants_under_faults() {
    let first = env_u64("SKIFF_SIM_SEED", 1);
    let seeds = env_u64("SKIFF_SIM_SEEDS", 32);
    let steps = env_u64("SKIFF_SIM_STEPS", 40) as usize;
    for seed in first..first + seeds {
        simulate(seed, steps);
    }
}

#[test]
fn simulation_replays_a_seed_exactly() {
    let seed = env_u64("SKIFF_SIM_SEED", 1) + 1000;
    let steps = env_u64("SKIFF_SIM_STEPS", 40) as usize;
    let a = simulate(seed, steps);
    let b = simulate(seed, steps);
    if let Some(i) = (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i)) {
        panic!(
            "seed {seed} diverged at event {i}:\n  first run:  {:?}\n  second run: {:?}",
            a.get(i),
            b.get(i)
        );
    }
    // The trace is rich enough to tell runs apart.
    assert!(a.len() > steps * 5, "trace too short: {}", a.len());
    assert_ne!(a, simulate(seed + 1, steps), "different seeds, same run");
}
