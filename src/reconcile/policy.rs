//! Admission policies: Rego documents evaluated with the embedded engine regorus before anything
//! is applied. The defaults shipped in the binary (`policies/*.rego` of this repository, named
//! `default/<file>` in denials) apply unless the caller opts out with [`Policies::load_with`]; an
//! operator adds their own as `*.rego` files anywhere under `policies/` at the root of the spec
//! source (named by their path relative to that root, `policies/no-egress.rego`).
//!
//! # Writing a policy
//!
//! Every policy file is Rego v1 in the package `gojinn.admission` (a file with another package is
//! rejected at load time) and defines one or more `deny` rules producing messages:
//!
//! ```rego
//! package gojinn.admission
//!
//! deny contains msg if {
//!     input.kind == "Function"
//!     some name, _ in input.function.env
//!     startswith(name, "SECRET_")
//!     msg := sprintf("function %s: env %s looks like a secret; use a secret store", [input.function.id, name])
//! }
//! ```
//!
//! A resource is denied by every message in `data.gojinn.admission.deny`. Each file is compiled
//! and evaluated on its own, so a denial names the file it came from, and rules or helpers in
//! one file are not visible from another. A file must declare a `deny` rule.
//!
//! # The input document
//!
//! A tenant is checked alone, a function together with its tenant:
//!
//! ```json
//! {
//!   "kind": "Tenant" | "Function",
//!   "tenant": {
//!     "name": "acme",
//!     "replicas": 3,
//!     "quotas": {
//!       "maxConcurrency": 64, "maxQueue": 256,          // always present (defaults applied)
//!       "kvMaxBytes": 67108864,                         // bytes; always present (default 64 MiB)
//!       "kvMaxKeys": 100000,                            // always present (default 100,000)
//!       "requestsPerSecond": 500,                       // absent when not set
//!       "maxMemory": 536870912                          // bytes; absent when not set
//!     },
//!     "routePrefixes": ["/api"]                         // always present, [] when none granted
//!   },
//!   "function": {                                       // absent when kind is Tenant
//!     "id": "acme/hello",
//!     "module": { "path": "modules/hello.wasm", "sha256": "<64 hex>", "pinned": true },
//!     "routes": [{ "path": "/hello", "methods": ["GET", "POST"] }],
//!     "limits": {                                       // resolved: defaults applied
//!       "memory": 67108864, "timeout": 500,             // bytes; milliseconds
//!       "maxOutput": 1048576, "maxBody": 1048576,       // bytes
//!       "maxConcurrency": 32, "maxQueue": 64,
//!       "requestsPerSecond": 50                         // absent when not set
//!     },
//!     "env": { "GREETING": "hi" },
//!     "grants": {
//!       "kv": { "read": ["*"], "write": ["counters/*"] }, // absent when not granted
//!       "db": true,
//!       "http": { "allow": ["api.example.com:443"] },     // absent when not granted
//!       "enqueue": ["resize-image"]
//!     },
//!     "jobs": { "maxDeliver": 5, "backoff": ["1s", "10s"], "ackWait": "2m" }, // absent when unset
//!     "mcp": { "tool": true, "description": "...", "inputSchema": {} }        // absent when unset
//!   }
//! }
//! ```
//!
//! `module.sha256` is always the file's actual digest; `module.pinned` says whether the spec
//! wrote it. Optional fields that are not set are left out (never `null`), so a rule reading
//! them is simply undefined. Durations under `jobs` are strings as written in specs.
//!
//! # Cost
//!
//! Policies are parsed and analyzed once at load; each check clones the prepared engine of each
//! policy (reference-counted, with regorus' `arc` feature) and evaluates its `deny` rule. The
//! reconcile benchmark (`cargo bench --bench reconcile`) prints the cost per function: with the
//! four defaults it is in the order of tens of microseconds in release builds.

use crate::spec::{Function, SpecRoot, Tenant};
use regorus::{Engine, Value};
use serde_json::{Map, Value as Json, json};
use std::path::{Path, PathBuf};

/// The package every policy declares.
pub const PACKAGE: &str = "gojinn.admission";

/// The rule a resource is denied by.
const DENY_RULE: &str = "data.gojinn.admission.deny";

