//! The per-tenant append-only audit log (`AuditLog`): (tenant, sequence) → record, the sequence
//! counting from 1. Records are never rewritten; only removing the tenant deletes them.

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
        self.write(move |txn| {
            txn.require_tenant(&tenant)?;
            let mut log = txn.open_table(AUDIT)?;
            let last =
                log.range((tenant.as_str(), 0)..=(tenant.as_str(), u64::MAX))?.next_back().transpose()?;
            let sequence = last.map_or(0, |(key, _)| key.value().1) + 1;
            log.insert((tenant.as_str(), sequence), record.as_ref())?;
            Ok(sequence)
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
