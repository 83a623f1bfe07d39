//! Checks a node configuration as a whole before the node touches anything: every number within
//! its range, the files it names, the spec directory and the data dir. Reports every problem at
//! once. Writes nothing, except a probe file it removes at once to learn whether the data dir
//! can be written.

use super::{BackendKind, NodeConfig, StateSettings};
use crate::spec::ByteSize;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// A node configuration that cannot run, with every problem found.
#[derive(Debug, thiserror::Error)]
#[error("invalid node configuration:{}", list(.0))]
pub struct InvalidConfig(pub Vec<ConfigProblem>);

/// One setting's problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The setting as written in `gojinn.yaml`, e.g. `runtime.maxInstances`.
    pub setting: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

fn list(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|problem| format!("\n  {problem}")).collect()
}

/// Wasmtime's pooling allocator reserves a 4 GiB slot (plus guards) of address space per
/// instance; 20,000 slots are about 80 TiB of the 128 TiB a process can map.
const MAX_INSTANCES: u64 = 20_000;
/// A wasm32 memory is at most 4 GiB.
const MAX_WASM32_MEMORY: u64 = 4 << 30;
/// One wasm page.
const WASM_PAGE: u64 = 64 << 10;
/// hyper allocates room for `maxHeaders` headers for every request.
const MAX_HEADERS: u64 = 1000;
/// hyper refuses a request target longer than this on its own, with an empty 414.
const PARSER_MAX_URL: u64 = u16::MAX as u64 - 1;

/// A stop that takes longer than an hour is a hung node to whoever manages it.
const MAX_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Ok when `origin` is a browser origin, `http://` or `https://` then a host and an optional
/// port, nothing more (no path, not even `/`, as the `Origin` header has none).
fn check_origin(origin: &str) -> Result<(), String> {
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{origin:?} is not an origin: it starts with http:// or https://"))?;
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 address: [::1] or [::1]:8080.
        Some(rest) => match rest.split_once(']') {
            Some((address, port)) if address.parse::<std::net::Ipv6Addr>().is_ok() => {
                ("ipv6", (!port.is_empty()).then(|| port.strip_prefix(':').unwrap_or(port)))
            }
            _ => ("", None),
        },
        None => authority.split_once(':').map_or((authority, None), |(host, port)| (host, Some(port))),
    };
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return Err(format!(
            "{origin:?} is not an origin: scheme://host[:port], with no path, query or user \
             (e.g. https://tools.example.com)"
        ));
    }
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err(format!("{origin:?} is not an origin: its port is not a number from 0 to 65535"));
    }
    Ok(())
}

/// Collects problems, one call per setting.
#[derive(Default)]
struct Checks(Vec<ConfigProblem>);

impl Checks {
    fn fail(&mut self, setting: &'static str, message: impl Into<String>) {
        self.0.push(ConfigProblem { setting, message: message.into() });
    }

    fn range(&mut self, setting: &'static str, value: u64, min: u64, max: u64) {
        if !(min..=max).contains(&value) {
            self.fail(setting, format!("must be {min} to {max}, not {value}"));
        }
    }

    fn bytes(&mut self, setting: &'static str, value: ByteSize, min: u64, max: u64) {
        if !(min..=max).contains(&value.bytes()) {
            self.fail(
                setting,
                format!("must be {} to {}, not {}", size(min), size(max), size(value.bytes())),
            );
        }
    }

    fn at_least(&mut self, setting: &'static str, value: Duration, min: Duration) {
        if value < min {
            self.fail(
                setting,
                format!(
                    "must be at least {}, not {}",
                    humantime::format_duration(min),
                    humantime::format_duration(value)
                ),
            );
        }
    }

    fn at_most(&mut self, setting: &'static str, value: Duration, max: Duration) {
        if value > max {
            self.fail(
                setting,
                format!(
                    "must be at most {}, not {}",
                    humantime::format_duration(max),
                    humantime::format_duration(value)
                ),
            );
        }
    }

    /// A file the node reads and never creates: it must exist and be readable. With
    /// `generated_when_unset`, the message says how to have one generated instead.
    fn readable_file(&mut self, setting: &'static str, path: &Path, generated_when_unset: bool) {
        let problem = match std::fs::metadata(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => match generated_when_unset {
                true => format!(
                    "{} does not exist (a configured file is never generated; without the setting, one is generated in the data dir)",
                    path.display()
                ),
                false => format!("{} does not exist", path.display()),
            },
            Err(error) => format!("cannot read {}: {error}", path.display()),
            Ok(meta) if meta.is_dir() => format!("{} is a directory, not a file", path.display()),
            Ok(meta) if meta.len() == 0 => format!("{} is empty", path.display()),
            Ok(_) => match std::fs::File::open(path) {
                Ok(_) => return,
                Err(error) => format!("cannot read {}: {error}", path.display()),
            },
        };
        self.fail(setting, problem);
    }

