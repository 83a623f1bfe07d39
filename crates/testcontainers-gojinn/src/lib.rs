//! Gojinn for integration suites, on [testcontainers]: start a gojinn node in a container with
//! your spec directory mounted, as you would start a database, and get back its base URL and
//! admin token. Several nodes on one NATS JetStream container ([`nats`], testcontainers-modules'
//! NATS module) form a cluster.
//!
//! ```no_run
//! # async fn example() -> Result<(), testcontainers_gojinn::Error> {
//! let node = testcontainers_gojinn::Gojinn::new().with_specs("examples").start().await?;
//! let greeting = reqwest::get(format!("{}/hello?name=test", node.base_url())).await;
//! # Ok(()) }
//! ```
//!
//! The image (`gojinn:<this crate's version>`) is built from local binaries by
//! `deploy/container/build.sh`; it is never pulled, and a missing image is an error that says so.
//! A node that does not become ready is reported with its last log lines. This crate must never
//! hide a node's failure behind a timeout, nor reach a registry.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use testcontainers::core::{AccessMode, ContainerPort, CopyToContainer, IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, Image, ImageExt, TestcontainersError};
use testcontainers_modules::nats::{Nats, NatsServerCmd};

/// The image `deploy/container/build.sh` builds: `gojinn:<version>`.
pub const IMAGE_NAME: &str = "gojinn";
pub const IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");
/// The port gojinn listens on inside the container.
pub const HTTP_PORT: u16 = 8080;

const CONFIG_PATH: &str = "/etc/gojinn/gojinn.yaml";
const TOKEN_PATH: &str = "/etc/gojinn/admin.token";
const SPECS_PATH: &str = "/specs";
/// Log lines a [`Error::NeverReady`] carries.
const LOG_LINES: usize = 40;
const POLL_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the image {0} is not on this Docker host, and it is never pulled: build it with deploy/container/build.sh"
    )]
    ImageMissing(String),
    #[error("the spec directory {path} cannot be mounted: {reason}")]
    Specs { path: PathBuf, reason: String },
    #[error("gojinn in container {id} {outcome} after {waited:?}; its last log lines:\n{logs}")]
    NeverReady { id: String, outcome: String, waited: Duration, logs: String },
    #[error("docker: {0}")]
    Docker(#[from] TestcontainersError),
}

/// A gojinn node to start: the image, what it serves, where its state lives.
#[derive(Clone, Debug)]
pub struct Gojinn {
    image: GojinnImage,
    network: Option<String>,
    name: Option<String>,
    startup_timeout: Duration,
}

impl Default for Gojinn {
    fn default() -> Self {
        Self::new()
    }
}

impl Gojinn {
    /// A node of the image `gojinn:<version>`, on its embedded store, with a fresh random admin
    /// token and no specs (it serves nothing until given some).
    pub fn new() -> Self {
        let admin_token = hex::encode(rand::random::<[u8; 32]>());
        Self {
            image: GojinnImage {
                name: IMAGE_NAME.to_owned(),
                tag: IMAGE_TAG.to_owned(),
                admin_token,
                specs: None,
                nats_url: None,
                mounts: Vec::new(),
                copies: Vec::new(),
            },
            network: None,
            name: None,
            startup_timeout: Duration::from_secs(60),
        }
    }

    /// Mounts a spec directory (read-only) for the node to serve; it redeploys when files under
    /// it change. Module paths in the specs are relative to it, as for `gojinn serve --specs`.
    pub fn with_specs(mut self, dir: impl Into<PathBuf>) -> Self {
        self.image.specs = Some(dir.into());
        self
    }

    /// Keeps state in NATS JetStream at `url` (e.g. `nats://nats:4222` on a shared network)
    /// instead of the embedded store: nodes with one NATS form a cluster. The connection may be
    /// plaintext (`state.allowPlaintext`): the test's container network is its own.
    pub fn with_nats(mut self, url: impl Into<String>) -> Self {
        self.image.nats_url = Some(url.into());
        self
    }

