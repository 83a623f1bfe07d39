//! The MCP endpoints, `POST /_gojinn/mcp` (the node's) and `POST /_gojinn/mcp/{tenant}` (one
//! tenant's): the Model Context Protocol's Streamable HTTP transport (the official SDK, `rmcp`),
//! stateless, every answer `application/json`; a GET has no stream to open here and is a 405. The
//! edge puts them behind [`super::require_access`] (the node's: the admin token; a tenant's: also
//! that tenant's API keys with the `mcp` scope) and an origin check ([`same_origin`]: the node's own origin and
//! `admin.mcpAllowedOrigins`), and counts every request ([`count`]). In front of the transport,
//! [`envelope`] answers every malformed message with a JSON-RPC error.
//!
//! Metrics: each MCP request counts once in `gojinn_requests_total`, under the fixed
//! `tenant`/`function` value `_mcp` and its HTTP status (a refusal by the token or origin check
//! too). A tool call that runs a function is that request and nothing more: it is not also
//! counted as a request of the function (its receipt, CPU time and admission wait are the
//! function's, as for any call).
//!
//! Tools: every deployed function whose spec says `mcp.tool: true`, named `{tenant}.{function}`,
//! which a call runs through the one invocation path ([`Invoker::invoke`], trigger `mcp` on its
//! receipt, whose id the result's `_meta` names); and the admin tools `gojinn.status`,
//! `gojinn.job` and `gojinn.receipt`, which call the REST API's service functions. A function
//! tool's arguments are checked against its `mcp.inputSchema` (compiled once per revision)
//! before the function runs: a mismatch is -32602 naming the field. A tenant's endpoint offers
//! that tenant's function tools only: no admin tool, no other tenant's function. This module never runs a
//! guest, reads state or maps an error any other way.

mod envelope;

use crate::abi::GuestRequest;
use crate::api::{Admin, ApiError};
use crate::failure::{self, ErrorBody, Failure, PublicError};
use crate::invoke::{Invocation, InvokeError, Invoked, Invoker, Trigger};
use crate::metrics::Metrics;
use crate::registry::{Deployed, Registry};
use crate::spec::{FunctionId, Name, ToolSchema};
use crate::telemetry::spans;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject,
    ListToolsResult, MetaObject, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
    Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tracing::Instrument;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where the endpoint is served.
pub const PATH: &str = "/_gojinn/mcp";
/// Where one tenant's endpoint is served.
pub const TENANT_PATH: &str = "/_gojinn/mcp/{tenant}";
/// The largest request the endpoint reads: a function's default request body cap. A tool call's
/// arguments are also held to the called function's own `limits.maxBody`.
const MAX_REQUEST_BYTES: usize = crate::spec::DEFAULT_MAX_BODY as usize;
/// The `_meta` key of a tool result naming the call's receipt.
pub const RECEIPT_META: &str = "gojinn/receipt";
/// The `_meta` key of a tool result with the HTTP status the call had (or would have had).
pub const STATUS_META: &str = "gojinn/status";
/// The newest protocol revision served; older ones are negotiated down to on `initialize`.
const NEWEST: ProtocolVersion = ProtocolVersion::V_2025_11_25;

const INSTRUCTIONS: &str = "Gojinn runs WebAssembly functions. Each tool named {tenant}.{function} \
    calls that function with the arguments as its JSON body; the result is its response body, and \
    _meta[\"gojinn/receipt\"] names the signed receipt of the call, which gojinn.receipt shows.";

/// The MCP transport, stateless, serving every request of both endpoints.
type Transport = StreamableHttpService<Gateway, NeverSessionManager>;

