//! The recorder: takes the draft of every execution's receipt, gives it its id at once, and
//! queues it for its tenant's appender (see `appender`), which seals and appends in order off the
//! request path. Each tenant has an appender of its own (a lane), so a tenant whose audit log
//! cannot be written (its stream's servers down, say) holds up no other tenant's receipts. With
//! `durability: sync` the caller waits until its receipt is in the log; with `async` it goes on
//! as soon as the receipt is queued, and the appender lingers between appends to make each one
//! larger.
//!
//! The queue is bounded (`audit.maxQueued`), and so is each tenant's part of it
//! (`audit.maxQueuedPerTenant`): when the backend cannot keep up, executions wait for room
//! rather than receipts being dropped, and a tenant whose receipts fill its part waits alone
//! while the others' go on. Stopping appends everything queued and writes a
//! checkpoint of every chain that moved.
//!
//! Nobody waits on a failing log: once a tenant's appends keep failing (the backend
//! unreachable, say; a single failure is retried first), a caller waiting for its receipt
//! (`sync`) is told that it is not in the log yet (its receipt is kept and appended once the
//! log can be written), a caller waiting for room in a full queue is refused, and
//! [`Recorder::refuses_executions`] tells the edge to refuse that tenant's executions whose
//! receipts could not be recorded before they run. Meanwhile the appender keeps the tenant's
//! sealed receipts in a spool on the node's disk (`dataDir/audit-spool`, at most
//! `audit.maxSpoolBytes` per tenant) and frees their room in the queue, so that `async`
//! executions go on through an outage and their receipts survive a crash of the node.

use super::appender::{Appender, Command, Queued, SpoolSettings};
use super::chain::Chains;
use super::keys::{KeyError, Keyring, MasterKey};
use super::receipt::{ReceiptDraft, new_id};
use super::spool::SPOOL_DIR;
use crate::config::{AuditSettings, Durability};
use crate::metrics::Metrics;
use crate::spec::Name;
use crate::state::AuditLog;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Name of the generated key file in the data dir.
pub const KEY_FILE_NAME: &str = "audit.key";
/// How long stopping may keep retrying appends the backend refuses before giving up on them.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// With `durability: async`, how long the appender waits after each append before taking the
/// next batch: nobody waits for those receipts, and one append of many costs far less than many
/// appends of few (each is a synced file append or a replicated publish).
const ASYNC_LINGER: Duration = Duration::from_millis(10);
/// The longest node id.
const MAX_NODE_ID: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("invalid audit node id {0:?}: use 1 to 64 letters, digits, '.', '_' or '-' (audit.node)")]
    NodeId(String),
}

/// Why a receipt is not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the recorder has stopped")]
    Stopped,
    #[error("receipt {0} could not be appended to the audit log")]
    NotAppended(String),
    #[error(
        "receipt {id} is not in the audit log yet (it is appended once the log can be written): {reason}"
    )]
    NotYetAppended { id: String, reason: String },
    #[error("receipts cannot be recorded now: {0}")]
    Unavailable(String),
}

/// Records this node's receipts. Share it; stop it once nothing executes any more.
pub struct Recorder {
    /// The lanes and what makes them; `None` when receipts are off (`audit.enabled: false`).
    running: Option<Running>,
}

/// A started recorder: a lane per tenant, opened as the tenant records its first receipt (or
/// at the start for the tenants deployed then), and what a new lane is made of.
struct Running {
    durability: Durability,
    /// The room left in the node's queue, which every lane shares.
    room: Arc<Semaphore>,
    /// The size of each tenant's part of the queue.
    share: u32,
    /// The lanes by tenant, as many as the tenants that recorded since the start; `None` once
    /// the recorder has stopped.
    lanes: Mutex<Option<HashMap<String, Lane>>>,
    audit: Arc<dyn AuditLog>,
    metrics: Arc<Metrics>,
    node: String,
    keys: Keyring,
    /// Where the lanes spool records their logs cannot take (`dataDir/audit-spool`).
    spool_dir: PathBuf,
    max_spool_bytes: u64,
    checkpoint_interval: Duration,
    linger: Duration,
    stop_by: watch::Sender<Option<Instant>>,
}