    /// The `nats` backend's settings: what they report of themselves, and every file they name.
    fn nats(&mut self, state: &StateSettings) {
        for (setting, message) in state.nats_problems() {
            self.fail(setting, message);
        }
        for (setting, path) in state.nats_files() {
            self.readable_file(setting, path, false);
        }
    }
}

/// `bytes` with a binary unit when it has a round one.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}Gi", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}Mi", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}Ki", b >> 10),
        b => b.to_string(),
    }
}

impl NodeConfig {
    /// Every problem that would stop this configuration from serving, found without side
    /// effects: ranges, the files it names, the spec directory, the data dir. `gojinn serve`
    /// (through `Server::start`) calls it before anything else. The listen port is checked by
    /// binding it, which the node does next, still before it writes anything.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let mut checks = Checks::default();
        let second = Duration::from_secs(1);

        let runtime = &self.runtime;
        checks.range("runtime.maxInstances", runtime.max_instances.into(), 1, MAX_INSTANCES);
        if ![1, 3, 5].contains(&self.cluster.replicas) {
            checks.fail("cluster.replicas", format!("must be 1, 3 or 5, not {}", self.cluster.replicas));
        }
        checks.bytes(
            "runtime.maxMemoryPerInstance",
            runtime.max_memory_per_instance,
            WASM_PAGE,
            MAX_WASM32_MEMORY,
        );
        checks.bytes("runtime.maxWasmStack", runtime.max_wasm_stack, 64 << 10, 64 << 20);

        checks.bytes("state.maxJobBytes", self.state.max_job_bytes, 64 << 10, 1 << 30);
        checks.at_least("reconcile.interval", self.reconcile.interval.0, second);
        checks.at_most("shutdownTimeout", self.shutdown_timeout.0, MAX_SHUTDOWN_TIMEOUT);
        checks.at_least("egress.timeout", self.egress.timeout.0, Duration::from_millis(1));
        checks.bytes("egress.maxResponse", self.egress.max_response, 1, 1 << 30);
        checks.range("egress.maxRedirects", self.egress.max_redirects.into(), 0, 20);
        if let Some(ratio) = self.telemetry.sample_ratio
            && !(0.0..=1.0).contains(&ratio)
        {
            checks.fail("telemetry.sampleRatio", format!("must be 0.0 to 1.0, not {ratio}"));
        }

        let audit = &self.audit;
        if audit.enabled {
            checks.at_least("audit.checkpointInterval", audit.checkpoint_interval.0, second);
            checks.range("audit.maxQueued", audit.max_queued.into(), 1, u32::MAX.into());
            if let Some(share) = audit.max_queued_per_tenant {
                checks.range("audit.maxQueuedPerTenant", share.into(), 1, audit.max_queued.into());
            }
            checks.bytes("audit.maxSpoolBytes", audit.max_spool_bytes, 1 << 20, 1 << 40);
            if let Some(key_file) = &audit.key_file {
                checks.readable_file("audit.keyFile", key_file, true);
            }
            for previous in &audit.previous_key_files {
                checks.readable_file("audit.previousKeyFiles", previous, false);
            }
        }
        if let Some(token_file) = &self.admin.token_file {
            checks.readable_file("admin.tokenFile", token_file, true);
        }
        if let Some(admin) = self.admin.listen
            && admin == self.listen
            && admin.port() != 0
        {
            checks.fail(
                "admin.listen",
                format!("{admin} is also `listen`: the admin address must be another one"),
            );
        }
        for origin in &self.admin.mcp_allowed_origins {
            if let Err(problem) = check_origin(origin) {
                checks.fail("admin.mcpAllowedOrigins", problem);
            }
        }
        if self.state.backend == BackendKind::Nats {
            checks.nats(&self.state);
        }

