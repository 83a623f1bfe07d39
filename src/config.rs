//! Node configuration (`gojinn.yaml`). Every key has a default, so `gojinn serve` with no file
//! works; command-line flags override the file.

use crate::runtime::PoolConfig;
use crate::spec::{ByteSize, Span};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct NodeConfig {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Where the node keeps its state (compiled modules, keys).
    pub data_dir: PathBuf,
    /// The spec directory to serve (unless `reconcile.git` names a repository).
    pub specs: PathBuf,
    /// Reconcile when a file under `specs` changes, or every `reconcile.interval` for git.
    pub watch: bool,
    pub reconcile: ReconcileSettings,
    pub runtime: RuntimeSettings,
    pub state: StateSettings,
    pub egress: EgressSettings,
    pub admin: AdminSettings,
    pub telemetry: TelemetrySettings,
    pub audit: AuditSettings,
}

/// Where specs come from and how this node reconciles them (README "GitOps").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ReconcileSettings {
    /// A git repository (URL, or local path) to reconcile from instead of the `specs` directory.
    pub git: Option<String>,
    /// Branch, tag or commit of `git`; default the remote's HEAD.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// How often a git source is fetched and reconciled.
    pub interval: Span,
    /// Apply the default admission policies shipped with gojinn. Default: on for git sources,
    /// off for a `specs` directory (the development loop). The source's own `policies/*.rego`
    /// always apply.
    pub default_policies: Option<bool>,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            git: None,
            reference: None,
            interval: Span(std::time::Duration::from_secs(30)),
            default_policies: None,
        }
    }
}

/// Where tenants' state lives.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StateSettings {
    pub backend: BackendKind,
    /// NATS server URL(s), comma-separated, for the `nats` backend.
    pub nats_url: String,
    /// Replicas of the reconciler's shared control bucket and module object store (`nats`
    /// backend): 1, 3 or 5. Used when a node creates them; existing buckets keep theirs.
    #[serde(deserialize_with = "replica_count")]
    pub control_replicas: u8,
    /// How long a call waits for the state backend (`nats`) before it fails with 503
    /// `unavailable` (a guest's host call with `-5`); while the node is disconnected, at once.
    pub timeout: Span,
}

/// A JetStream replica count: 1, 3 or 5.
fn replica_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let replicas = u8::deserialize(deserializer)?;
    if [1, 3, 5].contains(&replicas) {
        Ok(replicas)
    } else {
        Err(serde::de::Error::custom(format!("replicas must be 1, 3 or 5, not {replicas}")))
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A local store under `dataDir/state`, for a single node.
    #[default]
    Embedded,
    /// NATS JetStream, for clusters.
    Nats,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            backend: BackendKind::Embedded,
            nats_url: "nats://127.0.0.1:4222".into(),
            control_replicas: 1,
            timeout: Span(std::time::Duration::from_secs(5)),
        }
    }
}

/// Outbound HTTP from guests (`host_http_fetch`), on top of each function's allow-list.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EgressSettings {
    /// Allow loopback, private, link-local and other non-public addresses (off: SSRF protection).
    pub allow_private: bool,
    /// Deadline of one fetch, redirects included.
    pub timeout: Span,
    /// Largest response body a guest may receive.
    pub max_response: ByteSize,
    /// Redirects followed, each to an allowed host only.
    pub max_redirects: u32,
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: Span(std::time::Duration::from_secs(10)),
            max_response: ByteSize(10 << 20),
            max_redirects: 5,
        }
    }
}

/// The REST admin API.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AdminSettings {
    /// File holding the admin bearer token; when unset, a token is generated into
    /// `dataDir/admin.token` (mode 0600) on first start.
    pub token_file: Option<PathBuf>,
}