    /// Joins a Docker network (created when missing), where other containers reach the node by
    /// its name.
    pub fn with_network(mut self, network: impl Into<String>) -> Self {
        self.network = Some(network.into());
        self
    }

    /// Names the container (its host name, and so the node's audit chain).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Uses this admin token instead of a random one.
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Self {
        self.image.admin_token = token.into();
        self
    }

    /// Another image or tag than `gojinn:<version>`.
    pub fn with_image(mut self, name: impl Into<String>, tag: impl Into<String>) -> Self {
        self.image.name = name.into();
        self.image.tag = tag.into();
        self
    }

    /// How long the node may take to answer `/_gojinn/ready` (default 60 s).
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the container and waits until the node is ready.
    pub async fn start(mut self) -> Result<RunningGojinn, Error> {
        require_local_image(format!("{}:{}", self.image.name, self.image.tag)).await?;
        self.image.prepare()?;
        let admin_token = self.image.admin_token.clone();
        let mut request = self.image.with_startup_timeout(self.startup_timeout);
        if let Some(network) = self.network {
            request = request.with_network(network);
        }
        if let Some(name) = self.name {
            request = request.with_container_name(name);
        }
        let container = request.start().await?;
        let mut node = RunningGojinn {
            container,
            admin_token,
            base_url: String::new(),
            startup_timeout: self.startup_timeout,
        };
        node.wait_until_ready().await?;
        Ok(node)
    }
}

/// A started node. Dropping it removes the container.
pub struct RunningGojinn {
    container: ContainerAsync<GojinnImage>,
    admin_token: String,
    base_url: String,
    startup_timeout: Duration,
}

impl RunningGojinn {
    /// `http://host:port` of the node, as this process reaches it.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The admin API's bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The container, for what this crate does not wrap.
    pub fn container(&self) -> &ContainerAsync<GojinnImage> {
        &self.container
    }

