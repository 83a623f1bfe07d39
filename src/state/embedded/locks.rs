//! Advisory locks (`Locks`): (tenant, key) → (owner, expiry). An expired lock is free for anyone;
//! the owner re-locking renews it; only the owner releases it. Expiries use the backend's
//! [`Clock`](super::Clock), so they survive a restart.

use super::tables::LOCKS;
use super::tenants::RequireTenant;
use super::{EmbeddedBackend, deadline_ms};
use crate::spec::Name;
use crate::state::{Locks, MAX_KEY_BYTES, StateError, validate_key};
use async_trait::async_trait;
use redb::ReadableTable;
use std::time::Duration;

fn validate_owner(owner: &str) -> Result<(), StateError> {
    if owner.is_empty() || owner.len() > MAX_KEY_BYTES {
        return Err(StateError::InvalidArgument(format!("lock owner must be 1 to {MAX_KEY_BYTES} bytes")));
    }
    Ok(())
}

#[async_trait]
impl Locks for EmbeddedBackend {
    async fn lock(&self, tenant: &Name, key: &str, owner: &str, ttl: Duration) -> Result<bool, StateError> {
        validate_key(key)?;
        validate_owner(owner)?;
        if ttl < Duration::from_millis(1) {
            return Err(StateError::InvalidArgument("lock ttl must be at least 1ms".into()));
        }
        let (tenant, key, owner) = (tenant.clone(), key.to_owned(), owner.to_owned());
        let now = self.clock.now_ms();
        self.write_if_changed(move |txn| {
            txn.require_tenant(&tenant)?;
            let mut locks = txn.open_table(LOCKS)?;
            let free = match locks.get((tenant.as_str(), key.as_str()))? {
                None => true,
                Some(held) => {
                    let (holder, expires) = held.value();
                    holder == owner || expires <= now
                }
            };
            if free {
                locks.insert((tenant.as_str(), key.as_str()), (owner.as_str(), deadline_ms(now, ttl)))?;
            }
            Ok((free, free))
        })
        .await
    }

    /// An expired lock is no longer held, even by its last owner: unlocking it returns false (and
    /// removes the stale row).
    async fn unlock(&self, tenant: &Name, key: &str, owner: &str) -> Result<bool, StateError> {
        validate_key(key)?;
        validate_owner(owner)?;
        let (tenant, key, owner) = (tenant.clone(), key.to_owned(), owner.to_owned());
        let now = self.clock.now_ms();
        self.write_if_changed(move |txn| {
            txn.require_tenant(&tenant)?;
            let mut locks = txn.open_table(LOCKS)?;
            let (owned, live) = match locks.get((tenant.as_str(), key.as_str()))? {
                None => return Ok((false, false)),
                Some(held) => {
                    let (holder, expires) = held.value();
                    (holder == owner, expires > now)
                }
            };
            let remove = owned || !live;
            if remove {
                locks.remove((tenant.as_str(), key.as_str()))?;
            }
            Ok((owned && live, remove))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backend, provision};
    use super::*;

    #[tokio::test]
    async fn bad_ttl_and_owner_are_rejected() {
        let (_dir, backend) = backend();
        let t = provision(&backend, "acme", None).await;
        let zero = backend.lock(&t, "k", "me", Duration::ZERO).await.unwrap_err();
        assert!(matches!(zero, StateError::InvalidArgument(_)), "{zero:?}");
        let nobody = backend.lock(&t, "k", "", Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(nobody, StateError::InvalidArgument(_)), "{nobody:?}");
    }

    #[tokio::test]
    async fn an_expired_lock_is_not_released_by_its_last_owner() {
        let (_dir, backend) = backend();
        let t = provision(&backend, "acme", None).await;
        assert!(backend.lock(&t, "k", "me", Duration::from_millis(1)).await.unwrap());
        // Expire it without waiting: move the backend's clock past the expiry.
        backend.clock.observe(crate::state::now_ms() + 60_000);
        assert!(!backend.unlock(&t, "k", "me").await.unwrap());
        assert!(backend.lock(&t, "k", "you", Duration::from_secs(1)).await.unwrap());
    }
}
