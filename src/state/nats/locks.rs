//! Advisory locks in the tenant's KV bucket, at `_gojinn.lock.<key>` (user keys can never start
//! with `_gojinn`), holding `{owner, expires_ms}`. Every change is conditional on the revision
//! just read: two callers racing for a lock, or an unlock racing a takeover, cannot both win.

use super::NatsBackend;
use super::control::lost_race;
use super::kv::RESERVED_PREFIX;
use crate::spec::Name;
use crate::state::{Locks, StateError, now_ms, validate_key};
use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Attempts after losing a race, before a caller is told the lock is taken.
const RACE_RETRIES: usize = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    owner: String,
    /// Unix milliseconds.
    expires_ms: u64,
}

#[async_trait]
impl Locks for NatsBackend {
    async fn lock(&self, tenant: &Name, key: &str, owner: &str, ttl: Duration) -> Result<bool, StateError> {
        validate_key(key)?;
        self.run(tenant, async {
            let kv = &self.buckets(tenant).await?.kv;
            let key = lock_key(key);
            for _ in 0..RACE_RETRIES {
                let now = now_ms();
                let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                let value = serde_json::to_vec(&Holder {
                    owner: owner.into(),
                    expires_ms: now.saturating_add(ttl_ms),
                })?;
                let took = match holder(kv, &key).await? {
                    None => match kv.create(&key, value.into()).await {
                        Err(err) if err.kind() == CreateErrorKind::AlreadyExists || lost_race(&err) => false,
                        result => result.map(|_| true)?,
                    },
                    Some((held, revision)) if held.owner == owner || held.expires_ms <= now => {
                        match kv.update(&key, value.into(), revision).await {
                            Err(err)
                                if err.kind() == UpdateErrorKind::WrongLastRevision || lost_race(&err) =>
                            {
                                false
                            }
                            result => result.map(|_| true)?,
                        }
                    }
                    Some(_) => return Ok(false),
                };
                if took {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
    }

    async fn unlock(&self, tenant: &Name, key: &str, owner: &str) -> Result<bool, StateError> {
        validate_key(key)?;
        self.run(tenant, async {
            let kv = &self.buckets(tenant).await?.kv;
            let key = lock_key(key);
            for _ in 0..RACE_RETRIES {
                let Some((_, revision)) = holder(kv, &key).await?.filter(|(held, _)| held.owner == owner)
                else {
                    return Ok(false);
                };
                match kv.delete_expect_revision(&key, Some(revision)).await {
                    Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision || lost_race(&err) => {
                        continue;
                    }
                    result => return result.map(|()| true).map_err(Into::into),
                }
            }
            Ok(false)
        })
        .await
    }
}

fn lock_key(key: &str) -> String {
    format!("{RESERVED_PREFIX}.lock.{key}")
}

/// The lock's holder and the revision to change it at; `None` when it is free.
async fn holder(kv: &Store, key: &str) -> super::NatsResult<Option<(Holder, u64)>> {
    match kv.entry(key).await? {
        Some(entry) if entry.operation == Operation::Put => {
            Ok(Some((serde_json::from_slice(&entry.value)?, entry.revision)))
        }
        _ => Ok(None),
    }
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
