//! Resolves parsed documents into the normalized desired state: defaults applied, references
//! and quotas checked, module files read (binary WebAssembly only) and their sha256 verified,
//! routes checked against their tenant's namespace and grants and for conflicts, and a revision
//! hash per function that changes whenever anything the function runs with changes.

use super::bounds::Bounds;
use super::cors::Cors;
use super::files::SpecRoot;
use super::load::{Document, load_documents};
use super::names::{FunctionId, Name};
use super::quantity::ByteSize;
use super::routes::Ownership;
use super::types::*;
use super::{Location, SpecError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

/// Largest module file accepted.
pub const MAX_MODULE_BYTES: u64 = 128 << 20;
/// The first bytes of every binary WebAssembly module.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

pub const DEFAULT_MEMORY: u64 = 64 << 20;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 20;
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;
pub const DEFAULT_FUNCTION_CONCURRENCY: u32 = 32;
pub const DEFAULT_FUNCTION_QUEUE: u32 = 64;
pub const DEFAULT_TENANT_CONCURRENCY: u32 = 64;
pub const DEFAULT_TENANT_QUEUE: u32 = 256;
/// The highest `requestsPerSecond` a tenant or function may set: a token every microsecond.
pub const MAX_REQUESTS_PER_SECOND: u32 = 1_000_000;
/// A tenant's KV data when its spec sets no `quotas.kvMaxBytes`: room for 64 of the largest
/// (1 MiB) values or a few hundred thousand small ones, while a runaway guest cannot fill the
/// node's disk. On NATS, JetStream reserves a bucket's limit against the server's file store.
pub const DEFAULT_KV_MAX_BYTES: u64 = 64 << 20;
/// A tenant's KV keys when its spec sets no `quotas.kvMaxKeys`: every key costs index memory
/// beside its bytes (a subject in the NATS server's per-subject state, a row the embedded
/// backend's listing walks), and 100,000 keys fill the default 64 MiB at about 670 bytes each,
/// so a tenant of small values meets this bound first and can no longer fill a server's memory
/// with millions of tiny keys.
pub const DEFAULT_KV_MAX_KEYS: u32 = 100_000;

/// Everything the specs ask for, normalized. BTreeMaps keep iteration and serialization stable.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DesiredState {
    pub tenants: BTreeMap<Name, Tenant>,
    pub functions: BTreeMap<FunctionId, Function>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub name: Name,
    pub replicas: u8,
    pub quotas: TenantQuotas,
    pub api_keys: Vec<ApiKey>,
    /// `spec.routePrefixes`: where the tenant's functions may declare routes besides
    /// `/{tenant}/...`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_prefixes: Vec<RoutePrefix>,
    /// `spec.cors`, normalized; absent: no cross-origin calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// `metadata.keep`: never pruned once applied.
    #[serde(skip)]
    pub keep: bool,
    #[serde(skip)]
    pub source: Location,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantQuotas {
    pub max_concurrency: u32,
    pub max_queue: u32,
    pub requests_per_second: Option<u32>,
    pub max_memory: Option<u64>,
    /// Always set by [`resolve`] ([`DEFAULT_KV_MAX_BYTES`] unless the spec says); `None` only in
    /// records applied by older versions, which had no default.
    pub kv_max_bytes: Option<u64>,
    /// Always set by [`resolve`] ([`DEFAULT_KV_MAX_KEYS`] unless the spec says); `None` only in
    /// records applied by older versions, which had no such quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_keys: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Function {
    pub id: FunctionId,
    pub module: ModuleBlob,
    pub routes: Vec<Route>,
    pub limits: FunctionLimits,
    pub env: BTreeMap<String, EnvValue>,
    pub grants: Grants,
    pub jobs: Option<Jobs>,
    pub mcp: Option<Mcp>,
    /// sha256 over everything above: two functions with the same revision run identically.
    pub revision: String,
    /// `metadata.keep`: never pruned once applied. Not part of the revision.
    #[serde(skip)]
    pub keep: bool,
    #[serde(skip)]
    pub source: Location,
}

/// A module's bytes, shared, with their sha256.
#[derive(Clone, Serialize, Deserialize)]
pub struct ModuleBlob {
    pub path: String,
    pub sha256: String,
    /// Whether the spec pinned `sha256` (rather than it being computed from the file).
    #[serde(skip)]
    pub pinned: bool,
    #[serde(skip)]
    pub bytes: Arc<[u8]>,
}

impl std::fmt::Debug for ModuleBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModuleBlob({}, sha256 {}, {} bytes)", self.path, self.sha256, self.bytes.len())
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionLimits {
    pub memory: u64,
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// CPU time a call may use; `None`: no limit but `timeout`. Left out of the revision's JSON
    /// when absent, so revisions from before it existed keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_millis")]
    pub cpu: Option<Duration>,
    pub max_output: u64,
    pub max_body: u64,
    pub max_concurrency: u32,
    pub max_queue: u32,
    /// `None`: no rate limit but the tenant's. Left out of the revision's JSON when absent, so
    /// revisions from before it existed keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<NonZeroU32>,
}

mod optional_millis {
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        de: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(de)?.map(std::time::Duration::from_millis))
    }
}