/// The policies shipped in the binary, as `(file name, source)`.
pub const DEFAULT_POLICIES: [(&str, &str); 4] = [
    ("quotas.rego", include_str!("../../policies/quotas.rego")),
    ("egress.rego", include_str!("../../policies/egress.rego")),
    ("modules.rego", include_str!("../../policies/modules.rego")),
    ("replicas.rego", include_str!("../../policies/replicas.rego")),
];

/// The directory under the spec root that holds operators' policies.
pub const POLICY_DIR: &str = "policies";
/// Largest policy file read.
const MAX_POLICY_FILE: u64 = 1 << 20;

/// One denial: which resource, which policy said no, and its message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Denial {
    /// `tenant/<name>` or `function/<tenant>/<name>`.
    pub resource: String,
    /// The policy file that denied it (`default/quotas.rego`, `policies/no-egress.rego`).
    pub policy: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy directory or a policy file could not be read.
    #[error("{}: cannot read policy: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid Rego, or does not compile (unsafe variables, unknown functions...):
    /// regorus' message, at the line and column it reports.
    #[error("{policy}{}: {message}", position(*line, *column))]
    Parse { policy: String, line: Option<usize>, column: Option<usize>, message: String },
    /// The file declares a package other than `gojinn.admission`.
    #[error("{policy}: package {package} is not allowed; admission policies must be `package {PACKAGE}`")]
    Package { policy: String, package: String },
    /// The file declares no `deny` rule, so it could never deny anything.
    #[error("{policy}: declares no `deny` rule; write `deny contains msg if {{ ... }}`")]
    NoDeny { policy: String },
    /// Evaluating a policy failed (a builtin error, a conflict, a timeout...).
    #[error("{policy}: evaluating {resource}: {message}")]
    Eval { policy: String, resource: String, message: String },
}

/// One compiled policy file: a prepared engine holding only that file.
#[derive(Clone)]
struct Policy {
    name: String,
    engine: Engine,
}

