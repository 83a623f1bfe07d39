//! The reconciler's control records, module blobs and leases (`crate::state::Control`), shared by
//! every node of a cluster:
//!
//! - records and leases in the KV bucket `GOJINN_CONTROL`: a record under its own key, a lease
//!   under `LEASE.<name>` (upper case, so never a record key) holding `{holder, expires_ms}`;
//! - module blobs in the object store `GOJINN_MODULES`, named by their sha256.
//!
//! Both are created on first use, with the configured control replicas, and laid out like the
//! tenants' buckets: no direct gets, so every read is answered by the stream leader and sees
//! every acknowledged write. Record keys are used unchanged as KV keys: `[a-z0-9/._-]` with no
//! empty `.` segment is inside the NATS KV key set.
//!
//! Leases change only by compare-and-set on the KV revision just read (create when absent,
//! update at the expected revision when expired or renewed, delete at the expected revision; see
//! `lease`), so two nodes racing for one can never both hold it. Expiry is wall-clock time: the
//! holder writes `now + ttl` by its clock and every node compares that with its own, so the
//! nodes' clocks must agree to well within a lease's ttl (NTP). A node whose clock runs ahead by
//! `d` sees leases expire `d` early; holders should renew well before `ttl` and stop acting on a
//! lease they could not renew in time.

use super::kv::is_deletion;
use super::lease::{self, Owned, RACE_RETRIES};
use super::provision::{base_stream, bucket_stream_config, is_stream_not_found};
use super::scan::Scan;
use super::{NatsBackend, NatsResult, errors};
use crate::backoff::Backoff;
use crate::spec::Name;
use crate::state::validate::{
    MAX_BLOB_BYTES, check_new_blob, check_stored_blob, validate_lease, validate_record_key,
    validate_record_prefix, validate_record_value, validate_sha256,
};
use crate::state::{Control, RecordChanges, StateError};
use async_nats::jetstream::kv::{Operation, Store};
use async_nats::jetstream::object_store::{
    GetErrorKind, InfoErrorKind, ObjectInfo, ObjectMetadata, ObjectStore,
};
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The KV bucket of records and leases.
pub const CONTROL_BUCKET: &str = "GOJINN_CONTROL";
/// The object store of module blobs.
pub const MODULES_BUCKET: &str = "GOJINN_MODULES";
/// Where leases live in the control bucket; upper case, so no record key starts with it.
const LEASE_PREFIX: &str = "LEASE.";
/// Reads of a blob whose bytes do not match the object store's digest before it is called
/// damaged, and the pause between them (see `blob`).
const DIGEST_ATTEMPTS: usize = 5;
const DIGEST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Longest wait for the next chunk of a blob being read.
const READ_STALL: Duration = Duration::from_secs(10);
/// How often a control operation that found a control stream missing runs again (creating or
/// finding it), and the pause before each time: 50 ms, doubling.
const MISSING_STREAM_ATTEMPTS: u32 = 4;
const MISSING_STREAM_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));

/// The opened control bucket and module store, and what to create them with.
pub(super) struct Handles {
    pub replicas: u8,
    /// Bytes per object store chunk: as large as the server's `max_payload` comfortably allows,
    /// since each chunk is one acknowledged publish.
    chunk_size: usize,
    kv: RwLock<Option<Store>>,
    modules: RwLock<Option<ObjectStore>>,
}

impl Handles {
    pub fn new(replicas: u8, chunk_size: usize) -> Self {
        Self { replicas, chunk_size, kv: RwLock::default(), modules: RwLock::default() }
    }

    fn forget(&self) {
        *self.kv.write().unwrap_or_else(PoisonError::into_inner) = None;
        *self.modules.write().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The object store chunk size for a server accepting payloads of `max_payload` bytes: half of
/// it (room for headers), at most 1 MiB.
pub(super) fn blob_chunk_size(max_payload: usize) -> usize {
    (max_payload / 2).clamp(1024, 1 << 20)
}

/// A lease as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    holder: String,
    /// Unix milliseconds, by the holder's clock.
    expires_ms: u64,
}

/// An expired lease is no longer held, even by its last holder: releasing it changes nothing.
impl Owned for Lease {
    const RELEASE_EXPIRED: bool = false;

