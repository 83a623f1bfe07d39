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
//! A record is never stored twice: a failed append may have stored it all the same (a lost
//! acknowledgement, a timeout), so before publishing it again the appender reads the log's tail
//! after the last sequence it knows of and looks for it; it publishes again only once a read has
//! shown the record is not there. The backends also drop a repeat within their duplicate window
//! (see `AuditLog::append`), which covers a first attempt that lands while the tail is read.

use super::chain::{Chains, Head};
use super::log::{chain_state, read_from};
use super::receipt::ReceiptDraft;
use super::record::{Checkpoint, Record};
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::spec::Name;
use crate::state::{AuditLog, StateError};
use crate::telemetry::spans;
use bytes::Bytes;
use std::collections::HashMap;
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
        stop_by: watch::Receiver<Option<Instant>>,
        trouble: watch::Sender<Option<String>>,
    ) -> Self {
        Self { audit, metrics, chains, logs: HashMap::new(), stop_by, trouble }
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
            }
        };
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
        while !self.logs.contains_key(tenant) {
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
            let appended = self.append(&name, Record::encode_receipts(&receipts)).await;
            match &appended {
                Ok(()) => (0..waiting.len()).for_each(|_| self.metrics.receipt_appended(&name)),
                Err(error) => {
                    tracing::error!(%tenant, lost = waiting.len(), "receipts sealed but not appended: {error}")
                }
            }
            for (told, _room) in waiting {
                if let Some(told) = told {
                    let _ = told.send(appended.is_ok());
                }
            }
        }
    }

    /// Appends a checkpoint of every chain that moved since its last one.
    async fn checkpoint_all(&mut self) {
        let moved: Vec<(String, Head)> = self
            .logs
            .iter()
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
            match self.append(&name, Record::Checkpoint(checkpoint).encode()).await {
                Ok(()) => self.logs.get_mut(&tenant).expect("listed above").checkpointed = head.seq,
                Err(error) => tracing::warn!(%tenant, "cannot write an audit checkpoint: {error}"),
            }
        }
    }

    /// Appends `record` to `name`'s log, retrying while the failure may pass; after a failure
    /// that may have stored it, publishes it again only once the log's tail shows it is not
    /// there.
    async fn append(&mut self, name: &Name, record: Bytes) -> Result<(), StateError> {
        let mut retry = self.retry(name, "appending to the audit log");
        let mut maybe_stored = false;
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
                    return Ok(());
                }
                Err(error) => {
                    // A failed read leaves the question open; a failed append may open it.
                    maybe_stored |= transient(&error);
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

    /// Reads where this node's chain of `name` stands and continues it from there.
    async fn resume(&mut self, name: &Name) -> Result<(), StateError> {
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

/// Drops receipts that cannot be appended, telling whoever waits for them.
fn lose(tenant: &str, batch: Vec<Queued>, why: &str) {
    tracing::error!(%tenant, lost = batch.len(), "receipts dropped: {why}");
    for queued in batch {
        if let Some(told) = queued.appended {
            let _ = told.send(false);
        }
    }
}