/// The compiled policies.
#[derive(Clone)]
pub struct Policies {
    policies: Vec<Policy>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Policies {
    /// The shipped defaults plus every `*.rego` under `root/policies` (if that directory exists).
    /// A policy that does not parse is an error naming file and line.
    pub fn load(root: Option<&Path>) -> Result<Self, PolicyError> {
        Self::load_with(true, root)
    }

    /// Like [`Policies::load`], with the shipped defaults only when `defaults` is true (tests and
    /// development setups that do not pin module digests turn them off).
    pub fn load_with(defaults: bool, root: Option<&Path>) -> Result<Self, PolicyError> {
        let mut policies = Vec::new();
        if defaults {
            for (file, source) in DEFAULT_POLICIES {
                policies.push(compile(format!("default/{file}"), source.to_owned())?);
            }
        }
        if let Some(root) = root {
            let dir = root.join(POLICY_DIR);
            let mut files = Vec::new();
            if dir.is_dir() {
                rego_files(&dir, &mut files)?;
            }
            files.sort();
            let read_error = |path: &Path| {
                let path = path.to_path_buf();
                move |source| PolicyError::Read { path, source }
            };
            let spec_root = SpecRoot::open(root).map_err(read_error(root))?;
            for path in files {
                let bytes = spec_root.read(&path, MAX_POLICY_FILE).map_err(read_error(&path))?;
                let source = String::from_utf8(bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                    .map_err(read_error(&path))?;
                let relative = path.strip_prefix(root).unwrap_or(&path);
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                policies.push(compile(name, source)?);
            }
        }
        Ok(Self { policies })
    }

    /// The loaded policies' names, in evaluation order (defaults first).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Denials of a tenant (evaluated with the tenant alone).
    pub fn check_tenant(&self, tenant: &Tenant) -> Result<Vec<Denial>, PolicyError> {
        let input = json!({ "kind": "Tenant", "tenant": tenant_input(tenant) });
        self.check(format!("tenant/{}", tenant.name), input)
    }

    /// Denials of a function (evaluated with its tenant).
    pub fn check_function(&self, tenant: &Tenant, function: &Function) -> Result<Vec<Denial>, PolicyError> {
        let input = json!({
            "kind": "Function",
            "tenant": tenant_input(tenant),
            "function": function_input(function),
        });
        self.check(format!("function/{}", function.id), input)
    }

    fn check(&self, resource: String, input: Json) -> Result<Vec<Denial>, PolicyError> {
        if self.policies.is_empty() {
            return Ok(Vec::new());
        }
        let input = Value::from(input);
        let mut denials = Vec::new();
        for policy in &self.policies {
            let eval_error = |message: String| PolicyError::Eval {
                policy: policy.name.clone(),
                resource: resource.clone(),
                message,
            };
            let mut engine = policy.engine.clone();
            engine.set_input(input.clone());
            let denied = engine.eval_rule(DENY_RULE.to_owned()).map_err(|e| eval_error(e.to_string()))?;
            let messages: Vec<String> = match &denied {
                Value::Undefined => Vec::new(),
                Value::Set(set) => set.iter().map(message_text).collect(),
                Value::Array(items) => items.iter().map(message_text).collect(),
                other => {
                    return Err(eval_error(format!(
                        "`deny` must be a set of messages, not {}",
                        message_text(other)
                    )));
                }
            };
            denials.extend(messages.into_iter().map(|message| Denial {
                resource: resource.clone(),
                policy: policy.name.clone(),
                message,
            }));
        }
        Ok(denials)
    }
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

/// Splits a regorus error report (`--> file:line:col`, the source line, `error: message`) into
/// position and message.
fn parse_error(policy: &str, error: &anyhow::Error) -> PolicyError {
    let report = error.to_string();
    let marker = format!("--> {policy}:");
    let mut numbers = report
        .find(&marker)
        .map(|at| &report[at + marker.len()..])
        .into_iter()
        .flat_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).take(2))
        .map(|n| n.parse::<usize>().ok());
    let (line, column) = (numbers.next().flatten(), numbers.next().flatten());
    let message = report
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(|| report.trim().to_owned(), str::to_owned);
    PolicyError::Parse { policy: policy.to_owned(), line, column, message }
}

/// Parses, checks and prepares one policy file.
fn compile(name: String, source: String) -> Result<Policy, PolicyError> {
    let error = |e: anyhow::Error| parse_error(&name, &e);
    let mut engine = Engine::new();
    let package = engine.add_policy(name.clone(), source).map_err(error)?;
    if package != format!("data.{PACKAGE}") {
        let package = package.strip_prefix("data.").unwrap_or(&package).to_owned();
        return Err(PolicyError::Package { policy: name, package });
    }
    if !engine.has_declared_rule_rooted_at(&name, "deny").map_err(error)? {
        return Err(PolicyError::NoDeny { policy: name });
    }
    // Analyze and prepare once, so clones evaluate straight away and compile errors (unsafe
    // variables, unknown builtins) surface at load rather than on the first resource.
    engine.set_input(Value::new_object());
    engine.eval_rule(DENY_RULE.to_owned()).map_err(error)?;
    Ok(Policy { name, engine })
}

/// Every `*.rego` file under `dir`, recursively; symlinks to directories are not followed (a
/// loop, or a way out of the source).
fn rego_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PolicyError> {
    let read_error = |source| PolicyError::Read { path: dir.to_path_buf(), source };
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let path = entry.path();
        if entry.file_type().map_err(read_error)?.is_dir() {
            rego_files(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "rego") {
            out.push(path);
        }
    }
    Ok(())
}

fn message_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_string(),
        other => other.to_json_str().unwrap_or_else(|_| format!("{other:?}")),
    }
}

/// The `tenant` member of the input document.
fn tenant_input(tenant: &Tenant) -> Json {
    let quotas = &tenant.quotas;
    let mut q = Map::new();
    q.insert("maxConcurrency".into(), quotas.max_concurrency.into());
    q.insert("maxQueue".into(), quotas.max_queue.into());
    if let Some(rps) = quotas.requests_per_second {
        q.insert("requestsPerSecond".into(), rps.into());
    }
    if let Some(bytes) = quotas.max_memory {
        q.insert("maxMemory".into(), bytes.into());
    }
    if let Some(bytes) = quotas.kv_max_bytes {
        q.insert("kvMaxBytes".into(), bytes.into());
    }
    if let Some(keys) = quotas.kv_max_keys {
        q.insert("kvMaxKeys".into(), keys.into());
    }
    let prefixes: Vec<&str> = tenant.route_prefixes.iter().map(|p| p.0.as_str()).collect();
    json!({ "name": tenant.name.as_str(), "replicas": tenant.replicas, "quotas": q, "routePrefixes": prefixes })
}

