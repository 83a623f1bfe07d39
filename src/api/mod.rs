//! The REST admin API under `/_gojinn/v1/...`: what is deployed (tenants and their functions,
//! [`deployed`]), a tenant's jobs (list, show, redrive), receipts (`receipts`), reconcile
//! status and the reconcile webhook, behind the admin bearer token on every route, a tenant's
//! jobs, receipts and what it deployed also behind that tenant's API keys ([`keys`],
//! [`require_access`]); and the MCP endpoint ([`mcp`]) behind the admin token. Every route is
//! declared with its OpenAPI operation ([`openapi`]), so the document lists exactly what is
//! served. Handlers call the same service functions as the edge ([`crate::jobs`],
//! [`crate::audit::log`]) and return [`Failure`]s, which the edge's error mapping turns into
//! responses; this module never builds an error response itself and never imports the edge
//! (the edge composes these routes). [`client`] is the other side, for `gojinn jobs` and
//! `gojinn audit`.

pub mod audit_cli;
pub mod client;
pub mod deployed;
pub mod keys;
pub mod mcp;
pub mod openapi;
mod receipts;
pub mod token;
pub mod webhook;

use crate::failure::{ErrorBody, Failure, PublicError};
use crate::jobs::{self, JobId};
use crate::reconcile::Status;
use crate::reconcile::controller::PassRequests;
use crate::registry::RegistryHandle;
use crate::spec::{Name, Scope};
use crate::state::{JobRecord, JobStatus};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keys::Need;
use std::sync::Arc;
pub use token::{AdminToken, TokenError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Jobs a list returns when the query does not say.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// The most jobs one list returns.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Why an admin request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "a valid admin bearer token is required, or, with reconcile.webhook.secretFile set, \
         X-Hub-Signature-256 (GitHub) or X-Gitlab-Token"
    )]
    WebhookUnauthorized,
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error("the request body is larger than this route's limit of {0} bytes")]
    BodyTooLarge(u64),
    #[error("{0}")]
    BadBody(String),
    #[error("no tenant {0}")]
    NoTenant(String),
    #[error("no function {0}")]
    NoFunction(String),
    #[error("no receipt {0}")]
    NoReceipt(String),
    #[error("requests from origin {0} are not allowed here")]
    ForbiddenOrigin(String),
    #[error("cannot read the state backend: {0}")]
    State(crate::state::StateError),
}

