//! The GitOps reconciler (DESIGN section 3): reads specs from a directory or a git repository,
//! admits them through the operator's Rego policies, plans the difference between the desired
//! state and what the state backend holds, and applies it with idempotent steps. It is the only
//! code that provisions tenants' resources.
//!
//! The model is a level-triggered controller: every pass compares the whole desired state with
//! the whole actual state, so a missed event, a crash mid-apply or a change made by hand is
//! corrected by the next pass. Tenants are applied concurrently, each by one task at a time; one
//! failing tenant does not stop the others.

pub mod apply;
pub mod controller;
pub mod desired;
pub mod lease;
pub mod plan;
pub mod policy;
pub mod render;
pub mod source;
pub mod status;

pub use apply::{ApplyReport, Outcome};
pub use desired::{Desired, Record, ResourceId};
pub use plan::{Action, Change, Plan};
pub use status::{ResourceState, ResourceStatus, Status};

use crate::spec::{Function, LoadReport, SpecError};
use crate::state::{State, StateError};
use policy::{Denial, Policies, PolicyError};
use source::{Source, SourceError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "a running node holds the reconcile lease and reconciles from its own source; \
         change that source (or call POST /_gojinn/v1/reconcile) instead"
    )]
    LeaseHeld,
}

/// Specs read from a source and admitted: what a plan or an apply works from.
#[derive(Debug, Default)]
pub struct Admitted {
    pub desired: Desired,
    /// Resources the policies refused; nothing of them is applied, and what was applied of them
    /// before stays.
    pub denials: Vec<Denial>,
    /// Invalid spec documents. While there are any, nothing is pruned: an invalid document's
    /// resource cannot be told apart from a deleted one.
    pub invalid: Vec<SpecError>,
    /// Functions whose module the node cannot load (see [`Admitted::check_modules`]), with the
    /// error: nothing of them is applied, and what was applied of them before stays.
    pub unloadable: BTreeMap<ResourceId, String>,
}

impl Admitted {
    /// Checks a loaded spec set against `policies`.
    pub fn new(loaded: LoadReport, commit: Option<String>, policies: &Policies) -> Result<Self, PolicyError> {
        let mut state = loaded.state;
        let mut denials = Vec::new();
        for tenant in state.tenants.values() {
            denials.extend(policies.check_tenant(tenant)?);
        }
        let denied_tenants: BTreeSet<_> = denials
            .iter()
            .filter_map(|d| ResourceId::try_from(d.resource.clone()).ok())
            .map(|id| id.tenant)
            .collect();
        for function in state.functions.values() {
            let tenant = &state.tenants[&function.id.tenant];
            if denied_tenants.contains(&tenant.name) {
                continue;
            }
            denials.extend(policies.check_function(tenant, function)?);
        }
        let denied: BTreeSet<String> = denials.iter().map(|d| d.resource.clone()).collect();
        state.tenants.retain(|name, _| !denied_tenants.contains(name));
        state.functions.retain(|id, _| {
            !denied_tenants.contains(&id.tenant) && !denied.contains(&ResourceId::function(id).to_string())
        });
        Ok(Self {
            desired: Desired::new(state, commit),
            denials,
            invalid: loaded.errors,
            unloadable: BTreeMap::new(),
        })
    }

    /// Takes out of the desired state every function whose module fails `check` (the node's
    /// runtime compiling it as a deploy would), so that what is applied is what can be served.
    /// Each distinct module is checked once per memory size.
    pub fn check_modules(&mut self, check: impl Fn(&Function) -> Result<(), String>) {
        let mut checked: HashMap<(&str, u64), Result<(), String>> = HashMap::new();
        let mut unloadable = BTreeMap::new();
        for function in self.desired.functions.values() {
            let key = (function.module.sha256.as_str(), function.limits.memory);
            if let Err(error) = checked.entry(key).or_insert_with(|| check(function)) {
                unloadable
                    .insert(function.id.clone(), format!("spec.module {:?}: {error}", function.module.path));
            }
        }
        for (id, error) in unloadable {
            let resource = ResourceId::function(&id);
            self.desired.functions.remove(&id);
            self.desired.records.remove(&resource);
            self.unloadable.insert(resource, error);
        }
        let used: BTreeSet<&String> = self.desired.functions.values().map(|f| &f.module.sha256).collect();
        self.desired.modules.retain(|sha, _| used.contains(sha));
    }

    /// Whether everything read was admitted and is applicable.
    pub fn is_clean(&self) -> bool {
        self.denials.is_empty() && self.invalid.is_empty() && self.unloadable.is_empty()
    }

    /// Reads `source` (into `work_dir` for git), loads its specs and admits them: the operator's
    /// `policies/*.rego` always, the shipped defaults when `default_policies`; within the node's
    /// `bounds`. Blocking.
    pub fn read(
        source: &Source,
        work_dir: &Path,
        default_policies: bool,
        bounds: &crate::spec::Bounds,
    ) -> Result<Self, ReconcileError> {
        let checkout = source.checkout(work_dir)?;
        let policies = Policies::load_with(default_policies, Some(&checkout.root))?;
        let loaded = crate::spec::load_dir(&checkout.root, bounds);
        Ok(Self::new(loaded, checkout.commit, &policies)?)
    }

    /// Resources that must not be deleted although they are not desired: denied, invalid or
    /// unloadable ones (a denied tenant protects its functions too).
    fn protected(&self) -> BTreeSet<ResourceId> {
        let denied = self.denials.iter().map(|d| d.resource.clone());
        let invalid = self.invalid.iter().filter_map(|e| e.resource.clone());
        denied
            .chain(invalid)
            .filter_map(|resource| ResourceId::try_from(resource).ok())
            .chain(self.unloadable.keys().cloned())
            .collect()
    }
}

/// Plans and applies against one state backend. Shared by the CLI, the watch loop and the
/// webhook; one pass per tenant at a time.
pub struct Reconciler {
    state: State,
    tenant_locks: Mutex<HashMap<crate::spec::Name, Arc<tokio::sync::Mutex<()>>>>,
}

impl Reconciler {
    pub fn new(state: State) -> Self {
        Self { state, tenant_locks: Mutex::new(HashMap::new()) }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// What an apply of `admitted` would change. Writes nothing.
    pub async fn plan(&self, admitted: &Admitted) -> Result<Plan, ReconcileError> {
        let actual = plan::Actual::read(&self.state).await?;
        plan::plan(
            &self.state,
            &admitted.desired,
            &actual,
            &admitted.protected(),
            admitted.invalid.is_empty(),
        )
        .await
    }

    /// The lock that keeps two passes off one tenant.
    fn tenant_lock(&self, tenant: &crate::spec::Name) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.tenant_locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(tenant.clone()).or_default().clone()
    }
}