/// The MCP routes, their messages checked ([`envelope`]) before the transport reads them; the
/// edge puts them behind the admin token, [`same_origin`] and [`count`].
pub fn routes(invoker: Arc<Invoker>, admin: Arc<Admin>) -> OpenApiRouter {
    use crate::api::openapi::strict;
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        // The node's host names are the operator's to choose; browsers are kept out by the
        // Origin check below and everyone else by the token, so no Host allowlist.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(MAX_REQUEST_BYTES);
    let schemas = Arc::new(CompiledSchemas::default());
    let service = StreamableHttpService::new(
        move || Ok(Gateway { admin: admin.clone(), invoker: invoker.clone(), schemas: schemas.clone() }),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let screen = |request: Request, next: Next| envelope::screen(request, next, MAX_REQUEST_BYTES as u64);
    OpenApiRouter::new()
        .routes(strict(routes!(node_endpoint)))
        .routes(strict(routes!(tenant_endpoint)))
        .route_layer(middleware::from_fn(screen))
        .with_state(service)
}

/// `POST /_gojinn/mcp`: the node's MCP endpoint.
#[utoipa::path(
    post,
    path = PATH,
    tag = "mcp",
    summary = "The node's MCP endpoint",
    description = "Model Context Protocol, Streamable HTTP transport, stateless, every answer application/json: \
        every function that opted in as a tool and the admin tools (gojinn.status, gojinn.job, gojinn.receipt). \
        The admin token only. A malformed message is answered with a JSON-RPC error (400, 406, 413, 415); a \
        browser's request from another origin than the node's own or admin.mcpAllowedOrigins is 403 \
        forbidden_origin.",
    request_body(content = inline(serde_json::Value), content_type = "application/json", description = "A JSON-RPC message"),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The JSON-RPC answer", body = inline(serde_json::Value)),
        (status = 202, description = "A notification or response, accepted"),
        (status = 400, description = "A JSON-RPC error: the message is not one", body = inline(serde_json::Value)),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorBody),
        (status = 403, description = "`forbidden`: a tenant's API key; `forbidden_origin`: a browser's cross-origin request", body = ErrorBody),
        (status = 406, description = "A JSON-RPC error: the request does not accept application/json", body = inline(serde_json::Value)),
        (status = 413, description = "A JSON-RPC error: the message is over 1 MiB", body = inline(serde_json::Value)),
        (status = 415, description = "A JSON-RPC error: the message is not application/json", body = inline(serde_json::Value)),
    ),
)]
async fn node_endpoint(State(transport): State<Transport>, request: Request) -> Response {
    transport.handle(request).await.into_response()
}

/// `POST /_gojinn/mcp/{tenant}`: one tenant's MCP endpoint.
#[utoipa::path(
    post,
    path = TENANT_PATH,
    tag = "mcp",
    summary = "A tenant's MCP endpoint",
    description = "As the node's endpoint, with that tenant's function tools only. Open to the admin token and \
        to the tenant's keys with the `mcp` scope.",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body(content = inline(serde_json::Value), content_type = "application/json", description = "A JSON-RPC message"),
    security(("admin_token" = []), ("tenant_key" = []), ("tenant_key_header" = [])),
    responses(
        (status = 200, description = "The JSON-RPC answer", body = inline(serde_json::Value)),
        (status = 202, description = "A notification or response, accepted"),
        (status = 400, description = "A JSON-RPC error: the message is not one", body = inline(serde_json::Value)),
        (status = 401, description = "`unauthorized`: no credential, or one that is neither the admin token nor any tenant's key", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's key, or a key without the `mcp` scope; `forbidden_origin`: a browser's cross-origin request", body = ErrorBody),
        (status = 406, description = "A JSON-RPC error: the request does not accept application/json", body = inline(serde_json::Value)),
        (status = 413, description = "A JSON-RPC error: the message is over 1 MiB", body = inline(serde_json::Value)),
        (status = 415, description = "A JSON-RPC error: the message is not application/json", body = inline(serde_json::Value)),
    ),
)]
async fn tenant_endpoint(State(transport): State<Transport>, request: Request) -> Response {
    transport.handle(request).await.into_response()
}

/// Counts an MCP request in `gojinn_requests_total` once it is answered (see the module doc).
pub async fn count(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    metrics.mcp_request(response.status().as_u16());
    response
}

/// The browser origins allowed besides the node's own (`admin.mcpAllowedOrigins`): each
/// `scheme://host[:port]`, as a browser sends it, for a node behind a proxy that answers under
/// another name than the `Host` the node sees.
#[derive(Clone, Debug, Default)]
pub struct AllowedOrigins(Arc<[String]>);

impl AllowedOrigins {
    pub fn new(origins: &[String]) -> Self {
        Self(origins.into())
    }

    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }
}

/// Refuses a browser's cross-origin request (the transport requires servers to validate
/// `Origin`, against DNS rebinding, and answer 403): an `Origin`, when present, must name the
/// host the request was sent to or be one of `allowed`. Requests without one (every
/// non-browser client) pass.
pub async fn same_origin(State(allowed): State<AllowedOrigins>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok());
    let host = host.or_else(|| request.uri().authority().map(|a| a.as_str()));
    match check_origin(request.headers(), host, &allowed) {
        Ok(()) => next.run(request).await,
        Err(refused) => Failure::from(refused).into_response(),
    }
}

