//! The tenant's audit log: one stream (`GOJINN_AUDIT_<T>`, deletes and purges denied) whose
//! sequence numbers are the records' sequence numbers. An append returns only once the stream
//! (and, with replicas, a quorum) has stored the record.
//!
//! Each record is published with its SHA-256 as `Nats-Msg-Id`, so the stream drops a repeat of
//! it within its duplicate window (a retry after a lost acknowledgement) and answers with the
//! first one's sequence.

use super::NatsBackend;
use super::scan::Scan;
use crate::spec::Name;
use crate::state::{AuditLog, StateError, names};
use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

#[async_trait]
impl AuditLog for NatsBackend {
    async fn append(&self, tenant: &Name, record: Bytes) -> Result<u64, StateError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id(&record).as_str());
        self.run(tenant, async {
            let ack =
                self.js.publish_with_headers(names::audit_subject(tenant), headers, record).await?.await?;
            if ack.duplicate {
                tracing::debug!(%tenant, sequence = ack.sequence, "an audit record appended again was dropped");
            }
            Ok(ack.sequence)
        })
        .await
    }

    async fn read(&self, tenant: &Name, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StateError> {
        self.run_unbounded(tenant, async {
            let stream = self.js.get_stream_no_info(names::audit_stream(tenant)).await?;
            let scanned = Scan::from_sequence(names::audit_subject(tenant), from, limit).run(&stream).await?;
            Ok(scanned.into_iter().map(|m| (m.sequence, m.payload)).collect())
        })
        .await
    }
}

/// The `Nats-Msg-Id` of an audit record: its SHA-256, hex. Two records are never equal unless
/// one repeats the other (every receipt has its own id, every checkpoint its own head).
fn message_id(record: &[u8]) -> String {
    hex::encode(Sha256::digest(record))
}
