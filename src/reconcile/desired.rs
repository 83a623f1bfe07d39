//! Resources and their records: the desired state cut into one resource per tenant and per
//! function, each with a deterministic body (the normalized spec as JSON) and a content hash,
//! and the record layout the reconciler keeps in the state backend's control records.
//!
//! Record keys: `applied.tenant/<tenant>`, `applied.function/<tenant>/<function>` (what was
//! applied), `status.<resource>` (per-resource status), `meta.applied` (the last applied source
//! commit and a digest of everything applied). The first part ends at a `.` so that a NATS
//! backend can list one kind of record by subject filter. Module blobs live beside them,
//! content-addressed by sha256.

use crate::spec::{DesiredState, Function, FunctionId, Name, Tenant};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const APPLIED_PREFIX: &str = "applied.";
pub const STATUS_PREFIX: &str = "status.";
pub const APPLIED_META: &str = "meta.applied";
/// The invalid spec documents of the last apply that name no resource.
pub const INVALID_DOCUMENTS: &str = "meta.invalid";

/// What a resource is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Tenant,
    Function,
}

/// A resource's identity, `tenant/<tenant>` or `function/<tenant>/<function>`. Tenants sort
/// before functions, so a tenant is created before its functions and removed after them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ResourceId {
    pub kind: Kind,
    pub tenant: Name,
    /// The function's name; `None` for a tenant.
    pub function: Option<Name>,
}

impl ResourceId {
    pub fn tenant(tenant: &Name) -> Self {
        Self { kind: Kind::Tenant, tenant: tenant.clone(), function: None }
    }

    pub fn function(id: &FunctionId) -> Self {
        Self { kind: Kind::Function, tenant: id.tenant.clone(), function: Some(id.function.clone()) }
    }

    /// The key of this resource's applied record.
    pub fn applied_key(&self) -> String {
        format!("{APPLIED_PREFIX}{self}")
    }

    /// The key of this resource's status record.
    pub fn status_key(&self) -> String {
        format!("{STATUS_PREFIX}{self}")
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.function {
            None => write!(f, "tenant/{}", self.tenant),
            Some(function) => write!(f, "function/{}/{function}", self.tenant),
        }
    }
}

impl From<ResourceId> for String {
    fn from(id: ResourceId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for ResourceId {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        let name = |s: &str| Name::new(s).map_err(|e| format!("{raw:?}: {e}"));
        match raw.split('/').collect::<Vec<_>>().as_slice() {
            ["tenant", tenant] => Ok(Self::tenant(&name(tenant)?)),
            ["function", tenant, function] => {
                Ok(Self { kind: Kind::Function, tenant: name(tenant)?, function: Some(name(function)?) })
            }
            _ => Err(format!("{raw:?} is not tenant/NAME or function/TENANT/NAME")),
        }
    }
}

/// A resource as recorded in the control records: its normalized spec, whether prune spares
/// it, and the hash of both. A record whose hash does not match its content was changed behind
/// the reconciler's back (drift).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: ResourceId,
    pub hash: String,
    #[serde(default)]
    pub keep: bool,
    /// The normalized spec: a [`Tenant`] or a [`Function`] as JSON.
    pub spec: serde_json::Value,
    /// The source commit it was applied from.
    #[serde(default)]
    pub commit: Option<String>,
}

impl Record {
    fn new(id: ResourceId, keep: bool, spec: serde_json::Value) -> Self {
        let hash = content_hash(&spec, keep);
        Self { id, hash, keep, spec, commit: None }
    }

    /// Whether the hash still matches the content.
    pub fn is_intact(&self) -> bool {
        self.hash == content_hash(&self.spec, self.keep)
    }

    /// The module blob a function record needs.
    pub fn module_sha256(&self) -> Option<&str> {
        self.spec.get("module")?.get("sha256")?.as_str()
    }
}

/// sha256 over the canonical JSON of the spec (serde_json writes object keys sorted, as every
/// map in a normalized spec is a `BTreeMap` or a struct in a fixed order) and the keep marker.
fn content_hash(spec: &serde_json::Value, keep: bool) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(spec).expect("JSON values serialize"));
    hasher.update([u8::from(keep)]);
    hex::encode(hasher.finalize())
}

/// The desired state as resources, with the module bytes each function needs.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub records: BTreeMap<ResourceId, Record>,
    pub tenants: BTreeMap<Name, Tenant>,
    pub functions: BTreeMap<FunctionId, Function>,
    /// Module bytes by sha256.
    pub modules: BTreeMap<String, Arc<[u8]>>,
    /// The commit the specs were read at, for git sources.
    pub commit: Option<String>,
}

