//! `host_enqueue` through a real guest: only functions of the caller's own tenant named in its
//! `grants.enqueue`, with the job's request envelope built by the host.

use crate::support::host::{error, node, ok, run};
use gojinn::spec::Name;
use gojinn::state::{JobPolicy, JobStatus};
use serde_json::{Value, json};
use std::time::Duration;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn enqueue(function: &str, payload: &str) -> Value {
    json!({"op": "enqueue", "function": function, "payload": payload})
}

#[tokio::test]
async fn host_enqueue_only_for_granted_functions_of_the_same_tenant() {
    // `later` is granted but not deployed, so no worker takes its jobs before the test reads them.
    let (_dir, node) =
        node(&[("a", &[("caller", "grants: { enqueue: [later] }")]), ("b", &[("secret", "")])]).await;
    let ops = json!([
        enqueue("later", r#"{"size": 3}"#),
        enqueue("secret", "x"),
        enqueue("b/secret", "x"),
        enqueue("caller", "x"),
    ]);
    let response = node
        .client
        .post(node.url("/a/caller"))
        .header("traceparent", TRACEPARENT)
        .json(&ops)
        .send()
        .await
        .unwrap();
    let results: Vec<Value> = response.json().await.unwrap();
    let public_id = ok(&results[0]).as_str().expect("a job id").to_owned();
    let status = node.get(&format!("/_gojinn/v1/jobs/{public_id}")).await;
    assert_eq!(status.status(), 200, "the id a guest gets is the one the status API takes");
    let id = gojinn::jobs::JobId::parse(&public_id).expect("a public job id").key().to_owned();
    for denied in &results[1..] {
        let (code, message) = error(denied);
        assert_eq!(code, "denied", "{denied}");
        assert!(message.contains("grants.enqueue"), "{message}");
    }

    let (a, b, later) = (Name::new("a").unwrap(), Name::new("b").unwrap(), Name::new("later").unwrap());
    let jobs = &node.server.state().jobs;
    let record = jobs.job(&a, &id).await.unwrap().expect("the job exists in tenant a");
    assert_eq!((record.function.as_str(), record.status), ("later", JobStatus::Queued));
    assert!(jobs.job(&b, &id).await.unwrap().is_none(), "tenant b cannot see it");

    let policy = JobPolicy { max_deliver: 1, backoff: Vec::new(), ack_wait: Duration::from_secs(60) };
    let deliveries = jobs.fetch(&a, &later, &policy, 1, Duration::from_secs(10)).await.unwrap();
    let envelope: Value = serde_json::from_slice(&deliveries[0].payload).unwrap();
    assert_eq!((envelope["method"].as_str(), envelope["uri"].as_str()), (Some("POST"), Some("/a/later")));
    assert_eq!(envelope["body"], r#"{"size": 3}"#);
    assert_eq!(envelope["headers"]["content-type"], json!(["application/json"]));
    assert_eq!((envelope["tenant"].as_str(), envelope["function"].as_str()), (Some("a"), Some("later")));
    assert_eq!(envelope["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "the caller's trace continues");
    let traceparent = deliveries[0].traceparent.as_deref().unwrap_or_default();
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{traceparent}");
}

#[tokio::test]
async fn host_enqueue_without_a_grant_is_denied() {
    let (_dir, node) = node(&[("a", &[("caller", ""), ("worker", "")])]).await;
    let results = run(&node, "/a/caller", enqueue("worker", "x")).await;
    assert_eq!(error(&results[0]).0, "denied");
}