mod millis {
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(de: D) -> Result<std::time::Duration, D::Error> {
        u64::deserialize(de).map(std::time::Duration::from_millis)
    }
}

/// The outcome of loading a spec directory: what is valid, and an error per invalid resource.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub state: DesiredState,
    pub errors: Vec<SpecError>,
}

impl LoadReport {
    /// All errors, one per line, in file order.
    pub fn error_text(&self) -> String {
        self.errors.iter().map(|e| format!("{e}\n")).collect()
    }
}

/// Loads and resolves every spec under `root`, within the node's `bounds`.
pub fn load_dir(root: &Path, bounds: &Bounds) -> LoadReport {
    let (docs, mut errors) = load_documents(root, bounds);
    let (state, resolve_errors) = resolve(root, docs, bounds);
    errors.extend(resolve_errors);
    errors.sort_by(|a, b| (&a.location.file, a.location.line).cmp(&(&b.location.file, b.location.line)));
    LoadReport { state, errors }
}

/// Resolves documents into the desired state, within the node's `bounds` (documents past one
/// are invalid, counted in order). Module paths are relative to `root`.
pub fn resolve(root: &Path, docs: Vec<Document>, bounds: &Bounds) -> (DesiredState, Vec<SpecError>) {
    let mut state = DesiredState::default();
    let mut errors = Vec::new();
    let mut function_docs = Vec::new();
    // Every tenant a document names, valid or not: its `/{tenant}/...` is its own either way.
    let mut defined = BTreeMap::new();
    // Which tenant each API key digest opens: the first tenant to list it.
    let mut key_owners: BTreeMap<super::types::Sha256Hex, Name> = BTreeMap::new();
    for doc in docs {
        match doc {
            Document::Tenant(doc, at) => {
                // Valid or not, each tenant named takes its place, in file order.
                let admitted = match defined.contains_key(&doc.metadata.name) {
                    true => Ok(()),
                    false => bounds.tenant(defined.len(), &at).map_err(|e| vec![e]),
                };
                defined.entry(doc.metadata.name.clone()).or_insert_with(|| at.clone());
                let resource = super::tenant_resource(&doc.metadata.name);
                match admitted.and_then(|()| resolve_tenant(doc, at, bounds.default_replicas)) {
                    Ok(tenant) => match state.tenants.get(&tenant.name) {
                        Some(first) => errors.push(SpecError::field(
                            tenant.source.clone(),
                            "metadata.name",
                            format!("tenant {} is already defined at {}", tenant.name, first.source),
                        )),
                        None => match claim_keys(&tenant, &mut key_owners) {
                            Ok(()) => {
                                state.tenants.insert(tenant.name.clone(), tenant);
                            }
                            Err(error) => errors.push(error.about(resource)),
                        },
                    },
                    Err(problems) => errors.extend(problems.into_iter().map(|e| e.about(resource.clone()))),
                }
            }
            Document::Function(doc, at) => function_docs.push((*doc, at)),
        }
    }
    let ownership = Ownership::admit(&mut state.tenants, &defined, &mut errors);
    let spec_root = SpecRoot::open(root).map_err(|e| format!("cannot read the spec directory: {e}"));
    let mut routes = RouteTable::default();
    // Each module's bytes once, however many functions run it.
    let mut modules: BTreeMap<String, Arc<[u8]>> = BTreeMap::new();
    let mut functions_of: BTreeMap<Name, usize> = BTreeMap::new();
    for (doc, at) in function_docs {
        let id = FunctionId { tenant: doc.metadata.tenant.clone(), function: doc.metadata.name.clone() };
        let resource = super::function_resource(&id.tenant, &id.function);
        if let Some(first) = state.functions.get(&id) {
            errors.push(SpecError::field(
                at,
                "metadata.name",
                format!("function {id} is already defined at {}", first.source),
            ));
            continue;
        }
        let Some(tenant) = state.tenants.get(&id.tenant) else {
            let message = match defined.get(&id.tenant) {
                Some(defined_at) => format!("tenant {:?} is invalid (see {defined_at})", id.tenant.as_str()),
                None => format!("tenant {:?} is not defined by any Tenant document", id.tenant.as_str()),
            };
            errors.push(SpecError::field(at, "metadata.tenant", message).about(resource));
            continue;
        };
        let functions = functions_of.entry(id.tenant.clone()).or_default();
        if let Err(error) = bounds.function(id.tenant.as_str(), *functions, &at) {
            errors.push(error.about(resource));
            continue;
        }
        // Valid or not, a function takes its place: fixing an earlier document never pushes a
        // later one out.
        *functions += 1;
        let resolved = resolve_function(&spec_root, id, doc, at, tenant, bounds).and_then(|f| {
            ownership.check_routes(&f, tenant).map_err(|e| vec![e])?;
            routes.claim(f).map_err(|e| vec![e])
        });
        match resolved {
            Ok(mut function) => {
                let module = &mut function.module;
                module.bytes =
                    modules.entry(module.sha256.clone()).or_insert_with(|| module.bytes.clone()).clone();
                state.functions.insert(function.id.clone(), function);
            }
            Err(problems) => errors.extend(problems.into_iter().map(|e| e.about(resource.clone()))),
        }
    }
    (state, errors)
}