        let http = &self.http;
        checks.at_least("http.headerReadTimeout", http.header_read_timeout.0, Duration::from_millis(1));
        checks.at_least("http.idleTimeout", http.idle_timeout.0, Duration::from_millis(1));
        checks.range("http.maxConnections", http.max_connections.into(), 1, 1_000_000);
        checks.range(
            "http.maxConnectionsPerClient",
            http.max_connections_per_client.into(),
            1,
            http.max_connections.max(1).into(),
        );
        checks.range("http.maxHeaders", http.max_headers.into(), 1, MAX_HEADERS);
        checks.bytes("http.maxHeaderBytes", http.max_header_bytes, 1 << 10, 256 << 10);
        let max_url = PARSER_MAX_URL.min(http.max_header_bytes.bytes().saturating_sub(1)).max(1);
        if !(1..=max_url).contains(&http.max_url_length.bytes()) {
            checks.fail(
                "http.maxUrlLength",
                format!(
                    "must be 1 to {} (less than http.maxHeaderBytes, which counts the URL too, and at most {PARSER_MAX_URL}), not {}",
                    size(max_url),
                    size(http.max_url_length.bytes())
                ),
            );
        }

        let limits = &self.limits;
        checks.bytes("limits.bytesPerSpecFile", limits.bytes_per_spec_file, 1 << 10, 256 << 20);
        checks.range("limits.documentsPerSpecFile", limits.documents_per_spec_file.into(), 1, 1_000_000);
        checks.range("limits.tenants", limits.tenants.into(), 1, 1_000_000);
        checks.range("limits.functionsPerTenant", limits.functions_per_tenant.into(), 1, 100_000);
        checks.range("limits.routesPerFunction", limits.routes_per_function.into(), 1, 10_000);
        checks.range("limits.envPerFunction", limits.env_per_function.into(), 1, 10_000);
        checks.bytes("limits.envBytesPerFunction", limits.env_bytes_per_function, 1 << 10, 16 << 20);

        if self.reconcile.git.is_none() && !self.specs.is_dir() {
            let specs = self.specs.display();
            checks.fail(
                "specs",
                format!("the spec directory {specs} does not exist (pass --specs DIR, or reconcile.git)"),
            );
        }
        if let Err(message) = writable_dir(&self.data_dir) {
            checks.fail("dataDir", message);
        }

        match checks.0.is_empty() {
            true => Ok(()),
            false => Err(InvalidConfig(checks.0)),
        }
    }
}

