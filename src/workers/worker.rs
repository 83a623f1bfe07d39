//! The job trigger, one worker per function: pulls its jobs in batches no larger than its free
//! concurrency, runs each as an invocation (`crate::invoke`: admission that waits for room, a
//! fresh sandbox, the receipt), keeps the delivery alive with heartbeats while it runs, and
//! records the outcome. Each attempt runs in a `job`
//! span continuing the trace of the request that queued the job, and is counted by how it ended.
//!
//! A worker follows its function's redeploys without a restart: every fetch uses the revision
//! deployed then (its policy and concurrency), and every job starts on the revision deployed when
//! its delivery arrived; a job already running finishes on its own revision, as a sync call does.
//! Restarting would make a redeploy wait for the fetch under way, and the jobs it brought would
//! run on the old revision. One worker per function on a node, ever: a worker starts only after
//! its predecessor (of a removed function that came back) has ended.
//!
//! Asked to stop, a worker lets a fetch that is under way return (cancelling one could lose the
//! deliveries it was handing over), then drains: every job it holds runs to its end and is
//! acknowledged, unless the node's stop reaches its deadline first: then, once its last fetch
//! has returned (up to `FETCH_WAIT` later), each attempt still running is dropped and its
//! delivery handed back (see [`Jobs::release`]).

use super::Node;
use crate::abi::GuestRequest;
use crate::backoff::Backoff;
use crate::invoke::{Answered, Invocation, InvokeError, Trigger};
use crate::jobs::{JobId, policy_for};
use crate::metrics::{JobState, Metrics};
use crate::registry::Deployed;
use crate::runtime::CallError;
use crate::spec::Name;
use crate::state::{Delivery, JobPolicy, JobStatus, Jobs, Outcome, State};
use crate::telemetry::spans;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

/// How long one fetch waits for jobs before it asks again.
const FETCH_WAIT: Duration = Duration::from_secs(2);
/// Pause before fetching again after the backend failed: a quarter second, doubling up to 30 s.
const FETCH_BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
/// Heartbeats per ack wait.
const HEARTBEATS_PER_ACK_WAIT: u32 = 3;
/// The dead-letter gauge counts a tenant's dead jobs up to this many.
const DEAD_JOBS_COUNTED: usize = 1000;

/// A running worker: a stop signal and the task to wait for.
pub(super) struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    /// Starts the worker of `deployed`'s function; it begins fetching once `after` (a previous
    /// worker of the same function) has ended.
    pub fn spawn(node: Arc<Node>, deployed: Arc<Deployed>, after: Option<JoinHandle<()>>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            if let Some(previous) = after
                && let Err(err) = previous.await
            {
                tracing::error!(function = %deployed.id, "the previous job worker failed: {err}");
            }
            if !*stopped.borrow() {
                serve(&node, deployed, stopped).await;
            }
        });
        Self { stop, task }
    }

    /// Asks the worker to stop; returns its task, which ends once its jobs have drained.
    pub fn stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(true);
        self.task
    }
}

/// Fetches and runs jobs until asked to stop, then waits for the jobs it holds.
async fn serve(node: &Arc<Node>, mut deployed: Arc<Deployed>, mut stopped: watch::Receiver<bool>) {
    let id = deployed.id.clone();
    let state = &node.state;
    // The function's current revision; the last one known once it is removed (and this worker
    // about to be stopped).
    let latest = |known: Arc<Deployed>| node.registry.current().get(&id).cloned().unwrap_or(known);
    let mut slots = Arc::new(Semaphore::new(0));
    let mut concurrency = 0;
    let mut running = JoinSet::new();
    let mut failures = 0;
    // True while this worker may still fetch: a job handed back before its last fetch returned
    // would be fetched again at once, by that very fetch.
    let (fetching, fetch_state) = watch::channel(true);
    tracing::debug!(function = %id, "job worker started");
    loop {
        while let Some(ended) = running.try_join_next() {
            log_panic(ended);
        }
        deployed = latest(deployed);
        let policy = Arc::new(policy_for(&deployed.spec));
        if deployed.spec.limits.max_concurrency != concurrency {
            // Jobs running under the old limit keep their slots; admission still bounds them all.
            concurrency = deployed.spec.limits.max_concurrency;
            slots = Arc::new(Semaphore::new(concurrency as usize));
        }
        let permits = tokio::select! {
            permits = free_slots(&slots) => permits,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        match state.jobs.fetch(&id.tenant, &id.function, &policy, permits.len(), FETCH_WAIT).await {
            Ok(deliveries) => {
                failures = 0;
                deployed = latest(deployed);
                let job = Arc::new(JobContext {
                    node: node.clone(),
                    deployed: deployed.clone(),
                    policy,
                    fetching: fetch_state.clone(),
                });
                for (delivery, slot) in deliveries.into_iter().zip(permits) {
                    running.spawn(job.clone().attempt(delivery, slot));
                }
            }
            Err(err) => {
                failures += 1;
                let pause = FETCH_BACKOFF.delay(failures);
                tracing::warn!(function = %id, "fetching jobs failed, retrying in {pause:?}: {err}");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stopped.wait_for(|stop| *stop) => break,
                }
            }
        }
        if *stopped.borrow() {
            break;
        }
    }
    let _ = fetching.send(false);
    while let Some(ended) = running.join_next().await {
        log_panic(ended);
    }
    tracing::debug!(function = %id, "job worker stopped");
}

