//! Verifies a tenant's audit log as stored: every record decodes, every signature (receipts and
//! checkpoints), and every chain's order and links. Reports the first bad entry in log order and
//! what is wrong with it.
//!
//! Two passes over each run of records: the first (`examine`) decodes each record and checks what
//! needs no context (tenant, key, signature over the stored bytes, hash), in parallel; the second
//! walks the entries in order
//! through the chains. A window (`from`/`to`) verifies from the first receipt that ended at or
//! after `from` up to the first that ended at or after `to`; each chain is then taken as it
//! stands at its first receipt in the window (what precedes the window is not checked).
//!
//! One repeat is not a replay: a record of receipts stored again byte for byte right after
//! itself in its chain (no other receipt of the chain between the two). Appenders before the
//! idempotent append left such repeats when an append whose acknowledgement was lost was
//! retried. The repeat is counted once (`repeated`), and it cannot hide tampering: its bytes are
//! those of a record already verified, so skipping it leaves exactly the chains, links and
//! signatures that were checked, with the receipt in the same place; a receipt repeated anywhere
//! else, inside the same record, in a record that differs by one byte, or after another receipt
//! of its chain, is still `replayed`.

use super::examine::{Entry, Examined, examine, examine_all};
use super::keys::Keyring;
use super::record::{Checkpoint, Record};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Records decoded and checked at once: bounds memory on a large log.
const RUN: usize = 16 * 1024;

/// What is wrong with an entry of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    #[error("not a record of the audit log ({reason}): written by something else, or damaged")]
    Malformed { reason: String },
    #[error("signature does not match: modified, or forged and inserted")]
    BadSignature,
    #[error("signed with unknown key {key_id}")]
    UnknownKey { key_id: String },
    #[error("belongs to tenant {found}, not {expected}: inserted from another log")]
    WrongTenant { expected: String, found: String },
    #[error("receipt {id} appears a second time: replayed")]
    Replayed { id: String },
    #[error("chain {chain} jumps from seq {expected} to {found}: receipts were deleted")]
    Deleted { chain: String, expected: u64, found: u64 },
    #[error("chain {chain} has seq {found} where {expected} belongs: receipts were reordered")]
    Reordered { chain: String, expected: u64, found: u64 },
    #[error(
        "chain {chain} seq {seq} does not link to the receipt before it: a receipt was inserted or replaced"
    )]
    BrokenLink { chain: String, seq: u64 },
    #[error(
        "chain {chain} was checkpointed at seq {expected} but holds only {found} before the checkpoint: receipts were cut off"
    )]
    Truncated { chain: String, expected: u64, found: u64 },
    #[error(
        "chain {chain} seq {seq} is not the receipt its checkpoint names: the chain was rewritten, or two nodes share one node id"
    )]
    Forked { chain: String, seq: u64 },
}

/// The entry a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    Receipt {
        id: String,
    },
    Checkpoint {
        chain: String,
        seq: u64,
    },
    /// A record that does not decode.
    Record,
}

/// The first bad entry of a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Position of its record in the log as given, from 0.
    pub record: usize,
    pub subject: Subject,
    pub problem: Problem,
}

/// The outcome of verifying a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Receipts verified (checkpoints are not receipts).
    pub checked: usize,
    /// Receipts found again right after themselves, in a record stored twice by a retried
    /// append, and counted once (see the module docs).
    pub repeated: usize,
    pub checkpoints: usize,
    pub chains: usize,
    pub first_bad: Option<Finding>,
}

/// Which receipts to verify, by when they ended (Unix milliseconds, `to` exclusive).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
}

impl Window {
    /// The whole log: every chain must start at its genesis.
    pub const ALL: Window = Window { from_ms: None, to_ms: None };
}

/// Verifies `records` (the tenant's audit log in append order, as stored) for `tenant`.
pub fn verify<B: AsRef<[u8]> + Sync>(keys: &Keyring, tenant: &str, records: &[B], window: Window) -> Verdict {
    let tenant_keys = keys.tenant(tenant);
    let mut walk = Walk::new(window);
    let same = |a: usize, b: usize| records[a].as_ref() == records[b].as_ref();
    for (run, chunk) in records.chunks(RUN).enumerate() {
        let entries = examine_all(&tenant_keys, tenant, chunk);
        for (offset, entry) in entries {
            let record = run * RUN + offset;
            if let Err((subject, problem)) = walk.step(entry, record, &same, || records[record..].iter()) {
                return walk.verdict(Some(Finding { record, subject, problem }));
            }
            if walk.done {
                return walk.verdict(None);
            }
        }
    }
    walk.verdict(None)
}

