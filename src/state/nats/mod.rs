//! The NATS JetStream backend (DESIGN section 5): per tenant a KV bucket (values and locks), a
//! job-state KV bucket, a work-queue stream of jobs, a dead-letter stream and an audit stream,
//! all with the tenant's replicas. This module holds the connection and the per-tenant handle
//! caches; each capability lives in its own file. It never creates a tenant's resources outside
//! [`Provisioner::ensure_tenant`](crate::state::Provisioner): an unprovisioned tenant is
//! `StateError::NoTenant`, never an implicit bucket. The reconciler's shared control bucket and
//! module object store are the platform's, not a tenant's: they are created on first use (see
//! `control`).
//!
//! The connection is made in one place, [`NatsBackend::open`], with the credentials and TLS of
//! the `state:` settings (see `connect`). It is watched (async-nats's connection events): a
//! disconnect is logged at WARN with what it affects and a reconnect at INFO, [`Reachability`]
//! says whether the node is connected, and while it is not every call fails at once with
//! `Unavailable` rather than being queued by the client for a later reconnect. Calls are bounded by the configured timeout
//! (`state.timeout`); only provisioning and whole-log reads, which may legitimately take
//! longer, are not.

mod audit;
mod connect;
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
use crate::state::{Reachability, StateError, StateSettings, names};
use async_nats::jetstream::{self, consumer::PullConsumer, kv::Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The smallest server `max_payload` that fits a maximal KV value with its subject and headers.
const MIN_MAX_PAYLOAD: usize = crate::state::MAX_VALUE_BYTES + 64 * 1024;
/// How long a call waits for NATS when no timeout is configured (`state.timeout`'s default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest timeout: below it, ordinary calls would fail on a healthy server.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// What a lost connection to NATS affects, as the warning says it.
const AFFECTED: &str = "KV, locks, jobs, async calls and receipts are unavailable until it is back \
    (calls that need them answer 503 unavailable, guests get -5, readiness reports not ready)";

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

/// How long a request that creates, changes or deletes a stream may wait: four times the
/// timeout, at least 10 s. The meta leader commits such a request through its Raft group, and
/// with replicas 3 a new Raft group is started, which takes seconds on a busy cluster; a
/// provisioning pass is not a call anybody waits on.
fn provisioning_timeout(timeout: Duration) -> Duration {
    (timeout * 4).max(Duration::from_secs(10))
}

/// A state backend on a NATS server or cluster. Cheap to share behind an `Arc`; one connection,
/// reconnected by async-nats.
pub struct NatsBackend {
    client: async_nats::Client,
    link: Arc<Link>,
    /// How long a call may wait for NATS.
    timeout: Duration,
    js: jetstream::Context,
    /// `js` with a longer timeout, for creating, changing and deleting streams (see
    /// [`provisioning_timeout`]).
    provisioning: jetstream::Context,
    buckets: RwLock<HashMap<Name, Arc<Buckets>>>,
    consumers: Mutex<HashMap<(Name, Name), Arc<FunctionConsumer>>>,
    /// The control bucket and module store, opened (and created if absent) on first use.
    control: control::Handles,
    /// Provisioning and control calls that changed something (`Control::writes`).
    writes: AtomicU64,
}

impl NatsBackend {
    /// Connects to `url` (`nats://host:port`, or several separated by commas: seeds of a
    /// cluster) without credentials or TLS, as [`NatsBackend::open`] does with the defaults.
    pub async fn connect(url: &str) -> Result<Self, StateError> {
        Self::open(&StateSettings::nats(url)).await
    }

    /// Connects to the servers of `settings.natsUrl` with its credentials and TLS, within
    /// `settings.timeout` (at least 100 ms), which then bounds every call. Every connection a
    /// node or a command makes to NATS is made here. Settings that may not connect (plaintext
    /// to another machine, a secret file that cannot be read) are `InvalidArgument`; refused
    /// credentials or certificates and an unreachable server are `Unavailable`, naming the
    /// servers and what was refused. Later disconnections are retried by async-nats.
    pub async fn open(settings: &StateSettings) -> Result<Self, StateError> {
        let timeout = settings.timeout.0.max(MIN_TIMEOUT);
        let seeds = settings.seeds();
        let link = Arc::new(Link::new(seeds.join(",")));
        let events = link.clone();
        let options = async_nats::ConnectOptions::new()
            .name("gojinn")
            .connection_timeout(timeout)
            .event_callback(move |event| {
                let link = events.clone();
                async move { link.event(event) }
            });
        let options = connect::secure(options, settings).await?;
        let client = match tokio::time::timeout(timeout, options.connect(seeds.as_slice())).await {
            Ok(connected) => connected.map_err(|error| connect::refused(error, &link.url, settings))?,
            Err(_) => {
                return Err(StateError::Unavailable(format!(
                    "cannot connect to NATS at {}: no answer within {timeout:?} (state.timeout)",
                    link.url
                )));
            }
        };
        let max_payload = client.server_info().max_payload;
        if max_payload < MIN_MAX_PAYLOAD {
            tracing::warn!(
                url = %link.url,
                max_payload,
                "the NATS server's max_payload is below {MIN_MAX_PAYLOAD} bytes: it will refuse KV values \
                 near the 1MiB limit and large job payloads; set max_payload: 8MB in its config"
            );
        }
        let chunk_size = control::blob_chunk_size(max_payload);
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        let mut provisioning = js.clone();
        provisioning.set_timeout(provisioning_timeout(timeout));
        Ok(Self {
            client,
            link,
            timeout,
            js,
            provisioning,
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

    /// Runs `work` for `tenant`, turning its error into the trait's error: at once
    /// `Unavailable` while disconnected, and `Unavailable` once it has taken the timeout.
    async fn run<T>(
        &self,
        tenant: &Name,
        work: impl Future<Output = NatsResult<T>>,
    ) -> Result<T, StateError> {
        self.run_within(tenant, self.timeout, work).await
    }

    /// [`Self::run`] with a bound of `bound` (a fetch waits for jobs before its timeout runs).
    async fn run_within<T>(
        &self,
        tenant: &Name,
        bound: Duration,
        work: impl Future<Output = NatsResult<T>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout(bound, self.run_unbounded(tenant, work)).await {
            Ok(done) => done,
            Err(_) => Err(StateError::Unavailable(format!("NATS did not answer within {bound:?}"))),
        }
    }

    /// [`Self::run`] without its bound, for work that may take longer than a call (provisioning
    /// streams, reading a whole log): each request in it is still bounded by the timeout (a
    /// stream's creation, change or deletion by [`provisioning_timeout`]).
    async fn run_unbounded<T>(
        &self,
        tenant: &Name,
        work: impl Future<Output = NatsResult<T>>,
    ) -> Result<T, StateError> {
        self.connected()?;
        match work.await {
            Ok(done) => Ok(done),
            Err(err) => Err(self.fail(tenant, err).await),
        }
    }

    /// `Unavailable` unless connected: a request made while disconnected would wait in the
    /// client for a reconnect, and be sent whenever that comes, long after its caller gave up.
    fn connected(&self) -> Result<(), StateError> {
        match self.unreachable() {
            Some(why) => Err(StateError::Unavailable(why)),
            None => Ok(()),
        }
    }

    /// Turns an internal error into the trait's error. No stream answering a publish means either
    /// that the tenant is gone or that its stream has no leader yet (just created, or a node
    /// died); the JetStream API tells which, within a quarter of the timeout: a stream that
    /// exists without a leader leaves the lookup unanswered too, and its caller is told then
    /// rather than after the whole timeout. Only a lookup that finds no stream makes it
    /// `NoTenant` (and the tenant's cached handles are forgotten); any other failure of it
    /// (JetStream without quorum, say) leaves the call `Unavailable`.
    async fn fail(&self, tenant: &Name, err: async_nats::Error) -> StateError {
        let err = errors::to_state_error(tenant, err);
        if !matches!(err, StateError::NoTenant(_)) {
            return err;
        }
        let no_leader =
            || StateError::Unavailable(format!("a stream of tenant {tenant} has no leader yet; try again"));
        let lookup = self.js.get_stream(provision::bucket_stream(&names::kv_bucket(tenant)));
        let Ok(found) = tokio::time::timeout(self.timeout / 4, lookup).await else { return no_leader() };
        match found {
            Ok(_) => no_leader(),
            Err(lookup) => match errors::to_state_error(tenant, lookup.into()) {
                StateError::NoTenant(_) => {
                    self.forget(tenant);
                    err
                }
                // Nothing says the tenant is gone: the stream is there, unreachable for now.
                other => StateError::Unavailable(format!(
                    "no stream of tenant {tenant} answered, and looking it up failed: {other}"
                )),
            },
        }
    }
}

impl Reachability for NatsBackend {
    fn unreachable(&self) -> Option<String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            _ => Some(self.link.down()),
        }
    }
}

/// What the node knows of its connection to NATS, from the client's events.
struct Link {
    /// The servers (never with credentials: `nats_problems` refuses them in the URL).
    url: String,
    /// Since when the connection is lost (`None` while connected).
    lost: Mutex<Option<Instant>>,
}

impl Link {
    fn new(url: String) -> Self {
        Self { url, lost: Mutex::new(None) }
    }

    /// Logs a connection event, and remembers when the connection was lost.
    fn event(&self, event: async_nats::Event) {
        let url = &self.url;
        let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            async_nats::Event::Disconnected => {
                lost.get_or_insert_with(Instant::now);
                tracing::warn!("lost the connection to NATS at {url}; reconnecting. {AFFECTED}");
            }
            async_nats::Event::Connected => match lost.take() {
                Some(since) => tracing::info!(
                    "reconnected to NATS at {url} after {:.1}s; state calls and receipts resume",
                    since.elapsed().as_secs_f64()
                ),
                None => tracing::debug!("connected to NATS at {url}"),
            },
            async_nats::Event::Closed => tracing::debug!("the connection to NATS at {url} is closed"),
            async_nats::Event::LameDuckMode => {
                tracing::warn!("the NATS server at {url} is shutting down (lame duck mode)")
            }
            // Each failed reconnection attempt reports one; the loss was reported already.
            async_nats::Event::ClientError(error) if lost.is_some() => {
                tracing::debug!("reconnecting to NATS at {url}: {error}")
            }
            other => tracing::warn!("NATS at {url}: {other}"),
        }
    }

    /// Why the node cannot reach NATS now. Without the servers' addresses: this reaches callers
    /// and guests (the warning in the node's log names them).
    fn down(&self) -> String {
        match *self.lost.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(since) => format!("not connected to NATS (for {:.1}s)", since.elapsed().as_secs_f64()),
            None => "not connected to NATS".to_owned(),
        }
    }
}
