//! A tenant's spool: the records of receipts this node sealed while the tenant's audit log could
//! not be written, kept on the node's disk in chain order until the log takes them. The file,
//! `<dataDir>/audit-spool/<tenant>.log` (directory mode 0700, file mode 0600), is a chain log
//! (see `state::embedded::audit_file`): each record is written with one write and one fdatasync,
//! a torn tail is cut on open, and corruption is an error naming the file and the offset.
//!
//! Records are never taken off the front of the file: which of them are in the log already is
//! kept in memory, and the file is deleted once all are. After a restart, the records a crash
//! left in the spool are read back; those whose receipts the log holds already are skipped by
//! the appender (by their sequence numbers on this node's chain), the others appended.

use super::chain::Head;
use super::record::Record;
use crate::spec::Name;
use crate::state::StateError;
use crate::state::embedded::audit_file::{self, Access, ChainLog, ChainLogError, HEADER_LEN};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The directory of the spools under the data dir.
pub const SPOOL_DIR: &str = "audit-spool";

#[derive(Debug, thiserror::Error)]
pub(super) enum SpoolError {
    #[error(transparent)]
    File(#[from] ChainLogError),
    #[error("audit spool {path}: cannot {action}: {source}")]
    Io { path: PathBuf, action: &'static str, source: io::Error },
    #[error(
        "audit spool {path}: record {sequence} is not a record of receipts of this node's chain \
         ({chain}): {problem}; nothing of the spool is appended until it is repaired or removed"
    )]
    Foreign { path: PathBuf, sequence: u64, chain: String, problem: String },
    #[error("audit spool {path}: the task writing it failed: {error}")]
    Task { path: PathBuf, error: String },
}

impl From<SpoolError> for StateError {
    /// Every spool failure may pass (a disk that fills, a file the operator repairs): the
    /// appender keeps the records in memory and tries again.
    fn from(error: SpoolError) -> Self {
        StateError::Unavailable(error.to_string())
    }
}

/// A spooled record not yet in the log.
pub(super) struct Spooled {
    /// The sequence number on this node's chain of its last receipt.
    pub last_seq: u64,
    pub receipts: usize,
    /// Callers waiting until its receipts are in the log (`durability: sync`).
    pub told: Vec<oneshot::Sender<bool>>,
}

/// A tenant's spool.
pub(super) struct Spool {
    tenant: Name,
    path: PathBuf,
    max_bytes: u64,
    /// The file, while it holds records.
    file: Option<Arc<ChainLog>>,
    /// Records at the file's start that are in the log already.
    drained: u64,
    /// The records after those, in order.
    waiting: VecDeque<Spooled>,
    /// Whether the oldest waiting record may be in the log already: an append of it failed in a
    /// way that may have stored it, or a crash may have come after its append.
    pub maybe_stored: bool,
    /// Failed appends of the oldest record in a row.
    pub failures: u32,
    /// When the appender next tries to append the oldest record.
    pub next_try: Option<tokio::time::Instant>,
    /// Whether a full spool was reported since it was last empty.
    pub reported_full: bool,
}

