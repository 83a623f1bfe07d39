//! The spec documents as operators write them: strict serde types for `Tenant` and `Function`
//! (`apiVersion: gojinn.dev/v1`). Unknown fields are errors; every value that can be checked on
//! its own is checked while parsing, so the error carries the line and field.

use super::cors::Cors;
use super::names::Name;
use super::quantity::{ByteSize, Span};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "gojinn.dev/v1";

/// The two fields every document starts with; read first to pick the document's type. The
/// metadata is read loosely (any shape) to name the resource of an invalid document.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Header {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<serde_norway::Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantDoc {
    #[schemars(extend("const" = API_VERSION))]
    pub api_version: String,
    #[schemars(extend("const" = "Tenant"))]
    pub kind: String,
    pub metadata: TenantMeta,
    #[serde(default)]
    pub spec: TenantSpec,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantMeta {
    pub name: Name,
    /// Protects the tenant from prune: once applied with `keep: true`, removing its spec leaves
    /// it in place (reported as kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantSpec {
    /// Absent: the reconciling node's `cluster.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Replicas>,
    #[serde(default)]
    pub quotas: Quotas,
    /// The tenant's API keys, as sha256 digests only (`gojinn keys new` makes one). When a
    /// tenant has keys, calling its functions needs one of them (or the admin token).
    #[serde(default)]
    #[schemars(length(max = MAX_API_KEYS))]
    pub api_keys: Vec<ApiKey>,
    /// Path prefixes the operator grants this tenant for its functions' declared routes: `/api`
    /// grants `/api` and every path below it (not `/apix`). Paths under `/{tenant}/` always
    /// belong to the tenant and need no grant.
    #[serde(default)]
    pub route_prefixes: Vec<RoutePrefix>,
    /// Which browser origins may call the tenant's functions (CORS); absent: none. Boxed: most
    /// tenants have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Box<Cors>>,
}

/// JetStream replicas for a tenant's streams and buckets: 1, 3 or 5.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Replicas(pub u8);

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        match i64::deserialize(de)? {
            n @ (1 | 3 | 5) => Ok(Replicas(n as u8)),
            n => Err(serde::de::Error::custom(format!("invalid replicas {n}: must be 1, 3 or 5"))),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Quotas {
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,
    pub max_queue: Option<u32>,
    /// Requests a second to all the tenant's functions together (a token bucket holding one
    /// second's worth); none by default.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub requests_per_second: Option<u32>,
    pub max_memory: Option<ByteSize>,
    pub kv_max_bytes: Option<ByteSize>,
    #[schemars(range(min = 1))]
    pub kv_max_keys: Option<u32>,
}

/// The most API keys one tenant may list.
pub const MAX_API_KEYS: usize = 32;

/// One of a tenant's API keys: a name (unique within the tenant), the sha256 of the key (never
/// the key itself) and what it opens.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub name: Name,
    /// The sha256 of the key, in hex.
    pub sha256: Sha256Hex,
    /// What the key opens; absent: every scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub scopes: Option<Vec<Scope>>,
}

/// What a tenant's API key opens.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Calling the tenant's functions, synchronously or as a job.
    Invoke,
    /// The tenant's jobs in the admin API: list, show, redrive.
    Jobs,
    /// The tenant's receipts in the admin API: one by id, a time range.
    Receipts,
    /// The tenant's MCP tools.
    Mcp,
}

impl Scope {
    /// Every scope, the scopes of a key that names none.
    pub const ALL: [Scope; 4] = [Scope::Invoke, Scope::Jobs, Scope::Receipts, Scope::Mcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Invoke => "invoke",
            Scope::Jobs => "jobs",
            Scope::Receipts => "receipts",
            Scope::Mcp => "mcp",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == raw)
            .ok_or_else(|| format!("unknown scope {raw:?}: expected one of invoke, jobs, receipts, mcp"))
    }
}

