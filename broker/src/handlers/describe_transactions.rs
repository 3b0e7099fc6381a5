//! DescribeTransactions (v0): the state of transactional ids this broker
//! coordinates (NOT_COORDINATOR for others, TRANSACTIONAL_ID_NOT_FOUND for
//! unknown ones).

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, ResponseKind, TopicName,
    describe_transactions_response::{TopicData, TransactionState},
};
use skiff_wire::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, respond_after};

pub(super) fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    req: DescribeTransactionsRequest,
) -> Admit {
    respond_after(async move {
        let mut states = Vec::with_capacity(req.transactional_ids.len());
        for id in req.transactional_ids {
            let s = TransactionState::default().with_transactional_id(id.clone());
            states.push(match broker.transactions.describe(&broker, &id).await {
                Ok(d) => {
                    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for (t, p) in d.partitions {
                        topics.entry(t).or_default().push(p);
                    }
                    s.with_transaction_state(StrBytes::from_static_str(d.state.name()))
                        .with_transaction_timeout_ms(d.timeout_ms)
                        .with_transaction_start_time_ms(d.start_ms)
                        .with_producer_id(ProducerId(d.producer_id))
                        .with_producer_epoch(d.producer_epoch)
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(t, ps)| {
                                    TopicData::default()
                                        .with_topic(TopicName(StrBytes::from_string(t)))
                                        .with_partitions(ps)
                                })
                                .collect(),
                        )
                }
                Err(code) => s
                    .with_error_code(code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1),
            });
        }
        ResponseKind::DescribeTransactions(
            DescribeTransactionsResponse::default().with_transaction_states(states),
        )
    })
}
