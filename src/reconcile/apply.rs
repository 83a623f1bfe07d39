//! Apply: carries out a plan with idempotent steps. Tenants go concurrently, each under its
//! own lock, its steps in order (tenant before its functions, functions before a deleted
//! tenant); a failing step fails its resource (and, for a tenant, the tenant's other steps), never
//! another tenant. Afterwards unreferenced module blobs are collected and the status records
//! that changed are rewritten. Every step writes only what differs, so applying the same specs
//! twice writes nothing the second time.

use super::desired::{APPLIED_META, Desired, INVALID_DOCUMENTS, Kind, ResourceId};
use super::plan::{self, Action, Actual, Change, Plan};
use super::status::{self, AppliedMeta, ResourceState, ResourceStatus};
use super::{Admitted, ReconcileError, Reconciler};
use crate::spec::Name;
use crate::state::StateError;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Tenants applied at once.
const TENANTS_IN_FLIGHT: usize = 16;
/// Status records written at once.
const STATUS_WRITES_IN_FLIGHT: usize = 32;

/// How one planned change went.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "outcome", content = "error")]
pub enum Outcome {
    Applied,
    Failed(String),
}

/// What an apply did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApplyReport {
    pub plan: Plan,
    /// The outcome of every change of the plan.
    pub outcomes: BTreeMap<ResourceId, Outcome>,
    /// Module blobs no applied function uses any more, deleted.
    pub blobs_collected: usize,
    /// Writes made to the state backend (provisioning and control records).
    pub writes: u64,
}

impl ApplyReport {
    pub fn failures(&self) -> impl Iterator<Item = (&ResourceId, &str)> {
        self.outcomes.iter().filter_map(|(id, o)| match o {
            Outcome::Failed(e) => Some((id, e.as_str())),
            Outcome::Applied => None,
        })
    }
}

impl Reconciler {
    /// Applies `admitted`: plans against the backend, then carries the plan out.
    pub async fn apply(&self, admitted: &Admitted) -> Result<ApplyReport, ReconcileError> {
        let writes_before = self.state.control.writes();
        let actual = Actual::read(&self.state).await?;
        let prune = admitted.invalid.is_empty();
        let plan = plan::plan(&self.state, &admitted.desired, &actual, &admitted.protected(), prune).await?;

        let mut outcomes = BTreeMap::new();
        let uploads = self.upload_blobs(&plan, &admitted.desired, &actual).await;
        {
            let mut by_tenant: BTreeMap<&Name, Vec<&Change>> = BTreeMap::new();
            for change in &plan.changes {
                by_tenant.entry(&change.resource.tenant).or_default().push(change);
            }
            let desired = &admitted.desired;
            // Collected first: a lazy iterator of borrowing futures trips the compiler's `Send`
            // inference when the whole apply is spawned.
            let passes: Vec<_> = by_tenant
                .into_iter()
                .map(|(tenant, changes)| self.apply_tenant(tenant, changes, desired, &uploads))
                .collect();
            let mut results = futures::stream::iter(passes).buffer_unordered(TENANTS_IN_FLIGHT);
            while let Some(tenant_outcomes) = results.next().await {
                outcomes.extend(tenant_outcomes);
            }
        }

        let blobs_collected = if prune { self.collect_blobs(admitted, &actual, &outcomes).await? } else { 0 };
        self.write_statuses(admitted, &actual, &plan, &outcomes).await?;
        let meta = AppliedMeta {
            commit: admitted.desired.commit.clone(),
            digest: applied_digest(admitted, &actual, &outcomes),
        };
        self.state.control.put_record(APPLIED_META, json(&meta)).await?;
        let writes = self.state.control.writes() - writes_before;
        Ok(ApplyReport { plan, outcomes, blobs_collected, writes })
    }

    /// Stores each module blob the plan's functions need and the backend lacks, once, before
    /// the tenants' passes: the failed uploads, by sha256, fail the functions that need them.
    async fn upload_blobs(
        &self,
        plan: &Plan,
        desired: &Desired,
        actual: &Actual,
    ) -> BTreeMap<String, String> {
        let needed: BTreeSet<&str> = plan
            .changes
            .iter()
            .filter(|c| c.action != Action::Delete)
            .filter_map(|c| desired.records.get(&c.resource)?.module_sha256())
            .filter(|sha| !actual.blobs.contains(*sha))
            .collect();
        let mut failed = BTreeMap::new();
        for sha in needed {
            let bytes = Bytes::from_owner(desired.modules[sha].clone());
            if let Err(e) = self.state.control.put_blob(sha, bytes).await {
                failed.insert(sha.to_string(), format!("storing module blob {sha}: {e}"));
            }
        }
        failed
    }

