//! Node configuration (`gojinn.yaml`). Every key has a default, so `gojinn serve` with no file
//! works; command-line flags override the file. [`NodeConfig::validate`] checks the whole of it
//! before a node touches anything.

mod validate;

pub use validate::{ConfigProblem, InvalidConfig};

use crate::runtime::PoolConfig;
use crate::spec::{ByteSize, Span};
pub use crate::state::egress::EgressSettings;
pub use crate::state::{BackendKind, StateSettings};
pub use crate::telemetry::{OtlpProtocol, TelemetrySettings};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct NodeConfig {
    /// Address the HTTP server listens on, in the forms [`parse_listen`] takes.
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// Where the node keeps its state (compiled modules, keys).
    pub data_dir: PathBuf,
    /// The spec directory to serve (unless `reconcile.git` names a repository).
    pub specs: PathBuf,
    /// Reconcile when a file under `specs` changes, or every `reconcile.interval` for git.
    pub watch: bool,
    /// How long a stop (SIGTERM, Ctrl-C) lets requests in flight and running jobs finish; at
    /// the deadline open connections are closed and running jobs handed back for redelivery.
    /// Default 30 s, Kubernetes' grace period, so the node is done before it would be killed.
    pub shutdown_timeout: Span,
    pub reconcile: ReconcileSettings,
    pub runtime: RuntimeSettings,
    pub state: StateSettings,
    pub egress: EgressSettings,
    pub admin: AdminSettings,
    pub telemetry: TelemetrySettings,
    pub audit: AuditSettings,
    pub http: HttpSettings,
    pub secrets: crate::secrets::SecretSettings,
    pub limits: LimitSettings,
    pub cluster: ClusterSettings,
}

/// The accepted forms of a listen address, for error messages.
const LISTEN_FORMS: &str = "use IP:PORT (127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080), :PORT for every \
                            IPv4 interface, or localhost:PORT";

/// Parses a listen address: `IP:PORT` (`127.0.0.1:8080`, `[::1]:8080`), `:PORT` for every IPv4
/// interface (`0.0.0.0:PORT`, as Go and most servers read it), or `localhost:PORT` for the IPv4
/// loopback. Other host names are not resolved: a node binds an address, not a name. Port 0
/// asks the system for a free port.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("listen address {text:?} has no port: {LISTEN_FORMS}"));
    };
    let port = match port.parse::<u64>() {
        Ok(port) => u16::try_from(port)
            .map_err(|_| format!("port {port} of {text:?} is out of range: a port is 0 to 65535"))?,
        Err(_) => return Err(format!("{port:?} in {text:?} is not a port number: {LISTEN_FORMS}")),
    };
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        host if host.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        host if host.contains(':') && !host.starts_with('[') => {
            return Err(format!("an IPv6 address takes brackets: [{host}]:{port}"));
        }
        host => match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                return Err(format!(
                    "{host:?} in {text:?} is not an IP address: {LISTEN_FORMS} (host names are not resolved)"
                ));
            }
        },
    };
    Ok(SocketAddr::new(ip, port))
}

fn listen_address<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    parse_listen(&String::deserialize(deserializer)?)
        .map_err(|message| serde::de::Error::custom(format!("listen: {message}")))
}

fn optional_listen_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_listen(&text)
        .map(Some)
        .map_err(|message| serde::de::Error::custom(format!("admin.listen: {message}")))
}

