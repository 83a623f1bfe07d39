//! Verifies a tenant's audit log: every signature, and every chain's order and links. Reports
//! the first bad receipt in log order and what is wrong with it.

use super::keys::Keyring;
use super::receipt::{GENESIS, Receipt};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What is wrong with a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    #[error("signature does not match: the receipt was modified, or forged and inserted")]
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
    #[error("chain {chain} ends at seq {found} but was checkpointed at {expected}: its tail was truncated")]
    Truncated { chain: String, expected: u64, found: u64 },
}

/// The first bad receipt of a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Position in the log, from 0; the log's length for a truncated tail.
    pub position: usize,
    /// The receipt's id, when there is a receipt at that position.
    pub receipt: Option<String>,
    pub problem: Problem,
}

/// The outcome of verifying a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub checked: usize,
    pub chains: usize,
    pub first_bad: Option<Finding>,
}

/// Verifies `log` (in append order) for `tenant`. `checkpoints` are the last sequence numbers
/// known to have been appended per chain; a chain that ends before its checkpoint was truncated.
pub fn verify(keys: &Keyring, tenant: &str, log: &[Receipt], checkpoints: &HashMap<String, u64>) -> Verdict {
    let mut heads: HashMap<&str, (u64, String)> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let finding = |position: usize, receipt: &Receipt, problem| Finding {
        position,
        receipt: Some(receipt.id.clone()),
        problem,
    };
    for (position, receipt) in log.iter().enumerate() {
        let problem = check(keys, tenant, log, position, &mut heads, &mut seen);
        if let Some(problem) = problem {
            return Verdict {
                checked: position,
                chains: heads.len(),
                first_bad: Some(finding(position, receipt, problem)),
            };
        }
    }
    let mut truncated: Vec<_> = checkpoints
        .iter()
        .filter_map(|(chain, &expected)| {
            let found = heads.get(chain.as_str()).map_or(0, |(seq, _)| *seq);
            (found < expected).then(|| Problem::Truncated { chain: chain.clone(), expected, found })
        })
        .collect();
    truncated.sort_by_key(|p| format!("{p:?}"));
    Verdict {
        checked: log.len(),
        chains: heads.len(),
        first_bad: truncated.into_iter().next().map(|problem| Finding {
            position: log.len(),
            receipt: None,
            problem,
        }),
    }
}

