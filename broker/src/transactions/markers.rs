//! Writing a transaction's COMMIT/ABORT markers to its partitions.
//!
//! The coordinator talks to partitions through [`MarkerWriter`] so the
//! retry logic ([`send_markers`]) is tested with a fake. The broker's
//! implementation writes through the partition manager and, for
//! `__consumer_offsets` partitions, then tells the group coordinator to
//! apply or drop the producer's pending offsets.

use std::time::Duration;

use futures::future::BoxFuture;
use skiff_wire::kafka_protocol::error::ResponseError as E;
use tracing::warn;

use crate::errors::KafkaError;

pub use crate::producer_state::TxnMarker;

/// Where markers go.
pub trait MarkerWriter: Send + Sync {
    /// Write `marker` to `topic`-`partition`; its offset once durable.
    fn write_marker<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        marker: TxnMarker,
    ) -> BoxFuture<'a, Result<i64, KafkaError>>;
}

/// First and largest pause between retries of a marker.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Why sending stopped before every marker was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// This broker no longer coordinates the transaction: the new
    /// coordinator resends the markers after replaying its state.
    NotCoordinator,
}

/// Write `marker` to every partition, retrying each until it is written or
/// cannot ever be (the partition was deleted; the partition already has a
/// newer epoch for the producer, so this transaction was ended there).
/// Stops with [`SendError::NotCoordinator`] as soon as `still_ours` says so.
pub async fn send_markers(
    writer: &dyn MarkerWriter,
    partitions: &[(String, i32)],
    marker: TxnMarker,
    still_ours: &(dyn Fn() -> bool + Send + Sync),
) -> Result<(), SendError> {
    let one = |topic: &str, partition: i32| {
        let topic = topic.to_string();
        async move {
            let mut pause = RETRY_MIN;
            loop {
                if !still_ours() {
                    return Err(SendError::NotCoordinator);
                }
                match writer.write_marker(&topic, partition, marker).await {
                    Ok(_) => return Ok(()),
                    Err(e) if is_final(e.code) => {
                        warn!(topic, partition, error = %e.message, code = ?e.code, "giving up on a transaction marker");
                        return Ok(());
                    }
                    Err(e) => {
                        warn!(topic, partition, error = %e.message, code = ?e.code, "transaction marker failed, retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(RETRY_MAX);
                    }
                }
            }
        }
    };
    let results =
        futures::future::join_all(partitions.iter().map(|(t, p)| one(t.as_str(), *p))).await;
    results.into_iter().collect()
}

/// Errors a retry cannot fix.
fn is_final(code: E) -> bool {
    matches!(
        code,
        E::UnknownTopicOrPartition
            | E::InvalidProducerEpoch
            | E::ProducerFenced
            | E::TransactionCoordinatorFenced
            | E::InvalidTopicException
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    use parking_lot::Mutex;

    use super::*;

    /// Fails each partition a set number of times, then records the marker.
    #[derive(Default)]
    struct Fake {
        failures: Mutex<HashMap<(String, i32), (u32, E)>>,
        written: Mutex<Vec<(String, i32, TxnMarker)>>,
    }

    impl MarkerWriter for Fake {
        fn write_marker<'a>(
            &'a self,
            topic: &'a str,
            partition: i32,
            marker: TxnMarker,
        ) -> BoxFuture<'a, Result<i64, KafkaError>> {
            Box::pin(async move {
                if let Some((n, code)) = self.failures.lock().get_mut(&(topic.into(), partition))
                    && *n > 0
                {
                    *n -= 1;
                    return Err(KafkaError::new(*code, "injected"));
                }
                self.written.lock().push((topic.into(), partition, marker));
                Ok(0)
            })
        }
    }

    fn marker() -> TxnMarker {
        TxnMarker {
            producer_id: 5,
            producer_epoch: 2,
            coordinator_epoch: 1,
            commit: true,
        }
    }

    #[tokio::test]
    async fn retries_until_written_and_skips_final_errors() {
        let fake = Fake::default();
        fake.failures
            .lock()
            .insert(("a".into(), 0), (3, E::NotLeaderOrFollower));
        fake.failures
            .lock()
            .insert(("gone".into(), 0), (1, E::UnknownTopicOrPartition));
        let parts = vec![
            ("a".to_string(), 0),
            ("a".to_string(), 1),
            ("gone".to_string(), 0),
        ];
        send_markers(&fake, &parts, marker(), &|| true)
            .await
            .unwrap();
        let mut written: Vec<_> = fake
            .written
            .lock()
            .iter()
            .map(|(t, p, m)| (t.clone(), *p, *m))
            .collect();
        written.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        assert_eq!(
            written,
            vec![("a".into(), 0, marker()), ("a".into(), 1, marker())],
            "retried after NOT_LEADER; the deleted partition was given up"
        );
    }

    #[tokio::test]
    async fn stops_when_no_longer_coordinator() {
        let fake = Fake::default();
        fake.failures
            .lock()
            .insert(("a".into(), 0), (u32::MAX, E::NotLeaderOrFollower));
        let ours = AtomicBool::new(true);
        let parts = vec![("a".to_string(), 0)];
        let check = || ours.load(Ordering::SeqCst);
        let send = send_markers(&fake, &parts, marker(), &check);
        let stop = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ours.store(false, Ordering::SeqCst);
        };
        let (r, ()) = tokio::join!(send, stop);
        assert_eq!(r, Err(SendError::NotCoordinator));
        assert!(fake.written.lock().is_empty());
    }
}