/// Ok when `headers` carry no `Origin`, or one that `allowed` lists or whose host and port
/// are `host`.
fn check_origin(headers: &HeaderMap, host: Option<&str>, allowed: &AllowedOrigins) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or("(not text)");
    if allowed.allows(origin) {
        return Ok(());
    }
    let authority = origin
        .split_once("://")
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        .map(|(_, authority)| authority.trim_end_matches('/'));
    match (authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::ForbiddenOrigin(origin.to_owned())),
    }
}

/// Serves one MCP request; made afresh for each.
struct Gateway {
    /// What the admin API reads: the state backend and the functions served now.
    admin: Arc<Admin>,
    invoker: Arc<Invoker>,
    schemas: Arc<CompiledSchemas>,
}

/// The function tools' compiled `inputSchema`s, by revision: compiled on a revision's first
/// call, dropped once no deployed function has that revision.
#[derive(Default)]
struct CompiledSchemas(Mutex<HashMap<String, Arc<ToolSchema>>>);

impl CompiledSchemas {
    /// `function`'s compiled schema; `None` when it has none (any object of arguments will do).
    fn of(&self, function: &Deployed, registry: &Registry) -> Result<Option<Arc<ToolSchema>>, ErrorData> {
        let Some(schema) = function.spec.mcp.as_ref().and_then(|mcp| mcp.input_schema.as_ref()) else {
            return Ok(None);
        };
        let mut compiled = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = compiled.get(&function.spec.revision) {
            return Ok(Some(found.clone()));
        }
        // Deploys refuse a schema that does not compile, so this is a node's own fault.
        let schema = ToolSchema::compile(schema).map_err(|error| {
            ErrorData::internal_error(
                format!("the inputSchema of {} does not compile: {error}", function.id),
                None,
            )
        })?;
        let schema = Arc::new(schema);
        compiled.retain(|revision, _| registry.functions().any(|f| &f.spec.revision == revision));
        compiled.insert(function.spec.revision.clone(), schema.clone());
        Ok(Some(schema))
    }
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_protocol_version(NEWEST)
            .with_server_info(Implementation::new("gojinn", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&NEWEST))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tenant = endpoint_tenant(&context);
        Ok(ListToolsResult::with_all_items(tools(&self.admin.registry.current(), tenant.as_deref())))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.unwrap_or_default();
        let tenant = endpoint_tenant(&context);
        let unknown = || ErrorData::invalid_params(format!("unknown tool {:?}", request.name), None);
        if let Some(admin) = AdminTool::named(&request.name) {
            if tenant.is_some() {
                return Err(unknown());
            }
            return Ok(admin.call(&self.admin, arguments).await?.into());
        }
        let registry = self.admin.registry.current();
        let function = tool_function(&registry, &request.name)
            .filter(|function| tenant.as_deref().is_none_or(|tenant| function.id.tenant.as_str() == tenant))
            .ok_or_else(unknown)?;
        let arguments = Value::Object(arguments);
        if let Some(schema) = self.schemas.of(&function, &registry)? {
            schema.check(&arguments).map_err(|mismatch| {
                ErrorData::invalid_params(format!("invalid arguments for {}: {mismatch}", request.name), None)
            })?;
        }
        let parts = context.extensions.get::<http::request::Parts>();
        Ok(call_function(&self.invoker, &function, &arguments, parts).await.into())
    }
}

/// The tenant whose endpoint (`/_gojinn/mcp/{tenant}`) the request came to, as its path names
/// it; `None` at the node's endpoint.
fn endpoint_tenant(context: &RequestContext<RoleServer>) -> Option<String> {
    let path = context.extensions.get::<http::request::Parts>()?.uri.path();
    path.strip_prefix(PATH)?.strip_prefix('/').map(str::to_owned)
}

/// Every tool, ordered by name: at the node's endpoint the admin tools, then the functions'
/// tools; at `tenant`'s, that tenant's function tools only.
fn tools(registry: &Registry, tenant: Option<&str>) -> Vec<Tool> {
    let of_tenant = |f: &&Arc<Deployed>| tenant.is_none_or(|tenant| f.id.tenant.as_str() == tenant);
    let mut functions: Vec<Tool> =
        registry.functions().filter(of_tenant).filter_map(|f| function_tool(f)).collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    let admin = AdminTool::ALL.iter().filter(|_| tenant.is_none()).map(|tool| tool.describe());
    admin.chain(functions).collect()
}