/// The second pass: the chains' heads and the receipt ids seen so far.
struct Walk<'a> {
    window: Window,
    /// Whether the window has begun (always, for the whole log).
    started: bool,
    /// Whether the window has ended.
    done: bool,
    heads: HashMap<Cow<'a, str>, Link>,
    seen: HashSet<Cow<'a, str>>,
    checked: usize,
    repeated: usize,
    checkpoints: usize,
}

/// Where a chain stands in the walk: its last seq, that receipt's hash (hex), and the position
/// of the record that held it (`usize::MAX`: none seen).
#[derive(Clone, Copy)]
struct Link {
    seq: u64,
    hash: [u8; 64],
    record: usize,
}

impl Link {
    const GENESIS: Link = Link { seq: 0, hash: [b'0'; 64], record: usize::MAX };

    /// The link a receipt names as its predecessor (a hash of another length matches nothing).
    fn before(seq: u64, prev: &str) -> Self {
        let mut hash = [b'-'; 64];
        if prev.len() == hash.len() {
            hash.copy_from_slice(prev.as_bytes());
        }
        Link { seq: seq.saturating_sub(1), hash, record: usize::MAX }
    }
}

type Failure = (Subject, Problem);

impl<'a> Walk<'a> {
    fn new(window: Window) -> Self {
        Self {
            window,
            started: window.from_ms.is_none(),
            done: false,
            heads: HashMap::new(),
            seen: HashSet::new(),
            checked: 0,
            repeated: 0,
            checkpoints: 0,
        }
    }

    /// Where `chain` stands; a chain not seen yet starts at its genesis on the whole log, and
    /// as `first` says in a window (`None`: nothing known).
    fn head(&self, chain: &str, first: impl FnOnce() -> Option<Link>) -> Option<Link> {
        match self.heads.get(chain) {
            Some(link) => Some(*link),
            None if self.window.from_ms.is_none() => Some(Link::GENESIS),
            None => first(),
        }
    }

