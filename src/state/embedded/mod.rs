//! The embedded state backend: every state capability in one local redb database,
//! `state.redb` under the data dir, for a single node with no external service; except the
//! audit logs, each tenant's an append-only file under `audit/` beside it (see `audit`).
//!
//! Every acknowledged write is a committed redb transaction or a synced append (immediate
//! durability: fsync'd before the call returns), so it survives a crash of the process. redb blocks, so each
//! transaction runs on tokio's blocking pool and never on the async executor. Tenant isolation is
//! structural: every table is keyed by a tuple whose first element is the tenant (see `tables`).

mod audit;
pub(crate) mod audit_file;
mod control;
mod error;
mod jobs;
mod kv;
mod locks;
mod queue;
mod tables;
mod tenants;

use crate::state::{Reachability, StateError};
use audit::ChainLogs;
use audit_file::Access;
use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, WriteTransaction,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// The database file under the directory given to [`EmbeddedBackend::open`].
pub const FILE_NAME: &str = "state.redb";

/// The most bytes of one job (payload, result) the embedded store keeps unless configured
/// (`state.maxJobBytes`): the `max_payload` the README asks NATS servers to have, so a spec that
/// works on one backend works on the other.
pub const DEFAULT_MAX_JOB_BYTES: usize = 8 << 20;

/// The embedded backend. Wrap it with [`crate::state::State::from_backend`].
pub struct EmbeddedBackend {
    db: Arc<Handle>,
    /// The tenants' audit logs.
    chain_logs: ChainLogs,
    /// [`crate::state::Jobs::max_job_bytes`].
    max_job_bytes: usize,
    clock: Clock,
    /// Woken whenever a job may have become visible sooner than a waiting fetch expects
    /// (enqueue, retry, redrive), so fetches sleep instead of polling.
    jobs_changed: Notify,
    /// Provisioning and control calls that changed something (`Control::writes`).
    writes: AtomicU64,
    /// Counts changed control records: what `Control::record_changes` watches. This backend is
    /// the database's only writer, so every change passes here.
    records_changed: tokio::sync::watch::Sender<u64>,
}

/// A local file: reachable while the node runs.
impl Reachability for EmbeddedBackend {
    fn unreachable(&self) -> Option<String> {
        None
    }
}

