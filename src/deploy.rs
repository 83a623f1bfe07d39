//! Turns a loaded spec directory into a new [`Registry`]: unchanged revisions are kept as they
//! are, changed ones are compiled and prepared, and the registry is swapped atomically. A
//! function whose new revision cannot be prepared keeps serving its previous one, and nothing is
//! removed while any spec document is invalid, so a bad push loses nothing.

use crate::config::NodeConfig;
use crate::edge::admission::Gate;
use crate::host::{Backends, Capabilities};
use crate::registry::{Deployed, Registry};
use crate::runtime::Runtime;
use crate::spec::{DesiredState, Function, FunctionId, LoadReport, Location, SpecError};
use crate::state::{State, TenantResources};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The outcome of one deploy, for logs and status.
#[derive(Debug, Default)]
pub struct DeployReport {
    pub deployed: Vec<FunctionId>,
    pub unchanged: usize,
    pub removed: Vec<FunctionId>,
    pub errors: Vec<SpecError>,
}

pub struct Deployer {
    config: Arc<NodeConfig>,
    runtime: Arc<Runtime>,
    state: State,
    /// What host capabilities are built from: state, tenants' databases, egress.
    backends: Backends,
    current: ArcSwap<Registry>,
    /// Serializes deploys; the registry itself is read lock-free.
    deploying: Mutex<()>,
    /// Counts deploys; subscribers learn that the registry changed.
    deployed: tokio::sync::watch::Sender<u64>,
}

impl Deployer {
    pub fn new(config: Arc<NodeConfig>, runtime: Arc<Runtime>, state: State) -> Self {
        Self {
            backends: Backends::new(state.clone(), &config),
            config,
            runtime,
            state,
            current: ArcSwap::from_pointee(Registry::default()),
            deploying: Mutex::new(()),
            deployed: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Changes after every deploy; read [`Deployer::registry`] then.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.deployed.subscribe()
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.current.load_full()
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn specs(&self) -> &Path {
        &self.config.specs
    }

    /// The node configuration this deployer serves with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Loads the spec directory, provisions its tenants' state and deploys its functions.
    pub async fn reload(self: &Arc<Self>) -> DeployReport {
        let this = self.clone();
        let loaded = tokio::task::spawn_blocking(move || crate::spec::load_dir(this.specs()))
            .await
            .expect("loading specs panicked");
        let provisioning = self.provision(&loaded.state).await;
        let this = self.clone();
        let mut report =
            tokio::task::spawn_blocking(move || this.deploy(loaded)).await.expect("deploying panicked");
        report.errors.extend(provisioning);
        report
    }

    /// Ensures every tenant's state resources exist with its settings (idempotent).
    async fn provision(&self, desired: &DesiredState) -> Vec<SpecError> {
        let mut errors = Vec::new();
        for tenant in desired.tenants.values() {
            let resources = TenantResources {
                name: tenant.name.clone(),
                replicas: tenant.replicas,
                kv_max_bytes: tenant.quotas.kv_max_bytes,
            };
            if let Err(e) = self.state.provisioner.ensure_tenant(&resources).await {
                errors.push(SpecError::new(
                    tenant.source.clone(),
                    format!("provisioning tenant {}: {e}", tenant.name),
                ));
            }
        }
        errors
    }

    /// Deploys a loaded spec set. Blocking (compiles modules).
    pub fn deploy(&self, loaded: LoadReport) -> DeployReport {
        let _one_at_a_time = self.deploying.lock().expect("deploy lock");
        let old = self.current.load_full();
        let mut report = DeployReport { errors: loaded.errors, ..DeployReport::default() };

        let mut tenant_gates = HashMap::new();
        for tenant in loaded.state.tenants.values() {
            let (concurrency, queue) = (tenant.quotas.max_concurrency, tenant.quotas.max_queue);
            let gate = match old.tenant_gate(&tenant.name) {
                Some(gate) if gate.has_limits(concurrency, queue) => gate.clone(),
                _ => Arc::new(Gate::new(concurrency, queue)),
            };
            tenant_gates.insert(tenant.name.clone(), gate);
        }

        let mut functions = HashMap::new();
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
            } else {
                report.removed.push(id);
            }
        }

        let registry = Registry::new(functions, tenant_gates);
        self.runtime.retain_modules(&|sha| registry.functions().any(|d| d.spec.module.sha256 == sha));
        self.current.store(Arc::new(registry));
        self.deployed.send_modify(|count| *count += 1);
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
        let limits = &spec.limits;
        let gate = match previous {
            Some(p) if p.gate.has_limits(limits.max_concurrency, limits.max_queue) => p.gate.clone(),
            _ => Arc::new(Gate::new(limits.max_concurrency, limits.max_queue)),
        };
        Ok(Deployed {
            id,
            env: spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            prepared,
            capabilities: Arc::new(capabilities),
            gate,
            tenant_gate,
            spec,
        })
    }
}

fn module_error(at: &Location, path: &str, error: crate::runtime::RuntimeError) -> SpecError {
    SpecError::field(at.clone(), "spec.module", format!("{path:?}: {error}"))
}

/// Logs a deploy's outcome, one line per change and per error.
pub fn log_report(report: &DeployReport) {
    for id in &report.deployed {
        tracing::info!(function = %id, "deployed");
    }
    for id in &report.removed {
        tracing::info!(function = %id, "removed");
    }
    for error in &report.errors {
        tracing::error!("invalid spec: {error}");
    }
    if !report.errors.is_empty() {
        tracing::warn!(
            errors = report.errors.len(),
            "functions of invalid documents keep their previous revision"
        );
    }
}
