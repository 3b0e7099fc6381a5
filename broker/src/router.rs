//! The request router: which handler serves which Kafka API at which
//! versions. The ApiVersions answer is derived from this registry (never a
//! hand-kept list), so a version is advertised exactly when a handler for it
//! is registered.
//!
//! A handler runs in two steps, so a connection can pipeline requests while
//! keeping Kafka's ordering rules:
//!
//! 1. **admit** (the outer future): everything whose order matters between
//!    requests of one connection — for Produce, validating the batches and
//!    handing them to their partitions, which assigns offsets. The connection
//!    awaits it before reading the next request.
//! 2. **respond** (the inner future): waiting that does not affect later
//!    requests — the WAL fsync for acks=1/all, a Fetch long poll. Responses
//!    are written in request order (Kafka's guarantee) as they complete.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use skiff_wire::ApiVersionTable;
use skiff_wire::kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use skiff_wire::spliced::SplicedFetch;

use crate::broker::Broker;

/// The second step of a handler: resolves to the response, or `None` when
/// the request gets no response (Produce with acks=0).
pub type Respond = BoxFuture<'static, Option<Response>>;
/// The first step of a handler.
pub type Admit = BoxFuture<'static, Respond>;

/// What a handler answers.
#[derive(Debug)]
pub enum Response {
    /// A response encoded whole by kafka-protocol.
    Body(ResponseKind),
    /// A Fetch response whose record sets are written from the stored
    /// batches' buffers (see [`skiff_wire::spliced`]).
    Fetch(SplicedFetch),
}

impl From<ResponseKind> for Response {
    fn from(body: ResponseKind) -> Self {
        Self::Body(body)
    }
}

impl Response {
    /// The response as one kafka-protocol message, record sets concatenated
    /// (for in-process callers such as tests).
    pub fn into_body(self) -> ResponseKind {
        match self {
            Self::Body(body) => body,
            Self::Fetch(fetch) => ResponseKind::Fetch(fetch.into_inline()),
        }
    }
}

/// Everything a handler knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub header: RequestHeader,
    pub api_version: i16,
    /// The peer address, for logs.
    pub peer: std::net::SocketAddr,
}

/// A handler: takes the broker, the context and the typed body.
pub type HandlerFn = fn(Arc<Broker>, RequestContext, RequestKind) -> Admit;

/// A registered API.
#[derive(Clone, Copy)]
pub struct Route {
    pub api_key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    pub handler: HandlerFn,
}

/// Maps API keys to handlers.
#[derive(Clone, Default)]
pub struct Router {
    routes: BTreeMap<i16, Route>,
    table: ApiVersionTable,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("apis", &self.routes.len())
            .finish()
    }
}

impl Router {
    /// A router with every handler in [`crate::handlers::ROUTES`].
    pub fn with_all_handlers() -> Self {
        let mut r = Router::default();
        for route in crate::handlers::ROUTES {
            r.register(*route);
        }
        r
    }

    /// Register a route. Registering an API twice, or versions outside what
    /// the protocol crate knows, is a programming error caught by tests.
    pub fn register(&mut self, route: Route) {
        self.table
            .register(route.api_key, route.min_version, route.max_version)
            .unwrap_or_else(|e| panic!("bad route for {:?}: {e}", route.api_key));
        self.routes.insert(route.api_key as i16, route);
    }

    /// The API-version table derived from the routes.
    pub fn versions(&self) -> &ApiVersionTable {
        &self.table
    }

    /// Start handling a decoded request.
    pub fn dispatch(
        &self,
        broker: Arc<Broker>,
        ctx: RequestContext,
        api_key: ApiKey,
        body: RequestKind,
    ) -> Admit {
        match self.routes.get(&(api_key as i16)) {
            Some(route) => (route.handler)(broker, ctx, body),
            // decode_request only admits registered APIs, so this is not reached
            // from the network; answer nothing rather than panic.
            None => ready(None),
        }
    }
}

/// An admit step that is already done, with its response.
pub fn ready(response: Option<ResponseKind>) -> Admit {
    let response = response.map(Response::from);
    futures::future::ready(futures::future::ready(response).boxed()).boxed()
}

/// Build an [`Admit`] from an async block producing the response: for
/// handlers whose whole work may run before the next request is read.
#[allow(
    clippy::async_yields_async,
    reason = "admit resolves to the respond step by design"
)]
pub fn respond_after<F>(fut: F) -> Admit
where
    F: std::future::Future<Output = ResponseKind> + Send + 'static,
{
    async move {
        let response = fut.await;
        futures::future::ready(Some(response.into())).boxed()
    }
    .boxed()
}

/// Name of an API for logs and metrics.
pub fn api_name(api_key: ApiKey) -> &'static str {
    // ApiKey's Debug names are Kafka's API names (Produce, Fetch, ...).
    // Leak-free: map through a static table built once.
    static NAMES: std::sync::OnceLock<BTreeMap<i16, &'static str>> = std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| {
            ApiKey::iter()
                .map(|k| {
                    let name: &'static str = Box::leak(format!("{k:?}").into_boxed_str());
                    (k as i16, name)
                })
                .collect()
        })
        .get(&(api_key as i16))
        .copied()
        .unwrap_or("Unknown")
}
