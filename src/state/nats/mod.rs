//! The NATS JetStream backend (DESIGN section 5): per tenant a KV bucket (values and locks), a
//! job-state KV bucket, a work-queue stream of jobs, a dead-letter stream and an audit stream,
//! all with the tenant's replicas. This module holds the connection and the per-tenant handle
//! caches; each capability lives in its own file. It never creates a tenant's resources outside
//! [`Provisioner::ensure_tenant`](crate::state::Provisioner): an unprovisioned tenant is
//! `StateError::NoTenant`, never an implicit bucket. The reconciler's shared control bucket and
//! module object store are the platform's, not a tenant's: they are created on first use (see
//! `control`).

mod audit;
mod control;
mod errors;
mod job_record;
mod jobs;
mod kv;
mod lease;
mod locks;
mod provision;
mod scan;

use crate::spec::Name;
use crate::state::{StateError, names};
use async_nats::jetstream::{self, consumer::PullConsumer, kv::Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// The smallest server `max_payload` that fits a maximal KV value with its subject and headers.
const MIN_MAX_PAYLOAD: usize = crate::state::MAX_VALUE_BYTES + 64 * 1024;

/// Internal result: NATS errors and [`StateError`]s travel boxed and are turned into one
/// `StateError` at the trait boundary by [`NatsBackend::fail`].
type NatsResult<T> = Result<T, async_nats::Error>;

/// A tenant's KV buckets, opened once and cached.
struct Buckets {
    kv: Store,
    jobs: Store,
}

/// The durable pull consumer of one function's jobs, with the `ack_wait` it was created with.
struct FunctionConsumer {
    ack_wait: Duration,
    consumer: PullConsumer,
}

/// A state backend on a NATS server or cluster. Cheap to share behind an `Arc`; one connection,
/// reconnected by async-nats.
pub struct NatsBackend {
    js: jetstream::Context,
    buckets: RwLock<HashMap<Name, Arc<Buckets>>>,
    consumers: Mutex<HashMap<(Name, Name), Arc<FunctionConsumer>>>,
    /// The control bucket and module store, opened (and created if absent) on first use.
    control: control::Handles,
    /// Provisioning and control calls that changed something (`Control::writes`).
    writes: AtomicU64,
}

impl NatsBackend {
    /// Connects to `url` (`nats://host:port`, or several separated by commas: seeds of a
    /// cluster). An unreachable server is `Unavailable`; later disconnections are retried by
    /// async-nats in the background.
    pub async fn connect(url: &str) -> Result<Self, StateError> {
        let seeds: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let client =
            async_nats::ConnectOptions::new().name("gojinn").connect(seeds.as_slice()).await.map_err(
                |err| match err.kind() {
                    async_nats::ConnectErrorKind::ServerParse => {
                        StateError::InvalidArgument(format!("invalid NATS URL {url:?}: {err}"))
                    }
                    _ => StateError::Unavailable(format!("cannot connect to NATS at {url}: {err}")),
                },
            )?;
        let max_payload = client.server_info().max_payload;
        if max_payload < MIN_MAX_PAYLOAD {
            tracing::warn!(
                url,
                max_payload,
                "the NATS server's max_payload is below {MIN_MAX_PAYLOAD} bytes: it will refuse KV values \
                 near the 1MiB limit and large job payloads; set max_payload: 8MB in its config"
            );
        }
        let chunk_size = control::blob_chunk_size(max_payload);
        Ok(Self {
            js: jetstream::new(client),
            buckets: RwLock::default(),
            consumers: Mutex::default(),
            control: control::Handles::new(1, chunk_size),
            writes: AtomicU64::new(0),
        })
    }

    /// Sets the replicas (1, 3 or 5) the control bucket and the module store get when this
    /// backend is the one that creates them (default 1). Existing ones keep theirs.
    pub fn with_control_replicas(mut self, replicas: u8) -> Result<Self, StateError> {
        if ![1, 3, 5].contains(&replicas) {
            return Err(StateError::InvalidArgument(format!(
                "control replicas must be 1, 3 or 5, not {replicas}"
            )));
        }
        self.control.replicas = replicas;
        Ok(self)
    }

    /// Counts one write in `Control::writes` if `changed`; returns `changed`.
    fn count(&self, changed: bool) -> bool {
        if changed {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// The tenant's KV buckets; `NoTenant` if it was never provisioned.
    async fn buckets(&self, tenant: &Name) -> NatsResult<Arc<Buckets>> {
        if let Some(found) = self.buckets.read().unwrap_or_else(PoisonError::into_inner).get(tenant) {
            return Ok(found.clone());
        }
        let opened = Arc::new(Buckets {
            kv: self.js.get_key_value(names::kv_bucket(tenant)).await?,
            jobs: self.js.get_key_value(names::job_state_bucket(tenant)).await?,
        });
        self.buckets.write().unwrap_or_else(PoisonError::into_inner).insert(tenant.clone(), opened.clone());
        Ok(opened)
    }

    /// The durable consumer of `function`'s jobs, created (or updated to a new `ack_wait`) on
    /// first use.
    async fn consumer(
        &self,
        tenant: &Name,
        function: &Name,
        ack_wait: Duration,
    ) -> NatsResult<Arc<FunctionConsumer>> {
        let key = (tenant.clone(), function.clone());
        let cached = self.consumers.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        if let Some(found) = cached.filter(|c| c.ack_wait == ack_wait) {
            return Ok(found);
        }
        let stream = self.js.get_stream_no_info(names::jobs_stream(tenant)).await?;
        let consumer = stream.create_consumer(jobs::consumer_config(tenant, function, ack_wait)).await?;
        let created = Arc::new(FunctionConsumer { ack_wait, consumer });
        self.consumers.lock().unwrap_or_else(PoisonError::into_inner).insert(key, created.clone());
        Ok(created)
    }

    fn forget_consumer(&self, tenant: &Name, function: &Name) {
        let key = (tenant.clone(), function.clone());
        self.consumers.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
    }

    /// Drops every cached handle of `tenant` (after removal, or when its resources vanished).
    fn forget(&self, tenant: &Name) {
        self.buckets.write().unwrap_or_else(PoisonError::into_inner).remove(tenant);
        self.consumers.lock().unwrap_or_else(PoisonError::into_inner).retain(|(t, _), _| t != tenant);
    }

    /// Runs `work` for `tenant`, turning its error into the trait's error.
    async fn run<T>(
        &self,
        tenant: &Name,
        work: impl Future<Output = NatsResult<T>>,
    ) -> Result<T, StateError> {
        match work.await {
            Ok(done) => Ok(done),
            Err(err) => Err(self.fail(tenant, err).await),
        }
    }

    /// Turns an internal error into the trait's error. No stream answering a publish means either
    /// that the tenant is gone or that its stream has no leader yet (just created, or a node
    /// died); the JetStream API tells which. A gone tenant's cached handles are forgotten.
    async fn fail(&self, tenant: &Name, err: async_nats::Error) -> StateError {
        let err = errors::to_state_error(tenant, err);
        if !matches!(err, StateError::NoTenant(_)) {
            return err;
        }
        match self.js.get_stream(provision::bucket_stream(&names::kv_bucket(tenant))).await {
            Ok(_) => {
                StateError::Unavailable(format!("a stream of tenant {tenant} has no leader yet; try again"))
            }
            Err(lookup) => match errors::to_state_error(tenant, lookup.into()) {
                StateError::NoTenant(_) => {
                    self.forget(tenant);
                    err
                }
                other => other,
            },
        }
    }
}