    /// One tenant's changes, in order, under the tenant's lock.
    async fn apply_tenant(
        &self,
        tenant: &Name,
        changes: Vec<&Change>,
        desired: &Desired,
        failed_uploads: &BTreeMap<String, String>,
    ) -> Vec<(ResourceId, Outcome)> {
        let lock = self.tenant_lock(tenant);
        let _one_pass_per_tenant = lock.lock().await;
        let mut outcomes = Vec::with_capacity(changes.len());
        let mut tenant_failed: Option<String> = None;
        for change in changes {
            let outcome = match &tenant_failed {
                Some(error) => Outcome::Failed(format!("tenant {tenant} failed: {error}")),
                None => match self.step(change, desired, failed_uploads).await {
                    Ok(()) => Outcome::Applied,
                    Err(error) => {
                        let error = error.to_string();
                        if change.resource.kind == Kind::Tenant && change.action != Action::Delete {
                            tenant_failed = Some(error.clone());
                        }
                        Outcome::Failed(error)
                    }
                },
            };
            if let Outcome::Failed(error) = &outcome {
                tracing::warn!(resource = %change.resource, "apply failed: {error}");
            }
            outcomes.push((change.resource.clone(), outcome));
        }
        outcomes
    }

    /// One change. Each backend call writes only what differs.
    async fn step(
        &self,
        change: &Change,
        desired: &Desired,
        failed_uploads: &BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        let id = &change.resource;
        let control = &self.state.control;
        match (change.action, id.kind) {
            (Action::Delete, Kind::Function) => {
                control.delete_record(&id.applied_key()).await?;
            }
            (Action::Delete, Kind::Tenant) => {
                self.state.provisioner.remove_tenant(&id.tenant).await?;
                control.delete_record(&id.applied_key()).await?;
            }
            (_, Kind::Tenant) => {
                let tenant = &desired.tenants[&id.tenant];
                self.state.provisioner.ensure_tenant(&plan::resources(tenant)).await?;
                control.put_record(&id.applied_key(), json(&desired.records[id])).await?;
            }
            (_, Kind::Function) => {
                let record = &desired.records[id];
                if let Some(error) = record.module_sha256().and_then(|sha| failed_uploads.get(sha)) {
                    return Err(StateError::Unavailable(error.clone()));
                }
                control.put_record(&id.applied_key(), json(record)).await?;
            }
        }
        Ok(())
    }

    /// Deletes module blobs that no applied record refers to any more.
    async fn collect_blobs(
        &self,
        admitted: &Admitted,
        actual: &Actual,
        outcomes: &BTreeMap<ResourceId, Outcome>,
    ) -> Result<usize, ReconcileError> {
        let applied = |id: &ResourceId| outcomes.get(id).is_none_or(|o| *o == Outcome::Applied);
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for (id, record) in &admitted.desired.records {
            if applied(id) {
                used.extend(record.module_sha256());
            }
        }
        for (id, record) in &actual.records {
            // Still applied unless it was just replaced or deleted successfully.
            if outcomes.get(id).is_none_or(|o| *o != Outcome::Applied) {
                used.extend(record.module_sha256());
            }
        }
        let mut collected = 0;
        for sha in actual.blobs.iter().filter(|sha| !used.contains(sha.as_str())) {
            if self.state.control.delete_blob(sha).await? {
                collected += 1;
            }
        }
        Ok(collected)
    }

