//! The HTTP edge: routes a request to a function, enforces the body cap, turns the request into
//! an invocation (`crate::invoke`, which admits, runs and records it) and the outcome into a
//! response that names the call's signed receipt (`Gojinn-Receipt`), or queues the envelope as a
//! job when the client asks for an asynchronous call (`jobs`). A tenant with API keys has its
//! calls checked against them (`api::keys`) and their credential headers stripped; a tenant with
//! a CORS policy has it applied around its calls, preflights answered by it alone (`cors`). It owns every
//! path under `/_gojinn`, composing the admin API's and MCP's routes with its own in one function
//! ([`router`]). It knows nothing of how a guest is executed; the runtime knows nothing of sockets.

pub mod cors;
pub mod jobs;
pub mod observe;
pub mod respond;

use crate::abi::GuestRequest;
use crate::api::keys::{self, Need};
use crate::api::{self, Admin, AdminToken};
use crate::audit::Recorder;
use crate::failure::{Failure, MethodNotAllowed};
use crate::invoke::{Admission, Answered, Invocation, InvokeError, Invoker, Trigger};
use crate::metrics::Metrics;
use crate::reconcile::controller::PassRequests;
use crate::registry::{Deployed, Registry, RegistryHandle, Target};
use crate::spec::{Method, Scope};
use crate::telemetry::spans;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::handler::Handler;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Limited};
use jobs::AsyncCall;
use respond::EdgeError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long a client may take to send a request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The response header naming the call's receipt.
pub const RECEIPT_HEADER: &str = "gojinn-receipt";

/// What request handlers share.
pub struct Edge {
    /// The node's state backend.
    pub state: crate::state::State,
    /// The functions served now.
    pub registry: RegistryHandle,
    /// Asks the reconcile controller for a pass (the reconcile webhook).
    pub passes: PassRequests,
    /// The bearer token of the admin API.
    pub admin_token: AdminToken,
    /// The git hosts' secret for the reconcile webhook (`reconcile.webhook.secretFile`).
    pub webhook_secret: Option<Arc<api::webhook::WebhookSecret>>,
    pub metrics: Arc<Metrics>,
    /// Where each call's receipt goes.
    pub recorder: Arc<Recorder>,
    /// The invocation path, shared with the job workers.
    pub invoker: Arc<Invoker>,
    /// Browser origins MCP takes besides the node's own (`admin.mcpAllowedOrigins`).
    pub mcp_origins: api::mcp::AllowedOrigins,
}

/// What the function handler needs: where functions are found, the admin token (which opens
/// every tenant's functions), and the invocation path.
struct Functions {
    registry: RegistryHandle,
    state: crate::state::State,
    admin_token: AdminToken,
    invoker: Arc<Invoker>,
}

/// What one listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surfaces {
    /// Functions and the operator's surfaces: a node with one address.
    All,
    /// Functions, health, readiness and job status (`listen`, when `admin.listen` is set).
    Functions,
    /// The admin API, the reconcile webhook, MCP, metrics, health and readiness (`admin.listen`).
    Operator,
}

/// The HTTP surface of a listener, composed here and only here. Outside in, a request meets:
/// the server's connection and head bounds (the `server` module: connections, header read,
/// URL length); then its route. Each route lists its layers below, outermost first. Every path
/// under `/_gojinn` a listener does not serve is a 404 `no_route`, whatever the method. Every
/// route is declared with its OpenAPI operation (`api::openapi`): the operator surface serves
/// the document of exactly the routes this listener serves.
pub fn router(edge: Arc<Edge>, surfaces: Surfaces) -> Router {
    use api::openapi::strict;
    let functions = surfaces != Surfaces::Operator;
    let operator = surfaces != Surfaces::Functions;
    let mut router = OpenApiRouter::new()
        // Liveness: the process answers.
        .routes(strict(routes!(health)))
        // Readiness: whether calls can be served now.
        .routes(strict(routes!(ready)));
    if functions {
        // A job's status, for whoever holds its id (a capability URL): no token.
        router = router.routes(strict(routes!(jobs::status)));
    }
    if operator {
        // Metrics, for the operator's scraper: no token (kept off the public network, or on
        // `admin.listen`).
        router = router.routes(strict(routes!(observe::metrics)));
    }
    let router: OpenApiRouter = router.with_state(edge.clone());
    let router = if operator { router.merge(operator_routes(&edge)) } else { router };
    let (router, paths) = router.split_for_parts();
    // The OpenAPI document of every route above, itself included, on the operator surface.
    let router = if operator { router.merge(api::openapi::routes(paths)) } else { router };
    let router = router
        // Every other path under /_gojinn is no function's.
        .route("/_gojinn", any(not_found))
        .route("/_gojinn/{*rest}", any(not_found));
    if !functions {
        return router.fallback(not_found);
    }
    // Function requests: span and metrics (`observe::layer`), route, the tenant's CORS policy
    // when it has one (which answers a preflight itself), method, the tenant's API keys when it
    // has any, body limit, then admission and the run (`serve_function`).
    let functions = Arc::new(Functions {
        registry: edge.registry.clone(),
        state: edge.state.clone(),
        admin_token: edge.admin_token.clone(),
        invoker: edge.invoker.clone(),
    });
    router.fallback_service(
        serve_function
            .layer(middleware::from_fn_with_state(edge.metrics.clone(), observe::layer))
            .with_state(functions),
    )
}