impl PublicError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::WebhookUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadQuery(_) | ApiError::BadBody(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoTenant(_) | ApiError::NoFunction(_) | ApiError::NoReceipt(_) => StatusCode::NOT_FOUND,
            ApiError::ForbiddenOrigin(_) => StatusCode::FORBIDDEN,
            ApiError::State(state) => state.status(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::WebhookUnauthorized => "unauthorized",
            ApiError::BadQuery(_) => "bad_query",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::BadBody(_) => "bad_body",
            ApiError::NoTenant(_) => "no_tenant",
            ApiError::NoFunction(_) => "no_function",
            ApiError::NoReceipt(_) => "no_receipt",
            ApiError::ForbiddenOrigin(_) => "forbidden_origin",
            ApiError::State(state) => state.code(),
        }
    }

    fn internal_detail(&self) -> Option<&str> {
        match self {
            ApiError::State(state) => state.internal_detail(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::State(state) => state.retry_after(),
            _ => None,
        }
    }

    fn headers(&self, headers: &mut http::HeaderMap) {
        if let ApiError::WebhookUnauthorized = self {
            headers
                .insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static(r#"Bearer realm="gojinn""#));
        }
    }
}

/// What the admin handlers share.
pub struct Admin {
    pub state: crate::state::State,
    /// The functions served now.
    pub registry: RegistryHandle,
    /// Asks the reconcile controller for a pass (the reconcile webhook).
    pub passes: PassRequests,
    pub token: AdminToken,
    /// The git hosts' webhook secret (`reconcile.webhook.secretFile`), if configured.
    pub webhook: Option<Arc<webhook::WebhookSecret>>,
}

/// The admin routes, each with its OpenAPI operation; the edge puts each behind
/// [`require_access`] (the reconcile webhook, which takes other proofs too, is
/// [`webhook::routes`]).
pub fn routes() -> OpenApiRouter<Arc<Admin>> {
    use openapi::strict;
    OpenApiRouter::new()
        .routes(strict(routes!(list_jobs)))
        .routes(strict(routes!(show_job)))
        .routes(strict(routes!(redrive_job)))
        .routes(strict(routes!(reconcile_status)))
        .merge(receipts::routes())
        .merge(deployed::routes())
}

/// Lets a request to an admin route through with what the route needs ([`need`]): a tenant's
/// jobs and receipts also open to that tenant's API keys with the `jobs` or `receipts` scope,
/// what the tenant deployed to any of its keys; every other route takes the admin token only.
pub async fn require_access(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    let registry = admin.registry.current();
    let needed = need(request.uri().path());
    let need = match &needed {
        Some((tenant, Some(scope))) => Need::Tenant(tenant, *scope),
        Some((tenant, None)) => Need::AnyScope(tenant),
        None => Need::Admin,
    };
    match keys::authorize(&admin.token, &registry, request.headers(), need) {
        Ok(_) => next.run(request).await,
        Err(refused) => Failure::from(refused).into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// The tenant whose keys open an admin route's path, and the scope they need (`None`: any):
/// `tenants/{tenant}/jobs...` the tenant's `jobs`, `tenants/{tenant}/receipts` and
/// `receipts/{id}` (the receipt's tenant) its `receipts`, `/_gojinn/mcp/{tenant}` (the tenant's
/// MCP endpoint) its `mcp`; `tenants/{tenant}` and `tenants/{tenant}/functions[/{function}]`,
/// which only describe what the tenant deployed, any scope. `None` (the admin token only) for
/// every other path. The path is read as sent, not percent-decoded: a tenant name is plain
/// ASCII, so an encoded one needs the admin token.
fn need(path: &str) -> Option<(Name, Option<Scope>)> {
    let segments: Vec<&str> = path.split('/').collect();
    let (tenant, scope) = match segments.as_slice() {
        ["", "_gojinn", "v1", "tenants", tenant, "jobs", ..] => (Name::new(tenant).ok(), Some(Scope::Jobs)),
        ["", "_gojinn", "v1", "tenants", tenant, "receipts"] => {
            (Name::new(tenant).ok(), Some(Scope::Receipts))
        }
        ["", "_gojinn", "v1", "receipts", id] => (crate::audit::id_tenant(id), Some(Scope::Receipts)),
        ["", "_gojinn", "mcp", tenant] => (Name::new(tenant).ok(), Some(Scope::Mcp)),
        ["", "_gojinn", "v1", "tenants", tenant]
        | ["", "_gojinn", "v1", "tenants", tenant, "functions"]
        | ["", "_gojinn", "v1", "tenants", tenant, "functions", _] => (Name::new(tenant).ok(), None),
        _ => (None, None),
    };
    Some((tenant?, scope))
}

/// `GET /_gojinn/v1/status` → the applied commit and every resource's status.
#[utoipa::path(
    get,
    path = "/_gojinn/v1/status",
    tag = "reconcile",
    summary = "Reconcile status",
    description = "The applied commit and every resource's status (applied, failed, denied, invalid, kept) with its hash, \
        commit and last error, as this node serves it: a function it could not deploy is failed.",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "`{commit, partial, resources: [{resource, state, hash, commit, message, drift}], invalid}`", body = inline(serde_json::Value)),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorBody),
        (status = 403, description = "`forbidden`: a tenant's API key, which this route does not take", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn reconcile_status(State(admin): State<Arc<Admin>>) -> Result<axum::Json<Status>, Failure> {
    Ok(axum::Json(status(&admin).await?))
}

/// The applied commit and every resource's status (REST `GET /_gojinn/v1/status`, MCP
/// `gojinn.status`), as this node serves them: a function it could not deploy is failed.
pub(crate) async fn status(admin: &Admin) -> Result<Status, Failure> {
    let status = crate::reconcile::status::read(&admin.state).await.map_err(ApiError::State)?;
    Ok(status.with_node_failures(admin.registry.current().failures()))
}

/// `GET /_gojinn/v1/tenants/{tenant}/jobs?status=dead&limit=N` → `{"jobs": [...]}`.
#[utoipa::path(
    get,
    path = "/_gojinn/v1/tenants/{tenant}/jobs",
    tag = "jobs",
    summary = "List a tenant's jobs",
    description = "The tenant's jobs, newest first, optionally of one status. Open to the admin token and to the tenant's keys with the `jobs` scope.",
    params(("tenant" = String, Path, description = "The tenant's name"), ListQuery),
    security(("admin_token" = []), ("tenant_key" = []), ("tenant_key_header" = [])),
    responses(
        (status = 200, description = "`{jobs: [{id, tenant, function, status, attempts, result, error, created_ms, updated_ms}]}`", body = inline(serde_json::Value)),
        (status = 400, description = "`bad_query`: an unknown parameter or status, or a limit outside 1 to 1000", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no credential, or one that is neither the admin token nor any tenant's key", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's key, or a key without the `jobs` scope", body = ErrorBody),
        (status = 404, description = "`no_tenant`: the name is not a tenant's", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn list_jobs(
    State(admin): State<Arc<Admin>>,
    Path(tenant): Path<String>,
    uri: Uri,
) -> Result<Response, Failure> {
    let tenant = Name::new(&tenant).map_err(|_| ApiError::NoTenant(tenant.clone()))?;
    let (status, limit) = list_query(&uri)?;
    let jobs = jobs::list(&admin.state, &tenant, status, limit).await?;
    Ok(axum::Json(serde_json::json!({ "jobs": jobs })).into_response())
}

/// `GET /_gojinn/v1/tenants/{tenant}/jobs/{id}` → the job.
#[utoipa::path(
    get,
    path = "/_gojinn/v1/tenants/{tenant}/jobs/{id}",
    tag = "jobs",
    summary = "Show a tenant's job",
    description = "Open to the admin token and to the tenant's keys with the `jobs` scope.",
    params(("tenant" = String, Path, description = "The tenant's name"), ("id" = String, Path, description = "The job's id, `{tenant}.{key}`")),
    security(("admin_token" = []), ("tenant_key" = []), ("tenant_key_header" = [])),
    responses(
        (status = 200, description = "`{id, tenant, function, status, attempts, result, error, created_ms, updated_ms}`", body = inline(serde_json::Value)),
        (status = 401, description = "`unauthorized`: no credential, or one that is neither the admin token nor any tenant's key", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's key, or a key without the `jobs` scope", body = ErrorBody),
        (status = 404, description = "`no_job`: no job of that id is the tenant's", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn show_job(
    State(admin): State<Arc<Admin>>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<axum::Json<JobRecord>, Failure> {
    Ok(axum::Json(job(&admin.state, &tenant, &id).await?))
}

/// Job `id` of `tenant` (REST `GET /_gojinn/v1/tenants/{tenant}/jobs/{id}`, MCP `gojinn.job`).
pub(crate) async fn job(state: &crate::state::State, tenant: &str, id: &str) -> Result<JobRecord, Failure> {
    Ok(jobs::status(state, &tenant_job(tenant, id)?).await?)
}

/// `POST /_gojinn/v1/tenants/{tenant}/jobs/{id}/redrive` → 202 and the job, queued again.
#[utoipa::path(
    post,
    path = "/_gojinn/v1/tenants/{tenant}/jobs/{id}/redrive",
    tag = "jobs",
    summary = "Redrive a dead job",
    description = "Queues a dead job again. Open to the admin token and to the tenant's keys with the `jobs` scope.",
    params(("tenant" = String, Path, description = "The tenant's name"), ("id" = String, Path, description = "The job's id, `{tenant}.{key}`")),
    security(("admin_token" = []), ("tenant_key" = []), ("tenant_key_header" = [])),
    responses(
        (status = 202, description = "The job, queued again", body = inline(serde_json::Value)),
        (status = 401, description = "`unauthorized`: no credential, or one that is neither the admin token nor any tenant's key", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's key, or a key without the `jobs` scope", body = ErrorBody),
        (status = 404, description = "`no_job`: no job of that id is the tenant's", body = ErrorBody),
        (status = 409, description = "`not_dead`: the job is not dead; `conflict`: it changed meanwhile", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn redrive_job(
    State(admin): State<Arc<Admin>>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let id = tenant_job(&tenant, &id)?;
    let job = jobs::redrive(&admin.state, &id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(job)).into_response())
}

/// The job `id` if it belongs to `tenant`; a job of another tenant is not found here.
fn tenant_job(tenant: &str, id: &str) -> Result<JobId, Failure> {
    let parsed = JobId::parse(id)?;
    if parsed.tenant().as_str() != tenant {
        return Err(jobs::JobError::NotFound(id.to_owned()).into());
    }
    Ok(parsed)
}

/// A job list's query: `status` and `limit`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only jobs of this status: `queued`, `running`, `succeeded`, `failed` or `dead`.
    status: Option<String>,
    /// How many at most: 1 to 1000, 100 when not given.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// The status and limit a job list asks for.
fn list_query(uri: &Uri) -> Result<(Option<JobStatus>, usize), ApiError> {
    let ListQuery { status, limit } = query(uri)?;
    let status = status.map(|status| jobs::parse_status(&status)).transpose().map_err(ApiError::BadQuery)?;
    Ok((status, bounded("limit", limit, DEFAULT_LIST_LIMIT as u64, MAX_LIST_LIMIT as u64)?))
}

/// The query of `uri` as `T`, whose `deny_unknown_fields` refuses any other parameter, so that a
/// typo is not ignored.
fn query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    match Query::try_from_uri(uri) {
        Ok(Query(query)) => Ok(query),
        // The deserializer's message, which names the parameter, without axum's preamble.
        Err(rejection) => Err(ApiError::BadQuery(
            std::error::Error::source(&rejection).map_or_else(|| rejection.body_text(), ToString::to_string),
        )),
    }
}

/// `value`, or `default`, which must be 1 to `max`.
fn bounded(name: &str, value: Option<u64>, default: u64, max: u64) -> Result<usize, ApiError> {
    match value.unwrap_or(default) {
        n @ 1.. if n <= max => Ok(n as usize),
        n => Err(ApiError::BadQuery(format!("{name} must be 1 to {max}, not {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_take_a_status_and_a_limit() {
        let list_query = |query: &str| list_query(&format!("/jobs?{query}").parse().unwrap());
        assert_eq!(list_query("").unwrap(), (None, DEFAULT_LIST_LIMIT));
        assert_eq!(list_query("status=dead&limit=5").unwrap(), (Some(JobStatus::Dead), 5));
        for bad in ["status=gone", "limit=0", "limit=1001", "limit=x", "state=dead"] {
            assert!(matches!(list_query(bad), Err(ApiError::BadQuery(_))), "{bad}");
        }
    }

    #[test]
    fn a_bad_query_is_refused_naming_the_parameter() {
        let refused = |query: &str| match list_query(&format!("/jobs?{query}").parse().unwrap()) {
            Err(ApiError::BadQuery(message)) => message,
            other => panic!("{query}: {other:?}"),
        };
        assert!(refused("state=dead").contains("unknown field `state`"), "{}", refused("state=dead"));
        assert!(refused("limit=x").starts_with("limit: "), "{}", refused("limit=x"));
        assert_eq!(refused("limit=1001"), "limit must be 1 to 1000, not 1001");
    }

    #[test]
    fn a_tenants_jobs_and_receipts_need_its_key_and_the_rest_the_admin_token() {
        let need = |path: &str| match need(path) {
            Some((tenant, Some(scope))) => format!("{tenant} {scope}"),
            Some((tenant, None)) => format!("{tenant} any"),
            None => "admin".to_owned(),
        };
        let receipt = "acme.0123456789abcdef0123456789abcdef";
        for (path, expected) in [
            ("/_gojinn/v1/tenants/acme/jobs", "acme jobs"),
            ("/_gojinn/v1/tenants/acme/jobs/acme.x", "acme jobs"),
            ("/_gojinn/v1/tenants/acme/jobs/acme.x/redrive", "acme jobs"),
            ("/_gojinn/v1/tenants/acme/receipts", "acme receipts"),
            (&format!("/_gojinn/v1/receipts/{receipt}"), "acme receipts"),
            ("/_gojinn/v1/receipts/acme.short", "admin"),
            ("/_gojinn/v1/tenants/acme/audit", "admin"),
            ("/_gojinn/v1/tenants/%61cme/jobs", "admin"),
            ("/_gojinn/v1/tenants/acme", "acme any"),
            ("/_gojinn/v1/tenants/acme/functions", "acme any"),
            ("/_gojinn/v1/tenants/acme/functions/hello", "acme any"),
            ("/_gojinn/v1/tenants/acme/functions/hello/x", "admin"),
            ("/_gojinn/v1/tenants", "admin"),
            ("/_gojinn/v1/tenants/", "admin"),
            ("/_gojinn/v1/tenants/%61cme/functions", "admin"),
            ("/_gojinn/v1/status", "admin"),
            ("/_gojinn/v1/reconcile", "admin"),
        ] {
            assert_eq!(need(path), expected, "{path}");
        }
    }

    #[test]
    fn a_job_is_found_only_under_its_own_tenant() {
        let id = "acme.0123456789abcdef0123456789abcdef";
        assert!(tenant_job("acme", id).is_ok());
        assert!(matches!(tenant_job("other", id), Err(failure) if failure.error().code() == "no_job"));
    }
}
