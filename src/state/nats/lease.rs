//! Owned records with an expiry in a JetStream KV bucket, the one mechanism behind the tenants'
//! advisory locks (`locks`) and the control leases (`control`): a JSON record naming its owner
//! and its expiry in Unix milliseconds, taken and released only by compare-and-set on the KV
//! revision just read. Taking creates the record when absent and updates it at the read revision
//! when it is expired or already the caller's; releasing deletes it at the read revision. Two
//! callers racing for one record can never both win, and a lost race is retried from a fresh
//! read, up to [`RACE_RETRIES`] times.

use super::NatsResult;
use crate::state::now_ms;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::{Debug, Display};
use std::time::Duration;

/// Attempts after losing a compare-and-set race before giving up.
pub(super) const RACE_RETRIES: usize = 5;

/// A record as one kind of owned record stores it (the kinds name their fields differently).
pub(super) trait Owned: Serialize + DeserializeOwned {
    /// Whether the owner may still release its record once it has expired.
    const RELEASE_EXPIRED: bool;

    fn new(owner: &str, expires_ms: u64) -> Self;

    /// The owner, and the expiry in Unix milliseconds by the owner's clock.
    fn parts(&self) -> (&str, u64);

    /// The record stored at `key`; one that does not parse fails with the parse error.
    fn decode(_key: &str, bytes: &[u8]) -> NatsResult<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Takes the record at `key` for `owner` until `ttl` from now, or renews it if `owner` has it;
/// another owner's record is taken only once expired. Returns whether `owner` holds it: false
/// when someone else does, or when every attempt lost a race.
pub(super) async fn take<R: Owned>(kv: &Store, key: &str, owner: &str, ttl: Duration) -> NatsResult<bool> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    for _ in 0..RACE_RETRIES {
        let now = now_ms();
        let value = serde_json::to_vec(&R::new(owner, now.saturating_add(ttl_ms)))?;
        // Lost races go round again: the winner's record is then read and refused.
        let took = match current::<R>(kv, key).await? {
            None => won(kv.create(key, value.into()).await, CreateErrorKind::AlreadyExists)?,
            Some((held, revision)) if held.parts().0 == owner || held.parts().1 <= now => {
                won(kv.update(key, value.into(), revision).await, UpdateErrorKind::WrongLastRevision)?
            }
            Some(_) => return Ok(false),
        };
        if took {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes the record at `key` if `owner` has it (and, unless [`Owned::RELEASE_EXPIRED`], it has
/// not expired). Returns whether it did: false when the record is someone else's or absent, or
/// when every attempt lost a race.
pub(super) async fn release<R: Owned>(kv: &Store, key: &str, owner: &str) -> NatsResult<bool> {
    for _ in 0..RACE_RETRIES {
        let now = now_ms();
        let held = current::<R>(kv, key).await?.filter(|(record, _)| {
            let (holder, expires_ms) = record.parts();
            holder == owner && (R::RELEASE_EXPIRED || expires_ms > now)
        });
        let Some((_, revision)) = held else {
            return Ok(false);
        };
        if delete_at(kv, key, revision).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes `key` if it is still at `revision`; false when it changed first (a lost race).
pub(super) async fn delete_at(kv: &Store, key: &str, revision: u64) -> NatsResult<bool> {
    won(kv.delete_expect_revision(key, Some(revision)).await, UpdateErrorKind::WrongLastRevision)
}

/// The record at `key` and the revision to change it at; `None` when there is none.
async fn current<R: Owned>(kv: &Store, key: &str) -> NatsResult<Option<(R, u64)>> {
    match kv.entry(key).await? {
        Some(entry) if entry.operation == Operation::Put => {
            Ok(Some((R::decode(key, &entry.value)?, entry.revision)))
        }
        _ => Ok(None),
    }
}

/// Whether a write conditional on a revision went through: false when it failed with `lost`
/// (the key is not as expected) or otherwise lost a race ([`lost_race`]).
fn won<T, K>(result: Result<T, async_nats::error::Error<K>>, lost: K) -> NatsResult<bool>
where
    K: Clone + Debug + Display + PartialEq + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == lost || lost_race(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Whether a write conditional on a key's revision failed because the key changed first. In a
/// cluster the stream leader also refuses one while a competing write of the same key is still
/// being replicated (error 10164, which async-nats does not classify), before that write is
/// readable: both mean a lost race, to be retried from a fresh read.
fn lost_race(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(err), |e| e.source()).any(|e| {
        e.downcast_ref::<async_nats::jetstream::Error>().is_some_and(|api| {
            matches!(
                api.error_code(),
                ErrorCode::STREAM_WRONG_LAST_SEQUENCE | ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_expected_sequence_is_a_lost_race() {
        use async_nats::jetstream::context::{PublishError, PublishErrorKind};
        use async_nats::jetstream::kv::UpdateError;
        let api = |code: u64| -> async_nats::jetstream::Error {
            serde_json::from_value(
                serde_json::json!({"code": 400, "err_code": code, "description": "wrong last sequence"}),
            )
            .unwrap()
        };
        let wrapped = |code| {
            UpdateError::with_source(
                UpdateErrorKind::Other,
                PublishError::with_source(PublishErrorKind::Other, api(code)),
            )
        };
        assert!(lost_race(&wrapped(10164)));
        assert!(lost_race(&wrapped(10071)));
        assert!(!lost_race(&wrapped(10077)));
        assert!(!lost_race(&std::io::Error::other("strange")));
        assert!(!won(Err::<(), _>(wrapped(10164)), UpdateErrorKind::WrongLastRevision).unwrap());
        assert!(
            !won(
                Err::<(), _>(UpdateError::new(UpdateErrorKind::WrongLastRevision)),
                UpdateErrorKind::WrongLastRevision
            )
            .unwrap()
        );
        assert!(won(Err::<(), _>(wrapped(10077)), UpdateErrorKind::WrongLastRevision).is_err());
        assert!(won(Ok::<_, UpdateError>(7), UpdateErrorKind::WrongLastRevision).unwrap());
    }
}
