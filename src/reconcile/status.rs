//! Per-resource status, kept in the control records so every node (and `gojinn status`, the
//! REST API and MCP) reads the same: whether each resource is applied, failed, denied or kept,
//! at which hash and commit, with the last error and the last drift corrected. A status record
//! is rewritten only when it changes, so an apply that changes nothing writes nothing.

use super::desired::{APPLIED_META, ResourceId, STATUS_PREFIX};
use crate::state::{State, StateError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceState {
    /// The backend holds the spec's current hash.
    Applied,
    /// The last apply of it failed; what was applied before stays.
    Failed,
    /// A policy refused it; what was applied before stays.
    Denied,
    /// Its spec is gone, but it is not pruned (`keep`, or prune was skipped).
    Kept,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub resource: ResourceId,
    pub state: ResourceState,
    /// The hash of the applied record, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The commit the applied record came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The last error, denial or reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The drift corrected when it was last applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

/// The last applied source revision, and a digest of every applied record's hash: nodes that
/// follow the reconciler redeploy when it changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedMeta {
    pub commit: Option<String>,
    #[serde(default)]
    pub digest: String,
}

/// Everything `gojinn status` shows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    /// The commit of the last apply, for git sources.
    pub commit: Option<String>,
    pub resources: Vec<ResourceStatus>,
}

/// Reads the status records.
pub async fn read(state: &State) -> Result<Status, StateError> {
    let (records, meta) =
        tokio::try_join!(state.control.records(STATUS_PREFIX), state.control.records(APPLIED_META))?;
    let commit = meta
        .get(APPLIED_META)
        .and_then(|raw| serde_json::from_slice::<AppliedMeta>(raw).ok())
        .and_then(|meta| meta.commit);
    Ok(Status { commit, resources: decode(&records).into_values().collect() })
}

/// Status records by resource; undecodable ones are skipped (they are rewritten on the next apply).
pub(super) fn decode(records: &BTreeMap<String, bytes::Bytes>) -> BTreeMap<ResourceId, ResourceStatus> {
    records
        .values()
        .filter_map(|raw| serde_json::from_slice::<ResourceStatus>(raw).ok())
        .map(|status| (status.resource.clone(), status))
        .collect()
}
