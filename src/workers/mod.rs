//! The job trigger: keeps one job worker per deployed function: follows the registry, starts a worker for each new
//! function and stops the workers of removed ones; a worker follows its own function's redeploys
//! (see `worker`). A function that returns after its removal gets a new worker only once the old
//! one has drained, so one function's jobs are never pulled by two workers of this node at once
//! (kube-rs's runner: never two reconciles of one object at once). Nodes sharing a NATS backend
//! each run their own worker; the durable consumer spreads the jobs between them.
//!
//! A node that stops lets its running jobs finish until a deadline, then hands the unfinished
//! ones back to the backend, which delivers them again at once (to another node, or to this one
//! once it is back); they never wait out their ack wait.

mod worker;

use crate::invoke::Invoker;
use crate::metrics::Metrics;
use crate::registry::{Registry, RegistryHandle};
use crate::spec::{FunctionId, Name};
use crate::state::State;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use worker::{Worker, count_dead_jobs};

/// How often the dead-letter gauges are recounted.
const DEAD_JOBS_RECOUNT: Duration = Duration::from_secs(30);

/// The job workers of a node. Stop them with [`Workers::stop`].
pub struct Workers {
    stop: watch::Sender<bool>,
    hand_back: watch::Sender<bool>,
    node: Arc<Node>,
    task: JoinHandle<()>,
}

/// How the jobs running when the workers were stopped ended.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drained {
    /// Attempts handed back unfinished at the deadline, for redelivery.
    pub handed_back: usize,
}

impl Workers {
    /// Starts a worker for every function in `registry` now, and follows later deploys. Jobs
    /// come from `state`; each attempt runs through `invoker`.
    pub fn start(
        state: State,
        registry: RegistryHandle,
        metrics: Arc<Metrics>,
        invoker: Arc<Invoker>,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (hand_back, handing_back) = watch::channel(false);
        let handed_back = AtomicUsize::new(0);
        let node = Arc::new(Node { state, registry, metrics, invoker, handing_back, handed_back });
        let task = tokio::spawn(supervise(node.clone(), stopped));
        Self { stop, hand_back, node, task }
    }

    /// Stops fetching, lets the running jobs finish until `deadline`, then hands the unfinished
    /// ones back; returns once every worker has ended and let go of the state backend.
    pub async fn stop(mut self, deadline: Instant) -> Drained {
        let _ = self.stop.send(true);
        let ended = match tokio::time::timeout_at(deadline, &mut self.task).await {
            Ok(ended) => ended,
            Err(_) => {
                let _ = self.hand_back.send(true);
                self.task.await
            }
        };
        if let Err(err) = ended {
            tracing::error!("the job workers' supervisor failed: {err}");
        }
        Drained { handed_back: self.node.handed_back.load(Ordering::Relaxed) }
    }
}

/// What the workers of a node share.
struct Node {
    state: State,
    registry: RegistryHandle,
    metrics: Arc<Metrics>,
    invoker: Arc<Invoker>,
    /// Becomes true at the stop's deadline: every running attempt is handed back.
    handing_back: watch::Receiver<bool>,
    /// Attempts handed back so far.
    handed_back: AtomicUsize,
}

/// The workers this node runs, by function.
#[derive(Default)]
struct Fleet {
    running: HashMap<FunctionId, Worker>,
    /// Stopped workers still draining, by function: a returning function's new worker waits
    /// for its old one.
    draining: HashMap<FunctionId, JoinHandle<()>>,
}

async fn supervise(node: Arc<Node>, mut stopped: watch::Receiver<bool>) {
    let mut deploys = node.registry.subscribe();
    let mut fleet = Fleet::default();
    let recount = tokio::spawn(recount_dead_jobs(node.clone()));
    loop {
        fleet.reconcile(&node, &node.registry.current());
        tokio::select! {
            changed = deploys.changed() => if changed.is_err() { break },
            _ = stopped.wait_for(|stop| *stop) => break,
        }
    }
    recount.abort();
    fleet.stop().await;
}

/// Keeps the dead-letter gauges current when jobs leave the dead-letter queue (a redrive) or die
/// elsewhere (another node), and after a restart; a worker recounts at once when a job dies.
async fn recount_dead_jobs(node: Arc<Node>) {
    let mut ticks = tokio::time::interval(DEAD_JOBS_RECOUNT);
    loop {
        ticks.tick().await;
        let tenants: BTreeSet<Name> =
            node.registry.current().functions().map(|f| f.id.tenant.clone()).collect();
        for tenant in &tenants {
            count_dead_jobs(&node.state, &node.metrics, tenant).await;
        }
    }
}

impl Fleet {
    /// Makes the running workers match the registry's functions.
    fn reconcile(&mut self, node: &Arc<Node>, registry: &Registry) {
        self.draining.retain(|_, task| !task.is_finished());
        let gone: Vec<FunctionId> =
            self.running.keys().filter(|id| registry.get(id).is_none()).cloned().collect();
        for id in gone {
            let worker = self.running.remove(&id).expect("listed above");
            tracing::info!(function = %id, "stopping the job worker of a removed function");
            self.draining.insert(id, worker.stop());
        }
        for deployed in registry.functions() {
            let id = &*deployed.id;
            if !self.running.contains_key(id) {
                let after = self.draining.remove(id);
                let worker = Worker::spawn(node.clone(), deployed.clone(), after);
                self.running.insert(id.clone(), worker);
            }
        }
    }

    /// Stops every worker and waits for all of them, draining ones included.
    async fn stop(self) {
        let stopping = self.running.into_values().map(Worker::stop);
        let all: Vec<JoinHandle<()>> = stopping.chain(self.draining.into_values()).collect();
        for ended in futures::future::join_all(all).await {
            if let Err(err) = ended {
                tracing::error!("a job worker failed: {err}");
            }
        }
    }
}
