//! The per-tenant append-only audit log (`AuditLog`): each tenant's records in its own chain log,
//! `audit/<tenant>.log` beside `state.redb` (see `audit_file`), the sequence counting from 1.
//! Records are never rewritten; only removing the tenant deletes them. An append is one write and
//! one fdatasync of that file: the recorder's appender appends a batch of receipts as one record,
//! so a batch costs one of each, not a B-tree commit.
//!
//! An append is idempotent for a retry: a record equal to the log's last one is not stored
//! again. The store has one writer (the node's appender), which retries a failed append before
//! it appends anything else to that tenant, so a record whose write result was lost is always
//! the last one when its retry comes; and two equal records in a row never occur otherwise
//! (every receipt has its own id, every checkpoint a head the previous one did not).
//!
//! Data dirs from before the chain logs hold the records in `state.redb`'s `AUDIT` table. The
//! first open of a tenant's log moves them into its file: the file is written and synced in full
//! before the rows are deleted, so a crash in between leaves both, and the next open, finding the
//! same records in the file, only deletes the rows.

use super::audit_file::{self, Access, ChainLog};
use super::tables::{self, AUDIT};
use super::tenants::RequireTenant;
use super::{EmbeddedBackend, Handle, blocking};
use crate::spec::Name;
use crate::state::{AuditLog, StateError};
use async_trait::async_trait;
use bytes::Bytes;
use redb::ReadTransaction;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

/// The directory of the chain logs, under the embedded store's directory.
pub const DIR_NAME: &str = "audit";

/// The tenants' chain logs, each opened on first use.
pub(super) struct ChainLogs {
    dir: PathBuf,
    access: Access,
    /// Open logs by tenant. Held while one is opened or removed, so that a tenant's log is
    /// never opened twice nor reopened while its tenant is being removed.
    open: Mutex<HashMap<Name, Arc<ChainLog>>>,
}

impl ChainLogs {
    /// The chain logs under `store_dir`, writable or not.
    pub fn new(store_dir: &Path, access: Access) -> Self {
        Self { dir: store_dir.join(DIR_NAME), access, open: Mutex::new(HashMap::new()) }
    }

    fn path(&self, tenant: &Name) -> PathBuf {
        self.dir.join(format!("{tenant}.log"))
    }

    /// `tenant`'s log, opened (its records in `state.redb` moved into it) on first use.
    async fn writable(&self, db: &Arc<Handle>, tenant: &Name) -> Result<Arc<ChainLog>, StateError> {
        let mut open = self.open.lock().await;
        if let Some(log) = open.get(tenant) {
            return Ok(Arc::clone(log));
        }
        let (db, dir, path, name) = (Arc::clone(db), self.dir.clone(), self.path(tenant), tenant.clone());
        let log = Arc::new(blocking(move || open_moving_rows(&db, &dir, &path, name)).await?);
        open.insert(tenant.clone(), Arc::clone(&log));
        Ok(log)
    }

    /// Deletes `tenant`'s log; returns the open logs, held until the caller has removed the
    /// tenant's rows, so that its log is not opened again meanwhile.
    pub async fn remove(
        &self,
        tenant: &Name,
    ) -> Result<MutexGuard<'_, HashMap<Name, Arc<ChainLog>>>, StateError> {
        if self.access == Access::Read {
            return Err(StateError::Unavailable("the embedded store is open read-only".into()));
        }
        let mut open = self.open.lock().await;
        let log = open.remove(tenant);
        let path = self.path(tenant);
        blocking(move || Ok(log.map_or_else(|| audit_file::remove_file(&path), |log| log.remove())?)).await?;
        Ok(open)
    }
}

#[async_trait]
impl AuditLog for EmbeddedBackend {
    async fn append(&self, tenant: &Name, record: Bytes) -> Result<u64, StateError> {
        if self.chain_logs.access == Access::Read {
            return Err(StateError::Unavailable("the embedded store is open read-only".into()));
        }
        let log = self.chain_logs.writable(&self.db, tenant).await?;
        blocking(move || Ok(log.append(&record)?)).await
    }

