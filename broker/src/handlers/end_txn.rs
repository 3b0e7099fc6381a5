//! EndTxn (v0-v5): commit or abort a transaction. v5 is KIP-890's
//! transaction version 2: the epoch is bumped at the end and returned.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    EndTxnRequest, EndTxnResponse, ProducerId, ResponseKind,
};

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(broker: Arc<Broker>, ctx: RequestContext, req: EndTxnRequest) -> Admit {
    respond_after(async move {
        let result = broker
            .transactions
            .end_txn(
                &broker,
                &req.transactional_id,
                req.producer_id.0,
                req.producer_epoch,
                req.committed,
                ctx.api_version >= 5,
            )
            .await;
        let resp = match result {
            Ok((pid, epoch)) => EndTxnResponse::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch),
            Err(code) => EndTxnResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        };
        ResponseKind::EndTxn(resp)
    })
}
