//! AddOffsetsToTxn (v0-v4): the group's `__consumer_offsets` partition joins
//! the transaction, so its TxnOffsetCommit records get the transaction's
//! marker.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ResponseKind,
};

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: AddOffsetsToTxnRequest,
) -> Admit {
    respond_after(async move {
        let code = broker
            .transactions
            .add_offsets(
                &broker,
                &req.transactional_id,
                req.producer_id.0,
                req.producer_epoch,
                &req.group_id,
            )
            .await;
        ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
    })
}