/// Checks the receipt at `position`, advancing its chain's head when it is good.
fn check<'a>(
    keys: &Keyring,
    tenant: &str,
    log: &'a [Receipt],
    position: usize,
    heads: &mut HashMap<&'a str, (u64, String)>,
    seen: &mut HashSet<&'a str>,
) -> Option<Problem> {
    let receipt = &log[position];
    if receipt.draft.tenant != tenant {
        return Some(Problem::WrongTenant { expected: tenant.into(), found: receipt.draft.tenant.clone() });
    }
    if !seen.insert(&receipt.id) {
        return Some(Problem::Replayed { id: receipt.id.clone() });
    }
    match keys.verify(&receipt.key_id, tenant, &receipt.signed_bytes(), &receipt.signature) {
        None => return Some(Problem::UnknownKey { key_id: receipt.key_id.clone() }),
        Some(false) => return Some(Problem::BadSignature),
        Some(true) => {}
    }
    let (seq, hash) = heads.entry(&receipt.chain).or_insert_with(|| (0, GENESIS.to_owned()));
    let chain = receipt.chain.clone();
    let expected = *seq + 1;
    if receipt.seq != expected {
        let missing_later = log[position + 1..].iter().any(|r| r.chain == receipt.chain && r.seq == expected);
        return Some(if receipt.seq > expected && !missing_later {
            Problem::Deleted { chain, expected, found: receipt.seq }
        } else {
            Problem::Reordered { chain, expected, found: receipt.seq }
        });
    }
    if receipt.prev != *hash {
        return Some(Problem::BrokenLink { chain, seq: receipt.seq });
    }
    *seq = receipt.seq;
    *hash = receipt.hash();
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Chains, MasterKey, ReceiptDraft, Trigger};
    use proptest::prelude::*;

    fn keys() -> Keyring {
        Keyring::new(MasterKey::from_bytes(vec![7; 32]), vec![])
    }

    fn draft(n: u64) -> ReceiptDraft {
        ReceiptDraft {
            tenant: "acme".into(),
            function: "hello".into(),
            module_sha256: "ab".repeat(32),
            revision: "r1".into(),
            trigger: Trigger::Http,
            started_ms: n,
            ended_ms: n + 1,
            status: "ok".into(),
            http_status: 200,
            memory_limit: 1 << 20,
            timeout_ms: 500,
            cpu_us: 10,
            input_sha256: format!("{n:064x}"),
            output_sha256: format!("{n:064x}"),
            host_calls: Default::default(),
            attempt: 1,
            job_id: None,
            trace_id: "t".into(),
        }
    }

    /// `len` receipts of one tenant, interleaved from two nodes' chains, and the checkpoints.
    fn log(len: usize) -> (Vec<Receipt>, HashMap<String, u64>) {
        let chains = [Chains::new("node-a".into(), keys()), Chains::new("node-b".into(), keys())];
        let log: Vec<Receipt> = (0..len).map(|i| chains[i % 2].seal(draft(i as u64), |_| ()).0).collect();
        let mut checkpoints = HashMap::new();
        for receipt in &log {
            checkpoints.insert(receipt.chain.clone(), receipt.seq);
        }
        (log, checkpoints)
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
            let (log, checkpoints) = log(len);
            let verdict = verify(&keys(), "acme", &log, &checkpoints);
            prop_assert_eq!(verdict.first_bad, None);
            prop_assert_eq!(verdict.checked, len);
        }

        #[test]
        fn any_tampering_is_found_at_the_first_bad_receipt((len, tamper) in tamper()) {
            let (mut log, checkpoints) = log(len);
            let expected_position = match tamper {
                Tamper::Modify(i) => { log[i].draft.status = "trap".into(); i }
                Tamper::Delete(i) => {
                    log.remove(i);
                    // The next receipt of the same chain, or the end for a deleted tail.
                    log.iter().skip(i).position(|r| r.chain == if i % 2 == 0 { "node-a" } else { "node-b" })
                        .map_or(log.len(), |p| p + i)
                }
                Tamper::Swap(i) => { log.swap(i, i + 2); i }
                Tamper::Replay { from, to } => { let copy = log[from].clone(); log.insert(to, copy); if to > from { to } else { from + 1 } }
                Tamper::Foreign(i) => {
                    let other = Chains::new("node-a".into(), keys());
                    let mut foreign = draft(99);
                    foreign.tenant = "beta".into();
                    log.insert(i, other.seal(foreign, |_| ()).0);
                    i
                }
                Tamper::UnknownKey(i) => {
                    let stranger = Chains::new(log[i].chain.clone(), Keyring::new(MasterKey::from_bytes(vec![9; 32]), vec![]));
                    log[i] = stranger.seal(log[i].draft.clone(), |_| ()).0;
                    i
                }
            };
            let verdict = verify(&keys(), "acme", &log, &checkpoints);
            let finding = verdict.first_bad.expect("tampering is detected");
            prop_assert!(finding.position <= expected_position, "{:?} found at {} after {}", tamper, finding.position, expected_position);
        }
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let (log, checkpoints) = log(6);
        let problem = |log: &[Receipt]| verify(&keys(), "acme", log, &checkpoints).first_bad.unwrap().problem;

        let mut modified = log.clone();
        modified[2].draft.http_status = 500;
        assert_eq!(problem(&modified), Problem::BadSignature);

        let mut deleted = log.clone();
        deleted.remove(2);
        assert!(matches!(problem(&deleted), Problem::Deleted { expected: 2, found: 3, .. }));

        let mut reordered = log.clone();
        reordered.swap(0, 2);
        assert!(matches!(problem(&reordered), Problem::Reordered { expected: 1, found: 2, .. }));

        let mut replayed = log.clone();
        replayed.push(log[1].clone());
        assert!(matches!(problem(&replayed), Problem::Replayed { .. }));

        let mut truncated = log.clone();
        truncated.pop();
        assert!(matches!(problem(&truncated), Problem::Truncated { expected: 3, found: 2, .. }));
    }
}