fn resolve_tenant(doc: TenantDoc, at: Location, default_replicas: u8) -> Result<Tenant, Vec<SpecError>> {
    let quotas = doc.spec.quotas;
    let mut problems = Vec::new();
    let requests_per_second = per_second(quotas.requests_per_second, &at, "spec.quotas.requestsPerSecond")
        .map_err(|e| problems.push(e));
    let api_keys = api_keys(doc.spec.api_keys, &at).map_err(|e| problems.extend(e));
    let cors = doc.spec.cors.map(|cors| (*cors).checked(&at)).transpose().map_err(|e| problems.extend(e));
    let max_concurrency =
        positive(quotas.max_concurrency, DEFAULT_TENANT_CONCURRENCY, &at, "spec.quotas.maxConcurrency")
            .map_err(|e| problems.push(e));
    let kv_max_keys = positive(quotas.kv_max_keys, DEFAULT_KV_MAX_KEYS, &at, "spec.quotas.kvMaxKeys")
        .map_err(|e| problems.push(e));
    let (Ok(max_concurrency), Ok(kv_max_keys), Ok(requests_per_second), Ok(api_keys), Ok(cors)) =
        (max_concurrency, kv_max_keys, requests_per_second, api_keys, cors)
    else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Tenant {
        name: doc.metadata.name,
        replicas: doc.spec.replicas.map_or(default_replicas, |replicas| replicas.0),
        quotas: TenantQuotas {
            max_concurrency,
            max_queue: quotas.max_queue.unwrap_or(DEFAULT_TENANT_QUEUE),
            requests_per_second: requests_per_second.map(NonZeroU32::get),
            max_memory: quotas.max_memory.map(ByteSize::bytes),
            kv_max_bytes: Some(quotas.kv_max_bytes.map_or(DEFAULT_KV_MAX_BYTES, ByteSize::bytes)),
            kv_max_keys: Some(kv_max_keys),
        },
        api_keys,
        route_prefixes: doc.spec.route_prefixes,
        cors,
        keep: doc.metadata.keep,
        source: at,
    })
}