/// The admin API, the reconcile webhook and MCP.
fn operator_routes(edge: &Edge) -> OpenApiRouter {
    let admin = Arc::new(Admin {
        state: edge.state.clone(),
        registry: edge.registry.clone(),
        passes: edge.passes.clone(),
        token: edge.admin_token.clone(),
        webhook: edge.webhook_secret.clone(),
    });
    OpenApiRouter::new()
        // The admin API: authentication (the admin bearer token; a tenant's jobs and receipts
        // also take that tenant's API keys with the scope, what it deployed any of its keys),
        // then its handlers.
        .merge(
            api::routes()
                .route_layer(middleware::from_fn_with_state(admin.clone(), api::require_access))
                .with_state(admin.clone()),
        )
        // The reconcile webhook: its own authentication, the admin token or a git host's proof
        // (`api::webhook`), so it stays outside the token layer.
        .merge(api::webhook::routes().with_state(admin.clone()))
        // MCP: its count in the metrics, origin (a browser's cross-origin request is refused),
        // authentication (the admin token; at a tenant's endpoint also its keys with the `mcp`
        // scope; any other key is 403), then the message's
        // envelope (`api::mcp` answers a malformed one with a JSON-RPC error), the transport and
        // each tool call through the invocation path.
        .merge(
            api::mcp::routes(edge.invoker.clone(), admin.clone())
                .route_layer(middleware::from_fn_with_state(admin, api::require_access))
                .route_layer(middleware::from_fn_with_state(edge.mcp_origins.clone(), api::mcp::same_origin))
                .route_layer(middleware::from_fn_with_state(edge.metrics.clone(), api::mcp::count)),
        )
}

