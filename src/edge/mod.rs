//! The HTTP edge: routes a request to a function, enforces the body cap and backpressure, hands
//! the guest its request envelope and turns the result into a response that names the call's
//! signed receipt (`Gojinn-Receipt`), or queues the envelope as a job when the client asks for an
//! asynchronous call (`jobs`). It owns every path under `/_gojinn`, the admin API's included. It
//! knows nothing of how a guest is executed; the runtime knows nothing of sockets.

pub mod admission;
pub mod jobs;
pub mod observe;
pub mod respond;

use crate::abi::{GuestRequest, GuestResponse, Headers};
use crate::api::{self, Admin, AdminToken};
use crate::audit::{End, Execution, Recorder, Trigger};
use crate::deploy::Deployer;
use crate::metrics::Metrics;
use crate::registry::{Deployed, Target};
use crate::runtime::CallOutput;
use crate::telemetry::spans;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::handler::Handler;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Limited};
use jobs::AsyncCall;
use respond::{EdgeError, failed_end};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client may take to send a request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The response header naming the call's receipt.
pub const RECEIPT_HEADER: &str = "gojinn-receipt";

/// What request handlers share.
pub struct Edge {
    pub deployer: Arc<Deployer>,
    /// The bearer token of the admin API.
    pub admin_token: AdminToken,
    pub metrics: Arc<Metrics>,
    /// Where each call's receipt goes.
    pub recorder: Arc<Recorder>,
}

/// The whole HTTP surface of a node.
pub fn router(edge: Arc<Edge>) -> Router {
    let admin =
        api::router(Arc::new(Admin { deployer: edge.deployer.clone(), token: edge.admin_token.clone() }));
    Router::new()
        .route("/_gojinn/health", get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }))
        .route("/_gojinn/ready", get(ready))
        .route(jobs::STATUS_PATH, only(get(jobs::status), "GET"))
        .route(observe::METRICS_PATH, only(get(observe::metrics), "GET"))
        .route("/_gojinn", get(not_found))
        .route("/_gojinn/{*rest}", get(not_found))
        // Function requests, each in its span, counted and timed.
        .fallback(serve_function.layer(middleware::from_fn_with_state(edge.metrics.clone(), observe::layer)))
        .with_state(edge)
        .merge(admin)
}

/// `route`, answering any other method with the JSON 405 and `Allow: allow`.
pub fn only<S: Clone + Send + Sync + 'static>(
    route: MethodRouter<S>,
    allow: &'static str,
) -> MethodRouter<S> {
    route.fallback(move |request: Request<Body>| async move {
        EdgeError::MethodNotAllowed { method: request.method().to_string(), allow: allow.into() }
    })
}

/// The node serves only after its first deploy, so answering at all means ready.
async fn ready(State(edge): State<Arc<Edge>>) -> Response {
    let functions = edge.deployer.registry().functions().count();
    axum::Json(serde_json::json!({ "status": "ready", "functions": functions })).into_response()
}

async fn not_found(request: Request<Body>) -> Response {
    EdgeError::NoRoute(request.uri().path().to_owned()).into_response()
}

