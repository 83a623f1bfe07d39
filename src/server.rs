//! Starts a node: runtime, first deploy, spec watcher, HTTP server; and stops it gracefully.

use crate::config::NodeConfig;
use crate::deploy::{DeployReport, Deployer, log_report};
use crate::edge::{self, Edge};
use crate::reload::{self, SpecWatcher};
use crate::runtime::{Runtime, RuntimeError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the data dir {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("the spec directory {0} does not exist")]
    NoSpecs(std::path::PathBuf),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot open the state backend: {0}")]
    State(#[from] crate::state::StateError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot watch the spec directory: {0}")]
    Watch(#[from] notify::Error),
}

/// A running node.
pub struct Server {
    addr: SocketAddr,
    deployer: Arc<Deployer>,
    first_deploy: DeployReport,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    watcher: Option<SpecWatcher>,
}

impl Server {
    pub async fn start(config: NodeConfig) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| ServerError::DataDir { path: config.data_dir.clone(), source })?;
        if !config.specs.is_dir() {
            return Err(ServerError::NoSpecs(config.specs.clone()));
        }
        let runtime = Arc::new(Runtime::new(config.runtime.pool(), Some(config.data_dir.join("modules")))?);
        let state = crate::state::open(&config.state, &config.data_dir).await?;
        let config = Arc::new(config);
        let deployer = Arc::new(Deployer::new(config.clone(), runtime, state));
        let first_deploy = deployer.reload().await;
        log_report(&first_deploy);
        let watcher = if config.watch { Some(reload::watch(deployer.clone())?) } else { None };

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let addr =
            listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let edge = Arc::new(Edge { deployer: deployer.clone() });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = edge::router(edge);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%addr, specs = %config.specs.display(), "gojinn is serving");
        Ok(Self { addr, deployer, first_deploy, shutdown: Some(shutdown), task, watcher })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn deployer(&self) -> &Arc<Deployer> {
        &self.deployer
    }

    /// What the first deploy did, including every invalid document.
    pub fn first_deploy(&self) -> &DeployReport {
        &self.first_deploy
    }

    /// Stops accepting connections, lets in-flight requests finish, stops the spec watcher, and
    /// returns once nothing of the node holds its state backend any more.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(watcher) = self.watcher.take() {
            watcher.stop().await;
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Serves until the task ends (it ends only on error or after `stop`).
    pub async fn wait(mut self) -> std::io::Result<()> {
        (&mut self.task).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}
