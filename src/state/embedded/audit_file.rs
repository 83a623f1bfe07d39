//! A tenant's chain log: its audit records in an append-only file, `<tenant>.log`, framed one
//! after another after an 8-byte magic. A frame is the record's length (u32, little endian), the
//! CRC-32 of those 4 bytes and the record (u32, little endian), then the record; a record's
//! sequence is its position from 1. The recorder's spool (`audit::spool`) keeps the records a
//! tenant's log could not take yet in a file of the same format.
//!
//! One writer appends each record with one `write` and one `fdatasync`, and only then publishes
//! the new end: readers, which share the file and read by position, never see a partial frame.
//! The file is grown ahead of the records with written zeros (see [`growth`]), so that an
//! append's `fdatasync` has only the record's pages to flush: appending past the file's end
//! would change its size, a metadata change that makes each `fdatasync` wait for a journal commit
//! (on ext4, together with every other file's data written meanwhile).
//!
//! Opening scans every frame and checks its checksum; zeros to the end of the file are the space
//! grown ahead. A bad frame with nothing but zeros after it is a torn tail (a write cut short by
//! a crash, so never acknowledged): it is cut off and logged.
//! A bad frame with data after it is corruption: the records before it stay readable, and every
//! read that reaches it and every append fail naming the file, the record and the byte offset;
//! nothing is ever dropped silently.
//!
//! Memory: one byte offset (u64) per [`INDEX_EVERY`] records, plus the last record (to drop a
//! retried append of it): about 125 KB for a million records. A read from a sequence in
//! between walks frame headers from the indexed one before it.

use crate::spec::Name;
use crate::state::StateError;
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

/// The first bytes of every chain log: what it is and the version of its format.
const MAGIC: &[u8; 8] = b"GJAUDIT1";
/// A frame's header: length and checksum.
pub(crate) const HEADER_LEN: u64 = 8;
/// Records per offset kept in memory.
pub(super) const INDEX_EVERY: u64 = 64;
/// Bytes read at once when scanning.
const SCAN_BUFFER: usize = 1 << 20;
/// The least and the most a log grows by at once.
const MIN_GROWTH: u64 = 64 << 10;
const MAX_GROWTH: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ChainLogError {
    #[error("audit log {path}: cannot {action}: {source}")]
    Io { path: PathBuf, action: &'static str, source: io::Error },
    #[error(
        "audit log {path} is not a chain log: it does not start with {:?}",
        String::from_utf8_lossy(MAGIC)
    )]
    NotALog { path: PathBuf },
    #[error(
        "audit log {path} is corrupt: record {sequence} (byte {offset}) fails its checksum and {after} \
         bytes follow it; records from {sequence} on cannot be read and nothing more is appended \
         (restore the file from a backup; if the bytes from {offset} on were never acknowledged, \
         as after a power loss during an append, cutting the file there repairs it)"
    )]
    Corrupt { path: PathBuf, sequence: u64, offset: u64, after: u64 },
    #[error("an audit record of {0} bytes is larger than a chain log frame holds (4 GiB)")]
    TooLarge(usize),
    #[error("tenant {0} was removed")]
    Removed(Name),
}

impl From<ChainLogError> for StateError {
    fn from(error: ChainLogError) -> Self {
        match error {
            ChainLogError::Io { .. } => StateError::Unavailable(error.to_string()),
            ChainLogError::TooLarge(_) => StateError::InvalidArgument(error.to_string()),
            ChainLogError::Removed(tenant) => StateError::NoTenant(tenant),
            ChainLogError::NotALog { .. } | ChainLogError::Corrupt { .. } => {
                StateError::Internal(error.to_string())
            }
        }
    }
}

/// Whether an open may change the file (cut a torn tail, create it) and append.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Write,
    Read,
}

/// An open chain log.
pub(crate) struct ChainLog {
    tenant: Name,
    path: PathBuf,
    file: File,
    writer: Mutex<Writer>,
    published: RwLock<Published>,
}

