//! Controller duties run by every broker, acting only where metadata says
//! they should: the broker session heartbeat, and placing partitions that
//! have no owner.
//!
//! Placement rule (DESIGN.md, "Ownership, reassignment and failover"): a
//! partition that lost its owner is reopened only where every acknowledged
//! byte of the old owner's WAL is sure to be in objects. With the file WAL
//! that is the old owner itself, after its restart recovered its WAL; so an
//! offline partition waits for its previous owner to come back (as Kafka
//! waits for an in-sync replica). A partition that never had an owner (a
//! new topic) goes to a live broker, round-robin.

use std::sync::Arc;
use std::time::Duration;

use skiff_common::{BrokerId, StreamEpoch};
use skiff_metadata::command::{
    BrokerState, Command, CommandError, Listener, Output, PartitionState,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::cluster::{ClusterError, now_ms};
use crate::topics;

/// Keep this broker's session alive; re-register if it was fenced (its
/// partitions then come back to it through placement).
pub async fn heartbeat(broker: Arc<Broker>, shutdown: CancellationToken) {
    let interval = (broker.config.metadata.session_timeout / 4).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let cmd = Command::Heartbeat {
            broker: broker.node.id,
            broker_epoch: broker.node.epoch(),
            now_ms: now_ms(),
        };
        match broker.cluster.propose(cmd).await {
            Ok(_) => {}
            Err(ClusterError::Rejected(
                CommandError::BrokerFenced(_)
                | CommandError::StaleBrokerEpoch { .. }
                | CommandError::UnknownBroker(_),
            )) => {
                warn!("this broker was fenced; registering a new incarnation");
                if let Err(e) = register(&broker).await {
                    warn!(error = %e, "re-registration failed");
                }
            }
            Err(e) => debug!(error = %e, "heartbeat failed"),
        }
    }
}

/// Register this broker, storing the new incarnation epoch.
pub async fn register(broker: &Broker) -> Result<u64, ClusterError> {
    let out = broker
        .cluster
        .propose(Command::RegisterBroker {
            broker: broker.node.id,
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: broker.node.host.clone(),
                port: u16::try_from(broker.node.port).unwrap_or(9092),
            }],
            rack: broker.node.rack.clone(),
            now_ms: now_ms(),
        })
        .await?;
    match out {
        Output::BrokerRegistered { broker_epoch } => {
            broker.node.set_epoch(broker_epoch);
            info!(broker_epoch, "registered");
            Ok(broker_epoch)
        }
        other => Err(ClusterError::Unavailable(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// Place offline partitions, when this broker is the metadata leader (the
/// controller). Runs on every metadata change and every second.
pub async fn place_offline_partitions(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut changes = broker.cluster.subscribe();
    loop {
        if broker.cluster.controller_id() == broker.id() {
            place_once(&broker).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = changes.recv() => { while changes.try_recv().is_ok() {} }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn place_once(broker: &Broker) {
    let live = topics::live_brokers(broker);
    if live.is_empty() {
        return;
    }
    // Each placement carries the epoch seen here: a partition placed in the
    // meantime (by the request that created its topic) has a newer epoch and
    // the compare-and-set refuses a second placement, which would close and
    // reopen it at once (and drop a group coordinator's state mid-join).
    let work: Vec<(String, u32, BrokerId, StreamEpoch)> = broker.cluster.read(|s| {
        let mut out = Vec::new();
        let mut rr = 0usize;
        for t in s.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.state != PartitionState::Offline {
                    continue;
                }
                let target = match p.owner {
                    // Wait for the previous owner unless it is live again.
                    Some(prev) => match s.brokers.get(&prev) {
                        Some(b) if b.state == BrokerState::Active => prev,
                        _ => continue,
                    },
                    None => {
                        rr += 1;
                        live[(i + rr) % live.len()]
                    }
                };
                out.push((t.name.clone(), i as u32, target, p.epoch));
            }
        }
        out
    });
    for (topic, partition, target, seen) in work {
        match topics::assign(broker, &topic, partition, target, Some(seen)).await {
            Ok(()) => debug!(topic, partition, broker = target.0, "placed partition"),
            Err(e) => debug!(topic, partition, error = %e.message, "placement failed; will retry"),
        }
    }
}