/// What running a batch of jobs needs: the revision they run on, and the policy they were
/// fetched with.
struct JobContext {
    node: Arc<Node>,
    deployed: Arc<Deployed>,
    policy: Arc<JobPolicy>,
    /// Whether the worker may still fetch (see `serve`).
    fetching: watch::Receiver<bool>,
}

impl JobContext {
    /// Runs one delivery and records its outcome. A failure to record it is logged: the
    /// delivery's lease then runs out and the job is delivered again (at least once).
    async fn attempt(self: Arc<Self>, delivery: Delivery, slot: OwnedSemaphorePermit) {
        // The public id, as the 202 answer and the API show it.
        let job = JobId::from_backend(delivery.tenant.clone(), delivery.job_id.clone())
            .map_or_else(|_| delivery.job_id.clone(), |id| id.to_string());
        let span = spans::job(&self.deployed.id, job, delivery.attempt, delivery.traceparent.as_deref());
        self.attempt_traced(delivery, slot).instrument(span).await
    }

    async fn attempt_traced(self: Arc<Self>, delivery: Delivery, _slot: OwnedSemaphorePermit) {
        let function = &self.deployed.id;
        let every = (self.policy.ack_wait / HEARTBEATS_PER_ACK_WAIT).max(Duration::from_millis(10));
        let outcome = tokio::select! {
            outcome = with_heartbeats(&*self.node.state.jobs, &delivery, every, self.run(&delivery)) => Some(outcome),
            () = handing_back(self.node.handing_back.clone(), self.fetching.clone()) => None,
        };
        let Some(outcome) = outcome else { return self.hand_back(&delivery).await };
        let outcome = crate::jobs::fit(outcome, self.node.state.jobs.max_job_bytes());
        let failed = match &outcome {
            Outcome::Failed { error } | Outcome::Truncated { error, .. } => Some(error.clone()),
            Outcome::Succeeded { .. } => None,
        };
        match self.node.state.jobs.finish(&delivery, &self.policy, outcome).await {
            Ok(status) => {
                tracing::debug!(
                    %function, job = delivery.job_id, attempt = delivery.attempt, ?status, error = failed, "job attempt ended"
                );
                self.node.metrics.job(function, JobState::from(status));
                if status == JobStatus::Dead {
                    count_dead_jobs(&self.node.state, &self.node.metrics, &function.tenant).await;
                }
            }
            Err(err) => tracing::warn!(
                %function, job = delivery.job_id, "recording a job's outcome failed; it will be delivered again: {err}"
            ),
        }
    }

    /// Hands an attempt cut short by the node's stop back to the backend for redelivery; if
    /// that fails, its lease runs out and it is delivered again after its ack wait.
    async fn hand_back(&self, delivery: &Delivery) {
        let function = &self.deployed.id;
        match self.node.state.jobs.release(delivery).await {
            Ok(()) => {
                self.node.handed_back.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%function, job = delivery.job_id, attempt = delivery.attempt, "handed a running job back for redelivery");
            }
            Err(err) => tracing::warn!(
                %function, job = delivery.job_id, "handing a running job back failed; it is delivered again after its ack wait: {err}"
            ),
        }
    }

    /// One attempt: the stored envelope with its `job_id`, invoked (admission waits for room),
    /// its receipt recorded before the outcome: a job is never acknowledged before the receipt
    /// of its attempt is queued (with `audit.durability: sync`, appended).
    async fn run(&self, delivery: &Delivery) -> Outcome {
        let mut envelope: GuestRequest = match serde_json::from_slice(&delivery.payload) {
            Ok(envelope) => envelope,
            Err(err) => {
                return Outcome::Failed {
                    error: format!("the job's payload is not a request envelope: {err}"),
                };
            }
        };
        let id = match JobId::from_backend(delivery.tenant.clone(), delivery.job_id.clone()) {
            Ok(id) => id.to_string(),
            Err(err) => return Outcome::Failed { error: err.to_string() },
        };
        envelope.job_id = Some(id.clone());
        let trigger = Trigger::Job { id, attempt: delivery.attempt };
        let invocation = Invocation { function: &self.deployed, envelope: &envelope, trigger };
        let invoked = self.node.invoker.invoke(invocation).await;
        if let Some(receipt) = &invoked.receipt {
            tracing::Span::current().record("gojinn.receipt_id", receipt.as_str());
        }
        outcome_of(invoked.outcome)
    }
}

