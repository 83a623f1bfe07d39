//! Per-resource status, kept in the control records so every node (and `gojinn status`, the
//! REST API and MCP) reads the same: whether each resource is applied, failed, denied, invalid
//! or kept, at which hash and commit, with the last error and the last drift corrected, and the
//! invalid documents that name no resource. A status record is rewritten only when it changes,
//! so an apply that changes nothing writes nothing.

use super::desired::{APPLIED_META, INVALID_DOCUMENTS, ResourceId, STATUS_PREFIX};
use crate::spec::{FunctionId, SpecError};
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
    /// Its spec document is invalid; what was applied before stays.
    Invalid,
    /// Its spec is gone, but it is not pruned (`keep`, or prune was skipped).
    Kept,
}

impl ResourceState {
    /// Whether the resource is not served at the spec's revision (its previous one, if any, is).
    pub fn is_problem(self) -> bool {
        matches!(self, Self::Failed | Self::Denied | Self::Invalid)
    }
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
    /// The commit of the last apply, for git sources. Each resource says which commit it is
    /// served at; see `partial`.
    pub commit: Option<String>,
    /// Whether that apply left part of its specs unserved: some resources failed, were denied or
    /// are invalid (each keeps what was applied of it before), or some documents are invalid.
    #[serde(default)]
    pub partial: bool,
    pub resources: Vec<ResourceStatus>,
    /// Invalid documents that name no resource (a YAML syntax error, an unknown kind).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<SpecError>,
}

impl Status {
    fn new(commit: Option<String>, resources: Vec<ResourceStatus>, invalid: Vec<SpecError>) -> Self {
        let mut status = Self { commit, partial: false, resources, invalid };
        status.update_partial();
        status
    }

    fn update_partial(&mut self) {
        self.partial = !self.invalid.is_empty() || self.resources.iter().any(|r| r.state.is_problem());
    }

    /// Marks the functions a node could not deploy (its module does not load there) as failed,
    /// with the node's error: what the state backend says is applied is not what that node serves.
    pub fn with_node_failures<'a>(
        mut self,
        failures: impl IntoIterator<Item = (&'a FunctionId, &'a String)>,
    ) -> Self {
        for (id, error) in failures {
            let resource = ResourceId::function(id);
            let message = format!("this node cannot serve it: {error}");
            match self.resources.iter_mut().find(|r| r.resource == resource) {
                Some(status) if status.state.is_problem() => {}
                Some(status) => {
                    status.state = ResourceState::Failed;
                    status.message = Some(message);
                }
                None => self.resources.push(ResourceStatus {
                    resource,
                    state: ResourceState::Failed,
                    hash: None,
                    commit: None,
                    message: Some(message),
                    drift: Vec::new(),
                }),
            }
        }
        self.update_partial();
        self
    }
}

/// Reads the status records.
pub async fn read(state: &State) -> Result<Status, StateError> {
    let control = &state.control;
    let (records, meta, invalid) = tokio::try_join!(
        control.records(STATUS_PREFIX),
        control.records(APPLIED_META),
        control.records(INVALID_DOCUMENTS)
    )?;
    let commit = meta
        .get(APPLIED_META)
        .and_then(|raw| serde_json::from_slice::<AppliedMeta>(raw).ok())
        .and_then(|meta| meta.commit);
    let invalid = invalid
        .get(INVALID_DOCUMENTS)
        .and_then(|raw| serde_json::from_slice::<Vec<SpecError>>(raw).ok())
        .unwrap_or_default();
    Ok(Status::new(commit, decode(&records).into_values().collect(), invalid))
}

/// Status records by resource; undecodable ones are skipped (they are rewritten on the next apply).
pub(super) fn decode(records: &BTreeMap<String, bytes::Bytes>) -> BTreeMap<ResourceId, ResourceStatus> {
    records
        .values()
        .filter_map(|raw| serde_json::from_slice::<ResourceStatus>(raw).ok())
        .map(|status| (status.resource.clone(), status))
        .collect()
}
