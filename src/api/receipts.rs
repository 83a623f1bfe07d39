//! Receipts in the admin API, behind the same token: one receipt by id, a tenant's receipts of a
//! time range, and a tenant's audit log as stored (receipts and checkpoints, byte for byte), which
//! `gojinn audit verify --url` reads. Receipts are sent as stored, byte for byte, never encoded
//! again: their signature covers those bytes, so a client can check each one alone. Each reads
//! the tenant's log from its start (see [`crate::audit::log`]).

use super::openapi::strict;
use super::{Admin, ApiError, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, bounded, query};
use crate::audit::log::{self, AuditPage, Range, StoredReceipt, StoredRecord};
use crate::failure::{ErrorBody, Failure};
use crate::spec::Name;
use axum::extract::{Path, State};
use axum::http::Uri;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Records of the audit log one request returns when the query does not say.
const DEFAULT_RECORDS: u64 = 1000;
/// The most records of the audit log one request returns.
pub const MAX_RECORDS: u64 = 10_000;

/// The receipt routes, to be put behind the admin token.
pub(super) fn routes() -> OpenApiRouter<Arc<Admin>> {
    OpenApiRouter::new()
        .routes(strict(routes!(show)))
        .routes(strict(routes!(list)))
        .routes(strict(routes!(records)))
}

