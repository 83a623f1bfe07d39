//! What is deployed, tenant by tenant and function by function: `GET /_gojinn/v1/tenants`
//! (the admin token only), `.../tenants/{tenant}`, `.../tenants/{tenant}/functions` and
//! `.../functions/{function}` (also any key of that tenant, whatever its scope: they only
//! describe what the tenant deployed; see [`super::need`]). Each answer is what the reconciler
//! applied (the applied record: its hash, commit and normalized spec), its reconcile status as
//! `GET /_gojinn/v1/status` reports it (this node's own deploy failures included), and, for a
//! function, the revision this node serves. Never a secret: a tenant's keys are listed by name
//! and scopes, without their digests; a function's env and grants are left out. Lists are
//! ordered by name and paged (`after`, `limit`).

use super::{Admin, ApiError, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, bounded, query};
use crate::failure::{ErrorBody, Failure};
use crate::reconcile::desired::{APPLIED_PREFIX, Record, ResourceId};
use crate::reconcile::status::{ResourceState, ResourceStatus};
use crate::spec::{Function, FunctionId, Name, Scope, Tenant};
use axum::extract::{Path, State};
use axum::http::Uri;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes, to be put behind [`super::require_access`].
pub(super) fn routes() -> OpenApiRouter<Arc<Admin>> {
    use super::openapi::strict;
    OpenApiRouter::new()
        .routes(strict(routes!(list_tenants)))
        .routes(strict(routes!(show_tenant)))
        .routes(strict(routes!(list_functions)))
        .routes(strict(routes!(show_function)))
}

/// A page of a list: the items after `after` (a name), at most `limit` of them.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Only names after this one (the `next` of the previous page).
    after: Option<String>,
    /// How many at most: 1 to 1000, 100 when not given.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    pub tenants: Vec<TenantView>,
    /// The `after` of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A page of a tenant's functions.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionPage {
    pub functions: Vec<FunctionView>,
    /// The `after` of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A tenant as applied.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub name: String,
    /// The sha256 of the applied tenant record (as `GET /_gojinn/v1/status` reports it).
    pub hash: String,
    /// The source commit it was applied from (git sources).
    pub commit: Option<String>,
    pub status: Option<DeployStatus>,
    /// JetStream replicas of the tenant's data.
    pub replicas: u8,
    pub limits: TenantLimits,
    /// The tenant's API keys, by name and scopes (never their digests).
    pub api_keys: Vec<KeyView>,
    /// Where the tenant's functions may declare routes besides `/{tenant}/...`.
    pub route_prefixes: Vec<String>,
}

/// A tenant's quotas.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantLimits {
    pub max_concurrency: u32,
    pub max_queue: u32,
    /// Absent: no tenant-wide rate limit.
    pub requests_per_second: Option<u32>,
    /// Absent: no tenant-wide memory limit.
    pub max_memory_bytes: Option<u64>,
    pub kv_max_bytes: Option<u64>,
    pub kv_max_keys: Option<u32>,
}

/// One of a tenant's API keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub name: String,
    /// What the key opens: `invoke`, `jobs`, `receipts`, `mcp`.
    pub scopes: Vec<String>,
}

/// A function as applied.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionView {
    pub tenant: String,
    pub name: String,
    /// The function's revision: sha256 over everything it runs with.
    pub revision: String,
    /// The sha256 of the applied function record (as `GET /_gojinn/v1/status` reports it).
    pub hash: String,
    /// The source commit it was applied from (git sources).
    pub commit: Option<String>,
    /// The revision this node serves: the applied one once deployed here, an older one while
    /// a deploy is under way or after this node failed to deploy it, absent if none.
    pub served_revision: Option<String>,
    pub status: Option<DeployStatus>,
    /// The sha256 of the WebAssembly module.
    pub module_sha256: String,
    pub limits: FunctionLimits,
    /// The routes the function declared (besides `/{tenant}/{function}/...`).
    pub routes: Vec<RouteView>,
    /// Whether MCP offers the function as a tool.
    pub mcp_tool: bool,
}

/// A function's limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionLimits {
    pub memory_bytes: u64,
    pub timeout_ms: u64,
    /// Absent: no CPU limit but the timeout.
    pub cpu_ms: Option<u64>,
    pub max_output_bytes: u64,
    pub max_body_bytes: u64,
    pub max_concurrency: u32,
    pub max_queue: u32,
    /// Absent: no rate limit but the tenant's.
    pub requests_per_second: Option<u32>,
}

/// A declared route.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    pub path: String,
    /// The methods it serves; empty: any.
    pub methods: Vec<String>,
}