/// What only the writer touches.
struct Writer {
    /// Byte offset where the next frame goes.
    end: u64,
    /// The file's length: zeros from `end` on.
    allocated: u64,
    records: u64,
    /// The last record, to drop a retried append of it.
    last: Option<Bytes>,
    removed: bool,
}

/// What readers may read: everything before `end`, whose write completed.
struct Published {
    end: u64,
    records: u64,
    /// The offset of records 1, 1 + INDEX_EVERY, 1 + 2 * INDEX_EVERY, ...
    index: Vec<u64>,
    /// Where the readable records end, when something after them is corrupt.
    corrupt: Option<Corruption>,
}

#[derive(Clone, Copy)]
struct Corruption {
    offset: u64,
    after: u64,
}

/// What the frame at an offset is.
enum Frame {
    Record(Vec<u8>),
    /// The end of the file.
    End,
    /// Too short for its header or for the length it says.
    Short,
    BadChecksum {
        length: u64,
    },
}

impl ChainLog {
    /// Opens `path`, creating it for [`Access::Write`]; `None` if it does not exist for
    /// [`Access::Read`]. Blocks on file I/O.
    pub fn open(tenant: Name, path: PathBuf, access: Access) -> Result<Option<Self>, ChainLogError> {
        let file = match access {
            Access::Write => {
                OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)
            }
            Access::Read => File::open(&path),
        };
        let file = match file {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound && access == Access::Read => {
                return Ok(None);
            }
            Err(error) => return Err(failed(&path, "open")(error)),
        };
        let length = file.metadata().map_err(failed(&path, "read the length of"))?.len();
        if length < MAGIC.len() as u64 {
            start(&file, &path, length, access)?;
        }
        let mut magic = [0; MAGIC.len()];
        file.read_exact_at(&mut magic, 0).map_err(failed(&path, "read the start of"))?;
        if &magic != MAGIC {
            return Err(ChainLogError::NotALog { path });
        }
        let length = length.max(MAGIC.len() as u64);
        let scan = scan(&file, length).map_err(failed(&path, "read"))?;
        let mut allocated = length;
        if scan.torn {
            cut_torn_tail(&tenant, &file, &path, scan.end, length, access)?;
            allocated = scan.end;
        }
        let writer =
            Writer { end: scan.end, allocated, records: scan.records, last: scan.last, removed: false };
        let published =
            Published { end: scan.end, records: scan.records, index: scan.index, corrupt: scan.corrupt };
        Ok(Some(Self { tenant, path, file, writer: Mutex::new(writer), published: RwLock::new(published) }))
    }

    /// Appends `record` with one write and one fdatasync; returns its sequence. A record equal to
    /// the last one is not stored again: its sequence is returned.
    pub fn append(&self, record: &Bytes) -> Result<u64, ChainLogError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if writer.removed {
            return Err(ChainLogError::Removed(self.tenant.clone()));
        }
        if let Some(corrupt) = self.read_published().corrupt {
            return Err(self.corrupt(corrupt, writer.records));
        }
        if writer.last.as_ref() == Some(record) {
            return Ok(writer.records);
        }
        let frame = frame(record)?;
        let needed = writer.end + frame.len() as u64;
        let grown = if needed > writer.allocated {
            let grown = needed.max(writer.end + growth(writer.end));
            let zeros =
                vec![0; usize::try_from(grown - writer.allocated).expect("at most a frame more than 1 MiB")];
            self.file.write_all_at(&zeros, writer.allocated).map(|()| grown)
        } else {
            Ok(writer.allocated)
        };
        let written = grown.and_then(|grown| {
            self.file.write_all_at(&frame, writer.end)?;
            self.file.sync_data()?;
            Ok(grown)
        });
        match written {
            Ok(grown) => writer.allocated = grown,
            Err(source) => {
                // Whatever part of the frame reached the file lies past the published end: the
                // next append overwrites it, a reopen cuts it off as a torn tail.
                if self.file.set_len(writer.end).is_ok() {
                    writer.allocated = writer.end;
                }
                return Err(ChainLogError::Io { path: self.path.clone(), action: "append to", source });
            }
        }
        let offset = writer.end;
        writer.end += frame.len() as u64;
        writer.records += 1;
        writer.last = Some(record.clone());
        let mut published = self.published.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if (writer.records - 1).is_multiple_of(INDEX_EVERY) {
            published.index.push(offset);
        }
        published.end = writer.end;
        published.records = writer.records;
        Ok(writer.records)
    }

    /// Records with sequence `>= from`, at most `limit`, of those whose append completed.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, ChainLogError> {
        let from = from.max(1);
        let (start, mut offset, end, records, corrupt) = {
            let published = self.read_published();
            if from > published.records {
                return match published.corrupt {
                    Some(corrupt) if limit > 0 => Err(self.corrupt(corrupt, published.records)),
                    _ => Ok(Vec::new()),
                };
            }
            let indexed = (from - 1) / INDEX_EVERY;
            let index = usize::try_from(indexed).expect("an index entry exists for every record");
            (
                indexed * INDEX_EVERY + 1,
                published.index[index],
                published.end,
                published.records,
                published.corrupt,
            )
        };
        let io = |source| ChainLogError::Io { path: self.path.clone(), action: "read", source };
        for _ in start..from {
            let mut header = [0; HEADER_LEN as usize];
            self.file.read_exact_at(&mut header, offset).map_err(io)?;
            offset += HEADER_LEN + u64::from(length_of(&header));
        }
        let mut reader = BufReader::with_capacity(SCAN_BUFFER, Positioned { file: &self.file, offset, end });
        let mut found = Vec::new();
        for sequence in from..=records {
            if found.len() == limit {
                return Ok(found);
            }
            match read_frame(&mut reader, offset, end).map_err(io)? {
                Frame::Record(record) => {
                    offset += HEADER_LEN + record.len() as u64;
                    found.push((sequence, Bytes::from(record)));
                }
                Frame::End | Frame::Short | Frame::BadChecksum { .. } => {
                    let after = self.file.metadata().map_or(0, |m| m.len().saturating_sub(offset));
                    return Err(self.corrupt(Corruption { offset, after }, sequence - 1));
                }
            }
        }
        match corrupt {
            Some(corrupt) if found.len() < limit => Err(self.corrupt(corrupt, records)),
            _ => Ok(found),
        }
    }

    /// The records the log holds, and the bytes their frames take.
    pub fn extent(&self) -> (u64, u64) {
        let published = self.read_published();
        (published.records, published.end - MAGIC.len() as u64)
    }

    /// Marks the log removed (every later append fails) and deletes its file.
    pub fn remove(&self) -> Result<(), ChainLogError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writer.removed = true;
        remove_file(&self.path)
    }

    fn read_published(&self) -> std::sync::RwLockReadGuard<'_, Published> {
        self.published.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The error for corruption after the log's `readable` records.
    fn corrupt(&self, corruption: Corruption, readable: u64) -> ChainLogError {
        ChainLogError::Corrupt {
            path: self.path.clone(),
            sequence: readable + 1,
            offset: corruption.offset,
            after: corruption.after,
        }
    }
}