impl Desired {
    pub fn new(state: DesiredState, commit: Option<String>) -> Self {
        let mut desired = Desired { commit, ..Desired::default() };
        for tenant in state.tenants.into_values() {
            let spec = serde_json::to_value(&tenant).expect("tenants serialize");
            let mut record = Record::new(ResourceId::tenant(&tenant.name), tenant.keep, spec);
            record.commit.clone_from(&desired.commit);
            desired.records.insert(record.id.clone(), record);
            desired.tenants.insert(tenant.name.clone(), tenant);
        }
        for function in state.functions.into_values() {
            let spec = serde_json::to_value(&function).expect("functions serialize");
            let mut record = Record::new(ResourceId::function(&function.id), function.keep, spec);
            record.commit.clone_from(&desired.commit);
            desired.records.insert(record.id.clone(), record);
            desired.modules.insert(function.module.sha256.clone(), function.module.bytes.clone());
            desired.functions.insert(function.id.clone(), function);
        }
        desired
    }
}

/// Rebuilds the normalized desired state from applied records and their module blobs: what a
/// node serves. Records that do not decode are returned as errors, by resource.
pub fn state_from_records(
    records: impl IntoIterator<Item = Record>,
    modules: &BTreeMap<String, Arc<[u8]>>,
) -> (DesiredState, Vec<(ResourceId, String)>) {
    let mut state = DesiredState::default();
    let mut errors = Vec::new();
    for record in records {
        if !record.is_intact() {
            errors.push((record.id, "the applied record does not match its hash".into()));
            continue;
        }
        match record.id.kind {
            Kind::Tenant => match serde_json::from_value::<Tenant>(record.spec) {
                Ok(mut tenant) => {
                    tenant.keep = record.keep;
                    state.tenants.insert(tenant.name.clone(), tenant);
                }
                Err(e) => errors.push((record.id, format!("cannot decode the applied tenant: {e}"))),
            },
            Kind::Function => match serde_json::from_value::<Function>(record.spec) {
                Ok(mut function) => match modules.get(&function.module.sha256) {
                    Some(bytes) => {
                        function.module.bytes = bytes.clone();
                        function.module.pinned = true;
                        function.keep = record.keep;
                        state.functions.insert(function.id.clone(), function);
                    }
                    None => {
                        errors.push((record.id, format!("module blob {} is missing", function.module.sha256)))
                    }
                },
                Err(e) => errors.push((record.id, format!("cannot decode the applied function: {e}"))),
            },
        }
    }
    (state, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture() -> Desired {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/specs/valid-full");
        let report = crate::spec::load_dir(&root, &crate::spec::Bounds::default());
        assert!(report.errors.is_empty(), "{}", report.error_text());
        Desired::new(report.state, Some("abc".into()))
    }

    #[test]
    fn resource_ids_round_trip_and_tenants_sort_first() {
        for raw in ["tenant/acme", "function/acme/hello"] {
            let id = ResourceId::try_from(raw.to_string()).unwrap();
            assert_eq!(id.to_string(), raw);
        }
        for bad in ["tenant", "tenant/Acme", "function/acme", "widget/acme/x", "tenant/a/b"] {
            assert!(ResourceId::try_from(bad.to_string()).is_err(), "{bad}");
        }
        let tenant = ResourceId::try_from("tenant/zeta".to_string()).unwrap();
        let function = ResourceId::try_from("function/acme/a".to_string()).unwrap();
        assert!(tenant < function);
    }

    #[test]
    fn records_rebuild_the_same_desired_state() {
        let desired = fixture();
        assert!(!desired.functions.is_empty());
        let (state, errors) = state_from_records(desired.records.values().cloned(), &desired.modules);
        assert!(errors.is_empty(), "{errors:?}");
        let again = Desired::new(state, Some("abc".into()));
        assert_eq!(again.records, desired.records);
        for (id, function) in &again.functions {
            assert_eq!(function.revision, desired.functions[id].revision);
            assert_eq!(function.module.bytes, desired.functions[id].module.bytes);
        }
    }

    #[test]
    fn a_changed_record_is_not_intact() {
        let desired = fixture();
        let mut record = desired.records.values().next().unwrap().clone();
        assert!(record.is_intact());
        record.spec["replicas"] = serde_json::json!(5);
        assert!(!record.is_intact());
        let (_, errors) = state_from_records([record], &desired.modules);
        assert_eq!(errors.len(), 1);
    }
}