/// The tool of a function that opted in, unless an admin tool has its name (tenant `gojinn`).
fn function_tool(function: &Deployed) -> Option<Tool> {
    let mcp = function.spec.mcp.as_ref().filter(|mcp| mcp.tool)?;
    let name = tool_name(&function.id);
    if AdminTool::named(&name).is_some() {
        return None;
    }
    let description = mcp.description.clone().unwrap_or_else(|| format!("Calls function {}", function.id));
    let schema = match &mcp.input_schema {
        Some(Value::Object(schema)) => schema.clone(),
        _ => JsonObject::from_iter([("type".to_owned(), Value::from("object"))]),
    };
    Some(Tool::new(name, description, Arc::new(schema)))
}

fn tool_name(id: &FunctionId) -> String {
    format!("{}.{}", id.tenant, id.function)
}

/// The deployed function a tool name calls, if it opted in.
fn tool_function(registry: &Registry, name: &str) -> Option<Arc<Deployed>> {
    let (tenant, function) = name.split_once('.')?;
    let id = FunctionId { tenant: Name::new(tenant).ok()?, function: Name::new(function).ok()? };
    let function = registry.get(&id)?;
    function.spec.mcp.as_ref().is_some_and(|mcp| mcp.tool).then(|| function.clone())
}

/// Calls `function` with `arguments` as the JSON body of a `POST /{tenant}/{function}`, in the
/// span of a function request (its parent the MCP request's `traceparent`).
async fn call_function(
    invoker: &Invoker,
    function: &Deployed,
    arguments: &Value,
    parts: Option<&http::request::Parts>,
) -> CallToolResult {
    let span = parts.map_or_else(tracing::Span::none, spans::request);
    if let Some(parts) = parts {
        spans::record_function(&span, &parts.method, PATH, &function.id, &function.spec.revision);
    }
    let run = async {
        let body = arguments.to_string();
        let max = function.spec.limits.max_body;
        if body.len() as u64 > max {
            return Invoked { outcome: Err(InvokeError::BodyTooLarge(max)), receipt: None };
        }
        let trace_id = spans::trace_id_for(parts.map_or(&HeaderMap::new(), |p| &p.headers));
        let envelope = GuestRequest::post("application/json", body.as_bytes(), &function.id, trace_id);
        invoker.invoke(Invocation { function, envelope: &envelope, trigger: Trigger::Mcp }).await
    };
    let invoked = run.instrument(span.clone()).await;
    if let Some(id) = &invoked.receipt {
        span.record("gojinn.receipt_id", id.as_str());
    }
    tool_result(invoked)
}

/// The result of a function's tool call: the guest's body as text, an error when its status is
/// 400 or above or the call failed (the text then the edge's JSON error body), and in `_meta`
/// the status and the receipt id.
fn tool_result(invoked: Invoked) -> CallToolResult {
    let (status, text) = match &invoked.outcome {
        Ok(answered) => (answered.guest.status, String::from_utf8_lossy(&answered.guest.body).into_owned()),
        Err(error) => (error.status(), failure::body(error).to_string()),
    };
    let content = vec![ContentBlock::text(text)];
    let result = match status.as_u16() {
        400.. => CallToolResult::error(content),
        _ => CallToolResult::success(content),
    };
    let mut meta = JsonObject::new();
    meta.insert(STATUS_META.to_owned(), status.as_u16().into());
    if let Some(id) = invoked.receipt {
        meta.insert(RECEIPT_META.to_owned(), id.into());
    }
    result.with_meta(Some(MetaObject(meta)))
}

/// The tools that read the node's state, as the REST admin API does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AdminTool {
    Status,
    Job,
    Receipt,
}

/// `gojinn.status` takes no arguments.
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArguments {}

/// `gojinn.job`'s arguments.
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JobArguments {
    /// The tenant the job belongs to.
    tenant: String,
    /// The job id an async call answered with (`{tenant}.{32 hex digits}`).
    id: String,
}

/// `gojinn.receipt`'s arguments.
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReceiptArguments {
    /// The receipt id, from a `Gojinn-Receipt` header or a tool result's `_meta`.
    id: String,
}

impl AdminTool {
    const ALL: [AdminTool; 3] = [AdminTool::Job, AdminTool::Receipt, AdminTool::Status];