    fn new(holder: &str, expires_ms: u64) -> Self {
        Self { holder: holder.to_owned(), expires_ms }
    }

    fn parts(&self) -> (&str, u64) {
        (&self.holder, self.expires_ms)
    }

    fn decode(key: &str, bytes: &[u8]) -> NatsResult<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| StateError::Internal(format!("corrupt lease record {key}: {e}")).into())
    }
}

impl NatsBackend {
    /// The control bucket, created if absent.
    async fn control_kv(&self) -> NatsResult<Store> {
        if let Some(kv) = self.control.kv.read().unwrap_or_else(PoisonError::into_inner).clone() {
            return Ok(kv);
        }
        let config = bucket_stream_config(CONTROL_BUCKET, self.control.replicas, None);
        self.ensure_shared_stream(config).await?;
        let kv = self.js.get_key_value(CONTROL_BUCKET).await?;
        *self.control.kv.write().unwrap_or_else(PoisonError::into_inner) = Some(kv.clone());
        Ok(kv)
    }

    /// The module object store, created if absent.
    async fn modules(&self) -> NatsResult<ObjectStore> {
        if let Some(store) = self.control.modules.read().unwrap_or_else(PoisonError::into_inner).clone() {
            return Ok(store);
        }
        self.ensure_shared_stream(modules_stream_config(self.control.replicas)).await?;
        let store = self.js.get_object_store(MODULES_BUCKET).await?;
        *self.control.modules.write().unwrap_or_else(PoisonError::into_inner) = Some(store.clone());
        Ok(store)
    }

    /// Creates a platform stream when absent. An existing one is used as it is: nodes may be
    /// configured with different control replicas, and none of them gets to flap the setting.
    async fn ensure_shared_stream(&self, desired: Config) -> NatsResult<()> {
        let existing = match self.provisioning.get_stream(&desired.name).await {
            Ok(stream) => stream.cached_info().config.num_replicas,
            Err(err) if is_stream_not_found(err.kind()) => {
                match self.provisioning.create_stream(desired.clone()).await {
                    Ok(_) => return Ok(()),
                    // Another node may have created it first, with other settings.
                    Err(create) => match self.provisioning.get_stream(&desired.name).await {
                        Ok(stream) => stream.cached_info().config.num_replicas,
                        Err(_) => return Err(create.into()),
                    },
                }
            }
            Err(err) => return Err(err.into()),
        };
        if existing.max(1) != desired.num_replicas {
            tracing::warn!(
                stream = desired.name,
                replicas = existing,
                configured = desired.num_replicas,
                "the shared control stream exists with other replicas than configured; keeping them"
            );
        }
        Ok(())
    }

    /// Runs a control operation, turning its error into the trait's error (`Unavailable` at once
    /// while disconnected; not bounded as a call is: a module upload may take longer).
    ///
    /// A control stream that is missing drops the cached handles and the operation runs again,
    /// which creates the stream again (an operator deleted it), or finds it once the cluster has
    /// placed it: right after one node created a replicated stream, another's first read may be
    /// told it does not exist yet. Every control operation may run again: each reads before it
    /// writes, or writes by compare-and-set.
    async fn control_run<T, F>(&self, work: impl Fn() -> F) -> Result<T, StateError>
    where
        F: Future<Output = NatsResult<T>>,
    {
        let mut missing = 0;
        let err = loop {
            self.connected()?;
            let err = match work().await {
                Ok(done) => return Ok(done),
                Err(err) => err,
            };
            if !errors::is_stream_missing(&err) || missing == MISSING_STREAM_ATTEMPTS {
                break err;
            }
            missing += 1;
            self.control.forget();
            tracing::debug!("a control stream is missing, trying again: {err}");
            tokio::time::sleep(MISSING_STREAM_BACKOFF.delay(missing)).await;
        };
        let Ok(owner) = Name::new("control") else { return Err(StateError::Internal(err.to_string())) };
        Err(match errors::to_state_error(&owner, err) {
            StateError::NoTenant(_) => {
                self.control.forget();
                StateError::Unavailable(format!(
                    "the control bucket {CONTROL_BUCKET} or module store {MODULES_BUCKET} is still \
                     missing after {MISSING_STREAM_ATTEMPTS} tries to create or find it"
                ))
            }
            StateError::Quota(why) => StateError::Quota(format!("the control streams are full: {why}")),
            other => other,
        })
    }
}

