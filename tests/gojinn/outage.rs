//! Outages of the state backend, on a real nats-server stopped (SIGKILL) and started again on
//! the same port and store: readiness tells the truth while it is down and after; calls that
//! need it fail at once with 503 `unavailable` (guests with `-5`) instead of waiting; and the
//! audit log verifies afterwards with no record stored twice, whether the outage is shorter or
//! longer than the audit stream's duplicate window, or an append's acknowledgement is lost.

use crate::receipts::{self, verify_nats};
use crate::support::api::{Api, WITHIN};
use crate::support::nats::NatsServer;
use crate::support::{Node, SpecDir, error_code, specs};
use gojinn::audit::{ReceiptDraft, Record, Recorder, Trigger, log};
use gojinn::config::{AuditSettings, Durability, NodeConfig};
use gojinn::metrics::Metrics;
use gojinn::spec::{Name, Span};
use gojinn::state::nats::NatsBackend;
use gojinn::state::{AuditLog, Provisioner, StateError, TenantResources, names};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `state.timeout` of the nodes here: how long a call may wait for NATS.
pub(crate) const BOUND: Duration = Duration::from_secs(2);
/// The longest a call that needs NATS may take while it is down: a host call, then its receipt,
/// each bounded by [`BOUND`], and the guest's own time.
const CALL_BOUND: Duration = Duration::from_secs(6);