/// A resource's reconcile status, as `GET /_gojinn/v1/status` reports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeployStatus {
    pub state: DeployState,
    /// Why it failed, was denied or is invalid.
    pub message: Option<String>,
}

/// Whether the applied spec is served: `applied`; or the last apply of a newer one `failed`,
/// was `denied` by a policy or is `invalid` (what was applied before stays); or its spec is
/// gone but it is `kept`.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeployState {
    Applied,
    Failed,
    Denied,
    Invalid,
    Kept,
}

impl From<ResourceState> for DeployState {
    fn from(state: ResourceState) -> Self {
        match state {
            ResourceState::Applied => Self::Applied,
            ResourceState::Failed => Self::Failed,
            ResourceState::Denied => Self::Denied,
            ResourceState::Invalid => Self::Invalid,
            ResourceState::Kept => Self::Kept,
        }
    }
}

impl From<ResourceStatus> for DeployStatus {
    fn from(status: ResourceStatus) -> Self {
        Self { state: status.state.into(), message: status.message }
    }
}

/// Every tenant's status and its functions', by resource.
type Statuses = BTreeMap<ResourceId, ResourceStatus>;

/// A page of the applied tenants (REST `GET /_gojinn/v1/tenants`).
pub(crate) async fn tenants(admin: &Admin, page: PageQuery) -> Result<TenantPage, Failure> {
    let limit = bounded("limit", page.limit, DEFAULT_LIST_LIMIT as u64, MAX_LIST_LIMIT as u64)?;
    let applied = applied::<Tenant>(admin, &format!("{APPLIED_PREFIX}tenant/")).await?;
    let mut statuses = statuses(admin).await?;
    let (page, next) = paged(applied, page.after.as_deref(), limit, |(_, tenant)| tenant.name.as_str());
    let tenants =
        page.into_iter().map(|(record, tenant)| tenant_view(record, tenant, &mut statuses)).collect();
    Ok(TenantPage { tenants, next })
}

/// Tenant `name` as applied (REST `GET /_gojinn/v1/tenants/{tenant}`).
pub(crate) async fn tenant(admin: &Admin, name: &str) -> Result<TenantView, Failure> {
    let (record, tenant) = applied_tenant(admin, name).await?;
    Ok(tenant_view(record, tenant, &mut statuses(admin).await?))
}

/// A page of `tenant`'s applied functions (REST `GET /_gojinn/v1/tenants/{tenant}/functions`).
pub(crate) async fn functions(admin: &Admin, tenant: &str, page: PageQuery) -> Result<FunctionPage, Failure> {
    let limit = bounded("limit", page.limit, DEFAULT_LIST_LIMIT as u64, MAX_LIST_LIMIT as u64)?;
    let (_, tenant) = applied_tenant(admin, tenant).await?;
    let applied = applied::<Function>(admin, &format!("{APPLIED_PREFIX}function/{}/", tenant.name)).await?;
    let mut statuses = statuses(admin).await?;
    let registry = admin.registry.current();
    let (page, next) =
        paged(applied, page.after.as_deref(), limit, |(_, function)| function.id.function.as_str());
    let functions = page
        .into_iter()
        .map(|(record, function)| {
            let served = registry.get(&function.id).map(|deployed| deployed.spec.revision.clone());
            function_view(record, function, served, &mut statuses)
        })
        .collect();
    Ok(FunctionPage { functions, next })
}

/// Function `function` of `tenant` as applied (REST
/// `GET /_gojinn/v1/tenants/{tenant}/functions/{function}`).
pub(crate) async fn function(admin: &Admin, tenant: &str, function: &str) -> Result<FunctionView, Failure> {
    let (_, tenant) = applied_tenant(admin, tenant).await?;
    let no_function = || ApiError::NoFunction(format!("{}/{function}", tenant.name));
    let name = Name::new(function).map_err(|_| no_function())?;
    let id = FunctionId { tenant: tenant.name.clone(), function: name };
    let key = ResourceId::function(&id).applied_key();
    let found = applied::<Function>(admin, &key)
        .await?
        .into_iter()
        .find(|(record, _)| record.id.applied_key() == key);
    let (record, function) = found.ok_or_else(no_function)?;
    let served = admin.registry.current().get(&id).map(|deployed| deployed.spec.revision.clone());
    Ok(function_view(record, function, served, &mut statuses(admin).await?))
}

/// The applied record of tenant `name`, and the tenant it holds.
async fn applied_tenant(admin: &Admin, name: &str) -> Result<(Record, Tenant), Failure> {
    let no_tenant = || ApiError::NoTenant(name.to_owned());
    let key = ResourceId::tenant(&Name::new(name).map_err(|_| no_tenant())?).applied_key();
    let found =
        applied::<Tenant>(admin, &key).await?.into_iter().find(|(record, _)| record.id.applied_key() == key);
    Ok(found.ok_or_else(no_tenant)?)
}

