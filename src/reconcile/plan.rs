//! Plan: the difference between the desired resources and what the state backend holds (the
//! applied records, the module blobs, and each tenant's streams and buckets as they really
//! are), per resource, with the fields that change. Reading the actual state writes nothing.

use super::ReconcileError;
use super::desired::{APPLIED_PREFIX, Desired, Kind, Record, ResourceId};
use crate::state::{State, TenantResources};
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// How many tenants' streams are inspected at once.
const DRIFT_CHECKS_IN_FLIGHT: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    /// Correct drift: what the backend holds was changed behind Gojinn's back.
    Repair,
    Delete,
}

/// One field that changes, by its path in the normalized spec (`limits.memory`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub resource: ResourceId,
    pub action: Action,
    /// For updates and repairs: the fields that change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// For repairs: what was found changed behind Gojinn's back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

/// Why an applied resource without a spec is left in place.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spared {
    pub resource: ResourceId,
    pub reason: String,
}

/// What an apply would do.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub commit: Option<String>,
    pub changes: Vec<Change>,
    /// Applied resources whose spec is gone but that are not deleted (a `keep` marker, a denied
    /// or invalid spec).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spared: Vec<Spared>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Counts by action: (create, update, repair, delete).
    pub fn counts(&self) -> [usize; 4] {
        let count = |a: Action| self.changes.iter().filter(|c| c.action == a).count();
        [count(Action::Create), count(Action::Update), count(Action::Repair), count(Action::Delete)]
    }
}

/// What the state backend holds.
#[derive(Clone, Debug, Default)]
pub struct Actual {
    pub records: BTreeMap<ResourceId, Record>,
    /// Applied records that no longer decode (edited by hand); repaired or deleted.
    pub broken: BTreeMap<ResourceId, String>,
    pub blobs: BTreeSet<String>,
}

impl Actual {
    pub async fn read(state: &State) -> Result<Self, ReconcileError> {
        let (records, blobs) =
            tokio::try_join!(state.control.records(APPLIED_PREFIX), state.control.blobs())?;
        let mut actual = Actual { blobs, ..Actual::default() };
        for (key, value) in records {
            let Ok(id) = ResourceId::try_from(key[APPLIED_PREFIX.len()..].to_string()) else {
                tracing::warn!(key, "ignoring a control record that names no resource");
                continue;
            };
            match serde_json::from_slice::<Record>(&value) {
                Ok(record) if record.id == id => {
                    actual.records.insert(id, record);
                }
                Ok(_) => {
                    actual.broken.insert(id, "the applied record names another resource".into());
                }
                Err(e) => {
                    actual.broken.insert(id, format!("the applied record does not decode: {e}"));
                }
            }
        }
        Ok(actual)
    }
}

