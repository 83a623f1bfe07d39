//! Seals drafts into receipts on this node's chain of each tenant: sequence number, link to the
//! previous receipt, key id, signature. Only the recorder's appender seals, one receipt after
//! the other, so the order it seals in is the order it appends in.

use super::keys::{Keyring, TenantKeys};
use super::receipt::{GENESIS, Receipt, ReceiptDraft, hash_of_json};
use std::collections::HashMap;

/// Where a chain stands: its last sequence number and that receipt's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

impl Head {
    /// The head of a chain with no receipt yet.
    pub fn genesis() -> Self {
        Self { seq: 0, hash: GENESIS.into() }
    }
}

struct TenantChain {
    head: Head,
    keys: TenantKeys,
}

/// This node's receipt chains, one per tenant.
pub struct Chains {
    node: String,
    keys: Keyring,
    tenants: HashMap<String, TenantChain>,
}

impl Chains {
    pub fn new(node: String, keys: Keyring) -> Self {
        Self { node, keys, tenants: HashMap::new() }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The head of `tenant`'s chain, once it was resumed or sealed on.
    pub fn head(&self, tenant: &str) -> Option<&Head> {
        self.tenants.get(tenant).map(|chain| &chain.head)
    }

    /// `tenant`'s keys, derived on first use.
    pub fn tenant_keys(&mut self, tenant: &str) -> &TenantKeys {
        &self.chain(tenant).keys
    }

    /// Continues `tenant`'s chain after a restart from `head`, found in its audit log.
    pub fn resume(&mut self, tenant: &str, head: Head) {
        self.chain(tenant).head = head;
    }

    /// Signs `draft` as the next receipt of its tenant's chain on this node, with id `id` (see
    /// [`super::new_id`]). A tenant never resumed starts at [`GENESIS`].
    pub fn seal(&mut self, id: String, draft: ReceiptDraft) -> Receipt {
        self.seal_encoded(id, draft).0
    }

    /// [`Chains::seal`], also giving the receipt's JSON as a record stores it (see
    /// [`super::record::Record::encode_receipts`]): the receipt is serialized once.
    pub fn seal_encoded(&mut self, id: String, draft: ReceiptDraft) -> (Receipt, Vec<u8>) {
        let node = self.node.clone();
        let chain = self.chain(&draft.tenant);
        let mut receipt = Receipt {
            id,
            chain: node,
            seq: chain.head.seq + 1,
            prev: std::mem::take(&mut chain.head.hash),
            key_id: chain.keys.current_id().to_owned(),
            draft,
            signature: String::new(),
        };
        let signed = receipt.signed_bytes();
        receipt.signature = chain.keys.sign(&signed);
        let json = receipt.json_from_signed(&signed);
        chain.head = Head { seq: receipt.seq, hash: hash_of_json(&json) };
        (receipt, json)
    }

    fn chain(&mut self, tenant: &str) -> &mut TenantChain {
        if !self.tenants.contains_key(tenant) {
            let chain = TenantChain { head: Head::genesis(), keys: self.keys.tenant(tenant) };
            self.tenants.insert(tenant.to_owned(), chain);
        }
        self.tenants.get_mut(tenant).expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MasterKey;
    use crate::audit::receipt::tests::draft;

    #[test]
    fn a_chain_links_each_receipt_to_the_one_before_and_resumes_from_a_head() {
        let keys = Keyring::new(MasterKey::from_bytes(vec![7; 32]), vec![]);
        let mut chains = Chains::new("node-a".into(), keys.clone());
        let first = chains.seal(super::super::new_id("acme"), draft(1));
        let second = chains.seal(super::super::new_id("acme"), draft(2));
        assert_eq!((first.seq, first.prev.as_str()), (1, GENESIS));
        assert_eq!((second.seq, &second.prev), (2, &first.hash()));
        assert_eq!(chains.head("acme"), Some(&Head { seq: 2, hash: second.hash() }));

        let mut restarted = Chains::new("node-a".into(), keys);
        restarted.resume("acme", Head { seq: 2, hash: second.hash() });
        let third = restarted.seal(super::super::new_id("acme"), draft(3));
        assert_eq!((third.seq, &third.prev), (3, &second.hash()));
    }
}
