//! The tenant registry (the `Provisioner`): which tenants exist and with which settings. Every
//! other operation looks its tenant up here first, in the same transaction, so an unprovisioned
//! tenant has no data and can write none.

use super::EmbeddedBackend;
use super::error::{decode, encode};
use super::tables::{self, TENANTS};
use crate::spec::Name;
use crate::state::{Provisioner, StateError, TenantResources};
use async_trait::async_trait;
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

/// What the registry keeps of a tenant. `replicas` is recorded for parity with clustered backends
/// and means nothing locally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TenantSettings {
    pub replicas: u8,
    pub kv_max_bytes: Option<u64>,
    /// Absent in records written before the key quota existed.
    #[serde(default)]
    pub kv_max_keys: Option<u32>,
}

/// Looks a tenant up in a read or a write transaction: the first step of every operation.
pub(super) trait RequireTenant {
    /// The settings of `tenant`, or `NoTenant`.
    fn require_tenant(&self, tenant: &Name) -> Result<TenantSettings, StateError>;
}

impl RequireTenant for ReadTransaction {
    fn require_tenant(&self, tenant: &Name) -> Result<TenantSettings, StateError> {
        settings(&self.open_table(TENANTS)?, tenant)
    }
}

impl RequireTenant for WriteTransaction {
    fn require_tenant(&self, tenant: &Name) -> Result<TenantSettings, StateError> {
        settings(&self.open_table(TENANTS)?, tenant)
    }
}

/// The settings of `tenant` in the `TENANTS` table, or `NoTenant`.
fn settings(
    registry: &impl ReadableTable<&'static str, &'static [u8]>,
    tenant: &Name,
) -> Result<TenantSettings, StateError> {
    match registry.get(tenant.as_str())? {
        Some(settings) => decode("tenant", settings.value()),
        None => Err(StateError::NoTenant(tenant.clone())),
    }
}

#[async_trait]
impl Provisioner for EmbeddedBackend {
    async fn ensure_tenant(&self, tenant: &TenantResources) -> Result<bool, StateError> {
        if ![1, 3, 5].contains(&tenant.replicas) {
            return Err(StateError::InvalidArgument(format!(
                "tenant {}: replicas must be 1, 3 or 5, not {}",
                tenant.name, tenant.replicas
            )));
        }
        let name = tenant.name.clone();
        let wanted = settings_of(tenant);
        self.write_if_changed(move |txn| {
            let mut registry = txn.open_table(TENANTS)?;
            if settings(&registry, &name).ok().as_ref() == Some(&wanted) {
                return Ok((false, false));
            }
            registry.insert(name.as_str(), encode("tenant", &wanted)?.as_slice())?;
            Ok((true, true))
        })
        .await
        .map(|wrote| self.count(wrote))
    }

    /// Compares the registry row with `tenant`; a tenant with no row has no resources, which is
    /// no drift (see the trait).
    async fn drift(&self, tenant: &TenantResources) -> Result<Vec<String>, StateError> {
        let name = tenant.name.clone();
        let recorded = self
            .read(move |txn| match txn.require_tenant(&name) {
                Ok(settings) => Ok(Some(settings)),
                Err(StateError::NoTenant(_)) => Ok(None),
                Err(err) => Err(err),
            })
            .await?;
        let wanted = settings_of(tenant);
        Ok(match recorded {
            Some(actual) => differences(&tenant.name, &actual, &wanted),
            None => vec![format!("tenant {} is not provisioned", tenant.name)],
        })
    }

    /// Deletes the tenant's audit log first: a crash before its rows are gone leaves a
    /// registered tenant with an empty log, never an old log for a tenant provisioned anew.
    async fn remove_tenant(&self, tenant: &Name) -> Result<bool, StateError> {
        let _no_log_opened_meanwhile = self.chain_logs.remove(tenant).await?;
        let name = tenant.clone();
        let removed = self.write(move |txn| tables::remove_tenant_rows(txn, name.as_str())).await?;
        Ok(self.count(removed))
    }
}

/// What the registry keeps of `tenant`.
fn settings_of(tenant: &TenantResources) -> TenantSettings {
    TenantSettings {
        replicas: tenant.replicas,
        kv_max_bytes: tenant.kv_max_bytes,
        kv_max_keys: tenant.kv_max_keys,
    }
}

/// One line per setting of `actual` that differs from `wanted`.
fn differences(tenant: &Name, actual: &TenantSettings, wanted: &TenantSettings) -> Vec<String> {
    let quota = |bytes: Option<u64>| bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
    let mut lines = Vec::new();
    if actual.replicas != wanted.replicas {
        lines.push(format!("tenant {tenant}: replicas {}, want {}", actual.replicas, wanted.replicas));
    }
    if actual.kv_max_bytes != wanted.kv_max_bytes {
        lines.push(format!(
            "tenant {tenant}: kv_max_bytes {}, want {}",
            quota(actual.kv_max_bytes),
            quota(wanted.kv_max_bytes)
        ));
    }
    if actual.kv_max_keys != wanted.kv_max_keys {
        lines.push(format!(
            "tenant {tenant}: kv_max_keys {}, want {}",
            quota(actual.kv_max_keys.map(u64::from)),
            quota(wanted.kv_max_keys.map(u64::from))
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backend, name};
    use super::*;

    #[tokio::test]
    async fn changed_settings_are_written_and_bad_replicas_rejected() {
        let (_dir, backend) = backend();
        let mut tenant =
            TenantResources { name: name("acme"), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
        assert!(backend.ensure_tenant(&tenant).await.unwrap());
        tenant.kv_max_bytes = Some(10);
        assert!(backend.ensure_tenant(&tenant).await.unwrap(), "a new quota is a change");
        assert!(!backend.ensure_tenant(&tenant).await.unwrap());
        tenant.replicas = 2;
        let err = backend.ensure_tenant(&tenant).await.unwrap_err();
        assert!(matches!(err, StateError::InvalidArgument(_)), "{err:?}");
    }

    #[tokio::test]
    async fn drift_names_each_differing_setting() {
        let (_dir, backend) = backend();
        let wanted =
            TenantResources { name: name("acme"), replicas: 3, kv_max_bytes: None, kv_max_keys: None };
        assert_eq!(backend.drift(&wanted).await.unwrap(), ["tenant acme is not provisioned"]);
        backend.ensure_tenant(&wanted).await.unwrap();
        assert!(backend.drift(&wanted).await.unwrap().is_empty());
        let other = TenantResources { replicas: 1, kv_max_bytes: Some(4096), ..wanted.clone() };
        backend.ensure_tenant(&other).await.unwrap();
        assert_eq!(
            backend.drift(&wanted).await.unwrap(),
            ["tenant acme: replicas 1, want 3", "tenant acme: kv_max_bytes 4096, want unlimited"]
        );
    }
}
