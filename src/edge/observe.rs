//! Observes function requests, as one layer around the function handler ([`layer`]): the
//! request's span (its parent taken from the caller's `traceparent`, its own `traceparent` put
//! on the answer) and its metrics (a count by function and status, the latency). The handler
//! names the function it routed to with [`routed`]; a request routed nowhere is counted under
//! fixed labels, never under its path. Also serves the metrics (`GET /_gojinn/metrics`, without
//! authentication: operators keep it off the public network, as for any `/metrics`).

use super::Edge;
use crate::metrics::{CONTENT_TYPE, Metrics};
use crate::registry::Deployed;
use crate::spec::FunctionId;
use crate::telemetry::spans;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use std::fmt::Display;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tracing::Instrument;

/// Where the metrics are served.
pub const METRICS_PATH: &str = "/_gojinn/metrics";

/// The function a request was routed to, filled in by the handler.
#[derive(Clone, Default)]
struct Routed(Arc<OnceLock<Arc<FunctionId>>>);

/// Runs a function request inside its span, then counts and times it.
pub async fn layer(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let arrival = Instant::now();
    let (mut parts, body) = request.into_parts();
    let span = spans::request(&parts);
    let routed = Routed::default();
    parts.extensions.insert(routed.clone());
    let mut response = next.run(Request::from_parts(parts, body)).instrument(span.clone()).await;
    metrics.request(routed.0.get(), response.status().as_u16(), arrival.elapsed());
    spans::record_response(&span, &mut response);
    response
}

/// Says that `request` reached `function` by `route` (its route template); call it inside the
/// request's span, before the function runs.
pub fn routed(request: &Request, function: &Deployed, route: impl Display) {
    if let Some(Routed(slot)) = request.extensions().get::<Routed>() {
        let _ = slot.set(function.id.clone());
    }
    let span = tracing::Span::current();
    spans::record_function(&span, request.method(), route, &function.id, &function.spec.revision);
}

/// `GET /_gojinn/metrics`: every metric, in the text format Prometheus scrapes.
#[utoipa::path(
    get,
    path = METRICS_PATH,
    tag = "meta",
    summary = "Metrics",
    description = "Every metric, in the text format Prometheus scrapes. No credential: keep it off the public \
        network, or on admin.listen.",
    security(),
    responses((status = 200, description = "The Prometheus text format", body = String, content_type = "text/plain")),
)]
pub async fn metrics(State(edge): State<Arc<Edge>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], edge.metrics.encode()).into_response()
}