/// The stream behind the module object store, as NATS object stores lay it out, without direct
/// gets (see the module docs).
fn modules_stream_config(replicas: u8) -> Config {
    Config {
        discard: DiscardPolicy::New,
        allow_rollup: true,
        ..base_stream(
            format!("OBJ_{MODULES_BUCKET}"),
            vec![format!("$O.{MODULES_BUCKET}.C.>"), format!("$O.{MODULES_BUCKET}.M.>")],
            RetentionPolicy::Limits,
            replicas,
        )
    }
}

/// The subject filter (after the bucket's `$KV.<bucket>.`) holding every key that starts with a
/// valid `prefix`: its complete `.`-tokens, then `>`. The caller still compares the full prefix.
fn record_filter(prefix: &str) -> String {
    let tokens = prefix.rfind('.').map_or("", |dot| &prefix[..=dot]);
    format!("{tokens}>")
}

fn lease_key(name: &str) -> String {
    format!("{LEASE_PREFIX}{name}")
}

/// Whether an object store lookup failed because the object is not there.
fn object_not_found(err: &async_nats::Error) -> bool {
    use async_nats::jetstream::object_store::{GetError, InfoError};
    err.downcast_ref::<InfoError>().is_some_and(|e| e.kind() == InfoErrorKind::NotFound)
        || err.downcast_ref::<GetError>().is_some_and(|e| e.kind() == GetErrorKind::NotFound)
}

/// The live (not deleted) object named `sha256`.
async fn live_object(store: &ObjectStore, sha256: &str) -> NatsResult<Option<ObjectInfo>> {
    match store.info(sha256).await {
        Ok(info) if !info.deleted => Ok(Some(info)),
        Ok(_) => Ok(None),
        Err(err) => {
            let err: async_nats::Error = err.into();
            if object_not_found(&err) { Ok(None) } else { Err(err) }
        }
    }
}

/// Why reading an object failed: its bytes did not match the digest the store recorded, or
/// anything else.
enum ReadError {
    Digest(String),
    Other(async_nats::Error),
}

/// The bytes of the live object named `sha256`, checked by the object store against its digest.
async fn read_object(store: &ObjectStore, sha256: &str) -> Result<Option<Bytes>, ReadError> {
    let mut object = match store.get(sha256).await {
        Ok(object) => object,
        Err(err) => {
            let err: async_nats::Error = err.into();
            return if object_not_found(&err) { Ok(None) } else { Err(ReadError::Other(err)) };
        }
    };
    let size = object.info().size;
    if size > MAX_BLOB_BYTES {
        return Err(ReadError::Other(
            StateError::Internal(format!(
                "module blob {sha256} is damaged: it claims {size} bytes, more than any module"
            ))
            .into(),
        ));
    }
    let mut bytes = Vec::with_capacity(size);
    loop {
        // The reader waits for chunks as long as the server may send them; chunks replaced by a
        // concurrent put of the same blob never come, so a stalled read gives up.
        let read = tokio::time::timeout(READ_STALL, object.read_buf(&mut bytes)).await.map_err(|_| {
            let why = format!("reading module blob {sha256} stalled for {READ_STALL:?}");
            ReadError::Other(std::io::Error::new(std::io::ErrorKind::TimedOut, why).into())
        })?;
        match read {
            Ok(0) => break,
            Ok(_) => {}
            // The object store's own digest check failed.
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                return Err(ReadError::Digest(err.to_string()));
            }
            Err(err) => return Err(ReadError::Other(err.into())),
        }
    }
    if bytes.len() != size {
        return Err(ReadError::Digest(format!("read {} bytes of {size}", bytes.len())));
    }
    Ok(Some(Bytes::from(bytes)))
}