    fn name(self) -> &'static str {
        match self {
            AdminTool::Status => "gojinn.status",
            AdminTool::Job => "gojinn.job",
            AdminTool::Receipt => "gojinn.receipt",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tool| tool.name() == name)
    }

    fn describe(self) -> Tool {
        let (description, schema) = match self {
            AdminTool::Status => (
                "The applied spec commit and every resource's reconcile status (applied, failed, \
                 denied, kept), as GET /_gojinn/v1/status returns.",
                schemars::schema_for!(NoArguments),
            ),
            AdminTool::Job => {
                ("An async call's job record: status, attempts, result.", schemars::schema_for!(JobArguments))
            }
            AdminTool::Receipt => (
                "The signed receipt of an execution: function, trigger, status, hashes, chain.",
                schemars::schema_for!(ReceiptArguments),
            ),
        };
        let schema = match serde_json::to_value(schema) {
            Ok(Value::Object(schema)) => schema,
            _ => JsonObject::new(),
        };
        Tool::new(self.name(), description, Arc::new(schema)).annotate(ToolAnnotations::new().read_only(true))
    }

    /// Runs the tool against what the admin API reads; a failure it can report (not found,
    /// unavailable) is an error result with the edge's JSON error body, invalid arguments a
    /// protocol error.
    async fn call(self, admin: &Admin, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        let state = &admin.state;
        let answer = match self {
            AdminTool::Status => {
                parse_arguments::<NoArguments>(self, arguments)?;
                json(super::status(admin).await)
            }
            AdminTool::Job => {
                let JobArguments { tenant, id } = parse_arguments(self, arguments)?;
                json(super::job(state, &tenant, &id).await)
            }
            AdminTool::Receipt => {
                let ReceiptArguments { id } = parse_arguments(self, arguments)?;
                json(super::receipts::receipt(state, &id).await)
            }
        };
        Ok(match answer {
            Ok(value) => CallToolResult::structured(value),
            Err(error) => CallToolResult::structured_error(error.body()),
        })
    }
}

/// A service function's answer as JSON.
fn json<T: Serialize>(answer: Result<T, Failure>) -> Result<Value, Failure> {
    answer.map(|found| serde_json::to_value(found).unwrap_or_default())
}

/// `arguments` as `T`, or an invalid-params error naming the tool and the field.
fn parse_arguments<T: DeserializeOwned>(tool: AdminTool, arguments: JsonObject) -> Result<T, ErrorData> {
    serde_path_to_error::deserialize(Value::Object(arguments)).map_err(|error| {
        let field = error.path().to_string();
        let message = match field.as_str() {
            "." => format!("invalid arguments for {}: {}", tool.name(), error.inner()),
            _ => format!("invalid arguments for {}: {field}: {}", tool.name(), error.inner()),
        };
        ErrorData::invalid_params(message, None)
    })
}