    async fn read(&self, tenant: &Name, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StateError> {
        if self.chain_logs.access == Access::Write {
            let log = self.chain_logs.writable(&self.db, tenant).await?;
            return blocking(move || Ok(log.read(from, limit)?)).await;
        }
        let path = self.chain_logs.path(tenant);
        let tenant = tenant.clone();
        self.read(move |txn| {
            txn.require_tenant(&tenant)?;
            match ChainLog::open(tenant.clone(), path, Access::Read)? {
                Some(log) => Ok(log.read(from, limit)?),
                // Not moved out of `state.redb` yet: only a writer does.
                None => rows(txn, &tenant, from, limit),
            }
        })
        .await
    }
}

/// Opens `tenant`'s chain log for writing, first moving its records out of `state.redb` if it
/// still has some there.
fn open_moving_rows(db: &Handle, dir: &Path, path: &Path, tenant: Name) -> Result<ChainLog, StateError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        StateError::Unavailable(format!("cannot create the audit log directory {}: {e}", dir.display()))
    })?;
    let txn = db.begin_read()?;
    txn.require_tenant(&tenant)?;
    let table = txn.open_table(AUDIT)?;
    let tenant_rows = (tenant.as_str(), 1)..=(tenant.as_str(), u64::MAX);
    let stored = table.range(tenant_rows.clone())?.count();
    if stored == 0 {
        return Ok(opened(ChainLog::open(tenant, path.to_path_buf(), Access::Write)?));
    }
    if !path.exists() {
        let records = table
            .range(tenant_rows)?
            .map(|entry| entry.map(|(_, record)| Bytes::copy_from_slice(record.value())));
        audit_file::create_with(path, records)?.map_err(StateError::from)?;
    }
    let log = opened(ChainLog::open(tenant.clone(), path.to_path_buf(), Access::Write)?);
    if !same_records(&txn, &tenant, &log)? {
        return Err(StateError::Internal(format!(
            "tenant {tenant} has {stored} audit records in state.redb and others in {}: remove the \
             one that is not the tenant's log",
            path.display()
        )));
    }
    drop((table, txn));
    let txn = db.begin_write()?;
    tables::remove_audit_rows(&txn, tenant.as_str())?;
    txn.commit()?;
    tracing::info!(%tenant, records = stored, path = %path.display(), "moved the audit log out of state.redb");
    Ok(log)
}

/// Whether `log` holds exactly `tenant`'s records in `state.redb`, compared a page at a time.
fn same_records(txn: &ReadTransaction, tenant: &Name, log: &ChainLog) -> Result<bool, StateError> {
    const PAGE: usize = 10_000;
    let mut next = 1;
    loop {
        let stored = rows(txn, tenant, next, PAGE)?;
        if stored != log.read(next, PAGE)? {
            return Ok(false);
        }
        if stored.len() < PAGE {
            return Ok(true);
        }
        next += PAGE as u64;
    }
}

/// A log opened for writing, which always exists.
fn opened(log: Option<ChainLog>) -> ChainLog {
    log.expect("a log opened for writing is created")
}