/// A tenant's appender: its queue, the room left in the tenant's part of the node's queue, and
/// why its appends fail, while they do.
struct Lane {
    queue: mpsc::UnboundedSender<Command>,
    room: Arc<Semaphore>,
    trouble: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

/// What a caller needs of its tenant's lane.
struct LaneHandle {
    queue: mpsc::UnboundedSender<Command>,
    room: Arc<Semaphore>,
    trouble: watch::Receiver<Option<String>>,
}

impl Recorder {
    /// Loads the node's keys (generating the key file on first start) and opens a lane for each
    /// of `tenants`, which resumes the tenant's chain from its log; appended receipts are
    /// counted in `metrics`. With `audit.enabled: false` it does none of that and records
    /// nothing.
    pub async fn start(
        settings: &AuditSettings,
        data_dir: &Path,
        audit: Arc<dyn AuditLog>,
        metrics: Arc<Metrics>,
        tenants: impl IntoIterator<Item = Name>,
    ) -> Result<Self, RecorderError> {
        if !settings.enabled {
            tracing::warn!(
                "receipts are off (audit.enabled: false): executions are neither signed nor recorded"
            );
            return Ok(Self { running: None });
        }
        // A key is generated only where none is configured: a configured file that went missing
        // since the start is an error, never a fresh key.
        let generate = settings.key_file.is_none();
        let keys = read_keyring(&key_file(settings, data_dir), &settings.previous_key_files, generate)?;
        let node = node_id(settings.node.as_deref())?;
        let linger = match settings.durability {
            Durability::Sync => Duration::ZERO,
            Durability::Async => ASYNC_LINGER,
        };
        tracing::info!(%node, durability = ?settings.durability, "recording receipts");
        let running = Running {
            durability: settings.durability,
            room: Arc::new(Semaphore::new(settings.max_queued.max(1) as usize)),
            share: settings.tenant_share(),
            lanes: Mutex::new(Some(HashMap::new())),
            audit,
            metrics,
            node,
            keys,
            spool_dir: data_dir.join(SPOOL_DIR),
            max_spool_bytes: settings.max_spool_bytes.bytes(),
            checkpoint_interval: settings.checkpoint_interval.0,
            linger,
            stop_by: watch::channel(None).0,
        };
        for tenant in tenants {
            running.lane(tenant.as_str()).expect("not stopped yet");
        }
        Ok(Self { running: Some(running) })
    }

    /// Whether receipts are recorded (`audit.enabled`): when not, callers skip gathering them.
    pub fn is_on(&self) -> bool {
        self.running.is_some()
    }

    /// Records the receipt of a finished execution; returns its id once it is queued (async) or
    /// appended (sync), or `None` when receipts are off. While its tenant's appends fail, it
    /// does not wait: a full queue is `Unavailable` (the receipt is not recorded), and a `sync`
    /// receipt that is queued but not appended is `NotYetAppended`.
    pub async fn record(&self, draft: ReceiptDraft) -> Result<Option<String>, RecordError> {
        let Some(running) = &self.running else { return Ok(None) };
        let lane = running.lane(&draft.tenant)?;
        // The tenant's part first: a tenant waiting for it holds none of the node's room.
        let tenant = room_in(lane.room.clone(), &lane.trouble).await?;
        let room = [room_in(running.room.clone(), &lane.trouble).await?, tenant];
        let id = new_id(&draft.tenant);
        let (appended, was_appended) = match running.durability {
            Durability::Sync => {
                let (tell, told) = oneshot::channel();
                (Some(tell), Some(told))
            }
            Durability::Async => (None, None),
        };
        let queued = Queued { id: id.clone(), draft, appended, room };
        lane.queue.send(Command::Record(Box::new(queued))).map_err(|_| RecordError::Stopped)?;
        if let Some(was_appended) = was_appended {
            tokio::select! {
                biased;
                appended = was_appended => {
                    if appended != Ok(true) {
                        return Err(RecordError::NotAppended(id));
                    }
                }
                reason = failing(lane.trouble.clone()) => {
                    return Err(RecordError::NotYetAppended { id, reason });
                }
            }
        }
        Ok(Some(id))
    }

    /// Whether an execution of `tenant` must not start now because its receipt could not be
    /// recorded: the tenant's appends fail, and its caller would wait for it (`sync`) or the
    /// node's queue is full.
    pub fn refuses_executions(&self, tenant: &str) -> bool {
        self.running.as_ref().is_some_and(|running| {
            running.trouble(tenant).is_some()
                && (running.durability == Durability::Sync || running.room.available_permits() == 0)
        })
    }

    /// Whether a caller waits until its receipt is appended (`durability: sync`, receipts on).
    pub fn waits_for_append(&self) -> bool {
        self.running.as_ref().is_some_and(|running| running.durability == Durability::Sync)
    }

    /// Why appends to `tenant`'s audit log fail, while they do.
    pub fn trouble(&self, tenant: &str) -> Option<String> {
        self.running.as_ref().and_then(|running| running.trouble(tenant))
    }