    /// Checks one entry in log order, from the log's record `record`; `same` tells whether two
    /// records are equal byte for byte, and `rest` iterates the log from the entry's record on,
    /// to tell deleted receipts from reordered ones.
    fn step<'r, B: AsRef<[u8]> + 'r, I: Iterator<Item = &'r B>>(
        &mut self,
        entry: Entry<'a>,
        record: usize,
        same: &dyn Fn(usize, usize) -> bool,
        rest: impl FnOnce() -> I,
    ) -> Result<(), Failure> {
        match entry {
            Entry::Malformed(reason) => Err((Subject::Record, Problem::Malformed { reason })),
            Entry::Checkpoint { checkpoint, problem } => self.checkpoint(checkpoint, problem),
            Entry::Receipt(receipt) => self.receipt(receipt, record, same, rest),
        }
    }

    fn receipt<'r, B: AsRef<[u8]> + 'r, I: Iterator<Item = &'r B>>(
        &mut self,
        receipt: Examined<'a>,
        record: usize,
        same: &dyn Fn(usize, usize) -> bool,
        rest: impl FnOnce() -> I,
    ) -> Result<(), Failure> {
        if !self.started {
            if receipt.ended_ms < self.window.from_ms.unwrap_or(0) {
                return Ok(());
            }
            self.started = true;
        }
        if self.window.to_ms.is_some_and(|to| receipt.ended_ms >= to) {
            self.done = true;
            return Ok(());
        }
        let fail = |problem| Err((Subject::Receipt { id: receipt.id.clone().into_owned() }, problem));
        if let Some(problem @ Problem::WrongTenant { .. }) = receipt.problem {
            return fail(problem);
        }
        if self.seen.contains(&receipt.id) {
            // Seen, and its chain's last record is another one equal to this one: a repeat.
            let before = self.heads.get(&receipt.chain).map_or(usize::MAX, |head| head.record);
            if before != usize::MAX && before != record && same(before, record) {
                self.repeated += 1;
                return Ok(());
            }
            return fail(Problem::Replayed { id: receipt.id.clone().into_owned() });
        }
        if let Some(problem) = receipt.problem {
            return fail(problem);
        }
        // The chain's first receipt in a window is taken as it stands.
        let first = || Some(Link::before(receipt.seq, &receipt.prev));
        let head = self.head(&receipt.chain, first).unwrap_or(Link::GENESIS);
        let chain = || receipt.chain.clone().into_owned();
        let expected = head.seq + 1;
        if receipt.seq != expected {
            let later = receipt.seq > expected && appears(rest(), &receipt.chain, expected);
            return fail(if receipt.seq > expected && !later {
                Problem::Deleted { chain: chain(), expected, found: receipt.seq }
            } else {
                Problem::Reordered { chain: chain(), expected, found: receipt.seq }
            });
        }
        if receipt.prev.as_bytes() != head.hash {
            return fail(Problem::BrokenLink { chain: chain(), seq: receipt.seq });
        }
        self.heads.insert(receipt.chain, Link { seq: receipt.seq, hash: receipt.hash, record });
        self.seen.insert(receipt.id);
        self.checked += 1;
        Ok(())
    }

    fn checkpoint(&mut self, checkpoint: Checkpoint, problem: Option<Problem>) -> Result<(), Failure> {
        if !self.started {
            return Ok(());
        }
        let subject = Subject::Checkpoint { chain: checkpoint.chain.clone(), seq: checkpoint.seq };
        if let Some(problem) = problem {
            return Err((subject, problem));
        }
        // A chain not seen yet in a window: nothing to compare with.
        let problem = self.head(&checkpoint.chain, || None).and_then(|head| {
            let chain = checkpoint.chain;
            let (expected, found) = (checkpoint.seq, head.seq);
            if found < expected {
                Some(Problem::Truncated { chain, expected, found })
            } else if found > expected {
                Some(Problem::Reordered { chain, expected: found, found: expected })
            } else if checkpoint.hash.as_bytes() != head.hash {
                Some(Problem::Forked { chain, seq: found })
            } else {
                None
            }
        });
        match problem {
            Some(problem) => Err((subject, problem)),
            None => {
                self.checkpoints += 1;
                Ok(())
            }
        }
    }

    fn verdict(&self, first_bad: Option<Finding>) -> Verdict {
        Verdict {
            checked: self.checked,
            repeated: self.repeated,
            checkpoints: self.checkpoints,
            chains: self.heads.len(),
            first_bad,
        }
    }
}

/// Checks one receipt alone, given as its JSON text as stored (as the admin API serves it): that
/// it belongs to `tenant` and that its signature verifies under one of `keys`. Where it stands in
/// its chain takes the whole log: see [`verify`].
pub fn verify_receipt(keys: &Keyring, tenant: &str, json: &str) -> Result<(), Problem> {
    match examine(&keys.tenant(tenant), tenant, json) {
        Entry::Receipt(Examined { problem: None, .. }) => Ok(()),
        Entry::Receipt(Examined { problem: Some(problem), .. }) => Err(problem),
        Entry::Malformed(reason) => Err(Problem::Malformed { reason }),
        Entry::Checkpoint { .. } => Err(Problem::Malformed { reason: "a checkpoint, not a receipt".into() }),
    }
}

/// Whether any receipt or checkpoint of `records` verifies under one of `keys`: when none does
/// in a log that holds some, the keys are not those the log was signed with.
pub fn any_verifies<B: AsRef<[u8]> + Sync>(keys: &Keyring, tenant: &str, records: &[B]) -> bool {
    let tenant_keys = keys.tenant(tenant);
    records.chunks(RUN).any(|chunk| {
        examine_all(&tenant_keys, tenant, chunk).into_iter().any(|(_, entry)| match entry {
            Entry::Receipt(receipt) => receipt.problem.is_none(),
            Entry::Checkpoint { problem, .. } => problem.is_none(),
            Entry::Malformed(_) => false,
        })
    })
}

