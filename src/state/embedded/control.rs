//! The reconciler's control records, module blobs and leases (`crate::state::Control`), in three
//! tables of their own. They belong to the platform, not to a tenant, so they are keyed by record
//! key, sha256 and lease name, and removing a tenant leaves them alone.
//!
//! Its argument checks are in `crate::state::validate`, shared with the NATS backend.

use super::tables::{CONTROL_RECORDS, LEASES, MODULE_BLOBS};
use super::{EmbeddedBackend, deadline_ms};
use crate::state::validate::{
    check_new_blob, check_stored_blob, validate_lease, validate_record_key, validate_record_prefix,
    validate_record_value, validate_sha256,
};
use crate::state::{Control, RecordChanges, StateError};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redb::ReadableTable;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Leases: the holder until its expiry in Unix ms, by the backend's [`Clock`](super::Clock). A
/// single process owns the database, so every expiry is read against the one clock that wrote
/// it; that clock never steps back within the process.
///
/// Writes counted: a taken or renewed lease (a write), a released lease (a delete). A refused
/// acquire, or a release by someone else, counts nothing.
#[async_trait]
impl Control for EmbeddedBackend {
    async fn records(&self, prefix: &str) -> Result<BTreeMap<String, Bytes>, StateError> {
        validate_record_prefix(prefix)?;
        let prefix = prefix.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(CONTROL_RECORDS)?;
            let mut found = BTreeMap::new();
            for entry in table.range::<&str>(prefix.as_str()..)? {
                let (key, value) = entry?;
                if !key.value().starts_with(prefix.as_str()) {
                    break;
                }
                found.insert(key.value().to_owned(), Bytes::copy_from_slice(value.value()));
            }
            Ok(found)
        })
        .await
    }

    async fn put_record(&self, key: &str, value: Bytes) -> Result<bool, StateError> {
        validate_record_key("record key", key)?;
        validate_record_value(key, &value)?;
        let key = key.to_owned();
        let changed = self
            .write_if_changed(move |txn| {
                let mut table = txn.open_table(CONTROL_RECORDS)?;
                if table.get(key.as_str())?.is_some_and(|current| current.value() == value.as_ref()) {
                    return Ok((false, false));
                }
                table.insert(key.as_str(), value.as_ref())?;
                Ok((true, true))
            })
            .await?;
        Ok(self.record_changed(self.count(changed)))
    }

    async fn delete_record(&self, key: &str) -> Result<bool, StateError> {
        validate_record_key("record key", key)?;
        let key = key.to_owned();
        let existed = self
            .write_if_changed(move |txn| {
                let existed = txn.open_table(CONTROL_RECORDS)?.remove(key.as_str())?.is_some();
                Ok((existed, existed))
            })
            .await?;
        Ok(self.record_changed(self.count(existed)))
    }

    /// Yields after every changed record, not only `key`'s (the contract allows it): one
    /// counter serves every watcher.
    async fn record_changes(&self, key: &str) -> Result<RecordChanges, StateError> {
        validate_record_key("record key", key)?;
        let changes = self.records_changed.subscribe();
        Ok(futures::stream::unfold(changes, |mut changes| async move {
            changes.changed().await.ok().map(|()| ((), changes))
        })
        .boxed())
    }

    async fn blobs(&self) -> Result<BTreeSet<String>, StateError> {
        self.read(|txn| {
            let table = txn.open_table(MODULE_BLOBS)?;
            let mut found = BTreeSet::new();
            for entry in table.iter()? {
                found.insert(entry?.0.value().to_owned());
            }
            Ok(found)
        })
        .await
    }

    async fn put_blob(&self, sha256: &str, bytes: Bytes) -> Result<bool, StateError> {
        check_new_blob(sha256, &bytes).await?;
        let sha256 = sha256.to_owned();
        let wrote = self
            .write_if_changed(move |txn| {
                let mut table = txn.open_table(MODULE_BLOBS)?;
                if table.get(sha256.as_str())?.is_some() {
                    return Ok((false, false));
                }
                table.insert(sha256.as_str(), bytes.as_ref())?;
                Ok((true, true))
            })
            .await?;
        Ok(self.count(wrote))
    }

    async fn blob(&self, sha256: &str) -> Result<Option<Bytes>, StateError> {
        validate_sha256(sha256)?;
        let name = sha256.to_owned();
        let found = self
            .read(move |txn| {
                let table = txn.open_table(MODULE_BLOBS)?;
                Ok(table.get(name.as_str())?.map(|bytes| Bytes::copy_from_slice(bytes.value())))
            })
            .await?;
        if let Some(bytes) = &found {
            check_stored_blob(sha256, bytes).await?;
        }
        Ok(found)
    }

    async fn delete_blob(&self, sha256: &str) -> Result<bool, StateError> {
        validate_sha256(sha256)?;
        let sha256 = sha256.to_owned();
        let existed = self
            .write_if_changed(move |txn| {
                let existed = txn.open_table(MODULE_BLOBS)?.remove(sha256.as_str())?.is_some();
                Ok((existed, existed))
            })
            .await?;
        Ok(self.count(existed))
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        validate_lease(name, holder, Some(ttl))?;
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let now = self.clock.now_ms();
        let took = self
            .write_if_changed(move |txn| {
                let mut leases = txn.open_table(LEASES)?;
                let free = match leases.get(name.as_str())? {
                    None => true,
                    Some(held) => {
                        let (current, expires) = held.value();
                        current == holder || expires <= now
                    }
                };
                if free {
                    leases.insert(name.as_str(), (holder.as_str(), deadline_ms(now, ttl)))?;
                }
                Ok((free, free))
            })
            .await?;
        Ok(self.count(took))
    }

    /// An expired lease is no longer held, even by its last holder: releasing it returns false
    /// and writes nothing (the next acquire overwrites the stale row).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StateError> {
        validate_lease(name, holder, None)?;
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let now = self.clock.now_ms();
        let released = self
            .write_if_changed(move |txn| {
                let mut leases = txn.open_table(LEASES)?;
                let held = match leases.get(name.as_str())? {
                    None => false,
                    Some(held) => {
                        let (current, expires) = held.value();
                        current == holder && expires > now
                    }
                };
                if held {
                    leases.remove(name.as_str())?;
                }
                Ok((held, held))
            })
            .await?;
        Ok(self.count(released))
    }

    fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl EmbeddedBackend {
    /// Tells record watchers of a change when `changed`; returns it.
    fn record_changed(&self, changed: bool) -> bool {
        if changed {
            self.records_changed.send_modify(|count| *count += 1);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::backend;
    use super::*;
    use crate::state::validate::sha256_hex;

    #[tokio::test]
    async fn a_damaged_blob_is_an_internal_error() {
        let (_dir, backend) = backend();
        let bytes = Bytes::from_static(b"\0asm module");
        let sha = sha256_hex(&bytes).await.unwrap();
        assert!(backend.put_blob(&sha, bytes.clone()).await.unwrap());
        // Damage it behind the backend's back.
        let name = sha.clone();
        backend
            .write(move |txn| {
                txn.open_table(MODULE_BLOBS)?.insert(name.as_str(), b"\0asm mod".as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        let err = backend.blob(&sha).await.unwrap_err();
        assert!(matches!(&err, StateError::Internal(m) if m.contains("damaged")), "{err:?}");
    }
}
