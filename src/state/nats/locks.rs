//! Advisory locks in the tenant's KV bucket, at `_gojinn.lock.<key>` (user keys can never start
//! with `_gojinn`), holding `{owner, expires_ms}`. Every change is conditional on the revision
//! just read (see `lease`): two callers racing for a lock, or an unlock racing a takeover, cannot
//! both win. An owner may unlock its lock even after it expired.

use super::NatsBackend;
use super::kv::RESERVED_PREFIX;
use super::lease::{self, Owned};
use crate::spec::Name;
use crate::state::{Locks, StateError, validate_key};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    owner: String,
    /// Unix milliseconds.
    expires_ms: u64,
}

impl Owned for Holder {
    const RELEASE_EXPIRED: bool = true;

    fn new(owner: &str, expires_ms: u64) -> Self {
        Self { owner: owner.into(), expires_ms }
    }

    fn parts(&self) -> (&str, u64) {
        (&self.owner, self.expires_ms)
    }
}

#[async_trait]
impl Locks for NatsBackend {
    async fn lock(&self, tenant: &Name, key: &str, owner: &str, ttl: Duration) -> Result<bool, StateError> {
        validate_key(key)?;
        self.run(tenant, async {
            let kv = &self.buckets(tenant).await?.kv;
            lease::take::<Holder>(kv, &lock_key(key), owner, ttl).await
        })
        .await
    }

    async fn unlock(&self, tenant: &Name, key: &str, owner: &str) -> Result<bool, StateError> {
        validate_key(key)?;
        self.run(tenant, async {
            let kv = &self.buckets(tenant).await?.kv;
            lease::release::<Holder>(kv, &lock_key(key), owner).await
        })
        .await
    }
}

fn lock_key(key: &str) -> String {
    format!("{RESERVED_PREFIX}.lock.{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_reserved_nats_keys() {
        let key = lock_key("jobs/nightly.run");
        assert_eq!(key, "_gojinn.lock.jobs/nightly.run");
        assert!(validate_key(&key).is_err(), "a user can never address a lock record");
    }
}
