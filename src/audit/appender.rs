//! The recorder's background appender: a task per tenant (the recorder's lane) that takes
//! queued drafts in arrival order, seals them on this node's chain and appends them to the
//! tenant's audit log, so the chain is appended in the order it was sealed. Everything queued at
//! once is sealed and appended as one batch (a record of up to [`RECEIPTS_PER_RECORD`]
//! receipts), so a slow append (an fsync, a replicated publish) is paid once per batch, not once
//! per receipt.
//!
//! It resumes a tenant's chain from the tenant's log before sealing its first receipt (at start
//! for the tenants deployed then), writes checkpoints every interval and when it stops, and
//! retries an append that failed for a reason that may pass (the backend unavailable) until it
//! succeeds or the recorder has been stopping for longer than its grace period. While appends
//! keep failing (twice in a row) it says why (`trouble`), so that callers waiting for a receipt
//! are told rather than held until the backend is back.
//!
//! When appends of a tenant have failed twice in a row, the record being retried is written to
//! the tenant's spool on this node's disk (see `spool`) instead, and so is every record sealed
//! after it while the spool holds records, so that the log takes the chain in order: the spooled
//! records are appended oldest first (with the retries' backoff) until the spool is empty, and
//! then the tenant's appends go straight to the log again. A spooled receipt frees its room in
//! the queue. Checkpoints wait while the spool holds records. After a restart, a chain whose
//! spool holds records resumes from the last of them, without reading the log. A full spool
//! (`audit.maxSpoolBytes`) takes nothing more: records wait in the queue until it is drained.
//!
//! A record is never stored twice: a failed append may have stored it all the same (a lost
//! acknowledgement, a timeout), so before publishing it again the appender reads the log's tail
//! after the last sequence it knows of and looks for it; it publishes again only once a read has
//! shown the record is not there. The backends also drop a repeat within their duplicate window
//! (see `AuditLog::append`), which covers a first attempt that lands while the tail is read.

use super::chain::{Chains, Head};
use super::log::{chain_state, read_from};
use super::receipt::ReceiptDraft;
use super::record::{Checkpoint, Record};
use super::spool::{Spool, Spooled};
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::spec::Name;
use crate::state::{AuditLog, StateError};
use crate::telemetry::spans;
use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};
use tracing::Instrument;

/// Queue entries taken at once: the most receipts one batch holds.
const MAX_BATCH: usize = 1024;
/// Receipts per record; keeps a record well under NATS's default 1 MB message limit.
pub(super) const RECEIPTS_PER_RECORD: usize = 256;
/// Pause before retrying a failed append: a tenth of a second, doubling up to 5 s.
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// The shortest interval between checkpoints.
const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// What the recorder asks of the appender.
pub(super) enum Command {
    Record(Box<Queued>),
    /// Append everything queued, checkpoint every chain, then end.
    Stop(oneshot::Sender<()>),
}

/// A draft waiting to be sealed and appended.
pub(super) struct Queued {
    pub id: String,
    pub draft: ReceiptDraft,
    /// Told whether the receipt was appended, when the caller waits for it.
    pub appended: Option<oneshot::Sender<bool>>,
    /// Its place in the node's queue and in its tenant's part of it, given back once it is
    /// appended.
    pub room: [OwnedSemaphorePermit; 2],
}

/// A sealed record's receipts: who waits for them and their room in the queue.
type Waiting = Vec<(Option<oneshot::Sender<bool>>, [OwnedSemaphorePermit; 2])>;

/// Where the spools are kept, and how much each holds at most.
pub(super) struct SpoolSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// What became of a record [`Appender::append`] was given.
enum Appended {
    InLog,
    /// Appends failed twice in a row, the last time with `error` (and the caller asked to be
    /// told rather than retry on): the record may have been stored all the same.
    Failing {
        maybe_stored: bool,
        error: StateError,
    },
}

/// What this node knows of a tenant's log.
struct TenantLog {
    name: Name,
    /// The log's last sequence number, as far as this node knows.
    end: u64,
    /// This node's chain's seq at its last checkpoint.
    checkpointed: u64,
}

pub(super) struct Appender {
    audit: Arc<dyn AuditLog>,
    metrics: Arc<Metrics>,
    chains: Chains,
    logs: HashMap<String, TenantLog>,
    spool: SpoolSettings,
    /// The tenants' spools, once their chains were resumed.
    spools: HashMap<String, Spool>,
    /// When the recorder must have finished stopping, once it was asked to.
    stop_by: watch::Receiver<Option<Instant>>,
    /// Why appends fail, while they do (`None` once one succeeds).
    trouble: watch::Sender<Option<String>>,
}