/// Writes a new chain log at `path` holding `records`, crash-safe: into a temporary file, synced,
/// then renamed into place and the directory synced. Blocks on file I/O.
pub(super) fn create_with<E>(
    path: &Path,
    records: impl IntoIterator<Item = Result<Bytes, E>>,
) -> Result<Result<(), E>, ChainLogError> {
    let temporary = path.with_extension("log.new");
    let file = File::create(&temporary).map_err(failed(path, "create"))?;
    let mut out = BufWriter::with_capacity(SCAN_BUFFER, &file);
    out.write_all(MAGIC).map_err(failed(path, "write"))?;
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(error) => return Ok(Err(error)),
        };
        out.write_all(&frame(&record)?).map_err(failed(path, "write"))?;
    }
    out.flush().map_err(failed(path, "write"))?;
    drop(out);
    file.sync_all().map_err(failed(path, "sync"))?;
    std::fs::rename(&temporary, path).map_err(failed(path, "rename a new log to"))?;
    sync_directory(path)?;
    Ok(Ok(()))
}

/// How far a log whose records end at `end` grows ahead of them: as much as it holds, within
/// [`MIN_GROWTH`] and [`MAX_GROWTH`], so that a small log stays small, and the append that grows
/// a large one (its `fdatasync` flushes the zeros too) stalls the callers waiting for it by a few
/// milliseconds at most.
fn growth(end: u64) -> u64 {
    end.clamp(MIN_GROWTH, MAX_GROWTH)
}