/// `tenant`'s records still in `state.redb`: sequence `>= from`, at most `limit`.
fn rows(
    txn: &ReadTransaction,
    tenant: &Name,
    from: u64,
    limit: usize,
) -> Result<Vec<(u64, Bytes)>, StateError> {
    let log = txn.open_table(AUDIT)?;
    log.range((tenant.as_str(), from)..=(tenant.as_str(), u64::MAX))?
        .take(limit)
        .map(|entry| {
            let (key, record) = entry?;
            Ok((key.value().1, Bytes::copy_from_slice(record.value())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backend, name, provision};
    use super::super::{EmbeddedBackend, FILE_NAME};
    use super::*;
    use crate::state::Provisioner;
    use redb::{Database, ReadableDatabase, ReadableTableMetadata};

    #[tokio::test]
    async fn a_record_appended_again_right_after_itself_is_stored_once() {
        let (_dir, backend) = backend();
        let tenant = provision(&backend, "acme", None).await;
        let (first, second) = (Bytes::from_static(b"first"), Bytes::from_static(b"second"));
        assert_eq!(backend.append(&tenant, first.clone()).await.unwrap(), 1);
        assert_eq!(backend.append(&tenant, first.clone()).await.unwrap(), 1, "the retry finds it");
        assert_eq!(backend.append(&tenant, second.clone()).await.unwrap(), 2);
        let log = AuditLog::read(&backend, &tenant, 1, 10).await.unwrap();
        assert_eq!(log, [(1, first), (2, second)]);
    }

    #[tokio::test]
    async fn records_outlive_the_backend_and_the_log_goes_on_after_them() {
        let (dir, backend) = backend();
        let tenant = provision(&backend, "acme", None).await;
        backend.append(&tenant, Bytes::from_static(b"one")).await.unwrap();
        backend.append(&tenant, Bytes::from_static(b"two")).await.unwrap();
        drop(backend);

        let backend = EmbeddedBackend::open(dir.path()).unwrap();
        assert_eq!(backend.append(&tenant, Bytes::from_static(b"two")).await.unwrap(), 2, "still the last");
        assert_eq!(backend.append(&tenant, Bytes::from_static(b"three")).await.unwrap(), 3);
        let log = AuditLog::read(&backend, &tenant, 2, 10).await.unwrap();
        assert_eq!(log, [(2, Bytes::from_static(b"two")), (3, Bytes::from_static(b"three"))]);
        assert!(dir.path().join(DIR_NAME).join("acme.log").is_file());
    }

    #[tokio::test]
    async fn an_unprovisioned_tenant_has_no_log() {
        let (_dir, backend) = backend();
        let err = backend.append(&name("ghost"), Bytes::from_static(b"r")).await.unwrap_err();
        assert!(matches!(err, StateError::NoTenant(_)), "{err:?}");
        let err = AuditLog::read(&backend, &name("ghost"), 1, 10).await.unwrap_err();
        assert!(matches!(err, StateError::NoTenant(_)), "{err:?}");
    }

    #[tokio::test]
    async fn removing_a_tenant_deletes_its_log() {
        let (dir, backend) = backend();
        let tenant = provision(&backend, "acme", None).await;
        backend.append(&tenant, Bytes::from_static(b"old")).await.unwrap();
        let file = dir.path().join(DIR_NAME).join("acme.log");
        assert!(file.is_file());
        assert!(backend.remove_tenant(&tenant).await.unwrap());
        assert!(!file.exists());
        let err = backend.append(&tenant, Bytes::from_static(b"late")).await.unwrap_err();
        assert!(matches!(err, StateError::NoTenant(_)), "{err:?}");

        let tenant = provision(&backend, "acme", None).await;
        assert!(
            AuditLog::read(&backend, &tenant, 1, 10).await.unwrap().is_empty(),
            "a new tenant starts afresh"
        );
        assert_eq!(backend.append(&tenant, Bytes::from_static(b"new")).await.unwrap(), 1);
    }

    /// Writes `records` into the `AUDIT` table of the store under `dir` as the backend did before
    /// the chain logs.
    fn store_rows(dir: &Path, tenant: &str, records: &[&'static [u8]]) {
        let db = Database::create(dir.join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        for (position, record) in records.iter().enumerate() {
            txn.open_table(AUDIT).unwrap().insert((tenant, position as u64 + 1), *record).unwrap();
        }
        txn.commit().unwrap();
    }

    fn rows_left(dir: &Path) -> u64 {
        let db = Database::create(dir.join(FILE_NAME)).unwrap();
        db.begin_read().unwrap().open_table(AUDIT).unwrap().len().unwrap()
    }

    #[tokio::test]
    async fn records_of_an_older_store_move_into_the_log_once() {
        let (dir, backend) = backend();
        let tenant = provision(&backend, "acme", None).await;
        drop(backend);
        store_rows(dir.path(), "acme", &[b"one", b"two"]);

        let reader = EmbeddedBackend::open_read_only(dir.path()).unwrap();
        let expected = vec![(1, Bytes::from_static(b"one")), (2, Bytes::from_static(b"two"))];
        assert_eq!(AuditLog::read(&reader, &tenant, 1, 10).await.unwrap(), expected, "read where they are");
        drop(reader);

        let backend = EmbeddedBackend::open(dir.path()).unwrap();
        assert_eq!(AuditLog::read(&backend, &tenant, 1, 10).await.unwrap(), expected);
        assert_eq!(backend.append(&tenant, Bytes::from_static(b"three")).await.unwrap(), 3);
        drop(backend);
        assert_eq!(rows_left(dir.path()), 0, "the rows are gone once in the file");

        // A crash after the file was written, before the rows were deleted: both hold them.
        store_rows(dir.path(), "acme", &[b"one", b"two", b"three"]);
        let backend = EmbeddedBackend::open(dir.path()).unwrap();
        let log = AuditLog::read(&backend, &tenant, 1, 10).await.unwrap();
        assert_eq!(log.len(), 3, "stored once: {log:?}");
        drop(backend);
        assert_eq!(rows_left(dir.path()), 0);

        // Rows that are not what the file holds are never deleted.
        store_rows(dir.path(), "acme", &[b"other"]);
        let backend = EmbeddedBackend::open(dir.path()).unwrap();
        let err = AuditLog::read(&backend, &tenant, 1, 10).await.unwrap_err();
        assert!(
            matches!(&err, StateError::Internal(m) if m.contains("1 audit records in state.redb")),
            "{err:?}"
        );
        drop(backend);
        assert_eq!(rows_left(dir.path()), 1);
    }

    #[tokio::test]
    async fn a_reader_reads_the_log_and_writes_nothing() {
        let (dir, writer) = backend();
        let tenant = provision(&writer, "acme", None).await;
        writer.append(&tenant, Bytes::from_static(b"one")).await.unwrap();
        let reader = EmbeddedBackend::open_read_only(dir.path()).unwrap();
        assert_eq!(AuditLog::read(&reader, &tenant, 1, 10).await.unwrap(), [(1, Bytes::from_static(b"one"))]);
        let err = reader.append(&tenant, Bytes::from_static(b"two")).await.unwrap_err();
        assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
    }
}
