//! The Kafka listener: accepts connections (at most `max_connections` at
//! once; more wait in the accept backlog) and runs each in a tracked task.
//! Shutdown stops accepting, lets connections finish what they owe, and
//! aborts whatever is left after the grace period.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::connection;

/// Accept connections until `shutdown` is cancelled, then wait for
/// connection tasks up to the configured grace period.
pub async fn run(broker: Arc<Broker>, listener: TcpListener, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let tasks = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        broker.metrics.connections_total.inc();
        broker.metrics.connections.inc();
        let b = broker.clone();
        let token = shutdown.clone();
        tasks.spawn(async move {
            connection::serve(b.clone(), stream, peer, token).await;
            b.metrics.connections.dec();
            drop(permit);
        });
    }
    tasks.close();
    info!(
        open = tasks.len(),
        "listener closed; waiting for connections"
    );
    if tokio::time::timeout(broker.config.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        warn!("connections did not finish within the grace period");
    }
}
