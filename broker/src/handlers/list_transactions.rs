//! ListTransactions (v0-v1): transactions this broker coordinates, filtered
//! by state, producer id and (v1) how long they have been running.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, ResponseKind,
    list_transactions_response::TransactionState,
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: ListTransactionsRequest,
) -> Admit {
    respond_after(async move {
        let states: Vec<String> = req.state_filters.iter().map(|s| s.to_string()).collect();
        let pids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
        let duration = if ctx.api_version >= 1 {
            req.duration_filter
        } else {
            -1
        };
        let (txns, unknown) = broker
            .transactions
            .list(&broker, &states, &pids, duration)
            .await;
        let resp = ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown.into_iter().map(StrBytes::from_string).collect())
            .with_transaction_states(
                txns.into_iter()
                    .map(|d| {
                        TransactionState::default()
                            .with_transactional_id(StrBytes::from_string(d.transactional_id).into())
                            .with_producer_id(ProducerId(d.producer_id))
                            .with_transaction_state(StrBytes::from_static_str(d.state.name()))
                    })
                    .collect(),
            );
        ResponseKind::ListTransactions(resp)
    })
}