/// 64 lowercase hex digits.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Sha256Hex(pub String);

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        let ok = raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Sha256Hex(raw))
        } else {
            Err(serde::de::Error::custom(format!("invalid sha256 {raw:?}: expected 64 lowercase hex digits")))
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FunctionDoc {
    #[schemars(extend("const" = API_VERSION))]
    pub api_version: String,
    #[schemars(extend("const" = "Function"))]
    pub kind: String,
    pub metadata: FunctionMeta,
    pub spec: FunctionSpec,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionMeta {
    pub name: Name,
    pub tenant: Name,
    /// Protects the function from prune (see [`TenantMeta::keep`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FunctionSpec {
    pub module: ModuleRef,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub env: BTreeMap<EnvName, EnvValue>,
    #[serde(default)]
    pub grants: Grants,
    pub jobs: Option<Jobs>,
    pub mcp: Option<Mcp>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleRef {
    /// Relative to the spec directory (or repository root).
    pub path: String,
    pub sha256: Option<Sha256Hex>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub path: RoutePath,
    #[serde(default)]
    pub methods: Vec<Method>,
}

/// An absolute URL path: `/` followed by segments of unreserved characters, `{param}` or a final
/// `{*rest}`. Paths under `/_gojinn` are reserved for the platform.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct RoutePath(pub String);

impl RoutePath {
    fn validate(raw: &str) -> Result<(), String> {
        if !raw.starts_with('/') {
            return Err(format!("invalid route path {raw:?}: must start with '/'"));
        }
        if raw == "/_gojinn" || raw.starts_with("/_gojinn/") {
            return Err(format!("invalid route path {raw:?}: /_gojinn is reserved"));
        }
        let segments: Vec<&str> = raw[1..].split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let param = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            let ok = match param {
                Some(p) => {
                    let (catch_all, name) = match p.strip_prefix('*') {
                        Some(n) => (true, n),
                        None => (false, p),
                    };
                    (!catch_all || last)
                        && !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                }
                None => {
                    (last || !seg.is_empty())
                        && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
                }
            };
            if !ok {
                return Err(format!(
                    "invalid route path {raw:?}: segment {seg:?} must be letters, digits, '-._~', \
                     a {{param}} or a final {{*rest}}"
                ));
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for RoutePath {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        RoutePath::validate(&raw).map_err(serde::de::Error::custom)?;
        Ok(RoutePath(raw))
    }
}

/// A path prefix granted to a tenant for declared routes: `/` followed by one or more segments of
/// unreserved characters (no parameters), an optional trailing slash. Not `/` alone, and not under
/// `/_gojinn` in any letter case.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct RoutePrefix(pub String);

impl RoutePrefix {
    fn validate(raw: &str) -> Result<(), String> {
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(format!("invalid route prefix {raw:?}: must start with '/'"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let literal = |seg: &str| {
            !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        };
        if !rest.split('/').all(literal) {
            return Err(format!(
                "invalid route prefix {raw:?}: one or more segments of letters, digits and '-._~' \
                 (no {{param}}, not '/' alone)"
            ));
        }
        if rest.split('/').next().is_some_and(|first| first.eq_ignore_ascii_case("_gojinn")) {
            return Err(format!("invalid route prefix {raw:?}: /_gojinn is reserved"));
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for RoutePrefix {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        RoutePrefix::validate(&raw).map_err(serde::de::Error::custom)?;
        Ok(RoutePrefix(raw))
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct EnvName(pub String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        let mut bytes = raw.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        if first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            Ok(EnvName(raw))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid environment variable name {raw:?}: use letters, digits and '_', not starting with a digit"
            )))
        }
    }
}

/// An environment variable's value: a literal, or a secret that each node reads when it deploys
/// the function (module `secrets`), so that its value is never in a spec, the state backend, a
/// plan, status or a receipt.
#[derive(Clone, Debug, Serialize, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    Literal(String),
    #[serde(rename_all = "camelCase")]
    Secret {
        value_from: ValueFrom,
    },
}

impl From<&str> for EnvValue {
    fn from(literal: &str) -> Self {
        Self::Literal(literal.to_owned())
    }
}

/// Where a node reads a secret env value: a file of the tenant's in its secrets directory, or a
/// variable of its environment named for the tenant (README "Secrets").
#[derive(Clone, Debug, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum ValueFrom {
    /// `<secrets dir>/<tenant>/<file>`.
    File(SecretFile),
    /// `GOJINN_SECRET_<TENANT>_<env>` (the tenant upper-cased, '-' as '_').
    Env(EnvName),
}

/// `{ file: F }` or `{ env: N }`, as a map in YAML and JSON alike (the YAML parser would want a
/// tag for an enum).
impl<'de> Deserialize<'de> for ValueFrom {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Either {
            file: Option<SecretFile>,
            env: Option<EnvName>,
        }
        match Either::deserialize(de)? {
            Either { file: Some(file), env: None } => Ok(Self::File(file)),
            Either { file: None, env: Some(env) } => Ok(Self::Env(env)),
            _ => Err(serde::de::Error::custom("valueFrom takes exactly one of `file` and `env`")),
        }
    }
}

/// A file name in a tenant's secrets directory: 1 to 128 letters, digits, '.', '_' and '-', not
/// starting with '.'.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct SecretFile(#[schemars(regex(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"))] pub String);

impl<'de> Deserialize<'de> for SecretFile {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if (1..=128).contains(&raw.len()) && !raw.starts_with('.') && raw.bytes().all(valid) {
            Ok(Self(raw))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid secret file name {raw:?}: use 1 to 128 letters, digits, '.', '_' and '-', not starting with '.'"
            )))
        }
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Value;
        impl<'de> serde::de::Visitor<'de> for Value {
            type Value = EnvValue;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, or { valueFrom: { file: NAME } } or { valueFrom: { env: NAME } }")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<EnvValue, E> {
                Ok(EnvValue::Literal(value.to_owned()))
            }

            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<EnvValue, E> {
                Ok(EnvValue::Literal(value.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<EnvValue, E> {
                Ok(EnvValue::Literal(value.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<EnvValue, E> {
                Ok(EnvValue::Literal(value.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<EnvValue, E> {
                // `1.0` stays `1.0` (Display would write `1`).
                Ok(EnvValue::Literal(format!("{value:?}")))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<EnvValue, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields, rename_all = "camelCase")]
                struct Secret {
                    value_from: ValueFrom,
                }
                let secret = Secret::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(EnvValue::Secret { value_from: secret.value_from })
            }
        }
        de.deserialize_any(Value)
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    pub memory: Option<ByteSize>,
    pub timeout: Option<Span>,
    /// CPU time a call may use (its guest's run, not time spent waiting); none by default.
    pub cpu: Option<Span>,
    pub max_output: Option<ByteSize>,
    pub max_body: Option<ByteSize>,
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,
    pub max_queue: Option<u32>,
    /// Requests a second to this function (a token bucket holding one second's worth), within
    /// its tenant's `requestsPerSecond`; none by default.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub requests_per_second: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    pub kv: Option<KvGrant>,
    #[serde(default)]
    pub db: bool,
    pub http: Option<HttpGrant>,
    #[serde(default)]
    pub enqueue: Vec<Name>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvGrant {
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Jobs {
    pub max_deliver: Option<u32>,
    #[serde(default)]
    pub backoff: Vec<Span>,
    pub ack_wait: Option<Span>,
    /// Credential headers (`authorization`, `cookie`, `proxy-authorization`, `x-gojinn-key`) an
    /// asynchronous call stores with its job for the function to read; without them listed, they
    /// are removed before the job is queued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_headers: Vec<CredentialHeader>,
}

/// Request headers that carry credentials. A queued call's envelope rests in the state store until
/// its job expires, so these are removed before it is stored unless the function's
/// `jobs.keepHeaders` names them; a synchronous call's guest sees them all.
pub const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "cookie", "proxy-authorization", "x-gojinn-key"];

/// One of [`CREDENTIAL_HEADERS`], any case in the spec, lower case once parsed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct CredentialHeader(
    #[schemars(regex(
        pattern = "^([Aa]uthorization|[Cc]ookie|[Pp]roxy-[Aa]uthorization|[Xx]-[Gg]ojinn-[Kk]ey)$"
    ))]
    pub String,
);

impl<'de> Deserialize<'de> for CredentialHeader {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        let name = raw.to_ascii_lowercase();
        if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            Ok(Self(name))
        } else {
            Err(serde::de::Error::custom(format!(
                "keepHeaders lists {raw:?}, which is not a credential header: only {} are removed from queued calls",
                CREDENTIAL_HEADERS.join(", ")
            )))
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mcp {
    #[serde(default)]
    pub tool: bool,
    pub description: Option<String>,
    pub input_schema: Option<serde_json::Value>,
}