    /// Appends everything queued, checkpoints every chain and stops every lane. Receipts
    /// recorded afterwards are refused.
    pub async fn stop(&self) {
        let Some(running) = &self.running else { return };
        let Some(lanes) = running.lanes.lock().expect("recorder lock").take() else { return };
        running.stop_by.send_replace(Some(Instant::now() + STOP_GRACE));
        let acknowledgements: Vec<_> = lanes
            .values()
            .filter_map(|lane| {
                let (ack, acked) = oneshot::channel();
                lane.queue.send(Command::Stop(ack)).is_ok().then_some(acked)
            })
            .collect();
        futures::future::join_all(acknowledgements).await;
        running.room.close();
        for (tenant, lane) in lanes {
            lane.room.close();
            if let Err(error) = lane.task.await {
                tracing::error!(%tenant, "the receipt appender failed: {error}");
            }
        }
    }
}

impl Running {
    /// `tenant`'s lane, opened if it has none yet; `Stopped` once the recorder has stopped.
    fn lane(&self, tenant: &str) -> Result<LaneHandle, RecordError> {
        let mut lanes = self.lanes.lock().expect("recorder lock");
        let lanes = lanes.as_mut().ok_or(RecordError::Stopped)?;
        let lane = lanes.entry(tenant.to_owned()).or_insert_with(|| self.open_lane(tenant));
        Ok(LaneHandle { queue: lane.queue.clone(), room: lane.room.clone(), trouble: lane.trouble.clone() })
    }

    /// Starts `tenant`'s appender, which first resumes the tenant's chain from its log.
    fn open_lane(&self, tenant: &str) -> Lane {
        let (troubled, trouble) = watch::channel(None);
        let chains = Chains::new(self.node.clone(), self.keys.clone());
        let mut appender = Appender::new(
            self.audit.clone(),
            self.metrics.clone(),
            chains,
            SpoolSettings { dir: self.spool_dir.clone(), max_bytes: self.max_spool_bytes },
            self.stop_by.subscribe(),
            troubled,
        );
        let (queue, queued) = mpsc::unbounded_channel();
        let (interval, linger) = (self.checkpoint_interval, self.linger);
        let name = Name::new(tenant).ok();
        let task = tokio::spawn(async move {
            appender.resume_all(name).await;
            appender.run(queued, interval, linger).await
        });
        Lane { queue, room: Arc::new(Semaphore::new(self.share as usize)), trouble, task }
    }

    fn trouble(&self, tenant: &str) -> Option<String> {
        let lanes = self.lanes.lock().expect("recorder lock");
        lanes.as_ref()?.get(tenant)?.trouble.borrow().clone()
    }
}

/// A place in `room`, waiting for one while the lane's appends succeed; `Unavailable` as soon
/// as they fail, `Stopped` once the recorder has stopped.
async fn room_in(
    room: Arc<Semaphore>,
    trouble: &watch::Receiver<Option<String>>,
) -> Result<OwnedSemaphorePermit, RecordError> {
    match room.clone().try_acquire_owned() {
        Ok(place) => Ok(place),
        Err(TryAcquireError::Closed) => Err(RecordError::Stopped),
        Err(TryAcquireError::NoPermits) => tokio::select! {
            place = room.acquire_owned() => place.map_err(|_| RecordError::Stopped),
            reason = failing(trouble.clone()) => Err(RecordError::Unavailable(reason)),
        },
    }
}

/// Resolves with why appends fail, as soon as they do (at once if they do now); never when
/// the appender has ended.
async fn failing(mut trouble: watch::Receiver<Option<String>>) -> String {
    let reason = trouble.wait_for(Option::is_some).await.map(|reason| reason.clone().unwrap_or_default());
    match reason {
        Ok(reason) => reason,
        Err(_) => std::future::pending().await,
    }
}

/// The master key file a node signs with: `audit.keyFile`, or `dataDir/audit.key`.
pub fn key_file(settings: &AuditSettings, data_dir: &Path) -> PathBuf {
    settings.key_file.clone().unwrap_or_else(|| data_dir.join(KEY_FILE_NAME))
}

/// The keyring of `current` (which signs) and `previous` (which still verify). With `generate`,
/// a missing `current` file is created with a fresh key (mode 0600) and announced by its path.
pub fn read_keyring(current: &Path, previous: &[PathBuf], generate: bool) -> Result<Keyring, KeyError> {
    let current = if generate {
        let (key, generated) = MasterKey::read_or_generate(current)?;
        if generated {
            tracing::info!("generated an audit key in {}", current.display());
        }
        key
    } else {
        MasterKey::read(current)?
    };
    let previous = previous.iter().map(|path| MasterKey::read(path)).collect::<Result<_, _>>()?;
    Ok(Keyring::new(current, previous))
}

/// The configured node id, or the host name.
fn node_id(configured: Option<&str>) -> Result<String, RecorderError> {
    let id = match configured {
        Some(id) => id.to_owned(),
        None => host_name(),
    };
    let valid = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    if id.is_empty() || id.len() > MAX_NODE_ID || !id.bytes().all(valid) {
        return Err(RecorderError::NodeId(id));
    }
    Ok(id)
}

/// This machine's host name (`node` when it has none).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "node".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::receipt::tests::draft;
    use crate::audit::{Chains, MasterKey};
    use crate::audit::{Verdict, Window, log, verify};
    use crate::state::embedded::EmbeddedBackend;
    use crate::state::{Provisioner, StateError, TenantResources};
    use std::os::unix::fs::PermissionsExt;

