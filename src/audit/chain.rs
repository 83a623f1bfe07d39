//! Seals drafts into receipts on this node's chain of each tenant: sequence number, link to the
//! previous receipt, key id, signature. Sealing is the only step on the request path; appending
//! to the audit log happens after, in seal order.

use super::keys::Keyring;
use super::receipt::{GENESIS, Receipt, ReceiptDraft};
use std::collections::HashMap;
use std::sync::Mutex;

struct Head {
    seq: u64,
    hash: String,
}

/// This node's receipt chains, one per tenant.
pub struct Chains {
    node: String,
    keys: Keyring,
    heads: Mutex<HashMap<String, Head>>,
}

impl Chains {
    pub fn new(node: String, keys: Keyring) -> Self {
        Self { node, keys, heads: Mutex::default() }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// Continues a chain after a restart from its last receipt in the audit log.
    pub fn resume(&self, last: &Receipt) {
        let head = Head { seq: last.seq, hash: last.hash() };
        self.heads.lock().expect("chain lock").insert(last.draft.tenant.clone(), head);
    }

    /// Signs `draft` as the next receipt of its tenant's chain on this node. `then` runs while
    /// the chain is held, so whatever it does (queueing the append) happens in chain order.
    pub fn seal<T>(&self, draft: ReceiptDraft, then: impl FnOnce(&Receipt) -> T) -> (Receipt, T) {
        let mut heads = self.heads.lock().expect("chain lock");
        let head = heads.entry(draft.tenant.clone()).or_insert_with(|| Head { seq: 0, hash: GENESIS.into() });
        let mut receipt = Receipt {
            id: hex::encode(rand::random::<[u8; 16]>()),
            draft,
            chain: self.node.clone(),
            seq: head.seq + 1,
            prev: head.hash.clone(),
            key_id: self.keys.current_id().to_owned(),
            signature: String::new(),
        };
        receipt.signature = self.keys.sign(&receipt.draft.tenant, &receipt.signed_bytes());
        *head = Head { seq: receipt.seq, hash: receipt.hash() };
        let after = then(&receipt);
        (receipt, after)
    }
}