impl Appender {
    pub fn new(
        audit: Arc<dyn AuditLog>,
        metrics: Arc<Metrics>,
        chains: Chains,
        spool: SpoolSettings,
        stop_by: watch::Receiver<Option<Instant>>,
        trouble: watch::Sender<Option<String>>,
    ) -> Self {
        let (logs, spools) = (HashMap::new(), HashMap::new());
        Self { audit, metrics, chains, logs, spool, spools, stop_by, trouble }
    }

    /// Resumes the chains of `tenants` now; one that cannot be read is resumed before its first
    /// receipt instead.
    pub async fn resume_all(&mut self, tenants: impl IntoIterator<Item = Name>) {
        for tenant in tenants {
            if let Err(error) = self.resume(&tenant).await {
                tracing::warn!(%tenant, "cannot read the audit log yet, resuming later: {error}");
            }
        }
    }

    /// Serves the queue until it is stopped or every sender is gone, checkpointing every
    /// `interval`, and waiting `linger` after each batch so that the next one gathers more
    /// receipts (fewer, larger appends; zero when callers wait for their receipts).
    pub async fn run(
        mut self,
        mut queue: mpsc::UnboundedReceiver<Command>,
        interval: Duration,
        linger: Duration,
    ) {
        let interval = interval.max(MIN_CHECKPOINT_INTERVAL);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands = Vec::with_capacity(MAX_BATCH);
        let stopped = loop {
            let next_try = self.spools.values().filter_map(|spool| spool.next_try).min();
            tokio::select! {
                taken = queue.recv_many(&mut commands, MAX_BATCH) => {
                    if taken == 0 {
                        break None;
                    }
                    if let Some(stopped) = self.handle(std::mem::take(&mut commands)).await {
                        break Some(stopped);
                    }
                    if !linger.is_zero() {
                        tokio::time::sleep(linger).await;
                    }
                }
                _ = ticks.tick() => self.checkpoint_all().await,
                () = tokio::time::sleep_until(next_try.unwrap_or_else(tokio::time::Instant::now)),
                    if next_try.is_some() => self.drain_due(false).await,
            }
        };
        self.drain_due(true).await;
        self.checkpoint_all().await;
        if let Some(stopped) = stopped {
            let _ = stopped.send(());
        }
    }

    /// Seals and appends a batch, per tenant in order of first arrival; returns the stop
    /// acknowledgement if the batch holds a stop.
    async fn handle(&mut self, commands: Vec<Command>) -> Option<oneshot::Sender<()>> {
        let mut stop = None;
        let mut tenants: Vec<(String, Vec<Queued>)> = Vec::new();
        for command in commands {
            match command {
                Command::Stop(ack) => stop = Some(ack),
                Command::Record(queued) => {
                    match tenants.iter_mut().find(|(t, _)| *t == queued.draft.tenant) {
                        Some((_, batch)) => batch.push(*queued),
                        None => tenants.push((queued.draft.tenant.clone(), vec![*queued])),
                    }
                }
            }
        }
        for (tenant, batch) in tenants {
            self.append_batch(&tenant, batch).await;
        }
        stop
    }

    async fn append_batch(&mut self, tenant: &str, batch: Vec<Queued>) {
        let name = match Name::new(tenant) {
            Ok(name) => name,
            Err(error) => return lose(tenant, batch, &format!("invalid tenant name: {error}")),
        };
        let mut retry = self.retry(&name, "reading the audit log");
        while !self.resumed(tenant) {
            if let Err(error) = self.resume(&name).await
                && let Err(error) = retry.after(error).await
            {
                self.settled();
                return lose(tenant, batch, &error.to_string());
            }
        }
        let mut batch = batch.into_iter().peekable();
        while batch.peek().is_some() {
            let chunk: Vec<Queued> = batch.by_ref().take(RECEIPTS_PER_RECORD).collect();
            let mut waiting = Vec::with_capacity(chunk.len());
            let receipts: Vec<Vec<u8>> = chunk
                .into_iter()
                .map(|queued| {
                    waiting.push((queued.appended, queued.room));
                    self.chains.seal_encoded(queued.id, queued.draft).1
                })
                .collect();
            self.deliver(&name, Record::encode_receipts(&receipts), waiting).await;
        }
    }