    async fn backend(dir: &Path) -> (Arc<EmbeddedBackend>, Name) {
        let backend = Arc::new(EmbeddedBackend::open(&dir.join("state")).unwrap());
        let tenant = Name::new("acme").unwrap();
        let resources =
            TenantResources { name: tenant.clone(), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
        backend.ensure_tenant(&resources).await.unwrap();
        (backend, tenant)
    }

    fn settings(durability: Durability) -> AuditSettings {
        AuditSettings { node: Some("node-a".into()), durability, ..AuditSettings::default() }
    }

    #[tokio::test]
    async fn receipts_are_appended_in_order_with_checkpoints_and_resume_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, tenant) = backend(dir.path()).await;
        let start = |durability, tenants: Vec<Name>| {
            let (audit, metrics) = (backend.clone(), Arc::new(Metrics::new()));
            let dir = dir.path().to_owned();
            async move { Recorder::start(&settings(durability), &dir, audit, metrics, tenants).await.unwrap() }
        };
        let recorder = start(Durability::Sync, vec![tenant.clone()]).await;
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(recorder.record(draft(i)).await.unwrap().expect("receipts are on"));
        }
        let in_log = log::find(&*backend, &ids[1]).await.unwrap().expect("a sync receipt is in the log");
        let in_log: crate::audit::Receipt = serde_json::from_str(in_log.get()).unwrap();
        assert_eq!((in_log.seq, in_log.chain.as_str()), (2, "node-a"));
        recorder.stop().await;
        assert!(matches!(recorder.record(draft(9)).await, Err(RecordError::Stopped)));

        // Restarted, async, and resumed lazily (no tenants given): many receipts at once.
        let recorder = Arc::new(start(Durability::Async, vec![]).await);
        let recording = (3..203).map(|i| {
            let recorder = recorder.clone();
            tokio::spawn(async move { recorder.record(draft(i)).await.unwrap() })
        });
        futures::future::join_all(recording).await;
        recorder.stop().await;

        let records: Vec<_> =
            log::read_all(&*backend, &tenant).await.unwrap().into_iter().map(|(_, r)| r).collect();
        let keys = read_keyring(&dir.path().join(KEY_FILE_NAME), &[], false).unwrap();
        let verdict = verify(&keys, "acme", &records, Window::ALL);
        assert_eq!((verdict.checked, verdict.checkpoints, verdict.first_bad), (203, 2, None));
        assert!(records.len() < 203 + 2, "receipts queued together share records: {}", records.len());
    }

    /// A log in memory that, unlike the real backends, keeps every repeat (no duplicate window:
    /// what an outage longer than the window looks like); it can store an append and then
    /// report it failed, as a lost acknowledgement does, and fail every call while down.
    #[derive(Default)]
    struct FaultyLog {
        records: std::sync::Mutex<Vec<bytes::Bytes>>,
        /// Appends still to store and then report as failed.
        lose_acks: std::sync::atomic::AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    impl FaultyLog {
        fn down(&self) -> Result<(), StateError> {
            match self.down.load(std::sync::atomic::Ordering::SeqCst) {
                true => Err(StateError::Unavailable("the backend is down".into())),
                false => Ok(()),
            }
        }

        fn stored(&self) -> Vec<bytes::Bytes> {
            self.records.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl AuditLog for FaultyLog {
        async fn append(&self, _: &Name, record: bytes::Bytes) -> Result<u64, StateError> {
            self.down()?;
            let sequence = {
                let mut records = self.records.lock().unwrap();
                records.push(record);
                records.len() as u64
            };
            let lose = |n: usize| n.checked_sub(1);
            match self.lose_acks.fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                lose,
            ) {
                Ok(_) => Err(StateError::Unavailable("the acknowledgement was lost".into())),
                Err(_) => Ok(sequence),
            }
        }

        async fn read(&self, _: &Name, from: u64, limit: usize) -> Result<Vec<log::Stored>, StateError> {
            self.down()?;
            let records = self.records.lock().unwrap();
            let numbered = records.iter().cloned().enumerate().map(|(i, record)| (i as u64 + 1, record));
            Ok(numbered.skip(from.saturating_sub(1) as usize).take(limit).collect())
        }
    }

    /// A sync recorder of tenant acme on `log`.
    async fn start_on(dir: &Path, log: Arc<FaultyLog>) -> Recorder {
        let tenants = [Name::new("acme").unwrap()];
        let settings = settings(Durability::Sync);
        Recorder::start(&settings, dir, log, Arc::new(Metrics::new()), tenants).await.unwrap()
    }

    fn verified(dir: &Path, records: &[bytes::Bytes]) -> Verdict {
        let keys = read_keyring(&dir.join(KEY_FILE_NAME), &[], false).unwrap();
        verify(&keys, "acme", records, Window::ALL)
    }

    #[tokio::test]
    async fn an_append_whose_acknowledgement_was_lost_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyLog { lose_acks: 2.into(), ..FaultyLog::default() });
        let recorder = start_on(dir.path(), faulty.clone()).await;
        recorder.record(draft(1)).await.unwrap();
        recorder.record(draft(2)).await.unwrap();
        recorder.stop().await;
        let records = faulty.stored();
        assert_eq!(records.len(), 3, "two receipts and a checkpoint, none twice");
        let verdict = verified(dir.path(), &records);
        assert_eq!((verdict.first_bad, verdict.checked, verdict.repeated), (None, 2, 0));
    }

    #[tokio::test]
    async fn while_appends_fail_nobody_waits_and_the_receipts_land_once_the_log_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyLog { down: true.into(), ..FaultyLog::default() });
        let recorder = start_on(dir.path(), faulty.clone()).await;
        assert!(!recorder.refuses_executions("acme"), "nothing has failed yet");
        let Err(RecordError::NotYetAppended { id, .. }) = recorder.record(draft(1)).await else {
            panic!("a sync receipt the log cannot take is reported, not waited for")
        };
        assert!(recorder.refuses_executions("acme") && recorder.trouble("acme").is_some());

        faulty.down.store(false, std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while recorder.trouble("acme").is_some() {
            assert!(Instant::now() < deadline, "the appender never retried");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!recorder.refuses_executions("acme"));
        recorder.record(draft(2)).await.unwrap();
        recorder.stop().await;
        let records = faulty.stored();
        let verdict = verified(dir.path(), &records);
        assert_eq!((verdict.first_bad, verdict.checked, verdict.repeated), (None, 2, 0));
        let first = crate::audit::Record::decode(&records[0]).unwrap();
        assert!(matches!(first, crate::audit::Record::Receipts(r) if r[0].id == id), "queued, then appended");
    }

    /// An async recorder of tenant acme on `log` whose tenant's part of the queue holds `share`
    /// receipts, and its metrics.
    async fn start_async(dir: &Path, log: Arc<FaultyLog>, share: u32) -> (Recorder, Arc<Metrics>) {
        let settings = AuditSettings {
            max_queued: share * 4,
            max_queued_per_tenant: Some(share),
            ..settings(Durability::Async)
        };
        let metrics = Arc::new(Metrics::new());
        let tenants = [Name::new("acme").unwrap()];
        let recorder = Recorder::start(&settings, dir, log, metrics.clone(), tenants).await.unwrap();
        (recorder, metrics)
    }

    /// Waits until `done` holds, failing the test after 10 s.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The receipts of acme in the spool, as the metric says.
    fn spooled(metrics: &Metrics) -> u64 {
        let text = metrics.encode();
        let line =
            text.lines().find(|line| line.starts_with("gojinn_audit_spooled_receipts{tenant=\"acme\"}"));
        line.and_then(|line| line.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
    }

    fn spool_file(dir: &Path) -> PathBuf {
        dir.join(SPOOL_DIR).join("acme.log")
    }

    /// The records in the spool file at `path`, and where they end.
    fn spool_records(path: &Path) -> (Vec<bytes::Bytes>, u64) {
        let file = std::fs::read(path).unwrap();
        let mut offset = 8;
        let mut records = Vec::new();
        loop {
            let length = u32::from_le_bytes(file[offset..offset + 4].try_into().unwrap()) as usize;
            if length == 0 {
                return (records, offset as u64);
            }
            records.push(bytes::Bytes::copy_from_slice(&file[offset + 8..offset + 8 + length]));
            offset += 8 + length;
        }
    }

    #[tokio::test]
    async fn a_restart_with_the_log_back_skips_what_a_crash_left_in_the_spool_after_appending_it() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyLog::default());
        spool_after_one_appended(dir.path(), &faulty, 2).await;
        let (spooled_records, _) = spool_records(&spool_file(dir.path()));
        faulty.records.lock().unwrap().push(spooled_records[0].clone());

        set_down(&faulty, false);
        let (recorder, metrics) = start_async(dir.path(), faulty.clone(), 4).await;
        recorder.record(draft(3)).await.unwrap();
        until("the spool is appended", || !spool_file(dir.path()).exists()).await;
        recorder.stop().await;
        assert_eq!(spooled(&metrics), 0);
        let records = faulty.stored();
        let verdict = verified(dir.path(), &records);
        assert_eq!((verdict.first_bad, verdict.checked, verdict.repeated), (None, 4, 0));
        let receipts = records.iter().filter(|record| record.starts_with(b"{\"receipts\"")).count();
        assert_eq!(receipts, 4, "one record per receipt, none twice");
    }

    /// A recorder in `dir` appends one receipt to `faulty`, then spools `count` more, each in
    /// a record of its own, while the log is down; then it stops (the log stays down).
    async fn spool_after_one_appended(dir: &Path, faulty: &Arc<FaultyLog>, count: u64) {
        let (recorder, metrics) = start_async(dir, faulty.clone(), 4).await;
        recorder.record(draft(0)).await.unwrap();
        until("the first receipt is appended", || faulty.stored().len() == 1).await;
        set_down(faulty, true);
        for i in 1..=count {
            recorder.record(draft(i)).await.unwrap();
            until("the receipt is spooled", || spooled(&metrics) == i).await;
        }
        recorder.stop().await;
    }

    fn set_down(log: &FaultyLog, down: bool) {
        log.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    #[tokio::test]
    async fn receipts_are_spooled_while_the_log_is_down_and_appended_in_chain_order_once_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyLog::default());
        let (recorder, metrics) = start_async(dir.path(), faulty.clone(), 4).await;
        recorder.record(draft(0)).await.unwrap();
        until("the first receipt is appended", || faulty.stored().len() == 1).await;

        set_down(&faulty, true);
        // Three times the tenant's part of the queue: the spooled receipts free their room.
        for round in 1..=3u64 {
            for i in 0..4 {
                recorder.record(draft(round * 10 + i)).await.unwrap().expect("queued");
            }
            until("the receipts are spooled", || spooled(&metrics) == round * 4).await;
        }
        assert!(spool_file(dir.path()).exists());
        assert!(recorder.trouble("acme").is_some(), "the log still cannot be written");
        assert!(!recorder.refuses_executions("acme"), "async executions go on meanwhile");
        let mode = std::fs::metadata(spool_file(dir.path())).unwrap().permissions().mode() & 0o777;
        let dir_mode = std::fs::metadata(dir.path().join(SPOOL_DIR)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode, dir_mode), (0o600, 0o700));

        set_down(&faulty, false);
        until("the spool is appended", || recorder.trouble("acme").is_none()).await;
        assert_eq!(spooled(&metrics), 0);
        assert!(!spool_file(dir.path()).exists(), "an empty spool is deleted");
        recorder.record(draft(99)).await.unwrap();
        recorder.stop().await;
        let records = faulty.stored();
        let verdict = verified(dir.path(), &records);
        assert_eq!((verdict.first_bad, verdict.checked, verdict.repeated), (None, 14, 0));
        let seqs: Vec<u64> = records
            .iter()
            .filter_map(|record| match crate::audit::Record::decode(record).unwrap() {
                crate::audit::Record::Receipts(receipts) => Some(receipts),
                crate::audit::Record::Checkpoint(_) => None,
            })
            .flatten()
            .map(|receipt| receipt.seq)
            .collect();
        assert_eq!(seqs, (1..=14).collect::<Vec<_>>(), "the log took the chain in order");
    }

    #[tokio::test]
    async fn a_restart_resumes_from_the_spool_cuts_its_torn_tail_and_appends_nothing_twice() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyLog::default());
        spool_after_one_appended(dir.path(), &faulty, 3).await;
        assert_eq!(faulty.stored().len(), 1, "nothing more reached the log");

        // A crash after the first spooled record was appended, before the spool was deleted,
        // and during a write to the spool.
        let path = spool_file(dir.path());
        let (spooled_records, end) = spool_records(&path);
        let torn = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        torn.write_all_at(&[0xff, 0xff, 0xff, 0x00, 7, 7], end).unwrap();
        assert_eq!(spooled_records.len(), 3, "each receipt was spooled on its own");
        faulty.records.lock().unwrap().push(spooled_records[0].clone());

        // Restarted while the log is still down: the chain goes on after the spooled receipts.
        let (recorder, metrics) = start_async(dir.path(), faulty.clone(), 4).await;
        recorder.record(draft(4)).await.unwrap();
        until("the new receipt is spooled after the others", || spooled(&metrics) == 4).await;
        set_down(&faulty, false);
        until("the spool is appended", || recorder.trouble("acme").is_none() && spooled(&metrics) == 0).await;
        assert!(!path.exists());
        recorder.stop().await;
        let records = faulty.stored();
        let verdict = verified(dir.path(), &records);
        assert_eq!((verdict.first_bad, verdict.checked, verdict.repeated), (None, 5, 0));
        let receipts = records.iter().filter(|record| record.starts_with(b"{\"receipts\"")).count();
        assert_eq!(receipts, 5, "one record per receipt, none twice");
    }

    #[tokio::test]
    async fn a_full_spool_takes_no_more_and_receipts_wait_in_the_queue_as_without_one() {
        // Room in the spool for one record of one receipt, not two.
        let length = {
            let keys = Keyring::new(MasterKey::from_bytes(vec![7; 32]), vec![]);
            let mut chains = Chains::new("node-a".into(), keys);
            chains.seal(new_id("acme"), draft(10));
            let (_, json) = chains.seal_encoded(new_id("acme"), draft(11));
            crate::audit::Record::encode_receipts(&[json]).len() as u64
        };
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyLog::default());
        let settings = AuditSettings {
            max_queued: 8,
            max_queued_per_tenant: Some(2),
            max_spool_bytes: crate::spec::ByteSize(8 + length + length / 2),
            ..settings(Durability::Async)
        };
        let metrics = Arc::new(Metrics::new());
        let tenants = [Name::new("acme").unwrap()];
        let recorder =
            Recorder::start(&settings, dir.path(), faulty.clone(), metrics.clone(), tenants).await.unwrap();
        recorder.record(draft(10)).await.unwrap();
        until("the first receipt is appended", || faulty.stored().len() == 1).await;
        set_down(&faulty, true);
        recorder.record(draft(11)).await.unwrap();
        until("the receipt is spooled", || spooled(&metrics) == 1).await;

        // The spool is full: these two hold the tenant's part of the queue, the next is refused.
        recorder.record(draft(12)).await.unwrap();
        recorder.record(draft(13)).await.unwrap();
        let refused = recorder.record(draft(14)).await;
        assert!(matches!(refused, Err(RecordError::Unavailable(_))), "{refused:?}");
        assert_eq!(spooled(&metrics), 1);

        set_down(&faulty, false);
        until("the spool and the queue are appended", || recorder.trouble("acme").is_none()).await;
        assert!(!spool_file(dir.path()).exists());
        recorder.record(draft(15)).await.unwrap();
        recorder.stop().await;
        let verdict = verified(dir.path(), &faulty.stored());
        assert_eq!((verdict.first_bad, verdict.checked, verdict.repeated), (None, 5, 0));
    }

    #[tokio::test]
    async fn a_corrupt_spool_is_reported_by_file_and_offset_and_nothing_is_appended_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = spool_file(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = b"GJAUDIT1".to_vec();
        bytes.extend_from_slice(&[4, 0, 0, 0, 1, 2, 3, 4, b'{', b'}', b'{', b'}']);
        bytes.extend_from_slice(b"more bytes after the bad frame");
        std::fs::write(&path, &bytes).unwrap();
        let faulty = Arc::new(FaultyLog::default());
        let (recorder, _metrics) = start_async(dir.path(), faulty.clone(), 4).await;
        let recorded = recorder.record(draft(1)).await;
        assert!(recorded.is_ok(), "queued: {recorded:?}");
        until("the lane says why", || recorder.trouble("acme").is_some()).await;
        let trouble = recorder.trouble("acme").unwrap();
        assert!(trouble.contains(&path.display().to_string()) && trouble.contains("byte 8"), "{trouble}");
        assert!(faulty.stored().is_empty(), "no receipt is sealed on a chain whose end is unknown");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "the spool is left as it was");
    }

    /// The embedded log, except that `down`'s appends and reads fail as an unreachable stream's do.
    struct OneTenantDown {
        down: Name,
        log: Arc<EmbeddedBackend>,
    }

    impl OneTenantDown {
        fn check(&self, tenant: &Name) -> Result<(), StateError> {
            match *tenant == self.down {
                true => Err(StateError::Unavailable(format!("{tenant}'s audit stream has no leader"))),
                false => Ok(()),
            }
        }
    }

    #[async_trait::async_trait]
    impl AuditLog for OneTenantDown {
        async fn append(&self, tenant: &Name, record: bytes::Bytes) -> Result<u64, StateError> {
            self.check(tenant)?;
            self.log.append(tenant, record).await
        }

        async fn read(&self, tenant: &Name, from: u64, limit: usize) -> Result<Vec<log::Stored>, StateError> {
            self.check(tenant)?;
            self.log.read(tenant, from, limit).await
        }
    }

    #[tokio::test]
    async fn a_tenant_whose_log_cannot_be_written_holds_up_no_other_tenants_receipts() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, acme) = backend(dir.path()).await;
        let beta = Name::new("beta").unwrap();
        let resources =
            TenantResources { name: beta.clone(), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
        backend.ensure_tenant(&resources).await.unwrap();
        let log = Arc::new(OneTenantDown { down: beta.clone(), log: backend.clone() });
        let metrics = Arc::new(Metrics::new());
        let tenants = [acme.clone(), beta.clone()];
        let recorder =
            Recorder::start(&settings(Durability::Sync), dir.path(), log, metrics, tenants).await.unwrap();

        let of_beta = ReceiptDraft { tenant: "beta".into(), ..draft(1) };
        let refused = recorder.record(of_beta).await;
        assert!(matches!(refused, Err(RecordError::NotYetAppended { .. })), "{refused:?}");
        assert!(recorder.refuses_executions("beta"));
        for i in 0..3 {
            recorder.record(draft(i)).await.unwrap().expect("acme's receipts are appended meanwhile");
        }
        assert!(!recorder.refuses_executions("acme") && recorder.trouble("acme").is_none());
        recorder.stop().await;
        let records: Vec<_> =
            log::read_all(&*backend, &acme).await.unwrap().into_iter().map(|(_, r)| r).collect();
        let keys = read_keyring(&dir.path().join(KEY_FILE_NAME), &[], false).unwrap();
        let verdict = verify(&keys, "acme", &records, Window::ALL);
        assert_eq!((verdict.checked, verdict.first_bad), (3, None));
    }

    /// A log whose appends wait until the test lets them through: a backend that cannot keep up.
    struct HeldLog {
        open: Semaphore,
        log: Arc<EmbeddedBackend>,
    }

    #[async_trait::async_trait]
    impl AuditLog for HeldLog {
        async fn append(&self, tenant: &Name, record: bytes::Bytes) -> Result<u64, StateError> {
            self.open.acquire().await.expect("never closed").forget();
            self.log.append(tenant, record).await
        }

        async fn read(&self, tenant: &Name, from: u64, limit: usize) -> Result<Vec<log::Stored>, StateError> {
            self.log.read(tenant, from, limit).await
        }
    }

    #[tokio::test]
    async fn a_tenant_whose_receipts_fill_its_part_of_the_queue_waits_alone() {
        use futures::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let (backend, acme) = backend(dir.path()).await;
        let beta = Name::new("beta").unwrap();
        backend
            .ensure_tenant(&TenantResources {
                name: beta.clone(),
                replicas: 1,
                kv_max_bytes: None,
                kv_max_keys: None,
            })
            .await
            .unwrap();
        let held = Arc::new(HeldLog { open: Semaphore::new(0), log: backend.clone() });
        let settings =
            AuditSettings { max_queued: 8, max_queued_per_tenant: Some(2), ..settings(Durability::Async) };
        let metrics = Arc::new(Metrics::new());
        let recorder =
            Recorder::start(&settings, dir.path(), held.clone(), metrics, [acme.clone(), beta.clone()])
                .await
                .unwrap();
        for i in 0..2 {
            recorder.record(draft(i)).await.unwrap().expect("queued");
        }
        let third = recorder.record(draft(2));
        tokio::pin!(third);
        assert!(third.as_mut().now_or_never().is_none(), "acme's part of the queue is full: it waits");
        let of_beta = ReceiptDraft { tenant: "beta".into(), ..draft(3) };
        let queued = recorder.record(of_beta).now_or_never();
        assert!(matches!(queued, Some(Ok(Some(_)))), "beta's receipt is queued at once: {queued:?}");

        held.open.add_permits(1_000);
        third.await.unwrap().expect("queued once acme's receipts are appended");
        recorder.stop().await;
        let keys = read_keyring(&dir.path().join(KEY_FILE_NAME), &[], false).unwrap();
        for (tenant, receipts) in [(&acme, 3), (&beta, 1)] {
            let records: Vec<_> =
                log::read_all(&*backend, tenant).await.unwrap().into_iter().map(|(_, r)| r).collect();
            let verdict = verify(&keys, tenant.as_str(), &records, Window::ALL);
            assert_eq!((verdict.checked, verdict.first_bad), (receipts, None), "{tenant}");
        }
    }

    #[tokio::test]
    async fn with_receipts_off_nothing_is_signed_or_appended() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, tenant) = backend(dir.path()).await;
        let settings = AuditSettings { enabled: false, ..settings(Durability::Sync) };
        let metrics = Arc::new(Metrics::new());
        let recorder =
            Recorder::start(&settings, dir.path(), backend.clone(), metrics, [tenant.clone()]).await.unwrap();
        assert_eq!(recorder.record(draft(1)).await.unwrap(), None);
        recorder.stop().await;
        assert!(log::read_all(&*backend, &tenant).await.unwrap().is_empty());
        assert!(!dir.path().join(KEY_FILE_NAME).exists(), "no key is generated for nothing to sign");
    }

    #[test]
    fn node_ids_are_checked_and_default_to_the_host_name() {
        assert_eq!(node_id(Some("node-a.eu_1")).unwrap(), "node-a.eu_1");
        for bad in ["", "a b", "a/b", "a*", &"n".repeat(65)] {
            assert!(matches!(node_id(Some(bad)), Err(RecorderError::NodeId(_))), "{bad:?}");
        }
        assert_eq!(node_id(None).unwrap(), host_name());
    }
}
