//! The per-tenant append-only audit log (`AuditLog`): (tenant, sequence) → record, the sequence
//! counting from 1. Records are never rewritten; only removing the tenant deletes them.
//!
//! An append is idempotent for a retry: a record equal to the log's last one is not stored
//! again. The store has one writer (the node's appender), which retries a failed append before
//! it appends anything else to that tenant, so a record whose commit result was lost is always
//! the last one when its retry comes; and two equal records in a row never occur otherwise
//! (every receipt has its own id, every checkpoint a head the previous one did not).

use super::EmbeddedBackend;
use super::tables::AUDIT;
use super::tenants::RequireTenant;
use crate::spec::Name;
use crate::state::{AuditLog, StateError};
use async_trait::async_trait;
use bytes::Bytes;
use redb::ReadableTable;

#[async_trait]
impl AuditLog for EmbeddedBackend {
    async fn append(&self, tenant: &Name, record: Bytes) -> Result<u64, StateError> {
        let tenant = tenant.clone();
        self.write_if_changed(move |txn| {
            txn.require_tenant(&tenant)?;
            let mut log = txn.open_table(AUDIT)?;
            let last =
                log.range((tenant.as_str(), 0)..=(tenant.as_str(), u64::MAX))?.next_back().transpose()?;
            let last = last.map(|(key, stored)| (key.value().1, stored.value() == record.as_ref()));
            if let Some((sequence, true)) = last {
                return Ok((sequence, false));
            }
            let sequence = last.map_or(0, |(sequence, _)| sequence) + 1;
            log.insert((tenant.as_str(), sequence), record.as_ref())?;
            Ok((sequence, true))
        })
        .await
    }

    async fn read(&self, tenant: &Name, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StateError> {
        let tenant = tenant.clone();
        self.read(move |txn| {
            txn.require_tenant(&tenant)?;
            let log = txn.open_table(AUDIT)?;
            log.range((tenant.as_str(), from)..=(tenant.as_str(), u64::MAX))?
                .take(limit)
                .map(|entry| {
                    let (key, record) = entry?;
                    Ok((key.value().1, Bytes::copy_from_slice(record.value())))
                })
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backend, provision};
    use crate::state::AuditLog;
    use bytes::Bytes;

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
}
