//! The spans Gojinn exports, in one place, and W3C trace context in and out of them.
//!
//! | span | exported name | where | attributes |
//! |---|---|---|---|
//! | [`request`] | `{method} {http.route}` | the edge, one per function request (an MCP tool call of a function included) | `http.request.method`, `url.path`, `http.route`, `http.response.status_code`, `server.address`, `gojinn.tenant`, `gojinn.function`, `gojinn.revision`, `gojinn.receipt_id`, `gojinn.cpu_us` |
//! | [`job`] | `job` | a job worker, one per attempt; its parent is the `traceparent` stored with the job | `gojinn.tenant`, `gojinn.function`, `gojinn.job`, `gojinn.attempt`, `gojinn.receipt_id`, `gojinn.cpu_us` |
//! | [`instantiate`] | `instantiate` | the runtime, child of the call's span | |
//! | [`host_call`] | `host.<name>` (`host.log`, `host.kv_get`, ...) | each host call, child of the call's span | |
//! | [`audit_append`] | `audit.append` | appending receipts to a tenant's audit log | `gojinn.tenant` |
//!
//! All are DEBUG spans of target [`TARGET`]: with the default `RUST_LOG` and no exporter they
//! are disabled at their call site and cost a load and a branch; their fields are evaluated only
//! when enabled. `instantiate` and `host.*` are made only inside a sampled trace ([`recording`]). Never record a header, query string, body, environment value or guest output on
//! a span: exported spans leave the node.

use super::TARGET;
use crate::spec::FunctionId;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::fmt::Display;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span of one function request, its parent taken from the request's `traceparent`.
pub fn request(request: &http::request::Parts) -> Span {
    let span = tracing::debug_span!(
        target: TARGET,
        "request",
        otel.name = %request.method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %request.method,
        url.path = request.uri.path(),
        http.route = Empty,
        http.response.status_code = Empty,
        server.address = Empty,
        gojinn.tenant = Empty,
        gojinn.function = Empty,
        gojinn.revision = Empty,
        gojinn.receipt_id = Empty,
        gojinn.cpu_us = Empty,
    );
    if !span.is_disabled() {
        if let Some(host) = server_address(request) {
            span.record("server.address", host);
        }
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(&request.headers));
        let _ = span.set_parent(parent);
    }
    span
}

/// Records which function revision a request reached, and by which route template.
pub fn record_function(
    span: &Span,
    method: &http::Method,
    route: impl Display,
    function: &FunctionId,
    revision: &str,
) {
    let Some(fields) = span.metadata().map(|meta| meta.fields()) else { return };
    let field = |name| fields.field(name).expect("a field of the request span");
    let (name, http_route, tenant, function_name, revision_field) = (
        field("otel.name"),
        field("http.route"),
        field("gojinn.tenant"),
        field("gojinn.function"),
        field("gojinn.revision"),
    );
    let otel_name = format!("{method} {route}");
    let route = tracing::field::display(&route);
    // One record of all five: each record is a trip through every layer.
    span.record_all(&fields.value_set(&[
        (&name, Some(&otel_name as &dyn tracing::Value)),
        (&http_route, Some(&route as &dyn tracing::Value)),
        (&tenant, Some(&function.tenant.as_str() as &dyn tracing::Value)),
        (&function_name, Some(&function.function.as_str() as &dyn tracing::Value)),
        (&revision_field, Some(&revision as &dyn tracing::Value)),
    ]));
}

/// Records a request's answer on its span and, when the span is traced, puts its `traceparent`
/// on the response.
pub fn record_response<B>(span: &Span, response: &mut http::Response<B>) {
    if span.is_disabled() {
        return;
    }
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(traceparent) = traceparent(span)
        && let Ok(value) = http::HeaderValue::from_str(&traceparent)
    {
        response.headers_mut().insert("traceparent", value);
    }
}