/// Bounds on HTTP clients: how long one may take to send a request head or keep a connection
/// idle, how many connections it may hold, and how large a request head may be. The defaults
/// are for a node facing the internet; see each for its reason.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpSettings {
    /// Time a client has to send a whole request head (request line and headers), counted from
    /// the connection's start for its first request and from the first byte for later ones.
    /// Default 10 s: a head fits in a packet or two, which even a slow mobile link delivers in
    /// well under a second, while a client dribbling headers (slowloris) holds its connection
    /// for 10 s instead of forever.
    pub header_read_timeout: Span,
    /// Time a keep-alive connection may wait for its next request. Default 75 s (nginx's
    /// `keepalive_timeout`): longer than the 60 s idle timeout of common load balancers, so a
    /// proxy in front closes an idle connection first and never reuses one this node is closing.
    pub idle_timeout: Span,
    /// Connections open at once, all clients together; a new connection past it is closed at
    /// once. Default 4096: each costs a task, a read buffer that starts at 8 KiB and a file
    /// descriptor (raise the process's open-file limit above this), so 4096 stay in the tens of
    /// MiB while far more clients than one node serves at once fit.
    pub max_connections: u32,
    /// Connections open at once from one client address (for IPv6, its /64 network, which one
    /// subscriber usually holds whole). Default 64: ten times what a browser opens to one host,
    /// so clients behind one NAT fit, while one address holds at most 1/64 of the node. Behind
    /// a reverse proxy every client has the proxy's address: raise it to `maxConnections`.
    pub max_connections_per_client: u32,
    /// Header fields in one request. Default 100 (Apache's `LimitRequestFields`, hyper's default).
    pub max_headers: u32,
    /// Bytes of a request head: request line and headers with their line ends. Default 32 KiB
    /// (nginx's four 8 KiB header buffers): room for large cookies and bearer tokens.
    pub max_header_bytes: ByteSize,
    /// Bytes of the request target (path and query). Default 8 KiB (Apache's
    /// `LimitRequestLine`, nginx's header buffer).
    pub max_url_length: ByteSize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Span(Duration::from_secs(10)),
            idle_timeout: Span(Duration::from_secs(75)),
            max_connections: 4096,
            max_connections_per_client: 64,
            max_headers: 100,
            max_header_bytes: ByteSize(32 << 10),
            max_url_length: ByteSize(8 << 10),
        }
    }
}

/// Bounds on what the specs may declare (README "Node configuration"); the defaults and their
/// reasons are in `spec::bounds`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LimitSettings {
    /// Bytes of one spec file; a larger file is invalid whole.
    pub bytes_per_spec_file: ByteSize,
    /// Documents in one spec file; a file with more is invalid whole.
    pub documents_per_spec_file: u32,
    /// Tenants this node serves; Tenant documents past it (in file order) are invalid.
    pub tenants: u32,
    /// Functions of one tenant; Function documents past it (in file order) are invalid.
    pub functions_per_tenant: u32,
    /// Routes one function declares.
    pub routes_per_function: u32,
    /// Environment variables of one function.
    pub env_per_function: u32,
    /// Bytes of one function's environment: names and literal values.
    pub env_bytes_per_function: ByteSize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let bounds = crate::spec::Bounds::default();
        Self {
            bytes_per_spec_file: ByteSize(bounds.bytes_per_spec_file),
            documents_per_spec_file: bounds.documents_per_spec_file,
            tenants: bounds.tenants,
            functions_per_tenant: bounds.functions_per_tenant,
            routes_per_function: bounds.routes_per_function,
            env_per_function: bounds.env_per_function,
            env_bytes_per_function: ByteSize(bounds.env_bytes_per_function),
        }
    }
}

impl LimitSettings {
    /// The bounds specs are loaded within.
    pub fn spec_bounds(&self) -> crate::spec::Bounds {
        crate::spec::Bounds {
            bytes_per_spec_file: self.bytes_per_spec_file.bytes(),
            documents_per_spec_file: self.documents_per_spec_file,
            tenants: self.tenants,
            functions_per_tenant: self.functions_per_tenant,
            routes_per_function: self.routes_per_function,
            env_per_function: self.env_per_function,
            env_bytes_per_function: self.env_bytes_per_function.bytes(),
            default_replicas: 1,
        }
    }
}

impl NodeConfig {
    /// The bounds specs are loaded within, and the node's defaults for what they leave out.
    pub fn spec_bounds(&self) -> crate::spec::Bounds {
        crate::spec::Bounds { default_replicas: self.cluster.replicas, ..self.limits.spec_bounds() }
    }
}

/// The node's part in a cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClusterSettings {
    /// JetStream replicas of a tenant whose spec does not set `replicas`: 1 (one copy; AP, the
    /// edge mode), 3 or 5 (Raft; CP). Read by the node that reconciles.
    pub replicas: u8,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self { replicas: 1 }
    }
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
    /// `POST /_gojinn/v1/reconcile` as git hosts call it.
    pub webhook: WebhookSettings,
}

/// The reconcile webhook (README "GitOps").
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WebhookSettings {
    /// File holding the secret shared with the git host: GitHub's `X-Hub-Signature-256` (an
    /// HMAC-SHA256 of the body) and GitLab's `X-Gitlab-Token` are accepted with it, besides the
    /// admin token. Unset: only the admin token.
    pub secret_file: Option<PathBuf>,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            git: None,
            reference: None,
            interval: Span(std::time::Duration::from_secs(30)),
            default_policies: None,
            webhook: WebhookSettings::default(),
        }
    }
}