/// Records `tenant`'s API key digests as its own, unless another tenant listed one of them
/// first: a key opens one tenant, so the later tenant is invalid, naming the key and the other.
fn claim_keys(
    tenant: &Tenant,
    owners: &mut BTreeMap<super::types::Sha256Hex, Name>,
) -> Result<(), SpecError> {
    for (i, key) in tenant.api_keys.iter().enumerate() {
        if let Some(owner) = owners.get(&key.sha256).filter(|owner| **owner != tenant.name) {
            let message = format!("tenant {owner} lists the same digest: a key opens one tenant");
            let field = format!("spec.apiKeys[{i}].sha256");
            return Err(SpecError::field(tenant.source.clone(), &field, message));
        }
    }
    for key in &tenant.api_keys {
        owners.insert(key.sha256.clone(), tenant.name.clone());
    }
    Ok(())
}

/// A tenant's `apiKeys`, normalized: at most [`MAX_API_KEYS`], names unique, no digest twice,
/// and each key's scopes listed in full (every scope when the spec names none), sorted, once.
fn api_keys(keys: Vec<ApiKey>, at: &Location) -> Result<Vec<ApiKey>, Vec<SpecError>> {
    if keys.len() > MAX_API_KEYS {
        let message = format!("at most {MAX_API_KEYS} keys, not {}", keys.len());
        return Err(vec![SpecError::field(at.clone(), "spec.apiKeys", message)]);
    }
    let mut problems = Vec::new();
    let mut normalized: Vec<ApiKey> = Vec::with_capacity(keys.len());
    for (i, mut key) in keys.into_iter().enumerate() {
        let field = |name: &str| format!("spec.apiKeys[{i}].{name}");
        if normalized.iter().any(|earlier| earlier.name == key.name) {
            let message = format!("{} names another key too: key names are unique within a tenant", key.name);
            problems.push(SpecError::field(at.clone(), &field("name"), message));
        }
        if let Some(earlier) = normalized.iter().find(|earlier| earlier.sha256 == key.sha256) {
            let message = format!("the same digest as key {}: one key, listed once", earlier.name);
            problems.push(SpecError::field(at.clone(), &field("sha256"), message));
        }
        let mut scopes = key.scopes.take().unwrap_or_else(|| Scope::ALL.to_vec());
        if scopes.is_empty() {
            let message = "names no scope: leave it out for every scope, or list one or more of \
                           invoke, jobs, receipts, mcp";
            problems.push(SpecError::field(at.clone(), &field("scopes"), message.into()));
        }
        scopes.sort_unstable();
        scopes.dedup();
        key.scopes = Some(scopes);
        normalized.push(key);
    }
    if problems.is_empty() { Ok(normalized) } else { Err(problems) }
}

/// A `requestsPerSecond`: absent, or 1 to [`MAX_REQUESTS_PER_SECOND`].
fn per_second(value: Option<u32>, at: &Location, field: &str) -> Result<Option<NonZeroU32>, SpecError> {
    match value {
        Some(n) if n > MAX_REQUESTS_PER_SECOND => {
            Err(SpecError::field(at.clone(), field, format!("must be at most {MAX_REQUESTS_PER_SECOND}")))
        }
        Some(n) => NonZeroU32::new(n)
            .map(Some)
            .ok_or_else(|| SpecError::field(at.clone(), field, "must be at least 1".into())),
        None => Ok(None),
    }
}

