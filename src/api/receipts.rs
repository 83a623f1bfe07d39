//! Receipts in the admin API, behind the same token: one receipt by id, a tenant's receipts of a
//! time range, and a tenant's audit log as stored (receipts and checkpoints, byte for byte), which
//! `gojinn audit verify --url` reads. Receipts are sent as stored, byte for byte, never encoded
//! again: their signature covers those bytes, so a client can check each one alone. Each reads
//! the tenant's log from its start (see [`crate::audit::log`]).

use super::{Admin, ApiError, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, bounded, query};
use crate::audit::log::{self, AuditPage, Range, StoredReceipt, StoredRecord};
use crate::failure::{Failure, allow_methods};
use crate::spec::Name;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::routing::get;
use std::sync::Arc;

/// Records of the audit log one request returns when the query does not say.
const DEFAULT_RECORDS: u64 = 1000;
/// The most records of the audit log one request returns.
pub const MAX_RECORDS: u64 = 10_000;

/// The receipt routes, to be put behind the admin token.
pub(super) fn routes() -> Router<Arc<Admin>> {
    Router::new()
        .route("/_gojinn/v1/receipts/{id}", allow_methods(get(show), "GET"))
        .route("/_gojinn/v1/tenants/{tenant}/receipts", allow_methods(get(list), "GET"))
        .route("/_gojinn/v1/tenants/{tenant}/audit", allow_methods(get(records), "GET"))
}

/// `GET /_gojinn/v1/receipts/{id}` → the receipt, as stored.
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
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptsQuery {
    from: Option<u64>,
    to: Option<u64>,
    limit: Option<u64>,
}

/// An audit log page's query: the records after sequence `after`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<u64>,
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
