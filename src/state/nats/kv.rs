//! The tenant's key-value store on its JetStream KV bucket. Keys are used unchanged: the set
//! [`validate_key`] allows (`[A-Za-z0-9_=/.-]`, no empty `.` or `/` segment) is inside the NATS
//! KV key set `[-/_=.a-zA-Z0-9]+` (`/` is an ordinary subject character), so no encoding is
//! needed. `cas` compares values and swaps by revision, so a concurrent change makes it fail.
//! A `put` not acknowledged in time is sent again within the call's bound, under the same
//! message id (see [`publish_write`]): a stream leader's death costs a write the election, not
//! the whole bound.

use super::errors::{self, Unacknowledged};
use super::scan::Scan;
use super::{NatsBackend, NatsResult};
use crate::spec::Name;
use crate::state::{KvStore, MAX_VALUE_BYTES, StateError, validate_key};
use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::context::Context;
use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// How many times a write is sent, within the call's bound, while it is not acknowledged.
const WRITE_ATTEMPTS: u32 = 4;

/// Keys the platform keeps in a tenant's bucket (locks); never listed, never valid user keys.
pub(super) const RESERVED_PREFIX: &str = "_gojinn";

#[async_trait]
impl KvStore for NatsBackend {
    async fn get(&self, tenant: &Name, key: &str) -> Result<Option<Bytes>, StateError> {
        validate_key(key)?;
        self.run(tenant, async { Ok(self.buckets(tenant).await?.kv.get(key).await?) }).await
    }

    async fn put(&self, tenant: &Name, key: &str, value: Bytes) -> Result<(), StateError> {
        validate_key(key)?;
        validate_value(&value)?;
        self.run(tenant, async {
            let kv = &self.buckets(tenant).await?.kv;
            let subject = format!("{}{key}", kv.put_prefix.as_deref().unwrap_or(&kv.prefix));
            publish_write(&self.js, subject, value, self.timeout).await
        })
        .await
    }

    async fn delete(&self, tenant: &Name, key: &str) -> Result<(), StateError> {
        validate_key(key)?;
        self.run(tenant, async {
            let kv = &self.buckets(tenant).await?.kv;
            // The key's message is purged rather than covered by a delete marker, which would keep
            // the key's room in the bucket (a message of `kvMaxKeys`) for good. Absent: a no-op.
            kv.stream.purge().filter(format!("{}{key}", kv.prefix)).await?;
            Ok(())
        })
        .await
    }

    async fn keys(&self, tenant: &Name, prefix: &str, limit: usize) -> Result<Vec<String>, StateError> {
        self.run(tenant, async {
            let kv = &self.buckets(tenant).await?.kv;
            let Some(filter) = key_filter(prefix).filter(|_| limit > 0) else { return Ok(Vec::new()) };
            let scanned =
                Scan::latest(format!("{}{filter}", kv.prefix), true).run_complete(&kv.stream).await?;
            let mut keys: Vec<String> = scanned
                .into_iter()
                .filter(|m| !is_deletion(m.headers.as_ref()))
                .filter_map(|m| m.subject.strip_prefix(&kv.prefix).map(str::to_owned))
                .filter(|key| key.starts_with(prefix) && !key.starts_with(RESERVED_PREFIX))
                .collect();
            keys.sort_unstable();
            keys.truncate(limit);
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
        self.run(tenant, async {
            let kv = &self.buckets(tenant).await?.kv;
            let Some(expected) = expected else {
                return match kv.create(key, new).await {
                    Ok(_) => Ok(true),
                    Err(err) if err.kind() == CreateErrorKind::AlreadyExists => Ok(false),
                    Err(err) => Err(err.into()),
                };
            };
            let current = kv.entry(key).await?.filter(|e| e.operation == Operation::Put);
            let Some(current) = current.filter(|e| e.value == expected) else { return Ok(false) };
            match kv.update(key, new, current.revision).await {
                Ok(_) => Ok(true),
                Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(err) => Err(err.into()),
            }
        })
        .await
    }
}

/// Publishes a write to `subject` until the stream acknowledges it or `bound` has passed, each
/// attempt waiting at most a [`WRITE_ATTEMPTS`]th of `bound` for its acknowledgement: a write
/// sent to a stream leader that has just died is sent again, and lands on the leader elected
/// after it, rather than waiting out the whole bound. Every attempt carries the same
/// `Nats-Msg-Id`, so the stream stores the write once however many attempts reach it (within its
/// duplicate window); while the leader is still proposing an earlier copy, the next attempt
/// waits its turn. A refusal (the stream missing or without a leader, over its limits) ends it
/// at once.
async fn publish_write(js: &Context, subject: String, payload: Bytes, bound: Duration) -> NatsResult<()> {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, hex::encode(rand::random::<[u8; 16]>()).as_str());
    let attempt_bound = bound / WRITE_ATTEMPTS;
    for _ in 0..WRITE_ATTEMPTS {
        let sent = tokio::time::Instant::now();
        let attempt =
            async { js.publish_with_headers(subject.clone(), headers.clone(), payload.clone()).await?.await };
        match tokio::time::timeout(attempt_bound, attempt).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(err)) => match errors::unacknowledged(&err) {
                Unacknowledged::Refused => return Err(err.into()),
                Unacknowledged::InProcess => tokio::time::sleep_until(sent + attempt_bound).await,
                Unacknowledged::Unanswered => {}
            },
            Err(_) => {}
        }
    }
    Err(StateError::Unavailable(format!("the write was not acknowledged within {bound:?}")).into())
}