/// The operator's surfaces: the REST admin API, MCP and metrics.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AdminSettings {
    /// File holding the admin bearer token; when unset, a token is generated into
    /// `dataDir/admin.token` (mode 0600) on first start.
    pub token_file: Option<PathBuf>,
    /// A second address, in the forms [`parse_listen`] takes, for the operator's surfaces
    /// (`/_gojinn/v1`, `/_gojinn/metrics`, `/_gojinn/mcp`); when set, `listen` serves functions
    /// and nothing of those. Unset: one address serves everything.
    #[serde(deserialize_with = "optional_listen_address")]
    pub listen: Option<SocketAddr>,
    /// Browser origins (`https://host[:port]`) the MCP endpoint takes besides the node's own,
    /// for a node behind a proxy that serves it under another name.
    pub mcp_allowed_origins: Vec<String>,
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
    /// Receipts of one tenant waiting to be appended, at most (default: a quarter of
    /// `max_queued`); past that, that tenant's executions wait for room while others go on.
    pub max_queued_per_tenant: Option<u32>,
    /// Bytes of one tenant's receipts that this node keeps on its disk
    /// (`dataDir/audit-spool/<tenant>.log`) while its audit log cannot be written, at most;
    /// past that, they wait in the queue (`max_queued`).
    pub max_spool_bytes: ByteSize,
}

impl AuditSettings {
    /// `max_queued_per_tenant`, or its default: a quarter of `max_queued`, at least 1.
    pub fn tenant_share(&self) -> u32 {
        self.max_queued_per_tenant.unwrap_or(self.max_queued / 4).max(1)
    }
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
            max_queued_per_tenant: None,
            max_spool_bytes: ByteSize(256 << 20),
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
    /// Most compiled module code kept in memory (least recently used dropped past it).
    pub module_cache_bytes: ByteSize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("gojinn-data"),
            specs: PathBuf::from("specs"),
            watch: true,
            shutdown_timeout: Span(Duration::from_secs(30)),
            reconcile: ReconcileSettings::default(),
            runtime: RuntimeSettings::default(),
            state: StateSettings::default(),
            egress: EgressSettings::default(),
            admin: AdminSettings::default(),
            telemetry: TelemetrySettings::default(),
            audit: AuditSettings::default(),
            http: HttpSettings::default(),
            secrets: crate::secrets::SecretSettings::default(),
            limits: LimitSettings::default(),
            cluster: ClusterSettings::default(),
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
            module_cache_bytes: ByteSize(pool.module_cache_bytes),
        }
    }
}

impl RuntimeSettings {
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            max_instances: self.max_instances,
            max_memory_per_instance: self.max_memory_per_instance.bytes(),
            max_wasm_stack: usize::try_from(self.max_wasm_stack.bytes()).unwrap_or(usize::MAX),
            module_cache_bytes: self.module_cache_bytes.bytes(),
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
mod listen_tests {
    use super::*;

    #[test]
    fn every_accepted_listen_form_parses_to_its_address() {
        for (text, address) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:80", "0.0.0.0:80"),
            ("[::1]:8080", "[::1]:8080"),
            ("[::]:8080", "[::]:8080"),
            (":8080", "0.0.0.0:8080"),
            ("localhost:8080", "127.0.0.1:8080"),
            ("LocalHost:0", "127.0.0.1:0"),
        ] {
            assert_eq!(parse_listen(text), Ok(address.parse().unwrap()), "{text}");
        }
    }

    #[test]
    fn a_bad_listen_address_says_what_is_wrong_and_what_is_accepted() {
        for (text, says) in [
            (":70000", "port 70000 of \":70000\" is out of range: a port is 0 to 65535"),
            ("[::1]:65536", "out of range"),
            ("localhost", "has no port"),
            ("example.com:8080", "\"example.com\" in \"example.com:8080\" is not an IP address"),
            ("127.0.0.1:http", "\"http\" in \"127.0.0.1:http\" is not a port number"),
            ("::1:8080", "an IPv6 address takes brackets: [::1]:8080"),
        ] {
            let error = parse_listen(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
        assert!(parse_listen("example.com:8080").unwrap_err().contains(":PORT for every IPv4 interface"));
    }

    #[test]
    fn the_listen_key_takes_the_same_forms_and_names_a_bad_one() {
        let config: NodeConfig = serde_norway::from_str("listen: ':9090'").unwrap();
        assert_eq!(config.listen, "0.0.0.0:9090".parse().unwrap());
        let error = serde_norway::from_str::<NodeConfig>("listen: localhost:99999").unwrap_err().to_string();
        assert!(error.starts_with("listen: port 99999"), "{error}");
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
