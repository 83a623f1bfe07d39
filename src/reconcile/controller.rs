//! The reconcile controller: the loop that keeps a node serving what its spec source says, in
//! the shape of kube-rs's controller. A pass takes (or renews) the reconcile lease and, while
//! this node holds it, reads, admits and applies the source; then the node deploys what is
//! applied (a [`Deploy`]: the deploy module builds the registry, never this one). After each
//! pass, [`next_action`] decides what comes next: wait for a change, poll again after the
//! reconcile interval (a watched git source), or, after a failed pass, retry after a doubling
//! backoff.
//!
//! Changes that start a pass: a file under the watched spec directory (changes under the
//! node's own data dir, which may sit inside it, are not spec changes), a request
//! ([`PassRequests`]: the reconcile webhook), a requeue falling due. Bursts of them (an editor's
//! save, a build writing a module, a flurry of pushes) are one pass. Between passes the
//! controller follows the applied state, told of each apply by a watch on its record (and
//! reading it every [`FOLLOW_EVERY`] besides), so a node that does not hold the lease serves what
//! the one that does applied. Two passes never run at once.

use super::lease::Lease;
use super::source::Source;
use super::{Admitted, ApplyReport, ReconcileError, Reconciler};
use crate::backoff::Backoff;
use crate::config::NodeConfig;
use crate::metrics::{Metrics, ReconcileResult};
use crate::spec::{Function, FunctionId, Location, SpecError};
use crate::state::{RecordChanges, State, StateError};
use futures::StreamExt;
use notify::{RecursiveMode, Watcher};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Quiet time after the last request before a pass starts.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// How often the applied state is checked for changes made by another node.
/// How often the applied state is read even though no change was told of: a safety net under
/// the watch ([`Deploy::applied_changes`]), which is what a follower reacts to.
const FOLLOW_EVERY: Duration = Duration::from_secs(30);
/// The pause before watching again after the watch could not start or broke.
const REWATCH_AFTER: Duration = Duration::from_secs(1);
/// Retries of a failed pass: after a second, doubling up to a minute.
const PASS_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// The outcome of one pass, for logs and status.
#[derive(Debug, Default)]
pub struct PassReport {
    pub deployed: Vec<FunctionId>,
    pub unchanged: usize,
    pub removed: Vec<FunctionId>,
    pub errors: Vec<SpecError>,
}

/// What a node makes of the applied state: the deploy module's `Deployment` deploys it. The
/// controller calls it in every pass and whenever the applied state changes.
pub trait Deploy: Send + Sync + 'static {
    /// Whether this node can serve `function` (its module compiles here as a deploy would), so
    /// that what is applied is what is served. Blocking.
    fn servable(&self, function: &Function) -> Result<(), String>;

    /// Deploys what is applied. `read` is the specs this pass just read (their modules are at
    /// hand); problems of the applied state are reported at `at`. Fails only when the applied
    /// state cannot be read.
    fn deploy_applied(
        self: &Arc<Self>,
        read: Option<&Admitted>,
        at: &Location,
    ) -> impl Future<Output = Result<PassReport, StateError>> + Send;

    /// Tells of each apply made after the call, by any node (a watch of the applied state's
    /// record); ends when the watch breaks.
    fn applied_changes(self: &Arc<Self>) -> impl Future<Output = Result<RecordChanges, StateError>> + Send;

    /// Deploys what is applied if it changed since the last deploy (another node applied);
    /// `None` if it did not change or cannot be read now.
    fn follow_applied(self: &Arc<Self>, at: &Location) -> impl Future<Output = Option<PassReport>> + Send;
}

/// What to do after a pass, as kube-rs's `Action`: run the next pass after a delay, or only
/// once something changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Run the next pass after `delay`, or sooner if something changes.
    pub fn requeue(delay: Duration) -> Self {
        Self { requeue_after: Some(delay) }
    }

    /// Run the next pass only once something changes.
    pub fn await_change() -> Self {
        Self { requeue_after: None }
    }

    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// What comes after a pass, given the failed passes in a row (none: it succeeded) and how often