    /// Stops the node (SIGTERM: calls in flight finish, receipts are appended) and starts the same
    /// container again, on the same `/data` volume; waits until it is ready. The host port may
    /// change: read [`base_url`](Self::base_url) again.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.container.stop().await?;
        self.container.start().await?;
        self.wait_until_ready().await
    }

    /// The node's log so far (stdout and stderr).
    pub async fn logs(&self) -> String {
        let mut text = String::new();
        for bytes in [self.container.stdout_to_vec().await, self.container.stderr_to_vec().await] {
            text.push_str(&String::from_utf8_lossy(&bytes.unwrap_or_default()));
        }
        text
    }

    /// Polls `/_gojinn/ready` until it answers 200; a container that exits or stays unready
    /// past the startup timeout is an error carrying its last log lines.
    async fn wait_until_ready(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a client without TLS or proxies builds");
        loop {
            if !self.container.is_running().await? {
                let code = self.container.exit_code().await?.map_or("?".to_owned(), |c| c.to_string());
                return Err(self.never_ready(format!("exited with code {code}"), started).await);
            }
            if let Ok(port) = self.container.get_host_port_ipv4(HTTP_PORT.tcp()).await {
                let host = self.container.get_host().await?;
                self.base_url = format!("http://{host}:{port}");
                let ready = client.get(format!("{}/_gojinn/ready", self.base_url)).send().await;
                if ready.is_ok_and(|response| response.status().is_success()) {
                    return Ok(());
                }
            }
            if started.elapsed() >= self.startup_timeout {
                return Err(self.never_ready("was not ready".to_owned(), started).await);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    async fn never_ready(&self, outcome: String, started: Instant) -> Error {
        let logs = self.logs().await;
        let lines: Vec<&str> = logs.lines().collect();
        let last = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n");
        Error::NeverReady {
            id: self.container.id().to_owned(),
            outcome,
            waited: started.elapsed(),
            logs: last,
        }
    }
}

/// Fails unless `image` (`name:tag`) is on the Docker host: testcontainers would otherwise try to
/// pull it.
async fn require_local_image(image: String) -> Result<(), Error> {
    use testcontainers::bollard::{Docker, errors::Error as DockerError};
    let docker = Docker::connect_with_defaults().map_err(|e| Error::Docker(TestcontainersError::other(e)))?;
    match docker.inspect_image(&image).await {
        Ok(_) => Ok(()),
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => {
            Err(Error::ImageMissing(image))
        }
        Err(e) => Err(Error::Docker(TestcontainersError::other(e))),
    }
}

/// A JetStream-enabled NATS server from testcontainers-modules, on `network` under `name`, where
/// gojinn nodes reach it as `nats://NAME:4222`. Its image (`nats:2.10.14`, the module's) is the
/// one `deploy/container/build.sh` builds from a local nats-server; it is never pulled either.
pub async fn nats(network: &str, name: &str) -> Result<ContainerAsync<Nats>, Error> {
    let request = Nats::default()
        .with_cmd(&NatsServerCmd::default().with_jetstream())
        .with_network(network)
        .with_container_name(name);
    require_local_image(request.descriptor()).await?;
    Ok(request.start().await?)
}

/// The image as testcontainers sees it: gojinn's, with the node's configuration and admin token
/// copied in and the spec directory mounted.
#[derive(Clone, Debug)]
pub struct GojinnImage {
    name: String,
    tag: String,
    admin_token: String,
    specs: Option<PathBuf>,
    nats_url: Option<String>,
    mounts: Vec<Mount>,
    copies: Vec<CopyToContainer>,
}

impl GojinnImage {
    /// The node's gojinn.yaml (JSON, which is YAML) and token file, and the spec mount.
    fn prepare(&mut self) -> Result<(), Error> {
        let mut config = serde_json::json!({
            "listen": format!("0.0.0.0:{HTTP_PORT}"),
            "dataDir": "/data",
            "specs": SPECS_PATH,
            "admin": { "tokenFile": TOKEN_PATH },
        });
        if let Some(url) = &self.nats_url {
            config["state"] =
                serde_json::json!({ "backend": "nats", "natsUrl": url, "allowPlaintext": true });
        }
        // Copied in as root, mode 0644: readable by the image's unprivileged user.
        self.copies = vec![
            CopyToContainer::new(config.to_string().into_bytes(), CONFIG_PATH),
            CopyToContainer::new(self.admin_token.clone().into_bytes(), TOKEN_PATH),
        ];
        if let Some(dir) = &self.specs {
            let absolute = std::fs::canonicalize(dir)
                .map_err(|e| Error::Specs { path: dir.clone(), reason: e.to_string() })?;
            if !absolute.is_dir() {
                return Err(Error::Specs { path: dir.clone(), reason: "not a directory".to_owned() });
            }
            let source = absolute.to_str().ok_or_else(|| Error::Specs {
                path: dir.clone(),
                reason: "the path is not UTF-8".to_owned(),
            })?;
            self.mounts = vec![Mount::bind_mount(source, SPECS_PATH).with_access_mode(AccessMode::ReadOnly)];
        }
        Ok(())
    }
}

impl Image for GojinnImage {
    fn name(&self) -> &str {
        &self.name
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    /// None here: [`RunningGojinn`] polls `/_gojinn/ready` itself, to report a failure with the
    /// node's log.
    fn ready_conditions(&self) -> Vec<WaitFor> {
        Vec::new()
    }

    fn mounts(&self) -> impl IntoIterator<Item = &Mount> {
        &self.mounts
    }

    fn copy_to_sources(&self) -> impl IntoIterator<Item = &CopyToContainer> {
        &self.copies
    }

    fn expose_ports(&self) -> &[ContainerPort] {
        const PORTS: [ContainerPort; 1] = [ContainerPort::Tcp(HTTP_PORT)];
        &PORTS
    }
}
