//! Builds the registry a node serves from the applied records, and only that: the modules are
//! fetched (from the specs just read, the running registry, or the state backend's blobs),
//! unchanged revisions are kept as they are, changed ones are compiled and prepared, and the new
//! registry is published whole ([`RegistryHandle::publish`]). A function whose new revision
//! cannot be prepared keeps serving its previous one, and nothing is removed while any spec
//! document is invalid, so a bad push loses nothing. When to deploy is the reconcile
//! controller's decision (`crate::reconcile::controller`), never this module's.

use crate::config::NodeConfig;
use crate::edge;
use crate::gate::{Gate, Limits as GateLimits};
use crate::host::{Backends, Capabilities};
use crate::reconcile::Admitted;
use crate::reconcile::controller::{Deploy, PassReport};
use crate::reconcile::desired::{APPLIED_META, APPLIED_PREFIX, Record, state_from_records};
use crate::reconcile::status::AppliedMeta;
use crate::registry::{Deployed, DeployedKey, Registry, RegistryHandle};
use crate::runtime::Runtime;
use crate::secrets::Secrets;
use crate::spec::{Function, LoadReport, Location, SpecError};
use crate::state::{RecordChanges, State, StateError};
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

/// Deploys the applied state of one node into its registry.
pub struct Deployment {
    runtime: Arc<Runtime>,
    state: State,
    /// What host capabilities are built from: state, tenants' databases, egress.
    backends: Backends,
    /// Where this node reads functions' secret env values.
    secrets: Secrets,
    registry: RegistryHandle,
    /// The applied state last deployed, so a follower redeploys only when it changes.
    deployed_meta: Mutex<Option<AppliedMeta>>,
    /// Serializes deploys; the registry itself is read lock-free.
    deploying: Mutex<()>,
}

impl Deploy for Deployment {
    fn servable(&self, f: &Function) -> Result<(), String> {
        let serving = self.registry.current();
        if serving.get(&f.id).is_some_and(|d| d.spec.revision == f.revision) {
            return Ok(());
        }
        let prepared = self.runtime.prepare(&f.module.sha256, &f.module.bytes, f.limits.memory);
        prepared.map(drop).map_err(|e| {
            self.runtime.metrics().deploy_failed(&f.id.tenant);
            e.to_string()
        })
    }

    async fn deploy_applied(
        self: &Arc<Self>,
        read: Option<&Admitted>,
        at: &Location,
    ) -> Result<PassReport, StateError> {
        let meta = read_meta(&self.state).await?;
        let raw = self.state.control.records(APPLIED_PREFIX).await?;
        let mut errors = Vec::new();
        let records: Vec<Record> =
            raw.values().filter_map(|value| serde_json::from_slice(value).ok()).collect();
        let registry = self.registry.current();
        let mut modules = BTreeMap::new();
        for sha in records.iter().filter_map(Record::module_sha256) {
            let known = read.and_then(|r| r.desired.modules.get(sha).cloned()).or_else(|| {
                registry
                    .functions()
                    .find(|d| d.spec.module.sha256 == sha)
                    .map(|d| d.spec.module.bytes.clone())
            });
            let bytes = match known {
                Some(bytes) => bytes,
                None => match self.state.control.blob(sha).await {
                    Ok(Some(bytes)) => Arc::from(&bytes[..]),
                    Ok(None) => continue,
                    Err(e) => {
                        errors.push(SpecError::new(at.clone(), format!("module blob {sha}: {e}")));
                        continue;
                    }
                },
            };
            modules.insert(sha.to_string(), bytes);
        }
        let (mut state, record_errors) = state_from_records(records, &modules);
        errors.extend(
            record_errors.into_iter().map(|(id, e)| SpecError::new(Location::file(id.to_string().into()), e)),
        );
        if let Some(read) = read {
            for (id, function) in &mut state.functions {
                if let Some(desired) = read.desired.functions.get(id) {
                    function.source = desired.source.clone();
                }
            }
        }
        *self.deployed_meta.lock().expect("deployed meta") = Some(meta);
        let this = self.clone();
        Ok(tokio::task::spawn_blocking(move || this.deploy(LoadReport { state, errors }))
            .await
            .expect("deploying panicked"))
    }

    async fn applied_changes(self: &Arc<Self>) -> Result<RecordChanges, StateError> {
        self.state.control.record_changes(APPLIED_META).await
    }

    async fn follow_applied(self: &Arc<Self>, at: &Location) -> Option<PassReport> {
        let meta = read_meta(&self.state).await.ok()?;
        if self.deployed_meta.lock().expect("deployed meta").as_ref() == Some(&meta) {
            return None;
        }
        Some(self.deploy_applied(None, at).await.unwrap_or_else(|e| {
            let errors = vec![SpecError::new(at.clone(), format!("reading the applied state: {e}"))];
            PassReport { errors, ..PassReport::default() }
        }))
    }
}

impl Deployment {
    /// Deploys into `registry`, preparing modules with `runtime` and capabilities from `state`
    /// and the node `config` (data dir, egress, secrets).
    pub fn new(config: &NodeConfig, runtime: Arc<Runtime>, state: State, registry: RegistryHandle) -> Self {
        Self {
            backends: Backends::new(state.clone(), &config.data_dir, config.egress.clone()),
            secrets: Secrets::new(
                &config.secrets,
                &config.data_dir,
                config.limits.env_bytes_per_function.bytes(),
            ),
            runtime,
            state,
            registry,
            deployed_meta: Mutex::new(None),
            deploying: Mutex::new(()),
        }
    }

