//! The records of a tenant's audit log: a batch of receipts (one or more, consecutive in their
//! chain, appended at once), or a checkpoint. Each is compact JSON, tagged by kind:
//! `{"receipts":[...]}` or `{"checkpoint":{...}}`.
//!
//! A checkpoint is a node's signed statement that its chain of the tenant had reached `seq`, the
//! receipt with hash `hash`, when it was written. The node appends one after the receipts it
//! covers, periodically and when it stops, so a later checkpoint names every receipt before it:
//! a chain whose receipts were cut off before one of its checkpoints is found truncated even when
//! nothing of that chain follows. Checkpoints live in the log itself rather than in the tenant's
//! KV store, whose keys a tenant's own functions can write: the log is append-only (its NATS
//! stream denies deletes and purges) and one read returns receipts and checkpoints in order.

use super::chain::Head;
use super::keys::TenantKeys;
use super::receipt::Receipt;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One record of a tenant's audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// Consecutive receipts of one chain, in chain order.
    Receipts(Vec<Receipt>),
    Checkpoint(Checkpoint),
}

impl Record {
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a record serializes"))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A node's signed statement of where its chain of a tenant stood.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub tenant: String,
    /// The node whose chain this is.
    pub chain: String,
    pub seq: u64,
    /// Hash of the chain's receipt `seq`.
    pub hash: String,
    /// Unix milliseconds.
    pub written_ms: u64,
    pub key_id: String,
    /// HMAC-SHA256 of [`Checkpoint::signed_bytes`] under the tenant key, hex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

impl Checkpoint {
    /// A signed checkpoint of `chain` at `head`.
    pub fn new(tenant: &str, chain: &str, head: &Head, keys: &TenantKeys, written_ms: u64) -> Self {
        let mut checkpoint = Self {
            tenant: tenant.to_owned(),
            chain: chain.to_owned(),
            seq: head.seq,
            hash: head.hash.clone(),
            written_ms,
            key_id: keys.current_id().to_owned(),
            signature: String::new(),
        };
        checkpoint.signature = keys.sign(&checkpoint.signed_bytes());
        checkpoint
    }

    /// The bytes the signature covers: the JSON of everything but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Self { signature: String::new(), ..self.clone() };
        serde_json::to_vec(&unsigned).expect("a checkpoint serializes")
    }

    /// Where the checkpoint says its chain stood.
    pub fn head(&self) -> Head {
        Head { seq: self.seq, hash: self.hash.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Keyring, MasterKey};

    #[test]
    fn records_are_tagged_by_kind_and_round_trip() {
        let keys = Keyring::new(MasterKey::from_bytes(vec![7; 32]), vec![]).tenant("acme");
        let checkpoint = Checkpoint::new("acme", "node-a", &Head { seq: 3, hash: "ab".repeat(32) }, &keys, 9);
        assert_eq!(
            keys.verify(&checkpoint.key_id, &[&checkpoint.signed_bytes()], &checkpoint.signature),
            Some(true)
        );
        let record = Record::Checkpoint(checkpoint);
        let encoded = record.encode();
        assert!(encoded.starts_with(b"{\"checkpoint\":{"), "{encoded:?}");
        assert_eq!(Record::decode(&encoded).unwrap(), record);
        assert!(Record::Receipts(vec![]).encode().starts_with(b"{\"receipts\":["));
    }
}