/// Deletes the log at `path`, if there is one.
pub(crate) fn remove_file(path: &Path) -> Result<(), ChainLogError> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_directory(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ChainLogError::Io { path: path.to_path_buf(), action: "delete", source }),
    }
}

/// Makes an I/O failure an error naming the file and what was being done to it.
fn failed(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> ChainLogError {
    let path = path.to_path_buf();
    move |source| ChainLogError::Io { path, action, source }
}

/// Syncs the directory holding `path`, so that a created, renamed or deleted entry stays so.
fn sync_directory(path: &Path) -> Result<(), ChainLogError> {
    let directory = path.parent().unwrap_or(Path::new("."));
    File::open(directory).and_then(|dir| dir.sync_all()).map_err(|source| ChainLogError::Io {
        path: path.to_path_buf(),
        action: "sync the directory of",
        source,
    })
}

/// Writes the magic into a file shorter than it: a new file, or one whose creation a crash cut
/// short (what it holds is a start of the magic).
fn start(file: &File, path: &Path, length: u64, access: Access) -> Result<(), ChainLogError> {
    let mut held = vec![0; usize::try_from(length).expect("shorter than the magic")];
    file.read_exact_at(&mut held, 0).map_err(failed(path, "read the start of"))?;
    if !MAGIC.starts_with(&held) || access == Access::Read {
        return Err(ChainLogError::NotALog { path: path.to_path_buf() });
    }
    file.write_all_at(MAGIC, 0)
        .and_then(|()| file.sync_data())
        .map_err(failed(path, "write the start of"))?;
    sync_directory(path)
}

/// Cuts the torn tail `[end, length)` off a log opened for writing; one opened for reading only
/// just stops before it.
fn cut_torn_tail(
    tenant: &Name,
    file: &File,
    path: &Path,
    end: u64,
    length: u64,
    access: Access,
) -> Result<(), ChainLogError> {
    if access == Access::Read {
        return Ok(());
    }
    file.set_len(end).and_then(|()| file.sync_data()).map_err(|source| ChainLogError::Io {
        path: path.to_path_buf(),
        action: "cut the torn tail of",
        source,
    })?;
    tracing::warn!(
        %tenant,
        path = %path.display(),
        offset = end,
        bytes = length - end,
        "cut a torn tail off the audit log: a record whose append a crash interrupted, so never \
         acknowledged"
    );
    Ok(())
}

/// What a scan of the whole file found.
struct Scan {
    /// Where the valid frames end.
    end: u64,
    /// Whether a torn tail follows them.
    torn: bool,
    records: u64,
    index: Vec<u64>,
    last: Option<Bytes>,
    corrupt: Option<Corruption>,
}

/// Reads every frame of a file of `length` bytes, checking each.
fn scan(file: &File, length: u64) -> io::Result<Scan> {
    let mut offset = MAGIC.len() as u64;
    let mut reader = BufReader::with_capacity(SCAN_BUFFER, Positioned { file, offset, end: length });
    let mut scan =
        Scan { end: offset, torn: false, records: 0, index: Vec::new(), last: None, corrupt: None };
    loop {
        match read_frame(&mut reader, offset, length)? {
            Frame::Record(record) => {
                if scan.records.is_multiple_of(INDEX_EVERY) {
                    scan.index.push(offset);
                }
                offset += HEADER_LEN + record.len() as u64;
                scan.records += 1;
                scan.end = offset;
                scan.last = Some(Bytes::from(record));
            }
            Frame::End => return Ok(scan),
            // Space grown ahead of the records.
            Frame::Short | Frame::BadChecksum { .. } if zeros(file, offset, length)? => return Ok(scan),
            Frame::Short => {
                scan.torn = true;
                return Ok(scan);
            }
            Frame::BadChecksum { length: record } => {
                let framed_end = offset + HEADER_LEN + record;
                if framed_end < length && !zeros(file, framed_end, length)? {
                    scan.corrupt = Some(Corruption { offset, after: length - framed_end });
                } else {
                    scan.torn = true;
                }
                return Ok(scan);
            }
        }
    }
}

/// Whether `file` holds only zero bytes in `[from, to)`: space a crash left allocated but never
/// written (some file systems extend a file before its data reaches the disk).
fn zeros(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut reader = BufReader::with_capacity(SCAN_BUFFER, Positioned { file, offset: from, end: to });
    let mut buffer = vec![0; SCAN_BUFFER];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok(true);
        }
        if buffer[..read].iter().any(|&byte| byte != 0) {
            return Ok(false);
        }
    }
}

