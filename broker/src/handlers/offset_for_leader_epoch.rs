//! OffsetForLeaderEpoch: clients use it after a leader change to check for
//! log truncation. A Skiff partition is never truncated (a new owner
//! continues at the committed end of the old one), so the end offset of any
//! epoch up to the current one is at or beyond what the client has read:
//! the answer is the current epoch and the high watermark.

use std::sync::Arc;

use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ResponseKind,
    offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult},
};

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> Admit {
    respond_after(async move {
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.topic.0.to_string();
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let r = EpochEndOffset::default().with_partition(p.partition);
                parts.push(match broker.partitions.get(&name, p.partition).await {
                    Err(e) => r
                        .with_error_code(e.code())
                        .with_leader_epoch(-1)
                        .with_end_offset(-1),
                    Ok(part) => {
                        let ours = part.leader_epoch();
                        if p.current_leader_epoch >= 0 && p.current_leader_epoch < ours {
                            r.with_error_code(ResponseError::FencedLeaderEpoch.code())
                        } else if p.current_leader_epoch > ours || p.leader_epoch > ours {
                            r.with_error_code(ResponseError::UnknownLeaderEpoch.code())
                        } else {
                            r.with_leader_epoch(ours)
                                .with_end_offset(part.high_watermark())
                        }
                    }
                });
            }
            topics.push(
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic)
                    .with_partitions(parts),
            );
        }
        ResponseKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochResponse::default().with_topics(topics),
        )
    })
}