/// The `function` member of the input document.
fn function_input(function: &Function) -> Json {
    let limits = &function.limits;
    let mut input = Map::new();
    input.insert("id".into(), function.id.to_string().into());
    input.insert(
        "module".into(),
        json!({
            "path": function.module.path,
            "sha256": function.module.sha256,
            "pinned": function.module.pinned,
        }),
    );
    input.insert("routes".into(), to_json(&function.routes));
    let mut limits_input = json!({
        "memory": limits.memory,
        "timeout": u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
        "maxOutput": limits.max_output,
        "maxBody": limits.max_body,
        "maxConcurrency": limits.max_concurrency,
        "maxQueue": limits.max_queue,
    });
    if let Some(rps) = limits.requests_per_second {
        limits_input["requestsPerSecond"] = rps.get().into();
    }
    input.insert("limits".into(), limits_input);
    input.insert("env".into(), to_json(&function.env));
    input.insert("grants".into(), to_json(&function.grants));
    if let Some(jobs) = &function.jobs {
        input.insert("jobs".into(), to_json(jobs));
    }
    if let Some(mcp) = &function.mcp {
        input.insert("mcp".into(), to_json(mcp));
    }
    Json::Object(input)
}

/// A spec value as JSON with unset (`null`) fields left out; `inputSchema` is kept verbatim.
fn to_json<T: serde::Serialize>(value: &T) -> Json {
    fn strip(value: &mut Json) {
        match value {
            Json::Object(map) => {
                map.retain(|_, v| !v.is_null());
                for (key, v) in map.iter_mut() {
                    if key != "inputSchema" {
                        strip(v);
                    }
                }
            }
            Json::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut json = serde_json::to_value(value).expect("spec values serialize to JSON");
    strip(&mut json);
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FunctionId, FunctionLimits, Grants, HttpGrant, ModuleBlob, Name, TenantQuotas};
    use std::collections::BTreeMap;
    use std::time::Duration;

    const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn tenant(replicas: u8, max_memory: Option<u64>) -> Tenant {
        Tenant {
            name: Name::new("acme").unwrap(),
            replicas,
            quotas: TenantQuotas {
                max_concurrency: 64,
                max_queue: 256,
                requests_per_second: None,
                max_memory,
                kv_max_bytes: None,
                kv_max_keys: None,
            },
            api_keys: Vec::new(),
            route_prefixes: Vec::new(),
            cors: None,
            keep: false,
            source: crate::spec::Location::file("tenants.yaml".into()),
        }
    }

    fn function(name: &str) -> Function {
        Function {
            id: FunctionId { tenant: Name::new("acme").unwrap(), function: Name::new(name).unwrap() },
            module: ModuleBlob {
                path: "modules/hello.wasm".into(),
                sha256: SHA.into(),
                pinned: true,
                bytes: Vec::new().into(),
            },
            routes: Vec::new(),
            limits: FunctionLimits {
                memory: 64 << 20,
                timeout: Duration::from_millis(500),
                cpu: None,
                max_output: 1 << 20,
                max_body: 1 << 20,
                max_concurrency: 32,
                max_queue: 64,
                requests_per_second: None,
            },
            env: BTreeMap::new(),
            grants: Grants::default(),
            jobs: None,
            mcp: None,
            revision: String::new(),
            keep: false,
            source: crate::spec::Location::file("functions.yaml".into()),
        }
    }

    fn with_egress(mut f: Function, allow: &[&str]) -> Function {
        f.grants.http = Some(HttpGrant { allow: allow.iter().map(|s| s.to_string()).collect() });
        f
    }

    fn defaults() -> Policies {
        Policies::load(None).unwrap()
    }

    fn messages(denials: &[Denial]) -> Vec<(&str, &str)> {
        denials.iter().map(|d| (d.policy.as_str(), d.message.as_str())).collect()
    }

    #[test]
    fn defaults_load_and_allow_a_well_formed_function() {
        let policies = defaults();
        assert_eq!(
            policies.names().collect::<Vec<_>>(),
            ["default/quotas.rego", "default/egress.rego", "default/modules.rego", "default/replicas.rego"]
        );
        let f = with_egress(function("hello"), &["api.example.com:443", "[::1]:8080"]);
        assert_eq!(policies.check_function(&tenant(3, Some(512 << 20)), &f).unwrap(), []);
        assert_eq!(policies.check_tenant(&tenant(3, None)).unwrap(), []);
    }

    #[test]
    fn quotas_deny_memory_concurrency_and_timeout() {
        let policies = defaults();
        let mut f = function("hello");
        f.limits.memory = 128 << 20;
        f.limits.max_concurrency = 100;
        f.limits.timeout = Duration::from_secs(301);
        let denials = policies.check_function(&tenant(1, Some(64 << 20)), &f).unwrap();
        assert_eq!(
            messages(&denials),
            [
                (
                    "default/quotas.rego",
                    "function acme/hello: limits.maxConcurrency of 100 exceeds tenant acme's quota \
                     maxConcurrency of 64"
                ),
                (
                    "default/quotas.rego",
                    "function acme/hello: limits.memory of 134217728 bytes exceeds tenant acme's quota \
                     maxMemory of 67108864 bytes"
                ),
                (
                    "default/quotas.rego",
                    "function acme/hello: limits.timeout of 301000ms exceeds the maximum of 5 minutes (300000ms)"
                ),
            ]
        );
        assert!(denials.iter().all(|d| d.resource == "function/acme/hello"));

        // No maxMemory quota: any memory; exactly 5 minutes is fine.
        f.limits.max_concurrency = 64;
        f.limits.timeout = Duration::from_secs(300);
        assert_eq!(policies.check_function(&tenant(1, None), &f).unwrap(), []);
    }

    #[test]
    fn rate_limits_are_in_the_input_only_when_set() {
        let mut f = function("hello");
        let mut t = tenant(1, None);
        assert!(function_input(&f)["limits"].get("requestsPerSecond").is_none());
        assert!(tenant_input(&t)["quotas"].get("requestsPerSecond").is_none());
        f.limits.requests_per_second = std::num::NonZeroU32::new(50);
        t.quotas.requests_per_second = Some(500);
        assert_eq!(function_input(&f)["limits"]["requestsPerSecond"], 50);
        assert_eq!(tenant_input(&t)["quotas"]["requestsPerSecond"], 500);
    }

    #[test]
    fn egress_denies_wildcards_and_missing_ports() {
        let policies = defaults();
        let f = with_egress(
            function("hello"),
            &["*.example.com:443", "api.example.com", "*", "ok.example.com:80"],
        );
        let denials = policies.check_function(&tenant(1, None), &f).unwrap();
        assert_eq!(
            messages(&denials),
            [
                (
                    "default/egress.rego",
                    "function acme/hello: http egress \"*\" is a wildcard; list hosts explicitly"
                ),
                (
                    "default/egress.rego",
                    "function acme/hello: http egress \"*.example.com:443\" is a wildcard; list hosts explicitly"
                ),
                (
                    "default/egress.rego",
                    "function acme/hello: http egress \"api.example.com\" has no explicit port; write host:port \
                     (e.g. \"api.example.com:443\")"
                ),
            ]
        );
        let f = with_egress(function("hello"), &["[::1]", "host:", "host:https"]);
        assert_eq!(policies.check_function(&tenant(1, None), &f).unwrap().len(), 3);
    }

    #[test]
    fn modules_must_be_pinned() {
        let policies = defaults();
        let mut f = function("hello");
        f.module.pinned = false;
        let denials = policies.check_function(&tenant(1, None), &f).unwrap();
        assert_eq!(
            messages(&denials),
            [(
                "default/modules.rego",
                format!("function acme/hello: module \"modules/hello.wasm\" is not pinned; add spec.module.sha256: {SHA}")
                    .as_str()
            )]
        );
    }

    #[test]
    fn replicas_must_be_1_3_or_5() {
        let policies = defaults();
        for ok in [1, 3, 5] {
            assert_eq!(policies.check_tenant(&tenant(ok, None)).unwrap(), [], "{ok}");
        }
        let denials = policies.check_tenant(&tenant(2, None)).unwrap();
        assert_eq!(
            denials,
            [Denial {
                resource: "tenant/acme".into(),
                policy: "default/replicas.rego".into(),
                message: "tenant acme: replicas 2 is not allowed; use 1, 3 or 5".into(),
            }]
        );
    }

    #[test]
    fn defaults_can_be_turned_off() {
        let policies = Policies::load_with(false, None).unwrap();
        assert!(policies.is_empty());
        let mut f = function("hello");
        f.module.pinned = false;
        assert_eq!(policies.check_function(&tenant(2, None), &f).unwrap(), []);
    }

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(POLICY_DIR).join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn operator_policies_are_loaded_from_the_spec_root() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "secrets/no-secret-env.rego",
            r#"package gojinn.admission

deny contains msg if {
    input.kind == "Function"
    some name, _ in input.function.env
    startswith(name, "SECRET_")
    msg := sprintf("function %s: env %s looks like a secret", [input.function.id, name])
}
"#,
        );
        write(root.path(), "README.md", "not a policy");
        let policies = Policies::load(Some(root.path())).unwrap();
        assert_eq!(policies.names().last(), Some("policies/secrets/no-secret-env.rego"));

        let mut f = function("hello");
        f.env.insert("GREETING".into(), "hi".into());
        assert_eq!(policies.check_function(&tenant(1, None), &f).unwrap(), []);
        f.env.insert("SECRET_TOKEN".into(), "hunter2".into());
        let denials = policies.check_function(&tenant(1, None), &f).unwrap();
        assert_eq!(
            denials,
            [Denial {
                resource: "function/acme/hello".into(),
                policy: "policies/secrets/no-secret-env.rego".into(),
                message: "function acme/hello: env SECRET_TOKEN looks like a secret".into(),
            }]
        );
        // Tenants are checked too, and this policy has nothing to say about them.
        assert_eq!(policies.check_tenant(&tenant(1, None)).unwrap(), []);
    }

    #[test]
    fn a_missing_policy_directory_is_fine() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(Policies::load(Some(root.path())).unwrap().names().count(), DEFAULT_POLICIES.len());
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "broken.rego",
            "package gojinn.admission\n\ndeny contains msg if {\n    input.kind ==\n}\n",
        );
        let err = Policies::load(Some(root.path())).unwrap_err();
        let PolicyError::Parse { policy, line, column, message } = &err else { panic!("{err:?}") };
        assert_eq!(policy, "policies/broken.rego");
        assert_eq!((*line, *column), (Some(5), Some(1)), "{message}");
        assert_eq!(err.to_string(), "policies/broken.rego:5:1: expecting expression");
    }

    #[test]
    fn unsafe_rules_fail_at_load() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "unsafe.rego",
            "package gojinn.admission\n\ndeny contains msg if {\n    x == 1\n}\n",
        );
        let err = Policies::load(Some(root.path())).unwrap_err();
        assert!(
            matches!(&err, PolicyError::Parse { policy, line: Some(_), .. } if policy == "policies/unsafe.rego"),
            "{err:?}"
        );
        println!("{err}");
    }

    #[test]
    fn other_packages_are_rejected() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "wrong.rego", "package acme.rules\n\ndeny contains \"no\" if { true }\n");
        let err = Policies::load(Some(root.path())).unwrap_err();
        assert!(
            matches!(&err, PolicyError::Package { policy, package } if policy == "policies/wrong.rego" && package == "acme.rules"),
            "{err:?}"
        );
        assert!(err.to_string().contains("package gojinn.admission"), "{err}");
    }

    #[test]
    fn a_policy_without_deny_is_rejected() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "helpers.rego", "package gojinn.admission\n\nallow if { true }\n");
        let err = Policies::load(Some(root.path())).unwrap_err();
        assert!(
            matches!(&err, PolicyError::NoDeny { policy } if policy == "policies/helpers.rego"),
            "{err:?}"
        );
    }

    #[test]
    fn policies_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Policies>();
    }
}