/// The applied records whose key starts with `prefix`, by key, with the spec each holds. A
/// record that does not decode, or was changed behind the reconciler's back, is left out, as a
/// deploy leaves it out; `GET /_gojinn/v1/status` reports it.
async fn applied<T: DeserializeOwned>(admin: &Admin, prefix: &str) -> Result<Vec<(Record, T)>, Failure> {
    let records = admin.state.control.records(prefix).await.map_err(ApiError::State)?;
    Ok(records
        .values()
        .filter_map(|raw| serde_json::from_slice::<Record>(raw).ok())
        .filter(Record::is_intact)
        .filter_map(|record| {
            let spec = serde_json::from_value(record.spec.clone()).ok()?;
            Some((record, spec))
        })
        .collect())
}

/// Every resource's status as this node serves it (REST `GET /_gojinn/v1/status`).
async fn statuses(admin: &Admin) -> Result<Statuses, Failure> {
    let status = super::status(admin).await?;
    Ok(status.resources.into_iter().map(|status| (status.resource.clone(), status)).collect())
}

/// The items of `sorted` whose name is after `after`, at most `limit`, and the `after` of
/// the next page if more remain.
fn paged<T>(
    sorted: Vec<T>,
    after: Option<&str>,
    limit: usize,
    name: impl Fn(&T) -> &str,
) -> (Vec<T>, Option<String>) {
    let mut page: Vec<T> =
        sorted.into_iter().filter(|item| after.is_none_or(|after| name(item) > after)).collect();
    if page.len() <= limit {
        return (page, None);
    }
    page.truncate(limit);
    let next = page.last().map(|item| name(item).to_owned());
    (page, next)
}

fn tenant_view(record: Record, tenant: Tenant, statuses: &mut Statuses) -> TenantView {
    let status = statuses.remove(&record.id).map(DeployStatus::from);
    let quotas = tenant.quotas;
    TenantView {
        name: tenant.name.to_string(),
        hash: record.hash,
        commit: record.commit,
        status,
        replicas: tenant.replicas,
        limits: TenantLimits {
            max_concurrency: quotas.max_concurrency,
            max_queue: quotas.max_queue,
            requests_per_second: quotas.requests_per_second,
            max_memory_bytes: quotas.max_memory,
            kv_max_bytes: quotas.kv_max_bytes,
            kv_max_keys: quotas.kv_max_keys,
        },
        api_keys: tenant
            .api_keys
            .into_iter()
            .map(|key| KeyView {
                name: key.name.to_string(),
                scopes: key
                    .scopes
                    .as_deref()
                    .unwrap_or(&Scope::ALL)
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
            })
            .collect(),
        route_prefixes: tenant.route_prefixes.into_iter().map(|prefix| prefix.0).collect(),
    }
}

fn function_view(
    record: Record,
    function: Function,
    served_revision: Option<String>,
    statuses: &mut Statuses,
) -> FunctionView {
    let status = statuses.remove(&record.id).map(DeployStatus::from);
    let limits = function.limits;
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    FunctionView {
        tenant: function.id.tenant.to_string(),
        name: function.id.function.to_string(),
        revision: function.revision,
        hash: record.hash,
        commit: record.commit,
        served_revision,
        status,
        module_sha256: function.module.sha256,
        limits: FunctionLimits {
            memory_bytes: limits.memory,
            timeout_ms: millis(limits.timeout),
            cpu_ms: limits.cpu.map(millis),
            max_output_bytes: limits.max_output,
            max_body_bytes: limits.max_body,
            max_concurrency: limits.max_concurrency,
            max_queue: limits.max_queue,
            requests_per_second: limits.requests_per_second.map(|rps| rps.get()),
        },
        routes: function
            .routes
            .into_iter()
            .map(|route| RouteView {
                path: route.path.0,
                methods: route.methods.iter().map(|m| m.as_str().to_owned()).collect(),
            })
            .collect(),
        mcp_tool: function.mcp.is_some_and(|mcp| mcp.tool),
    }
}