    /// Appends a sealed record of receipts to `name`'s log, or to its spool while the spool
    /// holds records or once appends fail twice in a row; tells whoever waits for its receipts
    /// once they are in the log.
    async fn deliver(&mut self, name: &Name, record: Bytes, mut waiting: Waiting) {
        let tenant = name.as_str();
        if self.spools.get(tenant).is_some_and(|spool| !spool.is_empty()) {
            match self.spool(name, &record, waiting).await {
                Ok(()) => return,
                Err(back) => waiting = back,
            }
            if !self.drain_fully(name).await {
                return lose_sealed(tenant, waiting, "the spool could not be appended before the stop");
            }
        }
        let appended = match self.append(name, record.clone(), true, false).await {
            Ok(Appended::InLog) => Ok(()),
            Ok(Appended::Failing { maybe_stored, error }) => {
                // Spooled first, troubled then: a caller waiting for room finds the room the
                // spooled receipts freed rather than being refused.
                let spooled = self.spool(name, &record, waiting).await;
                let trouble = format!("appending to the audit log of tenant {tenant} failed: {error}");
                self.trouble.send_replace(Some(trouble));
                match spooled {
                    Ok(()) => {
                        let spool = self.spools.get_mut(tenant).expect("it took the record");
                        spool.maybe_stored = maybe_stored;
                        spool.failures = 2;
                        spool.next_try = Some(tokio::time::Instant::now() + RETRY_BACKOFF.delay(2));
                        return;
                    }
                    Err(back) => {
                        waiting = back;
                        self.append(name, record, false, maybe_stored).await.map(|_| ())
                    }
                }
            }
            Err(error) => Err(error),
        };
        match appended {
            Ok(()) => {
                (0..waiting.len()).for_each(|_| self.metrics.receipt_appended(name));
                for (told, _room) in waiting {
                    if let Some(told) = told {
                        let _ = told.send(true);
                    }
                }
            }
            Err(error) => lose_sealed(tenant, waiting, &error.to_string()),
        }
    }

    /// Writes `record` to `name`'s spool, freeing its receipts' room in the queue; gives
    /// `waiting` back when the spool cannot take it (full, or its file cannot be written).
    async fn spool(&mut self, name: &Name, record: &Bytes, waiting: Waiting) -> Result<(), Waiting> {
        let tenant = name.as_str();
        let last_seq = self.chains.head(tenant).map_or(0, |head| head.seq);
        let Some(spool) = self.spools.get_mut(tenant) else { return Err(waiting) };
        if !spool.has_room(record.len()) {
            if !spool.reported_full {
                spool.reported_full = true;
                tracing::warn!(
                    %tenant,
                    path = %spool.path().display(),
                    spooled = spool.receipts(),
                    "the audit spool is full (audit.maxSpoolBytes): receipts wait in the queue until it \
                     is appended to the log"
                );
            }
            return Err(waiting);
        }
        let receipts = waiting.len();
        let (told, rooms): (Vec<_>, Vec<_>) = waiting.into_iter().unzip();
        let spooled = Spooled { last_seq, receipts, told: told.into_iter().flatten().collect() };
        match spool.push(record.clone(), spooled).await {
            Ok(()) => {
                drop(rooms);
                self.metrics.receipts_spooled(name, spool.receipts());
                Ok(())
            }
            Err((error, spooled)) => {
                tracing::error!(%tenant, "cannot write receipts to the audit spool: {error}");
                let mut told = spooled.told.into_iter();
                Err(rooms.into_iter().map(|room| (told.next(), room)).collect())
            }
        }
    }

    /// Appends the spools whose next try is due (every spool that holds records, with `all`).
    async fn drain_due(&mut self, all: bool) {
        let now = tokio::time::Instant::now();
        let due: Vec<Name> = self
            .spools
            .iter()
            .filter(|(_, spool)| spool.next_try.is_some_and(|at| all || at <= now))
            .filter_map(|(tenant, _)| Name::new(tenant).ok())
            .collect();
        for name in due {
            self.drain(&name).await;
        }
    }

    /// Appends `name`'s spool until it is empty, waiting between tries; false if the recorder
    /// has been stopping for longer than its grace period first.
    async fn drain_fully(&mut self, name: &Name) -> bool {
        loop {
            self.drain(name).await;
            let Some(next_try) = self.spools.get(name.as_str()).and_then(|spool| spool.next_try) else {
                return true;
            };
            if (*self.stop_by.borrow()).is_some_and(|by| Instant::now() >= by) {
                return false;
            }
            tokio::time::sleep_until(next_try).await;
        }
    }