/// Plans `desired` against `actual`. Applied resources in `protected` (denied or invalid specs)
/// are never deleted; with `prune` false nothing is deleted at all.
pub async fn plan(
    state: &State,
    desired: &Desired,
    actual: &Actual,
    protected: &BTreeSet<ResourceId>,
    prune: bool,
) -> Result<Plan, ReconcileError> {
    let drift = tenant_drift(state, desired, actual).await?;
    let mut plan = Plan { commit: desired.commit.clone(), ..Plan::default() };
    for (id, want) in &desired.records {
        let change = match actual.records.get(id) {
            None if actual.broken.contains_key(id) => Some(Change {
                resource: id.clone(),
                action: Action::Repair,
                fields: Vec::new(),
                drift: vec![actual.broken[id].clone()],
            }),
            None => Some(Change {
                resource: id.clone(),
                action: Action::Create,
                fields: Vec::new(),
                drift: vec![],
            }),
            Some(have) => {
                let mut found = Vec::new();
                if !have.is_intact() {
                    found.push("the applied record was changed behind gojinn's back".to_string());
                }
                if let Some(sha) = want.module_sha256()
                    && !actual.blobs.contains(sha)
                {
                    found.push(format!("module blob {sha} is missing"));
                }
                found.extend(
                    drift.get(&id.tenant).filter(|_| id.kind == Kind::Tenant).into_iter().flatten().cloned(),
                );
                let unchanged = have.hash == want.hash;
                let mut fields = Vec::new();
                if !unchanged || !found.is_empty() {
                    fields = field_changes(&have.spec, &want.spec);
                    if have.keep != want.keep {
                        fields.push(FieldChange {
                            path: "metadata.keep".into(),
                            before: Some(have.keep.into()),
                            after: Some(want.keep.into()),
                        });
                    }
                }
                match (found.is_empty(), unchanged) {
                    (true, true) => None,
                    (true, false) => {
                        Some(Change { resource: id.clone(), action: Action::Update, fields, drift: found })
                    }
                    (false, _) => {
                        Some(Change { resource: id.clone(), action: Action::Repair, fields, drift: found })
                    }
                }
            }
        };
        plan.changes.extend(change);
    }

    // Applied resources without a spec: delete, unless something spares them.
    let kept_tenants: BTreeSet<_> = actual
        .records
        .values()
        .filter(|r| r.id.kind == Kind::Function && r.keep && !desired.records.contains_key(&r.id))
        .map(|r| r.id.tenant.clone())
        .collect();
    let gone = actual
        .records
        .iter()
        .map(|(id, r)| (id, Some(r)))
        .chain(actual.broken.keys().map(|id| (id, None)))
        .filter(|(id, _)| !desired.records.contains_key(*id));
    let mut deletes = Vec::new();
    for (id, record) in gone {
        let reason = if record.is_some_and(|r| r.keep) {
            Some("marked keep".to_string())
        } else if protected.contains(id) || protected.contains(&ResourceId::tenant(&id.tenant)) {
            Some("its spec is denied or invalid".to_string())
        } else if !prune {
            Some("prune skipped: some spec documents are invalid".to_string())
        } else if id.kind == Kind::Tenant && kept_tenants.contains(&id.tenant) {
            Some("a function of it is marked keep".to_string())
        } else {
            None
        };
        match reason {
            Some(reason) => plan.spared.push(Spared { resource: id.clone(), reason }),
            None => deletes.push(Change {
                resource: id.clone(),
                action: Action::Delete,
                fields: vec![],
                drift: vec![],
            }),
        }
    }
    // Functions go before their tenant.
    deletes.sort_by(|a, b| b.resource.kind.cmp(&a.resource.kind).then(a.resource.cmp(&b.resource)));
    plan.changes.extend(deletes);
    Ok(plan)
}

/// Drift of the streams and buckets of every desired tenant that has been applied.
async fn tenant_drift(
    state: &State,
    desired: &Desired,
    actual: &Actual,
) -> Result<BTreeMap<crate::spec::Name, Vec<String>>, ReconcileError> {
    let applied = desired
        .tenants
        .values()
        .filter(|t| actual.records.get(&ResourceId::tenant(&t.name)).is_some_and(|r| r.is_intact()));
    let checks: Vec<_> = applied
        .map(|tenant| async move {
            let lines = state.provisioner.drift(&resources(tenant)).await?;
            Ok::<_, ReconcileError>((tenant.name.clone(), lines))
        })
        .collect();
    let mut found = BTreeMap::new();
    let mut results = futures::stream::iter(checks).buffer_unordered(DRIFT_CHECKS_IN_FLIGHT);
    while let Some(result) = results.next().await {
        let (name, lines) = result?;
        if !lines.is_empty() {
            found.insert(name, lines);
        }
    }
    Ok(found)
}

/// What provisioning needs of a tenant.
pub fn resources(tenant: &crate::spec::Tenant) -> TenantResources {
    TenantResources {
        name: tenant.name.clone(),
        replicas: tenant.replicas,
        kv_max_bytes: tenant.quotas.kv_max_bytes,
        kv_max_keys: tenant.quotas.kv_max_keys,
    }
}

/// The leaves that differ between two JSON documents, by dotted path; arrays are leaves.
pub fn field_changes(before: &serde_json::Value, after: &serde_json::Value) -> Vec<FieldChange> {
    let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
    flatten("", before, &mut old);
    flatten("", after, &mut new);
    let paths: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    paths
        .into_iter()
        .filter(|p| old.get(*p) != new.get(*p))
        .map(|p| FieldChange { path: p.clone(), before: old.get(p).cloned(), after: new.get(p).cloned() })
        .collect()
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, value, out);
            }
        }
        serde_json::Value::Null => {}
        leaf => {
            out.insert(prefix.to_string(), leaf.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_changes_name_the_leaves_that_differ() {
        let before = json!({"limits": {"memory": 1, "timeout": 5}, "env": {"A": "x"}, "routes": [1]});
        let after =
            json!({"limits": {"memory": 2, "timeout": 5}, "env": {"B": "y"}, "routes": [1], "mcp": null});
        let changes = field_changes(&before, &after);
        let paths: Vec<_> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["env.A", "env.B", "limits.memory"]);
        assert_eq!(changes[2].before, Some(json!(1)));
        assert_eq!(changes[2].after, Some(json!(2)));
        assert!(field_changes(&after, &after).is_empty());
    }
}
