//! Keeps this node serving what the state backend says is applied. A pass first reconciles
//! (reads the spec source, admits and applies it; only the node holding the reconcile lease
//! does this), then deploys the applied records into a new [`Registry`]: unchanged revisions are
//! kept as they are, changed ones are compiled and prepared, and the registry is swapped
//! atomically. A function whose new revision cannot be prepared keeps serving its previous one,
//! and nothing is removed while any spec document is invalid, so a bad push loses nothing.
//! Nodes that do not hold the lease follow: they redeploy whenever the applied state changes.

use crate::config::NodeConfig;
use crate::gate::Gate;
use crate::host::{Backends, Capabilities};
use crate::metrics::ReconcileResult;
use crate::reconcile::desired::{APPLIED_META, APPLIED_PREFIX, Record, state_from_records};
use crate::reconcile::source::Source;
use crate::reconcile::status::AppliedMeta;
use crate::reconcile::{Admitted, ApplyReport, Reconciler};
use crate::registry::{Deployed, Registry};
use crate::runtime::Runtime;
use crate::secrets::Secrets;
use crate::spec::{Function, FunctionId, LoadReport, Location, SpecError};
use crate::state::{State, StateError};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The lease that makes one node of a cluster (or one `gojinn apply`) the reconciler.
pub const RECONCILE_LEASE: &str = "reconcile";
/// The shortest reconcile lease: a leader that stops renewing is replaced after this long.
const MIN_LEASE: Duration = Duration::from_secs(30);

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
    reconciler: Reconciler,
    /// This node's name as a lease holder: host name, process id and a random suffix.
    holder: String,
    current: ArcSwap<Registry>,
    /// Serializes passes (watcher, poll, webhook, follow).
    passing: tokio::sync::Mutex<()>,
    /// The applied state last deployed, so a follower redeploys only when it changes.
    deployed_meta: Mutex<Option<AppliedMeta>>,
    /// Serializes deploys; the registry itself is read lock-free.
    deploying: Mutex<()>,
    /// The functions the last deploy could not prepare, with the error: status shows them failed.
    failures: Mutex<BTreeMap<FunctionId, String>>,
    /// Counts deploys; subscribers learn that the registry changed.
    deployed: tokio::sync::watch::Sender<u64>,
    /// Wakes the reconcile loop for a pass (webhook, spec watcher).
    pass_requested: tokio::sync::Notify,
}