/// Writes counted: a changed record, a deleted record, a stored blob, a deleted blob, a taken or
/// renewed lease and a released lease. A refused acquire or release counts nothing.
#[async_trait]
impl Control for NatsBackend {
    /// One ordered-consumer scan of the latest value per key, narrowed on the server to the
    /// prefix's complete `.`-tokens: a single pass however many records match, complete even
    /// when the consumer lands on a lagging replica (see `Scan::run_complete`).
    async fn records(&self, prefix: &str) -> Result<BTreeMap<String, Bytes>, StateError> {
        validate_record_prefix(prefix)?;
        self.control_run(|| async {
            let kv = self.control_kv().await?;
            let filter = format!("{}{}", kv.prefix, record_filter(prefix));
            let scanned = Scan::latest(filter, false).run_complete(&kv.stream).await?;
            Ok(scanned
                .into_iter()
                .filter(|m| !is_deletion(m.headers.as_ref()))
                .filter_map(|m| {
                    let key = m.subject.strip_prefix(&kv.prefix)?;
                    (key.starts_with(prefix) && !key.starts_with(LEASE_PREFIX))
                        .then(|| (key.to_owned(), m.payload))
                })
                .collect())
        })
        .await
    }

    async fn put_record(&self, key: &str, value: Bytes) -> Result<bool, StateError> {
        validate_record_key("record key", key)?;
        validate_record_value(key, &value)?;
        let changed = self
            .control_run(|| async {
                let kv = self.control_kv().await?;
                let current = kv.entry(key).await?.filter(|e| e.operation == Operation::Put);
                if current.is_some_and(|e| e.value == value) {
                    return Ok(false);
                }
                kv.put(key, value.clone()).await?;
                Ok(true)
            })
            .await?;
        Ok(self.count(changed))
    }

    async fn delete_record(&self, key: &str) -> Result<bool, StateError> {
        validate_record_key("record key", key)?;
        let existed = self
            .control_run(|| async {
                let kv = self.control_kv().await?;
                for _ in 0..RACE_RETRIES {
                    let Some(current) = kv.entry(key).await?.filter(|e| e.operation == Operation::Put) else {
                        return Ok(false);
                    };
                    if lease::delete_at(&kv, key, current.revision).await? {
                        return Ok(true);
                    }
                }
                Err(StateError::Unavailable(format!("record {key} kept changing while being deleted")).into())
            })
            .await?;
        Ok(self.count(existed))
    }

