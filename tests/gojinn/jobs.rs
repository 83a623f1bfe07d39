//! Async jobs over real HTTP with real guests: the scenarios that run on both state backends
//! (`jobs_embedded`, `jobs_nats`), with the client and child node of `support::api`. Waiting is
//! always a poll against a deadline.

use crate::support::api::{Api, ChildNode, TRACEPARENT, WITHIN, result_body};
use crate::support::{SpecDir, specs};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One function of guest-jobprobe, answering `status`, with fast retries.
pub fn probe_specs(dir: &SpecDir, status: u16) {
    let function = format!(
        "env: {{ STATUS: \"{status}\" }}\njobs: {{ maxDeliver: 2, backoff: [50ms] }}\nlimits: {{ timeout: 2s }}"
    );
    dir.write("specs.yaml", &specs("acme", "", &[("probe", "guest-jobprobe", &function)]));
}

/// Scenario on `probe_specs(dir, 200)`: 202 with Location, the guest's result once succeeded,
/// Prefer: respond-async acknowledged, and one job per idempotency key.
pub async fn async_calls_succeed_with_the_guests_result(api: &Api) {
    let id = api.enqueue("/acme/probe", &[("traceparent", TRACEPARENT)], "payload").await;
    assert!(id.starts_with("acme.") && id.len() == "acme.".len() + 32, "{id}");
    let job = api.wait_for(&id, "succeeded").await;
    assert_eq!((job["attempts"].as_u64(), job["error"].as_str()), (Some(1), None), "{job:#}");
    assert_eq!((job["tenant"].as_str(), job["function"].as_str()), (Some("acme"), Some("probe")));
    assert!(job["created_ms"].as_u64() <= job["updated_ms"].as_u64());
    assert_eq!(job["result"]["status"], 200);
    let seen = result_body(&job);
    assert_eq!(seen["job_id"], id.as_str(), "the guest saw its job id");
    assert_eq!(seen["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "the trace goes on in the job");
    assert_eq!(seen["body"], "payload");

    let response = api.call_async("/acme/probe", &[("prefer", "respond-async")], "").await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["preference-applied"], "respond-async");

    let key = [("idempotency-key", "order-42")];
    let first = api.enqueue("/acme/probe", &key, "once").await;
    let again = api.enqueue("/acme/probe", &key, "once").await;
    assert_eq!(first, again, "the same key is the same job");
    assert_ne!(first, api.enqueue("/acme/probe", &[("idempotency-key", "order-43")], "").await);
    let job = api.wait_for(&first, "succeeded").await;
    assert_eq!(job["attempts"], 1, "the deduplicated job ran once: {job:#}");
}

/// Scenario on `probe_specs(dir, 503)`: a failing job is retried, then dead and listed as dead;
/// fixed by a redeploy and redriven, it runs again on the new revision and succeeds.
pub async fn dead_jobs_are_listed_and_redriven(dir: &SpecDir, api: &Api) {
    let id = api.enqueue("/acme/probe", &[], "").await;
    let dead = api.wait_for(&id, "dead").await;
    assert_eq!(dead["attempts"], 2, "maxDeliver 2: {dead:#}");
    assert!(dead["error"].as_str().unwrap().contains("503"), "{dead:#}");

    let listed = api.admin(reqwest::Method::GET, "acme/jobs?status=dead").await;
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    let ids: Vec<&str> = listed["jobs"].as_array().unwrap().iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids, [id.as_str()]);
    let succeeded = api.admin(reqwest::Method::GET, "acme/jobs?status=succeeded").await;
    assert_eq!(succeeded.json::<Value>().await.unwrap()["jobs"], serde_json::json!([]));

    probe_specs(dir, 200);
    let deadline = Instant::now() + WITHIN;
    while api.http.get(format!("{}/acme/probe", api.base)).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "the fixed revision was not deployed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let redriven = api.admin(reqwest::Method::POST, &format!("acme/jobs/{id}/redrive")).await;
    assert_eq!(redriven.status(), 202);
    let job = api.wait_for(&id, "succeeded").await;
    assert_eq!(job["attempts"], 1, "a redrive starts counting again: {job:#}");
    assert_eq!(job["result"]["status"], 200);

    let again = api.admin(reqwest::Method::POST, &format!("acme/jobs/{id}/redrive")).await;
    assert_eq!(again.status(), 409, "only a dead job can be redriven");
}

/// guest-slow serving `/acme/slow` with a timeout of 3s and the shortest ack wait (1s, so 4s).
pub fn slow_specs() -> SpecDir {
    let dir = SpecDir::new();
    dir.module("guest-slow");
    let function = "limits: { timeout: 3s }\njobs: { ackWait: 1s, maxDeliver: 3, backoff: [50ms] }";
    dir.write("specs.yaml", &specs("acme", "", &[("slow", "guest-slow", function)]));
    dir
}

/// Scenario on `slow_specs`: a job running when its node is killed with SIGKILL runs again on
/// the restarted node and succeeds, its record showing the redelivery.
pub async fn a_job_outlives_a_kill_9_of_its_node(nats: Option<&str>) {
    let dir = slow_specs();
    let data = tempfile::tempdir().unwrap();

    let node = ChildNode::start(dir.path(), data.path(), nats).await;
    let id = node.api.enqueue("/acme/slow?ms=1500", &[], "").await;
    let running = node.api.wait_for(&id, "running").await;
    assert_eq!(running["attempts"], 1);
    node.kill_9();

    let node = ChildNode::start(dir.path(), data.path(), nats).await;
    let job = node.api.wait_for(&id, "succeeded").await;
    assert_eq!(
        job["attempts"],
        2,
        "the attempt cut short by the kill, then one to success: {job:#}\n{}",
        node.log()
    );
    assert_eq!(job["error"], Value::Null);
    assert_eq!(job["result"]["body"], "slept 1500");
}
