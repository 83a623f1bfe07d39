//! The tenant key-value store (`KvStore`): values under (tenant, key). The tenant's byte quota
//! (key + value bytes of every entry) and key quota are kept as running totals that each write
//! updates in its own transaction, so a write never scans the tenant's keys.

use super::EmbeddedBackend;
use super::tables::{KV, KV_KEYS, KV_USAGE, after};
use super::tenants::{RequireTenant, TenantSettings};
use crate::spec::Name;
use crate::state::{KvStore, MAX_VALUE_BYTES, StateError, validate_key};
use async_trait::async_trait;
use bytes::Bytes;
use redb::{ReadableTable, WriteTransaction};

/// A prefix is acceptable if some valid key starts with it: it is empty, a key itself, or the
/// start of one (`a/`, `a.`). Anything else could match nothing and is a caller's mistake.
fn validate_prefix(prefix: &str) -> Result<(), StateError> {
    if prefix.is_empty() || validate_key(prefix).is_ok() || validate_key(&format!("{prefix}x")).is_ok() {
        return Ok(());
    }
    Err(StateError::InvalidArgument(format!("{prefix:?} is not the start of any valid key")))
}

fn validate_value(value: &[u8]) -> Result<(), StateError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StateError::InvalidArgument(format!(
            "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// Bytes an entry counts against the quota.
fn entry_bytes(key: &str, value_len: usize) -> u64 {
    (key.len() + value_len) as u64
}

/// Sets (`Some`) or deletes (`None`) `key`, keeping the usage totals. A write that would grow the
/// tenant past its byte quota, or add a key past its key quota, fails with `Quota`; one that
/// shrinks usage or overwrites a key always succeeds, so a tenant over a lowered quota can still
/// clean up.
fn write_entry(
    txn: &WriteTransaction,
    settings: &TenantSettings,
    tenant: &Name,
    key: &str,
    value: Option<&[u8]>,
) -> Result<(), StateError> {
    let mut kv = txn.open_table(KV)?;
    let mut usage = txn.open_table(KV_USAGE)?;
    let used = usage.get(tenant.as_str())?.map_or(0, |u| u.value());
    let mut counts = txn.open_table(KV_KEYS)?;
    let old = kv.get((tenant.as_str(), key))?.map(|v| entry_bytes(key, v.value().len()));
    let keys = match counts.get(tenant.as_str())? {
        Some(keys) => keys.value(),
        None => count_keys(&kv, tenant)?,
    };
    let keys_after = match (old.is_some(), value.is_some()) {
        (false, true) => keys + 1,
        (true, false) => keys.saturating_sub(1),
        _ => keys,
    };
    if let Some(max) = settings.kv_max_keys
        && keys_after > keys
        && keys_after > u64::from(max)
    {
        return Err(StateError::Quota(format!(
            "tenant {tenant}: the write would make its KV data {keys_after} keys; the quota is {max} \
             (quotas.kvMaxKeys)"
        )));
    }
    let old = old.unwrap_or(0);
    let new = value.map_or(0, |v| entry_bytes(key, v.len()));
    let total = used.saturating_sub(old).saturating_add(new);
    if let Some(max) = settings.kv_max_bytes
        && new > old
        && total > max
    {
        return Err(StateError::Quota(format!(
            "tenant {tenant}: the write would make its KV data {total} bytes; the quota is {max} \
             (quotas.kvMaxBytes)"
        )));
    }
    match value {
        Some(value) => kv.insert((tenant.as_str(), key), value)?,
        None => kv.remove((tenant.as_str(), key))?,
    };
    usage.insert(tenant.as_str(), total)?;
    counts.insert(tenant.as_str(), keys_after)?;
    Ok(())
}

/// Keys `tenant` holds in `kv`, counted row by row: only for a tenant whose keys predate the
/// running count, once (the write that asked stores it).
fn count_keys(
    kv: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    tenant: &Name,
) -> Result<u64, StateError> {
    let end = after(tenant.as_str());
    Ok(kv.range((tenant.as_str(), "")..(end.as_str(), ""))?.count() as u64)
}

#[async_trait]
impl KvStore for EmbeddedBackend {
    async fn get(&self, tenant: &Name, key: &str) -> Result<Option<Bytes>, StateError> {
        validate_key(key)?;
        let (tenant, key) = (tenant.clone(), key.to_owned());
        self.read(move |txn| {
            txn.require_tenant(&tenant)?;
            let kv = txn.open_table(KV)?;
            let value = kv.get((tenant.as_str(), key.as_str()))?;
            Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
        })
        .await
    }

    async fn put(&self, tenant: &Name, key: &str, value: Bytes) -> Result<(), StateError> {
        validate_key(key)?;
        validate_value(&value)?;
        let (tenant, key) = (tenant.clone(), key.to_owned());
        self.write(move |txn| write_entry(txn, &txn.require_tenant(&tenant)?, &tenant, &key, Some(&value)))
            .await
    }

    async fn delete(&self, tenant: &Name, key: &str) -> Result<(), StateError> {
        validate_key(key)?;
        let (tenant, key) = (tenant.clone(), key.to_owned());
        self.write(move |txn| write_entry(txn, &txn.require_tenant(&tenant)?, &tenant, &key, None)).await
    }

    async fn keys(&self, tenant: &Name, prefix: &str, limit: usize) -> Result<Vec<String>, StateError> {
        validate_prefix(prefix)?;
        let (tenant, prefix) = (tenant.clone(), prefix.to_owned());
        self.read(move |txn| {
            txn.require_tenant(&tenant)?;
            let kv = txn.open_table(KV)?;
            let end = after(tenant.as_str());
            let mut keys = Vec::new();
            for entry in kv.range((tenant.as_str(), prefix.as_str())..(end.as_str(), ""))? {
                if keys.len() == limit {
                    break;
                }
                let (stored, _) = entry?;
                let (_, key) = stored.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                keys.push(key.to_owned());
            }
            Ok(keys)
        })
        .await
    }

    async fn cas(
        &self,
        tenant: &Name,
        key: &str,
        expected: Option<Bytes>,
        new: Bytes,
    ) -> Result<bool, StateError> {
        validate_key(key)?;
        validate_value(&new)?;
        let (tenant, key) = (tenant.clone(), key.to_owned());
        self.write_if_changed(move |txn| {
            let settings = txn.require_tenant(&tenant)?;
            let current =
                txn.open_table(KV)?.get((tenant.as_str(), key.as_str()))?.map(|v| v.value().to_vec());
            if current.as_deref() != expected.as_deref() {
                return Ok((false, false));
            }
            write_entry(txn, &settings, &tenant, &key, Some(&new))?;
            Ok((true, true))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backend, provision};
    use super::*;
    use crate::state::{Provisioner, TenantResources};

    fn usage(backend: &EmbeddedBackend, tenant: &Name) -> u64 {
        let txn = backend.db.begin_read().unwrap();
        txn.open_table(KV_USAGE).unwrap().get(tenant.as_str()).unwrap().map_or(0, |u| u.value())
    }

    #[tokio::test]
    async fn usage_follows_overwrites_and_deletes() {
        let (_dir, backend) = backend();
        let t = provision(&backend, "acme", None).await;
        backend.put(&t, "ab", Bytes::from_static(b"1234")).await.unwrap();
        assert_eq!(usage(&backend, &t), 6);
        backend.put(&t, "ab", Bytes::from_static(b"1")).await.unwrap();
        assert_eq!(usage(&backend, &t), 3);
        assert!(backend.cas(&t, "c", None, Bytes::from_static(b"xy")).await.unwrap());
        assert_eq!(usage(&backend, &t), 6);
        backend.delete(&t, "ab").await.unwrap();
        backend.delete(&t, "absent").await.unwrap();
        assert_eq!(usage(&backend, &t), 3);
    }

    #[tokio::test]
    async fn quota_refuses_growth_but_allows_shrinking_and_cas_counts() {
        let (_dir, backend) = backend();
        let t = provision(&backend, "acme", Some(100)).await;
        backend.put(&t, "a", Bytes::from(vec![0; 89])).await.unwrap(); // 90 bytes
        let err = backend.cas(&t, "b", None, Bytes::from(vec![0; 10])).await.unwrap_err();
        assert!(matches!(err, StateError::Quota(_)), "{err:?}");
        assert_eq!(backend.get(&t, "b").await.unwrap(), None, "a refused CAS writes nothing");
        backend.put(&t, "b", Bytes::from(vec![0; 9])).await.unwrap(); // exactly 100

        // Lower the quota below current usage: growth fails, shrinking still works.
        let lowered =
            TenantResources { name: t.clone(), replicas: 1, kv_max_bytes: Some(50), kv_max_keys: None };
        backend.ensure_tenant(&lowered).await.unwrap();
        let err = backend.put(&t, "b", Bytes::from(vec![0; 10])).await.unwrap_err();
        assert!(matches!(err, StateError::Quota(_)), "{err:?}");
        backend.put(&t, "a", Bytes::from(vec![0; 10])).await.unwrap();
        assert_eq!(usage(&backend, &t), 21);
    }

    #[tokio::test]
    async fn a_value_of_exactly_the_limit_is_accepted() {
        let (_dir, backend) = backend();
        let t = provision(&backend, "acme", None).await;
        backend.put(&t, "big", Bytes::from(vec![7; MAX_VALUE_BYTES])).await.unwrap();
        assert_eq!(backend.get(&t, "big").await.unwrap().unwrap().len(), MAX_VALUE_BYTES);
    }

    #[test]
    fn prefixes_are_starts_of_valid_keys() {
        for ok in ["", "a", "a/", "a.", "user/42", "_gojin", "k".repeat(1024).as_str()] {
            assert!(validate_prefix(ok).is_ok(), "{ok:?}");
        }
        for bad in ["/", "a//", "..", "../b", "_gojinn", "a b", "a*", "k".repeat(1025).as_str()] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
