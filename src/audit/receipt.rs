//! The receipt of one execution and its canonical encoding. The signature covers every other
//! field; the hash that the next receipt's `prev` names covers the signature too.
//!
//! Encoding: compact JSON with the fields in declaration order and the execution nested (not
//! flattened: a flattened struct deserializes through a buffer, which made reading a log two and
//! a half times slower). The signed bytes are the receipt's JSON without its `signature` field;
//! the full JSON adds `"signature"` as the last field, so the hash of a receipt is computed from
//! its signed bytes without serializing it twice.

use crate::spec::Name;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// `prev` of the first receipt of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Host calls made during the execution, by function name.
pub type HostCalls = BTreeMap<String, u64>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Http,
    Job,
    Mcp,
}

/// What the executor knows about a finished execution; [`crate::audit::Chains::seal`] turns it
/// into a signed, chained [`Receipt`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceiptDraft {
    pub tenant: String,
    pub function: String,
    pub module_sha256: String,
    /// The function revision (and, with a git source, the commit) that ran.
    pub revision: String,
    pub trigger: Trigger,
    /// Unix milliseconds.
    pub started_ms: u64,
    pub ended_ms: u64,
    /// `ok`, or the stable error code of the failure (`timeout`, `trap`, ...).
    pub status: String,
    pub http_status: u16,
    pub memory_limit: u64,
    pub timeout_ms: u64,
    /// `limits.cpu` in milliseconds, when the function has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit_ms: Option<u64>,
    /// Wall-clock microseconds of the call: instantiation and the guest's run, waits included.
    /// Absent from receipts written before CPU time was measured, whose `cpu_us` is this.
    #[serde(default)]
    pub wall_us: u64,
    /// CPU microseconds the call used on the node's cores: instantiation and the guest's run,
    /// host calls' own work included, waits not.
    pub cpu_us: u64,
    pub input_sha256: String,
    pub output_sha256: String,
    pub host_calls: HostCalls,
    pub attempt: u32,
    pub job_id: Option<String>,
    pub trace_id: String,
}

/// A sealed receipt: the draft plus its place in a chain and its signature.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Receipt {
    /// `<tenant>.<32 hex digits>` (see [`new_id`]).
    pub id: String,
    /// The node that ran the execution, whose chain this receipt belongs to.
    pub chain: String,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Hash of the previous receipt of the chain, or [`GENESIS`].
    pub prev: String,
    /// Id of the master key the tenant key was derived from.
    pub key_id: String,
    #[serde(rename = "execution")]
    pub draft: ReceiptDraft,
    /// HMAC-SHA256 of [`Receipt::signed_bytes`] under the tenant key, hex.
    #[serde(default)]
    pub signature: String,
}

impl Serialize for Receipt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Canonical { receipt: self, signed: true }.serialize(serializer)
    }
}

/// A receipt's JSON with or without its signature.
struct Canonical<'a> {
    receipt: &'a Receipt,
    signed: bool,
}

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.receipt;
        let mut fields = serializer.serialize_struct("Receipt", 6 + usize::from(self.signed))?;
        fields.serialize_field("id", &r.id)?;
        fields.serialize_field("chain", &r.chain)?;
        fields.serialize_field("seq", &r.seq)?;
        fields.serialize_field("prev", &r.prev)?;
        fields.serialize_field("key_id", &r.key_id)?;
        fields.serialize_field("execution", &r.draft)?;
        if self.signed {
            fields.serialize_field("signature", &r.signature)?;
        }
        fields.end()
    }
}

