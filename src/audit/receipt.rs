//! The receipt of one execution and its canonical encoding. The signature covers every other
//! field; the hash that the next receipt's `prev` names covers the signature too.

use serde::{Deserialize, Serialize};
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
    /// Wall-clock microseconds the guest ran.
    pub cpu_us: u64,
    pub input_sha256: String,
    pub output_sha256: String,
    pub host_calls: HostCalls,
    pub attempt: u32,
    pub job_id: Option<String>,
    pub trace_id: String,
}

/// A sealed receipt: the draft plus its place in a chain and its signature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub id: String,
    #[serde(flatten)]
    pub draft: ReceiptDraft,
    /// The node whose chain this receipt belongs to.
    pub chain: String,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Hash of the previous receipt of the chain, or [`GENESIS`].
    pub prev: String,
    /// Id of the master key the tenant key was derived from.
    pub key_id: String,
    /// HMAC-SHA256 of [`Receipt::signed_bytes`] under the tenant key, hex.
    #[serde(default)]
    pub signature: String,
}

impl Receipt {
    /// The bytes the signature covers: the canonical JSON of everything but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature.clear();
        serde_json::to_vec(&unsigned).expect("receipt serializes")
    }

    /// The hash the next receipt of the chain names as `prev`.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(serde_json::to_vec(self).expect("receipt serializes")))
    }
}