    /// Appends `name`'s spooled records, oldest first, until the spool is empty (then deletes
    /// its file and appends go straight to the log again) or an append fails (then the next
    /// try waits as a retry does).
    async fn drain(&mut self, name: &Name) {
        let tenant = name.as_str();
        loop {
            let Some(spool) = self.spools.get_mut(tenant) else { return };
            if spool.is_empty() {
                if let Err(error) = spool.remove().await {
                    tracing::error!(%tenant, "cannot delete the emptied audit spool: {error}");
                }
                self.metrics.receipts_spooled(name, 0);
                self.settled();
                return;
            }
            match self.drain_oldest(name).await {
                Ok(()) => {}
                Err(error) if transient(&error) => {
                    let spool = self.spools.get_mut(tenant).expect("checked above");
                    spool.failures += 1;
                    let pause = RETRY_BACKOFF.delay(spool.failures);
                    spool.next_try = Some(tokio::time::Instant::now() + pause);
                    let spooled = spool.receipts();
                    tracing::warn!(%tenant, spooled, "appending the audit spool failed, retrying in {pause:?}: {error}");
                    let trouble = format!(
                        "appending to the audit log of tenant {tenant} failed ({spooled} receipts wait in \
                         this node's spool): {error}"
                    );
                    self.trouble.send_replace(Some(trouble));
                    return;
                }
                Err(error) => {
                    let spool = self.spools.get_mut(tenant).expect("checked above");
                    if let Some(lost) = spool.drained() {
                        tracing::error!(%tenant, lost = lost.receipts, "spooled receipts dropped: {error}");
                        tell(lost.told, false);
                    }
                }
            }
        }
    }

    /// Appends `name`'s oldest spooled record, unless the log holds it already.
    async fn drain_oldest(&mut self, name: &Name) -> Result<(), StateError> {
        let tenant = name.as_str();
        if !self.logs.contains_key(tenant) {
            self.skip_landed(name, false).await?;
        }
        let spool = self.spools.get(tenant).expect("the caller found it");
        let Some(record) = spool.oldest().await? else { return Ok(()) };
        let maybe_stored = spool.maybe_stored;
        let attempt = async {
            if maybe_stored && let Some(sequence) = self.landed(name, &record).await? {
                return Ok(sequence);
            }
            self.audit.append(name, record).await
        };
        let appended = attempt.instrument(spans::audit_append(tenant)).await;
        let spool = self.spools.get_mut(tenant).expect("the caller found it");
        match appended {
            Ok(end) => {
                if let Some(log) = self.logs.get_mut(tenant) {
                    log.end = end;
                }
                let spooled = spool.drained().expect("it held the record");
                self.metrics.receipts_spooled(name, spool.receipts());
                (0..spooled.receipts).for_each(|_| self.metrics.receipt_appended(name));
                tell(spooled.told, true);
                Ok(())
            }
            Err(error) => {
                spool.maybe_stored |= transient(&error);
                Err(error)
            }
        }
    }

    /// Reads `name`'s log after a restart that resumed the chain from its spool, and drops the
    /// spooled records whose receipts the log holds already (appended before a crash left them
    /// in the spool). Before anything was sealed on the chain since (`unsealed`), a log whose
    /// chain goes on after the spool's (an emptied spool that could not be deleted) moves the
    /// chain on to the log's last receipt.
    async fn skip_landed(&mut self, name: &Name, unsealed: bool) -> Result<(), StateError> {
        let state = chain_state(&*self.audit, name, self.chains.node()).await?;
        let in_log = state.last_receipt.as_ref().map_or(0, |head| head.seq);
        let spooled_head = self.chains.head(name.as_str()).map_or(0, |head| head.seq);
        if unsealed
            && in_log > spooled_head
            && let Some(head) = state.last_receipt
        {
            tracing::warn!(tenant = %name, seq = head.seq, "the audit log goes on after this node's spool: continuing after the log");
            self.chains.resume(name.as_str(), head);
        }
        let checkpointed = state.last_checkpoint.map_or(0, |head| head.seq);
        let log = TenantLog { name: name.clone(), end: state.end, checkpointed };
        self.logs.insert(name.to_string(), log);
        let spool = self.spools.get_mut(name.as_str()).expect("resumed from it");
        let mut landed = 0;
        while spool.oldest_last_seq().is_some_and(|seq| seq <= in_log) {
            let spooled = spool.drained().expect("it has an oldest record");
            landed += spooled.receipts;
            tell(spooled.told, true);
        }
        // The records after those were never appended: this node's chain ends before them.
        spool.maybe_stored = false;
        if landed > 0 {
            tracing::info!(tenant = %name, landed, "spooled receipts were in the audit log already");
            self.metrics.receipts_spooled(name, spool.receipts());
        }
        Ok(())
    }

