//! The HTTP edge: routes a request to a function, enforces the body cap and backpressure, hands
//! the guest its request envelope and turns the result into a response that names the call's
//! signed receipt (`Gojinn-Receipt`), or queues the envelope as a job when the client asks for an
//! asynchronous call (`jobs`). [`admit`] and [`execute`] are the one way a guest runs at once,
//! shared with MCP tool calls. It owns every path under `/_gojinn`, the admin API's and MCP's
//! included. It knows nothing of how a guest is executed; the runtime knows nothing of sockets.

pub mod admission;
pub mod jobs;
pub mod observe;
pub mod respond;

use crate::abi::{GuestRequest, GuestResponse, Headers};
use crate::api::{self, Admin, AdminToken};
use crate::audit::{End, Execution, RecordError, Recorder, Trigger};
use crate::deploy::Deployer;
use crate::metrics::Metrics;
use crate::registry::{Deployed, Target};
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
use tokio::sync::OwnedSemaphorePermit;

/// How long a client may take to send a request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The response header naming the call's receipt.
pub const RECEIPT_HEADER: &str = "gojinn-receipt";
/// Why a call is refused before it runs while its receipt could not be recorded.
const NO_RECEIPTS: &str = "receipts cannot be recorded now (the state backend is unavailable), and this \
    node answers a call only once its receipt is recorded";

/// What request handlers share.
pub struct Edge {
    pub deployer: Arc<Deployer>,
    /// The bearer token of the admin API.
    pub admin_token: AdminToken,
    /// The git hosts' secret for the reconcile webhook (`reconcile.webhook.secretFile`).
    pub webhook_secret: Option<Arc<api::webhook::WebhookSecret>>,
    pub metrics: Arc<Metrics>,
    /// Where each call's receipt goes.
    pub recorder: Arc<Recorder>,
}

/// The whole HTTP surface of a node.
pub fn router(edge: Arc<Edge>) -> Router {
    let admin = Arc::new(Admin {
        deployer: edge.deployer.clone(),
        token: edge.admin_token.clone(),
        webhook: edge.webhook_secret.clone(),
    });
    let mcp = api::mcp::router(edge.clone(), admin.clone());
    Router::new()
        // Liveness: the process answers.
        .route("/_gojinn/health", get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }))
        // Readiness: whether calls can be served now.
        .route("/_gojinn/ready", get(ready))
        .route(jobs::STATUS_PATH, only(get(jobs::status), "GET"))
        .route(observe::METRICS_PATH, only(get(observe::metrics), "GET"))
        .route("/_gojinn", get(not_found))
        .route("/_gojinn/{*rest}", get(not_found))
        // Function requests, each in its span, counted and timed.
        .fallback(serve_function.layer(middleware::from_fn_with_state(edge.metrics.clone(), observe::layer)))
        .with_state(edge)
        .merge(api::router(admin))
        .merge(mcp)
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

