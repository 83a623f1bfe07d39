//! Watches the spec directory and redeploys when anything under it changes. Bursts of file
//! events (an editor's save, a build writing a module) are coalesced into one deploy. Changes
//! under the node's own data dir (which may sit inside the spec directory) are not spec changes.

use crate::deploy::{Deployer, log_report};
use notify::{RecursiveMode, Watcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last file event before a deploy starts.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Keeps the watch running until dropped.
pub struct SpecWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl SpecWatcher {
    /// Stops watching and waits until the deploy task has let go of the deployer.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for SpecWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn watch(deployer: Arc<Deployer>) -> notify::Result<SpecWatcher> {
    let (events, mut changes) = mpsc::channel::<()>(1);
    let data_dir = std::path::absolute(&deployer.config().data_dir).unwrap_or_default();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            !e.kind.is_access()
                && !e.paths.iter().all(|p| std::path::absolute(p).is_ok_and(|p| p.starts_with(&data_dir)))
        });
        if relevant {
            let _ = events.try_send(());
        }
    })?;
    watcher.watch(deployer.specs(), RecursiveMode::Recursive)?;
    let task = tokio::spawn(async move {
        while changes.recv().await.is_some() {
            while tokio::time::timeout(DEBOUNCE, changes.recv()).await.is_ok_and(|e| e.is_some()) {}
            log_report(&deployer.reload().await);
        }
    });
    Ok(SpecWatcher { _watcher: watcher, task })
}
