//! State backends: the traits every backend implements (KV, locks, jobs, audit log, tenant
//! provisioning, the reconciler's control records) and the types they exchange. Two implementations, tested by one conformance
//! suite: `embedded` (a local store under the data dir, the default) and `nats` (JetStream).
//!
//! Every operation is scoped to a tenant by a validated [`Name`]; a backend must make it
//! impossible for one tenant's call to reach another tenant's data.

pub mod egress;
pub mod embedded;
pub mod names;
pub mod nats;
mod settings;
pub mod sql;
mod validate;

pub use settings::{BackendKind, NatsAuth, NatsTls, SettingProblem, StateSettings};
pub use validate::{MAX_KEY_BYTES, MAX_VALUE_BYTES, validate_key};

use crate::spec::Name;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why a state operation failed. Host functions map these to guest error codes.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Quota(String),
    #[error("tenant {0} is not provisioned")]
    NoTenant(Name),
    #[error("the state backend is unavailable: {0}")]
    Unavailable(String),
    #[error("state backend error: {0}")]
    Internal(String),
}

impl crate::failure::PublicError for StateError {
    fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            StateError::NoTenant(_) => StatusCode::NOT_FOUND,
            StateError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            StateError::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
            StateError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StateError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StateError::NoTenant(_) => "no_tenant",
            StateError::InvalidArgument(_) => "invalid_argument",
            StateError::Quota(_) => "quota",
            StateError::Unavailable(_) => "unavailable",
            StateError::Internal(_) => "internal",
        }
    }

    fn internal_detail(&self) -> Option<&str> {
        match self {
            StateError::Internal(detail) => Some(detail),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        matches!(self, StateError::Unavailable(_)).then_some(crate::failure::RETRY_SOON_SECS)
    }
}

/// What provisioning needs to know of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantResources {
    pub name: Name,
    /// 1, 3 or 5.
    pub replicas: u8,
    /// Bytes the tenant's KV bucket may hold (`None`: unlimited).
    pub kv_max_bytes: Option<u64>,
    /// Keys the tenant's KV bucket may hold (`None`: unlimited).
    pub kv_max_keys: Option<u32>,
}

/// Creates and deletes a tenant's resources. Both are idempotent: ensuring an existing tenant
/// with the same settings changes nothing; removing an absent one succeeds.
#[async_trait]
pub trait Provisioner: Send + Sync {
    /// Creates or updates the tenant's resources; returns whether anything was written.
    async fn ensure_tenant(&self, tenant: &TenantResources) -> Result<bool, StateError>;
    /// Deletes the tenant's resources; returns whether anything existed.
    async fn remove_tenant(&self, tenant: &Name) -> Result<bool, StateError>;
    /// How the tenant's resources differ from what `tenant` asks for, one readable line per
    /// difference (a missing stream, a changed replica count or quota); empty when they match.
    /// A tenant without any resources reports each as missing. Reads only.
    async fn drift(&self, tenant: &TenantResources) -> Result<Vec<String>, StateError>;
}

/// Changes to a control record ([`Control::record_changes`]).
pub type RecordChanges = futures::stream::BoxStream<'static, ()>;

/// The reconciler's shared records (DESIGN section 5, "the desired/applied state in a control
/// KV bucket"): applied resource records by key, module blobs by sha256, and leases. Every node
/// of a cluster reads the same records, so any node can serve what one node applied.
///
/// Record keys are 1 to 256 bytes of `[a-z0-9/._-]`. Every mutating call that changes something
/// counts one write in [`Control::writes`], as do provisioning calls that change something.
#[async_trait]
pub trait Control: Send + Sync {
    /// Every record whose key starts with `prefix`, by key.
    async fn records(&self, prefix: &str) -> Result<std::collections::BTreeMap<String, Bytes>, StateError>;
    /// Stores a record; returns whether it changed (an identical value writes nothing).
    async fn put_record(&self, key: &str, value: Bytes) -> Result<bool, StateError>;
    /// Deletes a record; returns whether it existed.
    async fn delete_record(&self, key: &str) -> Result<bool, StateError>;
    /// The sha256 (lowercase hex) of every stored module blob.
    async fn blobs(&self) -> Result<std::collections::BTreeSet<String>, StateError>;
    /// Stores a module blob under its sha256, which the backend checks; storing a present blob
    /// writes nothing. Returns whether it wrote.
    async fn put_blob(&self, sha256: &str, bytes: Bytes) -> Result<bool, StateError>;
    /// A module blob's bytes, checked against `sha256` (a damaged blob is an error, not bytes).
    async fn blob(&self, sha256: &str) -> Result<Option<Bytes>, StateError>;
    /// Deletes a blob; returns whether it existed.
    async fn delete_blob(&self, sha256: &str) -> Result<bool, StateError>;
    /// Takes the lease `name` for `holder` until `ttl` from now, or renews it if `holder` has it;
    /// true if `holder` holds it on return. Another holder's lease is taken only once expired.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StateError>;
    /// Gives the lease up if `holder` has it; true if it did.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StateError>;
    /// Tells of changes to the record `key` made after this call, by any node: the stream yields
    /// at least once after each write or delete of it (it may yield for others too, or twice),
    /// and ends when the backend can no longer watch (the connection or stream went away): the
    /// caller reads the record again and watches anew.
    async fn record_changes(&self, key: &str) -> Result<RecordChanges, StateError>;
    /// Writes this backend object made through provisioning and control calls since it was
    /// opened: what tests and benchmarks count to prove an apply idempotent.
    fn writes(&self) -> u64;
}