impl Deployer {
    pub fn new(config: Arc<NodeConfig>, runtime: Arc<Runtime>, state: State) -> Self {
        let suffix: u32 = rand::random();
        let host = crate::audit::recorder::host_name();
        Self {
            backends: Backends::new(state.clone(), &config.data_dir, config.egress.clone()),
            reconciler: Reconciler::new(state.clone()),
            holder: format!("{host}-{}-{suffix:08x}", std::process::id()),
            config,
            runtime,
            state,
            current: ArcSwap::from_pointee(Registry::default()),
            passing: tokio::sync::Mutex::new(()),
            deployed_meta: Mutex::new(None),
            deploying: Mutex::new(()),
            failures: Mutex::new(BTreeMap::new()),
            deployed: tokio::sync::watch::Sender::new(0),
            pass_requested: tokio::sync::Notify::new(),
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

    /// The node configuration this deployer serves with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Where this node reads specs from.
    pub fn source(&self) -> Source {
        match &self.config.reconcile.git {
            Some(url) => Source::Git { url: url.clone(), reference: self.config.reconcile.reference.clone() },
            None => Source::Dir(self.config.specs.clone()),
        }
    }

    /// The functions this node's last deploy could not prepare (their module does not load
    /// here), with the error.
    pub fn node_failures(&self) -> BTreeMap<FunctionId, String> {
        self.failures.lock().expect("deploy failures").clone()
    }

    /// Asks the reconcile loop for a pass soon; requests made while one is pending are one pass.
    pub fn request_pass(&self) {
        self.pass_requested.notify_one();
    }

    /// Waits for [`Deployer::request_pass`].
    pub async fn pass_requested(&self) {
        self.pass_requested.notified().await;
    }

    /// One pass: reconcile the source into the state backend if this node holds the reconcile
    /// lease, then deploy what is applied.
    pub async fn reload(self: &Arc<Self>) -> DeployReport {
        let _one_pass = self.passing.lock().await;
        let mut errors = Vec::new();
        let mut admitted = None;
        let metrics = self.runtime.metrics();
        match self.lead().await {
            Ok(true) => match self.reconcile().await {
                Ok((read, report)) => {
                    metrics.reconciled(pass_result(&read, &report));
                    errors.extend(pass_errors(&read, &report));
                    admitted = Some(read);
                }
                Err(e) => {
                    metrics.reconciled(ReconcileResult::Failed);
                    errors.push(SpecError::new(self.source_location(), e.to_string()));
                }
            },
            Ok(false) => tracing::debug!("another node holds the reconcile lease; following it"),
            Err(e) => errors.push(SpecError::new(self.source_location(), format!("reconcile lease: {e}"))),
        }
        self.deploy_applied(admitted.as_ref(), errors).await
    }

    /// Redeploys if the applied state changed since the last deploy (another node applied).
    pub async fn follow(self: &Arc<Self>) -> Option<DeployReport> {
        let _one_pass = self.passing.lock().await;
        let meta = read_meta(&self.state).await.ok()?;
        if self.deployed_meta.lock().expect("deployed meta").as_ref() == Some(&meta) {
            return None;
        }
        Some(self.deploy_applied(None, Vec::new()).await)
    }

    /// Takes or renews the reconcile lease.
    async fn lead(&self) -> Result<bool, StateError> {
        let ttl = (self.config.reconcile.interval.0 * 3).max(MIN_LEASE);
        self.state.control.acquire_lease(RECONCILE_LEASE, &self.holder, ttl).await
    }

    /// Reads, admits and applies the spec source.
    async fn reconcile(
        self: &Arc<Self>,
    ) -> Result<(Admitted, ApplyReport), crate::reconcile::ReconcileError> {
        let this = self.clone();
        let admitted = tokio::task::spawn_blocking(move || {
            let source = this.source();
            let defaults =
                this.config.reconcile.default_policies.unwrap_or(matches!(source, Source::Git { .. }));
            let mut admitted = Admitted::read(&source, &this.config.data_dir.join("sources"), defaults)?;
            // Apply only what this node's runtime can serve, so the applied commit is served.
            let serving = this.registry();
            admitted.check_modules(|f| {
                if serving.get(&f.id).is_some_and(|d| d.spec.revision == f.revision) {
                    return Ok(());
                }
                let prepared = this.runtime.prepare(&f.module.sha256, &f.module.bytes, f.limits.memory);
                prepared.map(drop).map_err(|e| {
                    this.runtime.metrics().deploy_failed(&f.id.tenant);
                    e.to_string()
                })
            });
            Ok::<_, crate::reconcile::ReconcileError>(admitted)
        })
        .await
        .expect("reading specs panicked")?;
        let report = self.reconciler.apply(&admitted).await?;
        if !report.plan.is_empty() {
            tracing::info!(
                commit = admitted.desired.commit.as_deref().unwrap_or("-"),
                changes = report.plan.changes.len(),
                writes = report.writes,
                "applied"
            );
        }
        Ok((admitted, report))
    }

    fn source_location(&self) -> Location {
        match self.source() {
            Source::Dir(dir) => Location::file(dir),
            git => Location::file(PathBuf::from(git.to_string())),
        }
    }

    /// Deploys the applied records. Module bytes come from the specs just read, the running
    /// registry, or the backend's blobs, in that order.
    async fn deploy_applied(
        self: &Arc<Self>,
        read: Option<&Admitted>,
        mut errors: Vec<SpecError>,
    ) -> DeployReport {
        let applied = async {
            let meta = read_meta(&self.state).await?;
            let records = self.state.control.records(APPLIED_PREFIX).await?;
            Ok::<_, StateError>((meta, records))
        };
        let (meta, raw) = match applied.await {
            Ok(applied) => applied,
            Err(e) => {
                errors
                    .push(SpecError::new(self.source_location(), format!("reading the applied state: {e}")));
                return DeployReport { errors, ..DeployReport::default() };
            }
        };
        let records: Vec<Record> =
            raw.values().filter_map(|value| serde_json::from_slice(value).ok()).collect();
        let registry = self.registry();
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
                        errors
                            .push(SpecError::new(self.source_location(), format!("module blob {sha}: {e}")));
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
        tokio::task::spawn_blocking(move || this.deploy(LoadReport { state, errors }))
            .await
            .expect("deploying panicked")
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
            } else {
                report.removed.push(id);
            }
        }

        let registry = Registry::new(functions, tenant_gates);
        self.runtime.retain_modules(&|sha| registry.functions().any(|d| d.spec.module.sha256 == sha));
        self.current.store(Arc::new(registry));
        *self.failures.lock().expect("deploy failures") = failures;
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
        let env = Secrets::new(&self.config.secrets, &self.config.data_dir)
            .resolve(&spec.id.tenant, &spec.env)
            .map_err(|e| SpecError::field(spec.source.clone(), "spec.env", e.to_string()))?;
        let limits = &spec.limits;
        let gate = match previous {
            Some(p) if p.gate.has_limits(limits.max_concurrency, limits.max_queue) => p.gate.clone(),
            _ => Arc::new(Gate::new(limits.max_concurrency, limits.max_queue)),
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

/// How a pass that ran went, for `gojinn_reconciles_total`.
fn pass_result(admitted: &Admitted, report: &ApplyReport) -> ReconcileResult {
    if !admitted.is_clean() || report.failures().next().is_some() {
        ReconcileResult::Partial
    } else if report.plan.is_empty() {
        ReconcileResult::Unchanged
    } else {
        ReconcileResult::Applied
    }
}

/// A pass's problems as spec errors: invalid documents, denials, modules that do not load,
/// failed resources.
fn pass_errors(admitted: &Admitted, report: &ApplyReport) -> Vec<SpecError> {
    let mut errors = admitted.invalid.clone();
    errors.extend(admitted.denials.iter().map(|d| {
        SpecError::new(
            Location::file(d.resource.clone().into()),
            format!("denied by {}: {}", d.policy, d.message),
        )
    }));
    errors.extend(
        admitted
            .unloadable
            .iter()
            .map(|(id, e)| SpecError::new(Location::file(id.to_string().into()), e.clone())),
    );
    errors.extend(
        report.failures().map(|(id, e)| SpecError::new(Location::file(id.to_string().into()), e.to_string())),
    );
    errors
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
