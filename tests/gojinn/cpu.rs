//! CPU time: each call's receipt says how long its guest ran on a core (`cpu_us`) apart from the
//! wall-clock time it took (`wall_us`), the metrics add it up per function, and `limits.cpu`
//! ends a call that runs past its CPU budget, never one that only waits.

use crate::receipts::call;
use crate::support::{Node, SpecDir, specs};
use serde_json::Value;

/// `guest-slow` as `work` (busy-waits `?ms=N`, sleeps in the host `?sleep=N`) and `guest-loop` as
/// `spin`, both with `limits` for tenant acme.
fn spec_dir(limits: &str) -> SpecDir {
    let dir = SpecDir::new();
    dir.module("guest-slow").module("guest-loop");
    let functions = [("work", "guest-slow", limits), ("spin", "guest-loop", limits)];
    dir.write("specs.yaml", &specs("acme", "", &functions));
    dir
}

/// The `execution` of receipt `id`, read over the admin API.
async fn execution(node: &Node, id: &str) -> Value {
    let path = format!("/_gojinn/v1/receipts/{id}");
    let response = crate::support::api::admin(node, reqwest::Method::GET, &path).await;
    assert_eq!(response.status(), 200, "receipt {id}");
    let receipt: Value = response.json().await.unwrap();
    receipt["execution"].clone()
}

fn micros(execution: &Value, field: &str) -> u64 {
    execution[field].as_u64().unwrap_or_else(|| panic!("no {field} in {execution}"))
}

#[tokio::test]
async fn a_receipt_counts_cpu_time_apart_from_wall_time_and_the_metrics_add_it_up() {
    let dir = spec_dir("limits: { timeout: 5s }");
    let node = Node::start(&dir).await;

    let (status, id) = call(&node, "/acme/work?sleep=300").await;
    assert_eq!(status, 200);
    let waited = execution(&node, &id).await;
    let (wall, cpu) = (micros(&waited, "wall_us"), micros(&waited, "cpu_us"));
    assert!(wall >= 300_000, "a call that sleeps 300 ms in the host took {wall} µs of wall time");
    assert!(cpu < 100_000, "sleeping in the host is not CPU time: {cpu} µs of {wall} µs");

    let (status, id) = call(&node, "/acme/work?ms=300").await;
    assert_eq!(status, 200);
    let busy = execution(&node, &id).await;
    let (wall, cpu) = (micros(&busy, "wall_us"), micros(&busy, "cpu_us"));
    assert!(cpu <= wall, "one guest cannot use more CPU ({cpu} µs) than wall time ({wall} µs)");
    // How much of its 300 ms a spinning guest gets depends on what else the machine runs (a few
    // tenths of it on a loaded 2-core machine), so it is compared with the call that slept, not
    // with its own wall time.
    let slept = micros(&waited, "cpu_us");
    assert!(cpu >= 10 * slept.max(1_000), "a call that spins 300 ms uses CPU: {cpu} µs, asleep {slept} µs");

    let metrics = node.get("/_gojinn/metrics").await.text().await.unwrap();
    let total: f64 = metrics
        .lines()
        .find(|line| {
            line.starts_with("gojinn_guest_cpu_seconds_total{")
                && line.contains("tenant=\"acme\"")
                && line.contains("function=\"work\"")
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no CPU time for acme/work in\n{metrics}"));
    let receipts = (slept + cpu) as f64 / 1e6;
    assert!((total - receipts).abs() < 0.001, "the metric ({total} s) adds up the receipts ({receipts} s)");
}

#[tokio::test]
async fn a_cpu_limit_ends_a_loop_with_its_code_but_not_a_call_that_waits_past_it_in_the_host() {
    let dir = spec_dir("limits: { timeout: 5s, cpu: 50ms }");
    let node = Node::start(&dir).await;

    let response = node.get("/acme/spin").await;
    assert_eq!(response.status(), 503);
    let id = response.headers()[crate::receipts::RECEIPT].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "cpu_limit_exceeded", "{body}");
    let stopped = execution(&node, &id).await;
    assert_eq!(stopped["status"], "cpu_limit_exceeded", "{stopped}");
    assert_eq!(stopped["cpu_limit_ms"], 50, "{stopped}");
    let cpu = micros(&stopped, "cpu_us");
    assert!((50_000..1_000_000).contains(&cpu), "stopped soon after 50 ms of CPU, not {cpu} µs");

    let (status, id) = call(&node, "/acme/work?sleep=300").await;
    assert_eq!(status, 200, "300 ms asleep in the host is no CPU time");
    assert_eq!(execution(&node, &id).await["status"], "ok");
}