impl Spool {
    /// `tenant`'s spool in `dir`, with the records a previous run left in it, and the head of
    /// this node's chain (`chain`) after them, if it holds any.
    pub async fn open(
        dir: &Path,
        tenant: Name,
        max_bytes: u64,
        chain: &str,
    ) -> Result<(Self, Option<Head>), SpoolError> {
        let path = dir.join(format!("{tenant}.log"));
        let mut spool = Self {
            tenant: tenant.clone(),
            path: path.clone(),
            max_bytes,
            file: None,
            drained: 0,
            waiting: VecDeque::new(),
            maybe_stored: false,
            failures: 0,
            next_try: None,
            reported_full: false,
        };
        let chain = chain.to_owned();
        let read = move || -> Result<Option<(ChainLog, Vec<Spooled>, Head)>, SpoolError> {
            if !path.exists() {
                return Ok(None);
            }
            let file = ChainLog::open(tenant, path.clone(), Access::Write)?.expect("opened for writing");
            let mut spooled = Vec::new();
            let mut head = None;
            for (sequence, bytes) in file.read(1, usize::MAX)? {
                let foreign = |problem: String| SpoolError::Foreign {
                    path: path.clone(),
                    sequence,
                    chain: chain.clone(),
                    problem,
                };
                let receipts = match Record::decode(&bytes) {
                    Ok(Record::Receipts(receipts)) => receipts,
                    Ok(Record::Checkpoint(_)) => return Err(foreign("it is a checkpoint".into())),
                    Err(error) => return Err(foreign(format!("it does not decode: {error}"))),
                };
                if let Some(other) = receipts.iter().find(|receipt| receipt.chain != chain) {
                    return Err(foreign(format!("it holds a receipt of chain {}", other.chain)));
                }
                let Some(last) = receipts.last() else { return Err(foreign("it is empty".into())) };
                head = Some(Head { seq: last.seq, hash: last.hash() });
                spooled.push(Spooled { last_seq: last.seq, receipts: receipts.len(), told: Vec::new() });
            }
            Ok(head.map(|head| (file, spooled, head)))
        };
        let found = blocking(&spool.path, read).await?;
        let Some((file, spooled, head)) = found else {
            spool.remove().await?;
            return Ok((spool, None));
        };
        spool.file = Some(Arc::new(file));
        spool.waiting = spooled.into();
        spool.maybe_stored = true;
        spool.next_try = Some(tokio::time::Instant::now());
        Ok((spool, Some(head)))
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The receipts waiting in the spool.
    pub fn receipts(&self) -> u64 {
        self.waiting.iter().map(|spooled| spooled.receipts as u64).sum()
    }

    /// Whether a record of `length` bytes fits within the spool's bound.
    pub fn has_room(&self, length: usize) -> bool {
        let used = self.file.as_ref().map_or(0, |file| file.extent().1);
        used + HEADER_LEN + length as u64 <= self.max_bytes
    }

    /// The path of the spool's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `record` at the spool's end (one write and one fdatasync); gives `spooled` back
    /// with the error if it cannot.
    pub async fn push(&mut self, record: Bytes, spooled: Spooled) -> Result<(), (SpoolError, Spooled)> {
        let (tenant, path, file) = (self.tenant.clone(), self.path.clone(), self.file.clone());
        let write = move || -> Result<Arc<ChainLog>, SpoolError> {
            let file = match file {
                Some(file) => file,
                None => Arc::new(create(tenant, &path)?),
            };
            file.append(&record)?;
            Ok(file)
        };
        match blocking(&self.path, write).await {
            Ok(file) => {
                self.file = Some(file);
                self.waiting.push_back(spooled);
                Ok(())
            }
            Err(error) => Err((error, spooled)),
        }
    }

    /// The oldest record not in the log yet.
    pub async fn oldest(&self) -> Result<Option<Bytes>, SpoolError> {
        let (Some(file), false) = (self.file.clone(), self.waiting.is_empty()) else { return Ok(None) };
        let sequence = self.drained + 1;
        let read = move || Ok(file.read(sequence, 1)?.pop());
        let record = blocking(&self.path, read).await?;
        let missing = || SpoolError::Io {
            path: self.path.clone(),
            action: "read",
            source: io::Error::new(io::ErrorKind::UnexpectedEof, format!("record {sequence} is missing")),
        };
        let (_, record) = record.ok_or_else(missing)?;
        Ok(Some(record))
    }

    /// The sequence number on this node's chain of the oldest waiting record's last receipt.
    pub fn oldest_last_seq(&self) -> Option<u64> {
        self.waiting.front().map(|spooled| spooled.last_seq)
    }

    /// The oldest record is in the log now: gives back what was known of it.
    pub fn drained(&mut self) -> Option<Spooled> {
        let spooled = self.waiting.pop_front()?;
        self.drained += 1;
        self.maybe_stored = false;
        self.failures = 0;
        Some(spooled)
    }

    /// Deletes the file once every record is in the log.
    pub async fn remove(&mut self) -> Result<(), SpoolError> {
        let (file, path) = (self.file.take(), self.path.clone());
        let delete = move || match file {
            Some(file) => Ok(file.remove()?),
            None => Ok(audit_file::remove_file(&path)?),
        };
        blocking(&self.path, delete).await?;
        self.drained = 0;
        self.next_try = None;
        self.reported_full = false;
        Ok(())
    }
}

/// Creates the spool's file (and its directory) with modes that let only this node's user read
/// them, and opens it.
fn create(tenant: Name, path: &Path) -> Result<ChainLog, SpoolError> {
    let io = |action| {
        let path = path.to_path_buf();
        move |source| SpoolError::Io { path, action, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("create the directory of"))?;
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io("create")(error)),
    }
    Ok(ChainLog::open(tenant, path.to_path_buf(), Access::Write)?.expect("opened for writing"))
}

/// Runs file I/O on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| Err(SpoolError::Task { path: path.to_path_buf(), error: error.to_string() }))
}