    /// Deploys a loaded spec set. Blocking (compiles modules).
    pub fn deploy(&self, loaded: LoadReport) -> PassReport {
        let _one_at_a_time = self.deploying.lock().expect("deploy lock");
        let old = self.registry.current();
        let mut report = PassReport { errors: loaded.errors, ..PassReport::default() };

        let mut tenant_gates = HashMap::new();
        let mut tenant_keys = HashMap::new();
        let mut tenant_cors = HashMap::new();
        for tenant in loaded.state.tenants.values() {
            tenant_keys.insert(tenant.name.clone(), DeployedKey::all(&tenant.api_keys));
            if let Some(policy) = &tenant.cors {
                tenant_cors.insert(tenant.name.clone(), edge::cors::layer(policy));
            }
            let quotas = &tenant.quotas;
            let limits = GateLimits {
                max_concurrency: quotas.max_concurrency,
                max_queue: quotas.max_queue,
                requests_per_second: quotas.requests_per_second.and_then(NonZeroU32::new),
            };
            let gate = match old.tenant_gate(&tenant.name) {
                Some(gate) if gate.has_limits(&limits) => gate.clone(),
                _ => Arc::new(Gate::new(limits)),
            };
            tenant_gates.insert(tenant.name.clone(), gate);
        }

        let mut functions = HashMap::new();
        let mut failures = BTreeMap::new();
        for (id, spec) in loaded.state.functions {
            let previous = old.get(&id);
            if let Some(previous) = previous
                && previous.spec.revision == spec.revision
                && tenant_gates.get(&id.tenant).is_some_and(|g| Arc::ptr_eq(g, &previous.tenant_gate))
            {
                report.unchanged += 1;
                functions.insert(id, previous.clone());
                continue;
            }
            let tenant_gate = tenant_gates[&id.tenant].clone();
            match self.prepare(spec, previous, tenant_gate) {
                Ok(deployed) => {
                    report.deployed.push(id.clone());
                    functions.insert(id, Arc::new(deployed));
                }
                Err(error) => {
                    self.runtime.metrics().deploy_failed(&id.tenant);
                    failures.insert(id.clone(), error.message.clone());
                    report.errors.push(error);
                    if let Some(previous) = previous {
                        functions.insert(id, previous.clone());
                    }
                }
            }
        }

        let keep_missing = !report.errors.is_empty();
        for (id, deployed) in old.functions().map(|d| ((*d.id).clone(), d)) {
            if functions.contains_key(&id) {
                continue;
            }
            if keep_missing {
                functions.insert(id, deployed.clone());
                if let Some(gate) = old.tenant_gate(&deployed.id.tenant) {
                    tenant_gates.entry(deployed.id.tenant.clone()).or_insert_with(|| gate.clone());
                }
                // A function kept stays behind its tenant's keys, and keeps its CORS policy.
                if let Some(keys) = old.tenant_keys(&deployed.id.tenant) {
                    tenant_keys.entry(deployed.id.tenant.clone()).or_insert_with(|| keys.clone());
                }
                if let Some(cors) = old.tenant_cors(&deployed.id.tenant)
                    && !loaded.state.tenants.contains_key(&deployed.id.tenant)
                {
                    tenant_cors.entry(deployed.id.tenant.clone()).or_insert_with(|| cors.clone());
                }
            } else {
                report.removed.push(id);
            }
        }

        let registry = Registry::new(functions, tenant_gates)
            .with_keys(tenant_keys)
            .with_cors(tenant_cors)
            .with_failures(failures);
        self.runtime.retain_modules(&|sha| registry.functions().any(|d| d.spec.module.sha256 == sha));
        self.registry.publish(registry);
        report
    }

    fn prepare(
        &self,
        spec: Function,
        previous: Option<&Arc<Deployed>>,
        tenant_gate: Arc<Gate>,
    ) -> Result<Deployed, SpecError> {
        let prepared = self
            .runtime
            .prepare(&spec.module.sha256, &spec.module.bytes, spec.limits.memory)
            .map_err(|e| module_error(&spec.source, &spec.module.path, e))?;
        let id = Arc::new(spec.id.clone());
        let capabilities = Capabilities::configure(id.clone(), &spec.grants, &self.backends)
            .map_err(|problems| SpecError::field(spec.source.clone(), "spec.grants", problems))?;
        let env = self
            .secrets
            .resolve(&spec.id, &spec.env)
            .map_err(|e| SpecError::field(spec.source.clone(), "spec.env", e.to_string()))?;
        let limits = GateLimits {
            max_concurrency: spec.limits.max_concurrency,
            max_queue: spec.limits.max_queue,
            requests_per_second: spec.limits.requests_per_second,
        };
        let gate = match previous {
            Some(p) if p.gate.has_limits(&limits) => p.gate.clone(),
            _ => Arc::new(Gate::new(limits)),
        };
        Ok(Deployed {
            id,
            env: env.into(),
            prepared,
            capabilities: Arc::new(capabilities),
            gate,
            tenant_gate,
            spec,
        })
    }
}

/// The applied state's marker (commit and digest); default when nothing was applied yet.
async fn read_meta(state: &State) -> Result<AppliedMeta, StateError> {
    let records = state.control.records(APPLIED_META).await?;
    Ok(records.get(APPLIED_META).and_then(|raw| serde_json::from_slice(raw).ok()).unwrap_or_default())
}

fn module_error(at: &Location, path: &str, error: crate::runtime::RuntimeError) -> SpecError {
    SpecError::field(at.clone(), "spec.module", format!("{path:?}: {error}"))
}