    /// Appends a checkpoint of every chain that moved since its last one.
    async fn checkpoint_all(&mut self) {
        let moved: Vec<(String, Head)> = self
            .logs
            .iter()
            .filter(|(tenant, _)| self.spools.get(*tenant).is_none_or(Spool::is_empty))
            .filter_map(|(tenant, log)| {
                let head = self.chains.head(tenant)?;
                (head.seq > log.checkpointed).then(|| (tenant.clone(), head.clone()))
            })
            .collect();
        for (tenant, head) in moved {
            let node = self.chains.node().to_owned();
            let keys = self.chains.tenant_keys(&tenant);
            let checkpoint = Checkpoint::new(&tenant, &node, &head, keys, crate::state::now_ms());
            let name = self.logs[&tenant].name.clone();
            match self.append(&name, Record::Checkpoint(checkpoint).encode(), false, false).await {
                Ok(_) => self.logs.get_mut(&tenant).expect("listed above").checkpointed = head.seq,
                Err(error) => tracing::warn!(%tenant, "cannot write an audit checkpoint: {error}"),
            }
        }
    }

    /// Appends `record` to `name`'s log, retrying while the failure may pass, or with `spill`
    /// until it fails twice in a row; after a failure that may have stored it (or with
    /// `maybe_stored`), publishes it again only once the log's tail shows it is not there.
    async fn append(
        &mut self,
        name: &Name,
        record: Bytes,
        spill: bool,
        mut maybe_stored: bool,
    ) -> Result<Appended, StateError> {
        let mut retry = self.retry(name, "appending to the audit log");
        loop {
            let attempt = async {
                if maybe_stored && let Some(sequence) = self.landed(name, &record).await? {
                    return Ok(sequence);
                }
                self.audit.append(name, record.clone()).await
            };
            match attempt.instrument(spans::audit_append(name.as_str())).await {
                Ok(end) => {
                    if let Some(log) = self.logs.get_mut(name.as_str()) {
                        log.end = end;
                    }
                    self.settled();
                    return Ok(Appended::InLog);
                }
                Err(error) => {
                    // A failed read leaves the question open; a failed append may open it.
                    maybe_stored |= transient(&error);
                    if spill && retry.failures == 1 && transient(&error) {
                        return Ok(Appended::Failing { maybe_stored, error });
                    }
                    if let Err(error) = retry.after(error).await {
                        self.settled();
                        return Err(error);
                    }
                }
            }
        }
    }

    /// The sequence at which `record` is in `name`'s log after the last sequence this node
    /// knows of, if it is there: the whole tail is read, whatever other nodes appended since.
    async fn landed(&self, name: &Name, record: &Bytes) -> Result<Option<u64>, StateError> {
        let end = self.logs.get(name.as_str()).map_or(0, |log| log.end);
        let tail = read_from(&*self.audit, name, end + 1).await?;
        let found = tail.into_iter().find(|(_, stored)| stored == record).map(|(sequence, _)| sequence);
        if let Some(sequence) = found {
            tracing::info!(tenant = %name, sequence, "an audit append that seemed to fail had landed");
        }
        Ok(found)
    }

    /// Appends no longer fail, or failed for good (then the next one tries afresh, and says
    /// so if it fails too).
    fn settled(&self) {
        self.trouble.send_if_modified(|trouble| trouble.take().is_some());
    }

    fn retry<'a>(&self, tenant: &'a Name, what: &'static str) -> Retry<'a> {
        Retry { tenant, what, failures: 0, stop_by: self.stop_by.clone(), trouble: self.trouble.clone() }
    }

    /// Whether `tenant`'s chain was resumed: from its log, or from the records its spool holds.
    fn resumed(&self, tenant: &str) -> bool {
        self.logs.contains_key(tenant) || self.spools.get(tenant).is_some_and(|spool| !spool.is_empty())
    }

