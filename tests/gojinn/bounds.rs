//! Bounds a client or a guest meets, at their edges: the size of a job against what the state
//! backend stores for one (an async call refused with 413, a result kept cut with an error), on
//! the embedded backend's setting and on the NATS server's `max_payload`.

use crate::support::api::Api;
use crate::support::nats::NatsServer;
use crate::support::{Node, SpecDir, error_code, specs};
use gojinn::spec::{ByteSize, Name};
use gojinn::state::nats::NatsBackend;
use gojinn::state::{Jobs, NewJob, Provisioner, StateError, TenantResources};

/// What the embedded node of these tests stores for one job.
const MAX_JOB_BYTES: usize = 64 << 10;

#[tokio::test]
async fn an_async_call_past_the_job_bound_is_413_and_a_result_past_it_is_kept_cut_with_an_error() {
    let dir = SpecDir::new();
    dir.module("guest-state");
    let grants = r#"grants: { kv: { read: ["*"], write: ["*"] } }"#;
    dir.write("specs.yaml", &specs("acme", "", &[("state", "guest-state", grants)]));
    let data = tempfile::tempdir().unwrap();
    let mut config = Node::config(dir.path(), data.path());
    config.state.max_job_bytes = ByteSize(MAX_JOB_BYTES as u64);
    let node = Node::start_config(config, data).await;
    let api = Api::of(&node);

    let refused = api.call_async("/acme/state", &[], &"x".repeat(MAX_JOB_BYTES)).await;
    let (status, code, message) = error_code(refused).await;
    assert_eq!((status, code.as_str()), (413, "job_too_large"), "{message}");
    assert!(message.contains(&format!("more than the {MAX_JOB_BYTES} bytes")), "{message}");
    let listed: serde_json::Value = api.admin(reqwest::Method::GET, "acme/jobs").await.json().await.unwrap();
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(0), "nothing was queued: {listed}");

    // A small call whose answer (a 100,000-byte KV value) is larger than a job's result may be.
    let ops = r#"[{"op":"kv_set","key":"big","value":"x","repeat":100000},{"op":"kv_get","key":"big"}]"#;
    let id = api.enqueue("/acme/state", &[], ops).await;
    let job = api.wait_for(&id, "succeeded").await;
    let error = job["error"].as_str().expect("the cut is recorded as the job's error");
    assert!(
        error.contains(&format!(
            "more than the {MAX_JOB_BYTES} bytes the state backend stores for a job's result"
        )) && error.contains("its body cut to its first"),
        "{error}"
    );
    assert_eq!(job["result"]["status"], 200);
    let body = job["result"]["body"].as_str().expect("the body is kept, cut");
    assert!(body.starts_with(r#"[{"ok":null},{"ok":"xxxx"#) && body.len() < MAX_JOB_BYTES, "{}", body.len());
    assert!(body.len() > MAX_JOB_BYTES - 1024, "cut to fit, not emptied: {} bytes", body.len());
}

#[tokio::test]
async fn on_nats_a_job_is_bounded_by_the_servers_max_payload_at_its_edge() {
    let server = NatsServer::start().await;
    let backend = NatsBackend::connect(&server.url()).await.expect("connect to nats-server");
    // The test server runs with `max_payload: 8MB`; 8 KiB stay for headers and the record.
    let max = (8 << 20) - (8 << 10);
    assert_eq!(backend.max_job_bytes(), max);
    let tenant = Name::new("acme").unwrap();
    let resources =
        TenantResources { name: tenant.clone(), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
    backend.ensure_tenant(&resources).await.unwrap();
    let job = |bytes: usize| NewJob {
        tenant: tenant.clone(),
        function: Name::new("work").unwrap(),
        payload: vec![b'x'; bytes].into(),
        idempotency_key: None,
        traceparent: None,
    };
    let id = backend.enqueue(job(max)).await.expect("a payload at the bound is queued");
    assert!(backend.job(&tenant, &id).await.unwrap().is_some());
    match backend.enqueue(job(max + 1)).await {
        Err(StateError::Quota(message)) => {
            assert!(message.contains(&format!("more than the {max} bytes")), "{message}")
        }
        other => panic!("one byte past the bound: {other:?}"),
    }
}
