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

/// How a record of receipts begins.
const RECEIPTS_OPEN: &[u8] = b"{\"receipts\":[";

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

    /// The encoding of `Record::Receipts` from its receipts' JSON, as [`Chains::seal_encoded`]
    /// gives it: the same bytes, without serializing the receipts again.
    ///
    /// [`Chains::seal_encoded`]: super::Chains::seal_encoded
    pub fn encode_receipts<J: AsRef<[u8]>>(receipts: &[J]) -> Bytes {
        let size = receipts.iter().map(|json| json.as_ref().len() + 1).sum::<usize>();
        let mut encoded = Vec::with_capacity(RECEIPTS_OPEN.len() + size + 2);
        encoded.extend_from_slice(RECEIPTS_OPEN);
        for (i, json) in receipts.iter().enumerate() {
            if i > 0 {
                encoded.push(b',');
            }
            encoded.extend_from_slice(json.as_ref());
        }
        encoded.extend_from_slice(b"]}");
        Bytes::from(encoded)
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

    #[test]
    fn receipts_encoded_from_their_sealed_json_are_the_records_encoding() {
        let mut chains = crate::audit::Chains::new(
            "node-a".into(),
            Keyring::new(MasterKey::from_bytes(vec![7; 32]), vec![]),
        );
        for count in [0, 1, 3] {
            let (receipts, jsons): (Vec<_>, Vec<_>) = (0..count)
                .map(|i| {
                    chains.seal_encoded(crate::audit::new_id("acme"), crate::audit::receipt::tests::draft(i))
                })
                .unzip();
            assert_eq!(
                Record::encode_receipts(&jsons),
                Record::Receipts(receipts).encode(),
                "{count} receipts"
            );
        }
    }
}
