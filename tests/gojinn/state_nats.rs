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

/// A job of function `work`.
fn work(tenant: &Name) -> NewJob {
    NewJob {
        tenant: tenant.clone(),
        function: Name::new("work").unwrap(),
        payload: r#"{"n":1}"#.into(),
        idempotency_key: None,
        traceparent: None,
    }
}

/// A provisioned tenant on a single node of its own.
async fn solo() -> (NatsServer, State, Name) {
    let server = NatsServer::start().await;
    let state = connect(&server.url()).await;
    let tenant = Name::new("solo").unwrap();
    let resources =
        TenantResources { name: tenant.clone(), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
    state.provisioner.ensure_tenant(&resources).await.unwrap();
    (server, state, tenant)
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
    let resources =
        TenantResources { name: tenant.clone(), replicas: 3, kv_max_bytes: Some(1 << 20), kv_max_keys: None };
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
    // A just-created stream may still be electing its first leader.
    let id = through_failover("enqueue", || state.jobs.enqueue(work(&tenant))).await;
    cluster.kill(leader_of(&cluster, &names::jobs_stream(&tenant)).await);

    let policy = JobPolicy { max_deliver: 3, backoff: Vec::new(), ack_wait: Duration::from_secs(30) };
    let function = Name::new("work").unwrap();
    let delivery = through_failover("fetch", || async {
        let mut got = state.jobs.fetch(&tenant, &function, &policy, 1, Duration::from_secs(1)).await?;
        got.pop().ok_or_else(|| StateError::Unavailable("nothing delivered yet".into()))
    })
    .await;
    // A delivery cut short by the failover (pulled, then handed back) counts as an attempt.
    assert_eq!(delivery.job_id, id);
    let outcome = || Outcome::Succeeded { result: serde_json::json!("done") };
    let status = through_failover("finish", || state.jobs.finish(&delivery, &policy, outcome())).await;
    assert_eq!(status, JobStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_no_server_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{port}");
    match NatsBackend::connect(&url).await {
        Err(StateError::Unavailable(why)) => assert!(why.contains(&url), "{why}"),
        other => panic!("expected Unavailable, got {:?}", other.err()),
    }
}

/// A worker that dies during the last allowed attempt never reports; the job must still end in
/// the dead-letter queue when the delivery comes back, and be redrivable from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_last_attempt_crashed_is_dead_lettered() {
    let (_server, state, tenant) = solo().await;
    let function = Name::new("work").unwrap();
    let id = state.jobs.enqueue(work(&tenant)).await.unwrap();
    let policy = JobPolicy { max_deliver: 1, backoff: Vec::new(), ack_wait: Duration::from_millis(300) };
    let fetch = || state.jobs.fetch(&tenant, &function, &policy, 1, Duration::from_millis(100));
    let lost = fetch().await.unwrap();
    assert_eq!(lost.iter().map(|d| (d.job_id.as_str(), d.attempt)).collect::<Vec<_>>(), [(id.as_str(), 1)]);
    drop(lost); // the worker died: no progress, no finish

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(fetch().await.unwrap().is_empty(), "an exhausted job is not run again");
        let record = state.jobs.job(&tenant, &id).await.unwrap().expect("job record");
        if record.status == JobStatus::Dead {
            assert_eq!(record.attempts, 1);
            assert!(record.error.as_deref().is_some_and(|e| e.contains("never finished")), "{record:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the job was not dead-lettered: {record:?}");
    }
    state.jobs.redrive(&tenant, &id).await.unwrap();
    let again = fetch().await.unwrap();
    assert_eq!(again.iter().map(|d| (d.job_id.as_str(), d.attempt)).collect::<Vec<_>>(), [(id.as_str(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_returns_what_is_queued_without_waiting_for_a_full_batch() {
    let (_server, state, tenant) = solo().await;
    let id = state.jobs.enqueue(work(&tenant)).await.unwrap();
    let policy = JobPolicy { max_deliver: 3, backoff: Vec::new(), ack_wait: Duration::from_secs(30) };
    let started = Instant::now();
    let got =
        state.jobs.fetch(&tenant, &Name::new("work").unwrap(), &policy, 10, Duration::from_secs(5)).await;
    assert_eq!(got.unwrap().iter().map(|d| d.job_id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    assert!(started.elapsed() < Duration::from_secs(2), "the fetch took {:?}", started.elapsed());
}

/// A plain JetStream client of a single server, to change things behind the backend's back.
async fn raw(server: &NatsServer) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(server.url()).await.expect("connect to nats-server"))
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_reports_streams_changed_or_deleted_behind_the_backend() {
    let (server, state, tenant) = solo().await;
    let wanted = TenantResources { name: tenant.clone(), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
    assert_eq!(state.provisioner.drift(&wanted).await.unwrap(), Vec::<String>::new());
    let writes = state.control.writes();

    let js = raw(&server).await;
    let mut config = js.get_stream(kv_stream(&tenant)).await.unwrap().cached_info().config.clone();
    config.max_bytes = 4096;
    js.update_stream(&config).await.unwrap();
    js.delete_stream(names::dead_letter_stream(&tenant)).await.unwrap();
    assert_eq!(
        state.provisioner.drift(&wanted).await.unwrap(),
        [
            "stream KV_GOJINN_KV_SOLO: max_bytes 4096, want unlimited".to_owned(),
            "stream GOJINN_DLQ_SOLO is missing".to_owned(),
        ]
    );
    assert_eq!(state.control.writes(), writes, "drift only reads");

    assert!(state.provisioner.ensure_tenant(&wanted).await.unwrap(), "ensure repairs the drift");
    assert_eq!(state.provisioner.drift(&wanted).await.unwrap(), Vec::<String>::new());
    assert!(state.provisioner.remove_tenant(&tenant).await.unwrap());
    let missing = state.provisioner.drift(&wanted).await.unwrap();
    assert_eq!(missing.len(), 5, "removed: every stream is reported missing: {missing:?}");
    assert!(missing.iter().all(|line| line.ends_with("is missing")), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_module_blob_is_an_internal_error() {
    let (server, state, _tenant) = solo().await;
    let module = bytes::Bytes::from_static(b"\0asm the module");
    let sha = sha256(&module);
    assert!(state.control.put_blob(&sha, module).await.unwrap());
    // Someone replaces the object with other bytes (and a digest of its own that matches them).
    let store = raw(&server).await.get_object_store("GOJINN_MODULES").await.unwrap();
    store.put(sha.as_str(), &mut &b"\0asm another"[..]).await.unwrap();
    match state.control.blob(&sha).await {
        Err(StateError::Internal(why)) => assert!(why.contains("damaged") && why.contains(&sha), "{why}"),
        other => panic!("expected Internal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_bucket_is_created_again_after_it_was_deleted() {
    let (server, state, _tenant) = solo().await;
    assert!(state.control.put_record("a/b", "1".into()).await.unwrap());
    let js = raw(&server).await;
    let info = js.get_stream("KV_GOJINN_CONTROL").await.unwrap().cached_info().clone();
    assert_eq!((info.config.num_replicas, info.config.allow_direct), (1, false), "reads go to the leader");
    js.delete_stream("KV_GOJINN_CONTROL").await.unwrap();
    // The first call finds the cached bucket gone; later ones recreate it.
    let put = through_failover("put after deletion", || state.control.put_record("a/b", "2".into())).await;
    assert!(put, "the record was gone with its bucket");
    assert_eq!(
        state.control.records("a/").await.unwrap().get("a/b").map(|v| v.to_vec()),
        Some(b"2".to_vec())
    );
}

/// The reconciler lists every applied record on each pass: ten thousand must list in one scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_list_in_one_scan() {
    use futures::StreamExt;
    const COUNT: usize = 10_000;
    let (_server, state, _tenant) = solo().await;
    let value = bytes::Bytes::from(vec![b'r'; 512]);
    let started = Instant::now();
    let puts =
        futures::stream::iter(0..COUNT)
            .map(|i| {
                let (state, value) = (state.clone(), value.clone());
                async move {
                    state.control.put_record(&format!("tenants/t{}/functions/f{i}", i % 100), value).await
                }
            })
            .buffer_unordered(64);
    let wrote: Vec<_> = puts.collect().await;
    assert!(wrote.into_iter().all(|r| r.unwrap()));
    eprintln!("{COUNT} puts took {:?}", started.elapsed());
    state.control.put_record("other/x", value.clone()).await.unwrap();

    let started = Instant::now();
    let all = state.control.records("tenants/").await.unwrap();
    let took = started.elapsed();
    eprintln!("listing {COUNT} records took {took:?}");
    assert_eq!(all.len(), COUNT);
    assert!(all.values().all(|v| *v == value));
    assert!(took < Duration::from_secs(10), "listing took {took:?}");
    assert_eq!(state.control.records("tenants/t7/").await.unwrap().len(), COUNT / 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_128_mib_module_round_trips() {
    let (_server, state, _tenant) = solo().await;
    let module: bytes::Bytes = (0..128usize << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let sha = sha256(&module);
    let started = Instant::now();
    assert!(state.control.put_blob(&sha, module.clone()).await.unwrap());
    eprintln!("storing 128 MiB took {:?}", started.elapsed());
    let started = Instant::now();
    let read = state.control.blob(&sha).await.unwrap().expect("the blob");
    eprintln!("reading 128 MiB took {:?}", started.elapsed());
    assert!(read == module, "the bytes read are the bytes stored");
}

/// Two nodes of a cluster share the control bucket (replicated 3 ways): one's records are the
/// other's, and racing for a lease, exactly one of them wins every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_share_records_and_never_both_hold_a_lease() {
    let cluster = NatsCluster::start().await;
    let node = || async {
        let backend = NatsBackend::connect(&cluster.url()).await.expect("connect to the cluster");
        State::from_backend(Arc::new(backend.with_control_replicas(3).expect("3 replicas")))
    };
    let (a, b) = (node().await, node().await);
    // Just-created streams may still be electing their first leader.
    through_failover("first put", || a.control.put_record("applied/acme", "v1".into())).await;
    let seen = through_failover("read on the other node", || b.control.records("applied/")).await;
    assert_eq!(seen.get("applied/acme").map(|v| v.to_vec()), Some(b"v1".to_vec()));
    let module = bytes::Bytes::from_static(b"\0asm shared");
    let sha = sha256(&module);
    through_failover("put blob", || a.control.put_blob(&sha, module.clone())).await;
    assert_eq!(through_failover("blob on the other node", || b.control.blob(&sha)).await, Some(module));

    let js = inspect(&cluster).await;
    for stream in ["KV_GOJINN_CONTROL", "OBJ_GOJINN_MODULES"] {
        let info = js.get_stream(stream).await.unwrap().cached_info().clone();
        assert_eq!(info.config.num_replicas, 3, "{stream}");
    }

    let ttl = Duration::from_secs(30);
    for round in 0..10 {
        let lease = format!("race/{round}");
        let (took_a, took_b) = tokio::join!(
            through_failover("a acquires", || a.control.acquire_lease(&lease, "node-a", ttl)),
            through_failover("b acquires", || b.control.acquire_lease(&lease, "node-b", ttl)),
        );
        assert!(took_a ^ took_b, "round {round}: exactly one node holds the lease (a {took_a}, b {took_b})");
    }
    let lease = "reconcile";
    assert!(through_failover("a takes", || a.control.acquire_lease(lease, "node-a", ttl)).await);
    assert!(!through_failover("b is refused", || b.control.acquire_lease(lease, "node-b", ttl)).await);
    assert!(!through_failover("b cannot release", || b.control.release_lease(lease, "node-b")).await);
    assert!(through_failover("a releases", || a.control.release_lease(lease, "node-a")).await);
    assert!(through_failover("b takes", || b.control.acquire_lease(lease, "node-b", ttl)).await);
}