impl EmbeddedBackend {
    /// Opens `dir/state.redb` and the audit logs in `dir/audit/`, creating the directory and the
    /// database if needed (each audit log on its first use). Blocks on file
    /// I/O: call it at startup or from a blocking task. Fails with `Unavailable` if another
    /// backend (in this or another process) has the same database open for writing; readers
    /// ([`Self::open_read_only`]) may share it.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StateError::Unavailable(format!("cannot create state dir {}: {e}", dir.display()))
        })?;
        let db = Database::builder().set_concurrency_mode(SHARING).create(dir.join(FILE_NAME))?;
        create_tables(&db)?;
        Ok(Self::with_handle(Handle::Writable(db), ChainLogs::new(dir, Access::Write)))
    }

    /// Opens `dir/state.redb` and the audit logs for reading only, beside the node that may have
    /// them open for writing (`gojinn plan`). Writes nothing to disk: without a database yet, the store is an
    /// empty one in memory. Every write fails with `Unavailable`.
    pub fn open_read_only(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
            create_tables(&db)?;
            return Ok(Self::with_handle(Handle::Empty(db), ChainLogs::new(dir, Access::Read)));
        }
        let db = Database::builder().set_concurrency_mode(SHARING).open_read_only(path)?;
        Ok(Self::with_handle(Handle::ReadOnly(db), ChainLogs::new(dir, Access::Read)))
    }

    /// The same backend, storing jobs (payloads, results) of at most `bytes`.
    pub fn with_max_job_bytes(self, bytes: usize) -> Self {
        Self { max_job_bytes: bytes, ..self }
    }

    fn with_handle(db: Handle, chain_logs: ChainLogs) -> Self {
        Self {
            db: Arc::new(db),
            chain_logs,
            max_job_bytes: DEFAULT_MAX_JOB_BYTES,
            clock: Clock::default(),
            jobs_changed: Notify::new(),
            writes: AtomicU64::new(0),
            records_changed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Runs `op` in a write transaction on the blocking pool and commits it if `op` succeeds;
    /// an error aborts the transaction, so a failed operation changes nothing.
    async fn write<T, F>(&self, op: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StateError> + Send + 'static,
    {
        self.write_if_changed(move |txn| Ok((op(txn)?, true))).await
    }

    /// Like [`Self::write`] for an operation that may change nothing: `op` returns its value and
    /// whether it wrote. An unchanged transaction is aborted rather than committed, so a refused
    /// lock, a failed compare-and-set or an empty fetch costs no disk flush.
    async fn write_if_changed<T, F>(&self, op: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<(T, bool), StateError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        blocking(move || {
            let txn = db.begin_write()?;
            let (value, changed) = op(&txn)?;
            if changed {
                txn.commit()?;
            } else {
                txn.abort()?;
            }
            Ok(value)
        })
        .await
    }

    /// Counts one write in `Control::writes` if `changed`; returns `changed`.
    fn count(&self, changed: bool) -> bool {
        if changed {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// Runs `op` on a read snapshot on the blocking pool.
    async fn read<T, F>(&self, op: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StateError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        blocking(move || op(&db.begin_read()?)).await
    }
}

/// How processes share the database file: one writer (the node, or `gojinn apply`) and any
/// number of readers (`gojinn plan`) following its commits. It costs the writer: commits are
/// two-phase and every transaction takes byte-range locks; `benches/state.rs` measured embedded
/// puts at about a third of `ExclusiveWriter`'s rate (183 vs 558/s sequential), gets about 15%
/// slower, tenant provisioning 3.5 times slower. `ExclusiveWriter` would refuse `gojinn plan`
/// while a node runs.
const SHARING: ConcurrencyMode = ConcurrencyMode::SingleWriter;

/// The database, open for writing or for reading only.
enum Handle {
    Writable(Database),
    ReadOnly(ReadOnlyDatabase),
    /// No database yet, read: an empty one in memory.
    Empty(Database),
}

impl Handle {
    fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Handle::Writable(db) | Handle::Empty(db) => db.begin_read(),
            Handle::ReadOnly(db) => db.begin_read(),
        }
    }

    fn begin_write(&self) -> Result<WriteTransaction, StateError> {
        match self {
            Handle::Writable(db) => Ok(db.begin_write()?),
            Handle::ReadOnly(_) | Handle::Empty(_) => {
                Err(StateError::Unavailable("the embedded store is open read-only".into()))
            }
        }
    }
}

fn create_tables(db: &Database) -> Result<(), StateError> {
    let txn = db.begin_write()?;
    tables::create_all(&txn)?;
    Ok(txn.commit()?)
}

async fn blocking<T, F>(op: F) -> Result<T, StateError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StateError> + Send + 'static,
{
    tokio::task::spawn_blocking(op)
        .await
        .map_err(|e| StateError::Internal(format!("embedded store transaction did not complete: {e}")))?
}

/// Wall-clock Unix milliseconds that never go backwards within the process.
///
/// Lock expiries, leases and backoff deadlines are stored and must still mean something after a
/// restart, so they are wall-clock times, not `Instant`s. Clamping to the largest value seen means
/// a clock stepped back (NTP) cannot make an expired lock or lease live again within one process;
/// across a restart such a step only lengthens deadlines by the step. A clock stepped forward
/// shortens them: the embedded backend trusts the host's clock that far.
#[derive(Default)]
struct Clock {
    latest: AtomicU64,
}

impl Clock {
    fn now_ms(&self) -> u64 {
        self.observe(crate::state::now_ms())
    }

    fn observe(&self, wall_ms: u64) -> u64 {
        self.latest.fetch_max(wall_ms, Ordering::Relaxed).max(wall_ms)
    }
}

/// `now + duration` in milliseconds, saturating.
fn deadline_ms(now: u64, duration: Duration) -> u64 {
    now.saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod testing {
    //! Fixtures for the unit tests of the embedded backend's modules.

    use super::EmbeddedBackend;
    use crate::spec::Name;
    use crate::state::{Provisioner, TenantResources};

    pub fn name(raw: &str) -> Name {
        Name::new(raw).unwrap()
    }

    /// A backend on a fresh temp dir (keep the dir alive as long as the backend).
    pub fn backend() -> (tempfile::TempDir, EmbeddedBackend) {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::open(dir.path()).unwrap();
        (dir, backend)
    }

    /// Provisions `tenant` with an optional KV quota.
    pub async fn provision(backend: &EmbeddedBackend, tenant: &str, kv_max_bytes: Option<u64>) -> Name {
        let name = name(tenant);
        let resources = TenantResources { name: name.clone(), replicas: 1, kv_max_bytes, kv_max_keys: None };
        backend.ensure_tenant(&resources).await.unwrap();
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_never_goes_backwards() {
        let clock = Clock::default();
        assert_eq!(clock.observe(1_000), 1_000);
        assert_eq!(clock.observe(900), 1_000, "a clock stepped back is clamped");
        assert_eq!(clock.observe(1_200), 1_200);
    }

    #[test]
    fn deadlines_saturate() {
        assert_eq!(deadline_ms(5, Duration::from_millis(7)), 12);
        assert_eq!(deadline_ms(u64::MAX - 1, Duration::MAX), u64::MAX);
    }

    #[test]
    fn a_second_open_of_the_same_dir_is_unavailable() {
        let (dir, _backend) = testing::backend();
        let err = EmbeddedBackend::open(dir.path()).err().expect("the database is already open");
        assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_reader_shares_the_store_with_its_writer_and_writes_nothing() {
        use crate::state::Control;
        let (dir, writer) = testing::backend();
        writer.put_record("applied/x", bytes::Bytes::from_static(b"1")).await.unwrap();
        let reader = EmbeddedBackend::open_read_only(dir.path()).expect("a reader beside the writer");
        assert_eq!(reader.records("applied/").await.unwrap().len(), 1, "the writer's commit is seen");
        let refused = reader.put_record("applied/y", bytes::Bytes::from_static(b"2")).await.unwrap_err();
        assert!(matches!(refused, StateError::Unavailable(_)), "{refused:?}");

        let fresh = dir.path().join("none");
        let empty = EmbeddedBackend::open_read_only(&fresh).unwrap();
        assert!(empty.records("applied/").await.unwrap().is_empty());
        let refused = empty.put_record("applied/y", bytes::Bytes::from_static(b"2")).await.unwrap_err();
        assert!(matches!(refused, StateError::Unavailable(_)), "{refused:?}");
        assert!(!fresh.exists(), "nothing is created on disk");
    }

    #[test]
    fn open_creates_the_directory_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        EmbeddedBackend::open(&nested).unwrap();
        assert!(nested.join(FILE_NAME).is_file());
    }
}
