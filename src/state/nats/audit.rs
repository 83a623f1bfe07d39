//! The tenant's audit log: one stream (`GOJINN_AUDIT_<T>`, deletes and purges denied) whose
//! sequence numbers are the records' sequence numbers. An append returns only once the stream
//! (and, with replicas, a quorum) has stored the record.

use super::NatsBackend;
use super::scan::Scan;
use crate::spec::Name;
use crate::state::{AuditLog, StateError, names};
use async_trait::async_trait;
use bytes::Bytes;

#[async_trait]
impl AuditLog for NatsBackend {
    async fn append(&self, tenant: &Name, record: Bytes) -> Result<u64, StateError> {
        self.run(tenant, async {
            Ok(self.js.publish(names::audit_subject(tenant), record).await?.await?.sequence)
        })
        .await
    }

    async fn read(&self, tenant: &Name, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StateError> {
        self.run(tenant, async {
            let stream = self.js.get_stream_no_info(names::audit_stream(tenant)).await?;
            let scanned = Scan::from_sequence(names::audit_subject(tenant), from, limit).run(&stream).await?;
            Ok(scanned.into_iter().map(|m| (m.sequence, m.payload)).collect())
        })
        .await
    }
}