/// A tenant's key-value store. Keys are validated with [`validate_key`].
#[async_trait]
pub trait KvStore: Send + Sync {
    async fn get(&self, tenant: &Name, key: &str) -> Result<Option<Bytes>, StateError>;
    async fn put(&self, tenant: &Name, key: &str, value: Bytes) -> Result<(), StateError>;
    /// Deleting an absent key succeeds.
    async fn delete(&self, tenant: &Name, key: &str) -> Result<(), StateError>;
    /// Keys starting with `prefix`, sorted, at most `limit`.
    async fn keys(&self, tenant: &Name, prefix: &str, limit: usize) -> Result<Vec<String>, StateError>;
    /// Sets `key` to `new` if its current value is `expected` (`None`: the key must be absent).
    /// Returns whether it swapped.
    async fn cas(
        &self,
        tenant: &Name,
        key: &str,
        expected: Option<Bytes>,
        new: Bytes,
    ) -> Result<bool, StateError>;
}

/// Advisory locks with an owner and a time to live: a crashed holder's lock expires, and only
/// the owner can release it.
#[async_trait]
pub trait Locks: Send + Sync {
    /// Takes `key` for `owner` for `ttl`; true if taken (or already held by `owner`, which renews it).
    async fn lock(&self, tenant: &Name, key: &str, owner: &str, ttl: Duration) -> Result<bool, StateError>;
    /// Releases `key` if `owner` holds it; true if released.
    async fn unlock(&self, tenant: &Name, key: &str, owner: &str) -> Result<bool, StateError>;
}

/// A job to run a function asynchronously.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    pub tenant: Name,
    pub function: Name,
    /// The guest request envelope (JSON) the job will be run with.
    pub payload: Bytes,
    /// Jobs with the same tenant and idempotency key are one job.
    pub idempotency_key: Option<String>,
    /// W3C traceparent of the request that enqueued the job.
    pub traceparent: Option<String>,
}

impl NewJob {
    /// `Quota` when the payload is larger than `max` bytes ([`Jobs::max_job_bytes`]).
    pub fn check_size(&self, max: usize) -> Result<(), StateError> {
        match self.payload.len() <= max {
            true => Ok(()),
            false => Err(StateError::Quota(format!(
                "the job's payload is {} bytes, more than the {max} bytes the state backend stores for a job",
                self.payload.len()
            ))),
        }
    }
}

/// Delivery settings of a function's jobs.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPolicy {
    /// Deliveries before the job goes to the dead-letter queue.
    pub max_deliver: u32,
    /// Waits between attempts; the last repeats.
    pub backoff: Vec<Duration>,
    /// How long a delivery may stay unacknowledged before it is redelivered; longer than the
    /// function timeout. Workers extend it with [`Jobs::in_progress`].
    pub ack_wait: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Dead,
}

/// A job as `GET /_gojinn/v1/jobs/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub tenant: Name,
    pub function: Name,
    pub status: JobStatus,
    pub attempts: u32,
    /// The guest's response envelope (JSON) once it succeeded.
    pub result: Option<serde_json::Value>,
    /// The last error.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// One delivery of a job to a worker.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub job_id: String,
    pub tenant: Name,
    pub function: Name,
    pub payload: Bytes,
    pub traceparent: Option<String>,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// Backend-specific handle to ack, nak or extend this delivery.
    pub handle: DeliveryHandle,
}

/// Opaque to everything but the backend that made it.
#[derive(Clone, Debug)]
pub struct DeliveryHandle(pub Arc<dyn std::any::Any + Send + Sync>);

/// How a delivery ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    Succeeded {
        result: serde_json::Value,
    },
    /// Retried after the backoff, or dead-lettered after the last allowed attempt.
    Failed {
        error: String,
    },
    /// Succeeded, with a result cut to fit [`Jobs::max_job_bytes`] (see `jobs::fit`); the job
    /// records `error`, which says so.
    Truncated {
        result: serde_json::Value,
        error: String,
    },
}

