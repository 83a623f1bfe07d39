//! Starts a node: configuration checked, ports bound, then runtime, state backend, the reconcile
//! controller's first pass and its loop, job workers and the HTTP server with the admin API (on
//! the one `listen` address, or the operator's surfaces on `admin.listen` apart); and
//! stops it gracefully, within the node's `shutdownTimeout` (see [`Server::stop`]). The one
//! place that hands each part what it uses (state backend, registry, runtime, node config). A
//! configuration problem or a port in use is reported before anything is written (data dir,
//! admin token, audit key) or compiled. Connections that arrive during the first deploy wait in
//! the listen backlog: the node answers once it serves what is deployed.

mod deadline;
mod http;
mod limits;

use crate::api::{AdminToken, TokenError};
use crate::audit::{Recorder, RecorderError};
use crate::config::{InvalidConfig, NodeConfig};
use crate::deploy::Deployment;
use crate::edge::{self, Edge, Surfaces};
use crate::invoke::Invoker;
use crate::metrics::Metrics;
use crate::reconcile::controller::{Controller, ControllerTask, PassReport, log_report};
use crate::registry::RegistryHandle;
use crate::runtime::{Runtime, RuntimeError};
use crate::state::State;
use crate::workers::Workers;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    #[error("cannot create the data dir {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot open the state backend: {0}")]
    State(#[from] crate::state::StateError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot watch the spec directory: {0}")]
    Watch(#[from] notify::Error),
    #[error(transparent)]
    AdminToken(#[from] TokenError),
    #[error(transparent)]
    WebhookSecret(#[from] crate::api::webhook::WebhookError),
    #[error("cannot record receipts: {0}")]
    Recorder(#[from] RecorderError),
}

/// Reads a configured audit key (and the retired ones) before anything is written, so a bad key
/// leaves nothing behind; the recorder reads it again when it starts, after the first deploy.
fn read_configured_keys(audit: &crate::config::AuditSettings) -> Result<(), RecorderError> {
    if let (true, Some(key_file)) = (audit.enabled, &audit.key_file) {
        crate::audit::read_keyring(key_file, &audit.previous_key_files, false)?;
    }
    Ok(())
}

/// Binds `addr` (port 0: a free one), and says which address it got.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
    Ok((listener, bound))
}

/// The deadline of a stop, once one is asked for; if the `Server` was dropped instead, now.
async fn stop_requested(mut stop: watch::Receiver<Option<Instant>>) -> Instant {
    match stop.wait_for(Option::is_some).await {
        Ok(deadline) => deadline.unwrap_or_else(Instant::now),
        Err(_) => Instant::now(),
    }
}

/// A running node.
pub struct Server {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    state: State,
    registry: RegistryHandle,
    first_deploy: PassReport,
    /// Tells the HTTP server to stop, and by when its requests must be done.
    shutdown: watch::Sender<Option<Instant>>,
    shutdown_timeout: Duration,
    /// The requests of each listener.
    requests: Vec<Arc<http::Requests>>,
    /// The HTTP server; `None` once it ended and was waited for.
    task: Option<tokio::task::JoinHandle<std::io::Result<http::Drained>>>,
    controller: Option<ControllerTask>,
    workers: Option<Workers>,
    recorder: Arc<Recorder>,
}

impl Server {
    pub async fn start(config: NodeConfig) -> Result<Self, ServerError> {
        config.validate()?;
        let (listener, addr) = bind(config.listen).await?;
        let admin_listener = match config.admin.listen {
            Some(admin) => Some(bind(admin).await?),
            None => None,
        };
        let admin_addr = admin_listener.as_ref().map(|(_, addr)| *addr);
        read_configured_keys(&config.audit)?;
        let webhook_secret = match &config.reconcile.webhook.secret_file {
            Some(path) => Some(Arc::new(crate::api::webhook::WebhookSecret::load(path)?)),
            None => None,
        };
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| ServerError::DataDir { path: config.data_dir.clone(), source })?;
        let admin_token = AdminToken::load(config.admin.token_file.as_deref(), &config.data_dir)?;
        let metrics = Arc::new(Metrics::new());
        let modules = Some(config.data_dir.join("modules"));
        let runtime = Arc::new(Runtime::new(config.runtime.pool(), modules, metrics.clone())?);
        let state = crate::state::open(&config.state, &config.data_dir).await?;
        // The registry, the state backend, the runtime and the node config are handed to each
        // part that needs them here, and only here.
        let registry = RegistryHandle::default();
        let deployment = Deployment::new(&config, runtime.clone(), state.clone(), registry.clone());
        let controller =
            Arc::new(Controller::new(&config, state.clone(), Arc::new(deployment), metrics.clone()));
        let first_deploy = controller.pass().await;
        log_report(&first_deploy);
        let tenants: BTreeSet<_> = registry.current().functions().map(|f| f.id.tenant.clone()).collect();
        let audit = state.audit.clone();
        let recorder = Arc::new(
            Recorder::start(&config.audit, &config.data_dir, audit, metrics.clone(), tenants).await?,
        );
        let controller_task = Some(controller.start(config.watch)?);

        let reachability = state.reachability.clone();
        let invoker = Arc::new(Invoker::new(runtime, recorder.clone(), metrics.clone(), reachability));
        let workers = Workers::start(state.clone(), registry.clone(), metrics.clone(), invoker.clone());
        let edge = Arc::new(Edge {
            state: state.clone(),
            registry: registry.clone(),
            passes: controller.requests(),
            admin_token,
            webhook_secret,
            metrics,
            recorder: recorder.clone(),
            invoker,
            mcp_origins: crate::api::mcp::AllowedOrigins::new(&config.admin.mcp_allowed_origins),
        });
        let (shutdown, stop) = watch::channel(None);
        let settings = Arc::new(config.http.clone());
        let mut requests = Vec::new();
        let mut serve = |listener, surfaces| {
            let counted = Arc::new(http::Requests::default());
            requests.push(counted.clone());
            let (router, settings, stop) =
                (edge::router(edge.clone(), surfaces), settings.clone(), stop.clone());
            async move { http::serve(listener, router, &settings, counted, stop_requested(stop)).await }
        };
        let task = match admin_listener {
            None => tokio::spawn(serve(listener, Surfaces::All)),
            Some((admin_listener, _)) => {
                let functions = serve(listener, Surfaces::Functions);
                let operator = serve(admin_listener, Surfaces::Operator);
                tokio::spawn(async move {
                    let (functions, operator) = tokio::try_join!(functions, operator)?;
                    Ok(functions + operator)
                })
            }
        };
        match admin_addr {
            Some(admin) => tracing::info!(%addr, %admin, source = %controller.source(), "gojinn is serving"),
            None => tracing::info!(%addr, source = %controller.source(), "gojinn is serving"),
        }
        Ok(Self {
            addr,
            admin_addr,
            state,
            registry,
            first_deploy,
            shutdown,
            shutdown_timeout: config.shutdown_timeout.0,
            requests,
            task: Some(task),
            controller: controller_task,
            workers: Some(workers),
            recorder,
        })
    }

    /// The address functions are served on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the admin API, metrics and MCP, when they have their own (`admin.listen`).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The node's state backend.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The registry the node serves.
    pub fn registry(&self) -> &RegistryHandle {
        &self.registry
    }

    /// What the first pass deployed, including every invalid document.
    pub fn first_deploy(&self) -> &PassReport {
        &self.first_deploy
    }

    /// Stops the node within its `shutdownTimeout`: closes the listeners and stops fetching jobs
    /// at once (and the spec watcher), lets requests in flight and running jobs finish until the
    /// deadline, then closes the connections still open and hands the running jobs back for
    /// redelivery; last stops the receipt recorder (every receipt queued is appended, every
    /// chain checkpointed). Returns once nothing of the node holds its state backend any more.
    /// Logs a line as it starts and one with what happened as it ends.
    pub async fn stop(mut self) -> std::io::Result<()> {
        let started = Instant::now();
        let deadline = started + self.shutdown_timeout;
        tracing::info!(
            requests_in_flight = self.requests.iter().map(|r| r.in_flight()).sum::<u64>(),
            timeout = %humantime::format_duration(self.shutdown_timeout),
            "stopping: no new connections or jobs; finishing requests and running jobs until the deadline"
        );
        self.shutdown.send_replace(Some(deadline));
        let workers = self.workers.take();
        let controller = self.controller.take();
        let (served, jobs, ()) = tokio::join!(
            self.serving(),
            async {
                match workers {
                    Some(workers) => workers.stop(deadline).await,
                    None => crate::workers::Drained::default(),
                }
            },
            async {
                if let Some(controller) = controller {
                    controller.stop().await;
                }
            },
        );
        self.recorder.stop().await;
        let requests = served.as_ref().copied().unwrap_or_default();
        tracing::info!(
            requests_finished = requests.finished,
            requests_cut = requests.cut,
            jobs_handed_back = jobs.handed_back,
            took_ms = started.elapsed().as_millis() as u64,
            "stopped: receipts appended and checkpointed"
        );
        served.map(|_| ())
    }

    /// Serves until the HTTP server ends (only on error, or after `stop`). Cancel-safe; once it
    /// has returned, it returns `Ok` at once.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        self.serving().await.map(|_| ())
    }

    /// [`Server::wait`], with how the requests in flight at a stop ended.
    async fn serving(&mut self) -> std::io::Result<http::Drained> {
        let Some(task) = &mut self.task else { return Ok(http::Drained::default()) };
        let served = task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        self.task = None;
        served
    }
}