/// Sets the dead-letter gauge of `tenant` to its dead jobs, counted up to [`DEAD_JOBS_COUNTED`].
pub(super) async fn count_dead_jobs(state: &State, metrics: &Metrics, tenant: &Name) {
    match state.jobs.list(tenant, Some(JobStatus::Dead), DEAD_JOBS_COUNTED).await {
        Ok(dead) => metrics.dead_jobs(tenant, dead.len() as u64),
        Err(err) => tracing::warn!(%tenant, "counting dead jobs failed: {err}"),
    }
}

/// Resolves once the node's stop has reached its deadline and the worker fetches no more;
/// never if the node is dropped unstopped.
async fn handing_back(mut signal: watch::Receiver<bool>, mut fetching: watch::Receiver<bool>) {
    if signal.wait_for(|hand_back| *hand_back).await.is_err() {
        std::future::pending::<()>().await;
    }
    // An error: the worker has ended, and with it its fetches.
    let _ = fetching.wait_for(|fetching| !*fetching).await;
}

/// Waits for one free slot, then takes every other free one: the size of the next batch.
async fn free_slots(slots: &Arc<Semaphore>) -> Vec<OwnedSemaphorePermit> {
    let Ok(first) = slots.clone().acquire_owned().await else { return Vec::new() };
    let mut permits = vec![first];
    while let Ok(more) = slots.clone().try_acquire_owned() {
        permits.push(more);
    }
    permits
}

/// Runs `work` while telling the backend every `every` that the delivery is still in progress.
async fn with_heartbeats<T>(
    jobs: &dyn Jobs,
    delivery: &Delivery,
    every: Duration,
    work: impl Future<Output = T>,
) -> T {
    let heartbeats = async {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticks.tick().await;
            if let Err(err) = jobs.in_progress(delivery).await {
                tracing::warn!(job = delivery.job_id, "job heartbeat failed: {err}");
            }
        }
    };
    // The heartbeats never end by themselves: the work does.
    tokio::select! {
        done = work => done,
        never = heartbeats => never,
    }
}

/// What an invocation's outcome means for its job (see the module docs of [`crate::jobs`]).
fn outcome_of(invoked: Result<Answered, InvokeError>) -> Outcome {
    let answered = match invoked {
        Ok(answered) => answered,
        Err(InvokeError::Call(CallError::Internal(detail))) => {
            tracing::error!(error = %detail, "internal error running a job");
            return Outcome::Failed { error: CallError::Internal(String::new()).to_string() };
        }
        Err(err) => return Outcome::Failed { error: err.to_string() },
    };
    if answered.guest.status.is_server_error() {
        return Outcome::Failed { error: format!("the function answered {}", answered.guest.status) };
    }
    match serde_json::from_slice(&answered.envelope) {
        Ok(result) => Outcome::Succeeded { result },
        Err(err) => Outcome::Failed { error: format!("the function returned an invalid response: {err}") },
    }
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(err) = ended {
        tracing::error!("a job attempt panicked: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Instant;

    fn answered(stdout: &'static str) -> Outcome {
        let envelope = Bytes::from_static(stdout.as_bytes());
        let now = Instant::now();
        let parsed = crate::abi::GuestResponse::parse(&envelope).map_err(InvokeError::from);
        outcome_of(parsed.map(|guest| Answered { guest, envelope, started: now, ended: now }))
    }

    fn failed(error: CallError) -> Outcome {
        outcome_of(Err(InvokeError::Call(error)))
    }

    fn error_of(outcome: Outcome) -> String {
        match outcome {
            Outcome::Failed { error } => error,
            Outcome::Succeeded { result } | Outcome::Truncated { result, .. } => {
                panic!("succeeded with {result}")
            }
        }
    }

    #[test]
    fn answers_below_500_succeed_with_the_envelope() {
        for stdout in [r#"{"status":200,"body":"ok"}"#, r#"{"status":302}"#, r#"{"status":404,"body":"no"}"#]
        {
            match answered(stdout) {
                Outcome::Succeeded { result } => {
                    assert_eq!(result, serde_json::from_str::<serde_json::Value>(stdout).unwrap())
                }
                Outcome::Failed { error } | Outcome::Truncated { error, .. } => {
                    panic!("{stdout} failed: {error}")
                }
            }
        }
    }

    #[test]
    fn server_errors_traps_and_invalid_envelopes_fail_the_attempt() {
        assert_eq!(error_of(answered(r#"{"status":503}"#)), "the function answered 503 Service Unavailable");
        assert!(error_of(answered("not json")).contains("invalid response"));
        let trap = failed(CallError::Trap("unreachable".into()));
        assert!(error_of(trap).contains("trapped"));
        let timeout = failed(CallError::Timeout(Duration::from_millis(5)));
        assert!(error_of(timeout).contains("timeout"));
    }

    #[test]
    fn internal_details_stay_out_of_the_job_record() {
        let error = error_of(failed(CallError::Internal("/secret/path".into())));
        assert!(!error.contains("secret"), "{error}");
    }
}