    async fn blobs(&self) -> Result<BTreeSet<String>, StateError> {
        self.control_run(|| async {
            self.modules().await?;
            let stream = self.js.get_stream_no_info(format!("OBJ_{MODULES_BUCKET}")).await?;
            let scanned =
                Scan::latest(format!("$O.{MODULES_BUCKET}.M.>"), false).run_complete(&stream).await?;
            let mut found = BTreeSet::new();
            for message in scanned {
                let info: ObjectInfo = serde_json::from_slice(&message.payload)
                    .map_err(|e| StateError::Internal(format!("corrupt module store entry: {e}")))?;
                if !info.deleted && validate_sha256(&info.name).is_ok() {
                    found.insert(info.name);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn put_blob(&self, sha256: &str, bytes: Bytes) -> Result<bool, StateError> {
        check_new_blob(sha256, &bytes).await?;
        let wrote = self
            .control_run(|| async {
                let store = self.modules().await?;
                if live_object(&store, sha256).await?.is_some() {
                    return Ok(false);
                }
                let meta = ObjectMetadata {
                    name: sha256.to_owned(),
                    chunk_size: Some(self.control.chunk_size),
                    ..ObjectMetadata::default()
                };
                store.put(meta, &mut bytes.as_ref()).await?;
                Ok(true)
            })
            .await?;
        Ok(self.count(wrote))
    }

    /// Chunks are read through an ordered consumer, which may land on a replica still applying
    /// a blob just stored elsewhere: a digest mismatch is read again (briefly) before the blob is
    /// called damaged. A stored blob never changes, so a lasting mismatch is real damage.
    async fn blob(&self, sha256: &str) -> Result<Option<Bytes>, StateError> {
        validate_sha256(sha256)?;
        let found = self
            .control_run(|| async {
                let store = self.modules().await?;
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match read_object(&store, sha256).await {
                        Err(ReadError::Digest(why)) if attempts < DIGEST_ATTEMPTS => {
                            tracing::debug!(sha256, "module blob read again after a digest mismatch: {why}");
                            tokio::time::sleep(DIGEST_RETRY_PAUSE).await;
                        }
                        Err(ReadError::Digest(why)) => {
                            return Err(StateError::Internal(format!(
                                "module blob {sha256} is damaged: {why}"
                            ))
                            .into());
                        }
                        Err(ReadError::Other(err)) => return Err(err),
                        Ok(found) => return Ok(found),
                    }
                }
            })
            .await?;
        if let Some(bytes) = &found {
            check_stored_blob(sha256, bytes).await?;
        }
        Ok(found)
    }

    async fn delete_blob(&self, sha256: &str) -> Result<bool, StateError> {
        validate_sha256(sha256)?;
        let existed = self
            .control_run(|| async {
                let store = self.modules().await?;
                if live_object(&store, sha256).await?.is_none() {
                    return Ok(false);
                }
                store.delete(sha256).await?;
                Ok(true)
            })
            .await?;
        Ok(self.count(existed))
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        validate_lease(name, holder, Some(ttl))?;
        let took = self
            .control_run(|| async {
                lease::take::<Lease>(&self.control_kv().await?, &lease_key(name), holder, ttl).await
            })
            .await?;
        Ok(self.count(took))
    }

    /// An expired lease is no longer held, even by its last holder: releasing it returns false
    /// and writes nothing (the next acquire replaces it).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StateError> {
        validate_lease(name, holder, None)?;
        let released = self
            .control_run(|| async {
                lease::release::<Lease>(&self.control_kv().await?, &lease_key(name), holder).await
            })
            .await?;
        Ok(self.count(released))
    }

    /// A watch of the key's subject in the control bucket (an ordered consumer delivering new
    /// writes only), ending at the first error.
    async fn record_changes(&self, key: &str) -> Result<RecordChanges, StateError> {
        validate_record_key("record key", key)?;
        let watch = self.control_run(async || Ok(self.control_kv().await?.watch(key).await?)).await?;
        Ok(watch.take_while(|entry| std::future::ready(entry.is_ok())).map(drop).boxed())
    }

    fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::provision::bucket_stream;
    use super::*;

    #[test]
    fn record_filters_narrow_by_whole_tokens() {
        assert_eq!(record_filter(""), ">");
        assert_eq!(record_filter("tenants/acme"), ">");
        assert_eq!(record_filter("a.b"), "a.>");
        assert_eq!(record_filter("a.b."), "a.b.>");
    }

    #[test]
    fn lease_keys_are_never_record_keys() {
        let key = lease_key("reconcile/apply");
        assert_eq!(key, "LEASE.reconcile/apply");
        assert!(validate_record_key("record key", &key).is_err());
        assert!(validate_record_prefix(LEASE_PREFIX).is_err());
    }

    #[test]
    fn chunks_fit_the_server_payload() {
        assert_eq!(blob_chunk_size(1 << 20), 512 << 10);
        assert_eq!(blob_chunk_size(8 << 20), 1 << 20);
        assert_eq!(blob_chunk_size(4096), 2048);
    }

    #[test]
    fn the_control_streams_have_no_direct_gets() {
        let kv = bucket_stream_config(CONTROL_BUCKET, 3, None);
        assert_eq!((kv.name.as_str(), kv.num_replicas, kv.allow_direct), ("KV_GOJINN_CONTROL", 3, false));
        assert_eq!(bucket_stream(CONTROL_BUCKET), kv.name);
        let modules = modules_stream_config(1);
        assert_eq!(modules.name, "OBJ_GOJINN_MODULES");
        assert!(!modules.allow_direct && modules.allow_rollup && !modules.deny_purge);
    }
}
