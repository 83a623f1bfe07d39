//! Shared helpers for the integration tests: guests built from source once per run, a node
//! started on a loopback port with its own spec and data directories, and an HTTP client.

#![allow(dead_code)]

pub mod api;
pub mod conformance;
pub mod host;
pub mod link;
pub mod logs;
pub mod nats;
pub mod otlp;
pub mod sockets;

use gojinn::config::{NodeConfig, RuntimeSettings};
use gojinn::server::Server;
use gojinn::spec::ByteSize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every guest crate the tests run, by package name.
pub const GUESTS: &[&str] = &[
    "hello",
    "echo",
    "json-api",
    "guest-loop",
    "guest-membomb",
    "guest-flood",
    "guest-stderrflood",
    "guest-trap",
    "guest-badjson",
    "guest-stackoverflow",
    "guest-slow",
    "guest-env",
    "guest-state",
    "counter",
    "guest-jobprobe",
];

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Target dir for guests, apart from the host's so the two builds never wait on each other.
pub fn guest_target_dir() -> PathBuf {
    repo_root().join("target/guests")
}

/// Path of a guest's wasm module, building all guests from source on first use.
pub fn guest(package: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(repo_root())
            // Small modules compile faster; guests need no debug info here.
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "true")
            .args(["build", "--release", "--target", "wasm32-wasip1", "--target-dir"])
            .arg(guest_target_dir());
        for package in GUESTS {
            command.args(["-p", package]);
        }
        let status = command.status().expect("run cargo to build the test guests");
        assert!(status.success(), "building the guests failed; is the wasm32-wasip1 target installed? (rustup target add wasm32-wasip1)");
    });
    let path = guest_target_dir().join(format!("wasm32-wasip1/release/{package}.wasm"));
    assert!(path.is_file(), "guest {package} was not built at {}", path.display());
    path
}

/// A spec directory in a temp dir, with guest modules copied into `modules/`.
pub struct SpecDir {
    pub dir: tempfile::TempDir,
}

impl SpecDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("modules")).expect("modules dir");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies a guest's module to `modules/{package}.wasm`.
    pub fn module(&self, package: &str) -> &Self {
        std::fs::copy(guest(package), self.path().join(format!("modules/{package}.wasm")))
            .expect("copy module");
        self
    }

    /// Writes the first half of a guest's module as `modules/{name}.wasm`: it starts as
    /// WebAssembly does but does not compile.
    pub fn truncated_module(&self, package: &str, name: &str) -> &Self {
        let bytes = std::fs::read(guest(package)).expect("read module");
        std::fs::write(self.path().join(format!("modules/{name}.wasm")), &bytes[..bytes.len() / 2])
            .expect("write truncated module");
        self
    }

    /// Writes a spec file, replacing it atomically if it exists.
    pub fn write(&self, name: &str, yaml: &str) -> &Self {
        let tmp = self.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, yaml).expect("write spec");
        std::fs::rename(&tmp, self.path().join(name)).expect("rename spec");
        self
    }
}

/// A tenant document and one function document per `(name, module, extra spec YAML)`.
pub fn specs(tenant: &str, tenant_spec: &str, functions: &[(&str, &str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {tenant} }}\nspec: {{ {tenant_spec} }}\n"
    );
    for (name, module, extra) in functions {
        yaml.push_str(&format!(
            "---\napiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: {name}, tenant: {tenant} }}\nspec:\n  module: {{ path: modules/{module}.wasm }}\n"
        ));
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            yaml.push_str(&format!("  {}\n", line.trim()));
        }
    }
    yaml
}

/// A running node on a loopback port.
pub struct Node {
    pub server: Server,
    pub data: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl Node {
    pub async fn start(specs: &SpecDir) -> Self {
        Self::start_with(specs.path(), tempfile::tempdir().expect("data dir")).await
    }

    pub async fn start_with(specs: &Path, data: tempfile::TempDir) -> Self {
        let config = Self::config(specs, data.path());
        Self::start_config(config, data).await
    }

    /// The configuration of a test node serving `specs` on a free loopback port, keeping its
    /// data in `data`.
    pub fn config(specs: &Path, data: &Path) -> NodeConfig {
        NodeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.to_path_buf(),
            specs: specs.to_path_buf(),
            watch: true,
            runtime: RuntimeSettings {
                max_instances: 64,
                max_memory_per_instance: ByteSize(128 << 20),
                ..RuntimeSettings::default()
            },
            ..NodeConfig::default()
        }
    }

    /// The configuration of a test node ([`Node::config`]) keeping its state in NATS at `url`
    /// (comma-separated seeds).
    pub fn nats_config(specs: &Path, data: &Path, url: &str) -> NodeConfig {
        let mut config = Self::config(specs, data);
        config.state.backend = gojinn::config::BackendKind::Nats;
        config.state.nats_url = url.to_owned();
        config
    }

    /// A test node serving `specs` with its state in NATS at `url`, in a fresh data dir.
    pub async fn start_on_nats(specs: &Path, url: &str) -> Self {
        let data = tempfile::tempdir().expect("data dir");
        Self::start_config(Self::nats_config(specs, data.path(), url), data).await
    }

    /// A node with `config`, whose data dir is `data`.
    pub async fn start_config(config: NodeConfig, data: tempfile::TempDir) -> Self {
        let server = Server::start(config).await.expect("start node");
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        Self { server, data, client }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client.post(self.url(path)).body(body).send().await.expect("POST")
    }

    /// Polls `path` until `check` accepts a response, for changes that land asynchronously
    /// (a redeploy after a file change). Fails the test after `within`.
    pub async fn eventually<F>(&self, path: &str, within: Duration, mut check: F) -> reqwest::Response
    where
        F: FnMut(&reqwest::Response) -> bool,
    {
        let deadline = Instant::now() + within;
        loop {
            let response = self.get(path).await;
            if check(&response) {
                return response;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not change as expected within {within:?}: last status {}",
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The JSON error body of a failed call.
pub async fn error_code(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    (
        status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

impl Node {
    /// Calls of `tenant/function` running right now.
    pub fn in_flight(&self, tenant: &str, function: &str) -> u32 {
        let id = gojinn::spec::FunctionId {
            tenant: gojinn::spec::Name::new(tenant).unwrap(),
            function: gojinn::spec::Name::new(function).unwrap(),
        };
        self.server.registry().current().get(&id).map_or(0, |f| f.gate.in_flight())
    }

    /// Waits until `count` calls of `tenant/function` are running; fails after ten seconds.
    pub async fn wait_in_flight(&self, tenant: &str, function: &str, count: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.in_flight(tenant, function) < count {
            assert!(Instant::now() < deadline, "{tenant}/{function} never reached {count} calls in flight");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A fresh embedded state store in a temporary directory (kept alive by the returned guard).
pub fn embedded_state() -> (tempfile::TempDir, gojinn::state::State) {
    let dir = tempfile::tempdir().unwrap();
    let backend = gojinn::state::embedded::EmbeddedBackend::open(dir.path()).expect("open embedded store");
    (dir, gojinn::state::State::from_backend(std::sync::Arc::new(backend)))
}