/// 200 `{"status": "ok"}`: the process answers.
#[utoipa::path(
    get,
    path = "/_gojinn/health",
    tag = "meta",
    summary = "Liveness",
    security(),
    responses((status = 200, description = "`{status: \"ok\"}`", body = inline(serde_json::Value))),
)]
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// 200 `{"status": "ready"}` once the first reconcile pass has deployed, while the state
/// backend is reachable; else 503 `{"status": "not_ready",
/// "reasons": [...]}`. The reasons name no tenant and no address: anyone can read this route.
#[utoipa::path(
    get,
    path = "/_gojinn/ready",
    tag = "meta",
    summary = "Readiness",
    description = "Whether calls can be served now. The reasons name no tenant and no address.",
    security(),
    responses(
        (status = 200, description = "`{status: \"ready\", functions}`", body = inline(serde_json::Value)),
        (status = 503, description = "`{status: \"not_ready\", reasons, functions}` (not the error body)", body = inline(serde_json::Value)),
    ),
)]
async fn ready(State(edge): State<Arc<Edge>>) -> Response {
    let functions = edge.registry.current().functions().count();
    let mut reasons = Vec::new();
    if !edge.registry.deployed() {
        reasons.push("the first reconcile pass has not deployed yet".to_owned());
    }
    if let Some(why) = edge.state.reachability.unreachable() {
        reasons.push(format!("the state backend is unreachable: {why}"));
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

async fn serve_function(State(functions): State<Arc<Functions>>, request: Request<Body>) -> Response {
    let arrival = Instant::now();
    match call_function(&functions, request, arrival).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The HTTP trigger: a request in, an invocation, its outcome out as a response.
async fn call_function(
    functions: &Functions,
    request: Request<Body>,
    arrival: Instant,
) -> Result<Response, Failure> {
    let registry = functions.registry.current();
    let routed = route(&registry, &request)?;
    match registry.tenant_cors(&routed.function.id.tenant).cloned() {
        // The tenant's CORS policy, first after the route: a preflight is answered by it
        // alone (before the method and API key checks, without the guest); every other
        // response, errors included, gets its headers (`cors`).
        // The closure owns the registry: the service that holds it is dropped once called, so
        // the call does not keep this registry alive past the key check.
        Some(policy) if cors::applies(&request) => {
            let response = cors::answer(&policy, request, move |request| {
                let (registry, routed) = (registry.clone(), routed.clone());
                async move {
                    invoke_routed(functions, registry, routed, request, arrival)
                        .await
                        .unwrap_or_else(IntoResponse::into_response)
                }
            })
            .await;
            Ok(response)
        }
        _ => invoke_routed(functions, registry, routed, request, arrival).await,
    }
}

/// A request's function, and the methods its declared route allows (empty: any).
#[derive(Clone)]
struct Routed {
    function: Arc<Deployed>,
    methods: Vec<Method>,
}

/// The function a request's path leads to, named on the request's span.
fn route(registry: &Registry, request: &Request<Body>) -> Result<Routed, Failure> {
    let path = request.uri().path();
    match registry.route(path) {
        Some(Target::Direct(function)) => {
            let (tenant, name) = (&function.id.tenant, &function.id.function);
            observe::routed(request, &function, format_args!("/{tenant}/{name}/{{*rest}}"));
            Ok(Routed { function, methods: Vec::new() })
        }
        Some(Target::Route { function, methods, route }) => {
            observe::routed(request, &function, &route);
            Ok(Routed { function, methods })
        }
        None => Err(EdgeError::NoRoute(path.to_owned()).into()),
    }
}

/// Runs a routed request: the route's methods, the tenant's API keys, the body limit, then
/// admission and the run.
async fn invoke_routed(
    functions: &Functions,
    registry: Arc<Registry>,
    routed: Routed,
    request: Request<Body>,
    arrival: Instant,
) -> Result<Response, Failure> {
    let Routed { function, methods } = routed;
    if !methods.is_empty() && !methods.iter().any(|m| m.as_str() == request.method().as_str()) {
        let allow = methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
        return Err(MethodNotAllowed { method: request.method().to_string(), allow }.into());
    }
    let (mut parts, body) = request.into_parts();
    // A tenant with API keys: the call needs one with the `invoke` scope (or the admin token),
    // and the credential headers go no further, not to the guest, a job or the receipt.
    if registry.tenant_keys(&function.id.tenant).is_some() {
        let need = Need::Tenant(&function.id.tenant, Scope::Invoke);
        keys::authorize(&functions.admin_token, &registry, &parts.headers, need)?;
        keys::strip_credentials(&mut parts.headers);
    }
    drop(registry);

    let limits = &function.spec.limits;
    let async_call = AsyncCall::requested(&parts.headers)?;
    let body = read_body(body, parts.headers.get(header::CONTENT_LENGTH), limits.max_body).await?;

    let invoker = &functions.invoker;
    let permit = invoker.admit(&function, Admission::Bounded).await?;
    let envelope = GuestRequest::from_http(&parts, &body, &function.id, spans::trace_id_for(&parts.headers));
    if let Some(async_call) = async_call {
        return async_call.enqueue(&functions.state, &function, &parts.headers, envelope).await;
    }
    let invocation = Invocation { function: &function, envelope: &envelope, trigger: Trigger::Http };
    let invoked = invoker.run(&permit, invocation).await;
    let mut response = match invoked.outcome {
        Ok(answered) => respond(&function, answered, arrival),
        Err(error) => Failure::from(error).into_response(),
    };
    if let Some(id) = &invoked.receipt {
        name_receipt(&mut response, id);
    }
    Ok(response)
}

/// The response to a call that ran to its end: the guest's, with the edge's headers.
fn respond(function: &Deployed, answered: Answered, arrival: Instant) -> Response {
    let Answered { guest, started, ended, .. } = answered;
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
async fn read_body(
    body: Body,
    content_length: Option<&HeaderValue>,
    max: u64,
) -> Result<bytes::Bytes, Failure> {
    let declared = content_length.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(InvokeError::BodyTooLarge(max).into());
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let collected = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect())
        .await
        .map_err(|_| EdgeError::BadBody(format!("not received within {BODY_READ_TIMEOUT:?}")))?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(InvokeError::BodyTooLarge(max).into())
        }
        Err(error) => Err(EdgeError::BadBody(error.to_string()).into()),
    }
}
