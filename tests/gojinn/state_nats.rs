//! The state conformance suite against NATS JetStream on a single node (a server per test, so
//! each test owns and kills its own), and a 3-node cluster: replicas 3, and acknowledged KV
//! writes and queued jobs surviving the death of a node.

use crate::support::nats::{NatsCluster, NatsServer};
use futures::future::BoxFuture;
use gojinn::spec::Name;
use gojinn::state::nats::NatsBackend;
use gojinn::state::{JobPolicy, JobStatus, NewJob, Outcome, State, StateError, TenantResources, names};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Fresh storage: a nats-server of its own, and an opener connecting a new backend to it.
async fn storage() -> impl Fn() -> BoxFuture<'static, State> {
    let server = NatsServer::start().await;
    move || {
        let url = server.url();
        Box::pin(async move { connect(&url).await })
    }
}

crate::conformance_tests!(storage);

async fn connect(url: &str) -> State {
    State::from_backend(Arc::new(NatsBackend::connect(url).await.expect("connect to nats-server")))
}

/// Longest wait for a cluster to recover from the loss of a node (stream leader elections).
const FAILOVER: Duration = Duration::from_secs(30);

/// Retries `attempt` until it succeeds, while the cluster elects new leaders. Only
/// `Unavailable` is expected in the meantime; fails the test after [`FAILOVER`].
async fn through_failover<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StateError>>,
{
    let deadline = Instant::now() + FAILOVER;
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(StateError::Unavailable(why)) if Instant::now() < deadline => {
                eprintln!("{what}: unavailable, retrying: {why}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("{what} failed: {err:?}"),
        }
    }
}

/// A tenant with 3 replicas on a fresh 3-node cluster.
async fn replicated(label: &str) -> (NatsCluster, State, Name) {
    let cluster = NatsCluster::start().await;
    let state = connect(&cluster.url()).await;
    let tenant = Name::new(label).unwrap();
    let resources = TenantResources { name: tenant.clone(), replicas: 3, kv_max_bytes: Some(1 << 20) };
    assert!(state.provisioner.ensure_tenant(&resources).await.unwrap(), "the first ensure writes");
    assert!(!state.provisioner.ensure_tenant(&resources).await.unwrap(), "a second ensure writes nothing");
    (cluster, state, tenant)
}

/// A plain JetStream client of the cluster, to inspect what the backend made.
async fn inspect(cluster: &NatsCluster) -> async_nats::jetstream::Context {
    let seeds: Vec<String> = cluster.url().split(',').map(str::to_owned).collect();
    async_nats::jetstream::new(async_nats::connect(seeds.as_slice()).await.expect("connect to the cluster"))
}

/// The node leading `stream` (nodes are named `n<index>`).
async fn leader_of(cluster: &NatsCluster, stream: &str) -> usize {
    let info = inspect(cluster).await.get_stream(stream).await.unwrap().cached_info().clone();
    let leader = info.cluster.and_then(|c| c.leader).expect("the stream has a leader");
    leader.trim_start_matches('n').parse().expect("node names are n<index>")
}

fn kv_stream(tenant: &Name) -> String {
    format!("KV_{}", names::kv_bucket(tenant))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_provisions_every_stream_with_three_replicas() {
    let (cluster, _state, tenant) = replicated("replicas").await;
    let js = inspect(&cluster).await;
    for stream in [
        kv_stream(&tenant),
        format!("KV_{}", names::job_state_bucket(&tenant)),
        names::jobs_stream(&tenant),
        names::dead_letter_stream(&tenant),
        names::audit_stream(&tenant),
    ] {
        let info = js.get_stream(&stream).await.unwrap().cached_info().clone();
        assert_eq!(info.config.num_replicas, 3, "{stream} of {tenant}");
        assert_eq!(info.cluster.map(|c| c.replicas.len()), Some(2), "{stream} has two followers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_acknowledged_kv_writes_when_the_leader_dies() {
    let (mut cluster, state, tenant) = replicated("kvfailover").await;
    through_failover("first put", || state.kv.put(&tenant, "order/1", "paid".into())).await;
    cluster.kill(leader_of(&cluster, &kv_stream(&tenant)).await);

    let value = through_failover("get", || state.kv.get(&tenant, "order/1")).await;
    assert_eq!(value.as_deref(), Some(&b"paid"[..]), "an acknowledged write outlives its leader");
    through_failover("put", || state.kv.put(&tenant, "order/2", "new".into())).await;
    let value = through_failover("get", || state.kv.get(&tenant, "order/2")).await;
    assert_eq!(value.as_deref(), Some(&b"new"[..]), "writes go on with two of three nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_delivers_a_queued_job_after_its_leader_dies() {
    let (mut cluster, state, tenant) = replicated("jobfailover").await;
    let job = NewJob {
        tenant: tenant.clone(),
        function: Name::new("work").unwrap(),
        payload: r#"{"n":1}"#.into(),
        idempotency_key: None,
        traceparent: None,
    };
    // A just-created stream may still be electing its first leader.
    let id = through_failover("enqueue", || state.jobs.enqueue(job.clone())).await;
    cluster.kill(leader_of(&cluster, &names::jobs_stream(&tenant)).await);

    let policy = JobPolicy { max_deliver: 3, backoff: Vec::new(), ack_wait: Duration::from_secs(30) };
    let function = Name::new("work").unwrap();
    let delivery = through_failover("fetch", || async {
        let mut got = state.jobs.fetch(&tenant, &function, &policy, 1, Duration::from_secs(1)).await?;
        got.pop().ok_or_else(|| StateError::Unavailable("nothing delivered yet".into()))
    })
    .await;
    assert_eq!((delivery.job_id.as_str(), delivery.attempt), (id.as_str(), 1));
    let outcome = || Outcome::Succeeded { result: serde_json::json!("done") };
    let status = through_failover("finish", || state.jobs.finish(&delivery, &policy, outcome())).await;
    assert_eq!(status, JobStatus::Succeeded);
}