/// 200 `{"status": "ready"}` once the first reconcile pass has deployed, while the state
/// backend is reachable and receipts can be recorded; else 503 `{"status": "not_ready",
/// "reasons": [...]}`. The reasons name no tenant and no address: anyone can read this route.
async fn ready(State(edge): State<Arc<Edge>>) -> Response {
    let functions = edge.deployer.registry().functions().count();
    let mut reasons = Vec::new();
    if *edge.deployer.subscribe().borrow() == 0 {
        reasons.push("the first reconcile pass has not deployed yet".to_owned());
    }
    if let Some(why) = edge.deployer.state().reachability.unreachable() {
        reasons.push(format!("the state backend is unreachable: {why}"));
    }
    if edge.recorder.trouble().is_some() {
        reasons.push("appends to the audit log fail: receipts wait in the node's queue".to_owned());
    }
    if reasons.is_empty() {
        return axum::Json(serde_json::json!({ "status": "ready", "functions": functions })).into_response();
    }
    let body = serde_json::json!({ "status": "not_ready", "reasons": reasons, "functions": functions });
    (http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
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

    let _admitted = admit(edge, &function).await?;
    let envelope = envelope(&function, &parts, &body);
    if let Some(async_call) = async_call {
        return async_call.enqueue(edge, &function, &parts.headers, &envelope).await;
    }
    let executed = execute(edge, &function, &envelope, Trigger::Http).await;
    let mut response = match executed.outcome {
        Ok(answered) => respond(&function, answered, arrival),
        Err(error) => error.into_response(),
    };
    if let Some(id) = &executed.receipt {
        name_receipt(&mut response, id);
    }
    Ok(response)
}

/// Places under a function's and its tenant's concurrency limits, held while a call runs.
pub struct Admitted {
    _function: OwnedSemaphorePermit,
    _tenant: OwnedSemaphorePermit,
}

/// Waits for a place under `function`'s and its tenant's concurrency limits, at most its timeout
/// in each queue.
pub async fn admit(edge: &Edge, function: &Deployed) -> Result<Admitted, EdgeError> {
    let (queued, timeout) = (Instant::now(), function.spec.limits.timeout);
    let function_permit = function.gate.admit(timeout).await.map_err(EdgeError::OverCapacity)?;
    let tenant_permit = function.tenant_gate.admit(timeout).await.map_err(EdgeError::OverCapacity)?;
    edge.metrics.admitted(&function.id, queued.elapsed());
    Ok(Admitted { _function: function_permit, _tenant: tenant_permit })
}

/// A synchronous call that ran: how it ended, and the id of its receipt (`None` when receipts
/// are off, or recording failed, which is logged).
pub struct Executed {
    pub outcome: Result<Answered, EdgeError>,
    pub receipt: Option<String>,
}

/// A guest's valid response, with when its call started and ended.
pub struct Answered {
    pub guest: GuestResponse,
    pub started: Instant,
    pub ended: Instant,
}

/// Runs one synchronous call of `function` (admitted by [`admit`]) with `envelope` and records
/// its receipt, failed calls included. Every trigger that runs a guest at once goes through here.
/// A call whose receipt could not be recorded is refused before it runs (503 `unavailable`);
/// one whose receipt (`durability: sync`) is not appended in time answers 503 after it ran.
pub async fn execute(
    edge: &Edge,
    function: &Deployed,
    envelope: &GuestRequest,
    trigger: Trigger,
) -> Executed {
    let unreachable = || edge.deployer.state().reachability.unreachable().is_some();
    if edge.recorder.refuses_executions() || (edge.recorder.waits_for_append() && unreachable()) {
        return Executed { outcome: Err(EdgeError::Unavailable(NO_RECEIPTS)), receipt: None };
    }
    let stdin = envelope.to_json();
    let execution = Execution::start(function, trigger, &stdin, &envelope.trace_id);
    let (outcome, output) = match function.call(edge.deployer.runtime(), stdin).await {
        Ok(output) => {
            let (started, ended) = (output.started, Instant::now());
            let parsed = GuestResponse::parse(&output.stdout).map(|guest| Answered { guest, started, ended });
            (parsed.map_err(EdgeError::from), Some(output))
        }
        Err(error) => (Err(EdgeError::from(error)), None),
    };
    let none = BTreeMap::new();
    let (stdout, host_calls) = output.as_ref().map_or((&[][..], &none), |o| (&o.stdout[..], &o.host_calls));
    let end = match &outcome {
        Ok(answered) => End::answered(answered.guest.status.as_u16(), stdout, host_calls),
        Err(error) => failed_end(error.status_and_code(), stdout, host_calls),
    };
    match edge.recorder.record(execution.finish(end)).await {
        Ok(receipt) => Executed { outcome, receipt },
        Err(RecordError::NotYetAppended { id, reason }) => {
            tracing::warn!(function = %function.id, receipt = id, "a call's receipt is not appended yet: {reason}");
            Executed { outcome: Err(EdgeError::ReceiptPending(id.clone())), receipt: Some(id) }
        }
        Err(error) => {
            tracing::error!(function = %function.id, "a call's receipt was not recorded: {error}");
            // A response that waits for its receipt is not sent without it.
            let outcome = match edge.recorder.waits_for_append() {
                true => Err(EdgeError::Unavailable(NO_RECEIPTS)),
                false => outcome,
            };
            Executed { outcome, receipt: None }
        }
    }
}

/// The response to a call that ran to its end: the guest's, with the edge's headers.
fn respond(function: &Deployed, answered: Answered, arrival: Instant) -> Response {
    let Answered { guest, started, ended } = answered;
    let mut response = Response::new(Body::from(guest.body));
    *response.status_mut() = guest.status;
    *response.headers_mut() = guest.headers;
    let timing = format!(
        "start;dur={:.3}, total;dur={:.3}",
        (started - arrival).as_secs_f64() * 1e3,
        (ended - arrival).as_secs_f64() * 1e3
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&timing) {
        headers.insert("server-timing", value);
    }
    if let Ok(value) = HeaderValue::from_str(&function.spec.revision[..12]) {
        headers.insert("gojinn-revision", value);
    }
    response
}

/// Names a call's receipt on its response and on the request's span.
fn name_receipt(response: &mut Response, id: &str) {
    tracing::Span::current().record("gojinn.receipt_id", id);
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(RECEIPT_HEADER, value);
    }
}

/// Reads the whole body, refusing it as soon as it is known to exceed `max` bytes.
pub(crate) async fn read_body(
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
pub fn trace_id(headers: &http::HeaderMap) -> String {
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
