//! DescribeLogDirs: Skiff has one log dir per broker, its `data_dir`; the
//! partitions listed are those this broker serves, with the size estimated
//! as [`crate::log_size`] describes. The volume's total and usable bytes are
//! reported as unknown (-1), as Kafka does when it cannot tell.

use std::sync::Arc;

use futures::FutureExt;
use skiff_wire::kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, ResponseKind, TopicName,
    describe_log_dirs_response::{
        DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
    },
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::log_size;
use crate::router::{Admit, RequestContext};

/// Kafka's "volume size unknown".
const UNKNOWN_VOLUME_BYTES: i64 = -1;

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: DescribeLogDirsRequest,
) -> Admit {
    // Reading WAL tails may take a while; later requests need not wait.
    futures::future::ready(
        async move { Some(ResponseKind::DescribeLogDirs(describe(&broker, req).await).into()) }
            .boxed(),
    )
    .boxed()
}

async fn describe(broker: &Broker, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted = |topic: &str, partition: u32| match &req.topics {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|t| t.topic.0.as_str() == topic && t.partitions.contains(&(partition as i32))),
    };
    let mut parts: Vec<_> = broker
        .partitions
        .all()
        .into_iter()
        .filter(|p| wanted(&p.topic, p.index))
        .collect();
    parts.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    for p in parts {
        let (uploaded, uploaded_end) = broker.cluster.read(|s| log_size::uploaded_bytes(s, &p));
        let size = uploaded.saturating_add(log_size::tail_bytes(&p, uploaded_end).await);
        let entry = DescribeLogDirsPartition::default()
            .with_partition_index(p.index as i32)
            .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
            .with_offset_lag(0)
            .with_is_future_key(false);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == p.topic => t.partitions.push(entry),
            _ => topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(p.topic.clone())))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    let dir = std::fs::canonicalize(&broker.config.data_dir)
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    DescribeLogDirsResponse::default().with_results(vec![
        DescribeLogDirsResult::default()
            .with_log_dir(StrBytes::from_string(dir.display().to_string()))
            .with_topics(topics)
            .with_total_bytes(UNKNOWN_VOLUME_BYTES)
            .with_usable_bytes(UNKNOWN_VOLUME_BYTES),
    ])
}
