//! The embedded backend's redb tables and the key range of a tenant in each.
//!
//! Every table holding tenant data is keyed by a tuple whose first element is the tenant's name.
//! redb compares tuples element by element, so a caller's key, however crafted (`../b/x`,
//! `other-tenant/x`), only ever orders within its own tenant: isolation never depends on escaping
//! or string concatenation. The reconciler's control tables hold platform data, not a tenant's,
//! and are keyed by record key, sha256 or lease name alone.

use crate::state::StateError;
use redb::{TableDefinition, Value, WriteTransaction};

/// Tenant name → its settings (JSON of `tenants::TenantSettings`).
pub(super) const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// (tenant, key) → value.
pub(super) const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
/// Tenant → bytes its KV entries hold (key + value), kept by every write for the quota.
pub(super) const KV_USAGE: TableDefinition<&str, u64> = TableDefinition::new("kv_usage");
/// Tenant → keys it holds in `KV`, kept by every write for the key quota. Absent for a tenant
/// whose keys were written before the count existed: counted once on its next write.
pub(super) const KV_KEYS: TableDefinition<&str, u64> = TableDefinition::new("kv_keys");
/// (tenant, key) → (owner, expiry in Unix ms).
pub(super) const LOCKS: TableDefinition<(&str, &str), (&str, u64)> = TableDefinition::new("locks");
/// (tenant, job id) → JSON of `queue::StoredJob`.
pub(super) const JOBS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("jobs");
/// (tenant, job id) → the job's payload, until it succeeds.
pub(super) const JOB_PAYLOADS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("job_payloads");
/// (tenant, order) → job id: the tenant's jobs in the order they were enqueued.
pub(super) const JOB_ORDER: TableDefinition<(&str, u64), &str> = TableDefinition::new("job_order");
/// (tenant, function, visible at in Unix ms, job id): jobs waiting to be delivered or leased.
pub(super) const JOB_QUEUE: TableDefinition<(&str, &str, u64, &str), ()> = TableDefinition::new("job_queue");
/// (tenant, job id) → when it died, in Unix ms: the dead-letter queue.
pub(super) const DEAD_LETTERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("dead_letters");
/// (tenant, sequence from 1) → audit record: where data dirs from before the chain logs (see
/// `audit`) hold them, until the first open of each tenant's log moves them there.
pub(super) const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");

/// Control record key → value: the reconciler's applied records, shared by every tenant (see
/// `control`), so not keyed by tenant and untouched by tenant removal.
pub(super) const CONTROL_RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("control_records");
/// sha256 (lowercase hex) → module bytes.
pub(super) const MODULE_BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("module_blobs");
/// Lease name → (holder, expiry in Unix ms).
pub(super) const LEASES: TableDefinition<&str, (&str, u64)> = TableDefinition::new("leases");

/// Creates every table, so read transactions can open them before anything was written.
pub(super) fn create_all(txn: &WriteTransaction) -> Result<(), StateError> {
    txn.open_table(TENANTS)?;
    txn.open_table(KV)?;
    txn.open_table(KV_USAGE)?;
    txn.open_table(KV_KEYS)?;
    txn.open_table(LOCKS)?;
    txn.open_table(JOBS)?;
    txn.open_table(JOB_PAYLOADS)?;
    txn.open_table(JOB_ORDER)?;
    txn.open_table(JOB_QUEUE)?;
    txn.open_table(DEAD_LETTERS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(CONTROL_RECORDS)?;
    txn.open_table(MODULE_BLOBS)?;
    txn.open_table(LEASES)?;
    Ok(())
}

/// The smallest string that sorts after `s` and after every string starting with `s` followed by
/// nothing: `s` + NUL. Names and keys never hold NUL, so `(s, ..)..(after(s), ..)` is exactly `s`'s
/// rows, and never those of a longer name such as `s-b`.
pub(super) fn after(s: &str) -> String {
    format!("{s}\0")
}

/// Deletes every row of `tenant` in every table; returns whether the tenant was registered.
pub(super) fn remove_tenant_rows(txn: &WriteTransaction, tenant: &str) -> Result<bool, StateError> {
    let end = after(tenant);
    let end = end.as_str();
    clear_pairs(txn, KV, tenant, end)?;
    clear_pairs(txn, LOCKS, tenant, end)?;
    clear_pairs(txn, JOBS, tenant, end)?;
    clear_pairs(txn, JOB_PAYLOADS, tenant, end)?;
    clear_pairs(txn, DEAD_LETTERS, tenant, end)?;
    clear_sequence(txn, JOB_ORDER, tenant)?;
    clear_sequence(txn, AUDIT, tenant)?;
    txn.open_table(JOB_QUEUE)?.retain_in((tenant, "", 0, "")..(end, "", 0, ""), |_, _| false)?;
    txn.open_table(KV_USAGE)?.remove(tenant)?;
    txn.open_table(KV_KEYS)?.remove(tenant)?;
    Ok(txn.open_table(TENANTS)?.remove(tenant)?.is_some())
}

/// Deletes `tenant`'s rows in `AUDIT`.
pub(super) fn remove_audit_rows(txn: &WriteTransaction, tenant: &str) -> Result<(), StateError> {
    clear_sequence(txn, AUDIT, tenant)
}

fn clear_pairs<V: Value + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<(&'static str, &'static str), V>,
    tenant: &str,
    end: &str,
) -> Result<(), StateError> {
    Ok(txn.open_table(table)?.retain_in((tenant, "")..(end, ""), |_, _| false)?)
}

fn clear_sequence<V: Value + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<(&'static str, u64), V>,
    tenant: &str,
) -> Result<(), StateError> {
    Ok(txn.open_table(table)?.retain_in((tenant, 0)..=(tenant, u64::MAX), |_, _| false)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

    #[test]
    fn removing_a_tenant_spares_tenants_whose_names_extend_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        create_all(&txn).unwrap();
        for tenant in ["t", "t-b", "s"] {
            txn.open_table(TENANTS).unwrap().insert(tenant, b"{}".as_slice()).unwrap();
            txn.open_table(KV).unwrap().insert((tenant, "k"), b"v".as_slice()).unwrap();
            txn.open_table(AUDIT).unwrap().insert((tenant, 1), b"r".as_slice()).unwrap();
            txn.open_table(JOB_QUEUE).unwrap().insert((tenant, "f", 5, "id"), ()).unwrap();
        }
        assert!(remove_tenant_rows(&txn, "t").unwrap());
        assert!(!remove_tenant_rows(&txn, "t").unwrap(), "a second removal finds nothing");
        txn.commit().unwrap();

        let read = db.begin_read().unwrap();
        assert_eq!(read.open_table(TENANTS).unwrap().len().unwrap(), 2);
        let kv = read.open_table(KV).unwrap();
        let left: Vec<String> =
            kv.iter().unwrap().map(|e| e.unwrap().0.value().0.to_owned()).collect::<Vec<_>>();
        assert_eq!(left, ["s", "t-b"]);
        assert_eq!(read.open_table(AUDIT).unwrap().len().unwrap(), 2);
        assert_eq!(read.open_table(JOB_QUEUE).unwrap().len().unwrap(), 2);
    }
}