    /// Reads where this node's chain of `name` stands and continues it from there: after the
    /// records of its spool, if it holds any, else from its log.
    async fn resume(&mut self, name: &Name) -> Result<(), StateError> {
        if !self.spools.contains_key(name.as_str()) {
            let settings = &self.spool;
            let (spool, head) =
                Spool::open(&settings.dir, name.clone(), settings.max_bytes, self.chains.node()).await?;
            if let Some(head) = head {
                let spooled = spool.receipts();
                tracing::info!(tenant = %name, seq = head.seq, spooled, "resumed this node's receipt chain from its audit spool");
                self.metrics.receipts_spooled(name, spooled);
                self.chains.resume(name.as_str(), head);
                self.spools.insert(name.to_string(), spool);
                // Nothing is sealed yet: if the log can be read now, what it holds already is
                // skipped before the chain goes on.
                if let Err(error) = self.skip_landed(name, true).await {
                    tracing::info!(tenant = %name, "the audit log cannot be read yet; the spool waits for it: {error}");
                }
                return Ok(());
            }
            self.spools.insert(name.to_string(), spool);
        }
        if self.resumed(name.as_str()) {
            return Ok(());
        }
        let state = chain_state(&*self.audit, name, self.chains.node()).await?;
        let receipt = state.last_receipt.unwrap_or_else(Head::genesis);
        let checkpointed = state.last_checkpoint.as_ref().map_or(0, |head| head.seq);
        let head = match state.last_checkpoint {
            Some(checkpoint) if checkpoint.seq > receipt.seq => {
                tracing::error!(
                    tenant = %name,
                    chain = self.chains.node(),
                    "the audit log lacks receipts {} to {} of this node's chain, which it checkpointed: \
                     they were lost or cut off; continuing after them, so the gap stays visible",
                    receipt.seq + 1,
                    checkpoint.seq
                );
                checkpoint
            }
            _ => receipt,
        };
        tracing::debug!(tenant = %name, seq = head.seq, "resumed this node's receipt chain");
        self.chains.resume(name.as_str(), head);
        self.logs.insert(name.to_string(), TenantLog { name: name.clone(), end: state.end, checkpointed });
        Ok(())
    }
}

/// Retries of one operation: until it succeeds, fails for good, or the recorder has been
/// stopping for longer than its grace period.
struct Retry<'a> {
    tenant: &'a Name,
    what: &'static str,
    failures: u32,
    stop_by: watch::Receiver<Option<Instant>>,
    trouble: watch::Sender<Option<String>>,
}

impl Retry<'_> {
    /// After a failure: gives it back if it is not to be retried, else waits before the retry;
    /// from the second failure in a row on, says why appends fail (a single one, such as a lost
    /// acknowledgement, is usually settled by the first retry).
    async fn after(&mut self, error: StateError) -> Result<(), StateError> {
        let overdue = (*self.stop_by.borrow()).is_some_and(|by| Instant::now() >= by);
        if !transient(&error) || overdue {
            return Err(error);
        }
        self.failures += 1;
        let pause = RETRY_BACKOFF.delay(self.failures);
        tracing::warn!(tenant = %self.tenant, "{} failed, retrying in {pause:?}: {error}", self.what);
        if self.failures > 1 {
            let trouble = format!("{} of tenant {} failed: {error}", self.what, self.tenant);
            self.trouble.send_replace(Some(trouble));
        }
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

/// Whether a failure may pass if the operation is tried again.
fn transient(error: &StateError) -> bool {
    matches!(error, StateError::Unavailable(_) | StateError::Internal(_))
}

/// Tells the callers waiting for spooled receipts whether they were appended.
fn tell(told: Vec<oneshot::Sender<bool>>, appended: bool) {
    for told in told {
        let _ = told.send(appended);
    }
}

/// Tells whoever waits for sealed receipts that they were not appended.
fn lose_sealed(tenant: &str, waiting: Waiting, why: &str) {
    tracing::error!(%tenant, lost = waiting.len(), "receipts sealed but not appended: {why}");
    for (told, _room) in waiting {
        if let Some(told) = told {
            let _ = told.send(false);
        }
    }
}

/// Drops receipts that cannot be appended, telling whoever waits for them.
fn lose(tenant: &str, batch: Vec<Queued>, why: &str) {
    tracing::error!(%tenant, lost = batch.len(), "receipts dropped: {why}");
    for queued in batch {
        if let Some(told) = queued.appended {
            let _ = told.send(false);
        }
    }
}
