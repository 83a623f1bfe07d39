//! The first pass of verification: decodes each record of a log and checks what needs no
//! context (tenant, key, signature, hash), on several threads when there are many records.
//!
//! A receipt's signature is checked over its exact bytes as stored (its JSON text up to the
//! signature field, which the signer writes last), never over a re-encoding: nothing is
//! serialized again, and any byte changed in storage shows.

use super::keys::TenantKeys;
use super::receipt::signed_prefix;
use super::record::Checkpoint;
use super::verify::Problem;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Below this many records a run is checked on one thread.
pub(super) const PARALLEL_FROM: usize = 1024;

/// An entry decoded and checked on its own; `problem` is what is wrong with it alone. Borrows
/// from the record it came from.
pub(super) enum Entry<'a> {
    Receipt(Examined<'a>),
    Checkpoint { checkpoint: Checkpoint, problem: Option<Problem> },
    Malformed(String),
}

pub(super) struct Examined<'a> {
    pub id: Cow<'a, str>,
    pub chain: Cow<'a, str>,
    pub seq: u64,
    pub prev: Cow<'a, str>,
    /// Its hash, hex, once its signature verified.
    pub hash: [u8; 64],
    pub ended_ms: u64,
    pub problem: Option<Problem>,
}

/// A record as stored, each receipt kept as its exact JSON text.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawRecord<'a> {
    Receipts(#[serde(borrow)] Vec<&'a RawValue>),
    Checkpoint(Checkpoint),
}

/// What verification reads of a receipt; the signature covers the rest.
#[derive(Deserialize)]
struct ReceiptView<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    chain: Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(borrow)]
    key_id: Cow<'a, str>,
    #[serde(borrow)]
    execution: ExecutionView<'a>,
    #[serde(borrow)]
    signature: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ExecutionView<'a> {
    #[serde(borrow)]
    tenant: Cow<'a, str>,
    ended_ms: u64,
}

/// Decodes and checks `records`, on several threads when there are many; in order, each with
/// its record's position in `records`.
pub(super) fn examine_all<'a, B: AsRef<[u8]> + Sync>(
    keys: &TenantKeys,
    tenant: &str,
    records: &'a [B],
) -> Vec<(usize, Entry<'a>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if threads == 1 || records.len() < PARALLEL_FROM {
        return examine_range(keys, tenant, records, 0);
    }
    let share = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = records
            .chunks(share)
            .enumerate()
            .map(|(i, part)| scope.spawn(move || examine_range(keys, tenant, part, i * share)))
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("verification thread panicked")).collect()
    })
}

fn examine_range<'a, B: AsRef<[u8]>>(
    keys: &TenantKeys,
    tenant: &str,
    records: &'a [B],
    first: usize,
) -> Vec<(usize, Entry<'a>)> {
    let mut entries = Vec::with_capacity(records.len());
    for (i, bytes) in records.iter().enumerate() {
        let position = first + i;
        match serde_json::from_slice::<RawRecord>(bytes.as_ref()) {
            Ok(RawRecord::Receipts(receipts)) => {
                entries.extend(receipts.into_iter().map(|raw| (position, examine(keys, tenant, raw.get()))));
            }
            Ok(RawRecord::Checkpoint(checkpoint)) => {
                let problem = checkpoint_problem(keys, tenant, &checkpoint);
                entries.push((position, Entry::Checkpoint { checkpoint, problem }));
            }
            Err(error) => entries.push((position, Entry::Malformed(error.to_string()))),
        }
    }
    entries
}

/// Checks one receipt, given as its JSON text, alone.
pub(super) fn examine<'a>(keys: &TenantKeys, tenant: &str, json: &'a str) -> Entry<'a> {
    let receipt: ReceiptView = match serde_json::from_str(json) {
        Ok(receipt) => receipt,
        Err(error) => return Entry::Malformed(error.to_string()),
    };
    let mut hash = [0u8; 64];
    let problem = if receipt.execution.tenant != tenant {
        Some(Problem::WrongTenant { expected: tenant.into(), found: receipt.execution.tenant.into_owned() })
    } else {
        // Bytes not laid out as the signer writes them were not signed as they are.
        let signed = signed_prefix(json, &receipt.signature).map(|open| [open.as_bytes(), b"}"]);
        match signed {
            Some(parts) => signature_problem(keys, &receipt.key_id, &parts, &receipt.signature),
            None => Some(Problem::BadSignature),
        }
    };
    if problem.is_none() {
        hex::encode_to_slice(Sha256::digest(json), &mut hash).expect("64 digits for 32 bytes");
    }
    Entry::Receipt(Examined {
        id: receipt.id,
        chain: receipt.chain,
        seq: receipt.seq,
        prev: receipt.prev,
        hash,
        ended_ms: receipt.execution.ended_ms,
        problem,
    })
}

fn checkpoint_problem(keys: &TenantKeys, tenant: &str, checkpoint: &Checkpoint) -> Option<Problem> {
    if checkpoint.tenant != tenant {
        return Some(Problem::WrongTenant { expected: tenant.into(), found: checkpoint.tenant.clone() });
    }
    signature_problem(keys, &checkpoint.key_id, &[&checkpoint.signed_bytes()], &checkpoint.signature)
}

fn signature_problem(keys: &TenantKeys, key_id: &str, signed: &[&[u8]], signature: &str) -> Option<Problem> {
    match keys.verify(key_id, signed, signature) {
        None => Some(Problem::UnknownKey { key_id: key_id.to_owned() }),
        Some(false) => Some(Problem::BadSignature),
        Some(true) => None,
    }
}
