//! Reads a tenant's audit log through the state backend: all of it (for verification and for
//! resuming this node's chain), one receipt by id, or the receipts of a time range.
//!
//! There is no index: each of these reads the whole log, in pages. That is fine for logs of a
//! few million receipts (a read of the log costs about what verifying it does); a larger
//! deployment wants an index by receipt id and time, which the `AuditLog` trait does not offer
//! yet.

use super::chain::Head;
use super::examine::RawRecord;
use super::receipt::id_tenant;
use super::record::Record;
use crate::spec::Name;
use crate::state::{AuditLog, StateError};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

/// Records read per backend call.
const PAGE: usize = 10_000;

/// A record as stored, with its sequence number in the log.
pub type Stored = (u64, Bytes);

/// A receipt as stored: its exact JSON text, which its signature covers, so that whoever gets it
/// can check it alone (see [`super::verify_receipt`]).
pub type StoredReceipt = Box<RawValue>;

/// Every record of `tenant`'s log, in order.
pub async fn read_all(audit: &dyn AuditLog, tenant: &Name) -> Result<Vec<Stored>, StateError> {
    read_from(audit, tenant, 1).await
}

/// Every record of `tenant`'s log from sequence `from` on, in order.
pub async fn read_from(audit: &dyn AuditLog, tenant: &Name, from: u64) -> Result<Vec<Stored>, StateError> {
    let mut records = Vec::new();
    let mut next = from;
    loop {
        let page = audit.read(tenant, next, PAGE).await?;
        let full = page.len() == PAGE;
        next = page.last().map_or(next, |(sequence, _)| sequence + 1);
        records.extend(page);
        if !full {
            return Ok(records);
        }
    }
}

/// What a listing reads of a receipt.
#[derive(Deserialize)]
struct Listed<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    chain: Cow<'a, str>,
    execution: Started,
}

#[derive(Deserialize)]
struct Started {
    started_ms: u64,
}

/// The receipts of `records` as stored, in log order, without the records an outage stored
/// twice: a record byte for byte the same as the one before it in each of its chains is the
/// repeat of an append that seemed to fail, which verification counts once too (see
/// `verify`). Records and receipts that do not decode are skipped: verification reports them.
fn receipts(records: &[Stored]) -> Vec<(&RawValue, Listed<'_>)> {
    let mut found = Vec::new();
    // Per chain, the last record that held its receipts.
    let mut last: HashMap<Cow<str>, usize> = HashMap::new();
    for (position, (_, bytes)) in records.iter().enumerate() {
        let Ok(RawRecord::Receipts(raw)) = serde_json::from_slice::<RawRecord>(bytes) else { continue };
        let listed: Vec<_> = raw
            .into_iter()
            .filter_map(|raw| Some((raw, serde_json::from_str::<Listed>(raw.get()).ok()?)))
            .collect();
        let repeated = !listed.is_empty()
            && listed.iter().all(|(_, receipt)| {
                last.get(&*receipt.chain).is_some_and(|&before| records[before].1 == *bytes)
            });
        if repeated {
            continue;
        }
        for (_, receipt) in &listed {
            last.insert(receipt.chain.clone(), position);
        }
        found.extend(listed);
    }
    found
}

/// The receipt with this id as stored, if it is in its tenant's log.
pub async fn find(audit: &dyn AuditLog, id: &str) -> Result<Option<StoredReceipt>, StateError> {
    let Some(tenant) = id_tenant(id) else { return Ok(None) };
    match read_all(audit, &tenant).await {
        Ok(records) => {
            let found = receipts(&records).into_iter().find(|(_, receipt)| receipt.id == id);
            Ok(found.map(|(raw, _)| raw.to_owned()))
        }
        Err(StateError::NoTenant(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Which receipts [`list`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Unix milliseconds; receipts of executions started at or after this.
    pub from_ms: u64,
    /// Unix milliseconds; receipts of executions started before this.
    pub to_ms: u64,
    pub limit: usize,
}

/// The first receipts of `tenant`'s log, in log order and as stored, whose execution started
/// within `range`.
pub async fn list(
    audit: &dyn AuditLog,
    tenant: &Name,
    range: Range,
) -> Result<Vec<StoredReceipt>, StateError> {
    let records = read_all(audit, tenant).await?;
    let within = |(_, receipt): &(&RawValue, Listed)| {
        (range.from_ms..range.to_ms).contains(&receipt.execution.started_ms)
    };
    Ok(receipts(&records)
        .into_iter()
        .filter(within)
        .take(range.limit)
        .map(|(raw, _)| raw.to_owned())
        .collect())
}

/// What a tenant's log says of one node's chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainState {
    /// The chain's last receipt.
    pub last_receipt: Option<Head>,
    /// The chain's last checkpoint.
    pub last_checkpoint: Option<Head>,
    /// The log's last sequence number (0 when empty).
    pub end: u64,
}

/// Reads where `chain` stands in `tenant`'s log.
pub async fn chain_state(audit: &dyn AuditLog, tenant: &Name, chain: &str) -> Result<ChainState, StateError> {
    let records = read_all(audit, tenant).await?;
    let mut state =
        ChainState { end: records.last().map_or(0, |(sequence, _)| *sequence), ..ChainState::default() };
    let mut last = None;
    for (_, bytes) in &records {
        match Record::decode(bytes) {
            Ok(Record::Receipts(receipts)) => {
                if let Some(receipt) = receipts.into_iter().rev().find(|r| r.chain == chain) {
                    last = Some(receipt);
                }
            }
            Ok(Record::Checkpoint(checkpoint)) if checkpoint.chain == chain => {
                state.last_checkpoint = Some(checkpoint.head());
            }
            Ok(Record::Checkpoint(_)) | Err(_) => {}
        }
    }
    state.last_receipt = last.map(|receipt| Head { seq: receipt.seq, hash: receipt.hash() });
    Ok(state)
}

/// A page of the log as the admin API sends it (serialized as it is: through a
/// `serde_json::Value`, the records would lose their exact bytes).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct AuditPage {
    pub records: Vec<StoredRecord>,
}

/// A stored record as the admin API sends it: its sequence number and its bytes, verbatim (a
/// record that is not JSON travels as a JSON string, which then fails to decode as a record).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StoredRecord {
    pub sequence: u64,
    pub record: Box<serde_json::value::RawValue>,
}

impl StoredRecord {
    pub fn new((sequence, bytes): Stored) -> Self {
        let text = String::from_utf8(bytes.to_vec()).ok();
        let record =
            text.and_then(|text| serde_json::value::RawValue::from_string(text).ok()).unwrap_or_else(|| {
                let lossy = String::from_utf8_lossy(&bytes);
                serde_json::value::to_raw_value(&lossy).expect("a string serializes")
            });
        Self { sequence, record }
    }

    pub fn into_stored(self) -> Stored {
        (self.sequence, Bytes::from(String::from(Box::<str>::from(self.record))))
    }
}