/// hello (its jobs redelivered soon after an attempt whose end was not recorded), and `state`
/// (the guest-state test guest) with every KV grant, for tenant acme.
fn spec_dir() -> SpecDir {
    let dir = SpecDir::new();
    dir.module("hello").module("guest-state");
    let functions = [
        (
            "hello",
            "hello",
            "limits: { timeout: 1s }\njobs: { maxDeliver: 20, backoff: [100ms], ackWait: 3s }",
        ),
        ("state", "guest-state", r#"grants: { kv: { read: ["*"], write: ["*"] } }"#),
    ];
    dir.write("specs.yaml", &specs("acme", "", &functions));
    dir
}

/// A node named `name` on NATS at `url` whose calls wait at most [`BOUND`] for it.
pub(crate) async fn start(specs: &Path, url: &str, name: &str, durability: Durability) -> Node {
    let data = tempfile::tempdir().unwrap();
    let mut config: NodeConfig = Node::nats_config(specs, data.path(), url);
    config.state.timeout = Span(BOUND);
    config.audit = AuditSettings { node: Some(name.into()), durability, ..AuditSettings::default() };
    let node = Node::start_config(config, data).await;
    assert!(node.server.first_deploy().errors.is_empty(), "{:?}", node.server.first_deploy().errors);
    node
}

/// `/_gojinn/ready`: its status and body.
async fn readiness(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/_gojinn/ready")).await.expect("GET /_gojinn/ready");
    (response.status().as_u16(), response.json().await.expect("a JSON body"))
}

/// Polls readiness until it answers `status`; returns the body.
async fn until_readiness(base: &str, status: u16) -> Value {
    let deadline = Instant::now() + WITHIN;
    loop {
        let (now, body) = readiness(base).await;
        if now == status {
            return body;
        }
        assert!(Instant::now() < deadline, "readiness still {now} after {WITHIN:?}: {body:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether readiness gives, among its reasons, one that starts with `start`.
fn gives_reason(body: &Value, start: &str) -> bool {
    body["reasons"].as_array().is_some_and(|r| r.iter().any(|r| r.as_str().unwrap().starts_with(start)))
}

/// Runs `state` with `ops`; returns the status, the answer and how long it took.
async fn state(node: &Node, ops: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = node.post("/acme/state", ops.to_owned()).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nats_is_down_readiness_says_why_and_calls_needing_it_fail_at_once() {
    let mut nats = NatsServer::start().await;
    let dir = spec_dir();
    let node = start(dir.path(), &nats.url(), "node-a", Durability::Async).await;
    let base = node.url("");
    let (status, body) = readiness(&base).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")), "{body:#}");
    let (status, answer, _) = state(&node, r#"{"op":"kv_set","key":"k","value":"v"}"#).await;
    assert_eq!((status, answer), (200, json!([{ "ok": null }])));

    nats.stop();
    let body = until_readiness(&base, 503).await;
    assert_eq!(body["status"], "not_ready");
    assert!(gives_reason(&body, "the state backend is unreachable: not connected to NATS"), "{body:#}");
    assert!(!body.to_string().contains("127.0.0.1"), "readiness names no address: {body:#}");
    assert_eq!(node.get("/_gojinn/health").await.status(), 200, "still alive");

    // A guest's KV call gets -5 (`unavailable`) at once, without waiting for NATS to come back.
    let (status, answer, took) = state(&node, r#"{"op":"kv_get","key":"k"}"#).await;
    assert_eq!((status, answer[0]["error"].as_str()), (200, Some("unavailable")), "{answer:#}");
    assert!(took < BOUND, "a KV call waited {took:?} for a NATS that is down");
    // What needs no state keeps serving; with async receipts, its receipt goes to the node's
    // spool on its disk.
    let (status, _) = receipts::call(&node, "/acme/hello").await;
    assert_eq!(status, 200);
    // An async call needs the job queue: 503 unavailable at once.
    let api = Api::of(&node);
    let started = Instant::now();
    let response = api.call_async("/acme/hello", &[], "").await;
    assert_eq!(response.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"), "{message}");
    assert!(started.elapsed() < BOUND, "an async call waited {:?}", started.elapsed());

    nats.restart().await;
    until_readiness(&base, 200).await;
    let (status, answer, _) = state(&node, r#"{"op":"kv_get","key":"k"}"#).await;
    assert_eq!((status, answer), (200, json!([{ "ok": "v" }])));
    let data = receipts::stop(node).await;
    let (code, report) = verify_nats(&nats.url(), &data.path().join("audit.key"));
    assert_eq!(
        (code, report["checked"].as_u64(), report["repeated"].as_u64()),
        (0, Some(4), Some(0)),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sync_receipts_a_call_is_refused_before_it_runs_while_nats_is_down() {
    let mut nats = NatsServer::start().await;
    let dir = spec_dir();
    let node = start(dir.path(), &nats.url(), "node-a", Durability::Sync).await;
    nats.stop();
    until_readiness(&node.url(""), 503).await;
    let started = Instant::now();
    let response = node.get("/acme/hello").await;
    assert!(response.headers().get(receipts::RECEIPT).is_none(), "it did not run: no receipt");
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"), "{message}");
    assert!(message.contains("receipts cannot be recorded now"), "{message}");
    assert!(started.elapsed() < BOUND, "the call waited {:?}", started.elapsed());
    nats.restart().await;
    until_readiness(&node.url(""), 200).await;
    assert_eq!(receipts::call(&node, "/acme/hello").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_until_the_first_reconcile_has_deployed() {
    let dir = spec_dir();
    let data = tempfile::tempdir().unwrap();
    let config = Arc::new(Node::config(dir.path(), data.path()));
    let metrics = Arc::new(Metrics::new());
    let runtime =
        Arc::new(gojinn::runtime::Runtime::new(config.runtime.pool(), None, metrics.clone()).unwrap());
    let state = gojinn::state::open(&config.state, &config.data_dir).await.unwrap();
    let registry = gojinn::registry::RegistryHandle::default();
    let deployment =
        gojinn::deploy::Deployment::new(&config, runtime.clone(), state.clone(), registry.clone());
    let controller = gojinn::reconcile::controller::Controller::new(
        &config,
        state.clone(),
        Arc::new(deployment),
        metrics.clone(),
    );
    let controller = Arc::new(controller);
    let recorder = Recorder::start(&config.audit, data.path(), state.audit.clone(), metrics.clone(), []);
    let recorder = Arc::new(recorder.await.unwrap());
    let reachability = state.reachability.clone();
    let invoker = gojinn::invoke::Invoker::new(runtime, recorder.clone(), metrics.clone(), reachability);
    let edge = gojinn::edge::Edge {
        state: state.clone(),
        registry,
        passes: controller.requests(),
        admin_token: gojinn::api::AdminToken::load(None, data.path()).unwrap(),
        webhook_secret: None,
        metrics,
        recorder,
        invoker: Arc::new(invoker),
        mcp_origins: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = tokio::spawn(
        axum::serve(listener, gojinn::edge::router(Arc::new(edge), gojinn::edge::Surfaces::All))
            .into_future(),
    );

    let (status, body) = readiness(&base).await;
    assert_eq!(status, 503, "{body:#}");
    assert!(gives_reason(&body, "the first reconcile pass has not deployed yet"), "{body:#}");
    assert!(controller.pass().await.errors.is_empty());
    let (status, body) = readiness(&base).await;
    assert_eq!((status, body["functions"].as_u64()), (200, Some(2)), "{body:#}");
    serving.abort();
}

/// The audit stream of `tenant`, straight from JetStream.
async fn audit_stream(nats: &NatsServer, tenant: &Name) -> async_nats::jetstream::stream::Stream {
    let raw = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    raw.get_stream(names::audit_stream(tenant)).await.unwrap()
}

async fn duplicate_window(nats: &NatsServer, tenant: &Name) -> Duration {
    audit_stream(nats, tenant).await.info().await.unwrap().config.duplicate_window
}

/// Sets the duplicate window of `tenant`'s audit stream, as an operator could (nothing of the
/// node changes it back until a reconcile pass).
async fn set_duplicate_window(nats: &NatsServer, tenant: &Name, window: Duration) {
    let raw = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let config = audit_stream(nats, tenant).await.info().await.unwrap().config.clone();
    raw.update_stream(async_nats::jetstream::stream::Config { duplicate_window: window, ..config })
        .await
        .unwrap();
}

/// What one call of the load did.
struct Answered {
    status: u16,
    code: Option<String>,
    receipt: Option<String>,
    took: Duration,
}

/// One sync call of `path` with `body`.
async fn answered(node: &Node, path: &str, body: &str) -> Answered {
    let started = Instant::now();
    let response = node.post(path, body.to_owned()).await;
    let took = started.elapsed();
    let receipt = response.headers().get(receipts::RECEIPT).map(|v| v.to_str().unwrap().to_owned());
    let status = response.status().as_u16();
    let code = match status {
        200 => None,
        _ => Some(response.json::<Value>().await.unwrap()["code"].as_str().unwrap_or_default().to_owned()),
    };
    Answered { status, code, receipt, took }
}

/// Calls hello and a KV function and queues hello jobs, in rounds, while NATS is stopped for
/// `outage` and started again (the audit stream's duplicate window set to `window` first, when
/// given); then checks what every call answered, that every job ran, and that the log verifies
/// with every receipt a response named and none twice.
async fn restart_under_load(window: Option<Duration>, outage: Duration) {
    let mut nats = NatsServer::start().await;
    let dir = spec_dir();
    let node = start(dir.path(), &nats.url(), "node-a", Durability::Sync).await;
    let tenant = Name::new("acme").unwrap();
    if let Some(window) = window {
        set_duplicate_window(&nats, &tenant, window).await;
    }
    let api = Api::of(&node);
    let (done, succeeded) = (AtomicBool::new(false), AtomicUsize::new(0));
    let (mut calls, mut jobs) = (Vec::new(), Vec::new());
    let load = async {
        while !done.load(Ordering::SeqCst) {
            for (path, body) in
                [("/acme/hello", ""), ("/acme/state", r#"{"op":"kv_set","key":"n","value":"1"}"#)]
            {
                let call = answered(&node, path, body).await;
                if call.status == 200 {
                    succeeded.fetch_add(1, Ordering::SeqCst);
                }
                calls.push(call);
            }
            let response = api.call_async("/acme/hello", &[], "").await;
            match response.status().as_u16() {
                202 => {
                    jobs.push(response.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_owned())
                }
                status => {
                    assert_eq!(error_code(response).await.1, "unavailable", "an async call got {status}")
                }
            }
        }
    };
    // Waits until `more` calls have succeeded since it was called.
    let after_successes = |more: usize| {
        let (succeeded, target) = (&succeeded, succeeded.load(Ordering::SeqCst) + more);
        async move {
            let deadline = Instant::now() + WITHIN;
            while succeeded.load(Ordering::SeqCst) < target {
                assert!(Instant::now() < deadline, "calls did not succeed within {WITHIN:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let outage = async {
        after_successes(10).await;
        nats.stop();
        // The outage itself: a duration of the scenario, not a wait for anything.
        tokio::time::sleep(outage).await;
        nats.restart().await;
        until_readiness(&node.url(""), 200).await;
        after_successes(10).await;
        done.store(true, Ordering::SeqCst);
    };
    tokio::join!(load, outage);

    for call in &calls {
        match call.status {
            200 => assert!(call.receipt.is_some(), "a 200 without its receipt"),
            503 => assert_eq!(call.code.as_deref(), Some("unavailable")),
            other => panic!("a call answered {other} ({:?})", call.code),
        }
        assert!(call.took < CALL_BOUND, "a call took {:?} (status {})", call.took, call.status);
    }
    assert!(calls.iter().any(|c| c.status == 503), "no call met the outage");
    assert!(calls.last().is_some_and(|c| c.status == 200), "calls succeed again after the restart");
    for job in &jobs {
        api.wait_for(job, "succeeded").await;
    }
    if let Some(window) = window {
        assert_eq!(duplicate_window(&nats, &tenant).await, window, "the window stayed as the test set it");
    }

    let data = receipts::stop(node).await;
    let (code, report) = verify_nats(&nats.url(), &data.path().join("audit.key"));
    assert_eq!(
        (code, report["ok"].as_bool(), report["repeated"].as_u64()),
        (0, Some(true), Some(0)),
        "{report:#}"
    );
    let backend = NatsBackend::connect(&nats.url()).await.unwrap();
    let stored: Vec<String> = log::read_all(&backend, &tenant)
        .await
        .unwrap()
        .iter()
        .filter_map(|(_, record)| match Record::decode(record).unwrap() {
            Record::Receipts(receipts) => Some(receipts),
            Record::Checkpoint(_) => None,
        })
        .flatten()
        .map(|receipt| receipt.id)
        .collect();
    for named in calls.iter().filter_map(|c| c.receipt.as_ref()) {
        assert!(stored.contains(named), "receipt {named}, named by a response, is not in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_shorter_than_the_duplicate_window_under_calls_and_jobs_leaves_a_log_that_verifies() {
    restart_under_load(None, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_longer_than_the_duplicate_window_under_calls_and_jobs_leaves_a_log_that_verifies() {
    restart_under_load(Some(Duration::from_secs(1)), Duration::from_secs(4)).await;
}

/// The real NATS backend, with the acknowledgement of its first append lost: the record is
/// stored, and the caller is told it failed `after` later.
struct LostAck {
    backend: Arc<NatsBackend>,
    after: Duration,
    lose: AtomicBool,
}

#[async_trait::async_trait]
impl AuditLog for LostAck {
    async fn append(&self, tenant: &Name, record: bytes::Bytes) -> Result<u64, StateError> {
        let sequence = self.backend.append(tenant, record).await?;
        if !self.lose.swap(false, Ordering::SeqCst) {
            return Ok(sequence);
        }
        tokio::time::sleep(self.after).await;
        Err(StateError::Unavailable("the acknowledgement was lost".into()))
    }

    async fn read(&self, tenant: &Name, from: u64, limit: usize) -> Result<Vec<log::Stored>, StateError> {
        self.backend.read(tenant, from, limit).await
    }
}

/// A receipt draft of tenant acme.
fn draft() -> ReceiptDraft {
    ReceiptDraft {
        tenant: "acme".into(),
        function: "hello".into(),
        module_sha256: "ab".repeat(32),
        revision: "r1".into(),
        trigger: Trigger::Http,
        started_ms: 1,
        ended_ms: 2,
        status: "ok".into(),
        http_status: 200,
        memory_limit: 1 << 20,
        timeout_ms: 500,
        cpu_limit_ms: None,
        wall_us: 12,
        cpu_us: 10,
        input_sha256: "cd".repeat(32),
        output_sha256: "ef".repeat(32),
        host_calls: Default::default(),
        attempt: 1,
        job_id: None,
        trace_id: "t".into(),
    }
}

/// Provisions `tenant` on `backend`, its audit stream's duplicate window set to `window`.
async fn provision(nats: &NatsServer, backend: &NatsBackend, tenant: &Name, window: Duration) {
    let resources =
        TenantResources { name: tenant.clone(), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
    backend.ensure_tenant(&resources).await.unwrap();
    set_duplicate_window(nats, tenant, window).await;
}

/// Records two receipts through a recorder whose first append's acknowledgement is lost and
/// reported `after` it was stored, on an audit stream with a duplicate window of one second;
/// the log then holds each receipt once and verifies.
async fn lose_an_acknowledgement(after: Duration) {
    let nats = NatsServer::start().await;
    let backend = Arc::new(NatsBackend::connect(&nats.url()).await.unwrap());
    let window = Duration::from_secs(1);
    let (tenant, probe) = (Name::new("acme").unwrap(), Name::new("probe").unwrap());
    provision(&nats, &backend, &tenant, window).await;
    provision(&nats, &backend, &probe, window).await;

    // The stream itself drops a repeat within its window.
    let record = bytes::Bytes::from_static(b"{\"probe\":1}");
    assert_eq!(backend.append(&probe, record.clone()).await.unwrap(), 1);
    assert_eq!(backend.append(&probe, record).await.unwrap(), 1, "the repeat is the record stored");
    assert_eq!(backend.read(&probe, 1, 10).await.unwrap().len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let lost = Arc::new(LostAck { backend: backend.clone(), after, lose: true.into() });
    let settings = AuditSettings { node: Some("node-a".into()), ..AuditSettings::default() };
    let recorder = Recorder::start(&settings, dir.path(), lost, Arc::new(Metrics::new()), [tenant.clone()])
        .await
        .unwrap();
    // Its caller may be told it is not appended yet; it is appended all the same.
    let _ = recorder.record(draft()).await;
    recorder.record(draft()).await.unwrap();
    recorder.stop().await;

    let records: Vec<_> =
        log::read_all(&*backend, &tenant).await.unwrap().into_iter().map(|(_, r)| r).collect();
    assert_eq!(records.len(), 3, "two receipts and a checkpoint, none twice: {records:?}");
    let keys = gojinn::audit::read_keyring(&dir.path().join("audit.key"), &[], false).unwrap();
    let verdict = gojinn::audit::verify(&keys, "acme", &records, gojinn::audit::Window::ALL);
    assert_eq!((verdict.first_bad, verdict.checked, verdict.repeated), (None, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_lost_within_the_duplicate_window_stores_the_record_once() {
    lose_an_acknowledgement(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_lost_longer_than_the_duplicate_window_is_found_in_the_log_before_a_retry() {
    lose_an_acknowledgement(Duration::from_secs(3)).await;
}