/// Reads the frame at `offset` from `reader`, which is positioned there, in a file (or its
/// published part) of `end` bytes.
fn read_frame(reader: &mut impl Read, offset: u64, end: u64) -> io::Result<Frame> {
    if offset == end {
        return Ok(Frame::End);
    }
    if end - offset < HEADER_LEN {
        return Ok(Frame::Short);
    }
    let mut header = [0; HEADER_LEN as usize];
    reader.read_exact(&mut header)?;
    let length = length_of(&header);
    if end - offset - HEADER_LEN < u64::from(length) {
        return Ok(Frame::Short);
    }
    let mut record = vec![0; length as usize];
    reader.read_exact(&mut record)?;
    let stored = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    Ok(match checksum(&header[..4], &record) == stored {
        true => Frame::Record(record),
        false => Frame::BadChecksum { length: u64::from(length) },
    })
}

fn length_of(header: &[u8; HEADER_LEN as usize]) -> u32 {
    u32::from_le_bytes(header[..4].try_into().expect("4 bytes"))
}

fn checksum(length: &[u8], record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(length);
    hasher.update(record);
    hasher.finalize()
}

/// `record` framed: length, checksum, record.
fn frame(record: &[u8]) -> Result<Vec<u8>, ChainLogError> {
    let length = u32::try_from(record.len()).map_err(|_| ChainLogError::TooLarge(record.len()))?;
    let length = length.to_le_bytes();
    let mut frame = Vec::with_capacity(HEADER_LEN as usize + record.len());
    frame.extend_from_slice(&length);
    frame.extend_from_slice(&checksum(&length, record).to_le_bytes());
    frame.extend_from_slice(record);
    Ok(frame)
}

/// Reads a file by position, from `offset` up to `end`, leaving its cursor alone: readers and
/// the writer share one handle.
struct Positioned<'a> {
    file: &'a File,
    offset: u64,
    end: u64,
}

