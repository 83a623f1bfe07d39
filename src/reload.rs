//! A node's reconcile loop. It runs a pass (reconcile, then deploy) when the spec directory
//! changes, every `reconcile.interval` for a git source, and when asked (the reconcile webhook);
//! bursts of requests (an editor's save, a build writing a module, a flurry of pushes) are
//! coalesced into one pass. Between passes it follows the applied state, so a node that does not
//! hold the reconcile lease serves what the one that does applied. Changes under the node's own
//! data dir (which may sit inside the spec directory) are not spec changes.

use crate::deploy::{Deployer, log_report};
use crate::reconcile::source::Source;
use notify::{RecursiveMode, Watcher};
use std::sync::Arc;
use std::time::Duration;

/// Quiet time after the last request before a pass starts.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// How often the applied state is checked for changes made by another node.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Keeps the loop running until stopped or dropped.
pub struct ReconcileLoop {
    _watcher: Option<notify::RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl ReconcileLoop {
    /// Stops the loop and waits until it has let go of the deployer.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for ReconcileLoop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the loop. With `watch`, a directory source is watched for changes and a git source is
/// polled every `reconcile.interval`; without, passes run only on request.
pub fn start(deployer: Arc<Deployer>, watch: bool) -> notify::Result<ReconcileLoop> {
    let source = deployer.source();
    let watcher = match (&source, watch) {
        (Source::Dir(dir), true) => Some(watch_dir(deployer.clone(), dir)?),
        _ => None,
    };
    let poll_every =
        matches!(source, Source::Git { .. } if watch).then_some(deployer.config().reconcile.interval.0);
    let task = tokio::spawn(async move {
        let mut follow = tokio::time::interval(FOLLOW_EVERY);
        follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(poll_every.unwrap_or(Duration::MAX / 4));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first pass ran at startup.
        follow.tick().await;
        poll.tick().await;
        loop {
            tokio::select! {
                () = deployer.pass_requested() => {
                    while tokio::time::timeout(DEBOUNCE, deployer.pass_requested()).await.is_ok() {}
                    log_report(&deployer.reload().await);
                }
                _ = poll.tick(), if poll_every.is_some() => log_report(&deployer.reload().await),
                _ = follow.tick() => {
                    if let Some(report) = deployer.follow().await {
                        log_report(&report);
                    }
                }
            }
        }
    });
    Ok(ReconcileLoop { _watcher: watcher, task })
}

fn watch_dir(deployer: Arc<Deployer>, dir: &std::path::Path) -> notify::Result<notify::RecommendedWatcher> {
    let data_dir = std::path::absolute(&deployer.config().data_dir).unwrap_or_default();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            !e.kind.is_access()
                && !e.paths.iter().all(|p| std::path::absolute(p).is_ok_and(|p| p.starts_with(&data_dir)))
        });
        if relevant {
            deployer.request_pass();
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok(watcher)
}
