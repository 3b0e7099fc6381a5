//! InitProducerId (v0-v5): a producer id and epoch for an idempotent
//! producer (a fresh id at epoch 0, as Kafka does when `transactional_id` is
//! null, whatever id the client held before). Transactional producers are
//! the transaction coordinator's ([`crate::transactions`]).

use std::sync::Arc;

use skiff_wire::kafka_protocol::error::ResponseError;
use skiff_wire::kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use crate::broker::Broker;
use crate::errors::KafkaError;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: InitProducerIdRequest,
) -> Admit {
    respond_after(async move {
        let result = match &req.transactional_id {
            Some(id) => {
                // KIP-360: a producer id and epoch in the request (v3+).
                let expected =
                    (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
                broker
                    .transactions
                    .init_producer_id(&broker, id, req.transaction_timeout_ms, expected)
                    .await
                    .map_err(|code| {
                        KafkaError::new(
                            ResponseError::try_from_code(code)
                                .unwrap_or(ResponseError::UnknownServerError),
                            "",
                        )
                    })
            }
            None => broker
                .producer_ids
                .next_producer_id()
                .await
                .map(|id| (id, 0i16)),
        };
        let resp = match result {
            Ok((id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            Err(e) => InitProducerIdResponse::default()
                .with_error_code(e.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        };
        ResponseKind::InitProducerId(resp)
    })
}