/// Whether `dir` is, or can be created as, a directory this process can write: its nearest
/// existing ancestor (itself when it exists) must be a directory that takes a new file.
fn writable_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    let existing = dir.ancestors().find(|path| path.as_os_str().is_empty() || path.exists());
    let existing = match existing {
        Some(path) if path.as_os_str().is_empty() => Path::new("."),
        Some(path) => path,
        None => return Err(format!("no part of {shown} exists")),
    };
    if !existing.is_dir() {
        return Err(match existing == dir {
            true => format!("{shown} is a file, not a directory"),
            false => format!("{shown} cannot be created: {} is a file", existing.display()),
        });
    }
    let probe = existing.join(format!(".gojinn-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(error) => Err(format!("{} is not writable: {error}", existing.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AdminSettings, AuditSettings, HttpSettings, LimitSettings, RuntimeSettings};

    /// A configuration whose files and directories exist, in `dir`.
    fn valid(dir: &Path) -> NodeConfig {
        std::fs::create_dir_all(dir.join("specs")).unwrap();
        NodeConfig { specs: dir.join("specs"), data_dir: dir.join("data"), ..NodeConfig::default() }
    }

    fn settings(error: InvalidConfig) -> Vec<&'static str> {
        error.0.iter().map(|problem| problem.setting).collect()
    }

    #[test]
    fn the_defaults_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        valid(dir.path()).validate().unwrap();
        assert!(!dir.path().join("data").exists(), "validation creates nothing");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the probe file is gone");
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_setting() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            runtime: RuntimeSettings {
                max_instances: 0,
                max_memory_per_instance: ByteSize(8 << 30),
                ..RuntimeSettings::default()
            },
            http: HttpSettings {
                max_connections: 10,
                max_connections_per_client: 11,
                max_headers: 0,
                max_url_length: ByteSize(32 << 10),
                ..HttpSettings::default()
            },
            audit: AuditSettings {
                max_queued: 10,
                max_queued_per_tenant: Some(11),
                max_spool_bytes: ByteSize(1 << 10),
                ..AuditSettings::default()
            },
            ..valid(dir.path())
        };
        let error = config.validate().unwrap_err();
        assert_eq!(
            settings(error),
            [
                "runtime.maxInstances",
                "runtime.maxMemoryPerInstance",
                "audit.maxQueuedPerTenant",
                "audit.maxSpoolBytes",
                "http.maxConnectionsPerClient",
                "http.maxHeaders",
                "http.maxUrlLength"
            ]
        );
        let text = config.validate().unwrap_err().to_string();
        assert!(text.contains("runtime.maxInstances: must be 1 to 20000, not 0"), "{text}");
        assert!(text.contains("runtime.maxMemoryPerInstance: must be 64Ki to 4Gi, not 8Gi"), "{text}");
        assert!(text.contains("http.maxConnectionsPerClient: must be 1 to 10, not 11"), "{text}");
        assert!(text.contains("audit.maxQueuedPerTenant: must be 1 to 10, not 11"), "{text}");
        assert!(text.contains("audit.maxSpoolBytes: must be 1Mi to 1024Gi, not 1Ki"), "{text}");
        assert!(
            text.contains("http.maxUrlLength: must be 1 to 32767 (less than http.maxHeaderBytes"),
            "{text}"
        );
    }

    #[test]
    fn a_shutdown_timeout_is_zero_to_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let with = |timeout: Duration| {
            NodeConfig { shutdown_timeout: crate::spec::Span(timeout), ..valid(dir.path()) }.validate()
        };
        with(Duration::ZERO).unwrap();
        with(Duration::from_secs(3600)).unwrap();
        let text = with(Duration::from_secs(3601)).unwrap_err().to_string();
        assert!(text.contains("shutdownTimeout: must be at most 1h, not 1h 1s"), "{text}");
    }

    #[test]
    fn spec_limits_are_checked_at_their_ends() {
        let dir = tempfile::tempdir().unwrap();
        let at = |limits: LimitSettings| NodeConfig { limits, ..valid(dir.path()) }.validate();
        let ends = LimitSettings {
            bytes_per_spec_file: ByteSize(256 << 20),
            documents_per_spec_file: 1,
            tenants: 1_000_000,
            functions_per_tenant: 1,
            routes_per_function: 10_000,
            env_per_function: 1,
            env_bytes_per_function: ByteSize(16 << 20),
        };
        at(ends.clone()).unwrap();
        let past = LimitSettings {
            bytes_per_spec_file: ByteSize((1 << 10) - 1),
            documents_per_spec_file: 1_000_001,
            tenants: 1_000_001,
            functions_per_tenant: 0,
            routes_per_function: 10_001,
            env_per_function: 0,
            env_bytes_per_function: ByteSize((16 << 20) + 1),
        };
        let error = at(past).unwrap_err();
        let text = error.to_string();
        assert_eq!(
            settings(error),
            [
                "limits.bytesPerSpecFile",
                "limits.documentsPerSpecFile",
                "limits.tenants",
                "limits.functionsPerTenant",
                "limits.routesPerFunction",
                "limits.envPerFunction",
                "limits.envBytesPerFunction"
            ]
        );
        assert!(text.contains("limits.tenants: must be 1 to 1000000, not 1000001"), "{text}");
        assert!(text.contains("limits.bytesPerSpecFile: must be 1Ki to 256Mi, not 1023"), "{text}");
    }

    #[test]
    fn mcp_allowed_origins_are_bare_http_origins() {
        let dir = tempfile::tempdir().unwrap();
        let with = |origins: &[&str]| {
            let mut config = valid(dir.path());
            config.admin.mcp_allowed_origins = origins.iter().map(|o| o.to_string()).collect();
            config.validate()
        };
        with(&[
            "https://tools.example.com",
            "http://localhost:3000",
            "http://[::1]:8080",
            "https://10.0.0.1",
        ])
        .unwrap();
        for refused in [
            "tools.example.com",
            "ftp://tools.example.com",
            "https://tools.example.com/",
            "https://tools.example.com/app",
            "https://user@tools.example.com",
            "https://tools.example.com:99999",
            "https://",
            "https://[nope]:80",
        ] {
            let text = with(&[refused]).unwrap_err().to_string();
            assert!(
                text.contains("admin.mcpAllowedOrigins: ") && text.contains("is not an origin"),
                "{refused}: {text}"
            );
        }
    }

    #[test]
    fn configured_files_must_exist_and_be_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = valid(dir.path());
        config.admin.token_file = Some(dir.path().join("admin.tokn"));
        config.audit.key_file = Some(dir.path().join("specs"));
        config.audit.previous_key_files = vec![dir.path().join("old.key")];
        let text = config.validate().unwrap_err().to_string();
        assert!(
            text.contains("admin.tokenFile: ")
                && text.contains("admin.tokn does not exist (a configured file is never generated"),
            "{text}"
        );
        assert!(
            text.contains("audit.keyFile: ") && text.contains("specs is a directory, not a file"),
            "{text}"
        );
        assert!(
            text.contains("audit.previousKeyFiles: ") && text.contains("old.key does not exist"),
            "{text}"
        );
        config.audit.enabled = false;
        assert_eq!(
            settings(config.validate().unwrap_err()),
            ["admin.tokenFile"],
            "keys are read only with receipts on"
        );
    }

    #[test]
    fn cluster_replicas_are_1_3_or_5() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = valid(dir.path());
        for replicas in [1, 3, 5] {
            config.cluster.replicas = replicas;
            assert!(config.validate().is_ok(), "{replicas}");
        }
        config.cluster.replicas = 2;
        let text = config.validate().unwrap_err().to_string();
        assert!(text.contains("cluster.replicas: must be 1, 3 or 5, not 2"), "{text}");
    }

    #[test]
    fn the_admin_address_takes_the_listen_forms_and_must_differ_from_listen() {
        let dir = tempfile::tempdir().unwrap();
        let admin: AdminSettings = serde_norway::from_str("listen: localhost:9090").unwrap();
        assert_eq!(admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
        let error = serde_norway::from_str::<AdminSettings>("listen: example.com:9090").unwrap_err();
        assert!(error.to_string().contains("admin.listen: \"example.com\" in"), "{error}");

        let mut config = valid(dir.path());
        config.listen = "127.0.0.1:8080".parse().unwrap();
        config.admin.listen = Some(config.listen);
        let text = config.validate().unwrap_err().to_string();
        assert!(text.contains("admin.listen: 127.0.0.1:8080 is also `listen`"), "{text}");
        config.admin.listen = Some("127.0.0.1:9090".parse().unwrap());
        assert!(config.validate().is_ok());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin.listen = Some(config.listen);
        assert!(config.validate().is_ok(), "two free ports");
    }

    #[test]
    fn nats_settings_are_checked_with_the_backend_naming_each_file_and_a_remote_plaintext_url() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "{{ backend: nats, natsUrl: nats://10.0.0.5:4222, auth: {{ tokenFile: {0}/token }}, \
             tls: {{ caFile: {0}/ca.pem, certFile: {0}/specs, keyFile: {0}/key.pem }} }}",
            dir.path().display()
        );
        std::fs::write(dir.path().join("ca.pem"), "a CA").unwrap();
        let mut config = NodeConfig { state: serde_norway::from_str(&yaml).unwrap(), ..valid(dir.path()) };
        config.state.tls = None;
        let text = config.validate().unwrap_err().to_string();
        assert!(text.contains("state.natsUrl: nats://10.0.0.5:4222 is not on this machine"), "{text}");
        assert!(text.contains("state.auth.tokenFile: ") && text.contains("token does not exist"), "{text}");
        config.state = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(
            settings(config.validate().unwrap_err()),
            ["state.auth.tokenFile", "state.tls.certFile", "state.tls.keyFile"],
            "state.tls turns TLS on, so the URL may be remote"
        );
        config.state.backend = BackendKind::Embedded;
        config.validate().expect("the NATS settings are not read for the embedded backend");
    }

    #[test]
    fn a_data_dir_that_is_a_file_or_under_one_or_not_writable_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let with_data_dir = |data_dir: &Path| NodeConfig { data_dir: data_dir.into(), ..valid(dir.path()) };
        let text = with_data_dir(&file).validate().unwrap_err().to_string();
        assert!(text.contains("dataDir: ") && text.contains("file is a file, not a directory"), "{text}");
        let text = with_data_dir(&file.join("data")).validate().unwrap_err().to_string();
        assert!(text.contains("data cannot be created: ") && text.contains("file is a file"), "{text}");
        // sysfs takes no new files, whoever asks (root included).
        let text = with_data_dir(Path::new("/sys/gojinn-data")).validate().unwrap_err().to_string();
        assert!(text.contains("dataDir: /sys is not writable: "), "{text}");
    }

    #[test]
    fn a_missing_spec_directory_is_a_problem_unless_specs_come_from_git() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig { specs: dir.path().join("nope"), ..valid(dir.path()) };
        let text = config.validate().unwrap_err().to_string();
        assert!(text.contains("specs: the spec directory") && text.contains("nope does not exist"), "{text}");
        config.reconcile.git = Some("https://git.example.com/ops.git".into());
        config.validate().unwrap();
    }
}