async fn serve_function(State(edge): State<Arc<Edge>>, request: Request<Body>) -> Response {
    let arrival = Instant::now();
    match call_function(&edge, request, arrival).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn call_function(edge: &Edge, request: Request<Body>, arrival: Instant) -> Result<Response, EdgeError> {
    let path = request.uri().path().to_owned();
    let registry = edge.deployer.registry();
    let function = match registry.route(&path) {
        Some(Target::Direct(function)) => {
            let (tenant, name) = (&function.id.tenant, &function.id.function);
            observe::routed(&request, &function, format_args!("/{tenant}/{name}/{{*rest}}"));
            function
        }
        Some(Target::Route { function, methods, route }) => {
            observe::routed(&request, &function, &route);
            if !methods.is_empty() && !methods.iter().any(|m| m.as_str() == request.method().as_str()) {
                let allow = methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
                return Err(EdgeError::MethodNotAllowed { method: request.method().to_string(), allow });
            }
            function
        }
        None => return Err(EdgeError::NoRoute(path)),
    };
    drop(registry);

    let limits = &function.spec.limits;
    let (parts, body) = request.into_parts();
    let async_call = AsyncCall::requested(&parts.headers)?;
    let body = read_body(body, parts.headers.get(header::CONTENT_LENGTH), limits.max_body).await?;

    let queued = Instant::now();
    let _function_permit = function.gate.admit(limits.timeout).await.map_err(EdgeError::OverCapacity)?;
    let _tenant_permit = function.tenant_gate.admit(limits.timeout).await.map_err(EdgeError::OverCapacity)?;
    edge.metrics.admitted(&function.id, queued.elapsed());

    let envelope = envelope(&function, &parts, &body);
    if let Some(async_call) = async_call {
        return async_call.enqueue(edge, &function, &parts.headers, &envelope).await;
    }
    let stdin = envelope.to_json();
    let execution = Execution::start(&function, Trigger::Http, &stdin, &envelope.trace_id);
    let (answered, output) = match function.call(edge.deployer.runtime(), stdin).await {
        Ok(output) => (respond(&function, &output, arrival), Some(output)),
        Err(error) => (Err(EdgeError::from(error)), None),
    };
    let none = BTreeMap::new();
    let (stdout, host_calls) = output.as_ref().map_or((&[][..], &none), |o| (&o.stdout[..], &o.host_calls));
    let end = match &answered {
        Ok(response) => End::answered(response.status().as_u16(), stdout, host_calls),
        Err(error) => failed_end(error.status_and_code(), stdout, host_calls),
    };
    let mut response = answered.unwrap_or_else(IntoResponse::into_response);
    match edge.recorder.record(execution.finish(end)).await {
        Ok(Some(id)) => name_receipt(&mut response, &id),
        Ok(None) => {}
        Err(error) => tracing::error!(function = %function.id, "a call's receipt was not recorded: {error}"),
    }
    Ok(response)
}

/// The response to a call that ran to its end: the guest's, with the edge's headers.
fn respond(function: &Deployed, output: &CallOutput, arrival: Instant) -> Result<Response, EdgeError> {
    let guest = GuestResponse::parse(&output.stdout)?;
    let mut response = Response::new(Body::from(guest.body));
    *response.status_mut() = guest.status;
    *response.headers_mut() = guest.headers;
    let timing = format!(
        "start;dur={:.3}, total;dur={:.3}",
        (output.started - arrival).as_secs_f64() * 1e3,
        arrival.elapsed().as_secs_f64() * 1e3
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&timing) {
        headers.insert("server-timing", value);
    }
    if let Ok(value) = HeaderValue::from_str(&function.spec.revision[..12]) {
        headers.insert("gojinn-revision", value);
    }
    Ok(response)
}

/// Names a call's receipt on its response and on the request's span.
fn name_receipt(response: &mut Response, id: &str) {
    tracing::Span::current().record("gojinn.receipt_id", id);
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(RECEIPT_HEADER, value);
    }
}

/// Reads the whole body, refusing it as soon as it is known to exceed `max` bytes.
async fn read_body(
    body: Body,
    content_length: Option<&HeaderValue>,
    max: u64,
) -> Result<bytes::Bytes, EdgeError> {
    let declared = content_length.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(EdgeError::BodyTooLarge(max));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let collected = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect())
        .await
        .map_err(|_| EdgeError::BadBody(format!("not received within {BODY_READ_TIMEOUT:?}")))?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(EdgeError::BodyTooLarge(max)),
        Err(error) => Err(EdgeError::BadBody(error.to_string())),
    }
}

fn envelope(function: &Deployed, parts: &http::request::Parts, body: &[u8]) -> GuestRequest {
    let mut headers = Headers::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let uri =
        parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    GuestRequest::new(parts.method.as_str(), uri, headers, body, &function.id, trace_id(&parts.headers))
}

/// The trace id of the request's span when it is traced; else of the request's `traceparent`, or
/// a fresh random one.
fn trace_id(headers: &http::HeaderMap) -> String {
    if let Some(traced) = spans::trace_id(&tracing::Span::current()) {
        return traced;
    }
    let from_parent =
        headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(|v| v.split('-').nth(1)).filter(
            |id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && *id != "0".repeat(32),
        );
    match from_parent {
        Some(id) => id.to_ascii_lowercase(),
        None => hex::encode(rand::random::<[u8; 16]>()),
    }
}