impl Receipt {
    /// The bytes the signature covers: the canonical JSON of everything but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1024);
        serde_json::to_writer(&mut bytes, &Canonical { receipt: self, signed: false })
            .expect("receipt serializes");
        bytes
    }

    /// The hash the next receipt of the chain names as `prev`: sha256 of the receipt's JSON, hex.
    pub fn hash(&self) -> String {
        hash_of_json(&self.json_from_signed(&self.signed_bytes()))
    }

    /// The receipt's JSON from its [`Receipt::signed_bytes`], serializing only the signature:
    /// the full JSON is the signed JSON with `"signature":"..."` added before its closing brace.
    pub(super) fn json_from_signed(&self, signed: &[u8]) -> Vec<u8> {
        let open = signed.strip_suffix(b"}").expect("a JSON object ends with }");
        let mut json = Vec::with_capacity(open.len() + SIGNATURE_FIELD.len() + self.signature.len() + 2);
        json.extend_from_slice(open);
        json.extend_from_slice(&SIGNATURE_FIELD.as_bytes()[..SIGNATURE_FIELD.len() - 1]);
        serde_json::to_writer(&mut json, &self.signature).expect("a string serializes");
        json.push(b'}');
        json
    }
}

/// The hash of a receipt from its JSON (see [`Receipt::hash`]).
pub(super) fn hash_of_json(json: &[u8]) -> String {
    hex_string(&Sha256::digest(json).into())
}

/// How the signature field opens in a receipt's JSON, where it is the last field.
const SIGNATURE_FIELD: &str = ",\"signature\":\"";

/// The signed bytes of a receipt's JSON as stored, given its signature: the JSON up to where the
/// signature field begins, to be followed by `}`. `None` when the JSON does not end in that
/// signature field, as a receipt written by [`Receipt`]'s serializer does.
pub(super) fn signed_prefix<'j>(json: &'j str, signature: &str) -> Option<&'j str> {
    json.strip_suffix("\"}")?.strip_suffix(signature)?.strip_suffix(SIGNATURE_FIELD)
}

/// `bytes` as lowercase hex.
pub(super) fn hex_string(bytes: &[u8; 32]) -> String {
    let mut text = [0u8; 64];
    hex::encode_to_slice(bytes, &mut text).expect("64 digits for 32 bytes");
    text.iter().map(|&b| char::from(b)).collect()
}

/// A fresh receipt id for `tenant`: `<tenant>.<32 hex digits>`. The tenant part routes a lookup
/// to its tenant's log (names never contain `.`); the rest is 128 random bits.
pub fn new_id(tenant: &str) -> String {
    format!("{tenant}.{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// The tenant a receipt id names, if the id is well formed.
pub fn id_tenant(id: &str) -> Option<Name> {
    let (tenant, random) = id.split_once('.')?;
    let hex = random.len() == 32 && random.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex.then(|| Name::new(tenant).ok()).flatten()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn draft(n: u64) -> ReceiptDraft {
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
            cpu_limit_ms: None,
            wall_us: 12,
            cpu_us: 10,
            input_sha256: format!("{n:064x}"),
            output_sha256: format!("{n:064x}"),
            host_calls: Default::default(),
            attempt: 1,
            job_id: None,
            trace_id: "t".into(),
        }
    }

    fn receipt(signature: &str) -> Receipt {
        Receipt {
            id: new_id("acme"),
            chain: "node-a".into(),
            seq: 1,
            prev: GENESIS.into(),
            key_id: "k".into(),
            draft: draft(1),
            signature: signature.into(),
        }
    }

    #[test]
    fn the_hash_is_the_sha256_of_the_full_json_and_signed_bytes_omit_the_signature() {
        for signature in ["", "00ff", "with \"quote\" and \\"] {
            let receipt = receipt(signature);
            let full = serde_json::to_vec(&receipt).unwrap();
            assert_eq!(receipt.hash(), hex::encode(Sha256::digest(&full)), "{signature:?}");
            let signed = String::from_utf8(receipt.signed_bytes()).unwrap();
            assert!(!signed.contains("signature"), "{signed}");
            assert_eq!(serde_json::from_slice::<Receipt>(&full).unwrap(), receipt);
        }
    }

    #[test]
    fn ids_name_their_tenant() {
        let id = new_id("acme");
        assert_eq!(id_tenant(&id).unwrap().as_str(), "acme");
        for bad in [
            "acme",
            "acme.",
            "acme.xyz",
            "Acme.0123456789abcdef0123456789abcdef",
            ".0123456789abcdef0123456789abcdef",
        ] {
            assert!(id_tenant(bad).is_none(), "{bad}");
        }
    }
}