/// the source is polled (a watched git source; a watched directory tells of its changes). A
/// success waits for a change or the next poll; a failure is retried after [`PASS_BACKOFF`],
/// never later than the next poll would come.
pub fn next_action(failures: u32, poll: Option<Duration>) -> Action {
    match (failures, poll) {
        (0, Some(every)) => Action::requeue(every),
        (0, None) => Action::await_change(),
        (failures, poll) => {
            let backoff = PASS_BACKOFF.delay(failures);
            Action::requeue(poll.map_or(backoff, |every| backoff.min(every)))
        }
    }
}

/// Asks the controller for a pass soon; requests made while one is pending are one pass.
/// Cloning shares it.
#[derive(Clone, Default)]
pub struct PassRequests {
    wake: Arc<Notify>,
}

impl PassRequests {
    pub fn request(&self) {
        self.wake.notify_one();
    }

    async fn requested(&self) {
        self.wake.notified().await;
    }
}

/// Runs passes of one node; [`Controller::start`] runs its loop.
pub struct Controller<D> {
    deploy: Arc<D>,
    reconciler: Reconciler,
    lease: Lease,
    source: Source,
    /// Where a git source is checked out.
    checkouts: PathBuf,
    default_policies: bool,
    /// The node's bounds on what specs declare (`limits`).
    bounds: crate::spec::Bounds,
    /// How often a watched git source is polled.
    interval: Duration,
    /// The node's data dir: changes under it are not spec changes.
    data_dir: PathBuf,
    metrics: Arc<Metrics>,
    /// Serializes passes (requests, polls, follows).
    passing: tokio::sync::Mutex<()>,
    /// Failed passes in a row.
    failures: AtomicU32,
    requests: PassRequests,
}

impl<D: Deploy> Controller<D> {
    pub fn new(config: &NodeConfig, state: State, deploy: Arc<D>, metrics: Arc<Metrics>) -> Self {
        let settings = &config.reconcile;
        let source = match &settings.git {
            Some(url) => Source::Git { url: url.clone(), reference: settings.reference.clone() },
            None => Source::Dir(config.specs.clone()),
        };
        Self {
            deploy,
            reconciler: Reconciler::new(state),
            lease: Lease::node(settings.interval.0),
            default_policies: settings.default_policies.unwrap_or(matches!(source, Source::Git { .. })),
            source,
            bounds: config.spec_bounds(),
            checkouts: config.data_dir.join("sources"),
            interval: settings.interval.0,
            data_dir: config.data_dir.clone(),
            metrics,
            passing: tokio::sync::Mutex::new(()),
            failures: AtomicU32::new(0),
            requests: PassRequests::default(),
        }
    }

    /// Where this node reads specs from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// A handle that asks this controller for a pass.
    pub fn requests(&self) -> PassRequests {
        self.requests.clone()
    }