/// `GET /_gojinn/v1/receipts/{id}` → the receipt, as stored.
#[utoipa::path(
    get,
    path = "/_gojinn/v1/receipts/{id}",
    operation_id = "show_receipt",
    tag = "receipts",
    summary = "Show a receipt",
    description = "The signed receipt of one execution, byte for byte as stored. Open to the admin token and to \
        the keys of the receipt's tenant (the id's `{tenant}.` prefix) with the `receipts` scope.",
    params(("id" = String, Path, description = "The receipt's id, as the `Gojinn-Receipt` header names it")),
    security(("admin_token" = []), ("tenant_key" = []), ("tenant_key_header" = [])),
    responses(
        (status = 200, description = "The receipt, as stored", body = inline(serde_json::Value)),
        (status = 401, description = "`unauthorized`: no credential, or one that is neither the admin token nor any tenant's key", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's key, or a key without the `receipts` scope", body = ErrorBody),
        (status = 404, description = "`no_receipt`: no receipt of that id", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn show(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<axum::Json<StoredReceipt>, Failure> {
    Ok(axum::Json(receipt(&admin.state, &id).await?))
}

/// The receipt `id` as stored (REST `GET /_gojinn/v1/receipts/{id}`, MCP `gojinn.receipt`).
pub(crate) async fn receipt(state: &crate::state::State, id: &str) -> Result<StoredReceipt, Failure> {
    let found = log::find(&*state.audit, id).await.map_err(ApiError::State)?;
    Ok(found.ok_or_else(|| ApiError::NoReceipt(id.to_owned()))?)
}

/// A page of receipts, each as stored.
#[derive(serde::Serialize)]
struct Receipts {
    receipts: Vec<StoredReceipt>,
}

/// `GET /_gojinn/v1/tenants/{tenant}/receipts?from=MS&to=MS&limit=N` → `{"receipts": [...]}`:
/// those of executions started in `[from, to)`, in log order, as stored.
#[utoipa::path(
    get,
    path = "/_gojinn/v1/tenants/{tenant}/receipts",
    operation_id = "list_receipts",
    tag = "receipts",
    summary = "List a tenant's receipts",
    description = "The receipts of executions started in [from, to), in log order, as stored. Open to the admin \
        token and to the tenant's keys with the `receipts` scope.",
    params(("tenant" = String, Path, description = "The tenant's name"), ReceiptsQuery),
    security(("admin_token" = []), ("tenant_key" = []), ("tenant_key_header" = [])),
    responses(
        (status = 200, description = "`{receipts: [...]}`, each as stored", body = inline(serde_json::Value)),
        (status = 400, description = "`bad_query`: an unknown parameter, a number that is not one, or a limit outside 1 to 1000", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no credential, or one that is neither the admin token nor any tenant's key", body = ErrorBody),
        (status = 403, description = "`forbidden`: another tenant's key, or a key without the `receipts` scope", body = ErrorBody),
        (status = 404, description = "`no_tenant`: the name is not a tenant's", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn list(
    State(admin): State<Arc<Admin>>,
    Path(tenant): Path<String>,
    uri: Uri,
) -> Result<axum::Json<Receipts>, Failure> {
    let tenant = Name::new(&tenant).map_err(|_| ApiError::NoTenant(tenant.clone()))?;
    let ReceiptsQuery { from, to, limit } = query(&uri)?;
    let limit = bounded("limit", limit, DEFAULT_LIST_LIMIT as u64, MAX_LIST_LIMIT as u64)?;
    let range = Range { from_ms: from.unwrap_or(0), to_ms: to.unwrap_or(u64::MAX), limit };
    let receipts = log::list(&*admin.state.audit, &tenant, range).await.map_err(ApiError::State)?;
    Ok(axum::Json(Receipts { receipts }))
}

/// `GET /_gojinn/v1/tenants/{tenant}/audit?after=SEQ&limit=N` → `{"records": [{"sequence": ..,
/// "record": ..}]}`: the records after sequence `after`, as stored.
#[utoipa::path(
    get,
    path = "/_gojinn/v1/tenants/{tenant}/audit",
    operation_id = "read_audit_log",
    tag = "receipts",
    summary = "Read a tenant's audit log",
    description = "The records (receipts and checkpoints) after sequence `after`, byte for byte as stored, which \
        `gojinn audit verify --url` reads. The admin token only.",
    params(("tenant" = String, Path, description = "The tenant's name"), AuditQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "`{records: [{sequence, record}]}`", body = inline(serde_json::Value)),
        (status = 400, description = "`bad_query`: an unknown parameter, a number that is not one, or a limit outside 1 to 10000", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorBody),
        (status = 403, description = "`forbidden`: a tenant's API key, which this route does not take", body = ErrorBody),
        (status = 404, description = "`no_tenant`: the name is not a tenant's", body = ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = ErrorBody),
    ),
)]
async fn records(
    State(admin): State<Arc<Admin>>,
    Path(tenant): Path<String>,
    uri: Uri,
) -> Result<axum::Json<AuditPage>, Failure> {
    let tenant = Name::new(&tenant).map_err(|_| ApiError::NoTenant(tenant.clone()))?;
    let AuditQuery { after, limit } = query(&uri)?;
    let limit = bounded("limit", limit, DEFAULT_RECORDS, MAX_RECORDS)?;
    let from = after.unwrap_or(0).saturating_add(1);
    let stored = admin.state.audit.read(&tenant, from, limit).await.map_err(ApiError::State)?;
    Ok(axum::Json(AuditPage { records: stored.into_iter().map(StoredRecord::new).collect() }))
}

/// A receipt list's query: execution start times in milliseconds since the epoch, `[from, to)`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReceiptsQuery {
    /// Executions started at or after this time (Unix milliseconds); 0 when not given.
    from: Option<u64>,
    /// Executions started before this time (Unix milliseconds); no bound when not given.
    to: Option<u64>,
    /// How many at most: 1 to 1000, 100 when not given.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// An audit log page's query: the records after sequence `after`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only records after this sequence number; from the first when not given.
    after: Option<u64>,
    /// How many at most: 1 to 10000, 1000 when not given.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_take_known_numbers_only() {
        let parse = |raw: &str| query::<ReceiptsQuery>(&format!("/receipts?{raw}").parse().unwrap());
        let empty = parse("").unwrap();
        assert_eq!((empty.from, empty.to, empty.limit), (None, None, None));
        let given = parse("to=5&from=2").unwrap();
        assert_eq!((given.from, given.to, given.limit), (Some(2), Some(5), None));
        for bad in ["from=x", "from=-1", "since=3", "to"] {
            assert!(matches!(parse(bad), Err(ApiError::BadQuery(_))), "{bad}");
        }
        assert_eq!(bounded("limit", None, 100, 1000).unwrap(), 100);
        assert!(bounded("limit", Some(0), 100, 1000).is_err());
        assert!(bounded("limit", Some(1001), 100, 1000).is_err());
    }
}