/// Whether receipt `seq` of `chain` is in `records`.
fn appears<'r, B: AsRef<[u8]> + 'r>(records: impl Iterator<Item = &'r B>, chain: &str, seq: u64) -> bool {
    records.filter_map(|bytes| Record::decode(bytes.as_ref()).ok()).any(|record| match record {
        Record::Receipts(receipts) => receipts.iter().any(|r| r.chain == chain && r.seq == seq),
        Record::Checkpoint(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::receipt::tests::draft;
    use crate::audit::{Chains, Head, MasterKey, Receipt, new_id};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn keys() -> Keyring {
        Keyring::new(MasterKey::from_bytes(vec![7; 32]), vec![])
    }

    /// `len` receipts of one tenant, interleaved from two nodes' chains, then a checkpoint of
    /// each chain.
    fn log(len: usize) -> Vec<Receipt> {
        let mut chains = [Chains::new("node-a".into(), keys()), Chains::new("node-b".into(), keys())];
        (0..len).map(|i| chains[i % 2].seal(new_id("acme"), draft(i as u64))).collect()
    }

    /// The receipts one per record, then a checkpoint of each chain at its last receipt.
    fn encode(log: &[Receipt]) -> Vec<Bytes> {
        let mut records: Vec<Bytes> =
            log.iter().map(|r| Record::Receipts(vec![r.clone()]).encode()).collect();
        records.extend(checkpoints(log).into_iter().map(|c| Record::Checkpoint(c).encode()));
        records
    }

    fn checkpoints(log: &[Receipt]) -> Vec<Checkpoint> {
        let keys = keys().tenant("acme");
        ["node-a", "node-b"]
            .into_iter()
            .filter_map(|chain| {
                let last = log.iter().rev().find(|r| r.chain == chain)?;
                let head = Head { seq: last.seq, hash: last.hash() };
                Some(Checkpoint::new("acme", chain, &head, &keys, 0))
            })
            .collect()
    }

    fn check(records: &[Bytes]) -> Verdict {
        verify(&keys(), "acme", records, Window::ALL)
    }

    #[derive(Clone, Debug)]
    enum Tamper {
        Modify(usize),
        Delete(usize),
        Swap(usize),
        Replay { from: usize, to: usize },
        Foreign(usize),
        UnknownKey(usize),
    }

    fn tamper() -> impl Strategy<Value = (usize, Tamper)> {
        (3usize..40).prop_flat_map(|len| {
            let i = 0..len;
            let tamper = prop_oneof![
                i.clone().prop_map(Tamper::Modify),
                i.clone().prop_map(Tamper::Delete),
                (0..len - 2).prop_map(Tamper::Swap),
                (i.clone(), i.clone()).prop_map(|(from, to)| Tamper::Replay { from, to }),
                i.clone().prop_map(Tamper::Foreign),
                i.prop_map(Tamper::UnknownKey),
            ];
            (Just(len), tamper)
        })
    }

    proptest! {
        #[test]
        fn an_untouched_log_verifies(len in 0usize..60) {
            let verdict = check(&encode(&log(len)));
            prop_assert_eq!(verdict.first_bad, None);
            prop_assert_eq!(verdict.checked, len);
            prop_assert_eq!(verdict.checkpoints, len.min(2));
        }

        #[test]
        fn any_tampering_is_found_at_the_first_bad_receipt((len, tamper) in tamper()) {
            let log = log(len);
            let mut records = encode(&log);
            let mut receipts = log.clone();
            let mut repeat_of_itself = false;
            let expected_position = match tamper {
                Tamper::Modify(i) => { receipts[i].draft.status = "trap".into(); i }
                Tamper::Delete(i) => {
                    receipts.remove(i);
                    // The next receipt of the same chain, or its checkpoint at the end.
                    let chain = if i % 2 == 0 { "node-a" } else { "node-b" };
                    receipts.iter().skip(i).position(|r| r.chain == chain)
                        .map_or(receipts.len() + usize::from(i % 2 == 1 && len > 1), |p| p + i)
                }
                Tamper::Swap(i) => { receipts.swap(i, i + 2); i }
                Tamper::Replay { from, to } => {
                    let copy = receipts[from].clone();
                    receipts.insert(to, copy);
                    let (first, second) = if to > from { (from, to) } else { (to, from + 1) };
                    // Nothing of its chain between the two: an outage's repeat, counted once.
                    repeat_of_itself =
                        receipts[first + 1..second].iter().all(|r| r.chain != receipts[first].chain);
                    second
                }
                Tamper::Foreign(i) => {
                    let mut other = Chains::new("node-a".into(), keys());
                    let mut foreign = draft(99);
                    foreign.tenant = "beta".into();
                    receipts.insert(i, other.seal(new_id("beta"), foreign));
                    i
                }
                Tamper::UnknownKey(i) => {
                    let stranger = Keyring::new(MasterKey::from_bytes(vec![9; 32]), vec![]);
                    let mut chain = Chains::new(receipts[i].chain.clone(), stranger);
                    receipts[i] = chain.seal(receipts[i].id.clone(), receipts[i].draft.clone());
                    i
                }
            };
            let tail = records.split_off(len);
            records = receipts.iter().map(|r| Record::Receipts(vec![r.clone()]).encode()).collect();
            records.extend(tail);
            if repeat_of_itself {
                let verdict = check(&records);
                prop_assert_eq!((verdict.first_bad, verdict.checked, verdict.repeated), (None, len, 1));
                return Ok(());
            }
            let finding = check(&records).first_bad.expect("tampering is detected");
            prop_assert!(finding.record <= expected_position, "{:?} found at {} after {}", tamper, finding.record, expected_position);
        }
    }

    fn problem(records: &[Bytes]) -> Problem {
        check(records).first_bad.expect("a problem").problem
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let log = log(6);
        let records = encode(&log);

        let mut modified = log.clone();
        modified[2].draft.http_status = 500;
        let mut records_modified = records.clone();
        records_modified[2] = Record::Receipts(vec![modified[2].clone()]).encode();
        assert_eq!(problem(&records_modified), Problem::BadSignature);

        let mut deleted = records.clone();
        deleted.remove(2);
        assert!(matches!(problem(&deleted), Problem::Deleted { expected: 2, found: 3, .. }));

        let mut reordered = records.clone();
        reordered.swap(0, 2);
        assert!(matches!(problem(&reordered), Problem::Reordered { expected: 1, found: 2, .. }));

        let mut replayed = records.clone();
        replayed.push(records[1].clone());
        assert!(matches!(problem(&replayed), Problem::Replayed { .. }));

        let mut truncated = records.clone();
        truncated.remove(5);
        let finding = check(&truncated).first_bad.unwrap();
        assert!(matches!(finding.problem, Problem::Truncated { expected: 3, found: 2, .. }), "{finding:?}");
        assert_eq!(finding.subject, Subject::Checkpoint { chain: "node-b".into(), seq: 3 });

        let mut garbage = records.clone();
        garbage[3] = Bytes::from_static(b"{\"receipts\":[{\"id\":1}]}");
        assert!(matches!(problem(&garbage), Problem::Malformed { .. }));

        let mut reencoded = records.clone();
        let spaced = String::from_utf8(records[4].to_vec()).unwrap().replace(",\"seq\":", ", \"seq\":");
        reencoded[4] = Bytes::from(spaced);
        assert_eq!(problem(&reencoded), Problem::BadSignature, "the stored bytes are what is signed");

        let mut forged_checkpoint = records.clone();
        let mut checkpoint = checkpoints(&log).remove(0);
        checkpoint.seq = 2;
        forged_checkpoint[6] = Record::Checkpoint(checkpoint).encode();
        assert_eq!(problem(&forged_checkpoint), Problem::BadSignature);
    }

    #[test]
    fn a_record_stored_again_right_after_itself_in_its_chain_is_counted_once() {
        let mut chains = Chains::new("node-a".into(), keys());
        let mut other = Chains::new("node-b".into(), keys());
        let mut batch = |n: u64| {
            Record::Receipts(vec![
                chains.seal(new_id("acme"), draft(n)),
                chains.seal(new_id("acme"), draft(n + 1)),
            ])
            .encode()
        };
        let (first, second) = (batch(1), batch(3));
        let foreign = Record::Receipts(vec![other.seal(new_id("acme"), draft(9))]).encode();
        // Twice more, with another chain's record between two of the copies.
        let records = [first.clone(), first.clone(), foreign, first.clone(), second.clone()];
        let verdict = check(&records);
        assert_eq!((verdict.first_bad, verdict.checked, verdict.repeated), (None, 5, 4));

        // Anywhere else it is a replay: after the chain's next record, or inside one record.
        let later = [first.clone(), second.clone(), first.clone()];
        assert!(matches!(problem(&later), Problem::Replayed { .. }));
        let receipts = match Record::decode(&first).unwrap() {
            Record::Receipts(receipts) => receipts,
            Record::Checkpoint(_) => unreachable!(),
        };
        let doubled = Record::Receipts(vec![receipts[0].clone(), receipts[0].clone()]).encode();
        assert!(matches!(problem(&[doubled]), Problem::Replayed { .. }));
        // A record that repeats only some of the receipts is not the same record.
        let part = Record::Receipts(vec![receipts[1].clone()]).encode();
        assert!(matches!(problem(&[first.clone(), part]), Problem::Replayed { .. }));
        // Nor is one that differs in a byte (the same receipts, encoded with a space).
        let spaced = Bytes::from(String::from_utf8(first.to_vec()).unwrap().replacen("},{", "}, {", 1));
        assert!(matches!(problem(&[first, spaced]), Problem::Replayed { .. }));
    }

    #[test]
    fn a_receipt_verifies_alone_from_its_stored_json() {
        let log = log(2);
        let json = String::from_utf8(serde_json::to_vec(&log[0]).unwrap()).unwrap();
        assert_eq!(verify_receipt(&keys(), "acme", &json), Ok(()));
        assert_eq!(
            verify_receipt(&keys(), "acme", &json.replace("\"status\":\"ok\"", "\"status\":\"trap\"")),
            Err(Problem::BadSignature)
        );
        assert!(matches!(verify_receipt(&keys(), "beta", &json), Err(Problem::WrongTenant { .. })));
        let stranger = Keyring::new(MasterKey::from_bytes(vec![9; 32]), vec![]);
        assert!(matches!(verify_receipt(&stranger, "acme", &json), Err(Problem::UnknownKey { .. })));
        assert!(!any_verifies(&stranger, "acme", &encode(&log)));
        assert!(any_verifies(&keys(), "acme", &encode(&log)));
    }

    #[test]
    fn batched_receipts_and_retired_keys_verify() {
        let old = MasterKey::from_bytes(vec![7; 32]);
        let new = MasterKey::from_bytes(vec![8; 32]);
        let mut before = Chains::new("node-a".into(), Keyring::new(old.clone(), vec![]));
        let first: Vec<Receipt> = (0..3).map(|i| before.seal(new_id("acme"), draft(i))).collect();
        let mut after = Chains::new("node-a".into(), Keyring::new(new.clone(), vec![old.clone()]));
        after.resume("acme", before.head("acme").unwrap().clone());
        let second: Vec<Receipt> = (3..5).map(|i| after.seal(new_id("acme"), draft(i))).collect();
        let records = [Record::Receipts(first).encode(), Record::Receipts(second).encode()];

        let both = Keyring::new(new.clone(), vec![old.clone()]);
        let verdict = verify(&both, "acme", &records, Window::ALL);
        assert_eq!((verdict.checked, verdict.chains, verdict.first_bad), (5, 1, None));
        let only_new = verify(&Keyring::new(new, vec![]), "acme", &records, Window::ALL);
        let finding = only_new.first_bad.unwrap();
        assert_eq!(finding.record, 0);
        assert_eq!(finding.problem, Problem::UnknownKey { key_id: old.id().into() });
    }

    #[test]
    fn a_window_checks_its_receipts_from_where_each_chain_stands() {
        let log = log(20);
        let records = encode(&log);
        // Receipt i ended at i + 1.
        let window = Window { from_ms: Some(8), to_ms: Some(15) };
        let verdict = verify(&keys(), "acme", &records, window);
        assert_eq!((verdict.checked, verdict.chains, verdict.first_bad), (7, 2, None));

        let mut tampered = records.clone();
        tampered.remove(11);
        let finding = verify(&keys(), "acme", &tampered, window).first_bad.unwrap();
        assert!(matches!(finding.problem, Problem::Deleted { .. }), "{finding:?}");
        let before_window = [&records[..3], &records[4..]].concat();
        assert_eq!(verify(&keys(), "acme", &before_window, window).first_bad, None, "outside the window");
    }

    #[test]
    fn many_records_are_checked_in_parallel_runs_in_order() {
        let log = log(3 * super::super::examine::PARALLEL_FROM + 7);
        let mut records = encode(&log);
        assert_eq!(check(&records).checked, log.len());
        records.swap(2000, 2002);
        assert_eq!(check(&records).first_bad.unwrap().record, 2000);
    }
}