    /// One pass: reconcile the source into the state backend if this node holds the reconcile
    /// lease, then deploy what is applied.
    pub async fn pass(self: &Arc<Self>) -> PassReport {
        let _one_pass = self.passing.lock().await;
        let at = self.source_location();
        let mut errors = Vec::new();
        let mut failed = false;
        let mut admitted = None;
        match self.lease.acquire(&*self.reconciler.state().control).await {
            Ok(true) => match self.reconcile().await {
                Ok((read, report)) => {
                    self.metrics.reconciled(pass_result(&read, &report));
                    errors.extend(pass_errors(&read, &report));
                    admitted = Some(read);
                }
                Err(e) => {
                    self.metrics.reconciled(ReconcileResult::Failed);
                    errors.push(SpecError::new(at.clone(), e.to_string()));
                    failed = true;
                }
            },
            Ok(false) => tracing::debug!("another node holds the reconcile lease; following it"),
            Err(e) => {
                errors.push(SpecError::new(at.clone(), format!("reconcile lease: {e}")));
                failed = true;
            }
        }
        let report = match self.deploy.deploy_applied(admitted.as_ref(), &at).await {
            Ok(mut report) => {
                errors.append(&mut report.errors);
                PassReport { errors, ..report }
            }
            Err(e) => {
                errors.push(SpecError::new(at, format!("reading the applied state: {e}")));
                failed = true;
                PassReport { errors, ..PassReport::default() }
            }
        };
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failures.store(0, Ordering::Relaxed);
        }
        report
    }

    /// Redeploys if the applied state changed since the last deploy (another node applied).
    async fn follow(self: &Arc<Self>) -> Option<PassReport> {
        let _one_pass = self.passing.lock().await;
        self.deploy.follow_applied(&self.source_location()).await
    }

    /// Reads, admits and applies the spec source.
    async fn reconcile(self: &Arc<Self>) -> Result<(Admitted, ApplyReport), ReconcileError> {
        let this = self.clone();
        let admitted = tokio::task::spawn_blocking(move || {
            let mut admitted =
                Admitted::read(&this.source, &this.checkouts, this.default_policies, &this.bounds)?;
            // Apply only what this node's runtime can serve, so the applied commit is served.
            admitted.check_modules(|function| this.deploy.servable(function));
            Ok::<_, ReconcileError>(admitted)
        })
        .await
        .expect("reading specs panicked")?;
        let report = self.reconciler.apply(&admitted).await?;
        if !report.plan.is_empty() {
            tracing::info!(
                commit = admitted.desired.commit.as_deref().unwrap_or("-"),
                changes = report.plan.changes.len(),
                writes = report.writes,
                "applied"
            );
        }
        Ok((admitted, report))
    }

    fn source_location(&self) -> Location {
        match &self.source {
            Source::Dir(dir) => Location::file(dir.clone()),
            git => Location::file(PathBuf::from(git.to_string())),
        }
    }

    /// Starts the loop (the first pass has run: [`Controller::pass`]). With `watch`, a directory
    /// source is watched for changes and a git source is polled every `reconcile.interval`;
    /// without, passes run on request and to retry a failed one.
    pub fn start(self: &Arc<Self>, watch: bool) -> notify::Result<ControllerTask> {
        let watcher = match (&self.source, watch) {
            (Source::Dir(dir), true) => Some(self.watch_dir(dir)?),
            _ => None,
        };
        let poll = matches!(self.source, Source::Git { .. } if watch).then_some(self.interval);
        let task = tokio::spawn(self.clone().run(poll));
        Ok(ControllerTask { _watcher: watcher, task })
    }

    async fn run(self: Arc<Self>, poll: Option<Duration>) {
        let mut follow = tokio::time::interval(FOLLOW_EVERY);
        follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        follow.tick().await;
        let mut changes: Option<RecordChanges> = None;
        let due = |controller: &Self| {
            let next = next_action(controller.failures.load(Ordering::Relaxed), poll);
            next.requeue_after().map(|delay| Instant::now() + delay)
        };
        let mut requeue_at = due(&self);
        loop {
            let requeue = async {
                match requeue_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.requests.requested() => {
                    while tokio::time::timeout(DEBOUNCE, self.requests.requested()).await.is_ok() {}
                }
                () = requeue => {}
                watching = self.next_change(&mut changes) => {
                    // Watching anew: a change between the last read and the new watch would go
                    // untold, so the applied state is read now.
                    if let Some(report) = self.follow().await {
                        log_report(&report);
                    }
                    if !watching {
                        follow.reset();
                    }
                    continue;
                }
                _ = follow.tick() => {
                    if let Some(report) = self.follow().await {
                        log_report(&report);
                    }
                    continue;
                }
            }
            log_report(&self.pass().await);
            requeue_at = due(&self);
        }
    }

    /// Waits for the next apply told by the watch on the applied state, starting the watch if
    /// there is none (after [`REWATCH_AFTER`] when it broke or could not start). Returns true
    /// for a change told by a running watch, false when the watch was (re)started: either way
    /// the caller reads the applied state.
    async fn next_change(&self, changes: &mut Option<RecordChanges>) -> bool {
        if let Some(watch) = changes {
            if watch.next().await.is_some() {
                return true;
            }
            tracing::debug!("the watch on the applied state ended; watching anew");
            *changes = None;
            tokio::time::sleep(REWATCH_AFTER).await;
        }
        loop {
            match self.deploy.applied_changes().await {
                Ok(watch) => {
                    *changes = Some(watch);
                    return false;
                }
                Err(error) => {
                    tracing::debug!("cannot watch the applied state: {error}; trying again");
                    tokio::time::sleep(REWATCH_AFTER).await;
                }
            }
        }
    }

    fn watch_dir(&self, dir: &Path) -> notify::Result<notify::RecommendedWatcher> {
        let data_dir = std::path::absolute(&self.data_dir).unwrap_or_default();
        let requests = self.requests.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = event.is_ok_and(|e| {
                !e.kind.is_access()
                    && !e.paths.iter().all(|p| std::path::absolute(p).is_ok_and(|p| p.starts_with(&data_dir)))
            });
            if relevant {
                requests.request();
            }
        })?;
        watcher.watch(dir, RecursiveMode::Recursive)?;
        Ok(watcher)
    }
}