/// Durable job queues with at-least-once delivery, redelivery after `ack_wait`, backoff,
/// a dead-letter queue after `max_deliver`, and status by id.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// The most bytes this backend stores for one job: a payload (a larger one is refused at
    /// enqueue with `Quota`), and a result's JSON (a larger one must be cut to fit before
    /// [`Jobs::finish`]). On NATS, the server's `max_payload` less room for headers and the
    /// job's record.
    fn max_job_bytes(&self) -> usize;
    /// Queues a job (or returns the id of the job with the same idempotency key).
    async fn enqueue(&self, job: NewJob) -> Result<String, StateError>;
    async fn job(&self, tenant: &Name, id: &str) -> Result<Option<JobRecord>, StateError>;
    /// Jobs of a tenant, newest first, at most `limit`; `status` filters.
    async fn list(
        &self,
        tenant: &Name,
        status: Option<JobStatus>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StateError>;
    /// Waits up to `wait` for up to `max` deliveries of `function`'s jobs.
    async fn fetch(
        &self,
        tenant: &Name,
        function: &Name,
        policy: &JobPolicy,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, StateError>;
    /// Extends the delivery's ack deadline by the policy's `ack_wait`.
    async fn in_progress(&self, delivery: &Delivery) -> Result<(), StateError>;
    /// Records the outcome and acknowledges, retries or dead-letters the delivery.
    async fn finish(
        &self,
        delivery: &Delivery,
        policy: &JobPolicy,
        outcome: Outcome,
    ) -> Result<JobStatus, StateError>;
    /// Hands an unfinished delivery back (its node is stopping): the job is queued again at
    /// once for any worker, with an error saying so. The attempt counts towards `max_deliver`,
    /// as every delivery does on NATS.
    async fn release(&self, delivery: &Delivery) -> Result<(), StateError>;
    /// Puts a dead job back in its queue with a fresh attempt count.
    async fn redrive(&self, tenant: &Name, id: &str) -> Result<(), StateError>;
}

/// A tenant's append-only audit log.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends a record; returns its sequence number (from 1, increasing).
    ///
    /// Idempotent for a retry: a record byte for byte the same as one the log just stored is not
    /// stored again, and its sequence is returned. "Just" is the backend's duplicate window: the
    /// stream's `duplicate_window` on NATS (the record's SHA-256 is its `Nats-Msg-Id`), the
    /// log's last record in the embedded store (its only writer retries before anything else).
    /// A retry after a longer outage must first look for the record in the log's tail, as the
    /// recorder's appender does.
    async fn append(&self, tenant: &Name, record: Bytes) -> Result<u64, StateError>;
    /// Records with sequence `>= from`, at most `limit`.
    async fn read(&self, tenant: &Name, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StateError>;
}

/// Whether a backend can be reached now: what readiness reports, and what lets a call that
/// needs the backend fail at once rather than wait for it.
pub trait Reachability: Send + Sync {
    /// Why the backend cannot be reached now; `None` when it can, as far as the node knows.
    fn unreachable(&self) -> Option<String>;
}

/// A state backend: every capability, shared.
#[derive(Clone)]
pub struct State {
    pub provisioner: Arc<dyn Provisioner>,
    pub kv: Arc<dyn KvStore>,
    pub locks: Arc<dyn Locks>,
    pub jobs: Arc<dyn Jobs>,
    pub audit: Arc<dyn AuditLog>,
    pub control: Arc<dyn Control>,
    pub reachability: Arc<dyn Reachability>,
}

impl State {
    /// One backend object serving every capability.
    pub fn from_backend<B>(backend: Arc<B>) -> Self
    where
        B: Provisioner + KvStore + Locks + Jobs + AuditLog + Control + Reachability + 'static,
    {
        Self {
            provisioner: backend.clone(),
            kv: backend.clone(),
            locks: backend.clone(),
            jobs: backend.clone(),
            audit: backend.clone(),
            control: backend.clone(),
            reachability: backend,
        }
    }
}

/// Opens the configured backend: the embedded store under `data_dir/state`, or a NATS server.
pub async fn open(settings: &StateSettings, data_dir: &Path) -> Result<State, StateError> {
    Ok(match settings.backend {
        BackendKind::Embedded => {
            let max_job_bytes = usize::try_from(settings.max_job_bytes.bytes()).unwrap_or(usize::MAX);
            let backend = embedded::EmbeddedBackend::open(&data_dir.join("state"))?;
            State::from_backend(Arc::new(backend.with_max_job_bytes(max_job_bytes)))
        }
        BackendKind::Nats => {
            let backend = nats::NatsBackend::open(settings).await?;
            State::from_backend(Arc::new(backend.with_control_replicas(settings.control_replicas)?))
        }
    })
}

/// Opens the configured backend to read it beside the node that writes it (`gojinn plan`):
/// the embedded store read-only (an empty one when there is none yet, so nothing is created);
/// a NATS server as [`open`] does.
pub async fn open_read_only(settings: &StateSettings, data_dir: &Path) -> Result<State, StateError> {
    match settings.backend {
        BackendKind::Embedded => Ok(State::from_backend(Arc::new(
            embedded::EmbeddedBackend::open_read_only(&data_dir.join("state"))?,
        ))),
        BackendKind::Nats => open(settings, data_dir).await,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The error a job records when [`Jobs::release`] hands back its attempt `attempt`.
fn handed_back(attempt: u32) -> String {
    format!("attempt {attempt} was handed back unfinished when its node stopped")
}
