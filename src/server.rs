//! Starts a node: configuration checked, port bound, then runtime, state backend, the reconcile
//! controller's first pass and its loop, job workers and the HTTP server with the admin API; and
//! stops it gracefully, in the reverse order. The one place that hands each part what it uses
//! (state backend, registry, runtime, node config). A configuration problem or a port in use is reported before anything is
//! written (data dir, admin token, audit key) or compiled. Connections that arrive during the
//! first deploy wait in the listen backlog: the node answers once it serves what is deployed.

mod deadline;
mod http;
mod limits;

use crate::api::{AdminToken, TokenError};
use crate::audit::{Recorder, RecorderError};
use crate::config::{InvalidConfig, NodeConfig};
use crate::deploy::Deployment;
use crate::edge::{self, Edge};
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
use tokio::sync::oneshot;

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

/// A running node.
pub struct Server {
    addr: SocketAddr,
    state: State,
    registry: RegistryHandle,
    first_deploy: PassReport,
    shutdown: Option<oneshot::Sender<()>>,
    /// The HTTP server; `None` once it ended and was waited for.
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    controller: Option<ControllerTask>,
    workers: Option<Workers>,
    recorder: Arc<Recorder>,
}

impl Server {
    pub async fn start(config: NodeConfig) -> Result<Self, ServerError> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let addr =
            listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
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
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = edge::router(edge);
        let settings = config.http.clone();
        let task = tokio::spawn(async move {
            http::serve(listener, app, &settings, async {
                let _ = stopped.await;
            })
            .await
        });
        tracing::info!(%addr, source = %controller.source(), "gojinn is serving");
        Ok(Self {
            addr,
            state,
            registry,
            first_deploy,
            shutdown: Some(shutdown),
            task: Some(task),
            controller: controller_task,
            workers: Some(workers),
            recorder,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
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

    /// Stops the spec watcher, stops accepting connections and lets in-flight requests finish,
    /// then stops the job workers (running jobs finish and are recorded), then the receipt
    /// recorder (every receipt appended, every chain checkpointed), and returns once nothing of
    /// the node holds its state backend any more.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(controller) = self.controller.take() {
            controller.stop().await;
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let served = self.wait().await;
        if let Some(workers) = self.workers.take() {
            workers.stop().await;
        }
        self.recorder.stop().await;
        served
    }

    /// Serves until the HTTP server ends (only on error, or after `stop`). Cancel-safe; once it
    /// has returned, it returns `Ok` at once.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        let Some(task) = &mut self.task else { return Ok(()) };
        let served = task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        self.task = None;
        served
    }
}
