//! The REST admin API under `/_gojinn/v1/...`: a tenant's jobs (list, show, redrive),
//! receipts (`receipts`), reconcile status and the reconcile webhook, behind the admin bearer
//! token on every route, a tenant's jobs and receipts also behind that tenant's API keys
//! ([`keys`], [`require_access`]); and the MCP endpoint ([`mcp`]) behind the admin token. Handlers call the
//! same service functions as the edge ([`crate::jobs`], [`crate::audit::log`]) and return
//! [`Failure`]s, which the edge's error mapping turns into responses; this module never builds
//! an error response itself and never imports the edge (the edge composes these routes). [`client`] is the other side, for `gojinn jobs` and `gojinn audit`.

pub mod audit_cli;
pub mod client;
pub mod keys;
pub mod mcp;
mod receipts;
pub mod token;
pub mod webhook;

use crate::failure::{Failure, PublicError, allow_methods};
use crate::jobs::{self, JobId};
use crate::reconcile::Status;
use crate::reconcile::controller::PassRequests;
use crate::registry::RegistryHandle;
use crate::spec::{Name, Scope};
use crate::state::{JobRecord, JobStatus};
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keys::Need;
use std::sync::Arc;
pub use token::{AdminToken, TokenError};

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
            ApiError::NoTenant(_) | ApiError::NoReceipt(_) => StatusCode::NOT_FOUND,
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

/// The admin routes; the edge puts each behind [`require_access`] (the reconcile webhook, which
/// takes other proofs too, is [`webhook::routes`]).
pub fn routes() -> Router<Arc<Admin>> {
    Router::new()
        .route("/_gojinn/v1/tenants/{tenant}/jobs", allow_methods(get(list_jobs), "GET"))
        .route("/_gojinn/v1/tenants/{tenant}/jobs/{id}", allow_methods(get(show_job), "GET"))
        .route("/_gojinn/v1/tenants/{tenant}/jobs/{id}/redrive", allow_methods(post(redrive_job), "POST"))
        .route("/_gojinn/v1/status", allow_methods(get(reconcile_status), "GET"))
        .merge(receipts::routes())
}

/// Lets a request to an admin route through with what the route needs ([`need`]): a tenant's
/// jobs and receipts also open to that tenant's API keys with the `jobs` or `receipts` scope;
/// every other route takes the admin token only.
pub async fn require_access(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    let registry = admin.registry.current();
    let (tenant, scope) = need(request.uri().path());
    let need = match &tenant {
        Some(tenant) => Need::Tenant(tenant, scope),
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

/// The tenant and scope an admin route's path needs a key for: `tenants/{tenant}/jobs...` the
/// tenant's `jobs`, `tenants/{tenant}/receipts` and `receipts/{id}` (the receipt's tenant) its
/// `receipts`, `/_gojinn/mcp/{tenant}` (the tenant's MCP endpoint) its `mcp`; `None` (the admin
/// token only) for every other path. The path is read as sent,
/// not percent-decoded: a tenant name is plain ASCII, so an encoded one needs the admin token.
fn need(path: &str) -> (Option<Name>, Scope) {
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["", "_gojinn", "v1", "tenants", tenant, "jobs", ..] => (Name::new(tenant).ok(), Scope::Jobs),
        ["", "_gojinn", "v1", "tenants", tenant, "receipts"] => (Name::new(tenant).ok(), Scope::Receipts),
        ["", "_gojinn", "v1", "receipts", id] => (crate::audit::id_tenant(id), Scope::Receipts),
        ["", "_gojinn", "mcp", tenant] => (Name::new(tenant).ok(), Scope::Mcp),
        _ => (None, Scope::Invoke),
    }
}

/// `GET /_gojinn/v1/status` → the applied commit and every resource's status.
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
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
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
            (Some(tenant), scope) => format!("{tenant} {scope}"),
            (None, _) => "admin".to_owned(),
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