fn positive(value: Option<u32>, default: u32, at: &Location, field: &str) -> Result<u32, SpecError> {
    match value {
        Some(0) => Err(SpecError::field(at.clone(), field, "must be at least 1".into())),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

fn resolve_function(
    root: &Result<SpecRoot, String>,
    id: FunctionId,
    doc: FunctionDoc,
    at: Location,
    tenant: &Tenant,
    bounds: &Bounds,
) -> Result<Function, Vec<SpecError>> {
    let (spec, keep) = (doc.spec, doc.metadata.keep);
    let mut problems = Vec::new();
    let limits = resolve_limits(&spec.limits, &at, tenant, &mut problems);
    let env: BTreeMap<String, EnvValue> = spec.env.into_iter().map(|(k, v)| (k.0, v)).collect();
    bounds.function_spec(spec.routes.len(), &env, &at, &mut problems);
    // MCP tools take an object of arguments, so their schema must describe one; and it must
    // compile, or no call could be checked against it.
    if let Some(schema) = spec.mcp.as_ref().and_then(|mcp| mcp.input_schema.as_ref()) {
        let problem = if schema.get("type") != Some(&serde_json::Value::from("object")) {
            Some("must be a JSON Schema with `type: object` (tool arguments are an object)".to_owned())
        } else {
            super::ToolSchema::compile(schema).err()
        };
        if let Some(message) = problem {
            problems.push(SpecError::field(at.clone(), "spec.mcp.inputSchema", message));
        }
    }
    let module = read_module(root, &spec.module, &at).map_err(|e| problems.push(e));
    let Ok(module) = module else { return Err(problems) };
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut function = Function {
        id,
        module,
        routes: spec.routes,
        limits,
        env,
        grants: spec.grants,
        jobs: spec.jobs,
        mcp: spec.mcp,
        revision: String::new(),
        keep,
        source: at,
    };
    let canonical = serde_json::to_vec(&function).expect("function serializes to JSON");
    function.revision = hex::encode(Sha256::digest(canonical));
    Ok(function)
}

/// The function's limits with defaults applied; each problem is added to `problems` (and the
/// default used in its place).
fn resolve_limits(
    limits: &Limits,
    at: &Location,
    tenant: &Tenant,
    problems: &mut Vec<SpecError>,
) -> FunctionLimits {
    let default_memory = tenant.quotas.max_memory.map_or(DEFAULT_MEMORY, |max| max.min(DEFAULT_MEMORY));
    let memory = limits.memory.map_or(default_memory, ByteSize::bytes);
    if memory < 1 << 16 {
        problems.push(SpecError::field(
            at.clone(),
            "spec.limits.memory",
            "must be at least 64Ki (one wasm page)".into(),
        ));
    }
    if let Some(max) = tenant.quotas.max_memory
        && memory > max
    {
        problems.push(SpecError::field(
            at.clone(),
            "spec.limits.memory",
            format!("{memory} bytes exceeds tenant {}'s quota maxMemory of {max} bytes", tenant.name),
        ));
    }
    let max_concurrency =
        positive(limits.max_concurrency, DEFAULT_FUNCTION_CONCURRENCY, at, "spec.limits.maxConcurrency")
            .unwrap_or_else(|e| {
                problems.push(e);
                DEFAULT_FUNCTION_CONCURRENCY
            })
            .min(tenant.quotas.max_concurrency);
    if let Some(asked) = limits.max_concurrency
        && asked > tenant.quotas.max_concurrency
    {
        problems.push(SpecError::field(
            at.clone(),
            "spec.limits.maxConcurrency",
            format!(
                "{asked} exceeds tenant {}'s quota maxConcurrency of {}",
                tenant.name, tenant.quotas.max_concurrency
            ),
        ));
    }
    let requests_per_second = per_second(limits.requests_per_second, at, "spec.limits.requestsPerSecond")
        .unwrap_or_else(|e| {
            problems.push(e);
            None
        });
    if let (Some(asked), Some(quota)) = (requests_per_second, tenant.quotas.requests_per_second)
        && asked.get() > quota
    {
        problems.push(SpecError::field(
            at.clone(),
            "spec.limits.requestsPerSecond",
            format!("{asked} exceeds tenant {}'s quota requestsPerSecond of {quota}", tenant.name),
        ));
    }
    if limits.cpu.is_some_and(|cpu| cpu.0.is_zero()) {
        problems.push(SpecError::field(at.clone(), "spec.limits.cpu", "must be more than 0".into()));
    }
    FunctionLimits {
        memory,
        timeout: limits.timeout.map_or(DEFAULT_TIMEOUT, |s| s.0),
        cpu: limits.cpu.map(|s| s.0),
        max_output: limits.max_output.map_or(DEFAULT_MAX_OUTPUT, ByteSize::bytes),
        max_body: limits.max_body.map_or(DEFAULT_MAX_BODY, ByteSize::bytes),
        max_concurrency,
        max_queue: limits.max_queue.unwrap_or(DEFAULT_FUNCTION_QUEUE),
        requests_per_second,
    }
}

/// Reads the module file, which must stay inside the spec root and be binary WebAssembly, and
/// checks its sha256. Errors never quote the file's content.
fn read_module(
    root: &Result<SpecRoot, String>,
    module: &ModuleRef,
    at: &Location,
) -> Result<ModuleBlob, SpecError> {
    let field = "spec.module.path";
    let error = |message: String| SpecError::field(at.clone(), field, format!("{:?} {message}", module.path));
    let relative = Path::new(&module.path);
    if !relative.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(error("must be a relative path inside the spec directory".into()));
    }
    let root = root.as_ref().map_err(|e| error(e.clone()))?;
    let bytes = root
        .read(&root.path().join(relative), MAX_MODULE_BYTES)
        .map_err(|e| error(format!("cannot be read: {e}")))?;
    if !bytes.starts_with(WASM_MAGIC) {
        let first: Vec<String> = bytes.iter().take(WASM_MAGIC.len()).map(|b| format!("{b:02x}")).collect();
        return Err(error(format!(
            "is not a WebAssembly module (it starts with bytes [{}], not \\0asm; text-format .wat \
             modules are not accepted: compile them with wat2wasm)",
            first.join(" ")
        )));
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(expected) = &module.sha256
        && expected.0 != sha256
    {
        return Err(SpecError::field(
            at.clone(),
            "spec.module.sha256",
            format!("{:?} has sha256 {sha256}, but the spec expects {}", module.path, expected.0),
        ));
    }
    Ok(ModuleBlob { path: module.path.clone(), sha256, pinned: module.sha256.is_some(), bytes: bytes.into() })
}

/// Declared routes must not conflict; the first function (in file order) to claim a path keeps
/// it. (By the time routes are claimed each lies in its own tenant's namespace or grants, so
/// conflicts are between functions of one tenant.)
#[derive(Default)]
struct RouteTable {
    router: matchit::Router<(FunctionId, Location)>,
    /// Every route claimed so far, to rebuild the router after a refused claim.
    claimed: Vec<(String, (FunctionId, Location))>,
}

impl RouteTable {
    /// Inserts the function's routes; on a conflict, takes none of them. Inserting into the live
    /// router (rather than a copy per function) keeps loading thousands of functions linear; the
    /// router is rebuilt only when a claim is refused.
    fn claim(&mut self, function: Function) -> Result<Function, SpecError> {
        for (i, route) in function.routes.iter().enumerate() {
            let value = (function.id.clone(), function.source.clone());
            if let Err(e) = self.router.insert(route.path.0.clone(), value) {
                let message = match &e {
                    matchit::InsertError::Conflict { with } => {
                        let owner = self
                            .router
                            .at(with)
                            .map(|m| format!(" of {} ({})", m.value.0, m.value.1))
                            .unwrap_or_default();
                        format!("route {:?} conflicts with route {with:?}{owner}", route.path.0)
                    }
                    other => format!("route {:?} is not valid: {other}", route.path.0),
                };
                if i > 0 {
                    self.rebuild();
                }
                return Err(SpecError::field(function.source.clone(), "spec.routes", message));
            }
        }
        let owner = (function.id.clone(), function.source.clone());
        self.claimed.extend(function.routes.iter().map(|r| (r.path.0.clone(), owner.clone())));
        Ok(function)
    }

    fn rebuild(&mut self) {
        let mut router = matchit::Router::new();
        for (path, owner) in &self.claimed {
            router.insert(path.clone(), owner.clone()).expect("claimed routes do not conflict");
        }
        self.router = router;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_normalized_and_names_and_digests_unique() {
        let at = Location::file("acme.yaml".into());
        let key = |name: &str, digit: char, scopes: Option<Vec<Scope>>| ApiKey {
            name: Name::new(name).unwrap(),
            sha256: Sha256Hex(digit.to_string().repeat(64)),
            scopes,
        };
        let keys = api_keys(
            vec![key("all", '1', None), key("two", '2', Some(vec![Scope::Mcp, Scope::Jobs, Scope::Mcp]))],
            &at,
        )
        .unwrap();
        assert_eq!(keys[0].scopes, Some(Scope::ALL.to_vec()));
        assert_eq!(keys[1].scopes, Some(vec![Scope::Jobs, Scope::Mcp]));
        let messages = |keys| match api_keys(keys, &at) {
            Err(problems) => problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>(),
            Ok(keys) => panic!("accepted {keys:?}"),
        };
        assert_eq!(
            messages(vec![key("ci", '1', None), key("ci", '2', None), key("other", '1', Some(vec![]))]),
            [
                "spec.apiKeys[1].name: ci names another key too: key names are unique within a tenant",
                "spec.apiKeys[2].sha256: the same digest as key ci: one key, listed once",
                "spec.apiKeys[2].scopes: names no scope: leave it out for every scope, or list one or more \
                 of invoke, jobs, receipts, mcp",
            ]
        );
        let many: Vec<_> = (0..=MAX_API_KEYS).map(|i| key(&format!("k{i}"), 'a', None)).collect();
        assert_eq!(
            messages(many),
            [format!("spec.apiKeys: at most {MAX_API_KEYS} keys, not {}", MAX_API_KEYS + 1)]
        );
    }

    #[test]
    fn functions_that_run_the_same_module_share_one_copy_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wasm"), WASM_MAGIC).unwrap();
        let mut specs =
            String::from("apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: acme }\nspec: {}\n");
        for name in ["one", "two"] {
            specs.push_str(&format!(
                "---\napiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: {name}, tenant: acme }}\n\
                 spec: {{ module: {{ path: a.wasm }} }}\n"
            ));
        }
        std::fs::write(dir.path().join("specs.yaml"), specs).unwrap();
        let loaded = load_dir(dir.path(), &Bounds::default());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let bytes: Vec<_> = loaded.state.functions.values().map(|f| f.module.bytes.clone()).collect();
        assert_eq!(bytes.len(), 2);
        assert!(Arc::ptr_eq(&bytes[0], &bytes[1]), "one allocation for both functions");
    }

    #[test]
    fn a_tenant_without_replicas_gets_the_nodes_default() {
        let dir = tempfile::tempdir().unwrap();
        let specs = "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\nspec: {}\n---\n\
                     apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: b }\nspec: { replicas: 1 }\n";
        std::fs::write(dir.path().join("specs.yaml"), specs).unwrap();
        let replicas = |default_replicas| {
            let loaded = load_dir(dir.path(), &Bounds { default_replicas, ..Bounds::default() });
            assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
            loaded.state.tenants.values().map(|t| (t.name.to_string(), t.replicas)).collect::<Vec<_>>()
        };
        assert_eq!(replicas(1), [("a".into(), 1), ("b".into(), 1)]);
        assert_eq!(replicas(3), [("a".into(), 3), ("b".into(), 1)], "a spec's own replicas win");
    }

    #[test]
    fn tenants_and_functions_past_the_nodes_bounds_fail_alone_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wasm"), WASM_MAGIC).unwrap();
        let tenant = |name: &str| {
            format!(
                "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {name} }}\nspec: {{}}\n---\n"
            )
        };
        let function = |name: &str, tenant: &str| {
            format!(
                "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: {name}, tenant: {tenant} }}\n\
                 spec: {{ module: {{ path: a.wasm }} }}\n---\n"
            )
        };
        let specs = [tenant("a"), tenant("b"), tenant("c"), function("one", "a"), function("two", "a")];
        std::fs::write(dir.path().join("specs.yaml"), specs.concat()).unwrap();
        std::fs::write(dir.path().join("z.yaml"), function("three", "c")).unwrap();
        let bounds = Bounds { tenants: 2, functions_per_tenant: 1, ..Bounds::default() };
        let loaded = load_dir(dir.path(), &bounds);
        let tenants: Vec<&str> = loaded.state.tenants.keys().map(Name::as_str).collect();
        assert_eq!(tenants, ["a", "b"], "the tenants within the bound deploy");
        let functions: Vec<String> = loaded.state.functions.keys().map(ToString::to_string).collect();
        assert_eq!(functions, ["a/one"]);
        let errors: Vec<(Option<&str>, String)> =
            loaded.errors.iter().map(|e| (e.resource.as_deref(), e.to_string())).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert_eq!(errors[0].0, Some("tenant/c"));
        assert!(
            errors[0].1.starts_with(
                "specs.yaml:11: metadata.name: the node serves at most 2 tenants (limits.tenants)"
            ),
            "{errors:#?}"
        );
        assert_eq!(errors[1].0, Some("function/a/two"));
        assert!(
            errors[1].1.contains("metadata.tenant: tenant a has 1 functions before this one"),
            "{errors:#?}"
        );
        assert_eq!(errors[2].0, Some("function/c/three"));
        assert!(errors[2].1.contains("tenant \"c\" is invalid (see specs.yaml:11)"), "{errors:#?}");
    }

    #[test]
    fn a_cors_policy_is_part_of_the_tenants_record_and_a_bad_one_fails_its_tenant_alone() {
        let dir = tempfile::tempdir().unwrap();
        let specs = "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: web }\n\
                     spec: { cors: { allowOrigins: [HTTPS://App.Example], allowMethods: [GET], maxAge: 10m } }\n---\n\
                     apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: plain }\nspec: {}\n---\n\
                     apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: bad }\n\
                     spec: { cors: { allowOrigins: ['*'], allowMethods: [GET], allowCredentials: true } }\n";
        std::fs::write(dir.path().join("specs.yaml"), specs).unwrap();
        let loaded = load_dir(dir.path(), &Bounds::default());
        let record =
            |name: &str| serde_json::to_value(&loaded.state.tenants[&Name::new(name).unwrap()]).unwrap();
        assert_eq!(
            record("web")["cors"],
            serde_json::json!({ "allowOrigins": ["https://app.example"], "allowMethods": ["GET"], "allowHeaders": [], "maxAge": "10m" })
        );
        assert!(record("plain").get("cors").is_none(), "a tenant without cors keeps the record it had");
        assert!(!loaded.state.tenants.contains_key(&Name::new("bad").unwrap()));
        let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with(
                "specs.yaml:11: spec.cors.allowOrigins[0]: \"*\" cannot be combined with allowCredentials"
            ),
            "{errors:#?}"
        );
    }
}