/// Checks and decodes an MCP message as the endpoint does ([`envelope`], then the transport)
/// and, for a call of an admin tool, its arguments as the tool does, without running anything
/// (`fuzz` target `mcp_request`).
#[cfg(any(test, fuzzing))]
pub(crate) fn decode_request(bytes: &[u8]) {
    use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
    if envelope::check_message(bytes).is_err() {
        return;
    }
    let Ok(JsonRpcMessage::Request(request)) = serde_json::from_slice::<ClientJsonRpcMessage>(bytes) else {
        return;
    };
    let ClientRequest::CallToolRequest(call) = request.request else { return };
    let arguments = call.params.arguments.unwrap_or_default();
    let _ = match AdminTool::named(&call.params.name) {
        Some(tool @ AdminTool::Status) => parse_arguments::<NoArguments>(tool, arguments).map(drop),
        Some(tool @ AdminTool::Job) => parse_arguments::<JobArguments>(tool, arguments).map(drop),
        Some(tool @ AdminTool::Receipt) => parse_arguments::<ReceiptArguments>(tool, arguments).map(drop),
        None => Ok(()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::GuestResponse;
    use crate::invoke::Answered;
    use crate::runtime::CallError;
    use serde_json::json;
    use std::time::Instant;

    fn origin(value: &str) -> HeaderMap {
        HeaderMap::from_iter([(header::ORIGIN, value.parse().unwrap())])
    }

    #[test]
    fn only_a_same_origin_browser_request_passes() {
        let none = AllowedOrigins::default();
        assert!(
            check_origin(&HeaderMap::new(), Some("node:8080"), &none).is_ok(),
            "no Origin: not a browser"
        );
        assert!(check_origin(&origin("http://node:8080"), Some("node:8080"), &none).is_ok());
        assert!(check_origin(&origin("https://NODE:8080"), Some("node:8080"), &none).is_ok());
        for refused in ["https://evil.example", "http://node:8081", "null", "file://node:8080", "node:8080"] {
            let checked = check_origin(&origin(refused), Some("node:8080"), &none);
            assert!(matches!(checked, Err(ApiError::ForbiddenOrigin(_))), "{refused}");
        }
        assert!(check_origin(&origin("http://node:8080"), None, &none).is_err(), "no host to compare with");
    }

    #[test]
    fn a_listed_origin_passes_besides_the_nodes_own() {
        let allowed = AllowedOrigins::new(&["https://Tools.example.com".to_owned()]);
        for passes in ["https://tools.example.com", "HTTPS://TOOLS.EXAMPLE.COM", "http://node:8080"] {
            assert!(check_origin(&origin(passes), Some("node:8080"), &allowed).is_ok(), "{passes}");
        }
        for refused in ["http://tools.example.com", "https://tools.example.com:8443", "https://evil.example"]
        {
            assert!(check_origin(&origin(refused), Some("node:8080"), &allowed).is_err(), "{refused}");
        }
    }

    fn answered(status: u16, body: &str) -> Invoked {
        let guest = GuestResponse {
            status: http::StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.to_owned().into(),
        };
        let now = Instant::now();
        Invoked {
            outcome: Ok(Answered { guest, envelope: Default::default(), started: now, ended: now }),
            receipt: Some("acme.r1".into()),
        }
    }

    fn as_json(result: CallToolResult) -> Value {
        serde_json::to_value(result).unwrap()
    }

    #[test]
    fn a_guest_answer_is_text_and_names_its_receipt() {
        let result = as_json(tool_result(answered(200, "{\"hi\":1}")));
        assert_eq!(result["content"], json!([{ "type": "text", "text": "{\"hi\":1}" }]));
        assert_eq!(result["isError"], false);
        assert_eq!(result["_meta"], json!({ RECEIPT_META: "acme.r1", STATUS_META: 200 }));
    }

    #[test]
    fn a_guest_error_status_or_a_failed_call_is_an_error_result() {
        let result = as_json(tool_result(answered(404, "nope")));
        assert_eq!(
            (result["isError"].as_bool(), result["content"][0]["text"].as_str()),
            (Some(true), Some("nope"))
        );
        let trapped =
            Invoked { outcome: Err(InvokeError::Call(CallError::Trap("unreachable".into()))), receipt: None };
        let result = as_json(tool_result(trapped));
        assert_eq!(result["isError"], true);
        let body: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(body["code"], "trap");
        assert_eq!(result["_meta"], json!({ STATUS_META: 500 }), "no receipt, no key");
        let internal = Invoked {
            outcome: Err(InvokeError::Call(CallError::Internal("/var/secret".into()))),
            receipt: None,
        };
        assert!(
            !as_json(tool_result(internal)).to_string().contains("secret"),
            "internal details stay in the log"
        );
    }

    #[test]
    fn admin_tool_arguments_are_checked_field_by_field() {
        let object = |value: Value| value.as_object().unwrap().clone();
        let parsed: JobArguments =
            parse_arguments(AdminTool::Job, object(json!({ "tenant": "acme", "id": "acme.x" }))).unwrap();
        assert_eq!((parsed.tenant.as_str(), parsed.id.as_str()), ("acme", "acme.x"));
        let cases = [
            (json!({ "tenant": "acme" }), "missing field `id`"),
            (json!({ "tenant": 5, "id": "x" }), "gojinn.job: tenant: invalid type"),
            (json!({ "tenant": "a", "id": "x", "extra": 1 }), "unknown field `extra`"),
        ];
        for (arguments, expected) in cases {
            let error = parse_arguments::<JobArguments>(AdminTool::Job, object(arguments)).err().unwrap();
            assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS);
            assert!(error.message.contains(expected), "{} lacks {expected}", error.message);
        }
        assert!(parse_arguments::<NoArguments>(AdminTool::Status, object(json!({ "x": 1 }))).is_err());
    }

    #[test]
    fn admin_tools_have_unique_names_and_object_schemas() {
        for tool in AdminTool::ALL {
            assert_eq!(AdminTool::named(tool.name()), Some(tool));
            let described = tool.describe();
            assert_eq!(described.input_schema.get("type"), Some(&json!("object")), "{}", tool.name());
        }
        assert_eq!(AdminTool::named("gojinn.plan"), None);
        let receipt = AdminTool::Receipt.describe();
        assert_eq!(receipt.input_schema["required"], json!(["id"]));
    }
}