    /// Rewrites the status records that changed and deletes those of deleted resources.
    async fn write_statuses(
        &self,
        admitted: &Admitted,
        actual: &Actual,
        plan: &Plan,
        outcomes: &BTreeMap<ResourceId, Outcome>,
    ) -> Result<(), ReconcileError> {
        let control = &self.state.control;
        let existing = status::decode(&control.records(super::desired::STATUS_PREFIX).await?);
        let mut wanted: BTreeMap<ResourceId, ResourceStatus> = BTreeMap::new();
        let changes: BTreeMap<&ResourceId, &Change> = plan.changes.iter().map(|c| (&c.resource, c)).collect();
        let previous = |id: &ResourceId, state, message: Option<String>| ResourceStatus {
            resource: id.clone(),
            state,
            hash: actual.records.get(id).map(|r| r.hash.clone()),
            commit: actual.records.get(id).and_then(|r| r.commit.clone()),
            message,
            drift: Vec::new(),
        };
        for (id, record) in &admitted.desired.records {
            let status = match (changes.get(id), outcomes.get(id)) {
                (Some(_), Some(Outcome::Failed(error))) => {
                    previous(id, ResourceState::Failed, Some(error.clone()))
                }
                (Some(change), _) => ResourceStatus {
                    resource: id.clone(),
                    state: ResourceState::Applied,
                    hash: Some(record.hash.clone()),
                    commit: record.commit.clone(),
                    message: None,
                    drift: change.drift.clone(),
                },
                // Unchanged: the status it has, if it says applied at this hash.
                (None, _) => match existing.get(id) {
                    Some(s) if s.state == ResourceState::Applied && s.hash.as_ref() == Some(&record.hash) => {
                        s.clone()
                    }
                    _ => previous(id, ResourceState::Applied, None),
                },
            };
            wanted.insert(id.clone(), status);
        }
        for change in plan.changes.iter().filter(|c| c.action == Action::Delete) {
            if let Some(Outcome::Failed(error)) = outcomes.get(&change.resource) {
                wanted.insert(
                    change.resource.clone(),
                    previous(&change.resource, ResourceState::Failed, Some(error.clone())),
                );
            }
        }
        // Resources without a desired record, each for the strongest reason: kept (spared by
        // the plan), unless it is denied, invalid or its module does not load.
        for spared in &plan.spared {
            wanted.insert(
                spared.resource.clone(),
                previous(&spared.resource, ResourceState::Kept, Some(spared.reason.clone())),
            );
        }
        let mut denials: BTreeMap<ResourceId, Vec<String>> = BTreeMap::new();
        for denial in &admitted.denials {
            if let Ok(id) = ResourceId::try_from(denial.resource.clone()) {
                denials.entry(id).or_default().push(format!("{}: {}", denial.policy, denial.message));
            }
        }
        for (id, messages) in denials {
            wanted.insert(id.clone(), previous(&id, ResourceState::Denied, Some(messages.join("; "))));
        }
        // The applied functions of a denied tenant stay as they were: say why.
        let of_denied_tenants: Vec<&ResourceId> = actual
            .records
            .keys()
            .filter(|id| id.kind == Kind::Function && !admitted.desired.records.contains_key(*id))
            .filter(|id| wanted.get(*id).is_none_or(|s| s.state == ResourceState::Kept))
            .filter(|id| {
                wanted.get(&ResourceId::tenant(&id.tenant)).is_some_and(|s| s.state == ResourceState::Denied)
            })
            .collect();
        for id in of_denied_tenants {
            let message = format!("tenant {} is denied", id.tenant);
            wanted.insert(id.clone(), previous(id, ResourceState::Denied, Some(message)));
        }
        let mut invalid: BTreeMap<ResourceId, Vec<String>> = BTreeMap::new();
        for error in &admitted.invalid {
            if let Some(id) = error.resource.clone().and_then(|r| ResourceId::try_from(r).ok())
                && !admitted.desired.records.contains_key(&id)
            {
                invalid.entry(id).or_default().push(error.to_string());
            }
        }
        for (id, messages) in invalid {
            wanted.insert(id.clone(), previous(&id, ResourceState::Invalid, Some(messages.join("; "))));
        }
        for (id, error) in &admitted.unloadable {
            wanted.insert(id.clone(), previous(id, ResourceState::Failed, Some(error.clone())));
        }

        let puts = wanted.iter().filter(|(id, status)| existing.get(*id) != Some(*status)).map(
            |(id, status)| async move { control.put_record(&id.status_key(), json(status)).await.map(drop) },
        );
        let deletes = existing
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .map(|id| async move { control.delete_record(&id.status_key()).await.map(drop) });
        let writes: Vec<_> =
            puts.map(futures::FutureExt::boxed).chain(deletes.map(futures::FutureExt::boxed)).collect();
        let mut results = futures::stream::iter(writes).buffer_unordered(STATUS_WRITES_IN_FLIGHT);
        while let Some(result) = results.next().await {
            result?;
        }
        self.write_invalid_documents(admitted).await
    }

    /// Rewrites the record of invalid documents that name no resource, when it changes.
    async fn write_invalid_documents(&self, admitted: &Admitted) -> Result<(), ReconcileError> {
        let control = &self.state.control;
        let nameless: Vec<&crate::spec::SpecError> =
            admitted.invalid.iter().filter(|e| e.resource.is_none()).collect();
        let existing = control.records(INVALID_DOCUMENTS).await?;
        let existing = existing.get(INVALID_DOCUMENTS);
        if nameless.is_empty() {
            if existing.is_some() {
                control.delete_record(INVALID_DOCUMENTS).await?;
            }
            return Ok(());
        }
        let wanted = json(&nameless);
        if existing != Some(&wanted) {
            control.put_record(INVALID_DOCUMENTS, wanted).await?;
        }
        Ok(())
    }
}

/// sha256 over the (resource, hash) pairs the backend holds after an apply.
fn applied_digest(admitted: &Admitted, actual: &Actual, outcomes: &BTreeMap<ResourceId, Outcome>) -> String {
    use sha2::{Digest, Sha256};
    let mut held: BTreeMap<&ResourceId, &str> =
        actual.records.iter().map(|(id, r)| (id, r.hash.as_str())).collect();
    for (id, outcome) in outcomes {
        if *outcome != Outcome::Applied {
            continue;
        }
        match admitted.desired.records.get(id) {
            Some(record) => held.insert(id, &record.hash),
            None => held.remove(id),
        };
    }
    let mut hasher = Sha256::new();
    for (id, hash) in held {
        hasher.update(format!("{id} {hash}\n"));
    }
    hex::encode(hasher.finalize())
}

fn json(value: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("records serialize"))
}