impl Read for Positioned<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.offset).unwrap_or(usize::MAX);
        let wanted = buffer.len().min(left);
        let read = self.file.read_at(&mut buffer[..wanted], self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn tenant() -> Name {
        Name::new("acme").unwrap()
    }

    fn open(path: &Path) -> ChainLog {
        ChainLog::open(tenant(), path.to_path_buf(), Access::Write).unwrap().unwrap()
    }

    /// A log at `dir/acme.log` holding records "record 1" to "record `count`".
    fn log_of(dir: &Path, count: u64) -> (PathBuf, ChainLog) {
        let path = dir.join("acme.log");
        let log = open(&path);
        for sequence in 1..=count {
            assert_eq!(log.append(&record(sequence)).unwrap(), sequence);
        }
        (path, log)
    }

    fn record(sequence: u64) -> Bytes {
        Bytes::from(format!("record {sequence}"))
    }

    fn records(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, Bytes)> {
        range.map(|sequence| (sequence, record(sequence))).collect()
    }

    fn length(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[test]
    fn reads_start_at_any_sequence_and_stop_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_of(dir.path(), 3 * INDEX_EVERY + 5);
        let last = 3 * INDEX_EVERY + 5;
        assert_eq!(log.read(0, usize::MAX).unwrap(), records(1..=last));
        for from in [1, INDEX_EVERY - 1, INDEX_EVERY, INDEX_EVERY + 1, 2 * INDEX_EVERY + 7, last] {
            assert_eq!(log.read(from, 3).unwrap(), records(from..=(from + 2).min(last)), "from {from}");
        }
        assert!(log.read(last + 1, 10).unwrap().is_empty());
        assert!(log.read(1, 0).unwrap().is_empty());
        drop(log);
        let reopened = open(&path);
        assert_eq!(reopened.read(INDEX_EVERY + 3, 2).unwrap(), records(INDEX_EVERY + 3..=INDEX_EVERY + 4));
        assert_eq!(reopened.append(&record(last)).unwrap(), last, "the last record is known again");
        assert_eq!(reopened.append(&record(last + 1)).unwrap(), last + 1);
    }

    #[test]
    fn the_index_of_a_million_records_holds_one_offset_per_index_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.log");
        let million = 1_000_000;
        create_with(&path, (1..=million).map(|sequence| Ok::<_, ()>(record(sequence)))).unwrap().unwrap();
        let started = std::time::Instant::now();
        let log = open(&path);
        let opened = started.elapsed();
        let index = log.read_published().index.capacity() * std::mem::size_of::<u64>();
        eprintln!("1M records ({} bytes): opened in {opened:?}, index {index} bytes", length(&path));
        assert_eq!(log.read_published().index.len() as u64, million / INDEX_EVERY);
        assert!(index <= 256 * 1024, "{index} bytes");
        assert_eq!(log.read(million - 1, 5).unwrap(), records(million - 1..=million));
        assert_eq!(log.append(&record(million + 1)).unwrap(), million + 1);
    }

    /// Where the frames of records 1 to `count` end.
    fn frames_end(count: u64) -> u64 {
        MAGIC.len() as u64
            + (1..=count).map(|sequence| HEADER_LEN + record(sequence).len() as u64).sum::<u64>()
    }

    #[test]
    fn the_file_grows_ahead_of_its_records_and_reopens_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_of(dir.path(), 3);
        drop(log);
        let grown = MAGIC.len() as u64 + MIN_GROWTH;
        assert_eq!(length(&path), grown, "zeros ahead of the records");
        let log = open(&path);
        assert_eq!(length(&path), grown, "grown space is no torn tail");
        assert_eq!(log.read(1, 10).unwrap(), records(1..=3));
        let big = Bytes::from(vec![b'x'; MIN_GROWTH as usize * 2]);
        assert_eq!(log.append(&big).unwrap(), 4);
        assert_eq!(length(&path), frames_end(3) + HEADER_LEN + big.len() as u64, "grown to fit");
        drop(log);
        assert_eq!(open(&path).read(4, 1).unwrap(), [(4, big)]);
    }

    #[test]
    fn a_torn_tail_is_cut_on_open_and_the_records_before_it_stay() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_of(dir.path(), 3);
        drop(log);
        let file = OpenOptions::new().write(true).open(&path).unwrap();

        // A last frame whose write a crash cut short (in grown space, or at the file's end), then
        // garbage after the last frame, then a last frame whose bytes are wrong: each is cut off.
        file.write_all_at(&[0; 5], frames_end(3) - 5).unwrap();
        let log = open(&path);
        assert_eq!(length(&path), frames_end(2), "cut");
        assert_eq!(log.read(1, 10).unwrap(), records(1..=2));
        assert_eq!(log.append(&record(3)).unwrap(), 3);
        drop(log);
        file.set_len(frames_end(3) - 2).unwrap();
        let log = open(&path);
        assert_eq!(length(&path), frames_end(2), "cut");
        assert_eq!(log.append(&record(3)).unwrap(), 3);
        drop(log);

        file.write_all_at(b"\x07garbage", frames_end(3)).unwrap();
        let log = open(&path);
        assert_eq!(length(&path), frames_end(3), "cut");
        assert_eq!(log.read(1, 10).unwrap(), records(1..=3));
        drop(log);

        file.write_all_at(b"X", frames_end(3) - 1).unwrap();
        let log = open(&path);
        assert_eq!(length(&path), frames_end(2), "cut");
        assert_eq!(log.read(1, 10).unwrap(), records(1..=2));
        assert_eq!(log.append(&record(3)).unwrap(), 3);
        assert_eq!(log.append(&record(4)).unwrap(), 4);
        drop(log);
        assert_eq!(open(&path).read(1, 10).unwrap(), records(1..=4));
    }

    #[test]
    fn corruption_before_the_tail_is_reported_and_nothing_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_of(dir.path(), 3);
        drop(log);
        let whole = length(&path);
        // The second record's last byte flipped.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"X", frames_end(2) - 1).unwrap();

        let log = open(&path);
        assert_eq!(length(&path), whole, "nothing is cut");
        assert_eq!(log.read(1, 1).unwrap(), records(1..=1), "the records before it are readable");
        let read = log.read(1, 10).unwrap_err().to_string();
        let (offset, after) = (frames_end(1), whole - frames_end(2));
        assert!(
            read.contains(&format!("record 2 (byte {offset}) fails its checksum and {after} bytes")),
            "{read}"
        );
        assert!(read.contains("acme.log is corrupt"), "{read}");
        let append = log.append(&record(4)).unwrap_err();
        assert!(matches!(append, ChainLogError::Corrupt { sequence: 2, .. }), "{append:?}");
        assert!(matches!(StateError::from(append), StateError::Internal(_)));
        assert_eq!(length(&path), whole);
    }

    #[test]
    fn a_file_that_is_not_a_chain_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.log");
        std::fs::write(&path, b"{\"not\": \"a log\"}").unwrap();
        let err = ChainLog::open(tenant(), path.clone(), Access::Write).err().unwrap();
        assert!(matches!(err, ChainLogError::NotALog { .. }), "{err:?}");
        assert!(ChainLog::open(tenant(), dir.path().join("none.log"), Access::Read).unwrap().is_none());

        // A creation a crash cut short is finished.
        std::fs::write(&path, &MAGIC[..3]).unwrap();
        let log = open(&path);
        assert_eq!(log.append(&record(1)).unwrap(), 1);
    }

    #[test]
    fn a_reader_opened_read_only_stops_before_a_torn_tail_and_leaves_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_of(dir.path(), 2);
        drop(log);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"\x01\x02", frames_end(2)).unwrap();
        let torn = length(&path);
        let reader = ChainLog::open(tenant(), path.clone(), Access::Read).unwrap().unwrap();
        assert_eq!(reader.read(1, 10).unwrap(), records(1..=2));
        assert_eq!(length(&path), torn);
    }

    #[test]
    fn readers_never_see_a_partial_frame_while_records_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, log) = log_of(dir.path(), 0);
        let log = Arc::new(log);
        let done = Arc::new(AtomicBool::new(false));
        let big = |sequence: u64| Bytes::from(format!("{sequence}:").repeat(500));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (log, done) = (Arc::clone(&log), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mut reads = 0;
                    while !done.load(Ordering::Relaxed) {
                        let found = log.read(1, usize::MAX).expect("every published frame reads");
                        for (position, (sequence, stored)) in found.iter().enumerate() {
                            assert_eq!(*sequence, position as u64 + 1);
                            assert_eq!(*stored, big(*sequence));
                        }
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for sequence in 1..=300 {
            assert_eq!(log.append(&big(sequence)).unwrap(), sequence);
        }
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
        assert_eq!(log.read(1, usize::MAX).unwrap().len(), 300);
    }

    #[test]
    fn a_removed_log_is_deleted_and_takes_no_more_records() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_of(dir.path(), 1);
        log.remove().unwrap();
        assert!(!path.exists());
        let err = log.append(&record(2)).unwrap_err();
        assert!(matches!(StateError::from(err), StateError::NoTenant(_)));
        remove_file(&path).expect("deleting what is gone is done");
    }
}