fn validate_value(value: &Bytes) -> Result<(), StateError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StateError::InvalidArgument(format!(
            "value is {} bytes; at most {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// Whether a KV message is a delete or purge marker rather than a value.
pub(super) fn is_deletion(headers: Option<&HeaderMap>) -> bool {
    headers.and_then(|h| h.get("KV-Operation")).is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
}

/// The subject filter (after the bucket's `$KV.<bucket>.`) that holds every key starting with
/// `prefix`: the prefix's complete `.`-tokens, then `>`. `None` when no valid key can start with
/// `prefix`. Narrowing by whole tokens only; the caller still compares the full prefix.
fn key_filter(prefix: &str) -> Option<String> {
    let key_char = |b: u8| b.is_ascii_alphanumeric() || b"_=/.-".contains(&b);
    if !prefix.bytes().all(key_char) {
        return None;
    }
    let tokens = prefix.rfind('.').map_or("", |dot| &prefix[..=dot]);
    if tokens.starts_with('.') || tokens.contains("..") {
        return None;
    }
    Some(format!("{tokens}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_filter_narrows_by_whole_tokens() {
        assert_eq!(key_filter("").as_deref(), Some(">"));
        assert_eq!(key_filter("user").as_deref(), Some(">"));
        assert_eq!(key_filter("user/42").as_deref(), Some(">"));
        assert_eq!(key_filter("a.b").as_deref(), Some("a.>"));
        assert_eq!(key_filter("a.b.").as_deref(), Some("a.b.>"));
        assert_eq!(key_filter("x=1.y/z.c").as_deref(), Some("x=1.y/z.>"));
    }

    #[test]
    fn key_filter_rejects_prefixes_no_key_can_have() {
        for prefix in [".a", "a..b", "a b", "a*", "a.>", "ä"] {
            assert_eq!(key_filter(prefix), None, "{prefix:?}");
        }
    }

    #[test]
    fn every_valid_key_is_a_nats_kv_key() {
        // The NATS KV key rule, as async-nats checks it.
        let nats_ok = |k: &str| {
            !k.starts_with('.')
                && !k.ends_with('.')
                && !k.is_empty()
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
        };
        for key in ["a", "a/b/c", "x=1", "a.b-c_d", "A9", "a/.b"] {
            assert!(validate_key(key).is_ok() && nats_ok(key), "{key}");
        }
    }

    #[test]
    fn deletion_markers_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!is_deletion(None));
        assert!(!is_deletion(Some(&headers)));
        headers.insert("KV-Operation", "DEL");
        assert!(is_deletion(Some(&headers)));
        headers.insert("KV-Operation", "PURGE");
        assert!(is_deletion(Some(&headers)));
    }
}
