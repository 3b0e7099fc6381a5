//! The workload and final read against librdkafka's in-process mock cluster
//! (a real Kafka protocol server, no broker of ours needed): the whole
//! client side of a run, checked by the checker, in a few seconds.
//!
//! The mock cluster runs transactions (InitProducerId, AddPartitionsToTxn,
//! EndTxn) but writes no commit/abort markers and reports no aborted
//! transactions in Fetch: `read_committed` readers there see aborted
//! records, which the checker must report as aborted reads.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use skiff_jepsen::checker::{AnomalyKind, check};
use skiff_jepsen::history::{F, OpType, Recorder};
use skiff_jepsen::workload::{self, ConsumerMode, Idempotence, Values, WorkloadConfig};
use tokio_util::sync::CancellationToken;

/// Runs the workload for a few seconds against a fresh mock cluster and
/// checks the history; returns the report.
async fn run_against_mock(
    mode: ConsumerMode,
    idempotence: Idempotence,
    txn_producers: usize,
    read_committed: bool,
) -> skiff_jepsen::checker::Report {
    let mock = MockCluster::new(3).expect("mock cluster");
    let cfg = Arc::new(WorkloadConfig {
        bootstrap: mock.bootstrap_servers(),
        topic: "jepsen-mock".into(),
        partitions: 3,
        producers: 2,
        producer_concurrency: 2,
        idempotence,
        txn_producers,
        consumers: 2,
        consumer_mode: mode,
        read_committed,
        rate: 300.0,
        send_timeout: Duration::from_secs(5),
        final_read_timeout: Duration::from_secs(30),
    });
    mock.create_topic(&cfg.topic, cfg.partitions, 1)
        .expect("mock topic");
    workload::setup_topic(&cfg, Duration::from_secs(20))
        .await
        .expect("topic");
    let rec = Recorder::in_memory();
    let stop = CancellationToken::new();
    let task = tokio::spawn(workload::run(
        cfg.clone(),
        rec.clone(),
        Values::default(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.cancel();
    task.await.expect("workload");
    assert!(
        workload::final_read(&cfg, &rec).await,
        "final read completes"
    );
    let history = rec.finish().expect("history");
    let report = check(&history);
    let text = report.summary(10);
    println!("{text}");
    assert!(report.counts.sends_ok > 50, "{text}");
    assert!(report.counts.records_polled > 0, "{text}");
    assert_eq!(report.coverage.len(), 3, "{text}");
    assert!(report.coverage.iter().all(|c| c.complete), "{text}");
    // Every completed op follows an invoke of the same process.
    let assigns = history
        .iter()
        .filter(|o| o.f == F::Assign && o.kind == OpType::Ok)
        .count();
    assert!(assigns > 0, "consumers record their assignments");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assign_consumers_idempotent_producers() {
    let report = run_against_mock(ConsumerMode::Assign, Idempotence::On, 0, true).await;
    assert!(report.valid, "{}", report.summary(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_consumers_plain_producers() {
    let report = run_against_mock(ConsumerMode::Subscribe, Idempotence::Off, 0, true).await;
    assert!(report.valid, "{}", report.summary(10));
}

/// Transactional producers beside idempotent ones: commits and aborts both
/// happen; read_uncommitted readers may see anything but no loss, no
/// duplicate, no reordering.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactional_producers_read_uncommitted() {
    let report = run_against_mock(ConsumerMode::Assign, Idempotence::On, 2, false).await;
    let c = &report.counts;
    let text = report.summary(10);
    assert!(report.valid, "{text}");
    assert!(c.txns_ok > 5, "committed transactions:\n{text}");
    assert!(c.txns_fail > 0, "aborted transactions:\n{text}");
}

/// The mock cluster does not hide aborted transactions from read_committed
/// readers (no markers, no aborted list), so this is a broker that breaks
/// read_committed: the checker must report aborted reads and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mock_without_read_committed_gives_aborted_reads() {
    let report = run_against_mock(ConsumerMode::Assign, Idempotence::On, 2, true).await;
    let text = report.summary(10);
    assert!(!report.valid, "{text}");
    assert!(report.counts.txns_fail > 0, "{text}");
    let kinds: Vec<_> = report.anomaly_counts.keys().copied().collect();
    assert_eq!(kinds, vec![AnomalyKind::AbortedRead], "{text}");
}