/// Keeps the controller's loop running until stopped or dropped.
pub struct ControllerTask {
    _watcher: Option<notify::RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl ControllerTask {
    /// Stops the loop and waits until it has let go of the controller.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for ControllerTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a pass that ran went, for `gojinn_reconciles_total`.
fn pass_result(admitted: &Admitted, report: &ApplyReport) -> ReconcileResult {
    if !admitted.is_clean() || report.failures().next().is_some() {
        ReconcileResult::Partial
    } else if report.plan.is_empty() {
        ReconcileResult::Unchanged
    } else {
        ReconcileResult::Applied
    }
}

/// A pass's problems as spec errors: invalid documents, denials, modules that do not load,
/// failed resources.
fn pass_errors(admitted: &Admitted, report: &ApplyReport) -> Vec<SpecError> {
    let mut errors = admitted.invalid.clone();
    errors.extend(admitted.denials.iter().map(|d| {
        SpecError::new(
            Location::file(d.resource.clone().into()),
            format!("denied by {}: {}", d.policy, d.message),
        )
    }));
    errors.extend(
        admitted
            .unloadable
            .iter()
            .map(|(id, e)| SpecError::new(Location::file(id.to_string().into()), e.clone())),
    );
    errors.extend(
        report.failures().map(|(id, e)| SpecError::new(Location::file(id.to_string().into()), e.to_string())),
    );
    errors
}

/// Logs a pass's outcome, one line per change and per error.
pub fn log_report(report: &PassReport) {
    for id in &report.deployed {
        tracing::info!(function = %id, "deployed");
    }
    for id in &report.removed {
        tracing::info!(function = %id, "removed");
    }
    for error in &report.errors {
        tracing::error!("invalid spec: {error}");
    }
    if !report.errors.is_empty() {
        tracing::warn!(
            errors = report.errors.len(),
            "functions of invalid documents keep their previous revision"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(30);

    #[test]
    fn after_a_successful_pass_the_controller_waits_for_a_change() {
        assert_eq!(next_action(0, None), Action::await_change());
    }

    #[test]
    fn after_a_successful_pass_a_polled_source_is_read_again_after_its_interval() {
        assert_eq!(next_action(0, Some(POLL)), Action::requeue(POLL));
    }

    #[test]
    fn a_failed_pass_is_retried_after_a_delay_that_doubles_with_each_failure() {
        let delays: Vec<_> = (1..=4).map(|failures| next_action(failures, None).requeue_after()).collect();
        let seconds = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(delays, [seconds(1), seconds(2), seconds(4), seconds(8)]);
    }

    #[test]
    fn retries_of_failed_passes_are_capped_at_a_minute() {
        for failures in [7, 8, 100, u32::MAX] {
            assert_eq!(next_action(failures, None), Action::requeue(Duration::from_secs(60)), "{failures}");
        }
    }

    #[test]
    fn a_failed_pass_of_a_polled_source_is_retried_no_later_than_the_next_poll() {
        assert_eq!(next_action(3, Some(POLL)), Action::requeue(Duration::from_secs(4)));
        assert_eq!(next_action(10, Some(POLL)), Action::requeue(POLL));
        let fast = Duration::from_millis(200);
        assert_eq!(next_action(1, Some(fast)), Action::requeue(fast));
    }
}