/// The span of one job attempt, continuing the trace of the request that queued the job.
pub fn job(function: &FunctionId, job: impl Display, attempt: u32, traceparent: Option<&str>) -> Span {
    let span = tracing::debug_span!(
        target: TARGET,
        "job",
        otel.kind = "consumer",
        gojinn.tenant = function.tenant.as_str(),
        gojinn.function = function.function.as_str(),
        gojinn.job = %job,
        gojinn.attempt = attempt,
        gojinn.receipt_id = Empty,
        gojinn.cpu_us = Empty,
    );
    if let Some(traceparent) = traceparent.filter(|_| !span.is_disabled()) {
        let carrier = TraceparentCarrier(Some(traceparent.to_owned()));
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
    span
}

/// Whether `span` is part of an exported trace: enabled, and sampled. A call runs its child
/// spans ([`instantiate`], [`host_call`]) only under such a span; under any other they are not
/// made at all, so a request the sampler dropped costs its own span and no more.
pub fn recording(span: &Span) -> bool {
    !span.is_disabled() && span.context().span().span_context().is_sampled()
}

/// Instantiating a guest, in a call that is `traced` (see [`recording`]).
pub fn instantiate(traced: bool) -> Span {
    match traced {
        true => tracing::debug_span!(target: TARGET, "instantiate"),
        false => Span::none(),
    }
}

/// One call of the host function `function` (`host_kv_get`), exported as `host.kv_get`, in a
/// call that is `traced` (see [`recording`]).
pub fn host_call(function: &'static str, traced: bool) -> Span {
    match traced {
        true => tracing::debug_span!(target: TARGET, "host", otel.name = %HostSpanName(function)),
        false => Span::none(),
    }
}

/// `host.<name>` for the host function `host_<name>`, written only when the span is enabled.
struct HostSpanName(&'static str);

impl std::fmt::Display for HostSpanName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host.{}", self.0.strip_prefix("host_").unwrap_or(self.0))
    }
}

/// Appending receipts to `tenant`'s audit log.
pub fn audit_append(tenant: &str) -> Span {
    tracing::debug_span!(target: TARGET, "audit.append", gojinn.tenant = tenant)
}

/// The trace id of `span` (32 hex digits), when it is part of an exported trace.
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// The trace id a call's envelope carries: the current span's when it is traced; else that of
/// the request's valid `traceparent`; else a fresh random one.
pub fn trace_id_for(headers: &http::HeaderMap) -> String {
    if let Some(traced) = trace_id(&Span::current()) {
        return traced;
    }
    match incoming(headers) {
        Some(context) => context.trace_id().to_string(),
        None => hex::encode(rand::random::<[u8; 16]>()),
    }
}

/// The span context of a request's `traceparent`, when it is a valid W3C one (read by the
/// OpenTelemetry propagator: the one parser of trace context in the node).
fn incoming(headers: &http::HeaderMap) -> Option<SpanContext> {
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let remote = context.span().span_context().clone();
    remote.is_valid().then_some(remote)
}

/// The request's `traceparent`, written again, when it is a valid W3C one.
pub fn request_traceparent(headers: &http::HeaderMap) -> Option<String> {
    incoming(headers).map(write_traceparent)
}

/// A `traceparent` continuing the trace `trace_id` (32 lowercase hex digits) under a fresh
/// parent id, sampled; `None` when `trace_id` is not a valid trace id.
pub fn child_traceparent(trace_id: &str) -> Option<String> {
    let trace_id = TraceId::from_hex(trace_id).ok().filter(|id| *id != TraceId::INVALID)?;
    let parent = SpanId::from_bytes(rand::random::<[u8; 8]>());
    let remote = SpanContext::new(trace_id, parent, TraceFlags::SAMPLED, true, TraceState::default());
    remote.is_valid().then(|| write_traceparent(remote))
}

fn write_traceparent(remote: SpanContext) -> String {
    let context = opentelemetry::Context::new().with_remote_span_context(remote);
    let mut carrier = TraceparentCarrier(None);
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.0.unwrap_or_default()
}

/// The W3C `traceparent` of `span`, when it is part of an exported trace.
pub fn traceparent(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = TraceparentCarrier(None);
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.0
}

/// The host a request was sent to (`Host`, or the URI's authority for HTTP/2), without its port.
fn server_address(request: &http::request::Parts) -> Option<&str> {
    let authority = match request.uri.host() {
        Some(host) => host,
        None => request.headers.get(http::header::HOST)?.to_str().ok()?,
    };
    // `[::1]:8080` keeps its brackets; `example.com:8080` loses its port.
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => Some(host),
        _ => Some(authority),
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Carries only a `traceparent`: what a job stores, and what a response gets.
struct TraceparentCarrier(Option<String>);

impl Extractor for TraceparentCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.as_deref().filter(|_| key == "traceparent")
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

impl Injector for TraceparentCarrier {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}
