//! The reconciler's control records, module blobs and leases (`crate::state::Control`), in three
//! tables of their own. They belong to the platform, not to a tenant, so they are keyed by record
//! key, sha256 and lease name, and removing a tenant leaves them alone.
//!
//! The argument checks at the top are shared with the NATS backend, so both refuse exactly the
//! same keys, digests and sizes.

use super::tables::{CONTROL_RECORDS, LEASES, MODULE_BLOBS};
use super::{EmbeddedBackend, blocking, deadline_ms};
use crate::state::{Control, MAX_VALUE_BYTES, StateError};
use async_trait::async_trait;
use bytes::Bytes;
use redb::ReadableTable;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Longest record key or lease name, in bytes.
pub(crate) const MAX_RECORD_KEY_BYTES: usize = 256;
/// Largest control record value (the same limit as a KV value).
pub(crate) const MAX_RECORD_BYTES: usize = MAX_VALUE_BYTES;
/// Largest module blob.
pub(crate) const MAX_BLOB_BYTES: usize = 128 << 20;
/// Longest lease holder, in bytes.
pub(crate) const MAX_HOLDER_BYTES: usize = 256;
/// Blobs up to this size are hashed on the calling task; larger ones on the blocking pool.
const HASH_INLINE_BYTES: usize = 1 << 20;

fn record_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"/._-".contains(&b)
}

/// Checks a record key or lease name (`what`): 1 to 256 bytes of `[a-z0-9/._-]`, and no empty
/// segment between, before or after the separators `/` and `.` (so `a//b`, `a..b`, `a/.b`,
/// `/a` and `a.` are refused; each is also unusable as a NATS subject or a path).
pub(crate) fn validate_record_key(what: &str, key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_RECORD_KEY_BYTES {
        return Err(StateError::InvalidArgument(format!(
            "{what} {key:?} must be 1 to {MAX_RECORD_KEY_BYTES} bytes, not {}",
            key.len()
        )));
    }
    if !key.bytes().all(record_char) {
        return Err(StateError::InvalidArgument(format!(
            "{what} {key:?} may hold only a-z, 0-9 and the characters / . _ -"
        )));
    }
    if key.split(['/', '.']).any(str::is_empty) {
        return Err(StateError::InvalidArgument(format!(
            "{what} {key:?} has an empty segment: '/' and '.' must separate non-empty parts"
        )));
    }
    Ok(())
}

/// Checks a `records` prefix: empty, or the start of some valid record key (`a/`, `a.`, `a/b`).
pub(crate) fn validate_record_prefix(prefix: &str) -> Result<(), StateError> {
    let starts_a_key = |p: &str| {
        validate_record_key("prefix", p).is_ok() || validate_record_key("prefix", &format!("{p}x")).is_ok()
    };
    if prefix.is_empty() || starts_a_key(prefix) {
        return Ok(());
    }
    Err(StateError::InvalidArgument(format!(
        "record prefix {prefix:?} is not the start of any valid record key"
    )))
}