/// `GET /_gojinn/v1/tenants?after=NAME&limit=N` → `{"tenants": [...], "next"}`.
#[utoipa::path(
    get,
    path = "/_gojinn/v1/tenants",
    tag = "deployed",
    summary = "List the applied tenants",
    description = "The tenants the reconciler applied, ordered by name, a page at a time; the admin token only.",
    params(PageQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of tenants", body = TenantPage),
        (status = 400, description = "`bad_query`: an unknown parameter, or a limit outside 1 to 1000", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorBody),
        (status = 403, description = "`forbidden`: a tenant's API key, which this route does not take", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn list_tenants(State(admin): State<Arc<Admin>>, uri: Uri) -> Result<axum::Json<TenantPage>, Failure> {
    Ok(axum::Json(tenants(&admin, query(&uri)?).await?))
}

/// `GET /_gojinn/v1/tenants/{tenant}` → the tenant.
#[utoipa::path(
    get,
    path = "/_gojinn/v1/tenants/{tenant}",
    tag = "deployed",
    summary = "Show an applied tenant",
    description = "The tenant as applied: hash, commit, status, replicas, limits, key names and scopes. \
        Open to the admin token and to any API key of this tenant, whatever its scopes.",
    params(("tenant" = String, Path, description = "The tenant's name")),
    security(("admin_token" = []), ("tenant_key" = []), ("tenant_key_header" = [])),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 401, description = "`unauthorized`: no credential, or one that is neither the admin token nor any tenant's key", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's key", body = ErrorBody),
        (status = 404, description = "`no_tenant`: no tenant of that name is applied", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn show_tenant(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<axum::Json<TenantView>, Failure> {
    Ok(axum::Json(tenant(&admin, &name).await?))
}

/// `GET /_gojinn/v1/tenants/{tenant}/functions?after=NAME&limit=N` → `{"functions": [...], "next"}`.
#[utoipa::path(
    get,
    path = "/_gojinn/v1/tenants/{tenant}/functions",
    tag = "deployed",
    summary = "List a tenant's applied functions",
    description = "The tenant's functions as applied, ordered by name, a page at a time. \
        Open to the admin token and to any API key of this tenant, whatever its scopes.",
    params(("tenant" = String, Path, description = "The tenant's name"), PageQuery),
    security(("admin_token" = []), ("tenant_key" = []), ("tenant_key_header" = [])),
    responses(
        (status = 200, description = "A page of functions", body = FunctionPage),
        (status = 400, description = "`bad_query`: an unknown parameter, or a limit outside 1 to 1000", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no credential, or one that is neither the admin token nor any tenant's key", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's key", body = ErrorBody),
        (status = 404, description = "`no_tenant`: no tenant of that name is applied", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn list_functions(
    State(admin): State<Arc<Admin>>,
    Path(tenant): Path<String>,
    uri: Uri,
) -> Result<axum::Json<FunctionPage>, Failure> {
    Ok(axum::Json(functions(&admin, &tenant, query(&uri)?).await?))
}

/// `GET /_gojinn/v1/tenants/{tenant}/functions/{function}` → the function.
#[utoipa::path(
    get,
    path = "/_gojinn/v1/tenants/{tenant}/functions/{function}",
    tag = "deployed",
    summary = "Show an applied function",
    description = "The function as applied: revision, hash, commit, status, the revision this node serves, \
        module sha256, limits, routes. Open to the admin token and to any API key of this tenant, whatever its scopes.",
    params(
        ("tenant" = String, Path, description = "The tenant's name"),
        ("function" = String, Path, description = "The function's name"),
    ),
    security(("admin_token" = []), ("tenant_key" = []), ("tenant_key_header" = [])),
    responses(
        (status = 200, description = "The function", body = FunctionView),
        (status = 401, description = "`unauthorized`: no credential, or one that is neither the admin token nor any tenant's key", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's key", body = ErrorBody),
        (status = 404, description = "`no_tenant`: no tenant of that name is applied; `no_function`: the tenant has no function of that name", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn show_function(
    State(admin): State<Arc<Admin>>,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<axum::Json<FunctionView>, Failure> {
    Ok(axum::Json(function(&admin, &tenant, &name).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_names_and_say_where_the_next_starts() {
        let names = || vec!["a", "b", "c", "d"];
        let page = |after, limit| paged(names(), after, limit, |name| name);
        assert_eq!(page(None, 10), (names(), None));
        assert_eq!(page(None, 2), (vec!["a", "b"], Some("b".to_owned())));
        assert_eq!(page(Some("b"), 2), (vec!["c", "d"], None));
        assert_eq!(page(Some("bb"), 1), (vec!["c"], Some("c".to_owned())));
        assert_eq!(page(Some("d"), 5), (vec![], None));
    }

    #[test]
    fn page_queries_take_after_and_limit_only() {
        let parse = |raw: &str| query::<PageQuery>(&format!("/tenants?{raw}").parse().unwrap());
        let given = parse("after=acme&limit=5").unwrap();
        assert_eq!((given.after.as_deref(), given.limit), (Some("acme"), Some(5)));
        for bad in ["status=dead", "limit=x", "limit=-1"] {
            assert!(matches!(parse(bad), Err(ApiError::BadQuery(_))), "{bad}");
        }
    }
}