/// Trace export over OTLP. Unset keys fall back to the standard `OTEL_*` environment variables,
/// which override the file where both are set (see `telemetry`). Without an endpoint in either
/// place, nothing is exported.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TelemetrySettings {
    /// Collector base URL, e.g. `http://127.0.0.1:4317` (gRPC) or `http://127.0.0.1:4318` (HTTP;
    /// `/v1/traces` is appended).
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http` (protobuf); default `http`, as the OpenTelemetry specification says.
    pub protocol: Option<OtlpProtocol>,
    /// The `service.name` of exported spans; default `gojinn`.
    pub service_name: Option<String>,
    /// Share of new traces kept, 0.0 to 1.0; a request with a `traceparent` follows its caller's
    /// decision. Default 1.0.
    pub sample_ratio: Option<f64>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

/// Execution receipts (DESIGN section 6; README "Receipts").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AuditSettings {
    /// Whether executions yield receipts at all. Off is for development and for measuring what
    /// receipts cost: nothing is signed or recorded, and responses carry no `Gojinn-Receipt`.
    pub enabled: bool,
    /// File holding the master key (64 or more hex digits). When unset, a key is generated into
    /// `dataDir/audit.key` (mode 0600) on first start.
    pub key_file: Option<PathBuf>,
    /// Retired master keys: they sign nothing, and still verify receipts signed before a rotation.
    pub previous_key_files: Vec<PathBuf>,
    /// This node's id, naming its chain in every tenant's audit log; default: the host name.
    /// Nodes sharing a state backend must have distinct ids.
    pub node: Option<String>,
    /// Whether a response waits until its receipt is in the audit log.
    pub durability: Durability,
    /// How often each chain that moved is checkpointed (also on shutdown).
    pub checkpoint_interval: Span,
    /// Receipts waiting to be appended, at most; past that, executions wait for room.
    pub max_queued: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            key_file: None,
            previous_key_files: Vec::new(),
            node: None,
            durability: Durability::Sync,
            checkpoint_interval: Span(std::time::Duration::from_secs(60)),
            max_queued: 10_000,
        }
    }
}

/// When a receipt is durable relative to the response it belongs to.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// The response waits until its receipt is appended (the append's latency is added to it).
    #[default]
    Sync,
    /// The response goes out once its receipt is queued; a crash loses the queued receipts.
    Async,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RuntimeSettings {
    /// Instances that may exist at once on this node, across all functions.
    pub max_instances: u32,
    /// The most linear memory any one function may be given.
    pub max_memory_per_instance: ByteSize,
    /// Wasm stack per instance.
    pub max_wasm_stack: ByteSize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("gojinn-data"),
            specs: PathBuf::from("specs"),
            watch: true,
            reconcile: ReconcileSettings::default(),
            runtime: RuntimeSettings::default(),
            state: StateSettings::default(),
            egress: EgressSettings::default(),
            admin: AdminSettings::default(),
            telemetry: TelemetrySettings::default(),
            audit: AuditSettings::default(),
        }
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        let pool = PoolConfig::default();
        Self {
            max_instances: pool.max_instances,
            max_memory_per_instance: ByteSize(pool.max_memory_per_instance),
            max_wasm_stack: ByteSize(pool.max_wasm_stack as u64),
        }
    }
}

impl RuntimeSettings {
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            max_instances: self.max_instances,
            max_memory_per_instance: self.max_memory_per_instance.bytes(),
            max_wasm_stack: usize::try_from(self.max_wasm_stack.bytes()).unwrap_or(usize::MAX),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl NodeConfig {
    /// Reads a config file; a missing file is an error (the caller decides whether one is needed).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), source })?;
        serde_norway::from_str(&text)
            .map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })
    }
}

#[cfg(test)]
mod state_settings_tests {
    use super::*;

    #[test]
    fn control_replicas_default_to_one_and_must_be_odd_up_to_five() {
        assert_eq!(StateSettings::default().control_replicas, 1);
        let parse = |yaml: &str| serde_norway::from_str::<StateSettings>(yaml);
        assert_eq!(parse("controlReplicas: 3").unwrap().control_replicas, 3);
        for bad in ["controlReplicas: 2", "controlReplicas: 0", "controlReplicas: 7"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("1, 3 or 5"), "{bad}: {err}");
        }
    }
}