pub(crate) fn validate_record_value(key: &str, value: &[u8]) -> Result<(), StateError> {
    if value.len() > MAX_RECORD_BYTES {
        return Err(StateError::InvalidArgument(format!(
            "record {key:?} is {} bytes; the limit is {MAX_RECORD_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// Checks a blob name: a sha256 as 64 lowercase hex digits.
pub(crate) fn validate_sha256(sha256: &str) -> Result<(), StateError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(StateError::InvalidArgument(format!(
            "{sha256:?} is not a sha256: 64 lowercase hex digits expected"
        )));
    }
    Ok(())
}

/// Checks a lease's holder (1 to 256 bytes, no control characters) and ttl (at least 1 ms).
pub(crate) fn validate_lease(name: &str, holder: &str, ttl: Option<Duration>) -> Result<(), StateError> {
    validate_record_key("lease name", name)?;
    if holder.is_empty() || holder.len() > MAX_HOLDER_BYTES || holder.chars().any(char::is_control) {
        return Err(StateError::InvalidArgument(format!(
            "lease holder {holder:?} must be 1 to {MAX_HOLDER_BYTES} bytes with no control characters"
        )));
    }
    if ttl.is_some_and(|ttl| ttl < Duration::from_millis(1)) {
        return Err(StateError::InvalidArgument("lease ttl must be at least 1ms".into()));
    }
    Ok(())
}

/// The sha256 of `bytes`, lowercase hex; large inputs are hashed on the blocking pool, so a
/// 128 MiB module does not stall the async executor.
pub(crate) async fn sha256_hex(bytes: &Bytes) -> Result<String, StateError> {
    let hash = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));
    if bytes.len() <= HASH_INLINE_BYTES {
        return Ok(hash(bytes));
    }
    let bytes = bytes.clone();
    blocking(move || Ok(hash(&bytes))).await
}

/// Checks a blob about to be stored: a valid name, at most [`MAX_BLOB_BYTES`], and bytes that
/// hash to that name.
pub(crate) async fn check_new_blob(sha256: &str, bytes: &Bytes) -> Result<(), StateError> {
    validate_sha256(sha256)?;
    if bytes.len() > MAX_BLOB_BYTES {
        return Err(StateError::InvalidArgument(format!(
            "module blob is {} bytes; the limit is {MAX_BLOB_BYTES}",
            bytes.len()
        )));
    }
    let actual = sha256_hex(bytes).await?;
    if actual != sha256 {
        return Err(StateError::InvalidArgument(format!(
            "module blob bytes hash to {actual}, not to the sha256 {sha256} they were stored under"
        )));
    }
    Ok(())
}

/// Checks a blob just read against its name: damaged bytes are an `Internal` error, never data.
pub(crate) async fn check_stored_blob(sha256: &str, bytes: &Bytes) -> Result<(), StateError> {
    let actual = sha256_hex(bytes).await?;
    if actual != sha256 {
        return Err(StateError::Internal(format!(
            "module blob {sha256} is damaged: its {} stored bytes hash to {actual}",
            bytes.len()
        )));
    }
    Ok(())
}

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
        Ok(self.count(changed))
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
        Ok(self.count(existed))
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

#[cfg(test)]
mod tests {
    use super::super::testing::backend;
    use super::*;

    #[test]
    fn record_keys_are_checked() {
        for good in ["a", "tenants/acme/functions/hello", "v1.2_x-y", &"k".repeat(256)] {
            validate_record_key("record key", good).unwrap();
        }
        for bad in ["", "A", "a b", "/a", "a/", "a//b", "a..b", ".a", "a.", "a/.b", "ü", &"k".repeat(257)] {
            let err = validate_record_key("record key", bad).unwrap_err();
            assert!(matches!(&err, StateError::InvalidArgument(m) if m.contains("record key")), "{bad:?}");
        }
        for good in ["", "a", "a/", "a.", "tenants/ac"] {
            validate_record_prefix(good).unwrap();
        }
        for bad in ["/", "a//", "A", "a*"] {
            assert!(validate_record_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sha256_names_are_64_lowercase_hex_digits() {
        validate_sha256(&"0a".repeat(32)).unwrap();
        for bad in ["", "0a", &"0A".repeat(32), &"0g".repeat(32), &"0".repeat(65)] {
            assert!(validate_sha256(bad).is_err(), "{bad:?}");
        }
    }

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

    #[tokio::test]
    async fn large_blobs_are_hashed_off_the_executor() {
        let big = Bytes::from(vec![7u8; HASH_INLINE_BYTES + 1]);
        let small = Bytes::from(vec![7u8; 16]);
        assert_eq!(sha256_hex(&big).await.unwrap(), hex::encode(Sha256::digest(&big)));
        assert_eq!(sha256_hex(&small).await.unwrap(), hex::encode(Sha256::digest(&small)));
    }
}
