//! ApiVersions: answered from the router's registry.

use std::sync::Arc;

use skiff_wire::kafka_protocol::messages::{ApiVersionsRequest, ResponseKind};

use crate::broker::Broker;
use crate::router::{Admit, RequestContext, ready};

pub(super) fn handle(broker: Arc<Broker>, _ctx: RequestContext, _req: ApiVersionsRequest) -> Admit {
    let resp = broker.router.versions().api_versions_response();
    ready(Some(ResponseKind::ApiVersions(resp)))
}
